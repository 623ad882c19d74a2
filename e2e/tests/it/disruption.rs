//! What disturbs the oracle's workload (`oracle::workload`) after each round's changes: the
//! chaos test's SIGKILLs of our services and the stack's, and the outage test's stopped stack
//! services, with the readiness they must report meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use tributary_common::failpoint;
use tributary_common::health::Readiness;
use tributary_e2e::proxy::StallProxy;
use tributary_e2e::{Service, stack};

/// How many services the chaos test kills a round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kills {
    /// Of ours (lander, marts, API, ingestors).
    pub(crate) ours: usize,
    /// Of the stack's ([`stack::KILLABLE`]).
    pub(crate) stack: usize,
}

/// What disturbs the workload's rounds, after each round's changes are made.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Disruption {
    /// Nothing (the oracle test); the end also checks provenance and a rebuild.
    None,
    /// SIGKILLs (the chaos test).
    Kills(Kills),
    /// One of the stack's services down this long, round `r` the `r`-th of
    /// [`stack::KILLABLE`] (the outage test).
    Outages(Duration),
    /// Round `r` arms the `r`-th crash point of [`failpoint::POINTS`] in the service that has
    /// it before the round's changes, and waits for the service to abort there (the crash
    /// point test).
    CrashPoints,
    /// The object store, ClickHouse, Postgres and Kafka, behind proxies, slow for this long and then stalled
    /// for as long, each round (the slowdown test).
    Slowdowns(Duration),
}

/// SIGKILLs `kills.ours` of our services (never `services[0]`, the ERP simulator: a source) and
/// `kills.stack` of the stack's, in a seeded order at seeded random moments while the round's
/// changes flow, each started again after a random pause (ours by the test, the stack's by
/// `dev/up`), and prints what it killed when.
pub(crate) async fn chaos(
    services: &mut [Service],
    rng: &mut ChaCha8Rng,
    kills: Kills,
    seed: u64,
    round: usize,
) -> Result<()> {
    let started = Instant::now();
    let mut victims: Vec<Option<&str>> = vec![None; kills.ours];
    for _ in 0..kills.stack {
        victims.push(Some(*stack::KILLABLE.choose(rng).expect("stack services")));
    }
    victims.shuffle(rng);
    for victim in victims {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
        let at = started.elapsed().as_secs_f64();
        match victim {
            None => {
                let victim = &mut services[rng.random_range(1..services.len())];
                victim.kill_hard();
                let down = Duration::from_millis(rng.random_range(0..1_500));
                eprintln!(
                    "chaos seed {seed} round {round}: SIGKILL {} at +{at:.1} s, started again {} ms later",
                    victim.name(),
                    down.as_millis()
                );
                tokio::time::sleep(down).await;
                victim.restart();
            }
            Some(name) => {
                stack::kill_hard(name)?;
                let down = Duration::from_millis(rng.random_range(0..5_000));
                tokio::time::sleep(down).await;
                let took = tokio::task::spawn_blocking(move || stack::start(name)).await??;
                eprintln!(
                    "chaos seed {seed} round {round}: SIGKILL the stack's {name} at +{at:.1} s, \
                     `dev/up {name}` {} ms later took {:.1} s",
                    down.as_millis(),
                    took.as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// One of our services' `/readyz`, and the checks it has on the stack's services.
pub(crate) struct Probe {
    pub(crate) service: &'static str,
    pub(crate) base: String,
    pub(crate) checks: &'static [&'static str],
}

/// The readiness checks (of [`Probe::checks`]) that depend on the stack's `dependency`.
fn checks_on(dependency: &str) -> &'static [&'static str] {
    match dependency {
        "postgres" => &["catalog", "state"],
        "kafka" => &["kafka"],
        "s3" => &["object_store", "inbox"],
        "clickhouse" => &["clickhouse"],
        // nothing of ours talks to Kafka Connect
        _ => &[],
    }
}

/// Stops the stack's `dependency` (`dev/down`) for `down` while the round's changes flow. Every
/// second meanwhile: none of our services may exit, and each with a readiness check on it must
/// answer `/readyz` 503 naming that check at least once. Then `dev/up` starts it again (the
/// round's check that follows waits for the pipeline to catch up).
pub(crate) async fn outage(
    dependency: &'static str,
    down: Duration,
    services: &mut [Service],
    probes: &[Probe],
    seed: u64,
    round: usize,
) -> Result<()> {
    tokio::task::spawn_blocking(move || stack::stop(dependency)).await??;
    let reported = watch(down, services, probes, checks_on(dependency)).await?;
    let took = tokio::task::spawn_blocking(move || stack::start(dependency)).await??;
    eprintln!(
        "outage seed {seed} round {round}: {dependency} down {:.0} s, `dev/up {dependency}` took {:.1} s; not ready meanwhile: {reported:?}",
        down.as_secs_f64(),
        took.as_secs_f64()
    );
    for probe in probes {
        let depends = probe
            .checks
            .iter()
            .any(|c| checks_on(dependency).contains(c));
        anyhow::ensure!(
            !depends || reported.contains_key(probe.service),
            "{} never answered /readyz 503 naming {dependency} during its {:.0} s outage \
             (replay: OUTAGE_SEED={seed})",
            probe.service,
            down.as_secs_f64()
        );
    }
    Ok(())
}

/// For `down`, every second: none of `services` may exit, and each probe's `/readyz` is read;
/// returns, per probe that answered 503 naming any of `checks` at least once, what it named.
async fn watch(
    down: Duration,
    services: &mut [Service],
    probes: &[Probe],
    checks: &[&str],
) -> Result<BTreeMap<&'static str, String>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    let mut reported = BTreeMap::new();
    while started.elapsed() < down {
        for service in services.iter_mut() {
            service.assert_running();
        }
        for probe in probes {
            let Ok(response) = http.get(format!("{}/readyz", probe.base)).send().await else {
                continue;
            };
            let status = response.status().as_u16();
            let Ok(body) = response.json::<Readiness>().await else {
                continue;
            };
            let failing: Vec<&str> = body
                .checks
                .iter()
                .filter(|c| !c.ok && checks.contains(&c.name.as_str()))
                .map(|c| c.name.as_str())
                .collect();
            if status == 503 && !failing.is_empty() {
                reported
                    .entry(probe.service)
                    .or_insert_with(|| failing.join(", "));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(reported)
}

/// Kafka's `PROXIED` listener and the port it advertises (`KAFKA_PROXIED_PORT` and
/// `KAFKA_PROXY_PORT` in dev/lib.sh).
const KAFKA_PROXIED_PORT: u16 = 9094;
const KAFKA_PROXY_PORT: u16 = 9095;

/// The object store, ClickHouse, Postgres and Kafka as our services see them in the slowdown
/// test: each behind a proxy that can delay or stall it ([`tributary_e2e::proxy::StallProxy`]).
pub(crate) struct SlowDependencies {
    pub(crate) s3: StallProxy,
    pub(crate) clickhouse: StallProxy,
    /// The Iceberg catalog's (and the marts' state's) Postgres.
    pub(crate) postgres: StallProxy,
    /// The Kafka broker's `PROXIED` listener (dev/kafka/server.properties), which advertises
    /// this proxy's port: the lander and the ingestors bootstrap here and stay behind it.
    pub(crate) kafka: StallProxy,
}

impl SlowDependencies {
    /// Proxies in front of the local stack's object store, ClickHouse, Postgres and Kafka.
    pub(crate) async fn start() -> Self {
        Self {
            s3: StallProxy::start(([127, 0, 0, 1], 9000).into()).await,
            clickhouse: StallProxy::start(([127, 0, 0, 1], 8123).into()).await,
            postgres: StallProxy::start(([127, 0, 0, 1], 5432).into()).await,
            kafka: StallProxy::start_on(
                ([127, 0, 0, 1], KAFKA_PROXY_PORT).into(),
                ([127, 0, 0, 1], KAFKA_PROXIED_PORT).into(),
            )
            .await,
        }
    }

    fn each(&self, f: impl Fn(&StallProxy)) {
        f(&self.s3);
        f(&self.clickhouse);
        f(&self.postgres);
        f(&self.kafka);
    }
}

/// The object store, ClickHouse, Postgres and Kafka slow for `down` (every chunk 200 ms late,
/// both ways), then stalled for `down` (connections open, nothing forwarded): none of our services may exit,
/// and the lander and the marts must answer `/readyz` 503 naming what stalls; then both
/// answer again (the round's check that follows waits for the pipeline to catch up).
pub(crate) async fn slowdown(
    slow: &SlowDependencies,
    down: Duration,
    services: &mut [Service],
    probes: &[Probe],
    seed: u64,
    round: usize,
) -> Result<()> {
    slow.each(|p| p.delay(Duration::from_millis(200)));
    watch(down, services, probes, &[]).await?;
    slow.each(|p| {
        p.delay(Duration::ZERO);
        p.stall(true);
    });
    let stalled = [
        checks_on("s3"),
        checks_on("clickhouse"),
        checks_on("postgres"),
        checks_on("kafka"),
    ]
    .concat();
    let reported = watch(down, services, probes, &stalled).await?;
    slow.each(|p| p.stall(false));
    eprintln!(
        "slowdown seed {seed} round {round}: the object store, ClickHouse, Postgres and Kafka 200 ms late for {:.0} s, then stalled for {:.0} s; not ready meanwhile: {reported:?}",
        down.as_secs_f64(),
        down.as_secs_f64()
    );
    for service in ["oracle-lake", "oracle-marts"] {
        anyhow::ensure!(
            reported.contains_key(service),
            "{service} never answered /readyz 503 while the object store, ClickHouse, Postgres and Kafka stalled \
             (replay: SLOW_SEED={seed})"
        );
    }
    Ok(())
}

/// The crash point of round `round` and the services of ours that pass it (armed together).
pub(crate) fn crash_point(round: usize) -> (&'static str, &'static [&'static str]) {
    let (point, _) = failpoint::POINTS[round % failpoint::POINTS.len()];
    let services: &'static [&'static str] = match point {
        failpoint::LANDER_AFTER_DATA_FILES
        | failpoint::LANDER_AFTER_COMMIT
        | failpoint::LANDER_AFTER_DEAD_LETTERS => &["oracle-lake"],
        failpoint::MARTS_AFTER_PUBLISH => &["oracle-marts"],
        failpoint::INGEST_IN_TRANSACTION => &["oracle-files", "oracle-erp"],
        other => panic!("crash point {other} belongs to no service of the workload"),
    };
    (point, services)
}

/// Restarts the services that pass round `round`'s crash point with the point armed
/// (`FAILPOINTS=<point>=return`), before the round's changes reach them.
pub(crate) fn arm_crash_point(services: &mut [Service], round: usize) {
    let (point, names) = crash_point(round);
    for service in services.iter_mut().filter(|s| names.contains(&s.name())) {
        service.restart_with_env(failpoint::FAILPOINTS_ENV, Some(&format!("{point}=return")));
    }
}

/// Waits for each service armed in round `round` to abort at its crash point (SIGABRT, and
/// the point's line in its log), then starts it again disarmed.
pub(crate) fn await_crash(services: &mut [Service], seed: u64, round: usize) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let (point, names) = crash_point(round);
    let started = Instant::now();
    for service in services.iter_mut().filter(|s| names.contains(&s.name())) {
        let status = service.wait_exit(Duration::from_secs(120));
        let log = std::fs::read_to_string(service.log()).unwrap_or_default();
        anyhow::ensure!(
            status.and_then(|s| s.signal()) == Some(SIGABRT)
                && log.contains(&format!("crash point {point}: aborting")),
            "{} did not abort at crash point {point} within 120 s of the round's changes \
             (ended: {status:?}; see {}; replay: CRASH_SEED={seed})",
            service.name(),
            service.log().display()
        );
        eprintln!(
            "crash seed {seed} round {round}: {} aborted at {point} {:.1} s after the round's changes; started again",
            service.name(),
            started.elapsed().as_secs_f64()
        );
        service.restart_with_env(failpoint::FAILPOINTS_ENV, None);
    }
    Ok(())
}

/// SIGABRT's number on Linux.
const SIGABRT: i32 = 6;
