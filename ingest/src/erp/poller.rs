//! Walks the ERP's change log page by page and turns each change into a [`SaleEvent`] (or a
//! [`RejectedRecord`] when a change cannot be read), together with the cursor to persist.
//!
//! The poller keeps no state of its own: the caller stores `next_cursor` atomically with the
//! events it publishes (the Kafka publisher does both in one transaction) and passes it back,
//! so a restart neither skips nor repeats a change.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tributary_common::sale_event::{RejectedRecord, SaleEvent, SaleOp, SaleSource, SourceVersion};

use super::client::{CallInfo, ErpClient};
use super::error::ErpError;
use super::model::{ChangeKind, ErpChange, RejectedChange};

/// One page of the change log, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Events in change-sequence order.
    pub events: Vec<SaleEvent>,
    /// Changes that could not be read, for the dead-letter stream.
    pub rejected: Vec<RejectedRecord>,
    /// The cursor this page was asked with.
    pub cursor: String,
    /// The cursor to persist with these events and ask with next.
    pub next_cursor: String,
    /// Whether the ERP has more changes right now (poll again at once instead of waiting).
    pub has_more: bool,
    /// The exchange that fetched the page (request id, response time, attempts made).
    pub call: CallInfo,
}

/// Where a page came from: the provenance every event of it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProvenance<'a> {
    /// The call.
    pub call: &'a CallInfo,
    /// The cursor requested.
    pub cursor: &'a str,
}

impl PageProvenance<'_> {
    fn map(&self, sequence: Option<i64>) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("endpoint".into(), self.call.endpoint.clone().into());
        map.insert(
            "operation".into(),
            self.call.operation.as_str().to_string().into(),
        );
        map.insert("cursor".into(), self.cursor.to_string().into());
        map.insert("request_id".into(), self.call.request_id.clone().into());
        map.insert("response_time_ms".into(), self.call.response_time_ms.into());
        if let Some(sequence) = sequence {
            map.insert("sequence".into(), sequence.into());
        }
        map
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Maps one ERP change to the canonical event: `version.major` = the change sequence, a
/// cancellation becomes a `Delete`.
pub fn change_to_event(
    change: &ErpChange,
    origin: &str,
    provenance: &PageProvenance<'_>,
    produced_at: DateTime<Utc>,
) -> SaleEvent {
    let mut provenance_map = provenance.map(Some(change.sequence));
    provenance_map.insert("changed_at".into(), rfc3339(change.changed_at).into());
    let base = SaleEvent {
        source: SaleSource::Erp,
        origin: origin.to_string(),
        sale_id: change.sale_id().to_string(),
        op: SaleOp::Upsert,
        version: SourceVersion {
            major: change.sequence,
            minor: 0,
        },
        salesman_id: None,
        salesman_code: None,
        city_id: None,
        city_name: None,
        city_state: None,
        amount: None,
        currency: None,
        sold_at: None,
        produced_at: rfc3339(produced_at),
        provenance: provenance_map,
    };
    match &change.kind {
        ChangeKind::Upsert(sale) => {
            let mut event = base;
            event
                .provenance
                .insert("erp_revision".into(), sale.revision.into());
            SaleEvent {
                salesman_code: Some(sale.salesman_code.clone()),
                city_name: Some(sale.city_name.clone()),
                city_state: Some(sale.city_state.clone()),
                amount: Some(sale.amount.to_string()),
                currency: Some(sale.currency.clone()),
                sold_at: Some(rfc3339(sale.sold_at)),
                ..event
            }
        }
        ChangeKind::Cancel { reason, .. } => {
            let mut event = base;
            event.op = SaleOp::Delete;
            if let Some(reason) = reason {
                event
                    .provenance
                    .insert("cancel_reason".into(), reason.clone().into());
            }
            event
        }
    }
}

/// Maps a change the client could not read to a dead-letter record.
pub fn rejected_to_record(
    rejected: &RejectedChange,
    origin: &str,
    provenance: &PageProvenance<'_>,
    produced_at: DateTime<Utc>,
) -> RejectedRecord {
    RejectedRecord {
        source: SaleSource::Erp,
        origin: origin.to_string(),
        error_kind: rejected.kind.to_string(),
        reason: rejected.reason.clone(),
        raw: rejected.raw.clone(),
        produced_at: rfc3339(produced_at),
        provenance: provenance.map(None),
    }
}

/// Polls one ERP.
#[derive(Debug, Clone)]
pub struct ErpPoller {
    client: ErpClient,
}

impl ErpPoller {
    /// A poller over `client` (its config gives the page size and the origin).
    pub fn new(client: ErpClient) -> Self {
        Self { client }
    }

    /// The client.
    pub fn client(&self) -> &ErpClient {
        &self.client
    }

    /// Fetches the page after `cursor` (empty = the start of the log) and maps it.
    pub async fn poll_page(&self, cursor: &str) -> Result<Page, ErpError> {
        let config = self.client.config();
        let response = self.client.get_sales(cursor, config.page_size).await?;
        let produced_at = self.client.clock().now();
        let provenance = PageProvenance {
            call: &response.info,
            cursor,
        };
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for change in &response.body.changes {
            match change {
                Ok(change) => events.push(change_to_event(
                    change,
                    &config.origin,
                    &provenance,
                    produced_at,
                )),
                Err(bad) => rejected.push(rejected_to_record(
                    bad,
                    &config.origin,
                    &provenance,
                    produced_at,
                )),
            }
        }
        Ok(Page {
            events,
            rejected,
            cursor: cursor.to_string(),
            next_cursor: response.body.next_cursor,
            has_more: response.body.has_more,
            call: response.info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erp::client::Operation;
    use crate::erp::model::ErpSale;

    fn info() -> CallInfo {
        CallInfo {
            endpoint: "http://erp/ws/sales".into(),
            operation: Operation::GetSales,
            request_id: "req-1".into(),
            response_time_ms: 12,
            attempts: 1,
        }
    }

    #[test]
    fn upserts_and_cancellations_map_to_events() {
        let info = info();
        let prov = PageProvenance {
            call: &info,
            cursor: "c0",
        };
        let now: DateTime<Utc> = "2026-04-01T00:00:00Z".parse().unwrap();
        let upsert = ErpChange {
            sequence: 41,
            changed_at: "2026-03-02T00:00:00Z".parse().unwrap(),
            kind: ChangeKind::Upsert(ErpSale {
                sale_id: "ERP-1".into(),
                revision: 1,
                salesman_code: "S003".into(),
                city_name: "Campinas".into(),
                city_state: "SP".into(),
                amount: "10.50".parse().unwrap(),
                currency: "BRL".into(),
                sold_at: "2026-03-01T10:00:00+02:00".parse().unwrap(),
            }),
        };
        let event = change_to_event(&upsert, "erp", &prov, now);
        assert_eq!(event.source, SaleSource::Erp);
        assert_eq!(event.op, SaleOp::Upsert);
        assert_eq!(
            event.version,
            SourceVersion {
                major: 41,
                minor: 0
            }
        );
        assert_eq!(event.amount.as_deref(), Some("10.50"));
        assert_eq!(event.sold_at.as_deref(), Some("2026-03-01T08:00:00Z"));
        assert_eq!(event.key(), "erp/erp/ERP-1");
        assert_eq!(event.provenance["cursor"], "c0");
        assert_eq!(event.provenance["request_id"], "req-1");
        assert_eq!(event.provenance["operation"], "GetSales");
        assert_eq!(event.provenance["response_time_ms"], 12);
        assert_eq!(event.provenance["endpoint"], "http://erp/ws/sales");

        let cancel = ErpChange {
            sequence: 42,
            changed_at: "2026-03-03T00:00:00Z".parse().unwrap(),
            kind: ChangeKind::Cancel {
                sale_id: "ERP-1".into(),
                reason: None,
            },
        };
        let event = change_to_event(&cancel, "erp", &prov, now);
        assert_eq!(event.op, SaleOp::Delete);
        assert_eq!(event.version.major, 42);
        assert_eq!(event.amount, None);
        assert_eq!(event.key(), "erp/erp/ERP-1");
        // The lake and marts read this JSON: it must pass the shared type's own checks.
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<SaleEvent>(&json).unwrap(), event);
    }

    #[test]
    fn rejected_changes_keep_raw_text() {
        let info = info();
        let prov = PageProvenance {
            call: &info,
            cursor: "c0",
        };
        let rec = rejected_to_record(
            &RejectedChange {
                kind: "bad_amount",
                reason: "amount \"x\"".into(),
                raw: "<change/>".into(),
            },
            "erp",
            &prov,
            Utc::now(),
        );
        assert_eq!(rec.error_kind, "bad_amount");
        assert_eq!(rec.raw, "<change/>");
        assert_eq!(rec.provenance["request_id"], "req-1");
    }
}
