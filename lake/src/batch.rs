//! Rows of cells → Arrow `RecordBatch` in the exact schema of the Iceberg table.
//!
//! Pure. A row is a `Vec<Cell>` in [`RawTable::columns`] order; the batch is built in the order
//! of the table's *current* Arrow schema (from the catalog), matched by column name, so a
//! column added to the table later (optional) is written as nulls instead of breaking the lander.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, new_null_array,
};
use arrow::datatypes::{DataType, SchemaRef};
use base64::Engine;

use crate::decode::{Cell, ChangeEvent};
use tributary_raw::schema::{ColumnType, RawTable};

/// One row of a raw table, cells in [`RawTable::columns`] order.
pub type Row = Vec<Cell>;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// When the lander read it, microseconds since the epoch.
    pub ingest_time_micros: i64,
    /// Trace id of the ingest batch that produced it (from its `traceparent` header).
    pub trace_id: Option<String>,
}

/// A row could not be turned into the table's Arrow schema. Always a bug or a table whose schema
/// was changed incompatibly by hand, never bad input: input problems are [`DecodeError`](crate::decode::DecodeError)s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The table has a required column the lander does not know how to fill.
    #[error("table {table} has required column {column:?} that the lander does not write")]
    UnknownRequiredColumn {
        /// Table.
        table: RawTable,
        /// Column.
        column: String,
    },
    /// A row's cell does not match its column's type.
    #[error("table {table} row {row}: column {column:?} holds {cell:?}, expected {expected:?}")]
    CellType {
        /// Table.
        table: RawTable,
        /// Row index in the batch.
        row: usize,
        /// Column.
        column: &'static str,
        /// What was found.
        cell: Cell,
        /// What the column needs.
        expected: ColumnType,
    },
    /// Arrow refused the arrays (e.g. a null in a required column, or a type mismatch with the
    /// table's Arrow schema).
    #[error("table {table}: arrow refused the batch: {message}")]
    Arrow {
        /// Table.
        table: RawTable,
        /// Arrow's message.
        message: String,
    },
}

/// The row of a change table for a decoded event.
pub fn change_row(event: ChangeEvent, prov: &Provenance) -> Row {
    let mut row = Vec::with_capacity(event.image.len() + 10);
    row.push(Cell::Str(event.op.as_str().to_string()));
    row.extend(event.image);
    row.push(opt_str(event.before_json));
    row.push(opt_str(event.after_json));
    row.push(Cell::Long(event.source_lsn));
    row.push(Cell::Timestamp(event.source_ts_micros));
    row.push(event.source_txid.map_or(Cell::Null, Cell::Long));
    push_kafka_provenance(&mut row, prov);
    row
}

/// The `dead_letters` row for a record that could not be decoded.
///
/// Key and value are kept whole: as text when they are UTF-8, otherwise base64 (standard
/// alphabet, padded), with `*_encoding` saying which.
pub fn dead_letter_row(
    prov: &Provenance,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    reason: &str,
    error_kind: &str,
) -> Row {
    let (key, key_encoding) = text_or_base64(key);
    let (value, value_encoding) = text_or_base64(value);
    vec![
        Cell::Str(prov.topic.clone()),
        Cell::Int(prov.partition),
        Cell::Long(prov.offset),
        key,
        key_encoding,
        value,
        value_encoding,
        Cell::Str(reason.to_string()),
        Cell::Str(error_kind.to_string()),
        Cell::Timestamp(prov.ingest_time_micros),
        opt_str(prov.trace_id.clone()),
    ]
}

/// The row of a sale-event table: the decoded leading cells, then where the record was read.
pub fn event_row(mut cells: Vec<Cell>, prov: &Provenance) -> Row {
    push_kafka_provenance(&mut cells, prov);
    cells
}

fn push_kafka_provenance(row: &mut Row, prov: &Provenance) {
    row.push(Cell::Str(prov.topic.clone()));
    row.push(Cell::Int(prov.partition));
    row.push(Cell::Long(prov.offset));
    row.push(Cell::Timestamp(prov.ingest_time_micros));
    row.push(opt_str(prov.trace_id.clone()));
}

fn opt_str(s: Option<String>) -> Cell {
    s.map_or(Cell::Null, Cell::Str)
}

fn text_or_base64(bytes: Option<&[u8]>) -> (Cell, Cell) {
    match bytes {
        None => (Cell::Null, Cell::Null),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => (Cell::Str(text.to_string()), Cell::Str("utf8".into())),
            Err(_) => (
                Cell::Str(base64::engine::general_purpose::STANDARD.encode(b)),
                Cell::Str("base64".into()),
            ),
        },
    }
}

/// Builds the batch for `rows` of `table` in `schema` (the table's Arrow schema, from
/// `iceberg::arrow::schema_to_arrow_schema` of its current Iceberg schema).
pub fn record_batch(
    table: RawTable,
    schema: SchemaRef,
    rows: &[Row],
) -> Result<RecordBatch, BatchError> {
    let columns = table.columns();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let Some(index) = columns.iter().position(|c| c.name == field.name()) else {
            if field.is_nullable() {
                arrays.push(new_null_array(field.data_type(), rows.len()));
                continue;
            }
            return Err(BatchError::UnknownRequiredColumn {
                table,
                column: field.name().clone(),
            });
        };
        let column = columns[index];
        let mismatch = |row: usize, cell: &Cell| BatchError::CellType {
            table,
            row,
            column: column.name,
            cell: cell.clone(),
            expected: column.ty,
        };
        let cells = rows.iter().map(|r| r.get(index).unwrap_or(&Cell::Null));
        let array: ArrayRef = match column.ty {
            ColumnType::Long => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for (i, cell) in cells.enumerate() {
                    match cell {
                        Cell::Long(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        other => return Err(mismatch(i, other)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Int => {
                let mut b = Int32Builder::with_capacity(rows.len());
                for (i, cell) in cells.enumerate() {
                    match cell {
                        Cell::Int(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        other => return Err(mismatch(i, other)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::String => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for (i, cell) in cells.enumerate() {
                    match cell {
                        Cell::Str(v) => b.append_value(v),
                        Cell::Null => b.append_null(),
                        other => return Err(mismatch(i, other)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Money => {
                let mut b = Decimal128Builder::with_capacity(rows.len());
                for (i, cell) in cells.enumerate() {
                    match cell {
                        Cell::Money(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        other => return Err(mismatch(i, other)),
                    }
                }
                Arc::new(with_type(b.finish(), field.data_type(), table)?)
            }
            ColumnType::Timestamptz => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                for (i, cell) in cells.enumerate() {
                    match cell {
                        Cell::Timestamp(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        other => return Err(mismatch(i, other)),
                    }
                }
                Arc::new(with_type(b.finish(), field.data_type(), table)?)
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| BatchError::Arrow {
        table,
        message: e.to_string(),
    })
}

/// Decimal and timestamp arrays carry parameters (precision/scale, time zone) that must equal the
/// table's exactly: take them from the schema rather than restating them.
fn with_type<T>(
    array: arrow::array::PrimitiveArray<T>,
    data_type: &DataType,
    table: RawTable,
) -> Result<arrow::array::PrimitiveArray<T>, BatchError>
where
    T: arrow::datatypes::ArrowPrimitiveType,
{
    if !arrow::array::PrimitiveArray::<T>::is_compatible(data_type) {
        return Err(BatchError::Arrow {
            table,
            message: format!("column type {data_type} does not fit {}", T::DATA_TYPE),
        });
    }
    Ok(array.with_data_type(data_type.clone()))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};

    use super::*;
    use crate::decode::{DecodeError, ErrorKind, Op};
    use tributary_raw::schema::col;

    fn schema(table: RawTable) -> SchemaRef {
        Arc::new(iceberg::arrow::schema_to_arrow_schema(&table.iceberg_schema()).unwrap())
    }

    fn prov(offset: i64) -> Provenance {
        Provenance {
            topic: "salesdb.public.sale".into(),
            partition: 0,
            offset,
            ingest_time_micros: 1_000_000,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        }
    }

    fn sale_event(id: i64, amount: Option<i128>) -> ChangeEvent {
        ChangeEvent {
            op: Op::Create,
            image: vec![
                Cell::Long(id),
                Cell::Long(7),
                Cell::Null,
                amount.map_or(Cell::Null, Cell::Money),
                Cell::Timestamp(5),
                Cell::Null,
            ],
            before_json: None,
            after_json: Some("{}".into()),
            source_lsn: 99,
            source_ts_micros: 1_000,
            source_txid: None,
        }
    }

    #[test]
    fn change_rows_build_a_batch_in_the_table_schema() {
        let rows = vec![
            change_row(sale_event(1, Some(12345)), &prov(10)),
            change_row(sale_event(2, None), &prov(11)),
        ];
        let batch = record_batch(RawTable::PgSale, schema(RawTable::PgSale), &rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema(RawTable::PgSale));
        let amount = batch.column_by_name(col::AMOUNT).unwrap();
        let amount = amount.as_primitive::<Decimal128Type>();
        assert_eq!(amount.value(0), 12345);
        assert_eq!(amount.value_as_string(0), "123.45");
        assert!(amount.is_null(1));
        let offsets = batch.column_by_name(col::KAFKA_OFFSET).unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[10, 11]);
        let sold_at = batch.column_by_name(col::SOLD_AT).unwrap();
        assert_eq!(
            sold_at.as_primitive::<TimestampMicrosecondType>().value(0),
            5
        );
        let op = batch.column_by_name(col::OP).unwrap();
        assert_eq!(op.as_string::<i32>().value(0), "c");
        let trace_id = batch.column_by_name(col::TRACE_ID).unwrap();
        assert_eq!(
            trace_id.as_string::<i32>().value(1),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn dead_letters_keep_bytes_whole() {
        let error = DecodeError {
            kind: ErrorKind::InvalidJson,
            reason: "value is not valid JSON".into(),
        };
        let rows = vec![
            dead_letter_row(
                &prov(3),
                Some(br#"{"id":1}"#),
                Some(b"garbage"),
                &error.reason,
                error.kind.as_str(),
            ),
            dead_letter_row(
                &prov(4),
                None,
                Some(&[0xff, 0x00]),
                &error.reason,
                error.kind.as_str(),
            ),
        ];
        let batch =
            record_batch(RawTable::DeadLetters, schema(RawTable::DeadLetters), &rows).unwrap();
        let value = batch.column_by_name(col::KAFKA_VALUE).unwrap();
        let value = value.as_string::<i32>();
        assert_eq!(value.value(0), "garbage");
        assert_eq!(value.value(1), "/wA=");
        let enc = batch.column_by_name(col::KAFKA_VALUE_ENCODING).unwrap();
        assert_eq!(enc.as_string::<i32>().value(1), "base64");
        let key = batch.column_by_name(col::KAFKA_KEY).unwrap();
        assert!(key.is_null(1));
        let kind = batch.column_by_name(col::ERROR_KIND).unwrap();
        assert_eq!(kind.as_string::<i32>().value(0), "invalid_json");
    }

    #[test]
    fn null_in_required_column_is_refused() {
        let mut event = sale_event(1, None);
        event.image[0] = Cell::Null;
        let rows = vec![change_row(event, &prov(1))];
        let err = record_batch(RawTable::PgSale, schema(RawTable::PgSale), &rows).unwrap_err();
        assert!(matches!(err, BatchError::Arrow { .. }), "{err}");
    }

    #[test]
    fn wrong_cell_type_is_refused() {
        let mut event = sale_event(1, None);
        event.image[3] = Cell::Str("1.00".into());
        let rows = vec![change_row(event, &prov(1))];
        let err = record_batch(RawTable::PgSale, schema(RawTable::PgSale), &rows).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::CellType {
                    column: "amount",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn extra_optional_column_in_table_is_filled_with_nulls() {
        let base = schema(RawTable::PgCity);
        let mut fields: Vec<_> = base.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "added_later",
            DataType::Utf8,
            true,
        )));
        let wider = Arc::new(arrow::datatypes::Schema::new(fields));
        let event = ChangeEvent {
            op: Op::Delete,
            image: vec![Cell::Long(1), Cell::Null, Cell::Null],
            before_json: Some("{}".into()),
            after_json: None,
            source_lsn: 1,
            source_ts_micros: 1,
            source_txid: Some(3),
        };
        let batch = record_batch(RawTable::PgCity, wider, &[change_row(event, &prov(0))]).unwrap();
        assert!(batch.column_by_name("added_later").unwrap().is_null(0));
    }
}
