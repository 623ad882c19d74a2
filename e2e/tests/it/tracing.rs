//! Traces across Kafka on the real services: a partner file goes through the real file
//! ingestor and the real lander, both exporting OTLP/HTTP to a receiver in this test. The file's
//! root span `ingest_file` is the parent of its Kafka batch span, and the ingestor's JSON log line
//! about the file carries its trace id. The ingest
//! batch span's trace id is the one in the Kafka records' `traceparent` header, and the lander
//! commit span that landed them continues (or links to) that trace; the snapshot it wrote names
//! the commit span in its summary (`tributary.traceparent`), for the marts to link to. The marts
//! run span that folds that snapshot links to the commit span. An ERP poll is likewise a root
//! span `erp_poll` whose log lines and Kafka batch share its trace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use poem::{EndpointExt, Route};
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_e2e::{Service, TestPipeline, eventually, free_port, require_stack};
use tributary_ingest::files::inbox::Inbox;
use tributary_raw::catalog::{self, load_table, snapshot_traceparent};
use tributary_raw::schema::RawTable;

/// One span as the receiver saw it, ids in lower-case hex.
#[derive(Debug, Clone)]
struct SeenSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
    links: Vec<(String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<SeenSpan> {
    let mut out = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                out.push(SeenSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    out
}

/// An OTLP/HTTP (protobuf) trace receiver on `port`: what a collector would get.
fn spawn_receiver(port: u16) -> Arc<Mutex<Vec<SeenSpan>>> {
    let seen: Arc<Mutex<Vec<SeenSpan>>> = Arc::default();
    let sink = seen.clone();
    let endpoint = poem::endpoint::make(move |request: poem::Request| {
        let sink = sink.clone();
        async move {
            let body = request.into_body().into_vec().await.unwrap_or_default();
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(export) => {
                    sink.lock().expect("spans lock").extend(spans_of(export));
                    poem::Response::builder()
                        .content_type("application/x-protobuf")
                        .body(Vec::<u8>::new())
                }
                Err(error) => poem::Response::builder()
                    .status(poem::http::StatusCode::BAD_REQUEST)
                    .body(format!("not an OTLP trace export: {error}")),
            }
        }
    });
    let app = Route::new().at("/v1/traces", endpoint.data(()));
    tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(format!(
            "127.0.0.1:{port}"
        )))
        .run(app),
    );
    seen
}

/// The services export to the receiver, in small batches so the test does not wait 5 s.
fn traced(mut env: BTreeMap<String, String>, port: u16) -> BTreeMap<String, String> {
    env.insert("OTEL_TRACES_EXPORTER".into(), "otlp".into());
    env.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://127.0.0.1:{port}"),
    );
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into());
    env
}

/// The service logs one JSON object per line (`LOG_FORMAT=json`), trace ids included.
fn json_logs(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.insert("LOG_FORMAT".into(), "json".into());
    env
}

/// The `traceparent` headers of every committed record of `topic` (partition 0).
async fn traceparents(topic: &str) -> Result<Vec<String>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", format!("e2e-tracing-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&list)?;
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await;
        let Ok(message) = message else { break };
        let message = message?;
        let header = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .with_context(|| {
                format!("record {} of {topic} has no traceparent", message.offset())
            })?;
        out.push(header);
        if message.offset() + 1 >= high {
            break;
        }
    }
    Ok(out)
}

/// `00-<trace id>-<span id>-<flags>` into its ids.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "malformed traceparent {traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_batch_trace_crosses_kafka_into_the_lander_commit_and_the_mart_run() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let seen = spawn_receiver(port);

    let mut lake = Service::start(
        "tracing-lake",
        "tributary-lake",
        &[],
        &traced(run.lake_env(), port),
    );
    let mut marts = Service::start(
        "tracing-marts",
        "tributary-marts",
        &[],
        &traced(run.marts_env(), port),
    );
    let mut ingest = Service::start(
        "tracing-ingest",
        "tributary-ingest",
        &["files"],
        &json_logs(traced(run.files_env(), port)),
    );
    let inbox = Inbox::open(&run.inbox(), &Default::default())?;
    inbox
        .put_bytes(
            "acme/traced.csv",
            b"pedido;vendedor;cidade;uf;valor;data\nT-1;S001;Campinas;SP;10,00;15/03/2026 10:00\nT-2;S002;Campinas;SP;20,00;15/03/2026 11:00\n"
                .to_vec(),
        )
        .await?;

    // The records in Kafka: one transaction, so one traceparent on both.
    let sales_topic = run.topic("files.sales");
    let headers = eventually(Duration::from_secs(60), || {
        ingest.assert_running();
        let topic = &sales_topic;
        async move {
            let found = traceparents(topic).await.unwrap_or_default();
            Ok((found.len() >= 2).then_some(found))
        }
    })
    .await?;
    assert!(
        headers.iter().all(|h| *h == headers[0]),
        "one batch, one traceparent: {headers:?}"
    );
    let (trace_id, batch_span_id) = ids(&headers[0]);

    // The ingest batch span is the one the header names.
    let ingest_span = eventually(Duration::from_secs(30), || {
        let (seen, batch_span_id) = (&seen, &batch_span_id);
        async move {
            Ok(seen
                .lock()
                .expect("spans lock")
                .iter()
                .find(|s| s.span_id == *batch_span_id)
                .cloned())
        }
    })
    .await
    .with_context(|| {
        format!(
            "no span {batch_span_id} exported; see {}",
            ingest.log().display()
        )
    })?;
    assert_eq!(ingest_span.trace_id, trace_id);
    assert_eq!(ingest_span.service, "tributary-ingest-files");
    assert_eq!(ingest_span.name, format!("send {sales_topic}"));
    assert_eq!(ingest_span.attributes["messaging.system"], "kafka");
    assert_eq!(
        ingest_span.attributes["messaging.destination.name"],
        sales_topic
    );
    assert_eq!(ingest_span.attributes["messaging.operation.type"], "send");

    // The batch is a child of the file's own root span, `ingest_file`, which names the file.
    let file_span = eventually(Duration::from_secs(30), || {
        let (seen, parent) = (&seen, &ingest_span.parent_span_id);
        async move {
            Ok(seen
                .lock()
                .expect("spans lock")
                .iter()
                .find(|s| s.span_id == *parent)
                .cloned())
        }
    })
    .await
    .with_context(|| format!("the batch span's parent was not exported: {ingest_span:?}"))?;
    assert_eq!(file_span.name, "ingest_file", "{file_span:?}");
    assert_eq!(file_span.trace_id, trace_id);
    assert!(
        file_span.parent_span_id.trim_matches('0').is_empty(),
        "the file span is a root: {file_span:?}"
    );
    assert_eq!(file_span.attributes["file.path"], "acme/traced.csv");
    assert_eq!(file_span.attributes["tributary.outcome"], "done");
    assert!(
        file_span.attributes.contains_key("tributary.file_seq"),
        "{file_span:?}"
    );

    // The ingestor's JSON log line about the file carries the same trace id.
    let log_path = ingest.log().to_path_buf();
    let line = eventually(Duration::from_secs(30), || {
        let (log_path, trace_id) = (&log_path, &trace_id);
        async move {
            let text = std::fs::read_to_string(log_path)?;
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| {
                    l["message"] == "file published"
                        && l["path"] == "acme/traced.csv"
                        && l["trace_id"] == trace_id.as_str()
                }))
        }
    })
    .await
    .with_context(|| {
        format!(
            "no JSON line \"file published\" with trace_id {trace_id} in {}",
            log_path.display()
        )
    })?;
    assert_eq!(line["span_id"], file_span.span_id.as_str(), "{line}");

    // The lander's commit of file_sale continues that trace (or links to the batch).
    let commit_name = format!("append {}.file_sale", run.namespace());
    let commit = eventually(Duration::from_secs(90), || {
        lake.assert_running();
        let (seen, commit_name, trace_id) = (&seen, &commit_name, &trace_id);
        async move {
            Ok(seen
                .lock()
                .expect("spans lock")
                .iter()
                .find(|s| {
                    s.name == *commit_name
                        && (s.trace_id == *trace_id || s.links.iter().any(|(t, _)| t == trace_id))
                })
                .cloned())
        }
    })
    .await
    .with_context(|| {
        format!(
            "no lander commit span for trace {trace_id}; see {}",
            lake.log().display()
        )
    })?;
    assert_eq!(commit.service, "tributary-lake");
    assert!(
        commit.parent_span_id == batch_span_id
            || commit
                .links
                .contains(&(trace_id.clone(), batch_span_id.clone())),
        "the commit span neither continues nor links the batch span: {commit:?}"
    );
    assert_eq!(commit.attributes["db.collection.name"], "file_sale");
    assert_eq!(commit.attributes["tributary.iceberg.rows"], "2");
    let snapshot_id = commit
        .attributes
        .get("tributary.iceberg.snapshot_id")
        .context("the commit span names its snapshot")?
        .clone();

    // The snapshot it wrote names the commit span: what the marts link their runs to.
    let settings = tributary_common::LakeSettings {
        warehouse: "s3://warehouse".into(),
        namespace: run.namespace(),
        ..Default::default()
    };
    let lake_catalog = catalog::open(&settings).await?;
    let table = load_table(&lake_catalog, &run.namespace(), RawTable::FileSale).await?;
    let snapshot = table
        .metadata()
        .snapshots()
        .find(|s| s.snapshot_id().to_string() == snapshot_id)
        .with_context(|| format!("snapshot {snapshot_id} not in file_sale"))?;
    let stored = snapshot_traceparent(&snapshot.summary().additional_properties)
        .context("the snapshot summary has no tributary.traceparent")?;
    if ids(stored) != (commit.trace_id.clone(), commit.span_id.clone()) {
        bail!("snapshot {snapshot_id} names {stored}, the commit span is {commit:?}");
    }

    // The marts run that folded that snapshot links to the commit span: the trace reaches the
    // run that counted the sales.
    let link = (commit.trace_id.clone(), commit.span_id.clone());
    let run_span = eventually(Duration::from_secs(90), || {
        marts.assert_running();
        let (seen, link) = (&seen, &link);
        async move {
            Ok(seen
                .lock()
                .expect("spans lock")
                .iter()
                .find(|s| s.name == "marts_run" && s.links.contains(link))
                .cloned())
        }
    })
    .await
    .with_context(|| {
        format!(
            "no marts_run span links to the commit span {link:?}; see {}",
            marts.log().display()
        )
    })?;
    assert_eq!(run_span.service, "tributary-marts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_request_is_a_server_span_that_continues_the_callers_trace() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let seen = spawn_receiver(port);
    let mut api = Service::start(
        "tracing-api",
        "tributary-api",
        &[],
        &traced(run.api_env(), port),
    );
    let (trace_id, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), || {
        api.assert_running();
        let (http, url) = (&http, format!("{}/v1/cities/7", run.api()));
        async move {
            let sent = http
                .get(&url)
                .header("traceparent", format!("00-{trace_id}-{caller}-01"))
                .send()
                .await;
            // No publication in this run's database: a 503 problem, still a traced request.
            Ok(sent.ok().map(|_| ()))
        }
    })
    .await?;
    let span = eventually(Duration::from_secs(30), || {
        let seen = &seen;
        async move {
            Ok(seen
                .lock()
                .expect("spans lock")
                .iter()
                .find(|s| s.service == "tributary-api" && s.trace_id == trace_id)
                .cloned())
        }
    })
    .await
    .with_context(|| {
        format!(
            "no API span in the caller's trace; see {}",
            api.log().display()
        )
    })?;
    assert_eq!(span.parent_span_id, caller, "{span:?}");
    assert_eq!(span.name, "GET /v1/cities/{city_id}");
    assert_eq!(span.attributes["http.route"], "/v1/cities/{city_id}");
    assert_eq!(span.attributes["http.request.method"], "GET");
    assert_eq!(span.attributes["url.path"], "/v1/cities/7");
    assert_eq!(span.attributes["http.response.status_code"], "503");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erp_poll_is_a_root_span_whose_log_lines_and_batch_share_its_trace() -> Result<()> {
    require_stack();
    let run = TestPipeline::new();
    let port = free_port();
    let seen = spawn_receiver(port);
    let _sim = run.start_sim("tracing-erp-sim", 11, 20).await?;
    let mut erp = Service::start(
        "tracing-erp",
        "tributary-ingest",
        &["erp"],
        &json_logs(traced(run.erp_env(), port)),
    );

    // A JSON log line about a published page carries the poll's trace id.
    let log_path = erp.log().to_path_buf();
    let line = eventually(Duration::from_secs(60), || {
        erp.assert_running();
        let log_path = &log_path;
        async move {
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| l["message"] == "erp page published" && l["trace_id"].is_string()))
        }
    })
    .await
    .with_context(|| {
        format!(
            "no JSON line \"erp page published\" with a trace_id in {}",
            log_path.display()
        )
    })?;
    let trace_id = line["trace_id"]
        .as_str()
        .expect("checked above")
        .to_string();

    // That trace is an `erp_poll` root span with the page's Kafka batch as its child.
    let sales_topic = run.topic("erp.sales");
    let (poll, batch) = eventually(Duration::from_secs(30), || {
        let (seen, trace_id, batch_name) = (&seen, &trace_id, format!("send {sales_topic}"));
        async move {
            let spans = seen.lock().expect("spans lock");
            let poll = spans
                .iter()
                .find(|s| s.trace_id == *trace_id && s.name == "erp_poll");
            let batch = spans
                .iter()
                .find(|s| s.trace_id == *trace_id && s.name == batch_name);
            Ok(poll.zip(batch).map(|(p, b)| (p.clone(), b.clone())))
        }
    })
    .await
    .with_context(|| format!("no erp_poll span with its batch in trace {trace_id}"))?;
    assert_eq!(poll.service, "tributary-ingest-erp");
    assert!(
        poll.parent_span_id.trim_matches('0').is_empty(),
        "the poll span is a root: {poll:?}"
    );
    assert_eq!(batch.parent_span_id, poll.span_id, "{batch:?}");
    assert_eq!(poll.attributes["tributary.erp.origin"], "erp");
    assert!(
        poll.attributes.contains_key("tributary.erp.changes"),
        "{poll:?}"
    );
    assert_eq!(line["span_id"], poll.span_id.as_str(), "{line}");
    Ok(())
}
