//! Partner files: the CSV, JSON-array and NDJSON readers and the record mapping behind them.
//! The first byte picks the format, the rest is the file. Whatever the bytes, the reader ends
//! with records (each mapped to a sale or refused with a reason) or a file error; never a
//! panic, and never a record larger than the bound the ingestor promises Kafka.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tributary_ingest::files::map::map_record;
use tributary_ingest::files::parse::{Format, MAX_RECORD_BYTES, Tap, read_records};
use tributary_ingest::files::partners::{Partner, Partners};

/// The shipped mapping's partners, one per format's dialect.
static PARTNERS: LazyLock<Vec<Partner>> = LazyLock::new(|| {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/partners.toml");
    let partners = Partners::load(&path).expect("ingest/partners.toml");
    partners.partners.into_values().collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Csv,
        1 => Format::Json,
        _ => Format::Ndjson,
    };
    let partner = &PARTNERS[usize::from(selector / 3) % PARTNERS.len()];
    let now = chrono::Utc::now();
    let (tap, handle) = Tap::new(file);
    let mut visited = 0u64;
    let result = read_records(format, &partner.csv, tap, &handle, &mut |record| {
        visited += 1;
        // What the ingestor promises Kafka (parse.rs): a record JSON-escaped in its event or dead
        // letter stays within 6 × MAX_RECORD_BYTES (+ 64 KiB for the rest of the message).
        let escaped = serde_json::to_string(&(record.raw)()).expect("a String serializes");
        assert!(
            escaped.len() <= 6 * MAX_RECORD_BYTES + 64 * 1024,
            "a record of {} bytes once escaped",
            escaped.len()
        );
        if let Ok(fields) = record.fields {
            let _ = map_record(fields, partner, now);
        }
        true
    });
    if let Ok(records) = result {
        assert_eq!(
            records, visited,
            "records counted and records visited differ"
        );
    }
});
