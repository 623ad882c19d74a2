//! Streaming readers for partner files: CSV (`csv` crate), a JSON array (`serde_json`, one
//! element at a time) and NDJSON. Memory stays flat whatever the file size: one record at a
//! time is handed to a visitor.
//!
//! Two kinds of failure, on purpose:
//! - a **bad record** (a CSV row with the wrong number of fields, an NDJSON line that is not a
//!   JSON object) is reported to the visitor and the file goes on: it is dead-lettered;
//! - a **bad file** ([`FileError`]: not UTF-8, UTF-16/32, broken JSON syntax, a truncated last
//!   record) stops the read: the whole file is quarantined, nothing of it is published.
//!
//! Encoding: UTF-8, with or without a byte-order mark. UTF-16/UTF-32 (recognised by their BOM)
//! and any invalid UTF-8 are refused with the byte offset.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::map::{CsvFields, Fields};
use super::partners::CsvOptions;

/// Largest record accepted (an NDJSON line, a CSV row, a JSON element): beyond it the file is
/// refused (quarantined, `record_too_long`) rather than read into memory. Small enough that the
/// event or dead letter carrying the record stays under Kafka's default message size (1 MB)
/// even if JSON escapes every byte (×6): a larger one would be refused by the broker after the
/// file's earlier batches were committed. A sale row is a few hundred bytes.
pub const MAX_RECORD_BYTES: usize = 128 * 1024;

/// Kafka's default `message.max.bytes` (broker) and librdkafka's default producer limit.
pub const KAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

// JSON escapes a byte into at most six (`\u0001`); the event's other fields are small.
const _: () = assert!(MAX_RECORD_BYTES * 6 + 64 * 1024 < KAFKA_MESSAGE_MAX_BYTES);

/// The format of a partner file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv`: a header row, then one sale per row.
    Csv,
    /// `.json`: one array of sale objects.
    Json,
    /// `.ndjson` or `.jsonl`: one sale object per line.
    Ndjson,
}

impl Format {
    /// The format for a file name, case-insensitive; `None` for anything else.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => Format::Csv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            _ => return None,
        })
    }
}

/// The file as a whole cannot be read: it is quarantined.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not UTF-8.
    #[error("encoding: {0}")]
    Encoding(String),
    /// Structurally broken CSV.
    #[error("not valid CSV: {0}")]
    Csv(String),
    /// Not valid JSON, or not an array of objects.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The file ends in the middle of a record.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A CSV file without even a header row.
    #[error("empty file: no header row")]
    Empty,
    /// A record longer than [`MAX_RECORD_BYTES`].
    #[error("a record is longer than {MAX_RECORD_BYTES} bytes (near byte {0})")]
    RecordTooLong(u64),
    /// Reading the object failed (network, disk): not the file's fault, retry later.
    #[error("read failed: {0}")]
    Io(#[source] std::io::Error),
}

impl FileError {
    /// Whether the file itself is bad (quarantine) rather than the read failing (retry).
    pub fn is_bad_file(&self) -> bool {
        !matches!(self, FileError::Io(_))
    }

    /// Stable class, used as `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            FileError::Encoding(_) => "bad_encoding",
            FileError::Csv(_) => "bad_csv",
            FileError::Json(_) => "bad_json",
            FileError::Truncated(_) => "truncated",
            FileError::Empty => "empty_file",
            FileError::RecordTooLong(_) => "record_too_long",
            FileError::Io(_) => "io",
        }
    }
}

/// One record as read, before mapping.
pub struct RecordRef<'a> {
    /// 0-based position among the file's records (the header and blank lines do not count).
    pub ordinal: u64,
    /// 1-based line where the record starts (CSV, NDJSON); `None` inside a JSON array.
    pub line: Option<u64>,
    /// The record's text, for dead letters.
    pub raw: &'a dyn Fn() -> String,
    /// Its fields, or why it is not a record at all (`bad_record`).
    pub fields: Result<&'a dyn Fields, String>,
}

/// What the tap saw of the raw bytes: their hash, count and last byte.
#[derive(Debug, Clone, Default)]
pub struct TapSummary {
    /// SHA-256 of every byte, hex.
    pub sha256: String,
    /// Bytes read.
    pub bytes: u64,
}

#[derive(Default)]
struct TapState {
    hasher: Sha256,
    bytes: u64,
    last: Option<u8>,
}

/// A reader that hashes and counts what passes through, shared with whoever wants the
/// summary after the parser (which owns the reader) is done.
pub struct Tap<R> {
    inner: R,
    state: Arc<Mutex<TapState>>,
}

/// The handle to read a [`Tap`]'s summary.
#[derive(Clone)]
pub struct TapHandle(Arc<Mutex<TapState>>);

impl<R: Read> Tap<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> (Self, TapHandle) {
        let state = Arc::new(Mutex::new(TapState::default()));
        (
            Self {
                inner,
                state: state.clone(),
            },
            TapHandle(state),
        )
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut state = self.state.lock().expect("tap lock");
            state.hasher.update(&buf[..n]);
            state.bytes += n as u64;
            state.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

impl TapHandle {
    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.lock().expect("tap lock").bytes
    }

    fn ends_with_newline(&self) -> bool {
        self.0.lock().expect("tap lock").last == Some(b'\n')
    }

    /// The hash and count of everything read.
    pub fn summary(&self) -> TapSummary {
        let state = self.0.lock().expect("tap lock");
        TapSummary {
            sha256: hex::encode(state.hasher.clone().finalize()),
            bytes: state.bytes,
        }
    }
}

/// Reads every record of `reader` (which should be a [`Tap`] the caller holds the handle of)
/// and hands each to `visit`, until the end or until `visit` returns `false`. Returns the
/// number of records.
pub fn read_records<R: Read>(
    format: Format,
    csv: &CsvOptions,
    reader: R,
    tap: &TapHandle,
    visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
) -> Result<u64, FileError> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    strip_bom(&mut reader)?;
    match format {
        Format::Csv => read_csv(csv, reader, tap, visit),
        Format::Json => read_json_array(reader, visit),
        Format::Ndjson => read_ndjson(reader, visit),
    }
}

fn strip_bom<R: Read>(reader: &mut BufReader<R>) -> Result<(), FileError> {
    let head = reader.fill_buf().map_err(FileError::Io)?;
    let refused = |what: &str| {
        Err(FileError::Encoding(format!(
            "{what} byte-order mark: only UTF-8 is accepted, re-export the file as UTF-8"
        )))
    };
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        reader.consume(3);
    } else if head.starts_with(&[0x00, 0x00, 0xFE, 0xFF])
        || head.starts_with(&[0xFF, 0xFE, 0x00, 0x00])
    {
        return refused("UTF-32");
    } else if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return refused("UTF-16");
    }
    Ok(())
}

fn read_csv<R: Read>(
    options: &CsvOptions,
    reader: R,
    tap: &TapHandle,
    visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
) -> Result<u64, FileError> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(options.delimiter as u8)
        .quote(options.quote as u8)
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let csv_error = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => FileError::Encoding(format!(
            "invalid UTF-8 in record {} (line {}): {err}",
            pos.as_ref().map_or(0, |p| p.record()),
            pos.as_ref().map_or(0, |p| p.line()),
        )),
        csv::ErrorKind::Io(_) => match e.into_kind() {
            csv::ErrorKind::Io(io) => FileError::Io(io),
            _ => unreachable!("matched Io"),
        },
        _ => FileError::Csv(e.to_string()),
    };
    let header = csv.headers().map_err(csv_error)?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(FileError::Empty);
    }
    let mut record = csv::StringRecord::new();
    let mut ordinal = 0u64;
    let mut pending: Option<(csv::StringRecord, u64)> = None;
    let mut crlf_fix: Option<u64> = None;
    loop {
        let more = csv.read_record(&mut record).map_err(csv_error)?;
        if record.as_slice().len() > MAX_RECORD_BYTES {
            return Err(FileError::RecordTooLong(
                record.position().map_or(0, |p| p.byte()),
            ));
        }
        // A short row is only known to be a truncated *file* once we know it is the last one
        // and the file does not end with a newline, so each row is visited one step late.
        if let Some((previous, line)) = pending.take() {
            let is_last = !more;
            if is_last && previous.len() < header.len() && !tap.ends_with_newline() {
                return Err(FileError::Truncated(format!(
                    "the last row (line {line}) has {} of {} fields and no line break",
                    previous.len(),
                    header.len()
                )));
            }
            if !visit_csv_row(options, &header, &previous, ordinal, line, visit) {
                return Ok(ordinal + 1);
            }
            ordinal += 1;
        }
        if !more {
            return Ok(ordinal);
        }
        let line = record.position().map_or(0, |p| p.line());
        // csv counts a CRLF line when it reads the LF, which happens at the start of the next
        // record: in a CRLF file every record reports the line before its own. The header is
        // line 1, so the first record tells which kind of file this is.
        let fix = *crlf_fix.get_or_insert(u64::from(line <= 1));
        pending = Some((record.clone(), line + fix));
    }
}

fn visit_csv_row(
    options: &CsvOptions,
    header: &csv::StringRecord,
    row: &csv::StringRecord,
    ordinal: u64,
    line: u64,
    visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
) -> bool {
    let raw = || csv_text(options, row);
    let fields = CsvFields {
        header,
        record: row,
    };
    let fields: Result<&dyn Fields, String> = if row.len() == header.len() {
        Ok(&fields)
    } else {
        Err(format!(
            "row has {} fields, the header has {}",
            row.len(),
            header.len()
        ))
    };
    visit(RecordRef {
        ordinal,
        line: Some(line),
        raw: &raw,
        fields,
    })
}

/// A CSV row written back in the partner's dialect (for dead letters).
fn csv_text(options: &CsvOptions, row: &csv::StringRecord) -> String {
    let mut out = csv::WriterBuilder::new()
        .delimiter(options.delimiter as u8)
        .quote(options.quote as u8)
        .from_writer(Vec::new());
    if out.write_record(row).is_err() {
        return row.iter().collect::<Vec<_>>().join(",");
    }
    let bytes = out.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

fn read_ndjson<R: BufRead>(
    reader: R,
    visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
) -> Result<u64, FileError> {
    let mut reader = reader;
    let mut line_text = String::new();
    let (mut line_no, mut ordinal, mut offset) = (0u64, 0u64, 0u64);
    loop {
        line_text.clear();
        let n = (&mut reader)
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_line(&mut line_text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => FileError::Encoding(format!(
                    "invalid UTF-8 on line {} (near byte {offset})",
                    line_no + 1
                )),
                _ => FileError::Io(e),
            })?;
        if n == 0 {
            return Ok(ordinal);
        }
        if n > MAX_RECORD_BYTES {
            return Err(FileError::RecordTooLong(offset));
        }
        line_no += 1;
        offset += n as u64;
        let complete = line_text.ends_with('\n');
        let text = line_text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(text);
        if !complete && parsed.is_err() {
            return Err(FileError::Truncated(format!(
                "the last line ({line_no}) is not complete JSON and has no line break"
            )));
        }
        let owned = text.to_string();
        let raw = || owned.clone();
        let value;
        let fields: Result<&dyn Fields, String> = match parsed {
            Ok(v @ Value::Object(_)) => {
                value = v;
                Ok(&value)
            }
            Ok(other) => Err(format!("line is {}, not a JSON object", json_type(&other))),
            Err(e) => Err(format!("line is not valid JSON: {e}")),
        };
        if !visit(RecordRef {
            ordinal,
            line: Some(line_no),
            raw: &raw,
            fields,
        }) {
            return Ok(ordinal + 1);
        }
        ordinal += 1;
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const STOPPED: &str = "tributary: visitor stopped";

fn read_json_array<R: BufRead>(
    reader: R,
    visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
) -> Result<u64, FileError> {
    struct Elements<'v> {
        visit: &'v mut dyn FnMut(RecordRef<'_>) -> bool,
        count: u64,
    }
    impl<'de> Visitor<'de> for &mut Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of sale objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(element) = seq.next_element::<Box<RawValue>>()? {
                if element.get().len() > MAX_RECORD_BYTES {
                    return Err(de::Error::custom(format!(
                        "element {} is longer than {MAX_RECORD_BYTES} bytes",
                        self.count + 1
                    )));
                }
                let raw = || element.get().to_string();
                // Valid JSON, but it may still nest deeper than serde_json builds a `Value` (128
                // levels): that element is refused with the reason, never a panic that stops the
                // ingestor on every restart.
                let parsed = serde_json::from_str::<Value>(element.get());
                let fields: Result<&dyn Fields, String> = match &parsed {
                    Ok(value @ Value::Object(_)) => Ok(value),
                    Ok(other) => Err(format!(
                        "element is {}, not a JSON object",
                        json_type(other)
                    )),
                    Err(e) => Err(format!("element cannot be read as a sale: {e}")),
                };
                let go_on = (self.visit)(RecordRef {
                    ordinal: self.count,
                    line: None,
                    raw: &raw,
                    fields,
                });
                self.count += 1;
                if !go_on {
                    return Err(de::Error::custom(STOPPED));
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for &mut Elements<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    let mut elements = Elements { visit, count: 0 };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = (&mut elements)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match result {
        Ok(()) => Ok(elements.count),
        Err(e) if e.to_string().starts_with(STOPPED) => Ok(elements.count),
        Err(e) if e.is_io() => Err(FileError::Io(std::io::Error::other(e))),
        Err(e) if e.is_eof() => Err(FileError::Truncated(format!(
            "the JSON ends early ({e}) after {} complete elements",
            elements.count
        ))),
        Err(e) if e.to_string().contains("invalid unicode") || e.to_string().contains("UTF-8") => {
            Err(FileError::Encoding(e.to_string()))
        }
        Err(e) => Err(FileError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::map::FieldValue;

    /// Reads `bytes` and returns, per record, `(ordinal, line, field "id" or the bad-record reason)`.
    fn read(
        format: Format,
        options: &CsvOptions,
        bytes: &[u8],
    ) -> Result<Vec<(u64, Option<u64>, String)>, FileError> {
        let (tap, handle) = Tap::new(bytes);
        let mut out = Vec::new();
        read_records(format, options, tap, &handle, &mut |r| {
            let what = match r.fields {
                Ok(f) => match f.get("id") {
                    Some(FieldValue::Text(s)) => s.to_string(),
                    Some(FieldValue::Number(n)) => n,
                    other => format!("{other:?}"),
                },
                Err(reason) => format!("BAD: {reason} [{}]", (r.raw)()),
            };
            out.push((r.ordinal, r.line, what));
            true
        })?;
        assert_eq!(handle.summary().bytes, bytes.len() as u64);
        Ok(out)
    }

    fn ids(rows: &[(u64, Option<u64>, String)]) -> Vec<&str> {
        rows.iter().map(|r| r.2.as_str()).collect()
    }

    /// Valid JSON nested deeper than serde_json builds a value (128 levels) is one bad record,
    /// with its reason; the records around it are read (it once panicked the ingestor, which met
    /// the same file again at every restart).
    #[test]
    fn deeply_nested_json_is_a_bad_record_not_a_panic() {
        // 60 000 levels: 120 KB, just inside MAX_RECORD_BYTES (a deeper one is a record too long).
        for depth in [300, 60_000] {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let array =
                format!("[{{\"id\":\"a\"}},{{\"id\":\"b\",\"x\":{nested}}},{{\"id\":\"c\"}}]");
            let rows = read(Format::Json, &CsvOptions::default(), array.as_bytes()).unwrap();
            assert_eq!(rows.len(), 3, "depth {depth}");
            assert_eq!((rows[0].2.as_str(), rows[2].2.as_str()), ("a", "c"));
            assert!(
                rows[1]
                    .2
                    .starts_with("BAD: element cannot be read as a sale: recursion limit exceeded"),
                "{}",
                &rows[1].2[..80]
            );
            let lines =
                format!("{{\"id\":\"a\"}}\n{{\"id\":\"b\",\"x\":{nested}}}\n{{\"id\":\"c\"}}\n");
            let rows = read(Format::Ndjson, &CsvOptions::default(), lines.as_bytes()).unwrap();
            assert_eq!(rows.len(), 3, "depth {depth}");
            assert!(
                rows[1]
                    .2
                    .starts_with("BAD: line is not valid JSON: recursion limit exceeded"),
                "{}",
                &rows[1].2[..80]
            );
        }
    }

    #[test]
    fn a_record_is_bounded_so_its_event_fits_in_a_kafka_message() {
        let o = CsvOptions::default();
        let long = "x".repeat(MAX_RECORD_BYTES + 1);
        for (format, text) in [
            (
                Format::Ndjson,
                format!("{{\"id\":\"a\"}}\n{{\"id\":\"{long}\"}}\n"),
            ),
            (Format::Csv, format!("id,x\n1,a\n2,{long}\n")),
            (Format::Json, format!("[{{\"id\":\"{long}\"}}]")),
        ] {
            match read(format, &o, text.as_bytes()) {
                Err(e) => assert!(
                    e.is_bad_file() && e.to_string().contains("longer than"),
                    "{format:?}: {e}"
                ),
                Ok(rows) => panic!("{format:?}: {} rows read", rows.len()),
            }
        }
        // Just under the bound is fine.
        let fits = format!("{{\"id\":\"{}\"}}\n", "x".repeat(MAX_RECORD_BYTES - 20));
        assert_eq!(read(Format::Ndjson, &o, fits.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::from_path("a/b.CSV"), Some(Format::Csv));
        assert_eq!(Format::from_path("x.jsonl"), Some(Format::Ndjson));
        assert_eq!(Format::from_path("x.ndjson"), Some(Format::Ndjson));
        assert_eq!(Format::from_path("x.json"), Some(Format::Json));
        assert_eq!(Format::from_path("x.xlsx"), None);
        assert_eq!(Format::from_path("noext"), None);
    }

    #[test]
    fn csv_odd_but_valid_inputs() {
        let o = CsvOptions::default();
        // BOM, CRLF, a quoted delimiter, an escaped quote, a quoted line break, trailing blank lines.
        let text = b"\xEF\xBB\xBFid,name,amount\r\n1,\"a, b\",1\r\n2,\"say \"\"hi\"\"\",2\r\n3,\"two\nlines\",3\r\n\r\n\r\n";
        let rows = read(Format::Csv, &o, text).unwrap();
        assert_eq!(ids(&rows), vec!["1", "2", "3"]);
        let lf = read(Format::Csv, &o, b"id,x\n1,a\n2,b\n").unwrap();
        assert_eq!((lf[0].1, lf[1].1), (Some(2), Some(3)));
        assert_eq!(
            (rows[0].1, rows[1].1, rows[2].1),
            (Some(2), Some(3), Some(4)),
            "line numbers count from the header"
        );
        // No trailing newline at all is fine when the row is complete.
        assert_eq!(
            ids(&read(Format::Csv, &o, b"id,x\n1,a\n2,b").unwrap()),
            vec!["1", "2"]
        );
        // A very long field.
        let long = format!("id,x\n1,\"{}\"\n", "y".repeat(MAX_RECORD_BYTES - 100));
        assert_eq!(
            ids(&read(Format::Csv, &o, long.as_bytes()).unwrap()),
            vec!["1"]
        );
        // Another dialect.
        let semi = CsvOptions {
            delimiter: ';',
            quote: '\'',
            ..CsvOptions::default()
        };
        let rows = read(Format::Csv, &semi, b"id;x\n'1;2';a\n").unwrap();
        assert_eq!(ids(&rows), vec!["1;2"]);
    }

    #[test]
    fn csv_short_row_is_a_bad_record_unless_it_is_a_truncated_end() {
        let o = CsvOptions::default();
        let rows = read(Format::Csv, &o, b"id,x,y\n1,a,b\n2,a\n3,a,b\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[1]
                .2
                .starts_with("BAD: row has 2 fields, the header has 3 [2,a]"),
            "{}",
            rows[1].2
        );
        // Short last row with a newline: a bad record, the file is fine.
        assert!(
            read(Format::Csv, &o, b"id,x,y\n1,a,b\n2,a\n").unwrap()[1]
                .2
                .starts_with("BAD")
        );
        // Short last row without a newline: the file was cut.
        let err = read(Format::Csv, &o, b"id,x,y\n1,a,b\n2,a").unwrap_err();
        assert!(matches!(err, FileError::Truncated(_)), "{err}");
    }

    #[test]
    fn bad_encodings_and_empty_files_are_bad_files() {
        let o = CsvOptions::default();
        let err = read(Format::Csv, &o, b"\xFF\xFEi\0d\0").unwrap_err();
        assert!(err.to_string().contains("UTF-16"), "{err}");
        let err = read(Format::Csv, &o, b"id,x\n1,caf\xE9\n").unwrap_err();
        assert!(matches!(err, FileError::Encoding(_)), "{err}");
        let err = read(Format::Ndjson, &o, b"{\"id\":\"caf\xE9\"}\n").unwrap_err();
        assert!(matches!(err, FileError::Encoding(_)), "{err}");
        assert!(matches!(
            read(Format::Csv, &o, b"").unwrap_err(),
            FileError::Empty
        ));
        assert_eq!(err.kind(), "bad_encoding");
    }

    #[test]
    fn ndjson_blank_lines_bad_lines_and_truncation() {
        let o = CsvOptions::default();
        let text = b"{\"id\":\"a\"}\r\n\n  \n{\"id\":2}\n[1]\n{oops\n{\"id\":\"z\"}";
        let rows = read(Format::Ndjson, &o, text).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].2, "a");
        assert_eq!(rows[1], (1, Some(4), "2".into()));
        assert!(rows[2].2.contains("an array"), "{}", rows[2].2);
        assert!(rows[3].2.contains("not valid JSON"), "{}", rows[3].2);
        assert_eq!(
            rows[4].2, "z",
            "a complete last line without a newline is fine"
        );
        let err = read(Format::Ndjson, &o, b"{\"id\":1}\n{\"id\":").unwrap_err();
        assert!(matches!(err, FileError::Truncated(_)), "{err}");
    }

    #[test]
    fn json_arrays_stream_elements() {
        let o = CsvOptions::default();
        let rows = read(
            Format::Json,
            &o,
            b"\xEF\xBB\xBF [ {\"id\":1}, {\"id\":\"b\"}, 7 ]\n",
        )
        .unwrap();
        assert_eq!(rows[0], (0, None, "1".into()));
        assert_eq!(rows[1].2, "b");
        assert!(rows[2].2.contains("a number"), "{}", rows[2].2);
        assert_eq!(read(Format::Json, &o, b"[]").unwrap().len(), 0);
        let err = read(Format::Json, &o, b"[{\"id\":1}, {\"id\"").unwrap_err();
        assert!(matches!(err, FileError::Truncated(_)), "{err}");
        let err = read(Format::Json, &o, b"{\"id\":1}").unwrap_err();
        assert!(matches!(err, FileError::Json(_)), "{err}");
        let err = read(Format::Json, &o, b"[1] trailing").unwrap_err();
        assert!(matches!(err, FileError::Json(_)), "{err}");
        let err = read(Format::Json, &o, b"id,amount\n1,2\n").unwrap_err();
        assert!(err.is_bad_file(), "{err}");
    }

    #[test]
    fn visitor_can_stop_early() {
        let (tap, handle) = Tap::new(&b"[{\"id\":1},{\"id\":2},{\"id\":3}]"[..]);
        let mut seen = 0;
        let n = read_records(
            Format::Json,
            &CsvOptions::default(),
            tap,
            &handle,
            &mut |_| {
                seen += 1;
                seen < 2
            },
        )
        .unwrap();
        assert_eq!((n, seen), (2, 2));
    }
}
