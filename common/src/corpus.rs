//! Committed bad-input corpora, for tests: a folder of inputs (one file each) with an
//! `expectations.toml` saying what must become of each (`ingest/tests/bad-inputs/…`,
//! `lake/tests/bad-inputs/…`, `api/tests/bad-inputs/…`).

use std::path::Path;

use serde::de::DeserializeOwned;

/// The name of a corpus folder's expectations file.
pub const EXPECTATIONS: &str = "expectations.toml";

/// Reads `dir`'s [`EXPECTATIONS`] as `T` and checks that `listed` (the file names it names, in
/// order) are exactly the folder's other files, in name order: no input without an
/// expectation, none named that is not there. Panics otherwise (a test's setup).
pub fn load<T: DeserializeOwned>(dir: &Path, listed: impl Fn(&T) -> Vec<String>) -> T {
    let text = std::fs::read_to_string(dir.join(EXPECTATIONS))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(EXPECTATIONS).display()));
    let corpus: T = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(EXPECTATIONS).display()));
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .to_string()
        })
        .filter(|name| name != EXPECTATIONS)
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        listed(&corpus),
        "{}: every input has one expectation, in name order",
        dir.display()
    );
    corpus
}
