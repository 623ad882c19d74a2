//! The lander's record decoding, routed as `Lander::ingest` routes it: the first byte picks the
//! topic's table (the three Debezium tables, the files' and the ERP's sale events, a dead-letter
//! topic), the rest is the Kafka record's value. Whatever the bytes: a tombstone, a refusal with
//! a reason (the lander dead-letters it), or a row that becomes a record batch of its table's
//! schema (a `BatchError` is a bug, never bad input); never a panic.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tributary_common::sale_event::SaleSource;
use tributary_lake::RawTable;
use tributary_lake::batch::{Provenance, change_row, event_row, record_batch};
use tributary_lake::decode::{Decoded, decode, decode_rejected, decode_sale_event};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let table = RawTable::ALL[usize::from(selector) % RawTable::ALL.len()];
    let decoded = match table {
        RawTable::DeadLetters => {
            let (reason, kind) = decode_rejected(Some(value));
            assert!(!reason.is_empty() && !kind.is_empty());
            return;
        }
        RawTable::FileSale => decode_sale_event(SaleSource::Files, Some(value)),
        RawTable::ErpSale => decode_sale_event(SaleSource::Erp, Some(value)),
        table => decode(table, Some(value)),
    };
    let provenance = Provenance {
        topic: "fuzz".into(),
        partition: 0,
        offset: 0,
        ingest_time_micros: 0,
        trace_id: None,
    };
    let row = match decoded {
        Ok(Decoded::Tombstone) => return,
        Ok(Decoded::Change(event)) => change_row(event, &provenance),
        Ok(Decoded::Event(cells)) => event_row(cells, &provenance),
        Err(error) => {
            assert!(!error.reason.is_empty(), "a refusal without a reason");
            return;
        }
    };
    let schema = iceberg::arrow::schema_to_arrow_schema(&table.iceberg_schema())
        .expect("the table's schema converts");
    if let Err(error) = record_batch(table, Arc::new(schema), &[row]) {
        panic!("a decoded record does not fit {table:?}: {error}");
    }
});
