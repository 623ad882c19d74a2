//! Raw lake rows (Arrow batches of `pg_sale`, `pg_salesman`, `pg_city`, `file_sale`,
//! `erp_sale`) decoded into the events the incremental marts fold. Pure.
//!
//! The source order is the one `current_state` sorts by: `(source_lsn, kafka_offset)` for
//! Postgres, `(version_major, version_minor, kafka_offset)` for files and the ERP. Each batch
//! also advances its source's watermark: the furthest source position and the newest source
//! time seen.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use tributary_raw::schema::col;

use crate::error::MartsError;
use crate::fold::{
    CityKey, CityRow, MasterEvent, MasterVersion, SOURCE_ERP, SOURCE_FILES, SOURCE_PG, SaleEvent,
    SaleKey, SaleOrigin, SaleRefs, SalesmanRow,
};
use tributary_rankings::money::Money;
use tributary_rankings::publication::SourceWatermark as Watermark;

/// Typed columns of one batch, with errors naming the table and column.
struct Batch<'a> {
    table: &'static str,
    batch: &'a RecordBatch,
}

impl<'a> Batch<'a> {
    fn column(&self, name: &str) -> Result<&'a dyn Array, MartsError> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| MartsError::UnexpectedColumn {
                query: self.table,
                column: name.to_string(),
                expected: "present",
                found: "missing".into(),
            })
    }

    fn unexpected(&self, name: &str, expected: &'static str, found: &DataType) -> MartsError {
        MartsError::UnexpectedColumn {
            query: self.table,
            column: name.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    fn i64s(&self, name: &str) -> Result<Vec<Option<i64>>, MartsError> {
        let c = self.column(name)?;
        match c.data_type() {
            DataType::Int64 => Ok(c.as_primitive::<Int64Type>().iter().collect()),
            DataType::Int32 => Ok(c
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect()),
            other => Err(self.unexpected(name, "Int64", other)),
        }
    }

    fn required_i64s(&self, name: &str) -> Result<Vec<i64>, MartsError> {
        self.i64s(name)?
            .into_iter()
            .map(|v| {
                v.ok_or_else(|| MartsError::UnexpectedColumn {
                    query: self.table,
                    column: name.to_string(),
                    expected: "no nulls",
                    found: "a null".into(),
                })
            })
            .collect()
    }

    fn strs(&self, name: &str) -> Result<Vec<Option<String>>, MartsError> {
        let c = self.column(name)?;
        match c.data_type() {
            DataType::Utf8 => Ok(c
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()),
            DataType::LargeUtf8 => Ok(c
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()),
            DataType::Utf8View => Ok(c
                .as_string_view()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()),
            other => Err(self.unexpected(name, "Utf8", other)),
        }
    }

    /// A column a table's older snapshots may lack (`trace_id`): all null then.
    fn strs_if_present(&self, name: &str) -> Result<Vec<Option<String>>, MartsError> {
        if self.batch.column_by_name(name).is_none() {
            return Ok(vec![None; self.batch.num_rows()]);
        }
        self.strs(name)
    }

    /// The Kafka and ingest coordinates every raw table has, per row.
    fn landed(&self) -> Result<Vec<SaleOrigin>, MartsError> {
        let (topic, partition) = (
            self.strs(col::KAFKA_TOPIC)?,
            self.i64s(col::KAFKA_PARTITION)?,
        );
        let (ingest_time, trace_id) = (
            self.micros(col::INGEST_TIME)?,
            self.strs_if_present(col::TRACE_ID)?,
        );
        Ok(topic
            .into_iter()
            .zip(partition)
            .zip(ingest_time)
            .zip(trace_id)
            .map(
                |(((kafka_topic, partition), ingest_time_micros), trace_id)| SaleOrigin {
                    kafka_topic,
                    kafka_partition: partition.and_then(|p| i32::try_from(p).ok()),
                    ingest_time_micros,
                    trace_id,
                    ..SaleOrigin::default()
                },
            )
            .collect())
    }

    fn micros(&self, name: &str) -> Result<Vec<Option<i64>>, MartsError> {
        let c = self.column(name)?;
        match c.data_type() {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => Ok(c
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect()),
            other => Err(self.unexpected(name, "Timestamp(µs)", other)),
        }
    }

    fn money(&self, name: &str) -> Result<Vec<Option<Money>>, MartsError> {
        let c = self.column(name)?;
        let DataType::Decimal128(_, scale) = c.data_type() else {
            return Err(self.unexpected(name, "Decimal128", c.data_type()));
        };
        c.as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| {
                v.map(|v| Money::from_unscaled(v, *scale))
                    .transpose()
                    .map_err(|source| {
                        MartsError::Rankings(tributary_rankings::RankingsError::Revenue {
                            scope: format!("an amount in {}", self.table),
                            source,
                        })
                    })
            })
            .collect()
    }

    fn deleted(&self) -> Result<Vec<bool>, MartsError> {
        Ok(self
            .strs(col::OP)?
            .into_iter()
            .map(|op| op.as_deref() == Some("d"))
            .collect())
    }
}

/// Decodes `pg_sale` rows.
pub fn pg_sales(
    batch: &RecordBatch,
    watermark: &mut Watermark,
) -> Result<Vec<SaleEvent>, MartsError> {
    let b = Batch {
        table: "pg_sale",
        batch,
    };
    let (id, lsn, offset) = (
        b.required_i64s(col::ID)?,
        b.required_i64s(col::SOURCE_LSN)?,
        b.required_i64s(col::KAFKA_OFFSET)?,
    );
    let (salesman, city) = (b.i64s(col::SALESMAN_ID)?, b.i64s(col::CITY_ID)?);
    let (amount, sold_at, source_ts) = (
        b.money(col::AMOUNT)?,
        b.micros(col::SOLD_AT)?,
        b.micros(col::SOURCE_TS)?,
    );
    let deleted = b.deleted()?;
    let txid = b.i64s(col::SOURCE_TXID)?;
    let mut landed = b.landed()?.into_iter();
    Ok((0..batch.num_rows())
        .map(|i| {
            watermark.saw(lsn[i], source_ts[i]);
            SaleEvent {
                key: SaleKey {
                    source: SOURCE_PG.into(),
                    sale_id: id[i].to_string(),
                },
                order: [lsn[i], offset[i], 0],
                deleted: deleted[i],
                refs: SaleRefs {
                    salesman_id: salesman[i],
                    city_id: city[i],
                    ..SaleRefs::default()
                },
                amount: amount[i],
                sold_at_micros: sold_at[i],
                origin: SaleOrigin {
                    txid: txid[i],
                    source_time_micros: source_ts[i],
                    ..landed.next().unwrap_or_default()
                },
            }
        })
        .collect())
}

/// Decodes `file_sale` (`source` = `files`) or `erp_sale` (`erp`) rows.
pub fn event_sales(
    source: &'static str,
    batch: &RecordBatch,
    watermark: &mut Watermark,
) -> Result<Vec<SaleEvent>, MartsError> {
    debug_assert!(source == SOURCE_FILES || source == SOURCE_ERP);
    let b = Batch {
        table: if source == SOURCE_FILES {
            "file_sale"
        } else {
            "erp_sale"
        },
        batch,
    };
    let (origin, sale_id) = (b.strs(col::ORIGIN)?, b.strs(col::SALE_ID)?);
    let (major, minor, offset) = (
        b.required_i64s(col::VERSION_MAJOR)?,
        b.required_i64s(col::VERSION_MINOR)?,
        b.required_i64s(col::KAFKA_OFFSET)?,
    );
    let (salesman_id, salesman_code) = (b.i64s(col::SALESMAN_ID)?, b.strs(col::SALESMAN_CODE)?);
    let (city_id, city_name, city_state) = (
        b.i64s(col::CITY_ID)?,
        b.strs(col::CITY_NAME)?,
        b.strs(col::CITY_STATE)?,
    );
    let (amount, sold_at, produced_at) = (
        b.money(col::AMOUNT)?,
        b.micros(col::SOLD_AT)?,
        b.micros(col::PRODUCED_AT)?,
    );
    let deleted = b.deleted()?;
    let mut provenance = b.strs(col::PROVENANCE_JSON)?.into_iter();
    let mut landed = b.landed()?.into_iter();
    Ok((0..batch.num_rows())
        .map(|i| {
            watermark.saw(major[i], produced_at[i]);
            SaleEvent {
                key: SaleKey {
                    source: source.into(),
                    sale_id: format!(
                        "{}/{}",
                        origin[i].as_deref().unwrap_or_default(),
                        sale_id[i].as_deref().unwrap_or_default()
                    ),
                },
                order: [major[i], minor[i], offset[i]],
                deleted: deleted[i],
                refs: SaleRefs {
                    salesman_id: salesman_id[i],
                    salesman_code: salesman_code[i].clone(),
                    city_id: city_id[i],
                    city_key: match (&city_name[i], &city_state[i]) {
                        (Some(name), Some(state)) => Some(CityKey::new(name, state)),
                        _ => None,
                    },
                },
                amount: amount[i],
                sold_at_micros: sold_at[i],
                origin: SaleOrigin {
                    source_time_micros: produced_at[i],
                    provenance_json: provenance.next().flatten(),
                    ..landed.next().unwrap_or_default()
                },
            }
        })
        .collect())
}

/// Decodes the rows of a master-data table (`pg_salesman`, `pg_city`): its two text columns
/// `a` and `b` make a row with `row`, unless the event is a delete.
fn master_events<T>(
    table: &'static str,
    (a, b_col): (&str, &str),
    batch: &RecordBatch,
    watermark: &mut Watermark,
    row: impl Fn(Option<String>, Option<String>) -> T,
) -> Result<Vec<MasterEvent<T>>, MartsError> {
    let b = Batch { table, batch };
    let (id, lsn, offset, source_ts) = (
        b.required_i64s(col::ID)?,
        b.required_i64s(col::SOURCE_LSN)?,
        b.required_i64s(col::KAFKA_OFFSET)?,
        b.micros(col::SOURCE_TS)?,
    );
    let (first, second, deleted) = (b.strs(a)?, b.strs(b_col)?, b.deleted()?);
    Ok((0..batch.num_rows())
        .map(|i| {
            watermark.saw(lsn[i], source_ts[i]);
            MasterEvent {
                id: id[i],
                version: MasterVersion {
                    order: [lsn[i], offset[i], 0],
                    row: (!deleted[i]).then(|| row(first[i].clone(), second[i].clone())),
                },
            }
        })
        .collect())
}

/// Decodes `pg_salesman` rows.
pub fn salesmen(
    batch: &RecordBatch,
    watermark: &mut Watermark,
) -> Result<Vec<MasterEvent<SalesmanRow>>, MartsError> {
    master_events(
        "pg_salesman",
        (col::CODE, col::NAME),
        batch,
        watermark,
        |code, name| SalesmanRow { code, name },
    )
}

/// Decodes `pg_city` rows.
pub fn cities(
    batch: &RecordBatch,
    watermark: &mut Watermark,
) -> Result<Vec<MasterEvent<CityRow>>, MartsError> {
    master_events(
        "pg_city",
        (col::NAME, col::STATE),
        batch,
        watermark,
        |name, state| CityRow { name, state },
    )
}
