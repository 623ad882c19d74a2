//! Work that must not take the cores from a service's own work: the API's computations over the
//! lake (`as_of`, provenance) beside the rankings it answers from memory, the lander's lake
//! maintenance (compaction rewrites hundreds of files) beside its landing and the marts' runs.
//! Such work runs on a Tokio runtime of its own, one worker thread at a lower scheduling
//! priority: on a busy machine it slows down, not what runs beside it; on an idle one it has the
//! cores.

/// The nice value of a background thread (the services run at 0; 19 is the lowest priority).
pub const NICE: i32 = 10;

/// Starts a Tokio runtime with one worker thread named `name` at [`NICE`], kept for the
/// process's life, and returns its handle (keep it, e.g. in a `OnceLock`: each call starts
/// another). Futures spawned on it may use clients made on the service's own runtime: their
/// sockets stay driven by that runtime.
pub fn low_priority_runtime(name: &str) -> tokio::runtime::Handle {
    let (sender, receiver) = std::sync::mpsc::channel();
    let worker_name = name.to_string();
    std::thread::Builder::new()
        .name(format!("{name}-runtime"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(worker_name.clone())
                .on_thread_start(move || {
                    // On Linux a nice value is per thread: this thread's id. Best effort: at
                    // worst the work runs at the service's priority.
                    let this_thread = rustix::thread::gettid();
                    if let Err(error) =
                        rustix::process::setpriority_process(Some(this_thread), NICE)
                    {
                        tracing::warn!(%error, "a background thread keeps the service's priority");
                    }
                })
                .enable_all()
                .build()
                .expect("a background runtime starts");
            let _ = sender.send(runtime.handle().clone());
            runtime.block_on(std::future::pending::<()>());
        })
        .expect("a background runtime's thread starts");
    receiver
        .recv()
        .expect("a background runtime hands over its handle")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_spawned_there_runs_on_a_named_thread_at_a_lower_priority() {
        let runtime = low_priority_runtime("background-test");
        let (nice, thread) = runtime
            .spawn(async {
                let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
                (nice.ok(), std::thread::current().name().map(str::to_string))
            })
            .await
            .unwrap();
        assert_eq!(nice, Some(NICE));
        assert_eq!(thread.as_deref(), Some("background-test"));
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(
            here < NICE,
            "the caller's thread keeps its priority ({here})"
        );
    }
}
