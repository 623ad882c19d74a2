//! The canonical sale event the file and ERP ingestors publish to Kafka (`raw.files.sales`,
//! `raw.ws.sales`) and the lander lands, plus the dead-letter record for input they reject.
//!
//! Postgres sales do not use this type: they arrive as Debezium envelopes. Everything else is
//! mapped to a [`SaleEvent`] at the edge, so the lake and the marts see one shape per source.
//!
//! Wire format: JSON, money as a decimal *string* (`"1234.50"`), times as RFC 3339. The Kafka
//! key is [`SaleEvent::key`], so every version of a sale lands in one partition, in order.

use serde::{Deserialize, Serialize};

/// Which source a sale came from. Together with the source's own sale id it is the sale's
/// identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleSource {
    /// A partner file from the inbox.
    Files,
    /// The legacy ERP's SOAP service.
    Erp,
}

impl SaleSource {
    /// Stable lower-case name, as used in keys, lake rows and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleSource::Files => "files",
            SaleSource::Erp => "erp",
        }
    }
}

/// What happened to the sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleOp {
    /// The sale exists with these values (new, or a newer version of one already sent).
    Upsert,
    /// The sale is gone: withdrawn from a partner's full snapshot, or cancelled in the ERP.
    Delete,
}

impl SaleOp {
    /// `u` or `d`: what the lake's `op` column stores.
    pub fn as_lake_op(self) -> &'static str {
        match self {
            SaleOp::Upsert => "u",
            SaleOp::Delete => "d",
        }
    }
}

/// Position of an event in its source's own order. Later versions of the same sale win,
/// compared as `(major, minor)`; Kafka arrival order does not matter.
///
/// - files: `major` = the file's sequence number (files are taken in order), `minor` = the
///   record's ordinal in the file (withdrawals after every record of their file);
/// - ERP: `major` = the ERP's change sequence (its cursor), `minor` = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceVersion {
    /// Coarse order.
    pub major: i64,
    /// Order within `major`.
    pub minor: i64,
}

/// One version of a sale from a non-CDC source.
///
/// Master-data references are kept as the source gave them: by id, or by natural key (a
/// salesman's code; a city's name and state). The marts resolve them against the current
/// master data, so a reference that is unknown today resolves when the master data arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleEvent {
    /// Which source.
    pub source: SaleSource,
    /// Sub-source: the partner for files, the ERP system name for the ERP.
    pub origin: String,
    /// The sale's id in its source (unique within `source` + `origin`).
    pub sale_id: String,
    /// Upsert or delete.
    pub op: SaleOp,
    /// Order of this version among the sale's versions.
    pub version: SourceVersion,
    /// `salesman.id`, when the source gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesman_id: Option<i64>,
    /// `salesman.code`, when the source gives a natural key instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesman_code: Option<String>,
    /// `city.id`, when the source gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_id: Option<i64>,
    /// City name, when the source gives a natural key instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_name: Option<String>,
    /// City state, with `city_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_state: Option<String>,
    /// Amount as a decimal string with at most two fraction digits (`None` for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// ISO 4217 currency, when the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// When the sale happened, RFC 3339 (`None` for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sold_at: Option<String>,
    /// When the ingestor produced the event, RFC 3339.
    pub produced_at: String,
    /// Where exactly the event came from: for files the object URL, ETag, size, last
    /// modified, content hash and record number; for the ERP the endpoint, operation, cursor,
    /// request id and response time. Kept whole in the lake.
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

impl SaleEvent {
    /// The Kafka key: `<source>/<origin>/<sale_id>`.
    pub fn key(&self) -> String {
        sale_key(self.source, &self.origin, &self.sale_id)
    }
}

/// The identity of a sale as one string: `<source>/<origin>/<sale_id>`.
pub fn sale_key(source: SaleSource, origin: &str, sale_id: &str) -> String {
    format!("{}/{origin}/{sale_id}", source.as_str())
}

/// Input an ingestor could not turn into a [`SaleEvent`]: published to the source's
/// dead-letter topic and landed in `raw.dead_letters`, reason and raw text intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedRecord {
    /// Which source.
    pub source: SaleSource,
    /// Partner or ERP system.
    pub origin: String,
    /// Machine-readable class (`missing_field`, `bad_amount`, `bad_timestamp`, …).
    pub error_kind: String,
    /// Why, for a human: names the field and the value.
    pub reason: String,
    /// The record exactly as read (a CSV line, a JSON value, an XML fragment).
    pub raw: String,
    /// When the ingestor rejected it, RFC 3339.
    pub produced_at: String,
    /// Where it came from (same fields as [`SaleEvent::provenance`]).
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json_with_money_as_a_string() {
        let event = SaleEvent {
            source: SaleSource::Files,
            origin: "acme".into(),
            sale_id: "A-1".into(),
            op: SaleOp::Upsert,
            version: SourceVersion { major: 3, minor: 7 },
            salesman_id: None,
            salesman_code: Some("S001".into()),
            city_id: None,
            city_name: Some("Campinas".into()),
            city_state: Some("SP".into()),
            amount: Some("10.50".into()),
            currency: Some("BRL".into()),
            sold_at: Some("2026-03-01T10:00:00Z".into()),
            produced_at: "2026-03-02T00:00:00Z".into(),
            provenance: serde_json::Map::new(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""amount":"10.50""#), "{json}");
        assert!(!json.contains("salesman_id"), "absent fields are omitted");
        assert_eq!(serde_json::from_str::<SaleEvent>(&json).unwrap(), event);
        assert_eq!(event.key(), "files/acme/A-1");
    }

    #[test]
    fn refuses_unknown_fields() {
        let err = serde_json::from_str::<SaleOp>(r#""upsertt""#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"));
    }
}
