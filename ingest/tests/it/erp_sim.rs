//! The ERP client and poller against the simulator, in process on port 0.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tributary_common::sale_event::{SaleEvent, SaleOp};
use tributary_ingest::erp::{
    ErpClient, ErpClientConfig, ErpError, ErpPoller, ErpSimConfig, RetrySettings, SoapVersion,
    client::FixedNonce,
    model::SaleStatus,
    sim::{self, SpawnedSimulator},
    soap::{ErpFaultCode, FaultClass},
    wssec::{Clock, RandomNonce, SystemClock},
};

type Sim = SpawnedSimulator;

async fn start(initial_changes: u32) -> Sim {
    let config = ErpSimConfig {
        initial_changes,
        seed: 11,
        admin: true,
        ..ErpSimConfig::default()
    };
    sim::spawn(config).await.expect("start the simulator")
}

fn client_config(sim: &Sim) -> ErpClientConfig {
    ErpClientConfig {
        endpoint: format!("{}/ws/sales", sim.base),
        page_size: 17,
        retry: RetrySettings {
            max_retries: 5,
            min_delay_ms: 20,
            max_delay_ms: 200,
            max_retry_after_ms: 5_000,
        },
        ..ErpClientConfig::default()
    }
}

fn poller(config: ErpClientConfig) -> ErpPoller {
    ErpPoller::new(ErpClient::new(config).unwrap())
}

/// Polls from `cursor` until the ERP has nothing more; returns the events and the last cursor.
async fn drain(poller: &ErpPoller, mut cursor: String) -> (Vec<SaleEvent>, String, usize) {
    let mut events = Vec::new();
    let mut pages = 0;
    loop {
        let page = poller.poll_page(&cursor).await.unwrap();
        pages += 1;
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        events.extend(page.events);
        cursor = page.next_cursor;
        if !page.has_more {
            return (events, cursor, pages);
        }
    }
}

fn sequences(events: &[SaleEvent]) -> Vec<i64> {
    events.iter().map(|e| e.version.major).collect()
}

#[tokio::test]
async fn paging_walks_every_change_exactly_once() {
    let sim = start(250).await;
    let poller = poller(client_config(&sim));
    let (events, cursor, pages) = drain(&poller, String::new()).await;
    assert_eq!(sequences(&events), (1..=250).collect::<Vec<_>>());
    assert_eq!(pages, 250usize.div_ceil(17));
    assert!(
        events.iter().any(|e| e.op == SaleOp::Delete),
        "the seeded log cancels sales"
    );
    let first = &events[0];
    assert_eq!(first.origin, "erp");
    assert_eq!(first.provenance["operation"], "GetSales");
    assert_eq!(first.provenance["cursor"], "");
    assert!(first.provenance["request_id"].as_str().unwrap().len() >= 32);
    assert!(first.provenance["response_time_ms"].is_u64());
    assert_eq!(
        first.provenance["endpoint"],
        format!("{}/ws/sales", sim.base).as_str()
    );
    // Nothing new: an empty page keeps the cursor.
    let page = poller.poll_page(&cursor).await.unwrap();
    assert!(page.events.is_empty() && !page.has_more);
    assert_eq!(page.next_cursor, cursor);
}

#[tokio::test]
async fn a_restart_from_the_saved_cursor_neither_skips_nor_repeats() {
    let sim = start(120).await;
    let config = client_config(&sim);
    let first = poller(config.clone());
    let mut cursor = String::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let page = first.poll_page(&cursor).await.unwrap();
        seen.extend(page.events);
        cursor = page.next_cursor;
    }
    drop(first);
    // New changes arrive while the ingestor is down.
    let extra = sim.simulator.upsert(sim::store::SaleInput {
        sale_id: None,
        salesman_code: "S005".into(),
        city_name: "Curitiba".into(),
        city_state: "PR".into(),
        amount: "99.90".parse().unwrap(),
        currency: "BRL".into(),
        sold_at: "2026-05-05T12:00:00Z".parse().unwrap(),
    });
    let restarted = poller(config);
    let (rest, _, _) = drain(&restarted, cursor).await;
    seen.extend(rest);
    let seqs = sequences(&seen);
    assert_eq!(seqs, (1..=121).collect::<Vec<_>>());
    assert_eq!(seen.last().unwrap().sale_id, extra.sale_id());
    let unique: BTreeSet<_> = seqs.iter().collect();
    assert_eq!(unique.len(), seqs.len());
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_authentication_fault() {
    let sim = start(10).await;
    let mut config = client_config(&sim);
    config.password = "not-the-password".into();
    config.retry.min_delay_ms = 2_000;
    let started = Instant::now();
    let err = poller(config).poll_page("").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "not retried"
    );
    match &err {
        ErpError::Authentication { fault } => {
            assert_eq!(fault.class, FaultClass::Sender);
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::FailedAuthentication));
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.label(), "auth");
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let sim = start(10).await;
    let client = ErpClient::with_sources(
        client_config(&sim),
        Arc::new(SystemClock),
        Arc::new(FixedNonce(b"always-the-same!".to_vec())),
    )
    .unwrap();
    client.get_sales("", 5).await.unwrap();
    let err = client.get_sales("", 5).await.unwrap_err();
    match &err {
        ErpError::Authentication { fault } => {
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::NonceReplayed))
        }
        other => panic!("expected a replay refusal, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

struct LateClock;

impl Clock for LateClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::minutes(10)
    }
}

#[tokio::test]
async fn a_stale_created_timestamp_is_refused() {
    let sim = start(10).await;
    let client = ErpClient::with_sources(
        client_config(&sim),
        Arc::new(LateClock),
        Arc::new(RandomNonce),
    )
    .unwrap();
    let err = client.get_sales("", 5).await.unwrap_err();
    match &err {
        ErpError::Authentication { fault } => {
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::MessageExpired))
        }
        other => panic!("expected an expired-message refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_faults_are_retried_after_the_delay_asked_for() {
    let sim = start(30).await;
    // Through the admin endpoint, as the demo would.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/admin/throttle", sim.base))
        .json(&serde_json::json!({"requests": 2, "retryAfterSeconds": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let client = ErpClient::new(client_config(&sim)).unwrap();
    let started = Instant::now();
    let response = client.get_sales("", 10).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(response.info.attempts, 3);
    assert_eq!(response.body.changes.len(), 10);
}

#[tokio::test]
async fn throttling_with_no_retries_left_is_a_retryable_error() {
    let sim = start(30).await;
    sim.simulator.throttle_next(5, Duration::from_secs(0));
    let mut config = client_config(&sim);
    config.retry.max_retries = 1;
    let err = ErpClient::new(config)
        .unwrap()
        .get_sales("", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ErpError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn cancellations_and_corrections_arrive_as_events() {
    let sim = start(40).await;
    let poller = poller(client_config(&sim));
    let (_, cursor, _) = drain(&poller, String::new()).await;
    let (_, active) = sim.simulator.active_sales();
    let victim = active[0].sale_id.clone();
    let corrected = active[1].sale_id.clone();

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/admin/sales/{victim}/cancel", sim.base))
        .json(&serde_json::json!({"reason": "refund"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let resp: serde_json::Value = http
        .post(format!("{}/admin/sales", sim.base))
        .json(&serde_json::json!({
            "saleId": corrected, "salesmanCode": "S002", "cityName": "Niterói",
            "cityState": "RJ", "amount": "1.00", "soldAt": "2026-02-01T10:00:00Z"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["sequence"], 42);
    let again = http
        .post(format!("{}/admin/sales/{victim}/cancel", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let page = poller.poll_page(&cursor).await.unwrap();
    assert_eq!(page.events.len(), 2);
    let cancel = &page.events[0];
    assert_eq!(cancel.op, SaleOp::Delete);
    assert_eq!(cancel.sale_id, victim);
    assert_eq!(cancel.version.major, 41);
    assert_eq!(cancel.amount, None);
    assert_eq!(cancel.provenance["cancel_reason"], "refund");
    let correction = &page.events[1];
    assert_eq!(correction.op, SaleOp::Upsert);
    assert_eq!(correction.sale_id, corrected);
    assert_eq!(correction.amount.as_deref(), Some("1.00"));
    assert!(correction.provenance["erp_revision"].as_u64().unwrap() >= 2);

    let client = poller.client();
    let record = client.get_sale(&victim).await.unwrap().body;
    assert_eq!(record.status, SaleStatus::Cancelled);
    assert_eq!(record.last_sequence, 41);
    let listed: serde_json::Value = http
        .get(format!("{}/admin/sales", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["lastSequence"], 42);
    assert!(
        listed["sales"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["saleId"] != victim.as_str())
    );
}

#[tokio::test]
async fn soap_1_2_works_too() {
    let sim = start(30).await;
    let mut config = client_config(&sim);
    config.soap_version = SoapVersion::V12;
    let poller = poller(config.clone());
    let (events, _, _) = drain(&poller, String::new()).await;
    assert_eq!(events.len(), 30);
    // Faults come back in 1.2 form and are read as such.
    config.password = "wrong".into();
    let err = ErpClient::new(config)
        .unwrap()
        .get_sale("ERP-000001")
        .await
        .unwrap_err();
    match err {
        ErpError::Authentication { fault } => {
            assert!(fault.code.ends_with("Sender"), "{}", fault.code);
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::FailedAuthentication));
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_requests_are_permanent_faults() {
    let sim = start(10).await;
    let client = ErpClient::new(client_config(&sim)).unwrap();
    let err = client.get_sales("not-a-cursor", 5).await.unwrap_err();
    assert!(
        matches!(&err, ErpError::Fault { fault } if fault.erp_code() == Some(ErpFaultCode::BadCursor)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = client.get_sales("", 5_000).await.unwrap_err();
    assert!(
        matches!(&err, ErpError::Fault { fault } if fault.erp_code() == Some(ErpFaultCode::BadRequest)),
        "{err:?}"
    );
    let err = client.get_sale("ERP-999999").await.unwrap_err();
    assert!(
        matches!(&err, ErpError::Fault { fault } if fault.erp_code() == Some(ErpFaultCode::UnknownSale)),
        "{err:?}"
    );
}

#[tokio::test]
async fn serves_the_wsdl_with_its_own_address_and_the_xsd() {
    let sim = start(1).await;
    let http = reqwest::Client::new();
    let wsdl = http
        .get(format!("{}/ws/sales?wsdl", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        wsdl.contains(&format!("location=\"{}/ws/sales\"", sim.base)),
        "{wsdl}"
    );
    assert!(wsdl.contains("schemaLocation=\"sales?xsd=1\""));
    let xsd = http
        .get(format!("{}/ws/sales?xsd=1", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(xsd, tributary_ingest::erp::XSD);
}
