//! Record-level provenance: the JSON of `GET /v1/rankings/…/provenance`.
//!
//! The answer lists the current sales that make up one ranking row (their amounts sum to its
//! revenue, their count is its sales count) and where each one's current version came from,
//! computed by `tributary_marts::provenance` from the lake pinned at the publication's
//! snapshots (or at `as_of` / `as_of_snapshot`).

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use tributary_marts::provenance::{Provenance, SourceRecord};

use crate::model::{LakeSnapshotJson, PublicationJson};

/// Where one sale's current version came from.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SourceCoordinatesJson {
    /// Postgres: WAL position of the change (`source.lsn`).
    #[oai(skip_serializing_if_is_none)]
    pub lsn: Option<i64>,
    /// Postgres: transaction id.
    #[oai(skip_serializing_if_is_none)]
    pub txid: Option<i64>,
    /// Files: the file sequence; ERP: the change sequence.
    #[oai(skip_serializing_if_is_none)]
    pub version_major: Option<i64>,
    /// Files and ERP: the record's ordinal within it.
    #[oai(skip_serializing_if_is_none)]
    pub version_minor: Option<i64>,
    /// Files: `{object, record, …}`; ERP: `{endpoint, cursor, request_id, …}` — what the
    /// ingestor recorded, as it recorded it.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<serde_json::Value>,
    /// Postgres: commit time; files and ERP: when the ingestor produced the event.
    #[oai(skip_serializing_if_is_none)]
    pub time: Option<DateTime<Utc>>,
}

/// The Kafka record that carried it into the lake.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct KafkaCoordinatesJson {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i64,
    /// Offset.
    pub offset: i64,
}

/// One current sale counted in the ranking row.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct SourceRecordJson {
    /// `pg`, `files` or `erp`.
    pub source: String,
    /// The sale's id in its source (`partner/id` for files, `system/id` for the ERP).
    pub sale_id: String,
    /// Resolved salesman id.
    pub salesman_id: Option<i64>,
    /// Resolved city id.
    pub city_id: Option<i64>,
    /// Amount, decimal string; null when the source gave none (counts as zero).
    pub amount: Option<String>,
    /// When the sale happened.
    pub sold_at: Option<DateTime<Utc>>,
    /// Where it was in its source.
    pub source_record: SourceCoordinatesJson,
    /// The Kafka record that carried this version.
    pub kafka: KafkaCoordinatesJson,
    /// When the lander read it.
    pub ingest_time: Option<DateTime<Utc>>,
    /// Trace id of the ingest batch (look it up in Jaeger); null for Debezium's records.
    pub trace_id: Option<String>,
}

impl From<&SourceRecord> for SourceRecordJson {
    fn from(r: &SourceRecord) -> Self {
        Self {
            source: r.source.clone(),
            sale_id: r.sale_id.clone(),
            salesman_id: r.salesman_id,
            city_id: r.city_id,
            amount: r.amount.map(|m| m.to_string()),
            sold_at: r.sold_at,
            source_record: SourceCoordinatesJson {
                lsn: r.source_lsn,
                txid: r.source_txid,
                version_major: r.version_major,
                version_minor: r.version_minor,
                // The ingestors write JSON; if a row ever holds something else, show it as text
                // rather than lose it.
                detail: r.provenance_json.as_deref().map(|text| {
                    serde_json::from_str(text)
                        .unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
                }),
                time: r.source_time,
            },
            kafka: KafkaCoordinatesJson {
                topic: r.kafka_topic.clone(),
                partition: r.kafka_partition,
                offset: r.kafka_offset,
            },
            ingest_time: r.ingest_time,
            trace_id: r.trace_id.clone(),
        }
    }
}

/// `GET /v1/rankings/…/provenance`.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ProvenancePage {
    /// The publication whose row this explains (or the on-demand one of `as_of`).
    pub publication: PublicationJson,
    /// `all` or `YYYY-MM`.
    pub period: String,
    /// `city`, `city_salesman` or `salesman`.
    pub ranking: String,
    /// The row's city (city and city-salesman rankings).
    #[oai(skip_serializing_if_is_none)]
    pub city_id: Option<i64>,
    /// The row's salesman (salesman and city-salesman rankings).
    #[oai(skip_serializing_if_is_none)]
    pub salesman_id: Option<i64>,
    /// The row's rank, as published.
    pub rank: u32,
    /// The row's revenue as published, decimal string.
    pub revenue: String,
    /// The row's sales count as published.
    pub sales: u64,
    /// Sum of every record's amount (not only this page's): equals `revenue`.
    pub records_revenue: String,
    /// The raw tables' snapshots the records were read at.
    pub lake_snapshots: Vec<LakeSnapshotJson>,
    /// Where the records were read: `kept_state` (the marts' state of current sales, indexed
    /// by city and salesman, when it is folded to exactly this publication's snapshots) or
    /// `lake` (the raw tables at those snapshots). The same records either way.
    pub records_from: String,
    /// Number of records (equals `sales`).
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Records skipped.
    pub offset: u64,
    /// This page of the records, largest amount first.
    pub records: Vec<SourceRecordJson>,
}

/// The page of `provenance` that `limit`/`offset` ask for.
pub fn page_of(provenance: &Provenance, limit: u32, offset: u64) -> Vec<SourceRecordJson> {
    provenance
        .records
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .map(SourceRecordJson::from)
        .collect()
}
