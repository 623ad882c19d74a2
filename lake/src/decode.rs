//! Debezium envelope → typed change event, or a [`DecodeError`] that says why not.
//!
//! Pure: no I/O, no clock. The envelope is the bare JSON-converter form
//! (`schemas.enable=false`): `{"before":…, "after":…, "source":{"lsn":…, "ts_ms":…, "txId":…},
//! "op":"c|u|d|r", "ts_ms":…}`, with `decimal.handling.mode=string` (amounts are strings like
//! `"123.45"`) and `timestamptz` columns as ISO-8601 strings.

use chrono::DateTime;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use tributary_common::sale_event::{RejectedRecord, SaleEvent, SaleOp, SaleSource};

use tributary_raw::schema::{Column, ColumnType, MONEY_PRECISION, MONEY_SCALE, RawTable};

/// One typed value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A `long`.
    Long(i64),
    /// An `int`.
    Int(i32),
    /// Text.
    Str(String),
    /// A `decimal(18,2)` as its unscaled value (`123.45` → `12345`).
    Money(i128),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

/// Debezium's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `c`: insert.
    Create,
    /// `u`: update.
    Update,
    /// `d`: delete (the typed image is the `before` image).
    Delete,
    /// `r`: read during the initial snapshot.
    Read,
}

impl Op {
    /// The letter Debezium uses, which is what the `op` column stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            _ => return None,
        })
    }
}

/// A decoded change of one source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// What happened.
    pub op: Op,
    /// The typed row image, one cell per [`RawTable::image_columns`]: the `after` image, or
    /// `before` for a delete.
    pub image: Vec<Cell>,
    /// Raw JSON text of `before`, exactly as received.
    pub before_json: Option<String>,
    /// Raw JSON text of `after`, exactly as received.
    pub after_json: Option<String>,
    /// `source.lsn`.
    pub source_lsn: i64,
    /// `source.ts_ms`, in microseconds.
    pub source_ts_micros: i64,
    /// `source.txId`.
    pub source_txid: Option<i64>,
}

/// What a record value turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A change event to land.
    Change(ChangeEvent),
    /// A canonical sale event (files, ERP): the leading cells of its row, in
    /// `RawTable::columns` order up to the Kafka provenance.
    Event(Vec<Cell>),
    /// A null value (Kafka tombstone after a delete): nothing to land.
    Tombstone,
}

/// Class of a decoding failure; stored in `dead_letters.error_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not JSON at all (or not UTF-8).
    InvalidJson,
    /// JSON, but not an object shaped like a Debezium envelope.
    NotAnEnvelope,
    /// A field the lander needs is absent or null.
    MissingField,
    /// A field has the wrong JSON type or is out of range.
    WrongType,
    /// `op` is not one of `c`, `u`, `d`, `r`.
    UnknownOp,
    /// A money value is not a decimal that fits `decimal(18,2)`.
    BadDecimal,
    /// A timestamp is not an ISO-8601/RFC 3339 date-time with an offset.
    BadTimestamp,
    /// Not a canonical sale event (files and ERP topics).
    NotASaleEvent,
}

impl ErrorKind {
    /// Stable snake_case name, as stored in the lake and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotAnEnvelope => "not_an_envelope",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::UnknownOp => "unknown_op",
            ErrorKind::BadDecimal => "bad_decimal",
            ErrorKind::BadTimestamp => "bad_timestamp",
            ErrorKind::NotASaleEvent => "not_a_sale_event",
        }
    }
}

/// Why a record value could not be decoded. The record goes to `dead_letters` with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// Class of the failure.
    pub kind: ErrorKind,
    /// Human-readable reason naming the offending field and value.
    pub reason: String,
}

impl DecodeError {
    fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    before: Option<&'a RawValue>,
    #[serde(default, borrow)]
    after: Option<&'a RawValue>,
    #[serde(default)]
    source: Option<Value>,
    #[serde(default)]
    op: Option<Value>,
    /// Present when the connector runs with `schemas.enable=true`; only used for a better reason.
    #[serde(default)]
    payload: Option<serde::de::IgnoredAny>,
}

/// Decodes one record value of the topic feeding `table`.
///
/// `None` (a Kafka tombstone) is [`Decoded::Tombstone`]; anything that is not a well-formed
/// envelope with a typed image matching the table is a [`DecodeError`].
pub fn decode(table: RawTable, value: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let Some(bytes) = value else {
        return Ok(Decoded::Tombstone);
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(
            ErrorKind::InvalidJson,
            format!("value is not UTF-8 text: {e}"),
        )
    })?;
    // Syntax first, then shape: serde would happily read a struct from a JSON array.
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
        DecodeError::new(
            ErrorKind::InvalidJson,
            format!("value is not valid JSON: {e}"),
        )
    })?;
    if !raw.get().starts_with('{') {
        let found: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        return Err(DecodeError::new(
            ErrorKind::NotAnEnvelope,
            format!(
                "value is {}, not a Debezium envelope object",
                json_type(&found)
            ),
        ));
    }
    let envelope: Envelope<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        DecodeError::new(
            ErrorKind::NotAnEnvelope,
            format!("value is not a Debezium envelope: {e}"),
        )
    })?;

    let op = match &envelope.op {
        None | Some(Value::Null) => {
            let hint = if envelope.payload.is_some() {
                " (found `payload`: is the connector running with schemas.enable=true?)"
            } else {
                ""
            };
            return Err(DecodeError::new(
                ErrorKind::MissingField,
                format!("envelope has no `op`{hint}"),
            ));
        }
        Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
            DecodeError::new(
                ErrorKind::UnknownOp,
                format!("unknown op {s:?} (expected c, u, d or r)"),
            )
        })?,
        Some(other) => {
            return Err(DecodeError::new(
                ErrorKind::WrongType,
                format!("`op` must be a string, found {}", json_type(other)),
            ));
        }
    };

    let (image_name, image_raw) = match op {
        Op::Delete => ("before", envelope.before),
        _ => ("after", envelope.after),
    };
    let image_raw = image_raw.ok_or_else(|| {
        DecodeError::new(
            ErrorKind::MissingField,
            format!(
                "op {:?} needs the `{image_name}` image, which is null or absent",
                op.as_str()
            ),
        )
    })?;
    let image_map: Map<String, Value> = serde_json::from_str(image_raw.get()).map_err(|_| {
        DecodeError::new(
            ErrorKind::WrongType,
            format!("`{image_name}` must be an object"),
        )
    })?;
    let image = table
        .image_columns()
        .iter()
        .map(|column| cell(&image_map, image_name, column))
        .collect::<Result<Vec<_>, _>>()?;

    let source = match envelope.source {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => {
            return Err(DecodeError::new(
                ErrorKind::MissingField,
                "envelope has no `source` block",
            ));
        }
        Some(other) => {
            return Err(DecodeError::new(
                ErrorKind::WrongType,
                format!("`source` must be an object, found {}", json_type(&other)),
            ));
        }
    };
    let source_lsn = required_long(&source, "source", "lsn")?;
    let source_ts_ms = required_long(&source, "source", "ts_ms")?;
    let source_ts_micros = source_ts_ms.checked_mul(1000).ok_or_else(|| {
        DecodeError::new(
            ErrorKind::WrongType,
            format!("source.ts_ms {source_ts_ms} is out of range"),
        )
    })?;
    let source_txid = optional_long(&source, "source", "txId")?;

    Ok(Decoded::Change(ChangeEvent {
        op,
        image,
        before_json: envelope.before.map(|r| r.get().to_owned()),
        after_json: envelope.after.map(|r| r.get().to_owned()),
        source_lsn,
        source_ts_micros,
        source_txid,
    }))
}

/// Decodes one record value of a sale-event topic (`raw.files.sales`, `raw.ws.sales`) into
/// the leading cells of a `file_sale`/`erp_sale` row. `expected` is the source the topic
/// carries: an event from another source is refused rather than landed in the wrong table.
pub fn decode_sale_event(
    expected: SaleSource,
    value: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    let Some(bytes) = value else {
        return Ok(Decoded::Tombstone);
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(
            ErrorKind::InvalidJson,
            format!("value is not UTF-8 text: {e}"),
        )
    })?;
    let event: SaleEvent = serde_json::from_str(text).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            ErrorKind::InvalidJson
        } else {
            ErrorKind::NotASaleEvent
        };
        DecodeError::new(kind, format!("value is not a sale event: {e}"))
    })?;
    if event.source != expected {
        return Err(DecodeError::new(
            ErrorKind::WrongType,
            format!(
                "event from source {:?} on the {:?} topic",
                event.source.as_str(),
                expected.as_str()
            ),
        ));
    }
    let amount = event
        .amount
        .as_deref()
        .map(|a| {
            parse_decimal(a, MONEY_PRECISION, MONEY_SCALE).map_err(|why| {
                DecodeError::new(
                    ErrorKind::BadDecimal,
                    format!(
                        "amount {a:?} is not a decimal({MONEY_PRECISION},{MONEY_SCALE}): {why}"
                    ),
                )
            })
        })
        .transpose()?;
    let timestamp = |field: &str, s: &str| {
        parse_timestamp_micros(s).map_err(|why| {
            DecodeError::new(
                ErrorKind::BadTimestamp,
                format!("{field} {s:?} is not an ISO-8601 timestamp: {why}"),
            )
        })
    };
    let sold_at = event
        .sold_at
        .as_deref()
        .map(|s| timestamp("sold_at", s))
        .transpose()?;
    let produced_at = timestamp("produced_at", &event.produced_at)?;
    if event.op == SaleOp::Upsert && (amount.is_none() || sold_at.is_none()) {
        return Err(DecodeError::new(
            ErrorKind::MissingField,
            "an upsert needs amount and sold_at",
        ));
    }
    let opt_str = |s: Option<String>| s.map_or(Cell::Null, Cell::Str);
    let opt_long = |v: Option<i64>| v.map_or(Cell::Null, Cell::Long);
    Ok(Decoded::Event(vec![
        Cell::Str(event.op.as_lake_op().to_string()),
        Cell::Str(event.sale_id),
        Cell::Str(event.origin),
        Cell::Long(event.version.major),
        Cell::Long(event.version.minor),
        opt_long(event.salesman_id),
        opt_str(event.salesman_code),
        opt_long(event.city_id),
        opt_str(event.city_name),
        opt_str(event.city_state),
        amount.map_or(Cell::Null, Cell::Money),
        opt_str(event.currency),
        sold_at.map_or(Cell::Null, Cell::Timestamp),
        Cell::Timestamp(produced_at),
        Cell::Str(Value::Object(event.provenance).to_string()),
    ]))
}

/// A record of an ingestor's dead-letter topic: why it was rejected, as the ingestor said.
/// A value that is not a readable [`RejectedRecord`] is still a dead letter, with a reason
/// saying so.
pub fn decode_rejected(value: Option<&[u8]>) -> (String, String) {
    match value.map(serde_json::from_slice::<RejectedRecord>) {
        Some(Ok(rejected)) => (rejected.reason, rejected.error_kind),
        Some(Err(e)) => (
            format!("unreadable rejected record on a dead-letter topic: {e}"),
            ErrorKind::NotASaleEvent.as_str().to_string(),
        ),
        None => (
            "empty record on a dead-letter topic".to_string(),
            ErrorKind::MissingField.as_str().to_string(),
        ),
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

fn required_long(map: &Map<String, Value>, parent: &str, key: &str) -> Result<i64, DecodeError> {
    optional_long(map, parent, key)?.ok_or_else(|| {
        DecodeError::new(
            ErrorKind::MissingField,
            format!("{parent}.{key} is null or absent"),
        )
    })
}

fn optional_long(
    map: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<i64>, DecodeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            DecodeError::new(
                ErrorKind::WrongType,
                format!("{parent}.{key} must be a 64-bit integer, found {n}"),
            )
        }),
        Some(other) => Err(DecodeError::new(
            ErrorKind::WrongType,
            format!(
                "{parent}.{key} must be an integer, found {}",
                json_type(other)
            ),
        )),
    }
}

fn cell(
    image: &Map<String, Value>,
    image_name: &str,
    column: &Column,
) -> Result<Cell, DecodeError> {
    let path = || format!("{image_name}.{}", column.name);
    let wrong = |expected: &str, found: &Value| {
        DecodeError::new(
            ErrorKind::WrongType,
            format!("{} must be {expected}, found {}", path(), json_type(found)),
        )
    };
    let value = match image.get(column.name) {
        None | Some(Value::Null) if column.required => {
            return Err(DecodeError::new(
                ErrorKind::MissingField,
                format!("{} is null or absent", path()),
            ));
        }
        // An optional column the source does not send (yet) is null, not an error: a column
        // added to the lake before the source has it must not dead-letter every event.
        None | Some(Value::Null) => return Ok(Cell::Null),
        Some(v) => v,
    };
    match column.ty {
        ColumnType::Long => match value {
            Value::Number(n) => n.as_i64().map(Cell::Long).ok_or_else(|| {
                DecodeError::new(
                    ErrorKind::WrongType,
                    format!("{} must be a 64-bit integer, found {n}", path()),
                )
            }),
            other => Err(wrong("an integer", other)),
        },
        ColumnType::Int => match value {
            Value::Number(n) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .map(Cell::Int)
                .ok_or_else(|| {
                    DecodeError::new(
                        ErrorKind::WrongType,
                        format!("{} must be a 32-bit integer, found {n}", path()),
                    )
                }),
            other => Err(wrong("an integer", other)),
        },
        ColumnType::String => match value {
            Value::String(s) => Ok(Cell::Str(s.clone())),
            other => Err(wrong("a string", other)),
        },
        ColumnType::Money => {
            // decimal.handling.mode=string sends strings; a plain JSON number (mode=double) is
            // accepted through its exact text, never through f64.
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(wrong("a decimal string", other)),
            };
            parse_decimal(&text, MONEY_PRECISION, MONEY_SCALE)
                .map(Cell::Money)
                .map_err(|why| {
                    DecodeError::new(
                        ErrorKind::BadDecimal,
                        format!(
                            "{} {text:?} is not a decimal({MONEY_PRECISION},{MONEY_SCALE}): {why}",
                            path()
                        ),
                    )
                })
        }
        ColumnType::Timestamptz => match value {
            Value::String(s) => parse_timestamp_micros(s)
                .map(Cell::Timestamp)
                .map_err(|why| {
                    DecodeError::new(
                        ErrorKind::BadTimestamp,
                        format!("{} {s:?} is not an ISO-8601 timestamp: {why}", path()),
                    )
                }),
            other => Err(wrong("an ISO-8601 timestamp string", other)),
        },
    }
}

/// Parses a plain decimal (`-12.5`, `0.10`, `12345678.90`) into its unscaled value at `scale`.
///
/// Exact: no floating point. Refuses exponents, more fractional digits than `scale` (unless the
/// extra digits are zeros), and values with more than `precision` digits in total.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let scale = usize::try_from(scale).map_err(|_| "negative scale".to_string())?;
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (unsigned.contains('.') && frac_part.is_empty())
    {
        return Err("expected digits with an optional sign and decimal point".into());
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > scale {
        return Err(format!("more than {scale} decimal places"));
    }
    let int_trimmed = int_part.trim_start_matches('0');
    if int_trimmed.len() + scale > usize::from(precision) {
        return Err(format!(
            "more than {} digits before the decimal point",
            usize::from(precision) - scale
        ));
    }
    let mut unscaled: i128 = 0;
    let padded = frac_trimmed
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(scale);
    for digit in int_trimmed.bytes().chain(padded) {
        unscaled = unscaled * 10 + i128::from(digit - b'0');
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// Parses an RFC 3339 date-time with an offset (`2026-03-01T10:00:00.000000Z`) into
/// microseconds since the epoch.
pub fn parse_timestamp_micros(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"{"version":"3.6.1.Final","connector":"postgresql","name":"salesdb","ts_ms":1772359200123,"db":"salesdb","schema":"public","table":"sale","txId":771,"lsn":24023128}"#;

    fn sale_image(id: i64, amount: &str) -> String {
        format!(
            r#"{{"id":{id},"salesman_id":7,"city_id":3,"amount":"{amount}","sold_at":"2026-03-01T10:00:00.000000Z","updated_at":"2026-03-01T10:00:01.5Z"}}"#
        )
    }

    fn envelope(op: &str, before: Option<&str>, after: Option<&str>) -> String {
        format!(
            r#"{{"before":{},"after":{},"source":{SOURCE},"op":"{op}","ts_ms":1772359200456,"transaction":null}}"#,
            before.unwrap_or("null"),
            after.unwrap_or("null")
        )
    }

    fn decode_str(table: RawTable, value: &str) -> Result<Decoded, DecodeError> {
        decode(table, Some(value.as_bytes()))
    }

    fn change(table: RawTable, value: &str) -> ChangeEvent {
        match decode_str(table, value) {
            Ok(Decoded::Change(event)) => event,
            other => panic!("expected a change event, got {other:?}"),
        }
    }

    fn error(table: RawTable, value: &str) -> DecodeError {
        match decode_str(table, value) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const T_2026_03_01_10H: i64 = 1_772_359_200_000_000;

    #[test]
    fn create_event_decodes_the_after_image() {
        let after = sale_image(42, "123.45");
        let event = change(RawTable::PgSale, &envelope("c", None, Some(&after)));
        assert_eq!(event.op, Op::Create);
        assert_eq!(
            event.image,
            vec![
                Cell::Long(42),
                Cell::Long(7),
                Cell::Long(3),
                Cell::Money(12345),
                Cell::Timestamp(T_2026_03_01_10H),
                Cell::Timestamp(T_2026_03_01_10H + 1_500_000),
            ]
        );
        assert_eq!(event.before_json, None);
        assert_eq!(event.after_json.as_deref(), Some(after.as_str()));
        assert_eq!(event.source_lsn, 24023128);
        assert_eq!(event.source_ts_micros, 1_772_359_200_123_000);
        assert_eq!(event.source_txid, Some(771));
    }

    #[test]
    fn update_and_snapshot_read_use_after() {
        let before = sale_image(42, "1.00");
        let after = sale_image(42, "2.00");
        let event = change(
            RawTable::PgSale,
            &envelope("u", Some(&before), Some(&after)),
        );
        assert_eq!(event.op, Op::Update);
        assert_eq!(event.image[3], Cell::Money(200));
        assert_eq!(event.before_json.as_deref(), Some(before.as_str()));

        let event = change(RawTable::PgSale, &envelope("r", None, Some(&after)));
        assert_eq!(event.op, Op::Read);
        assert_eq!(event.image[0], Cell::Long(42));
    }

    #[test]
    fn delete_uses_the_before_image() {
        let before = sale_image(9, "5.50");
        let event = change(RawTable::PgSale, &envelope("d", Some(&before), None));
        assert_eq!(event.op, Op::Delete);
        assert_eq!(event.image[0], Cell::Long(9));
        assert_eq!(event.image[3], Cell::Money(550));
        assert_eq!(event.after_json, None);
    }

    #[test]
    fn raw_json_is_kept_byte_for_byte() {
        // Key order and spacing as sent, not re-serialised.
        let after = r#"{ "state":"SP", "name":"São Paulo","id":1 }"#;
        let event = change(RawTable::PgCity, &envelope("c", None, Some(after)));
        assert_eq!(event.after_json.as_deref(), Some(after));
        assert_eq!(
            event.image,
            vec![
                Cell::Long(1),
                Cell::Str("São Paulo".into()),
                Cell::Str("SP".into())
            ]
        );
    }

    #[test]
    fn salesman_with_null_city_decodes() {
        let after = r#"{"id":5,"code":"S005","name":"Elisa Martins","city_id":null}"#;
        let event = change(RawTable::PgSalesman, &envelope("c", None, Some(after)));
        assert_eq!(
            event.image,
            vec![
                Cell::Long(5),
                Cell::Str("S005".into()),
                Cell::Str("Elisa Martins".into()),
                Cell::Null
            ]
        );
    }

    #[test]
    fn tombstone_is_not_an_error() {
        assert_eq!(decode(RawTable::PgSale, None), Ok(Decoded::Tombstone));
    }

    #[test]
    fn decimals_as_strings() {
        for (text, unscaled) in [
            ("0.10", 10),
            ("12345678.90", 1_234_567_890),
            ("123.45", 12_345),
            ("7", 700),
            ("7.5", 750),
            ("-3.25", -325),
            ("0.100", 10),
            ("0000012.30", 1230),
            ("9999999999999999.99", 999_999_999_999_999_999),
        ] {
            assert_eq!(parse_decimal(text, 18, 2), Ok(unscaled), "{text}");
        }
        for bad in [
            "12x",
            "",
            "-",
            ".5",
            "5.",
            "1.2.3",
            "1e5",
            "NaN",
            "1.234",
            " 1.00",
            "1,00",
            "10000000000000000.00",
        ] {
            assert!(
                parse_decimal(bad, 18, 2).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn decimal_as_json_number_uses_its_exact_text() {
        let after = r#"{"id":1,"amount":19.9}"#;
        let event = change(RawTable::PgSale, &envelope("c", None, Some(after)));
        assert_eq!(event.image[3], Cell::Money(1990));
    }

    #[test]
    fn bad_amount_is_a_bad_decimal() {
        let after = sale_image(1, "12x");
        let e = error(RawTable::PgSale, &envelope("c", None, Some(&after)));
        assert_eq!(e.kind, ErrorKind::BadDecimal);
        assert!(e.reason.contains("after.amount"), "{}", e.reason);
        assert!(e.reason.contains("12x"), "{}", e.reason);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp_micros("2026-03-01T10:00:00.000000Z"),
            Ok(T_2026_03_01_10H)
        );
        assert_eq!(
            parse_timestamp_micros("2026-03-01T10:00:00Z"),
            Ok(T_2026_03_01_10H)
        );
        assert_eq!(
            parse_timestamp_micros("2026-03-01T07:00:00.000001-03:00"),
            Ok(T_2026_03_01_10H + 1)
        );
        for bad in ["2026-03-01", "2026-03-01T10:00:00", "infinity", "yesterday"] {
            assert!(parse_timestamp_micros(bad).is_err(), "{bad}");
        }
        let after = r#"{"id":1,"sold_at":"2026-13-01T00:00:00Z"}"#;
        let e = error(RawTable::PgSale, &envelope("c", None, Some(after)));
        assert_eq!(e.kind, ErrorKind::BadTimestamp);
        assert!(e.reason.contains("after.sold_at"), "{}", e.reason);
        let after = r#"{"id":1,"sold_at":1772359200000000}"#;
        assert_eq!(
            error(RawTable::PgSale, &envelope("c", None, Some(after))).kind,
            ErrorKind::WrongType
        );
    }

    #[test]
    fn invalid_json_and_non_envelopes() {
        let e = error(RawTable::PgSale, "not json {");
        assert_eq!(e.kind, ErrorKind::InvalidJson);
        assert!(
            e.reason.starts_with("value is not valid JSON"),
            "{}",
            e.reason
        );
        assert_eq!(
            decode(RawTable::PgSale, Some(&[0xff, 0xfe]))
                .unwrap_err()
                .kind,
            ErrorKind::InvalidJson
        );
        assert_eq!(
            error(RawTable::PgSale, "[1,2]").kind,
            ErrorKind::NotAnEnvelope
        );
        assert_eq!(error(RawTable::PgSale, "42").kind, ErrorKind::NotAnEnvelope);
    }

    #[test]
    fn missing_fields_have_reasons() {
        let after = sale_image(1, "1.00");
        let no_op = format!(r#"{{"before":null,"after":{after},"source":{SOURCE}}}"#);
        let e = error(RawTable::PgSale, &no_op);
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.reason.contains("`op`"), "{}", e.reason);

        let wrapped = format!(
            r#"{{"schema":{{}},"payload":{}}}"#,
            envelope("c", None, Some(&after))
        );
        assert!(
            error(RawTable::PgSale, &wrapped)
                .reason
                .contains("schemas.enable")
        );

        let e = error(RawTable::PgSale, &envelope("c", None, None));
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.reason.contains("`after`"), "{}", e.reason);

        let e = error(RawTable::PgSale, &envelope("d", None, Some(&after)));
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.reason.contains("`before`"), "{}", e.reason);

        let e = error(
            RawTable::PgSale,
            &envelope("c", None, Some(r#"{"salesman_id":1}"#)),
        );
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.reason.contains("after.id"), "{}", e.reason);

        let no_source = format!(r#"{{"before":null,"after":{after},"op":"c"}}"#);
        assert_eq!(
            error(RawTable::PgSale, &no_source).kind,
            ErrorKind::MissingField
        );
        let no_lsn = format!(r#"{{"after":{after},"op":"c","source":{{"ts_ms":1}}}}"#);
        let e = error(RawTable::PgSale, &no_lsn);
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.reason.contains("source.lsn"), "{}", e.reason);
    }

    #[test]
    fn wrong_types_and_unknown_ops() {
        let e = error(
            RawTable::PgSale,
            &envelope("c", None, Some(r#"{"id":"42"}"#)),
        );
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(
            e.reason.contains("after.id must be an integer"),
            "{}",
            e.reason
        );

        let e = error(
            RawTable::PgSale,
            &envelope("c", None, Some(r#"{"id":1.5}"#)),
        );
        assert_eq!(e.kind, ErrorKind::WrongType);

        let e = error(
            RawTable::PgCity,
            &envelope("c", None, Some(r#"{"id":1,"name":7}"#)),
        );
        assert_eq!(e.kind, ErrorKind::WrongType);

        let e = error(RawTable::PgCity, &envelope("c", None, Some("[1]")));
        assert_eq!(e.kind, ErrorKind::WrongType);

        let after = sale_image(1, "1.00");
        let e = error(RawTable::PgSale, &envelope("t", None, Some(&after)));
        assert_eq!(e.kind, ErrorKind::UnknownOp);
        assert!(e.reason.contains("\"t\""), "{}", e.reason);

        let numeric_op = format!(r#"{{"after":{after},"op":1,"source":{SOURCE}}}"#);
        assert_eq!(
            error(RawTable::PgSale, &numeric_op).kind,
            ErrorKind::WrongType
        );
    }
}
