//! Notifications on the catalog's Postgres, so the next stage reacts to new data at once
//! instead of polling:
//! - lake commits: after each commit the lander sends a `NOTIFY` on [`CHANNEL`] (payload: the
//!   namespace) over the session that holds its writer lock; the marts listen ([`listen`]);
//! - publications: after each publish the marts send one on [`PUBLICATIONS_CHANNEL`] (payload:
//!   the namespace the rankings were computed from, [`Announcer`]); the API listens
//!   ([`listen_for_publications`]) and swaps in the newer publication.
//!
//! A notification only says "look now": a reader still finds what changed in the snapshots (or
//! the publications table), and one that missed notifications (its connection dropped, it
//! started late) loses nothing, since it also looks at its interval. Catalogs that are not on
//! Postgres send and receive none.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tributary_common::LakeSettings;

/// The Postgres channel lake commits are announced on.
pub const CHANNEL: &str = "tributary_lake_commits";

/// The Postgres channel the marts announce each publication on.
pub const PUBLICATIONS_CHANNEL: &str = "tributary_publications";

/// Longest wait before listening again after the connection failed.
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(30);

/// Listens for commits to `settings.namespace`: each wakes the returned [`Notify`] (a burst of
/// commits while nobody waits wakes it once). Returns once the first attempt to listen is done,
/// so a commit announced after it succeeded is heard; the rest runs in the background, opening
/// the connection again with backoff when it drops or could not be opened, and a drop also
/// wakes it (a commit may have been missed). `None` for a catalog that is not on Postgres.
/// Abort the handle to stop.
pub async fn listen(settings: &LakeSettings) -> Option<(Arc<Notify>, JoinHandle<()>)> {
    listen_on(CHANNEL, settings).await
}

/// As [`listen`], for the publications of rankings computed from `settings.namespace`.
pub async fn listen_for_publications(
    settings: &LakeSettings,
) -> Option<(Arc<Notify>, JoinHandle<()>)> {
    listen_on(PUBLICATIONS_CHANNEL, settings).await
}

/// Whether the catalog is on Postgres: only then are there notifications to send or hear.
fn on_postgres(settings: &LakeSettings) -> bool {
    settings.catalog_uri.starts_with("postgres")
}

async fn listen_on(
    channel: &'static str,
    settings: &LakeSettings,
) -> Option<(Arc<Notify>, JoinHandle<()>)> {
    if !on_postgres(settings) {
        return None;
    }
    let wake = Arc::new(Notify::new());
    // Bounded: a stalled Postgres must not hold up the start of the service listening.
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        subscribe(channel, &settings.catalog_uri, &settings.namespace),
    )
    .await
    .unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 10 s",
        )))
    });
    let task = tokio::spawn(listen_forever(
        channel,
        first,
        settings.catalog_uri.clone(),
        settings.namespace.clone(),
        wake.clone(),
    ));
    Some((wake, task))
}

/// A connection listening on `channel`.
async fn subscribe(channel: &str, uri: &str, namespace: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(uri).await?;
    listener.listen(channel).await?;
    tracing::info!(channel, namespace, "listening for announcements");
    Ok(listener)
}

async fn listen_forever(
    channel: &'static str,
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
            None => (subscribe(channel, &uri, &namespace).await, true),
        };
        let listener = match subscribed {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(
                    %error,
                    ?wait,
                    channel,
                    "cannot listen for announcements; looking at the interval meanwhile"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECONNECT_MAX_WAIT);
                continue;
            }
        };
        wait = Duration::from_secs(1);
        if again {
            // Listening again: announcements made while we were not may have gone unheard.
            wake.notify_one();
        }
        if let Err(error) = hear(listener, &namespace, &wake).await {
            tracing::warn!(%error, channel, "lost the connection listening for announcements");
        }
    }
}

/// Wakes `wake` for each announcement about `namespace` heard on one connection, until it is
/// lost.
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
    notify(session, CHANNEL, namespace).await
}

async fn notify<'e>(executor: impl sqlx::PgExecutor<'e>, channel: &str, namespace: &str) {
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(namespace)
        .execute(executor)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, channel, "could not announce (listeners notice at their interval)");
    }
}

/// Announces publications of rankings computed from one namespace, over a connection of its
/// own to the catalog's Postgres (opened at the first announcement, again after a drop).
#[derive(Debug, Clone)]
pub struct Announcer {
    pool: sqlx::PgPool,
    namespace: String,
}

impl Announcer {
    /// `None` for a catalog that is not on Postgres (or whose URI does not parse: the lake
    /// would refuse it first).
    pub fn for_publications(settings: &LakeSettings) -> Option<Self> {
        if !on_postgres(settings) {
            return None;
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            // Bounded: a stalled Postgres must not hold up the run that announces.
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(&settings.catalog_uri)
            .ok()?;
        Some(Self {
            pool,
            namespace: settings.namespace.clone(),
        })
    }

    /// Announces a publication (best effort, as [`announce`]).
    pub async fn publication(&self) {
        notify(&self.pool, PUBLICATIONS_CHANNEL, &self.namespace).await
    }
}
