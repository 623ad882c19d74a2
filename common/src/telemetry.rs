//! Telemetry set-up shared by every binary: logs (see [`crate::logging`]) and OpenTelemetry
//! traces through `tracing`, configured by the standard `OTEL_*` variables.
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_TRACES_EXPORTER` | `none` (default): spans get trace ids (in logs and Kafka headers) but are not exported; `console`: one JSON line per finished span on stdout; `otlp`: OTLP over HTTP/protobuf |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector base URL (`/v1/traces` is appended), default `http://localhost:4318`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names the full URL instead |
//! | `OTEL_SERVICE_NAME` | `service.name` of the spans (default: the binary's name) |
//! | `OTEL_BSP_SCHEDULE_DELAY` | milliseconds between OTLP batch exports (default 5000) |
//!
//! Context crosses process boundaries as W3C Trace Context (`traceparent`, `tracestate`):
//! [`current_trace_headers`] gives the headers of the current span, [`remote_context`] turns
//! stored ones back into a parent or a link.
//!
//! Only Tributary's own spans (targets `tributary*`, level INFO and above) become OpenTelemetry
//! spans, so dependencies' spans never flood the collector.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::logging::LogFormat;

/// W3C Trace Context header carrying the trace id and the parent span id.
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesExporter {
    /// Not exported (the default): trace ids still exist for logs and propagation.
    None,
    /// One JSON line per finished span on stdout.
    Console,
    /// OTLP over HTTP/protobuf to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    Otlp,
}

/// What the environment asks of telemetry, read by [`TelemetrySettings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `service.name`.
    pub service_name: String,
    /// Span exporter.
    pub exporter: TracesExporter,
    /// Log line format.
    pub log_format: LogFormat,
    /// Problems found in the environment, logged once logging works (the OpenTelemetry
    /// specification asks to warn and go on with the default rather than fail).
    pub warnings: Vec<String>,
}

impl TelemetrySettings {
    /// Reads `OTEL_TRACES_EXPORTER`, `OTEL_SERVICE_NAME` and the log format variables from
    /// `env` (binaries pass `std::env::vars()`; tests pass their own).
    pub fn from_env(
        default_service: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut warnings = Vec::new();
        let exporter = match env
            .get("OTEL_TRACES_EXPORTER")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("none") => TracesExporter::None,
            Some("console") | Some("stdout") => TracesExporter::Console,
            Some("otlp") => TracesExporter::Otlp,
            Some(other) => {
                warnings.push(format!(
                    "OTEL_TRACES_EXPORTER={other} is not supported (none, console, otlp): traces are not exported"
                ));
                TracesExporter::None
            }
        };
        let service_name = env
            .get("OTEL_SERVICE_NAME")
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| default_service.to_string());
        let (log_format, log_warning) = LogFormat::from_env(&env);
        warnings.extend(log_warning);
        Self {
            service_name,
            exporter,
            log_format,
            warnings,
        }
    }
}

/// Keeps the span pipeline alive; dropping it flushes and shuts it down (so the last spans of a
/// one-shot command are exported before the process exits).
#[must_use = "dropping the guard shuts telemetry down: keep it until main returns"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports what is buffered now (tests, or before a deliberate exit).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "could not flush spans");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            // Logging may already be gone: stderr is the last resort.
            eprintln!("telemetry: could not export the last spans: {error}");
        }
    }
}

/// Installs logging and tracing for `service` from the environment. Call once, first thing in
/// `main`, and keep the guard: `let _telemetry = tributary_common::telemetry::init("tributary-lake");`
///
/// A second call (tests) installs nothing and returns an inert guard.
pub fn init(service: &str) -> TelemetryGuard {
    let settings = TelemetrySettings::from_env(service, std::env::vars());
    let guard = init_with(settings);
    // Every service starts here: the one place that arms the tests' crash points.
    if let Err(refused) = crate::failpoint::arm_from_env() {
        tracing::error!("{refused}");
        eprintln!("{service}: {refused}");
        std::process::exit(2);
    }
    guard
}

/// [`init`] with explicit settings.
pub fn init_with(settings: TelemetrySettings) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut warnings = settings.warnings.clone();
    let provider = build_provider(&settings, &mut warnings);
    let tracer = provider.tracer("tributary");
    // Our spans only: dependencies (sqlx, opendal, rdkafka, reqwest) trace at INFO too.
    let otel_filter = Targets::new()
        .with_target("tributary", LevelFilter::INFO)
        .with_target("tributary_common", LevelFilter::INFO);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(otel_filter);
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = crate::logging::layer(settings.log_format).with_filter(log_filter);
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init()
        .is_ok();
    if !installed {
        let _ = provider.shutdown();
        return TelemetryGuard { provider: None };
    }
    opentelemetry::global::set_tracer_provider(provider.clone());
    for warning in warnings {
        tracing::warn!(service = %settings.service_name, "{warning}");
    }
    tracing::debug!(service = %settings.service_name, exporter = ?settings.exporter, log_format = ?settings.log_format, "telemetry initialised");
    TelemetryGuard {
        provider: Some(provider),
    }
}

fn build_provider(settings: &TelemetrySettings, warnings: &mut Vec<String>) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.namespace", "tributary"))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let builder = match settings.exporter {
        TracesExporter::None => builder,
        TracesExporter::Console => builder.with_simple_exporter(ConsoleExporter),
        TracesExporter::Otlp => match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            // Batched on the SDK's own thread: exporting never blocks a request or a commit.
            Ok(exporter) => builder.with_batch_exporter(exporter),
            Err(error) => {
                warnings.push(format!(
                    "cannot build the OTLP exporter ({error}): traces are not exported"
                ));
                builder
            }
        },
    };
    builder.build()
}

/// The W3C Trace Context headers (`traceparent`, and `tracestate` when not empty) of the
/// current span: what a producer puts on every record it sends. Empty outside a sampled span.
pub fn current_trace_headers() -> Vec<(String, String)> {
    trace_headers(&tracing::Span::current())
}

/// The W3C Trace Context headers of `span` (see [`current_trace_headers`]).
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let mut headers = Vec::with_capacity(2);
    for name in [TRACEPARENT, TRACESTATE] {
        if let Some(value) = carrier.remove(name).filter(|v| !v.is_empty()) {
            headers.push((name.to_string(), value));
        }
    }
    headers
}

/// The `traceparent` of `span`, to store next to what it produced (e.g. in an Iceberg snapshot
/// summary) so a later job can link to it with [`remote_context`].
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    trace_headers(span)
        .into_iter()
        .find(|(name, _)| name == TRACEPARENT)
        .map(|(_, value)| value)
}

/// The remote span a stored or received `traceparent` (and optional `tracestate`) names, or
/// `None` if it is missing or malformed. Use it as a parent
/// (`span.set_parent(Context::new().with_remote_span_context(cx))`) or a link
/// ([`link_span`]).
pub fn remote_context(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert(TRACEPARENT.to_string(), traceparent.to_string());
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_string(), state.to_string());
    }
    let context = TraceContextPropagator::new().extract(&carrier);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Links `span` to the span a stored `traceparent` names (e.g. a mart run to the lander commit
/// that wrote a snapshot it read). Returns whether the value was a valid `traceparent`.
pub fn link_span(span: &tracing::Span, traceparent: &str) -> bool {
    match remote_context(traceparent, None) {
        Some(cx) => {
            span.add_link(cx);
            true
        }
        None => false,
    }
}

/// Makes `span` a child of the remote span `parent` (call before the span is first entered).
pub fn set_remote_parent(span: &tracing::Span, parent: SpanContext) {
    // Fails only when the span was already entered or tracing is off: then it stays a root.
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// The OpenTelemetry trace id of `span` as 32 hex digits, if it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// `OTEL_TRACES_EXPORTER=console`: one JSON object per finished span, one per line, on stdout.
/// Meant for people and simple tests; use OTLP for anything else.
#[derive(Debug)]
struct ConsoleExporter;

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = std::io::stdout().lock();
        for span in batch {
            // A broken stdout must not take the service down: spans are best effort.
            let _ = writeln!(out, "{}", span_json(&span));
        }
        Ok(())
    }
}

fn span_json(span: &SpanData) -> serde_json::Value {
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let attributes: serde_json::Map<String, serde_json::Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string().into()))
        .collect();
    let links: Vec<serde_json::Value> = span
        .links
        .iter()
        .map(|link| {
            serde_json::json!({
                "trace_id": link.span_context.trace_id().to_string(),
                "span_id": link.span_context.span_id().to_string(),
            })
        })
        .collect();
    serde_json::json!({
        "otel_span": span.name,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": span.parent_span_id.to_string(),
        "kind": format!("{:?}", span.span_kind).to_ascii_lowercase(),
        "start_unix_nanos": nanos(span.start_time),
        "end_unix_nanos": nanos(span.end_time),
        "status": format!("{:?}", span.status),
        "attributes": attributes,
        "links": links,
    })
}

static PROCESS_GUARD: OnceLock<std::sync::Mutex<Option<TelemetryGuard>>> = OnceLock::new();

/// For mains that cannot hold a guard: installs telemetry and keeps the guard for the life of
/// the process. Spans still buffered when the process exits may be lost; prefer [`init`].
pub fn init_for_process(service: &str) {
    let guard = init(service);
    let _ = PROCESS_GUARD.set(std::sync::Mutex::new(Some(guard)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exporting_is_off_by_default() {
        let settings = TelemetrySettings::from_env("tributary-lake", env(&[]));
        assert_eq!(settings.exporter, TracesExporter::None);
        assert_eq!(settings.service_name, "tributary-lake");
        assert_eq!(settings.log_format, LogFormat::Text);
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn standard_variables_choose_exporter_and_service_name() {
        let settings = TelemetrySettings::from_env(
            "tributary-lake",
            env(&[
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_SERVICE_NAME", "lander-eu"),
            ]),
        );
        assert_eq!(settings.exporter, TracesExporter::Otlp);
        assert_eq!(settings.service_name, "lander-eu");
        let console = TelemetrySettings::from_env("x", env(&[("OTEL_TRACES_EXPORTER", "console")]));
        assert_eq!(console.exporter, TracesExporter::Console);
    }

    #[test]
    fn an_unknown_exporter_warns_and_exports_nothing() {
        let settings = TelemetrySettings::from_env("x", env(&[("OTEL_TRACES_EXPORTER", "zipkin")]));
        assert_eq!(settings.exporter, TracesExporter::None);
        assert!(
            settings.warnings[0].contains("zipkin"),
            "{:?}",
            settings.warnings
        );
    }

    #[test]
    fn traceparent_round_trips_into_a_remote_context() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote_context(header, Some("vendor=1")).expect("valid traceparent");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_remote() && cx.is_sampled());
        assert_eq!(cx.trace_state().header(), "vendor=1");
        assert!(remote_context("00-garbage", None).is_none());
        assert!(
            remote_context(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None
            )
            .is_none(),
            "an all-zero trace id is invalid"
        );
    }

    #[test]
    fn spans_get_trace_headers_and_links_under_a_local_subscriber() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(Targets::new().with_target("tributary_common", LevelFilter::INFO)),
        );
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("batch");
            let _entered = parent.enter();
            let headers = current_trace_headers();
            assert_eq!(headers.len(), 1, "{headers:?}");
            assert_eq!(headers[0].0, TRACEPARENT);
            let id = trace_id(&parent).expect("trace id");
            assert!(headers[0].1.contains(&id), "{headers:?} {id}");
            let stored = traceparent(&parent).unwrap();
            let child = tracing::info_span!("commit");
            set_remote_parent(&child, remote_context(&stored, None).unwrap());
            assert_eq!(trace_id(&child).as_deref(), Some(id.as_str()));
            let linked = tracing::info_span!(parent: None, "mart run");
            assert!(link_span(&linked, &stored));
            assert_ne!(trace_id(&linked).as_deref(), Some(id.as_str()));
        });
    }
}
