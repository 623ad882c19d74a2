//! The lander's trace spans: one per Iceberg commit, attached to the traces of the producers
//! whose records it lands.
//!
//! Our ingestors put a W3C `traceparent` on every record (one per ingest batch). A commit that
//! covers records of exactly one batch continues that trace (its span is a child of the batch
//! span); a commit covering several links to each of them (up to
//! [`crate::lander::MAX_UPSTREAM_TRACES`]). Debezium's records carry no trace context: their
//! commits start a new trace. The commit span's own `traceparent` is stored in the snapshot
//! summary ([`tributary_raw::offsets::TRACEPARENT_PROPERTY`]) so the marts can link their runs to it.

use std::collections::BTreeSet;

use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tributary_common::telemetry::{remote_context, set_remote_parent};

use crate::error::LakeError;
use crate::sink::CommitReport;
use crate::source::TraceHeaders;
use tributary_raw::schema::RawTable;

/// The span of one commit to `table`, before it starts: database (Iceberg) and messaging
/// (Kafka, processing side) attributes, parent or links from `upstream`.
pub fn commit_span(
    namespace: &str,
    table: RawTable,
    rows: usize,
    upstream: Option<&BTreeSet<TraceHeaders>>,
) -> Span {
    let span = tracing::info_span!(
        "lander commit",
        otel.name = %format!("append {namespace}.{}", table.name()),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        db.system.name = "iceberg",
        db.namespace = %namespace,
        db.collection.name = %table.name(),
        db.operation.name = "append",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.batch.message_count = rows as i64,
        tributary.iceberg.snapshot_id = tracing::field::Empty,
        tributary.iceberg.rows = rows as i64,
        tributary.iceberg.files = tracing::field::Empty,
        tributary.iceberg.bytes = tracing::field::Empty,
        tributary.upstream_traces = upstream.map_or(0, BTreeSet::len) as i64,
    );
    let contexts: Vec<_> = upstream
        .into_iter()
        .flatten()
        .filter_map(|trace| remote_context(&trace.traceparent, trace.tracestate.as_deref()))
        .collect();
    if let [only] = contexts.as_slice() {
        set_remote_parent(&span, only.clone());
    }
    for context in contexts {
        span.add_link(context);
    }
    span
}

/// Records the outcome of a commit on its span: the snapshot, files and bytes, or the error.
pub fn record_commit(span: &Span, result: &Result<CommitReport, LakeError>) {
    match result {
        Ok(report) => {
            span.record("tributary.iceberg.snapshot_id", report.snapshot_id);
            span.record("tributary.iceberg.files", report.files as i64);
            span.record("tributary.iceberg.bytes", report.bytes as i64);
        }
        Err(error) => {
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                if error.is_retryable() {
                    "retryable"
                } else {
                    "permanent"
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iceberg::Catalog;
    use opentelemetry::trace::TracerProvider as _;
    use tokio_util::sync::CancellationToken;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::sink::tests::memory_catalog;
    use crate::source::MemorySource;
    use crate::{LanderConfig, Mode};
    use tributary_raw::catalog::{load_table, snapshot_traceparent};

    const SALE: &str = "salesdb.public.sale";
    const INGEST_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    async fn land(catalog: &Arc<dyn Catalog>, source: MemorySource) {
        let config = LanderConfig {
            discovery_interval_ms: 20,
            ..LanderConfig::default()
        };
        crate::lander::tests::lander_with(catalog, source, config)
            .await
            .run(Mode::Drain, CancellationToken::new())
            .await
            .unwrap();
    }

    fn sale(id: i64) -> String {
        format!(
            r#"{{"before":null,"after":{{"id":{id},"salesman_id":1,"city_id":2,"amount":"1.00","sold_at":"2026-03-01T10:00:00.000000Z","updated_at":"2026-03-01T10:00:00Z"}},"source":{{"lsn":{id},"ts_ms":1772359200000,"txId":5}},"op":"c","ts_ms":1772359200001}}"#
        )
    }

    async fn stored_traceparent(catalog: &Arc<dyn Catalog>) -> Option<String> {
        let table = load_table(catalog.as_ref(), "raw", RawTable::PgSale)
            .await
            .unwrap();
        let snapshot = table.metadata().current_snapshot().unwrap();
        snapshot_traceparent(&snapshot.summary().additional_properties).map(str::to_string)
    }

    #[tokio::test]
    async fn a_commit_continues_the_trace_of_the_batch_it_lands() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _default = tracing::subscriber::set_default(subscriber);

        let catalog = memory_catalog().await;
        let source = MemorySource::new();
        let trace = TraceHeaders {
            traceparent: format!("00-{INGEST_TRACE}-00f067aa0ba902b7-01"),
            tracestate: None,
        };
        for id in 0..3 {
            source.produce_traced(
                SALE,
                0,
                None,
                Some(sale(id).as_bytes()),
                Some(trace.clone()),
            );
        }
        land(&catalog, source.clone()).await;
        let stored = stored_traceparent(&catalog)
            .await
            .expect("traceparent in the summary");
        let commit = remote_context(&stored, None).unwrap();
        assert_eq!(commit.trace_id().to_string(), INGEST_TRACE, "{stored}");
        assert_ne!(commit.span_id().to_string(), "00f067aa0ba902b7");

        // Debezium sends no trace context: the next commit starts a trace of its own.
        source.produce(SALE, 0, None, Some(sale(3).as_bytes()));
        land(&catalog, source.reopen()).await;
        let stored = stored_traceparent(&catalog).await.unwrap();
        let commit = remote_context(&stored, None).unwrap();
        assert_ne!(commit.trace_id().to_string(), INGEST_TRACE);
    }
}
