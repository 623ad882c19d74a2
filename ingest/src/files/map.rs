//! One partner record → the canonical sale, or a rejection that names the field and the value.
//!
//! Pure: the caller passes the record's fields, the partner, and "now" (to refuse dates in the
//! future). Master-data references are *not* resolved here: ids and natural keys go into the
//! event as given, and the marts resolve them against the current master data, so a salesman
//! who is added tomorrow makes today's sale count tomorrow.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::partners::Partner;

/// A record's value for one column, however the format spelled it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Text (every CSV field; JSON strings).
    Text(&'a str),
    /// A JSON number, as JSON wrote it (shortest round-trip form).
    Number(String),
    /// A JSON `true`/`false`, array or object: never valid for a sale field.
    Other(&'static str),
}

/// Column access over a record of any format.
pub trait Fields {
    /// The value of `column`; `None` when absent, null, or an empty CSV field.
    fn get(&self, column: &str) -> Option<FieldValue<'_>>;
}

/// A CSV record with its header.
#[derive(Debug)]
pub struct CsvFields<'a> {
    /// Header names, in column order.
    pub header: &'a csv::StringRecord,
    /// The record.
    pub record: &'a csv::StringRecord,
}

impl Fields for CsvFields<'_> {
    fn get(&self, column: &str) -> Option<FieldValue<'_>> {
        let index = self.header.iter().position(|h| h.trim() == column)?;
        let value = self.record.get(index)?.trim();
        (!value.is_empty()).then_some(FieldValue::Text(value))
    }
}

impl Fields for Value {
    fn get(&self, column: &str) -> Option<FieldValue<'_>> {
        let mut node = self;
        for part in column.split('.') {
            node = node.as_object()?.get(part)?;
        }
        match node {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(FieldValue::Text(s.trim())),
            Value::Number(n) => Some(FieldValue::Number(n.to_string())),
            Value::Bool(_) => Some(FieldValue::Other("a boolean")),
            Value::Array(_) => Some(FieldValue::Other("an array")),
            Value::Object(_) => Some(FieldValue::Other("an object")),
        }
    }
}

/// Why a record was rejected: a stable class and a sentence for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `missing_field`, `wrong_type`, `bad_amount`, `bad_timestamp`, `bad_currency`,
    /// `bad_record`.
    pub kind: &'static str,
    /// Names the column and the value.
    pub reason: String,
}

impl Rejection {
    /// A rejection of class `kind`.
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// The canonical fields of one sale as a partner sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSale {
    /// Partner's sale id.
    pub sale_id: String,
    /// Salesman id, if mapped and present.
    pub salesman_id: Option<i64>,
    /// Salesman code, if mapped and present.
    pub salesman_code: Option<String>,
    /// City id, if mapped and present.
    pub city_id: Option<i64>,
    /// City name.
    pub city_name: Option<String>,
    /// City state.
    pub city_state: Option<String>,
    /// Amount, two decimals, as text (`1234.50`).
    pub amount: String,
    /// Currency, when sent.
    pub currency: Option<String>,
    /// RFC 3339, UTC.
    pub sold_at: String,
}

/// Longest sale id accepted (ids are Kafka keys and lake values).
pub const MAX_SALE_ID_LEN: usize = 128;

/// Maps one record. `now` bounds `sold_at` (a sale more than a day in the future is refused).
pub fn map_record(
    fields: &dyn Fields,
    partner: &Partner,
    now: DateTime<Utc>,
) -> Result<MappedSale, Rejection> {
    let c = &partner.columns;
    let sale_id = text(fields, &c.sale_id)?
        .ok_or_else(|| missing(&c.sale_id, "sale_id"))?
        .to_string();
    if sale_id.len() > MAX_SALE_ID_LEN || sale_id.chars().any(char::is_control) {
        return Err(Rejection::new(
            "wrong_type",
            format!(
                "column {:?} (sale_id): must be at most {MAX_SALE_ID_LEN} bytes without control characters",
                c.sale_id
            ),
        ));
    }
    let salesman_id = optional_id(fields, c.salesman_id.as_deref(), "salesman_id")?;
    let salesman_code = optional_text(fields, c.salesman_code.as_deref())?;
    if salesman_id.is_none() && salesman_code.is_none() {
        let columns = [c.salesman_id.as_deref(), c.salesman_code.as_deref()];
        return Err(Rejection::new(
            "missing_field",
            format!("no salesman: column(s) {} empty or absent", names(&columns)),
        ));
    }
    let city_id = optional_id(fields, c.city_id.as_deref(), "city_id")?;
    let city_name = optional_text(fields, c.city_name.as_deref())?;
    let city_state = optional_text(fields, c.city_state.as_deref())?;
    if city_id.is_none() && (city_name.is_none() || city_state.is_none()) {
        let columns = [
            c.city_id.as_deref(),
            c.city_name.as_deref(),
            c.city_state.as_deref(),
        ];
        return Err(Rejection::new(
            "missing_field",
            format!("no city: need {} (id, or name and state)", names(&columns)),
        ));
    }
    let amount = match fields.get(&c.amount) {
        None => return Err(missing(&c.amount, "amount")),
        Some(value) => parse_amount(&value, partner)
            .map_err(|why| Rejection::new("bad_amount", format!("column {:?}: {why}", c.amount)))?,
    };
    let currency = optional_text(fields, c.currency.as_deref())?.map(|s| s.to_ascii_uppercase());
    if let Some(currency) = &currency
        && *currency != partner.currency
    {
        return Err(Rejection::new(
            "bad_currency",
            format!(
                "currency {currency:?} is not {:?}, the only one this partner may send",
                partner.currency
            ),
        ));
    }
    let sold_at_text = text(fields, &c.sold_at)?.ok_or_else(|| missing(&c.sold_at, "sold_at"))?;
    let sold_at = parse_sold_at(sold_at_text, partner).map_err(|why| {
        Rejection::new(
            "bad_timestamp",
            format!("column {:?}: {sold_at_text:?} {why}", c.sold_at),
        )
    })?;
    if sold_at > now + chrono::Duration::days(1) {
        return Err(Rejection::new(
            "bad_timestamp",
            format!("column {:?}: {sold_at_text:?} is in the future", c.sold_at),
        ));
    }
    Ok(MappedSale {
        sale_id,
        salesman_id,
        salesman_code,
        city_id,
        city_name,
        city_state,
        amount: amount.to_string(),
        currency,
        sold_at: sold_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    })
}

fn names(columns: &[Option<&str>]) -> String {
    columns
        .iter()
        .flatten()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing(column: &str, field: &str) -> Rejection {
    Rejection::new(
        "missing_field",
        format!("column {column:?} ({field}) is empty or absent"),
    )
}

/// Text of a column; a JSON number is accepted as its text (ids are often numbers).
fn text<'a>(fields: &'a dyn Fields, column: &str) -> Result<Option<&'a str>, Rejection> {
    match fields.get(column) {
        None => Ok(None),
        Some(FieldValue::Text(s)) => Ok(Some(s)),
        Some(FieldValue::Number(_)) => Err(Rejection::new(
            "wrong_type",
            format!("column {column:?} must be a string"),
        )),
        Some(FieldValue::Other(found)) => Err(Rejection::new(
            "wrong_type",
            format!("column {column:?} must be a string, found {found}"),
        )),
    }
}

fn optional_text(fields: &dyn Fields, column: Option<&str>) -> Result<Option<String>, Rejection> {
    let Some(column) = column else {
        return Ok(None);
    };
    match fields.get(column) {
        None => Ok(None),
        Some(FieldValue::Text(s)) => Ok(Some(s.to_string())),
        Some(FieldValue::Number(n)) => Ok(Some(n)),
        Some(FieldValue::Other(found)) => Err(Rejection::new(
            "wrong_type",
            format!("column {column:?} must be text, found {found}"),
        )),
    }
}

fn optional_id(
    fields: &dyn Fields,
    column: Option<&str>,
    field: &str,
) -> Result<Option<i64>, Rejection> {
    let Some(column) = column else {
        return Ok(None);
    };
    let value = match fields.get(column) {
        None => return Ok(None),
        Some(FieldValue::Text(s)) => s.to_string(),
        Some(FieldValue::Number(n)) => n,
        Some(FieldValue::Other(found)) => {
            return Err(Rejection::new(
                "wrong_type",
                format!("column {column:?} ({field}) must be an integer, found {found}"),
            ));
        }
    };
    value.parse::<i64>().map(Some).map_err(|_| {
        Rejection::new(
            "wrong_type",
            format!("column {column:?} ({field}): {value:?} is not an integer"),
        )
    })
}

/// Parses an amount: the partner's separators for text, JSON's own form for numbers; at most
/// two decimals (money is exact), not negative, not above the partner's maximum.
pub fn parse_amount(value: &FieldValue<'_>, partner: &Partner) -> Result<Decimal, String> {
    let normalised = match value {
        FieldValue::Text(s) => {
            let mut t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            if let Some(sep) = partner.csv.thousands_separator {
                t = t.replace(sep, "");
            }
            if partner.csv.decimal_separator == ',' {
                if t.contains('.') {
                    return Err(format!("{s:?} has a '.' but the decimal separator is ','"));
                }
                t = t.replace(',', ".");
            }
            t
        }
        FieldValue::Number(n) => n.clone(),
        FieldValue::Other(found) => return Err(format!("must be a number, found {found}")),
    };
    let shown = match value {
        FieldValue::Text(s) => format!("{s:?}"),
        FieldValue::Number(n) => n.clone(),
        FieldValue::Other(_) => unreachable!("returned above"),
    };
    if normalised.contains(['e', 'E']) {
        return Err(format!("{shown} is in exponent notation"));
    }
    let amount: Decimal = normalised
        .parse()
        .map_err(|_| format!("{shown} is not a decimal number"))?;
    if amount.scale() > 2 && amount != amount.round_dp(2) {
        return Err(format!("{shown} has more than two decimals"));
    }
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(format!("{shown} is negative"));
    }
    if amount > partner.max_amount {
        return Err(format!(
            "{shown} is above the maximum of {} (absurd amount)",
            partner.max_amount
        ));
    }
    let mut amount = amount.round_dp(2);
    amount.rescale(2);
    Ok(amount)
}

/// Parses `sold_at`: RFC 3339 always works; otherwise the partner's format, in its UTC offset.
pub fn parse_sold_at(text: &str, partner: &Partner) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let offset: FixedOffset = partner
        .utc_offset
        .as_deref()
        .map(|o| o.parse().expect("validated when the partners were loaded"))
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    let Some(format) = &partner.sold_at_format else {
        return Err("is not an RFC 3339 date-time (set sold_at_format for this partner)".into());
    };
    if let Ok(t) = DateTime::parse_from_str(text, format) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, format)
        .or_else(|_| {
            NaiveDate::parse_from_str(text, format)
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        })
        .map_err(|e| format!("does not match {format:?}: {e}"))?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| "is not a valid local time".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::files::partners::{ColumnMap, CsvOptions, FileMode};

    fn partner() -> Partner {
        Partner {
            folder: None,
            mode: FileMode::Incremental,
            csv: CsvOptions::default(),
            columns: ColumnMap {
                sale_id: "id".into(),
                salesman_id: None,
                salesman_code: Some("rep".into()),
                city_id: Some("city_id".into()),
                city_name: Some("city".into()),
                city_state: Some("uf".into()),
                amount: "amount".into(),
                sold_at: "at".into(),
                currency: Some("ccy".into()),
            },
            sold_at_format: None,
            utc_offset: None,
            currency: "BRL".into(),
            max_amount: Decimal::new(100_000_000, 2),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn good() -> Value {
        json!({"id": "A-1", "rep": "S001", "city": "Campinas", "uf": "SP", "amount": "10.5", "at": "2026-03-01T10:00:00-03:00", "ccy": "brl"})
    }

    #[test]
    fn maps_a_json_record() {
        let sale = map_record(&good(), &partner(), now()).unwrap();
        assert_eq!(sale.sale_id, "A-1");
        assert_eq!(sale.salesman_code.as_deref(), Some("S001"));
        assert_eq!(sale.city_id, None);
        assert_eq!(sale.amount, "10.50");
        assert_eq!(sale.currency.as_deref(), Some("BRL"));
        assert_eq!(sale.sold_at, "2026-03-01T13:00:00Z");
    }

    #[test]
    fn json_numbers_work_for_amounts_and_ids() {
        let mut v = good();
        v["amount"] = json!(1234.5);
        v["city_id"] = json!(7);
        let sale = map_record(&v, &partner(), now()).unwrap();
        assert_eq!(sale.amount, "1234.50");
        assert_eq!(sale.city_id, Some(7));
    }

    #[test]
    fn rejections_name_the_column_and_value() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"id": "A"}), "missing_field", "no salesman"),
            (
                {
                    let mut v = good();
                    v["amount"] = json!("-3.00");
                    v
                },
                "bad_amount",
                "negative",
            ),
            (
                {
                    let mut v = good();
                    v["amount"] = json!("12,5x");
                    v
                },
                "bad_amount",
                "not a decimal",
            ),
            (
                {
                    let mut v = good();
                    v["amount"] = json!("99999999.00");
                    v
                },
                "bad_amount",
                "absurd",
            ),
            (
                {
                    let mut v = good();
                    v["amount"] = json!("1.005");
                    v
                },
                "bad_amount",
                "more than two decimals",
            ),
            (
                {
                    let mut v = good();
                    v["at"] = json!("yesterday");
                    v
                },
                "bad_timestamp",
                "\"yesterday\"",
            ),
            (
                {
                    let mut v = good();
                    v["at"] = json!("2031-01-01T00:00:00Z");
                    v
                },
                "bad_timestamp",
                "future",
            ),
            (
                {
                    let mut v = good();
                    v["ccy"] = json!("USD");
                    v
                },
                "bad_currency",
                "USD",
            ),
            (
                {
                    let mut v = good();
                    v["city_id"] = json!("seven");
                    v
                },
                "wrong_type",
                "\"seven\" is not an integer",
            ),
            (
                {
                    let mut v = good();
                    v["rep"] = json!(["S1"]);
                    v
                },
                "wrong_type",
                "an array",
            ),
            (
                {
                    let mut v = good();
                    v.as_object_mut().unwrap().remove("at");
                    v
                },
                "missing_field",
                "\"at\" (sold_at)",
            ),
        ];
        for (record, kind, needle) in cases {
            let err = map_record(&record, &partner(), now()).unwrap_err();
            assert_eq!(err.kind, kind, "{record}: {}", err.reason);
            assert!(err.reason.contains(needle), "{record}: {}", err.reason);
        }
    }

    #[test]
    fn csv_dialect_separators_and_local_formats() {
        let mut p = partner();
        p.csv.decimal_separator = ',';
        p.csv.thousands_separator = Some('.');
        p.sold_at_format = Some("%d/%m/%Y %H:%M".into());
        p.utc_offset = Some("-03:00".into());
        let header = csv::StringRecord::from(vec!["id", "rep", "city", "uf", "amount", "at"]);
        let record = csv::StringRecord::from(vec![
            " 7 ",
            "S002",
            "Niterói",
            "RJ",
            "1.234,56",
            "01/03/2026 10:00",
        ]);
        let sale = map_record(
            &CsvFields {
                header: &header,
                record: &record,
            },
            &p,
            now(),
        )
        .unwrap();
        assert_eq!(sale.sale_id, "7");
        assert_eq!(sale.amount, "1234.56");
        assert_eq!(sale.sold_at, "2026-03-01T13:00:00Z");

        p.sold_at_format = Some("%Y-%m-%d".into());
        assert_eq!(
            parse_sold_at("2026-03-01", &p).unwrap().to_rfc3339(),
            "2026-03-01T03:00:00+00:00"
        );
        p.csv.thousands_separator = None;
        assert!(
            parse_amount(&FieldValue::Text("1.5"), &p)
                .unwrap_err()
                .contains("decimal separator")
        );
    }
}
