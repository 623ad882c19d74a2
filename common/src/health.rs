//! Liveness and readiness, the same on every service.
//!
//! * `GET /healthz` — liveness: the process answers. Always 200 `ok`; it never looks at a
//!   dependency, so an orchestrator does not restart a healthy process because Kafka is down.
//! * `GET /readyz` — readiness: every dependency answers. Each [`ReadinessChecks`] check runs
//!   concurrently with a short timeout (2 s by default); 200 when all pass, 503 otherwise, with
//!   a JSON body naming each dependency:
//!
//! ```json
//! {"status":"not_ready","checks":[
//!   {"name":"kafka","ok":false,"detail":"metadata: … BrokerTransportFailure …","latency_ms":2001,"required":true},
//!   {"name":"catalog","ok":true,"detail":"postgres database tributary answers","latency_ms":4,"required":true}]}
//! ```
//!
//! A check added with [`ReadinessChecks::optional_check`] (`"required":false`) is reported but
//! does not make the service unready: the API serves rankings while its lake is down.
//!
//! Details never carry secrets: every URL in them has its password replaced by
//! [`crate::config::REDACTED`].
//!
//! [`serve`] is the one small HTTP listener of the services that are not the API (lander,
//! ingestors, marts): `/metrics` (Prometheus text), `/healthz` and `/readyz`.
//!
//! Ready-made checks of the shared infrastructure, each behind the cargo feature of its client:
//! [`kafka_metadata`] (`kafka`), [`postgres_answers`] (`postgres`), [`object_store_lists`]
//! (`object-store`). A service adds its own with [`ReadinessChecks::check`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::redact_url;

/// How long one check may take before it counts as failed.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one readiness answer is given again (see [`ReadinessChecks::run`]).
pub const READINESS_REUSE: Duration = Duration::from_secs(1);

/// Why a check failed: any error; its chain of sources becomes the `detail`.
pub type CheckError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a check answers: a short description of what it saw, or why it failed.
pub type CheckResult = Result<String, CheckError>;

/// The future a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send + 'static>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync + 'static>;

/// A named check and whether readiness depends on it.
#[derive(Clone)]
struct NamedCheck {
    name: String,
    required: bool,
    check: CheckFn,
}

/// The overall state, `"ready"` or `"not_ready"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every dependency answered.
    Ready,
    /// At least one did not.
    NotReady,
}

/// One dependency's answer, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The dependency (`kafka`, `catalog`, `object_store`, `clickhouse`, …).
    pub name: String,
    /// Whether it answered in time.
    pub ok: bool,
    /// What it answered, or the error (URLs redacted).
    pub detail: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// Whether readiness depends on it. An optional dependency (the API's lake, for time
    /// travel) is reported, but its failure leaves the service ready for everything else.
    #[serde(default = "required_by_default")]
    pub required: bool,
}

fn required_by_default() -> bool {
    true
}

impl CheckReport {
    /// The report of check `name` that ended with `result` after `elapsed`; `None` is a
    /// timeout of `timeout`. Pure.
    pub fn new(
        name: &str,
        result: Option<CheckResult>,
        elapsed: Duration,
        timeout: Duration,
    ) -> Self {
        let (ok, detail) = match result {
            Some(Ok(detail)) => (true, detail),
            Some(Err(error)) => (false, error_chain(error.as_ref())),
            None => (
                false,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
        };
        Self {
            name: name.to_string(),
            ok,
            detail: redact_urls(&detail),
            latency_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            required: true,
        }
    }
}

/// The `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` when every check passed.
    pub status: ReadyStatus,
    /// Every check, in the order they were added.
    pub checks: Vec<CheckReport>,
}

impl Readiness {
    /// Aggregates check reports: ready when every required one passed (a service without
    /// dependencies is ready). Pure.
    pub fn from_reports(checks: Vec<CheckReport>) -> Self {
        let status = if checks.iter().all(|c| c.ok || !c.required) {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        };
        Self { status, checks }
    }

    /// Whether every dependency answered.
    pub fn is_ready(&self) -> bool {
        self.status == ReadyStatus::Ready
    }

    /// 200 when ready, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        if self.is_ready() { 200 } else { 503 }
    }
}

/// The readiness checks of one service.
#[derive(Clone)]
pub struct ReadinessChecks {
    checks: Vec<NamedCheck>,
    timeout: Duration,
    /// The latest answer and when it was made: probes within [`READINESS_REUSE`] of it share
    /// it, so a flood of `/readyz` cannot become a flood of connections to the dependencies.
    latest: Arc<tokio::sync::Mutex<Option<(Instant, Readiness)>>>,
}

impl Default for ReadinessChecks {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReadinessChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.names();
        f.debug_struct("ReadinessChecks")
            .field("checks", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ReadinessChecks {
    /// No checks yet, [`DEFAULT_CHECK_TIMEOUT`] each.
    pub fn new() -> Self {
        Self {
            checks: Vec::new(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            latest: Arc::default(),
        }
    }

    /// Each check's timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout each check gets.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Adds the check `name`: `check()` is called on every `/readyz` and must answer within
    /// the timeout.
    pub fn check<F, Fut>(self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        self.push(name.into(), true, check)
    }

    /// Adds the check `name` of an optional dependency: reported like the others, but its
    /// failure does not make the service unready.
    pub fn optional_check<F, Fut>(self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        self.push(name.into(), false, check)
    }

    fn push<F, Fut>(mut self, name: String, required: bool, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        let check: CheckFn = Arc::new(move || Box::pin(check()));
        self.checks.push(NamedCheck {
            name,
            required,
            check,
        });
        self
    }

    /// The names of the checks, in order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|c| c.name.as_str()).collect()
    }

    /// Runs every check at once, each bounded by the timeout, and aggregates them; an answer
    /// made less than [`READINESS_REUSE`] ago is given again (callers meanwhile wait for the
    /// one probe in flight).
    pub async fn run(&self) -> Readiness {
        let mut latest = self.latest.lock().await;
        if let Some((at, readiness)) = latest.as_ref()
            && at.elapsed() < READINESS_REUSE
        {
            return readiness.clone();
        }
        let readiness = self.probe().await;
        *latest = Some((Instant::now(), readiness.clone()));
        readiness
    }

    async fn probe(&self) -> Readiness {
        let timeout = self.timeout;
        let runs = self.checks.iter().map(|c| async move {
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, (c.check)()).await.ok();
            CheckReport {
                required: c.required,
                ..CheckReport::new(&c.name, result, started.elapsed(), timeout)
            }
        });
        Readiness::from_reports(futures::future::join_all(runs).await)
    }
}

/// `error: its source: its source …`, skipping a source whose text the previous one already
/// contains (many errors print their source themselves).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// `text` with the password of every `scheme://user:password@host` in it replaced. Pure.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last character that cannot be in a scheme.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ','))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Serves `GET /metrics` (the Prometheus text `metrics()` returns), `GET /healthz` (`ok`) and
/// `GET /readyz` (the [`Readiness`] JSON, 200 or 503) on `listener` until `shutdown`.
pub async fn serve<M>(
    listener: tokio::net::TcpListener,
    metrics: M,
    readiness: ReadinessChecks,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    M: Fn() -> String + Send + Sync + 'static,
{
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            routes(Arc::new(metrics), readiness),
            shutdown.cancelled_owned(),
            None,
        )
        .await
}

/// The three routes, separate from the listener so tests can call them directly.
fn routes(
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    readiness: ReadinessChecks,
) -> poem::Route {
    use poem::http::StatusCode;
    use poem::{Response, get};

    let readiness = Arc::new(readiness);
    poem::Route::new()
        .at(
            "/metrics",
            get(poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("text/plain; version=0.0.4")
                    .body(metrics())
            })),
        )
        .at(
            "/healthz",
            get(poem::endpoint::make_sync(|_| {
                Response::builder()
                    .content_type("text/plain; charset=utf-8")
                    .body("ok\n")
            })),
        )
        .at(
            "/readyz",
            get(poem::endpoint::make(move |_| {
                let readiness = readiness.clone();
                async move {
                    let report = readiness.run().await;
                    let status = StatusCode::from_u16(report.http_status())
                        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    if !report.is_ready() {
                        let failed: Vec<&str> = report
                            .checks
                            .iter()
                            .filter(|c| !c.ok)
                            .map(|c| c.name.as_str())
                            .collect();
                        tracing::debug!(failed = ?failed, "not ready");
                    }
                    Response::builder()
                        .status(status)
                        .content_type("application/json")
                        .body(serde_json::to_vec(&report).unwrap_or_default())
                }
            })),
        )
}

/// Kafka answers a metadata request (`bootstrap.servers` = `settings.brokers`). The client is
/// made once and kept, so a probe costs one request, not a connection set-up. The request gets
/// three quarters of `timeout` (the check's own), so an unreachable broker ends in the client's
/// error naming the brokers rather than a bare "no answer" from the check's timeout.
#[cfg(feature = "kafka")]
pub fn kafka_metadata(
    settings: &crate::KafkaSettings,
    timeout: Duration,
) -> impl Fn() -> CheckFuture + Send + Sync + 'static {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let brokers = settings.brokers.clone();
    // No group.id: this client never joins a group, it only asks for metadata.
    let client: Result<Arc<BaseConsumer>, String> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("client.id", "tributary-readiness")
        .create::<BaseConsumer>()
        .map(Arc::new)
        .map_err(|e| format!("kafka client for {brokers}: {e}"));
    move || {
        let client = client.clone();
        let brokers = brokers.clone();
        Box::pin(async move {
            let client = client.map_err(CheckError::from)?;
            tokio::task::spawn_blocking(move || {
                // Serve the client's queue (errors of earlier attempts) so it never grows.
                let _ = client.poll(Duration::ZERO);
                client.fetch_metadata(None, timeout.mul_f64(0.75))
            })
            .await
            .map_err(|e| CheckError::from(format!("metadata request task: {e}")))?
            .map(|metadata| {
                format!(
                    "{} broker(s), {} topic(s) at {brokers}",
                    metadata.brokers().len(),
                    metadata.topics().len()
                )
            })
            .map_err(|e| CheckError::from(format!("metadata from {brokers}: {e}")))
        })
    }
}

/// The Postgres database at `url` answers a query. One connection is kept for the probes (a
/// flood of them is not a flood of connections); a closed or failing one is opened again within
/// the same probe, so an outage still shows as one.
#[cfg(feature = "postgres")]
pub fn postgres_answers(url: &str) -> impl Fn() -> CheckFuture + Send + Sync + 'static {
    let url = url.to_string();
    let kept: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>> = Arc::default();
    move || {
        let (url, kept) = (url.clone(), kept.clone());
        Box::pin(async move {
            let mut client = kept.lock().await;
            let database = match client.as_ref().filter(|c| !c.is_closed()) {
                Some(open) => current_database(open, &url).await.ok(),
                None => None,
            };
            let database = match database {
                Some(database) => database,
                None => {
                    *client = None;
                    let (fresh, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("connect to {}: {e}", redact_url(&url)))?;
                    tokio::spawn(connection);
                    let database = current_database(&fresh, &url).await?;
                    *client = Some(fresh);
                    database
                }
            };
            Ok(format!("postgres database {database} answers"))
        })
    }
}

#[cfg(feature = "postgres")]
async fn current_database(client: &tokio_postgres::Client, url: &str) -> Result<String, String> {
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(|e| format!("query {}: {e}", redact_url(url)))?;
    Ok(row.get(0))
}

/// The object store holding `location` answers: `s3://bucket[/prefix]` is listed one level
/// deep on the S3-compatible store in `s3` (no retries, so a probe fails fast); anything else
/// is a local folder that must exist.
#[cfg(feature = "object-store")]
pub fn object_store_lists(
    location: &str,
    s3: &crate::S3Settings,
    timeout: Duration,
) -> impl Fn() -> CheckFuture + Send + Sync + 'static {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ClientOptions, ObjectStore, RetryConfig};

    let location = location.trim_end_matches('/').to_string();
    // `None` for a local folder; the store and the key prefix to list for `s3://`.
    type Bucket = Result<(Arc<dyn ObjectStore>, String), String>;
    let store: Option<Bucket> = location.strip_prefix("s3://").map(|rest| {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&s3.endpoint)
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key(&s3.secret_access_key)
            .with_region(&s3.region)
            // Client options first: they replace the whole set, `allow_http` included.
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout),
            )
            .with_allow_http(s3.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: timeout,
                ..RetryConfig::default()
            })
            .build()
            .map(|s| (Arc::new(s) as Arc<dyn ObjectStore>, prefix.to_string()))
            .map_err(|e| format!("configure S3 for {location}: {e}"))
    });
    move || {
        let (store, location) = (store.clone(), location.clone());
        Box::pin(async move {
            let Some(store) = store else {
                let meta = tokio::fs::metadata(&location)
                    .await
                    .map_err(|e| format!("folder {location}: {e}"))?;
                return if meta.is_dir() {
                    Ok(format!("folder {location} exists"))
                } else {
                    Err(format!("{location} is not a folder").into())
                };
            };
            let (store, prefix) = store.map_err(CheckError::from)?;
            let prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
            let listed = store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|e| format!("list {location}: {e}"))?;
            Ok(format!(
                "{location} lists ({} entries)",
                listed.common_prefixes.len() + listed.objects.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, ok: bool) -> CheckReport {
        CheckReport {
            name: name.into(),
            ok,
            detail: String::new(),
            latency_ms: 1,
            required: true,
        }
    }

    /// Probes within a second share one answer: a flood of `/readyz` is one probe of each
    /// dependency; after it, the dependencies are asked again.
    #[tokio::test]
    async fn probes_within_a_second_share_one_answer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let checks = ReadinessChecks::new().check("postgres", move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(format!("probe {n}")) }
        });
        let answers = futures::future::join_all((0..10).map(|_| checks.run())).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| a.checks[0].detail == "probe 1"));
        tokio::time::sleep(READINESS_REUSE).await;
        assert_eq!(checks.run().await.checks[0].detail, "probe 2");
    }
    #[tokio::test]
    async fn an_optional_dependency_is_reported_but_does_not_gate_readiness() {
        let checks = ReadinessChecks::new()
            .check("clickhouse", || async { Ok("answers".to_string()) })
            .optional_check("lake", || async { Err("catalog down".into()) });
        let readiness = checks.run().await;
        assert!(readiness.is_ready(), "{readiness:?}");
        let lake = &readiness.checks[1];
        assert_eq!(
            (lake.name.as_str(), lake.ok, lake.required),
            ("lake", false, false)
        );
        let required_down = ReadinessChecks::new()
            .check("clickhouse", || async { Err("down".into()) })
            .optional_check("lake", || async { Ok("up".to_string()) });
        assert!(!required_down.run().await.is_ready());
        // A body without `required` (an older service) reads as required.
        let old: CheckReport =
            serde_json::from_str(r#"{"name":"kafka","ok":true,"detail":"","latency_ms":1}"#)
                .unwrap();
        assert!(old.required);
    }

    #[test]
    fn ready_only_when_every_check_passed() {
        let all = Readiness::from_reports(vec![report("kafka", true), report("catalog", true)]);
        assert_eq!(all.status, ReadyStatus::Ready);
        assert_eq!(all.http_status(), 200);
        let one_down =
            Readiness::from_reports(vec![report("kafka", false), report("catalog", true)]);
        assert_eq!(one_down.status, ReadyStatus::NotReady);
        assert_eq!(one_down.http_status(), 503);
        assert!(Readiness::from_reports(vec![]).is_ready());
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let readiness = Readiness::from_reports(vec![
            CheckReport::new(
                "kafka",
                Some(Err("metadata: broker transport failure".into())),
                Duration::from_millis(3),
                DEFAULT_CHECK_TIMEOUT,
            ),
            CheckReport::new(
                "catalog",
                Some(Ok("postgres database tributary answers".into())),
                Duration::from_millis(4),
                DEFAULT_CHECK_TIMEOUT,
            ),
        ]);
        let json = serde_json::to_value(&readiness).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "status": "not_ready",
                "checks": [
                    {"name": "kafka", "ok": false, "detail": "metadata: broker transport failure", "latency_ms": 3, "required": true},
                    {"name": "catalog", "ok": true, "detail": "postgres database tributary answers", "latency_ms": 4, "required": true},
                ]
            })
        );
        let back: Readiness = serde_json::from_value(json).unwrap();
        assert_eq!(back, readiness);
    }

    #[test]
    fn a_timeout_and_an_error_chain_become_details() {
        let timed_out =
            CheckReport::new("erp", None, Duration::from_secs(2), Duration::from_secs(2));
        assert!(!timed_out.ok);
        assert_eq!(timed_out.detail, "no answer within 2000 ms");
        assert_eq!(timed_out.latency_ms, 2000);

        #[derive(Debug, thiserror::Error)]
        #[error("connect to the catalog")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("connection refused"));
        let failed = CheckReport::new(
            "catalog",
            Some(Err(Box::new(error))),
            Duration::ZERO,
            DEFAULT_CHECK_TIMEOUT,
        );
        assert_eq!(failed.detail, "connect to the catalog: connection refused");
    }

    #[test]
    fn passwords_in_details_are_redacted() {
        let text = "connect to postgres://tributary:s3cret@127.0.0.1:1/tributary: refused \
                    (also http://u:p@h:8123/?q=1, s3://warehouse and no-url://x)";
        let out = redact_urls(text);
        assert!(!out.contains("s3cret") && !out.contains("u:p@"), "{out}");
        assert_eq!(
            out,
            "connect to postgres://tributary:<redacted>@127.0.0.1:1/tributary: refused \
             (also http://u:<redacted>@h:8123/?q=1, s3://warehouse and no-url://x)"
        );
        let report = CheckReport::new(
            "state",
            Some(Err("connect to postgres://a:b@h/db: refused".into())),
            Duration::ZERO,
            DEFAULT_CHECK_TIMEOUT,
        );
        assert_eq!(
            report.detail,
            "connect to postgres://a:<redacted>@h/db: refused"
        );
    }

    #[tokio::test]
    async fn checks_run_concurrently_each_bounded_by_the_timeout() {
        let checks = ReadinessChecks::new()
            .with_timeout(Duration::from_millis(200))
            .check("fast", || async { Ok("fine".to_string()) })
            .check("hangs", || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(String::new())
            })
            .check("fails", || async { Err("refused".into()) });
        assert_eq!(checks.names(), ["fast", "hangs", "fails"]);
        let readiness = checks.run().await;
        assert!(!readiness.is_ready());
        let by_name = |n: &str| readiness.checks.iter().find(|c| c.name == n).unwrap();
        assert!(by_name("fast").ok);
        assert_eq!(by_name("fast").detail, "fine");
        assert!(!by_name("hangs").ok);
        assert!(by_name("hangs").detail.contains("no answer"));
        assert_eq!(by_name("fails").detail, "refused");
    }

    #[tokio::test]
    async fn the_listener_serves_metrics_liveness_and_readiness() {
        use poem::test::TestClient;

        let ready = ReadinessChecks::new().check("kafka", || async { Ok("1 broker".into()) });
        let client = TestClient::new(routes(Arc::new(|| "m_total 1\n".to_string()), ready));
        let metrics = client.get("/metrics").send().await;
        metrics.assert_status_is_ok();
        metrics.assert_content_type("text/plain; version=0.0.4");
        metrics.assert_text("m_total 1\n").await;
        let health = client.get("/healthz").send().await;
        health.assert_status_is_ok();
        health.assert_text("ok\n").await;
        let readyz = client.get("/readyz").send().await;
        readyz.assert_status_is_ok();
        let body: Readiness = readyz.0.into_body().into_json().await.unwrap();
        assert!(body.is_ready());
        assert_eq!(body.checks[0].name, "kafka");
        client
            .get("/nope")
            .send()
            .await
            .assert_status(poem::http::StatusCode::NOT_FOUND);

        let down = ReadinessChecks::new().check("clickhouse", || async {
            Err("connect to http://default:pw@127.0.0.1:1: refused".into())
        });
        let client = TestClient::new(routes(Arc::new(String::new), down));
        let readyz = client.get("/readyz").send().await;
        readyz.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
        let body: Readiness = readyz.0.into_body().into_json().await.unwrap();
        assert_eq!(body.status, ReadyStatus::NotReady);
        assert!(!body.checks[0].detail.contains("pw"), "{body:?}");
        // Liveness does not depend on the dependencies.
        client.get("/healthz").send().await.assert_status_is_ok();
    }
}
