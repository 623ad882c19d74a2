//! What the pipeline has not caught up with, judged against thresholds (`[health]`): the
//! replication slots of the source Postgres (the WAL a slot holds until Debezium has read it,
//! and how much more it may hold before Postgres invalidates it: `max_slot_wal_keep_size`), and
//! the age of the newest event each source has in the published rankings. The status page
//! colours its stages by these, `/metrics` exports the slots, and the alerts fire on them, so a
//! stage that falls minutes behind shows amber or red even while it still commits.
//!
//! The judgements are pure ([`judge_slot`], [`judge_age`]); [`Watch::slots`] reads Postgres (one kept
//! connection, an answer shared for a second), [`lander_backlog`] the lander's `/readyz`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Thresholds, and where the source Postgres is (`[health]`, `TRIBUTARY_HEALTH__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// The source Postgres whose replication slots are watched; empty: not watched.
    pub source_url: String,
    /// A slot holding this much WAL is amber (Debezium behind or stopped).
    pub slot_warn_bytes: u64,
    /// A slot holding this much WAL is red (the local stack's `max_slot_wal_keep_size` is
    /// 4 GB: past it the slot is lost and Debezium must snapshot again).
    pub slot_down_bytes: u64,
    /// A source whose newest published event is this old is amber.
    pub freshness_warn_s: u64,
    /// … and red at this age.
    pub freshness_down_s: u64,
    /// The lander's ops listener (its `/readyz` reports the records waiting in Kafka): the
    /// status page's Kafka stage. Empty: not watched.
    pub lander_url: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            source_url: "postgres://tributary:tributary@127.0.0.1:5432/salesdb".into(),
            slot_warn_bytes: 1 << 30,
            slot_down_bytes: 3 << 30,
            freshness_warn_s: 300,
            freshness_down_s: 1_800,
            lander_url: "http://127.0.0.1:9101".into(),
        }
    }
}

/// How a stage is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Caught up.
    Ok,
    /// Behind, or its reader is gone.
    Warn,
    /// Far behind, or data is about to be (or was) lost.
    Down,
}

impl Level {
    /// `ok`, `warn`, `down`: the status page's classes.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Down => "down",
        }
    }
}

/// One logical replication slot of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// Its name (Debezium's `slot.name`).
    pub name: String,
    /// A reader is connected.
    pub active: bool,
    /// Postgres' `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: String,
    /// WAL held for it: current LSN − its restart LSN, bytes.
    pub retained_bytes: i64,
    /// WAL it may still take before it is lost (`None`: no `max_slot_wal_keep_size`).
    pub safe_wal_bytes: Option<i64>,
}

/// A slot's level: red once lost or about to be, or holding `slot_down_bytes`; amber holding
/// `slot_warn_bytes` or without a reader.
pub fn judge_slot(slot: &SlotState, settings: &HealthSettings) -> Level {
    let retained = u64::try_from(slot.retained_bytes).unwrap_or(0);
    if matches!(slot.wal_status.as_str(), "lost" | "unreserved")
        || retained >= settings.slot_down_bytes
    {
        Level::Down
    } else if retained >= settings.slot_warn_bytes || !slot.active {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// A source's level from the age (seconds) of its newest published event.
pub fn judge_age(age_s: i64, settings: &HealthSettings) -> Level {
    let age = u64::try_from(age_s).unwrap_or(0);
    if age >= settings.freshness_down_s {
        Level::Down
    } else if age >= settings.freshness_warn_s {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// `1.5 GiB`, `12 MiB`, `900 B`.
pub fn human_bytes(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    match bytes.max(0) {
        0..1_024 => format!("{bytes} B"),
        1_024..1_048_576 => format!("{:.0} KiB", b / 1_024.0),
        1_048_576..1_073_741_824 => format!("{:.0} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

const SLOTS_SQL: &str = "SELECT slot_name::text, active, coalesce(wal_status, '')::text,
    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
    safe_wal_size::bigint
FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY slot_name";

/// The health settings in force, and the source Postgres's slots read over one kept connection
/// (reopened when it breaks), each answer shared for a second: the status page, `/metrics` and
/// `/readyz` all ask, and a flood of them must not become a flood of connections.
pub struct Watch {
    /// The thresholds and where the source is.
    pub settings: HealthSettings,
    slots: tokio::sync::Mutex<SlotReads>,
}

#[derive(Default)]
struct SlotReads {
    client: Option<tokio_postgres::Client>,
    latest: Option<(std::time::Instant, Result<Vec<SlotState>, String>)>,
}

/// How long one reading of the slots is given again.
const SLOTS_REUSE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// Watches by `settings`.
    pub fn new(settings: HealthSettings) -> Self {
        Self {
            settings,
            slots: tokio::sync::Mutex::default(),
        }
    }

    /// The logical replication slots of the source Postgres, within `timeout`; `None` when it
    /// is not watched (`source_url` empty).
    pub async fn slots(&self, timeout: Duration) -> Option<Result<Vec<SlotState>, String>> {
        if self.settings.source_url.is_empty() {
            return None;
        }
        let mut reads = self.slots.lock().await;
        if let Some((at, slots)) = &reads.latest
            && at.elapsed() < SLOTS_REUSE
        {
            return Some(slots.clone());
        }
        let url = self.settings.source_url.clone();
        let kept = reads.client.take().filter(|c| !c.is_closed());
        let read = async move {
            let client = match kept {
                Some(client) => client,
                None => {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("connect to the source Postgres: {e}"))?;
                    tokio::spawn(connection);
                    client
                }
            };
            let slots = read_slots(&client).await?;
            Ok::<_, String>((client, slots))
        };
        let result = match tokio::time::timeout(timeout, read).await {
            Ok(Ok((client, slots))) => {
                reads.client = Some(client);
                Ok(slots)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!(
                "the source Postgres did not answer within {timeout:?}"
            )),
        };
        reads.latest = Some((std::time::Instant::now(), result.clone()));
        Some(result)
    }
}

async fn read_slots(client: &tokio_postgres::Client) -> Result<Vec<SlotState>, String> {
    let rows = client
        .query(SLOTS_SQL, &[])
        .await
        .map_err(|e| format!("read pg_replication_slots: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| SlotState {
            name: row.get(0),
            active: row.get(1),
            wal_status: row.get(2),
            retained_bytes: row.get(3),
            safe_wal_bytes: row.get(4),
        })
        .collect())
}

/// The lander's `backlog` check (records waiting in Kafka, time since its last commit), as
/// its `/readyz` at `lander_url` reports it (200 or 503 alike), within `timeout`.
pub async fn lander_backlog(
    lander_url: &str,
    timeout: Duration,
) -> Result<tributary_common::health::CheckReport, String> {
    let url = format!("{}/readyz", lander_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let readiness: tributary_common::health::Readiness = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("the lander did not answer: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the lander's /readyz is not a readiness report: {e}"))?;
    readiness
        .checks
        .into_iter()
        .find(|check| check.name == "backlog")
        .ok_or_else(|| "the lander reports no backlog check".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(active: bool, wal_status: &str, retained_bytes: i64) -> SlotState {
        SlotState {
            name: "debezium".into(),
            active,
            wal_status: wal_status.into(),
            retained_bytes,
            safe_wal_bytes: Some(1 << 30),
        }
    }

    #[test]
    fn slots_turn_amber_then_red_as_they_hold_wal() {
        let s = HealthSettings::default();
        assert_eq!(judge_slot(&slot(true, "reserved", 10 << 20), &s), Level::Ok);
        assert_eq!(
            judge_slot(&slot(true, "reserved", 1 << 30), &s),
            Level::Warn
        );
        assert_eq!(
            judge_slot(&slot(true, "extended", 3 << 30), &s),
            Level::Down
        );
        // No reader: amber even while it holds little.
        assert_eq!(judge_slot(&slot(false, "reserved", 0), &s), Level::Warn);
        // About to be lost, or lost.
        assert_eq!(judge_slot(&slot(true, "unreserved", 0), &s), Level::Down);
        assert_eq!(judge_slot(&slot(false, "lost", 0), &s), Level::Down);
    }

    #[test]
    fn sources_turn_amber_then_red_with_age() {
        let s = HealthSettings::default();
        assert_eq!(judge_age(299, &s), Level::Ok);
        assert_eq!(judge_age(300, &s), Level::Warn);
        assert_eq!(judge_age(1_800, &s), Level::Down);
        assert_eq!(judge_age(-5, &s), Level::Ok);
    }

    #[test]
    fn bytes_read_at_a_glance() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(12 << 20), "12 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
