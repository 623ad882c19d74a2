//! What the file ingestor remembers, and the decisions it makes from it. Pure.
//!
//! The memory is a compacted Kafka topic written in the same transactions as the events (see
//! [`crate::publish`]), with three kinds of key:
//! - `file:<path>` → [`FileProgress`]: the last version of the object at that path we looked
//!   at, and how far we got (records published so far, or done, duplicate, quarantined);
//! - `sha256:<partner>:<hash>` → [`ContentSeen`]: content already published, so dropping the same
//!   bytes again (under any name) publishes nothing;
//! - `snapshot:<partner>` → [`SnapshotState`]: the partner's last full snapshot, to withdraw
//!   what the next one no longer contains.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How far a file got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Records `0..records_done` are in Kafka; the rest are not.
    InProgress,
    /// Every record is in Kafka (published or dead-lettered).
    Done,
    /// Same content as a file already done: nothing published.
    Duplicate,
    /// A bad file, moved to the quarantine prefix.
    Quarantined,
}

/// The ingestor's record of one object path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    /// Object path inside the inbox store.
    pub path: String,
    /// Partner owning it.
    pub partner: String,
    /// Size of the version we took.
    pub size: u64,
    /// ETag of the version we took (may be absent on some stores).
    pub e_tag: Option<String>,
    /// Last-modified of the version we took, RFC 3339.
    pub last_modified: String,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Order of this file among all files taken (the `major` of its events' version).
    pub file_seq: i64,
    /// Where it is.
    pub status: FileStatus,
    /// Records already in Kafka (every record with a smaller ordinal).
    pub records_done: u64,
    /// Sale events published from it.
    pub published: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Sales withdrawn because this snapshot no longer has them.
    pub withdrawn: u64,
    /// Why, when quarantined or duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Content already published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSeen {
    /// The file that published it.
    pub path: String,
    /// Its sequence number.
    pub file_seq: i64,
}

/// A snapshot partner's last complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// The file.
    pub file_seq: i64,
    /// Object path (in the inbox store) of the sorted list of its sale ids, one per line.
    pub ids_path: String,
}

/// Everything read back from the progress topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressState {
    /// Per object path.
    pub files: BTreeMap<String, FileProgress>,
    /// Per `(partner, sha256)`.
    pub content: BTreeMap<(String, String), ContentSeen>,
    /// Per snapshot partner.
    pub snapshots: BTreeMap<String, SnapshotState>,
}

/// A progress-topic value did not parse: the topic was written by something else.
#[derive(Debug, thiserror::Error)]
#[error("progress record {key:?} is unreadable: {message}")]
pub struct ProgressError {
    /// The key.
    pub key: String,
    /// serde's message.
    pub message: String,
}

/// Key of a file's progress.
pub fn file_key(path: &str) -> String {
    format!("file:{path}")
}

/// Key of a content hash.
pub fn content_key(partner: &str, sha256: &str) -> String {
    format!("sha256:{partner}:{sha256}")
}

/// Key of a partner's snapshot state.
pub fn snapshot_key(partner: &str) -> String {
    format!("snapshot:{partner}")
}

impl ProgressState {
    /// Rebuilds the state from the topic's key → value map.
    pub fn from_records(records: &BTreeMap<String, Vec<u8>>) -> Result<Self, ProgressError> {
        let mut state = ProgressState::default();
        for (key, value) in records {
            let bad = |e: serde_json::Error| ProgressError {
                key: key.clone(),
                message: e.to_string(),
            };
            if let Some(path) = key.strip_prefix("file:") {
                state.files.insert(
                    path.to_string(),
                    serde_json::from_slice(value).map_err(bad)?,
                );
            } else if let Some(rest) = key.strip_prefix("sha256:") {
                let (partner, hash) = rest.rsplit_once(':').ok_or_else(|| ProgressError {
                    key: key.clone(),
                    message: "expected sha256:<partner>:<hash>".into(),
                })?;
                state.content.insert(
                    (partner.to_string(), hash.to_string()),
                    serde_json::from_slice(value).map_err(bad)?,
                );
            } else if let Some(partner) = key.strip_prefix("snapshot:") {
                state.snapshots.insert(
                    partner.to_string(),
                    serde_json::from_slice(value).map_err(bad)?,
                );
            } else {
                return Err(ProgressError {
                    key: key.clone(),
                    message: "unknown key kind".into(),
                });
            }
        }
        Ok(state)
    }

    /// The next file sequence number: one more than any used.
    pub fn next_file_seq(&self) -> i64 {
        let files = self.files.values().map(|f| f.file_seq);
        let content = self.content.values().map(|c| c.file_seq);
        let snapshots = self.snapshots.values().map(|s| s.file_seq);
        files.chain(content).chain(snapshots).max().unwrap_or(0) + 1
    }
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Path.
    pub path: String,
    /// Size.
    pub size: u64,
    /// ETag.
    pub e_tag: Option<String>,
    /// Last modified, RFC 3339.
    pub last_modified: String,
}

/// What to do with a listed object, before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// We already finished exactly this version: nothing to do.
    Skip,
    /// New, or a different version than the one we know: read it (check, hash, publish).
    Take,
    /// We were in the middle of exactly this version when we stopped: read it and publish
    /// from record `records_done` on, under the same sequence number.
    Resume {
        /// Sequence number already given to it.
        file_seq: i64,
        /// Records already in Kafka.
        records_done: u64,
        /// Its hash, to check the content did not change under the same ETag.
        sha256: String,
    },
}

/// Decides what to do with `listed` given what we know of its path.
pub fn plan(known: Option<&FileProgress>, listed: &Listed) -> Plan {
    let Some(known) = known else {
        return Plan::Take;
    };
    let same_version = known.size == listed.size
        && known.last_modified == listed.last_modified
        && (known.e_tag.is_none() || known.e_tag == listed.e_tag);
    if !same_version {
        return Plan::Take;
    }
    match known.status {
        FileStatus::Done | FileStatus::Duplicate => Plan::Skip,
        // A quarantined file was moved away; the same version showing up again is a re-drop.
        FileStatus::Quarantined => Plan::Take,
        FileStatus::InProgress => Plan::Resume {
            file_seq: known.file_seq,
            records_done: known.records_done,
            sha256: known.sha256.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Listed {
        Listed {
            path: "acme/a.csv".into(),
            size: 10,
            e_tag: Some("e1".into()),
            last_modified: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn known(status: FileStatus) -> FileProgress {
        FileProgress {
            path: "acme/a.csv".into(),
            partner: "acme".into(),
            size: 10,
            e_tag: Some("e1".into()),
            last_modified: "2026-01-01T00:00:00Z".into(),
            sha256: "h".into(),
            file_seq: 4,
            status,
            records_done: 7,
            published: 7,
            rejected: 0,
            withdrawn: 0,
            note: None,
        }
    }

    #[test]
    fn plans_follow_what_we_know_of_the_version() {
        assert_eq!(plan(None, &listed()), Plan::Take);
        assert_eq!(plan(Some(&known(FileStatus::Done)), &listed()), Plan::Skip);
        assert_eq!(
            plan(Some(&known(FileStatus::Duplicate)), &listed()),
            Plan::Skip
        );
        assert_eq!(
            plan(Some(&known(FileStatus::InProgress)), &listed()),
            Plan::Resume {
                file_seq: 4,
                records_done: 7,
                sha256: "h".into()
            }
        );
        let mut changed = listed();
        changed.last_modified = "2026-01-02T00:00:00Z".into();
        assert_eq!(plan(Some(&known(FileStatus::Done)), &changed), Plan::Take);
        assert_eq!(
            plan(Some(&known(FileStatus::InProgress)), &changed),
            Plan::Take
        );
        assert_eq!(
            plan(Some(&known(FileStatus::Quarantined)), &listed()),
            Plan::Take
        );
    }

    #[test]
    fn state_round_trips_through_topic_records() {
        let mut records = BTreeMap::new();
        records.insert(
            file_key("acme/a.csv"),
            serde_json::to_vec(&known(FileStatus::Done)).unwrap(),
        );
        records.insert(
            content_key("acme", "abc"),
            serde_json::to_vec(&ContentSeen {
                path: "acme/a.csv".into(),
                file_seq: 9,
            })
            .unwrap(),
        );
        records.insert(
            snapshot_key("acme"),
            serde_json::to_vec(&SnapshotState {
                file_seq: 2,
                ids_path: "_state/acme/2.ids".into(),
            })
            .unwrap(),
        );
        let state = ProgressState::from_records(&records).unwrap();
        assert_eq!(state.files["acme/a.csv"].file_seq, 4);
        assert_eq!(state.content[&("acme".into(), "abc".into())].file_seq, 9);
        assert_eq!(state.next_file_seq(), 10);
        assert_eq!(ProgressState::default().next_file_seq(), 1);

        records.insert("junk".into(), b"{}".to_vec());
        assert!(ProgressState::from_records(&records).is_err());
    }
}
