//! Log set-up shared by every binary: human-readable text by default, JSON on request
//! (`TRIBUTARY_LOG_FORMAT=json`, or the conventional `LOG_FORMAT=json`), level from `RUST_LOG`
//! (default `info`). Inside a traced span every line carries `trace_id` and `span_id`, the
//! same ids the traces and the Kafka `traceparent` headers have.
//!
//! Installed by [`crate::telemetry::init`], which also sets up the traces.

use std::collections::HashMap;
use std::fmt;

use tracing::Subscriber;
use tracing_opentelemetry::OtelData;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format};
use tracing_subscriber::registry::LookupSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    Text,
    /// One JSON object per line, event fields flattened to the top level.
    Json,
}

impl LogFormat {
    /// Reads `TRIBUTARY_LOG_FORMAT`, then `LOG_FORMAT` (`text` or `json`). An unknown value
    /// falls back to text, with a warning to log.
    pub fn from_env(env: &HashMap<String, String>) -> (Self, Option<String>) {
        let Some((name, value)) = ["TRIBUTARY_LOG_FORMAT", "LOG_FORMAT"]
            .iter()
            .find_map(|name| env.get(*name).map(|value| (*name, value)))
        else {
            return (Self::Text, None);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => (Self::Json, None),
            "" | "text" | "pretty" | "full" => (Self::Text, None),
            other => (
                Self::Text,
                Some(format!(
                    "{name}={other} is not a log format (text, json): using text"
                )),
            ),
        }
    }
}

/// The formatting layer for `format`, with trace ids on every line inside a span.
pub fn layer<S>(log_format: LogFormat) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            // Lines are re-assembled to add the ids, and the services log to files.
            .with_ansi(false)
            .event_format(WithTraceIds {
                inner: format().with_target(true).with_ansi(false),
                json: false,
            })
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceIds {
                inner: format().json().flatten_event(true).with_target(true),
                json: true,
            })
            .boxed(),
    }
}

/// Installs logging (and tracing, see [`crate::telemetry`]) for the life of the process.
/// Prefer `let _telemetry = tributary_common::telemetry::init(service);`, whose guard flushes
/// the last spans when `main` returns.
pub fn init(service: &'static str) {
    crate::telemetry::init_for_process(service);
}

/// Wraps a line formatter and adds `trace_id` / `span_id` of the innermost traced span.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = trace_ids(ctx) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_ids(&line, &ids, self.json))
    }
}

/// `(trace_id, span_id)` of the innermost span in scope that has OpenTelemetry data.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let scope = ctx.event_scope()?;
    for span in scope {
        let extensions = span.extensions();
        if let Some(data) = extensions.get::<OtelData>()
            && let (Some(trace_id), Some(span_id)) = (data.trace_id(), data.span_id())
            && trace_id != opentelemetry::TraceId::INVALID
        {
            return Some((trace_id.to_string(), span_id.to_string()));
        }
    }
    None
}

/// `line` (one formatted event, ending in a newline) with the ids added: as two more fields
/// of the JSON object, or as `key=value` pairs at the end of a text line.
fn with_ids(line: &str, (trace_id, span_id): &(String, String), json: bool) -> String {
    let body = line.trim_end_matches('\n');
    if json && let Some(open) = body.strip_suffix('}') {
        let separator = if open.trim_end().ends_with('{') {
            ""
        } else {
            ","
        };
        format!("{open}{separator}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}\n")
    } else {
        format!("{body} trace_id={trace_id} span_id={span_id}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (String, String) {
        (
            "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            "00f067aa0ba902b7".into(),
        )
    }

    #[test]
    fn json_lines_get_the_ids_as_fields() {
        let line = "{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"committed\"}\n";
        let out = with_ids(line, &ids(), true);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(value["span_id"], "00f067aa0ba902b7");
        assert_eq!(value["message"], "committed");
        assert!(out.ends_with("}\n"));
        let empty: serde_json::Value =
            serde_json::from_str(&with_ids("{}\n", &ids(), true)).unwrap();
        assert_eq!(empty["span_id"], "00f067aa0ba902b7");
    }

    #[test]
    fn text_lines_get_the_ids_at_the_end() {
        let out = with_ids("2026-11-25 INFO lake: committed rows=3\n", &ids(), false);
        assert_eq!(
            out,
            "2026-11-25 INFO lake: committed rows=3 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7\n"
        );
    }

    #[test]
    fn format_comes_from_either_variable() {
        let env = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(LogFormat::from_env(&HashMap::new()).0, LogFormat::Text);
        assert_eq!(
            LogFormat::from_env(&env("TRIBUTARY_LOG_FORMAT", "JSON")).0,
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::from_env(&env("LOG_FORMAT", "json")).0,
            LogFormat::Json
        );
        let (format, warning) = LogFormat::from_env(&env("LOG_FORMAT", "yaml"));
        assert_eq!(format, LogFormat::Text);
        assert!(warning.unwrap().contains("yaml"));
    }

    #[test]
    fn lines_inside_a_traced_span_carry_its_ids() {
        use opentelemetry::trace::TracerProvider as _;
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceIds {
                        inner: format().json().flatten_event(true),
                        json: true,
                    })
                    .with_writer(move || writer.clone()),
            );
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("commit");
            let _entered = span.enter();
            tracing::info!(rows = 3, "inside");
            crate::telemetry::trace_id(&span).unwrap()
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str(), "{text}");
        assert_eq!(lines[1]["rows"], 3, "{text}");
    }
}
