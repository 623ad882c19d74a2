//! Trino's JSON rows as Arrow, so Trino's totals go through the same typed reading as
//! DataFusion's (`current_state::totals_from_batches`).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

use super::client::QueryResult;
use crate::error::MartsError;

/// The Arrow type a Trino column type reads as: integers as `Int64`, `varchar` as `Utf8`,
/// `decimal(p,s)` as `Decimal128(p,s)`, `boolean`; `None` for a type the totals never use.
fn arrow_type(trino: &str) -> Option<DataType> {
    let trino = trino.trim();
    match trino {
        "bigint" | "integer" | "smallint" | "tinyint" => Some(DataType::Int64),
        "boolean" => Some(DataType::Boolean),
        "varchar" => Some(DataType::Utf8),
        _ if trino.starts_with("varchar(") => Some(DataType::Utf8),
        _ => {
            let inner = trino.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (precision, scale) = inner.split_once(',')?;
            Some(DataType::Decimal128(
                precision.trim().parse().ok()?,
                scale.trim().parse().ok()?,
            ))
        }
    }
}

/// A decimal as the protocol sends it (`"-12.30"`), unscaled at `scale`.
fn unscaled(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale).ok()?;
    if fraction.len() > scale || whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let padded = format!("{whole}{fraction:0<scale$}");
    if !padded.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i128 = padded.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// An Arrow array of `cells` read by `get`; a null is null, a value `get` cannot read is the
/// error (its JSON text).
fn typed<'a, A, T>(
    cells: impl Iterator<Item = &'a Value>,
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<A, String>
where
    A: FromIterator<Option<T>>,
{
    cells
        .map(|v| match v {
            Value::Null => Ok(None),
            v => get(v).map(Some).ok_or_else(|| v.to_string()),
        })
        .collect()
}

/// `result` as one record batch; `query` names it in errors.
pub fn to_record_batch(
    query: &'static str,
    result: &QueryResult,
) -> Result<RecordBatch, MartsError> {
    let bad = |column: &str, expected: &'static str, found: String| MartsError::UnexpectedColumn {
        query,
        column: column.to_string(),
        expected,
        found,
    };
    let mut fields = Vec::with_capacity(result.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(result.columns.len());
    for (i, column) in result.columns.iter().enumerate() {
        let data_type = arrow_type(&column.type_name).ok_or_else(|| {
            bad(
                &column.name,
                "bigint, boolean, varchar or decimal",
                column.type_name.clone(),
            )
        })?;
        let cells = result
            .rows
            .iter()
            .map(|row| row.get(i).unwrap_or(&Value::Null));
        let invalid = |expected| move |v| bad(&column.name, expected, v);
        let array: ArrayRef = match &data_type {
            DataType::Int64 => Arc::new(
                typed::<Int64Array, _>(cells, Value::as_i64).map_err(invalid("an integer"))?,
            ),
            DataType::Boolean => Arc::new(
                typed::<BooleanArray, _>(cells, Value::as_bool).map_err(invalid("a boolean"))?,
            ),
            DataType::Utf8 => Arc::new(
                typed::<StringArray, _>(cells, Value::as_str).map_err(invalid("a string"))?,
            ),
            DataType::Decimal128(precision, scale) => Arc::new(
                typed::<Decimal128Array, _>(cells, |v| {
                    v.as_str().and_then(|s| unscaled(s, *scale))
                })
                .map_err(invalid("a decimal"))?
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| bad(&column.name, "a valid decimal type", e.to_string()))?,
            ),
            _ => unreachable!("arrow_type returns only the types above"),
        };
        fields.push(Field::new(&column.name, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| bad("*", "columns of equal length", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trino::client::Column;
    use arrow::array::AsArray;
    use arrow::datatypes::{Decimal128Type, Int64Type};
    use serde_json::json;

    fn result(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult {
            columns: columns
                .iter()
                .map(|(name, t)| Column {
                    name: name.to_string(),
                    type_name: t.to_string(),
                })
                .collect(),
            rows,
            ..QueryResult::default()
        }
    }

    #[test]
    fn protocol_values_become_typed_arrow_columns() {
        let r = result(
            &[
                ("period", "varchar"),
                ("id", "bigint"),
                ("resolved", "boolean"),
                ("revenue", "decimal(38,2)"),
            ],
            vec![
                vec![json!("all"), json!(7), json!(true), json!("1234.50")],
                vec![json!("2026-01"), json!(null), json!(false), json!("-0.05")],
                vec![json!(null), json!(9), json!(null), json!(null)],
            ],
        );
        let batch = to_record_batch("test", &r).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let ids = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![Some(7), None, Some(9)]);
        let revenue = batch.column(3).as_primitive::<Decimal128Type>();
        assert_eq!(
            revenue.iter().collect::<Vec<_>>(),
            vec![Some(123_450), Some(-5), None]
        );
        assert_eq!(revenue.scale(), 2);
        assert_eq!(batch.column(0).as_string::<i32>().value(1), "2026-01");
    }

    #[test]
    fn decimals_keep_their_scale_and_refuse_what_does_not_fit() {
        assert_eq!(unscaled("12", 2), Some(1200));
        assert_eq!(unscaled("12.3", 2), Some(1230));
        assert_eq!(unscaled("-0.01", 2), Some(-1));
        assert_eq!(unscaled(".5", 2), Some(50));
        assert_eq!(unscaled("1.234", 2), None, "more digits than the scale");
        assert_eq!(unscaled("1e3", 2), None);
        assert_eq!(unscaled("", 2), None);
        assert_eq!(unscaled("-", 2), None);
    }

    #[test]
    fn unknown_types_and_mismatched_values_are_clear_errors() {
        let r = result(&[("at", "timestamp(6) with time zone")], vec![]);
        let error = to_record_batch("q", &r).unwrap_err().to_string();
        assert!(error.contains("column at"), "{error}");
        let r = result(&[("id", "bigint")], vec![vec![json!("seven")]]);
        let error = to_record_batch("q", &r).unwrap_err().to_string();
        assert!(error.contains("expected an integer"), "{error}");
    }
}
