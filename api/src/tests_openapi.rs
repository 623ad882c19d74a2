//! Every endpoint of the OpenAPI document, fed generated parameters: valid ones drawn from each
//! parameter's schema (ranges, patterns), extreme and malformed ones (out of range, overflowing,
//! empty, huge, not UTF-8 once decoded, impossible dates), and absent ones. Whatever comes in,
//! the answer is never a 5xx, and every 4xx is problem JSON naming its kind. The endpoints come
//! from the document itself, so a new one is covered the day it is added; the lineage routes,
//! outside the document, are listed by hand.

use std::sync::Arc;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use poem::test::TestClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value;

use crate::lake::Lake;
use crate::tests_time_travel::published;
use crate::{app_with_lake, openapi_json};

/// One GET operation: its path template and parameters.
#[derive(Debug, Clone)]
struct Operation {
    template: String,
    params: Vec<Param>,
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    in_path: bool,
    schema: Value,
}

/// The GET operations of the OpenAPI document, and the lineage routes beside it.
fn operations() -> Vec<Operation> {
    let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
    let mut ops: Vec<Operation> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(template, item)| {
            let get = item.get("get")?;
            let params = get["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| Param {
                            name: p["name"].as_str().unwrap().to_string(),
                            in_path: p["in"] == "path",
                            schema: p["schema"].clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Operation {
                template: template.clone(),
                params,
            })
        })
        .collect();
    assert!(ops.len() >= 15, "only {} GET operations", ops.len());
    let query = |name: &str, schema: Value| Param {
        name: name.into(),
        in_path: false,
        schema,
    };
    let text = serde_json::json!({"type": "string"});
    let depth = serde_json::json!({"type": "integer", "format": "uint32"});
    for template in ["/api/v1/lineage", "/api/v1/column-lineage", "/lineage"] {
        ops.push(Operation {
            template: template.into(),
            params: vec![
                query("nodeId", text.clone()),
                query("depth", depth.clone()),
                query("withDownstream", serde_json::json!({"type": "boolean"})),
            ],
        });
    }
    for template in [
        "/api/v1/namespaces/{namespace}/jobs",
        "/api/v1/namespaces/{namespace}/datasets",
    ] {
        ops.push(Operation {
            template: template.into(),
            params: vec![Param {
                name: "namespace".into(),
                in_path: true,
                schema: text.clone(),
            }],
        });
    }
    ops
}

/// Values no schema should let through: out of range, overflowing, malformed, huge.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("9223372036854775807".to_string()),
        Just("9223372036854775808".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("0x10".to_string()),
        Just(" 1".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("2026-13".to_string()),
        Just("0999-01".to_string()),
        Just("2026-02-30T00:00:00Z".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("0001-01-01T00:00:00Z".to_string()),
        Just("1970-01-01T00:00:00+25:00".to_string()),
        Just("+275760-09-13T00:00:00Z".to_string()),
        Just("a".repeat(8_000)),
        Just("%".to_string()),
        Just("\u{0}".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("dataset:raw.pg_sale".to_string()),
        "\\PC{0,24}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
    ]
    .boxed()
}

/// A value within the parameter's schema (its range, its pattern), so the handlers are reached.
fn valid(schema: &Value) -> BoxedStrategy<String> {
    let bound = |key: &str, default: i64| schema[key].as_f64().map_or(default, |v| v as i64);
    match schema["type"].as_str() {
        Some("integer") => {
            let unsigned = schema["format"]
                .as_str()
                .is_some_and(|f| f.starts_with("uint"));
            let (lo, hi) = (
                bound("minimum", if unsigned { 0 } else { -10 }),
                bound("maximum", 2_000),
            );
            (lo..=hi.max(lo)).prop_map(|n| n.to_string()).boxed()
        }
        Some("boolean") => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        _ => match schema["pattern"].as_str() {
            Some(pattern) => proptest::string::string_regex(
                pattern.trim_start_matches('^').trim_end_matches('$'),
            )
            .unwrap()
            .boxed(),
            None => prop_oneof![
                Just("SP".to_string()),
                Just("2026-02-07T10:00:00Z".to_string()),
                Just("job:tributary:tributary-marts".to_string()),
                "[a-z0-9:._-]{1,20}",
            ]
            .boxed(),
        },
    }
}

/// Absent (when allowed), valid, or hostile.
fn value(param: &Param) -> BoxedStrategy<Option<String>> {
    let present = prop_oneof![3 => valid(&param.schema), 2 => hostile()].prop_map(Some);
    if param.in_path {
        present.boxed()
    } else {
        prop_oneof![1 => Just(None), 4 => present].boxed()
    }
}

fn request(op: &Operation, values: &[Option<String>]) -> String {
    let mut path = op.template.clone();
    let mut query = Vec::new();
    for (param, value) in op.params.iter().zip(values) {
        let Some(value) = value else { continue };
        let encoded = utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
        if param.in_path {
            path = path.replace(&format!("{{{}}}", param.name), &encoded);
        } else {
            query.push(format!("{}={encoded}", param.name));
        }
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[test]
fn no_parameters_make_any_endpoint_fail_with_5xx() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let lake =
            tributary_raw::testing::memory_lake(&tributary_raw::schema::RawTable::DATA_TABLES)
                .await;
        crate::tests_time_travel::land_first(lake.as_ref()).await;
        let store = published(lake.as_ref()).await;
        TestClient::new(app_with_lake(
            store,
            Arc::new(Lake::from_catalog(lake, "raw")),
        ))
    });
    let ops = operations();
    let strategy = (0..ops.len()).prop_flat_map(move |i| {
        let values: Vec<_> = ops[i].params.iter().map(value).collect();
        (Just(ops[i].clone()), values)
    });
    // Reproducible: the same requests every run, unless API_PROPTEST_SEED (0..=255) says so.
    let seed: u8 = std::env::var("API_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("API_PROPTEST_SEED={seed}");
    let config = Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    runner
        .run(&strategy, |(op, values)| {
            let uri = request(&op, &values);
            let (status, content_type, body) = runtime.block_on(async {
                let resp = client.get(&uri).send().await;
                let status = resp.0.status();
                let content_type = resp
                    .0
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body = resp.0.into_body().into_string().await.unwrap_or_default();
                (status, content_type, body)
            });
            *statuses.borrow_mut().entry(status.as_u16()).or_default() += 1;
            prop_assert!(
                !status.is_server_error(),
                "{uri}: {status} {content_type}: {body}"
            );
            if status.is_client_error() {
                prop_assert!(
                    content_type.starts_with("application/problem+json"),
                    "{uri}: {status} is not problem JSON: {content_type}: {body}"
                );
                let problem: Value = serde_json::from_str(&body)
                    .map_err(|e| TestCaseError::fail(format!("{uri}: {e}: {body}")))?;
                prop_assert_eq!(&problem["status"], &Value::from(status.as_u16()), "{}", uri);
                prop_assert!(
                    problem["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("urn:tributary:problem:")),
                    "{uri}: {body}"
                );
            }
            Ok(())
        })
        .unwrap();
    // The generated requests reach the handlers as well as the validators.
    let statuses = statuses.into_inner();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let refused = statuses.get(&400).copied().unwrap_or(0);
    println!("statuses: {statuses:?}");
    assert!(ok >= 30 && refused >= 30, "statuses: {statuses:?}");
}
