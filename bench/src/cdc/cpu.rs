//! CPU over a load window, from `/proc/<pid>/stat` (utime + stime): of each watched process,
//! and of the Postgres server split by what its backends do. The server is the source database
//! (the load generator's writes), Debezium's walsender (decoding all of the server's WAL) and
//! Tributary's own database (the lake's catalog, the marts' kept state) at once: one total
//! says only that it is busy, the split says for whom.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// How often the Postgres backends are sampled: a backend that exits during the window
/// (an autovacuum worker, a closed connection) counts up to its last sample.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// `(ppid, utime + stime)` of a `/proc/<pid>/stat` line.
fn stat_ticks(stat: &str) -> Option<(u32, u64)> {
    // Fields after `(comm)`, which may hold spaces: state ppid … utime(14) stime(15), 1-based
    // over the whole line.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn ticks(pid: u32) -> Option<(u32, u64)> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Cumulative CPU seconds of `pid` (0 once it is gone).
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    ticks(pid).map_or(0.0, |(_, t)| t as f64 / TICKS_PER_SECOND)
}

/// The children of `parent` and their cumulative ticks.
fn children(parent: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match ticks(pid)? {
            (ppid, t) if ppid == parent => Some((pid, t)),
            _ => None,
        })
        .collect()
}

const OTHERS: &str = "postgres: postmaster and others";
const WRITERS: &str = "postgres: checkpointer and WAL writer";

/// The server's own processes by the start of their titles; the first match wins.
const SERVER_PROCESSES: [(&str, &str); 11] = [
    ("walsender", "postgres: walsender (Debezium's decoding)"),
    ("autovacuum worker", "postgres: autovacuum"),
    ("checkpointer", WRITERS),
    ("walwriter", WRITERS),
    ("background writer", WRITERS),
    ("autovacuum launcher", OTHERS),
    ("logical replication", OTHERS),
    ("background", OTHERS),
    ("parallel worker", OTHERS),
    ("archiver", OTHERS),
    ("startup", OTHERS),
];

/// What a Postgres backend does, from its process title (`/proc/<pid>/cmdline`: `postgres:
/// checkpointer`, `postgres: walsender <user> <host> …`, `postgres: <user> <database> <host>
/// <state>` for a client connection, …).
pub(super) fn postgres_role(title: &str, source_database: &str) -> &'static str {
    let Some(what) = title
        .trim_end_matches(['\0', ' '])
        .strip_prefix("postgres: ")
    else {
        return OTHERS;
    };
    if let Some((_, role)) = SERVER_PROCESSES
        .iter()
        .find(|(prefix, _)| what.starts_with(prefix))
    {
        return role;
    }
    // A client connection: `<user> <database> <host>(<port>) <state>`.
    match what.split_whitespace().nth(1) {
        Some(database) if database == source_database => {
            "postgres: source database (the load, Debezium's queries)"
        }
        Some(_) => "postgres: Tributary's database (catalog, marts state)",
        None => OTHERS,
    }
}

/// One backend seen during the window.
struct Backend {
    role: &'static str,
    /// Its ticks when the window started; 0 for a backend started during it.
    first: u64,
    last: u64,
}

/// The Postgres server's CPU over a window, by [`postgres_role`], sampled every
/// [`SAMPLE_EVERY`] on a thread of its own.
pub(super) struct PostgresCpu {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<BTreeMap<&'static str, f64>>,
}

impl PostgresCpu {
    /// Starts sampling the backends of `postmaster` now (the window's start).
    pub(super) fn start(postmaster: u32, source_database: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut backends: HashMap<u32, Backend> = HashMap::new();
            let sample = |backends: &mut HashMap<u32, Backend>, at_start: bool| {
                let server = ticks(postmaster).map_or(0, |(_, t)| t);
                let own = backends.entry(postmaster).or_insert(Backend {
                    role: OTHERS,
                    first: server,
                    last: server,
                });
                own.last = server;
                for (pid, t) in children(postmaster) {
                    let backend = backends.entry(pid).or_insert_with(|| Backend {
                        role: postgres_role(
                            &std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                                .unwrap_or_default(),
                            &source_database,
                        ),
                        first: if at_start { t } else { 0 },
                        last: t,
                    });
                    backend.last = backend.last.max(t);
                }
            };
            sample(&mut backends, true);
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_EVERY);
                sample(&mut backends, false);
            }
            let mut seconds: BTreeMap<&'static str, f64> = BTreeMap::new();
            for backend in backends.values() {
                *seconds.entry(backend.role).or_default() +=
                    backend.last.saturating_sub(backend.first) as f64 / TICKS_PER_SECOND;
            }
            seconds
        });
        Self { stop, sampler }
    }

    /// Stops sampling (the window's end, after one last sample): CPU seconds by role.
    pub(super) fn finish(self) -> BTreeMap<&'static str, f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_parent_and_the_ticks() {
        let line = "4419 (postgres) S 4418 4418 4418 0 -1 4194368 100 0 0 0 12 34 0 0 20 0 1 0 \
                    500 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(stat_ticks(line), Some((4418, 46)));
        // A command name with spaces and parentheses.
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(stat_ticks(odd), Some((1, 11)));
        assert_eq!(stat_ticks("7 (x) R"), None);
    }

    #[test]
    fn backends_are_told_apart_by_their_titles() {
        let role = |title: &str| postgres_role(title, "tributary_bench_ab12");
        assert_eq!(
            role("postgres: checkpointer \0"),
            "postgres: checkpointer and WAL writer"
        );
        assert_eq!(
            role("postgres: background writer "),
            "postgres: checkpointer and WAL writer"
        );
        assert_eq!(
            role("postgres: walwriter "),
            "postgres: checkpointer and WAL writer"
        );
        assert_eq!(
            role("postgres: autovacuum launcher "),
            "postgres: postmaster and others"
        );
        assert_eq!(
            role("postgres: autovacuum worker salesdb"),
            "postgres: autovacuum"
        );
        assert_eq!(
            role("postgres: walsender tributary 127.0.0.1(50118) START_REPLICATION"),
            "postgres: walsender (Debezium's decoding)"
        );
        assert_eq!(
            role("postgres: tributary tributary_bench_ab12 127.0.0.1(50120) idle"),
            "postgres: source database (the load, Debezium's queries)"
        );
        assert_eq!(
            role("postgres: tributary tributary 127.0.0.1(50122) INSERT"),
            "postgres: Tributary's database (catalog, marts state)"
        );
        assert_eq!(
            role("/usr/lib/postgresql/15/bin/postgres\0-D\0/x"),
            "postgres: postmaster and others"
        );
    }
}
