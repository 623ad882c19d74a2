//! Lake commit notifications: after each commit the lander sends a Postgres `NOTIFY` on
//! [`CHANNEL`] (payload: the namespace) over the session that holds its writer lock, so a reader
//! that wants to react to new data (the marts) starts at once instead of polling the catalog.
//!
//! A notification only says "look now": a reader still finds what changed in the snapshots,
//! and one that missed notifications (its connection dropped, it started late) loses nothing,
//! since it also runs at its interval. Catalogs that are not on Postgres send and receive none.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tributary_common::LakeSettings;

/// The Postgres channel lake commits are announced on.
pub const CHANNEL: &str = "tributary_lake_commits";

/// Longest wait before listening again after the connection failed.
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(30);

/// Listens for commits to `settings.namespace`: each wakes the returned [`Notify`] (a burst of
/// commits while nobody waits wakes it once). Returns once the first attempt to listen is done,
/// so a commit announced after it succeeded is heard; the rest runs in the background, opening
/// the connection again with backoff when it drops or could not be opened, and a drop also
/// wakes it (a commit may have been missed). `None` for a catalog that is not on Postgres.
/// Abort the handle to stop.
pub async fn listen(settings: &LakeSettings) -> Option<(Arc<Notify>, JoinHandle<()>)> {
    if !settings.catalog_uri.starts_with("postgres") {
        return None;
    }
    let wake = Arc::new(Notify::new());
    // Bounded: a stalled Postgres must not hold up the start of the service listening.
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        subscribe(&settings.catalog_uri, &settings.namespace),
    )
    .await
    .unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 10 s",
        )))
    });
    let task = tokio::spawn(listen_forever(
        first,
        settings.catalog_uri.clone(),
        settings.namespace.clone(),
        wake.clone(),
    ));
    Some((wake, task))
}

/// A connection listening on [`CHANNEL`].
async fn subscribe(uri: &str, namespace: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(uri).await?;
    listener.listen(CHANNEL).await?;
    tracing::info!(channel = CHANNEL, namespace, "listening for lake commits");
    Ok(listener)
}

async fn listen_forever(
    first: Result<PgListener, sqlx::Error>,
    uri: String,
    namespace: String,
    wake: Arc<Notify>,
) {
    let mut wait = Duration::from_secs(1);
    let mut first = Some(first);
    loop {
        let (subscribed, again) = match first.take() {
            Some(first) => (first, false),
            None => (subscribe(&uri, &namespace).await, true),
        };
        let listener = match subscribed {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, ?wait, "cannot listen for lake commits; runs keep their interval meanwhile");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECONNECT_MAX_WAIT);
                continue;
            }
        };
        wait = Duration::from_secs(1);
        if again {
            // Listening again: commits announced while we were not may have gone unheard.
            wake.notify_one();
        }
        if let Err(error) = hear(listener, &namespace, &wake).await {
            tracing::warn!(%error, "lost the connection listening for lake commits");
        }
    }
}

/// Wakes `wake` for each commit to `namespace` heard on one connection, until it is lost.
async fn hear(mut listener: PgListener, namespace: &str, wake: &Notify) -> Result<(), sqlx::Error> {
    // `try_recv` gives `None` when the connection is lost, rather than reconnecting silently.
    while let Some(notification) = listener.try_recv().await? {
        if notification.payload() == namespace {
            wake.notify_one();
        }
    }
    Ok(())
}

/// Announces a commit to `namespace` on `session` (best effort: a failure is logged, and
/// listeners fall back to their interval).
pub async fn announce(session: &mut sqlx::PgConnection, namespace: &str) {
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(namespace)
        .execute(session)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "could not announce the commit (readers notice it at their interval)");
    }
}
