//! Graceful shutdown: every service drains on SIGTERM or Ctrl-C through one cancellation token.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first SIGTERM or Ctrl-C. Spawn it from `main`; entry points take
/// the token and finish their unit of work (commit what is consumed) before returning.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot install the SIGTERM handler, only Ctrl-C stops gracefully");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
