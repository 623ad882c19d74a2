//! The inbox through `object_store`: a local folder or an `s3://bucket/prefix`.
//!
//! Layout under the inbox root: `<partner folder>/…/<file>` for partners' drops, and three
//! reserved prefixes the ingestor owns (anything starting with `_` is never taken as a drop):
//! - `_quarantine/<original path>` + `<original path>.reason.txt`: bad files, moved aside;
//!   deleted after `quarantine_retention_s`;
//! - `_processed/<original path>`: files whose every record is in Kafka, moved aside so a poll
//!   lists only what waits; deleted after `processed_retention_s`;
//! - `_state/…`: small state objects (a snapshot partner's list of sale ids).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tributary_common::S3Settings;

use super::progress::Listed;

/// Prefix of quarantined files.
pub const QUARANTINE: &str = "_quarantine";
/// Prefix of files whose every record is in Kafka, moved out of the way.
pub const PROCESSED: &str = "_processed";
/// Prefix of the ingestor's state objects.
pub const STATE: &str = "_state";

/// A blocking reader over an object's bytes, streamed from the store.
pub type ObjectReader =
    SyncIoBridge<StreamReader<BoxStream<'static, std::io::Result<Bytes>>, Bytes>>;

/// An object-store call failed.
#[derive(Debug, thiserror::Error)]
#[error("inbox {inbox}: {action}: {source}")]
pub struct InboxError {
    /// Inbox URL.
    pub inbox: String,
    /// What we were doing.
    pub action: String,
    /// The store's error.
    #[source]
    pub source: object_store::Error,
}

/// The inbox.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn ObjectStore>,
    /// `file:///abs/dir` or `s3://bucket/prefix`, without a trailing slash.
    url: String,
    /// Prefix inside the store (empty for a local folder, the key prefix for S3).
    prefix: Path,
    /// The canonical root of a local inbox: nothing outside it is ever read (a symlink out of
    /// it is moved into `_quarantine` with its reason, its target left untouched).
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("url", &self.url).finish()
    }
}

impl Inbox {
    /// Opens `location`: `s3://bucket[/prefix]`, or a local folder (created if missing).
    pub fn open(location: &str, s3: &S3Settings) -> Result<Self, InboxError> {
        let error = |action: &str, source| InboxError {
            inbox: location.to_string(),
            action: action.to_string(),
            source,
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(&s3.endpoint)
                .with_access_key_id(&s3.access_key_id)
                .with_secret_access_key(&s3.secret_access_key)
                .with_region(&s3.region)
                .with_allow_http(s3.endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|e| error("configure S3", e))?;
            let prefix = prefix.trim_matches('/');
            Ok(Self {
                store: Arc::new(store),
                url: format!(
                    "s3://{bucket}{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("/{prefix}")
                    }
                ),
                prefix: Path::from(prefix),
                local_root: None,
            })
        } else {
            std::fs::create_dir_all(location).map_err(|e| {
                error(
                    "create the folder",
                    object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                )
            })?;
            let store = LocalFileSystem::new_with_prefix(location)
                .map_err(|e| error("open the folder", e))?;
            let absolute = std::fs::canonicalize(location).map_err(|e| {
                error(
                    "resolve the folder",
                    object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                )
            })?;
            Ok(Self {
                store: Arc::new(store),
                url: format!("file://{}", absolute.display()),
                prefix: Path::default(),
                local_root: Some(absolute),
            })
        }
    }

    /// The inbox's URL (`file:///…` or `s3://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full URL of an object (`path` relative to the inbox root).
    pub fn object_url(&self, path: &str) -> String {
        format!("{}/{path}", self.url)
    }

    /// The store path of `path` (relative to the inbox root), taken as it is: `path` comes from a
    /// listing or is built from one, so it must not be percent-encoded again (`Path::from`
    /// would turn `março.csv` into `mar%C3%A7o.csv`, an object that does not exist). Only a
    /// path `Path::parse` refuses (an empty or `..` segment) is encoded.
    fn full(&self, path: &str) -> Path {
        let full = if self.prefix.as_ref().is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full))
    }

    fn relative(&self, location: &Path) -> String {
        let full = location.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(prefix)
                .map(|p| p.trim_start_matches('/').to_string())
                .unwrap_or_else(|| full.to_string())
        }
    }

    fn error(
        &self,
        action: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> InboxError + '_ {
        let action = action.into();
        move |source| InboxError {
            inbox: self.url.clone(),
            action,
            source,
        }
    }

    /// Drops waiting in the inbox (reserved `_…` prefixes excluded), oldest first, then by
    /// path, so files are taken in the order they arrived. Only objects at least `min_age`
    /// old are listed (S3 stamps whole seconds, so a fresh object can look up to a second
    /// younger than it is; 0 takes everything).
    ///
    /// The root is listed one level deep and only the partner folders are listed whole: the
    /// reserved prefixes (`_processed`, `_quarantine`, `_state`), which grow with history, are
    /// never walked, so a poll costs what is waiting.
    pub async fn list(&self, min_age: chrono::Duration) -> Result<Vec<Listed>, InboxError> {
        let root = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let top = self
            .store
            .list_with_delimiter(root)
            .await
            .map_err(self.error("list"))?;
        let mut objects = top.objects;
        for folder in top.common_prefixes {
            let name = self.relative(&folder);
            if is_reserved(&name) {
                continue;
            }
            let inside: Vec<_> = self
                .store
                .list(Some(&folder))
                .try_collect()
                .await
                .map_err(self.error(format!("list {name}")))?;
            objects.extend(inside);
        }
        let objects = self.confined(objects).await?;
        let now = Utc::now();
        let mut listed: Vec<(DateTime<Utc>, Listed)> = objects
            .into_iter()
            .filter_map(|meta| {
                let path = self.relative(&meta.location);
                (!is_reserved(&path) && (min_age.is_zero() || now - meta.last_modified >= min_age))
                    .then(|| {
                        (
                            meta.last_modified,
                            Listed {
                                path,
                                size: meta.size,
                                e_tag: meta.e_tag,
                                last_modified: meta
                                    .last_modified
                                    .to_rfc3339_opts(SecondsFormat::Micros, true),
                            },
                        )
                    })
            })
            .collect();
        listed.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
        Ok(listed.into_iter().map(|(_, l)| l).collect())
    }

    /// Of a local inbox's listing, the objects inside its root. `object_store` follows symbolic
    /// links, so a link out of the root would have the ingestor read (and dead-letter lines of)
    /// any file the process can read: each such link — the link itself, never its target — is
    /// moved to `_quarantine` next to a `.reason.txt`, and what lies behind it is not listed.
    async fn confined(
        &self,
        objects: Vec<object_store::ObjectMeta>,
    ) -> Result<Vec<object_store::ObjectMeta>, InboxError> {
        let Some(root) = &self.local_root else {
            return Ok(objects);
        };
        let mut kept = Vec::with_capacity(objects.len());
        let mut quarantined = std::collections::BTreeSet::new();
        for meta in objects {
            let path = self.relative(&meta.location);
            // Reserved prefixes are never taken (links already quarantined live there).
            if path.starts_with('_') {
                kept.push(meta);
                continue;
            }
            match escaping_link(root, &path) {
                None => kept.push(meta),
                Some(link) => {
                    if quarantined.insert(link.clone()) {
                        self.quarantine_link(root, &link).await?;
                    }
                }
            }
        }
        Ok(kept)
    }

    async fn quarantine_link(&self, root: &std::path::Path, link: &str) -> Result<(), InboxError> {
        let target = format!("{QUARANTINE}/{link}");
        let pointee = std::fs::read_link(root.join(link))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let reason = format!(
            "{link} is a symbolic link to {pointee}, outside the inbox: refused, the link moved here, its target left untouched"
        );
        tracing::warn!(
            link,
            pointee,
            "inbox: symbolic link out of the inbox quarantined"
        );
        self.put_text(&format!("{target}.reason.txt"), format!("{reason}\n"))
            .await?;
        let io = |e: std::io::Error| {
            self.error(format!("move the link {link} to {target}"))(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        };
        let to = root.join(&target);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::rename(root.join(link), to).map_err(io)
    }

    /// A blocking reader over the object's bytes, streamed (for use on a blocking thread).
    pub async fn reader(&self, path: &str) -> Result<ObjectReader, InboxError> {
        let result = self
            .store
            .get(&self.full(path))
            .await
            .map_err(self.error(format!("read {path}")))?;
        let stream: BoxStream<'static, std::io::Result<Bytes>> =
            Box::pin(result.into_stream().map_err(std::io::Error::other));
        Ok(SyncIoBridge::new(StreamReader::new(stream)))
    }

    /// Writes a small object (state, reason files).
    pub async fn put_text(&self, path: &str, text: String) -> Result<(), InboxError> {
        self.store
            .put(&self.full(path), PutPayload::from(text))
            .await
            .map_err(self.error(format!("write {path}")))?;
        Ok(())
    }

    /// Reads a small object whole.
    pub async fn get_text(&self, path: &str) -> Result<String, InboxError> {
        let bytes = self
            .store
            .get(&self.full(path))
            .await
            .map_err(self.error(format!("read {path}")))?
            .bytes()
            .await
            .map_err(self.error(format!("read {path}")))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Moves a bad file to `_quarantine/<path>` next to a `.reason.txt`, reason first so a
    /// quarantined file never lacks its reason. Returns the quarantined path.
    pub async fn quarantine(&self, path: &str, reason: &str) -> Result<String, InboxError> {
        let target = format!("{QUARANTINE}/{path}");
        self.put_text(&format!("{target}.reason.txt"), format!("{reason}\n"))
            .await?;
        self.store
            .copy(&self.full(path), &self.full(&target))
            .await
            .map_err(self.error(format!("copy {path} to {target}")))?;
        self.store
            .delete(&self.full(path))
            .await
            .map_err(self.error(format!("delete {path}")))?;
        Ok(target)
    }

    /// Moves a file whose every record is in Kafka to `_processed/<path>` (replacing a version
    /// archived earlier under the same path: the lake keeps every event, the archive the latest
    /// copy of each path for `processed_retention_s`). Returns the archived path.
    pub async fn archive(&self, path: &str) -> Result<String, InboxError> {
        let target = format!("{PROCESSED}/{path}");
        self.store
            .rename(&self.full(path), &self.full(&target))
            .await
            .map_err(self.error(format!("move {path} to {target}")))?;
        Ok(target)
    }

    /// Deletes the objects under the reserved `prefix` (`_processed`, `_quarantine`) last
    /// modified before `before`. Returns how many went.
    pub async fn expire(&self, prefix: &str, before: DateTime<Utc>) -> Result<u64, InboxError> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.full(prefix)))
            .try_collect()
            .await
            .map_err(self.error(format!("list {prefix}")))?;
        let mut deleted = 0;
        for meta in objects.iter().filter(|m| m.last_modified < before) {
            self.store
                .delete(&meta.location)
                .await
                .map_err(self.error(format!("delete {}", meta.location)))?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Puts bytes at `path` (tests and the demo drop files this way).
    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<(), InboxError> {
        self.store
            .put(&self.full(path), PutPayload::from(bytes))
            .await
            .map_err(self.error(format!("write {path}")))?;
        Ok(())
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool, InboxError> {
        match self.store.head(&self.full(path)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(format!("head {path}"))(e)),
        }
    }
}

/// Whether a path (relative to the inbox root) is the ingestor's own or hidden: under a `_…`
/// prefix, or with a `.…` segment. Never taken as a drop.
fn is_reserved(path: &str) -> bool {
    path.starts_with('_') || path.split('/').any(|s| s.starts_with('.'))
}

/// The first component of `relative` (under the canonical `root`) that is a symbolic link
/// resolving outside `root`, as a relative path; `None` when the whole path stays inside.
fn escaping_link(root: &std::path::Path, relative: &str) -> Option<String> {
    let mut prefix = std::path::PathBuf::new();
    for part in relative.split('/') {
        prefix.push(part);
        let here = root.join(&prefix);
        let is_link = std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && !std::fs::canonicalize(&here).is_ok_and(|c| c.starts_with(root)) {
            return Some(prefix.to_string_lossy().into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_inbox(test: &str) -> (Inbox, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tributary-inbox-{test}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let inbox = Inbox::open(dir.to_str().unwrap(), &S3Settings::default()).unwrap();
        (inbox, dir)
    }

    /// A partner's file named with accents, spaces and URL-special characters is listed and read
    /// under the name it has (it was once looked up percent-encoded, never found, and retried
    /// on every poll).
    #[tokio::test]
    async fn local_names_with_accents_and_spaces_are_read() {
        let (inbox, dir) = local_inbox("names");
        std::fs::create_dir_all(dir.join("acme")).unwrap();
        for name in ["vendas março.csv", "ação 100%.csv", "a#b[1].csv"] {
            std::fs::write(dir.join("acme").join(name), format!("id\n{name}\n")).unwrap();
        }
        let listed = inbox.list(chrono::Duration::zero()).await.unwrap();
        let mut paths: Vec<&str> = listed.iter().map(|l| l.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "acme/a#b[1].csv",
                "acme/ação 100%.csv",
                "acme/vendas março.csv"
            ]
        );
        for path in paths {
            let name = path.trim_start_matches("acme/");
            assert_eq!(inbox.get_text(path).await.unwrap(), format!("id\n{name}\n"));
            let quarantined = inbox.quarantine(path, "test").await.unwrap();
            assert!(inbox.exists(&quarantined).await.unwrap(), "{quarantined}");
            assert!(!inbox.exists(path).await.unwrap());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A file archived after ingestion leaves the listing; `expire` deletes what is older than
    /// its cutoff under a reserved prefix, and nothing else.
    #[tokio::test]
    async fn archived_files_are_not_listed_and_expire() {
        let (inbox, dir) = local_inbox("archive");
        std::fs::create_dir_all(dir.join("acme/2026")).unwrap();
        for name in ["acme/a.csv", "acme/2026/b.csv", "acme/c.csv"] {
            std::fs::write(dir.join(name), "id\n1\n").unwrap();
        }
        assert_eq!(inbox.list(chrono::Duration::zero()).await.unwrap().len(), 3);
        for path in ["acme/a.csv", "acme/2026/b.csv"] {
            assert_eq!(
                inbox.archive(path).await.unwrap(),
                format!("{PROCESSED}/{path}")
            );
        }
        inbox.quarantine("acme/c.csv", "bad").await.unwrap();
        assert!(
            inbox
                .list(chrono::Duration::zero())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(inbox.exists("_processed/acme/2026/b.csv").await.unwrap());

        // One archived file from long ago: only it goes.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(dir.join("_processed/acme/a.csv"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cutoff = Utc::now() - chrono::Duration::days(7);
        assert_eq!(inbox.expire(PROCESSED, cutoff).await.unwrap(), 1);
        assert!(!inbox.exists("_processed/acme/a.csv").await.unwrap());
        assert!(inbox.exists("_processed/acme/2026/b.csv").await.unwrap());
        assert_eq!(inbox.expire(QUARANTINE, cutoff).await.unwrap(), 0);
        assert!(inbox.exists("_quarantine/acme/c.csv").await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A symbolic link out of a local inbox (to a file, or to a folder) is never read: the link
    /// is quarantined with its reason, the target stays where it was, untouched; a link that
    /// stays inside the inbox is an ordinary file.
    #[tokio::test]
    async fn links_out_of_a_local_inbox_are_quarantined_not_followed() {
        let (inbox, dir) = local_inbox("links");
        let secret_dir =
            std::env::temp_dir().join(format!("tributary-secret-{}", std::process::id()));
        std::fs::create_dir_all(&secret_dir).unwrap();
        std::fs::write(secret_dir.join("passwd.csv"), "root:x:0:0\n").unwrap();
        std::fs::create_dir_all(dir.join("acme")).unwrap();
        std::fs::write(dir.join("acme/ok.csv"), "id\n1\n").unwrap();
        let canonical = std::fs::canonicalize(&dir).unwrap();
        std::os::unix::fs::symlink(secret_dir.join("passwd.csv"), dir.join("acme/leak.csv"))
            .unwrap();
        std::os::unix::fs::symlink(&secret_dir, dir.join("acme/dir")).unwrap();
        std::os::unix::fs::symlink(canonical.join("acme/ok.csv"), dir.join("acme/alias.csv"))
            .unwrap();

        let listed = inbox.list(chrono::Duration::zero()).await.unwrap();
        let mut paths: Vec<&str> = listed.iter().map(|l| l.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["acme/alias.csv", "acme/ok.csv"]);
        for link in ["acme/leak.csv", "acme/dir"] {
            let moved = dir.join(QUARANTINE).join(link);
            assert!(
                std::fs::symlink_metadata(&moved)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{link}"
            );
            let reason = inbox
                .get_text(&format!("{QUARANTINE}/{link}.reason.txt"))
                .await
                .unwrap();
            assert!(reason.contains("outside the inbox"), "{reason}");
        }
        assert_eq!(
            std::fs::read_to_string(secret_dir.join("passwd.csv")).unwrap(),
            "root:x:0:0\n"
        );
        // Listed again: nothing more to quarantine, the same two files.
        assert_eq!(inbox.list(chrono::Duration::zero()).await.unwrap().len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(secret_dir).unwrap();
    }
}
