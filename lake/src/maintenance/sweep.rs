//! The file sweep: whatever in a table's folder no kept snapshot reaches is deleted, once older
//! than the grace period. One rule covers the files of expired snapshots, metadata files that
//! left the metadata log, and leftovers of a commit that crashed between writing and committing.
//!
//! Manifests and manifest lists never change once written, so what each one reaches is cached
//! between runs: a run reads only the lists and manifests committed since the last one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::table::Table;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tributary_common::LakeSettings;
use tributary_raw::catalog::{Warehouse, warehouse};
use tributary_raw::incremental::manifest_list;

use crate::error::LakeError;

/// The warehouse's object store, and how Iceberg locations map to its keys.
pub(super) struct WarehouseStore {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/` for S3; `/` for a local folder (keys are absolute paths without it).
    root: String,
}

impl WarehouseStore {
    pub(super) fn new(lake: &LakeSettings) -> Result<Self, LakeError> {
        let cwd = std::env::current_dir().unwrap_or_default();
        match warehouse(lake, &cwd)? {
            Warehouse::S3(url) => {
                let rest = url.trim_start_matches("s3://");
                let bucket = rest.split('/').next().unwrap_or(rest);
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_endpoint(&lake.s3.endpoint)
                    .with_access_key_id(&lake.s3.access_key_id)
                    .with_secret_access_key(&lake.s3.secret_access_key)
                    .with_region(&lake.s3.region)
                    .with_allow_http(lake.s3.endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false)
                    .build()
                    .map_err(|source| LakeError::Store {
                        action: "configure",
                        location: url.clone(),
                        source: Box::new(source),
                    })?;
                Ok(Self {
                    store: Arc::new(store),
                    root: format!("s3://{bucket}/"),
                })
            }
            Warehouse::Local(_) => Ok(Self {
                store: Arc::new(object_store::local::LocalFileSystem::new()),
                root: "/".to_string(),
            }),
        }
    }

    /// The store key of an Iceberg location, if it is in this warehouse.
    fn key(&self, location: &str) -> Option<StorePath> {
        let location = location.strip_prefix("file://").unwrap_or(location);
        let key = location.strip_prefix(&self.root)?;
        StorePath::parse(key.trim_end_matches('/')).ok()
    }

    /// The Iceberg location of a store key.
    fn location(&self, key: &StorePath) -> String {
        format!("{}{}", self.root, key.as_ref())
    }
}

/// What the manifest lists and manifests read so far reach (they are immutable).
#[derive(Debug, Default)]
pub(super) struct ReachCache {
    /// Manifest list → its manifests.
    lists: HashMap<String, Vec<String>>,
    /// Manifest → its live data files.
    manifests: HashMap<String, Vec<String>>,
}

/// What a sweep found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Swept {
    pub files_deleted: usize,
    pub bytes_deleted: u64,
    pub files_kept: usize,
    pub bytes_kept: u64,
}

/// Deletes the files under `table`'s `data/` and `metadata/` folders that neither its metadata
/// file, its metadata log nor any of its snapshots reach, and that were written before
/// `written_before`.
pub(super) async fn sweep(
    table: &Table,
    store: &WarehouseStore,
    cache: &mut ReachCache,
    written_before: chrono::DateTime<chrono::Utc>,
) -> Result<Swept, LakeError> {
    let qualified = table.identifier().to_string();
    let metadata = table.metadata();
    let Some(table_key) = store.key(metadata.location()) else {
        tracing::warn!(table = %qualified, location = metadata.location(), "table outside the warehouse: not swept");
        return Ok(Swept::default());
    };

    let mut reachable: HashSet<String> = HashSet::new();
    reachable.extend(table.metadata_location().map(str::to_string));
    reachable.extend(
        metadata
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.clone()),
    );
    let mut lists = HashMap::new();
    let mut manifests = HashMap::new();
    for snapshot in metadata.snapshots() {
        let list_path = snapshot.manifest_list().to_string();
        let manifest_paths = match cache.lists.remove(&list_path) {
            Some(paths) => paths,
            None => {
                let list = manifest_list(table, snapshot, &qualified).await?;
                let mut paths = Vec::with_capacity(list.entries().len());
                for manifest_file in list.entries() {
                    let path = manifest_file.manifest_path.clone();
                    if !cache.manifests.contains_key(&path) && !manifests.contains_key(&path) {
                        let manifest = manifest_file.load_manifest(table.file_io()).await.map_err(
                            |source| LakeError::Iceberg {
                                action: "read manifest",
                                table: qualified.clone(),
                                source: Box::new(source),
                            },
                        )?;
                        let files: Vec<String> = manifest
                            .entries()
                            .iter()
                            .filter(|e| e.is_alive())
                            .map(|e| e.file_path().to_string())
                            .collect();
                        manifests.insert(path.clone(), files);
                    }
                    paths.push(path);
                }
                paths
            }
        };
        for path in &manifest_paths {
            if let Some(files) = cache.manifests.remove(path) {
                manifests.insert(path.clone(), files);
            }
        }
        reachable.insert(list_path.clone());
        lists.insert(list_path, manifest_paths);
    }
    for (path, files) in &manifests {
        reachable.insert(path.clone());
        reachable.extend(files.iter().cloned());
    }
    // Only what the kept snapshots reach stays cached.
    cache.lists = lists;
    cache.manifests = manifests;

    let folders = [
        format!("{}/data/", table_key.as_ref()),
        format!("{}/metadata/", table_key.as_ref()),
    ];
    let store_err = |action| {
        let location = metadata.location().to_string();
        move |source| LakeError::Store {
            action,
            location,
            source: Box::new(source),
        }
    };
    let mut swept = Swept::default();
    let mut doomed = Vec::new();
    let objects: Vec<object_store::ObjectMeta> = store
        .store
        .list(Some(&table_key))
        .try_collect()
        .await
        .map_err(store_err("list"))?;
    for object in objects {
        let location = store.location(&object.location);
        let in_folders = folders
            .iter()
            .any(|f| object.location.as_ref().starts_with(f));
        let old_enough = object.last_modified < written_before;
        if in_folders && old_enough && !reachable.contains(&location) {
            doomed.push(object);
        } else {
            swept.files_kept += 1;
            swept.bytes_kept += object.size;
        }
    }
    // Paranoia: a kept snapshot whose files are all about to go means the reachability above
    // is wrong (a location format this sweep does not know); delete nothing then.
    if metadata.current_snapshot().is_some() && swept.files_kept == 0 && !doomed.is_empty() {
        tracing::error!(table = %qualified, doomed = doomed.len(), "sweep would delete every file of a table with a current snapshot; refusing");
        return Ok(swept);
    }
    for object in doomed {
        match store.store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                swept.files_deleted += 1;
                swept.bytes_deleted += object.size;
            }
            Err(source) => return Err(store_err("delete")(source)),
        }
    }
    Ok(swept)
}
