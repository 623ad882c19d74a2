//! The legacy ERP simulator: a SOAP 1.1/1.2 service with a WSDL, WS-Security UsernameToken,
//! SOAP Faults, cursor paging and throttling — the peer the WS ingestor polls in tests and in
//! the demo.
//!
//! HTTP surface (default `127.0.0.1:8088`):
//!
//! | method and path | what |
//! |---|---|
//! | `GET /ws/sales?wsdl` | the WSDL, its `soap:address` pointing at this server |
//! | `GET /ws/sales?xsd=1` | the XSD the WSDL imports |
//! | `POST /ws/sales` | SOAP 1.1 (`text/xml` + `SOAPAction`) or 1.2 (`application/soap+xml`) |
//! | `GET /admin/sales` | JSON: `{"lastSequence": n, "sales": [...]}`, the sales that count now |
//! | `POST /admin/sales` | JSON sale (`saleId` to correct an existing one): appends a change |
//! | `POST /admin/sales/{id}/cancel` | JSON `{"reason": …}` (optional): appends a cancellation |
//! | `POST /admin/throttle` | JSON `{"requests": n, "retryAfterSeconds": s}`: the next n SOAP calls get a `Throttled` fault |
//!
//! The admin endpoints are plain JSON, not SOAP, unauthenticated, and exist for tests and the
//! demo: they are served only with `admin = true` (`TRIBUTARY_ADMIN=true`; `dev/app` and the
//! end-to-end tests set it).

pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use poem::{
    Body, EndpointExt, Request, Response, Route, Server, handler,
    http::{StatusCode, header},
    listener::TcpAcceptor,
    web::{Data, Json, Path},
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::config::ErpSimConfig;
use super::model::{
    GetSaleRequest, GetSalesRequest, decode_cursor, encode_cursor, get_sales_response_xml,
};
use super::soap::{self, ErpFaultCode, FaultClass, SoapVersion, TNS};
use super::wssec::{SharedClock, SystemClock, TokenError, UsernameToken};
use super::xml;
use store::{CancelError, SaleInput, Store};

/// How long a graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The simulator failed to serve.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or serving the socket failed.
    #[error("erp simulator i/o error: {0}")]
    Io(#[from] std::io::Error),
}

struct Throttle {
    forced: u32,
    forced_retry_after: Duration,
    window_start: Instant,
    window_count: u32,
}

struct State {
    store: Store,
    /// Nonce → when it was accepted; pruned once older than the skew window.
    nonces: HashMap<String, DateTime<Utc>>,
    throttle: Throttle,
}

/// A running simulator's state: cheap to clone, shared by the HTTP handlers and tests.
#[derive(Clone)]
pub struct Simulator {
    config: Arc<ErpSimConfig>,
    clock: SharedClock,
    state: Arc<Mutex<State>>,
}

impl Simulator {
    /// A simulator with its generated log, using `clock` for timestamps and the skew check,
    /// and the changes of its journal (if any) replayed on top.
    pub fn new(config: ErpSimConfig, clock: SharedClock) -> Self {
        let mut store = Store::generate(config.seed, config.initial_changes);
        if !config.journal.is_empty() {
            replay_journal(&mut store, &config.journal);
        }
        Self {
            state: Arc::new(Mutex::new(State {
                store,
                nonces: HashMap::new(),
                throttle: Throttle {
                    forced: 0,
                    forced_retry_after: Duration::from_secs(config.throttle_retry_after_secs),
                    window_start: Instant::now(),
                    window_count: 0,
                },
            })),
            config: Arc::new(config),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a new sale or a correction (same as `POST /admin/sales`).
    pub fn upsert(&self, input: SaleInput) -> super::model::ErpChange {
        let now = self.clock.now();
        let mut state = self.lock();
        let change = state.store.upsert(input.clone(), now);
        self.journal(&Journaled::Upsert { input, at: now });
        change
    }

    /// Appends a cancellation (same as `POST /admin/sales/{id}/cancel`).
    pub fn cancel(
        &self,
        sale_id: &str,
        reason: Option<String>,
    ) -> Result<super::model::ErpChange, CancelError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let change = state.store.cancel(sale_id, reason.clone(), now)?;
        self.journal(&Journaled::Cancel {
            sale_id: sale_id.to_string(),
            reason,
            at: now,
        });
        Ok(change)
    }

    /// Records an injected change in the journal (called with the state lock held, so the
    /// journal's order is the log's order). A failed write is logged: the change stands.
    fn journal(&self, entry: &Journaled) {
        if self.config.journal.is_empty() {
            return;
        }
        let line = serde_json::to_string(entry).expect("journal entries serialise") + "\n";
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.journal)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(error) = written {
            tracing::error!(journal = %self.config.journal, %error, "could not record an injected change; a restart will forget it");
        }
    }

    /// The next `requests` SOAP calls get a `Throttled` fault asking for `retry_after`.
    pub fn throttle_next(&self, requests: u32, retry_after: Duration) {
        let mut state = self.lock();
        state.throttle.forced = requests;
        state.throttle.forced_retry_after = retry_after;
    }

    /// The sales that count now, and the newest sequence.
    pub fn active_sales(&self) -> (i64, Vec<super::model::ErpSale>) {
        let state = self.lock();
        (state.store.last_sequence(), state.store.active_sales())
    }

    /// The newest change sequence.
    pub fn last_sequence(&self) -> i64 {
        self.lock().store.last_sequence()
    }

    /// The poem application (SOAP, WSDL and admin routes).
    pub fn app(&self) -> impl poem::Endpoint + 'static {
        let mut route = Route::new().at("/ws/sales", poem::get(wsdl).post(soap_endpoint));
        if self.config.admin {
            route = route
                .at("/admin/sales", poem::get(admin_list).post(admin_upsert))
                .at("/admin/sales/:id/cancel", poem::post(admin_cancel))
                .at("/admin/throttle", poem::post(admin_throttle));
        }
        route.data(self.clone())
    }

    /// Answers a `Throttled` delay if this request must be refused.
    fn check_throttle(&self) -> Option<Duration> {
        let mut state = self.lock();
        let throttle = &mut state.throttle;
        if throttle.forced > 0 {
            throttle.forced -= 1;
            return Some(throttle.forced_retry_after);
        }
        let limit = self.config.rate_limit_per_sec;
        if limit == 0 {
            return None;
        }
        if throttle.window_start.elapsed() >= Duration::from_secs(1) {
            throttle.window_start = Instant::now();
            throttle.window_count = 0;
        }
        throttle.window_count += 1;
        (throttle.window_count > limit)
            .then(|| Duration::from_secs(self.config.throttle_retry_after_secs))
    }

    /// Checks the UsernameToken: user, digest, freshness, then (only for a valid token, so
    /// strangers cannot burn nonces) that the nonce is new.
    fn authenticate(&self, header: Option<&xml::Element>) -> Result<(), Fault> {
        let token = UsernameToken::from_header(header).map_err(|e| match e {
            TokenError::BadCreated => Fault::new(ErpFaultCode::MessageExpired, e.to_string()),
            _ => Fault::new(ErpFaultCode::InvalidSecurity, e.to_string()),
        })?;
        let refused = || {
            Fault::new(
                ErpFaultCode::FailedAuthentication,
                "The security token could not be authenticated or authorized".into(),
            )
        };
        if token.username != self.config.username {
            return Err(refused());
        }
        if !token
            .verify(&self.config.password)
            .map_err(|e| Fault::new(ErpFaultCode::InvalidSecurity, e.to_string()))?
        {
            return Err(refused());
        }
        let created = token
            .created_at()
            .map_err(|e| Fault::new(ErpFaultCode::MessageExpired, e.to_string()))?;
        let now = self.clock.now();
        let skew = chrono::Duration::seconds(self.config.max_clock_skew_secs as i64);
        if created < now - skew || created > now + skew {
            return Err(Fault::new(
                ErpFaultCode::MessageExpired,
                format!(
                    "wsu:Created {} is more than {}s away from the service's clock {}",
                    token.created,
                    self.config.max_clock_skew_secs,
                    now.to_rfc3339()
                ),
            ));
        }
        let mut state = self.lock();
        state.nonces.retain(|_, seen| *seen >= now - skew);
        if state.nonces.contains_key(&token.nonce) {
            return Err(Fault::new(
                ErpFaultCode::NonceReplayed,
                "the nonce was already used: the request looks replayed".into(),
            ));
        }
        state.nonces.insert(token.nonce, now);
        Ok(())
    }

    fn handle(&self, version: SoapVersion, body: &[u8]) -> Result<String, Fault> {
        let root = xml::parse(body, &self.config.xml_limits())
            .map_err(|e| Fault::new(ErpFaultCode::BadRequest, e.to_string()))?;
        let envelope = soap::open_envelope(root)
            .map_err(|e| Fault::new(ErpFaultCode::BadRequest, e.to_string()))?;
        if envelope.version != version {
            return Err(Fault::new(
                ErpFaultCode::BadRequest,
                "the envelope's SOAP version does not match the Content-Type".into(),
            ));
        }
        self.authenticate(envelope.header.as_ref())?;
        let payload = &envelope.payload;
        let bad =
            |e: super::model::PayloadError| Fault::new(ErpFaultCode::BadRequest, e.to_string());
        if payload.is(TNS, "GetSalesRequest") {
            let request = GetSalesRequest::from_element(payload).map_err(bad)?;
            if request.page_size == 0 || request.page_size > self.config.max_page_size {
                return Err(Fault::new(
                    ErpFaultCode::BadRequest,
                    format!(
                        "pageSize {} is outside 1..={}",
                        request.page_size, self.config.max_page_size
                    ),
                ));
            }
            let state = self.lock();
            let after = decode_cursor(&request.cursor)
                .filter(|s| *s <= state.store.last_sequence())
                .ok_or_else(|| {
                    Fault::new(
                        ErpFaultCode::BadCursor,
                        format!("cursor {:?} was not issued by this service", request.cursor),
                    )
                })?;
            let (changes, has_more) = state.store.page(after, request.page_size as usize);
            let next = changes.last().map_or(after, |c| c.sequence);
            Ok(get_sales_response_xml(
                changes,
                &encode_cursor(next),
                has_more,
            ))
        } else if payload.is(TNS, "GetSaleRequest") {
            let request = GetSaleRequest::from_element(payload).map_err(bad)?;
            self.lock()
                .store
                .sale(&request.sale_id)
                .map(|record| record.to_xml())
                .ok_or_else(|| {
                    Fault::new(
                        ErpFaultCode::UnknownSale,
                        format!("sale {:?} does not exist", request.sale_id),
                    )
                })
        } else {
            Err(Fault::new(
                ErpFaultCode::BadRequest,
                format!("unknown operation {}", payload.qualified()),
            ))
        }
    }
}

struct Fault {
    code: ErpFaultCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Fault {
    fn new(code: ErpFaultCode, message: String) -> Self {
        Self {
            code,
            message,
            retry_after: None,
        }
    }

    fn into_response(self, version: SoapVersion) -> Response {
        tracing::info!(code = self.code.as_str(), message = %self.message, "erp sim fault");
        // SOAP 1.1 answers every fault with 500; SOAP 1.2 blames the sender with 400.
        let status = match (version, self.code.class()) {
            (SoapVersion::V12, FaultClass::Sender) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = soap::fault_envelope(version, self.code, &self.message, self.retry_after);
        let mut response = soap_response(version, status, body);
        if let Some(delay) = self.retry_after
            && let Ok(value) = delay.as_secs().to_string().parse()
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

fn soap_response(version: SoapVersion, status: StatusCode, body: String) -> Response {
    let content_type = match version {
        SoapVersion::V11 => "text/xml; charset=utf-8",
        SoapVersion::V12 => "application/soap+xml; charset=utf-8",
    };
    Response::builder()
        .status(status)
        .content_type(content_type)
        .body(body)
}

#[handler]
async fn soap_endpoint(req: &Request, body: Body, Data(sim): Data<&Simulator>) -> Response {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(version) = SoapVersion::from_content_type(content_type) else {
        return Response::builder()
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .body("SOAP 1.1 needs text/xml, SOAP 1.2 application/soap+xml");
    };
    if let Some(retry_after) = sim.check_throttle() {
        let mut fault = Fault::new(
            ErpFaultCode::Throttled,
            "too many requests; retry later".into(),
        );
        fault.retry_after = Some(retry_after);
        return fault.into_response(version);
    }
    let bytes = match body.into_bytes_limit(sim.config.max_request_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Fault::new(
                ErpFaultCode::BadRequest,
                format!("cannot read the request: {e}"),
            )
            .into_response(version);
        }
    };
    match sim.handle(version, &bytes) {
        Ok(payload) => soap_response(
            version,
            StatusCode::OK,
            soap::envelope(version, "", &payload),
        ),
        Err(fault) => fault.into_response(version),
    }
}

#[handler]
fn wsdl(req: &Request, Data(sim): Data<&Simulator>) -> Response {
    let query = req.uri().query().unwrap_or_default();
    if query.eq_ignore_ascii_case("wsdl") {
        let address = if sim.config.public_url.is_empty() {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8088");
            format!("http://{host}/ws/sales")
        } else {
            format!("{}/ws/sales", sim.config.public_url.trim_end_matches('/'))
        };
        let body = super::WSDL
            .replace(super::WSDL_ADDRESS, &address)
            .replace(super::WSDL_XSD_LOCATION, "sales?xsd=1");
        Response::builder()
            .content_type("text/xml; charset=utf-8")
            .body(body)
    } else if query == "xsd=1" {
        Response::builder()
            .content_type("text/xml; charset=utf-8")
            .body(super::XSD)
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("ask GET /ws/sales?wsdl for the WSDL, or POST a SOAP request")
    }
}

/// `POST /admin/sales` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdminSale {
    sale_id: Option<String>,
    salesman_code: String,
    city_name: String,
    city_state: String,
    amount: String,
    #[serde(default = "brl")]
    currency: String,
    sold_at: DateTime<Utc>,
}

fn brl() -> String {
    "BRL".into()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdminChange {
    sale_id: String,
    sequence: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u32>,
}

fn problem(status: StatusCode, detail: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(
            serde_json::json!({ "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail })
                .to_string(),
        )
}

fn json<T: Serialize>(value: &T) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(serde_json::to_string(value).unwrap_or_default())
}

#[handler]
fn admin_upsert(Json(sale): Json<AdminSale>, Data(sim): Data<&Simulator>) -> Response {
    let amount: Decimal = match sale.amount.parse() {
        Ok(a) if !Decimal::is_sign_negative(&a) && a.scale() <= 2 => a,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "amount {:?} must be a non-negative decimal with at most two fraction digits",
                    sale.amount
                ),
            );
        }
    };
    if let Some(id) = &sale.sale_id
        && id.trim().is_empty()
    {
        return problem(StatusCode::BAD_REQUEST, "saleId must not be empty".into());
    }
    let change = sim.upsert(SaleInput {
        sale_id: sale.sale_id,
        salesman_code: sale.salesman_code,
        city_name: sale.city_name,
        city_state: sale.city_state,
        amount,
        currency: sale.currency,
        sold_at: sale.sold_at,
    });
    let revision = match &change.kind {
        super::model::ChangeKind::Upsert(s) => Some(s.revision),
        super::model::ChangeKind::Cancel { .. } => None,
    };
    json(&AdminChange {
        sale_id: change.sale_id().to_string(),
        sequence: change.sequence,
        revision,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminCancel {
    reason: Option<String>,
}

#[handler]
async fn admin_cancel(Path(id): Path<String>, body: Body, Data(sim): Data<&Simulator>) -> Response {
    let bytes = body.into_bytes_limit(64 * 1024).await.unwrap_or_default();
    let cancel: AdminCancel = if bytes.iter().all(u8::is_ascii_whitespace) {
        AdminCancel::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    match sim.cancel(&id, cancel.reason) {
        Ok(change) => json(&AdminChange {
            sale_id: id,
            sequence: change.sequence,
            revision: None,
        }),
        Err(e @ CancelError::Unknown(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ CancelError::AlreadyCancelled(_)) => problem(StatusCode::CONFLICT, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdminThrottle {
    requests: u32,
    retry_after_seconds: Option<u64>,
}

#[handler]
fn admin_throttle(Json(t): Json<AdminThrottle>, Data(sim): Data<&Simulator>) -> Response {
    let retry_after = Duration::from_secs(
        t.retry_after_seconds
            .unwrap_or(sim.config.throttle_retry_after_secs),
    );
    sim.throttle_next(t.requests, retry_after);
    json(&serde_json::json!({ "requests": t.requests, "retryAfterSeconds": retry_after.as_secs() }))
}

#[handler]
fn admin_list(Data(sim): Data<&Simulator>) -> Response {
    let (last_sequence, sales) = sim.active_sales();
    let sales: Vec<_> = sales
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "saleId": s.sale_id,
                "revision": s.revision,
                "salesmanCode": s.salesman_code,
                "cityName": s.city_name,
                "cityState": s.city_state,
                "amount": s.amount.to_string(),
                "currency": s.currency,
                "soldAt": s.sold_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        })
        .collect();
    json(&serde_json::json!({ "lastSequence": last_sequence, "sales": sales }))
}

/// Serves the simulator on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ErpSimConfig,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    serve(
        listener,
        Simulator::new(config, Arc::new(SystemClock)),
        shutdown,
    )
    .await
}

/// Serves a given simulator (tests keep a clone to inject changes directly).
pub async fn serve(
    listener: tokio::net::TcpListener,
    simulator: Simulator,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, last_sequence = simulator.last_sequence(), "erp simulator listening");
    Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(
            simulator.app(),
            shutdown.cancelled_owned(),
            Some(SHUTDOWN_GRACE),
        )
        .await?;
    tracing::info!("erp simulator stopped");
    Ok(())
}

/// One change injected through `/admin`, as the journal records it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Journaled {
    Upsert {
        input: SaleInput,
        at: DateTime<Utc>,
    },
    Cancel {
        sale_id: String,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

/// Applies the journal's changes in order, with their original times. A missing file is an
/// empty journal; an unreadable line is logged and skipped (the rest still replays).
fn replay_journal(store: &mut Store, path: &str) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::error!(journal = path, %error, "could not read the journal; starting without it");
            return;
        }
    };
    let mut replayed = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<Journaled>(line) {
            Ok(Journaled::Upsert { input, at }) => {
                store.upsert(input, at);
                replayed += 1;
            }
            Ok(Journaled::Cancel {
                sale_id,
                reason,
                at,
            }) => {
                if store.cancel(&sale_id, reason, at).is_ok() {
                    replayed += 1;
                }
            }
            Err(error) => {
                tracing::error!(journal = path, line = n + 1, %error, "skipping an unreadable journal line")
            }
        }
    }
    tracing::info!(journal = path, replayed, "journal replayed");
}

/// A simulator serving on a free loopback port of this process (tests, benchmarks); it stops
/// when dropped.
pub struct SpawnedSimulator {
    /// Its data, to inject changes or read them directly.
    pub simulator: Simulator,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The SOAP endpoint, `<base>/ws/sales`.
    pub endpoint: String,
    shutdown: CancellationToken,
}

impl Drop for SpawnedSimulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulator with `config` (its `listen` is ignored) on a free loopback port.
pub async fn spawn(config: ErpSimConfig) -> std::io::Result<SpawnedSimulator> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let simulator = Simulator::new(config, Arc::new(crate::erp::wssec::SystemClock));
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, simulator.clone(), shutdown.clone()));
    Ok(SpawnedSimulator {
        simulator,
        endpoint: format!("{base}/ws/sales"),
        base,
        shutdown,
    })
}

#[cfg(test)]
mod journal_tests {
    use super::*;
    use crate::erp::wssec::SystemClock;

    /// The unauthenticated admin endpoints exist only when switched on.
    #[tokio::test]
    async fn admin_endpoints_are_off_unless_configured() {
        let get = |admin: bool| async move {
            let config = ErpSimConfig {
                initial_changes: 1,
                admin,
                ..ErpSimConfig::default()
            };
            let app = Simulator::new(config, Arc::new(SystemClock)).app();
            poem::test::TestClient::new(app)
                .get("/admin/sales")
                .send()
                .await
                .0
                .status()
        };
        assert_eq!(get(false).await, poem::http::StatusCode::NOT_FOUND);
        assert!(get(true).await.is_success());
        assert!(
            !ErpSimConfig::default().admin,
            "admin must be off by default"
        );
    }

    #[test]
    fn a_restarted_simulator_replays_its_journal_and_keeps_its_log() {
        let journal = std::env::temp_dir().join(format!(
            "tributary-erp-journal-{}-{:?}.jsonl",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let config = ErpSimConfig {
            initial_changes: 20,
            journal: journal.display().to_string(),
            ..ErpSimConfig::default()
        };
        let first = Simulator::new(config.clone(), Arc::new(SystemClock));
        let added = first.upsert(SaleInput {
            sale_id: None,
            salesman_code: "S001".into(),
            city_name: "Campinas".into(),
            city_state: "SP".into(),
            amount: Decimal::new(12_345, 2),
            currency: "BRL".into(),
            sold_at: "2026-03-01T10:00:00Z".parse().unwrap(),
        });
        let (_, before) = first.active_sales();
        let victim = before
            .iter()
            .find(|s| s.sale_id != added.sale_id())
            .unwrap()
            .sale_id
            .clone();
        first.cancel(&victim, Some("test".into())).unwrap();
        let (sequence, sales) = first.active_sales();

        let restarted = Simulator::new(config, Arc::new(SystemClock));
        assert_eq!(restarted.active_sales(), (sequence, sales));
        assert_eq!(sequence, 22, "20 generated, one sale, one cancellation");
        std::fs::remove_file(journal).unwrap();
    }
}
