//! The ERP's SOAP client: signs each request, reads responses through the safe parser, and
//! retries transient failures with exponential backoff and jitter, waiting at least as long
//! as a throttling fault asks.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use super::config::ErpClientConfig;
use super::error::ErpError;
use super::model::{GetSaleRequest, GetSalesPage, GetSalesRequest, SaleRecord};
use super::soap::{self, SoapVersion};
use super::wssec::{
    NonceSource, RandomNonce, SharedClock, SharedNonceSource, SystemClock, UsernameToken,
};
use super::xml::{self, Element};
use std::sync::Arc;

/// The operations of the ERP's WSDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Page through the change log.
    GetSales,
    /// Read one sale.
    GetSale,
}

impl Operation {
    /// The operation's name in the WSDL.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GetSales => "GetSales",
            Operation::GetSale => "GetSale",
        }
    }
}

/// Facts about the exchange that produced a response, for provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The endpoint called.
    pub endpoint: String,
    /// The operation.
    pub operation: Operation,
    /// Our id of the successful attempt (sent as `X-Request-Id`).
    pub request_id: String,
    /// Time from sending the successful attempt to having its whole response, in ms.
    pub response_time_ms: u64,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// A decoded response with its call facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<T> {
    /// The payload.
    pub body: T,
    /// How it was obtained.
    pub info: CallInfo,
}

/// Talks to one ERP endpoint.
#[derive(Clone)]
pub struct ErpClient {
    http: reqwest::Client,
    config: ErpClientConfig,
    clock: SharedClock,
    nonces: SharedNonceSource,
}

impl std::fmt::Debug for ErpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErpClient")
            .field("endpoint", &self.config.endpoint)
            .field("username", &self.config.username)
            .finish_non_exhaustive()
    }
}

impl ErpClient {
    /// A client using the system clock and random nonces.
    pub fn new(config: ErpClientConfig) -> Result<Self, ErpError> {
        Self::with_sources(config, Arc::new(SystemClock), Arc::new(RandomNonce))
    }

    /// A client with an injected clock and nonce source (tests).
    pub fn with_sources(
        config: ErpClientConfig,
        clock: SharedClock,
        nonces: SharedNonceSource,
    ) -> Result<Self, ErpError> {
        let url = reqwest::Url::parse(&config.endpoint).map_err(|e| ErpError::Config {
            reason: format!("endpoint {:?} is not a URL: {e}", config.endpoint),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ErpError::Config {
                reason: format!("endpoint {:?} must be http or https", config.endpoint),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            // Redirects would let a compromised endpoint send our signed requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ErpError::Config {
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            config,
            clock,
            nonces,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ErpClientConfig {
        &self.config
    }

    /// The clock in use.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// `GetSales(cursor, pageSize)`, with retries.
    pub async fn get_sales(
        &self,
        cursor: &str,
        page_size: u32,
    ) -> Result<Response<GetSalesPage>, ErpError> {
        let payload = GetSalesRequest {
            cursor: cursor.to_string(),
            page_size,
        }
        .to_xml();
        self.call(Operation::GetSales, &payload, |el, doc| {
            Ok(GetSalesPage::from_element(el, doc)?)
        })
        .await
    }

    /// `GetSale(saleId)`, with retries.
    pub async fn get_sale(&self, sale_id: &str) -> Result<Response<SaleRecord>, ErpError> {
        let payload = GetSaleRequest {
            sale_id: sale_id.to_string(),
        }
        .to_xml();
        self.call(Operation::GetSale, &payload, |el, _| {
            Ok(SaleRecord::from_element(el)?)
        })
        .await
    }

    /// The complete signed envelope for `payload`, as sent (exposed so tests can validate
    /// what the client builds).
    pub fn build_request(&self, payload: &str) -> String {
        let token = UsernameToken::sign(
            &self.config.username,
            &self.config.password,
            &self.nonces.nonce(),
            self.clock.now(),
        );
        soap::envelope(self.config.soap_version, &token.header_xml(), payload)
    }

    async fn call<T>(
        &self,
        operation: Operation,
        payload: &str,
        decode: impl Fn(&Element, &str) -> Result<T, ErpError>,
    ) -> Result<Response<T>, ErpError> {
        let retry = &self.config.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(retry.min_delay_ms))
            .with_max_delay(Duration::from_millis(retry.max_delay_ms))
            .with_max_times(retry.max_retries)
            .with_jitter();
        let max_retry_after = Duration::from_millis(retry.max_retry_after_ms);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Each attempt is signed anew: the service refuses a replayed nonce.
            self.call_once(operation, payload, &decode).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(ErpError::is_retryable)
        .adjust(|error, delay| {
            // `None` means the retries are used up: keep it. Otherwise wait at least as long
            // as the service asked, bounded so a hostile value cannot park us for days.
            delay.map(|d| match error.retry_after() {
                Some(asked) => asked.min(max_retry_after).max(d),
                None => d,
            })
        })
        .notify(|error, delay| {
            tracing::warn!(
                operation = operation.as_str(),
                error = %error,
                delay_ms = delay.as_millis() as u64,
                "erp call failed, retrying"
            );
        })
        .await;
        let (body, mut info) = result?;
        info.attempts = attempts.into_inner();
        Ok(Response { body, info })
    }

    async fn call_once<T>(
        &self,
        operation: Operation,
        payload: &str,
        decode: &impl Fn(&Element, &str) -> Result<T, ErpError>,
    ) -> Result<(T, CallInfo), ErpError> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let version = self.config.soap_version;
        let action = soap::action_uri(operation.as_str());
        let envelope = self.build_request(payload);
        let mut request = self
            .http
            .post(&self.config.endpoint)
            .header(reqwest::header::CONTENT_TYPE, version.content_type(&action))
            .header("X-Request-Id", &request_id)
            .body(envelope);
        if version == SoapVersion::V11 {
            request = request.header("SOAPAction", format!("\"{action}\""));
        }
        let started = Instant::now();
        let transport = |source| ErpError::Transport {
            endpoint: self.config.endpoint.clone(),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limits = self.config.xml_limits();
        // Refuse oversized answers before reading them, and stop reading the moment a body
        // without a length grows past the limit.
        if let Some(length) = response.content_length()
            && length > limits.max_bytes as u64
        {
            return Err(xml::XmlError::TooLarge {
                size: usize::try_from(length).unwrap_or(usize::MAX),
                limit: limits.max_bytes,
            }
            .into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(xml::XmlError::TooLarge {
                    size: body.len() + chunk.len(),
                    limit: limits.max_bytes,
                }
                .into());
            }
            body.extend_from_slice(&chunk);
        }
        let response_time_ms = started.elapsed().as_millis() as u64;
        let http_error = || ErpError::HttpStatus {
            endpoint: self.config.endpoint.clone(),
            status: status.as_u16(),
            retry_after,
        };
        let root = match xml::parse(&body, &limits) {
            Ok(root) => root,
            // An error page from a proxy is not an XML attack: report the status.
            Err(xml::XmlError::Malformed { .. } | xml::XmlError::Empty) if !status.is_success() => {
                return Err(http_error());
            }
            Err(e) => return Err(e.into()),
        };
        let envelope = match soap::open_envelope(root) {
            Ok(envelope) => envelope,
            Err(_) if !status.is_success() => return Err(http_error()),
            Err(e) => return Err(e.into()),
        };
        if let Some(mut fault) = soap::read_fault(envelope.version, &envelope.payload) {
            if fault.retry_after.is_none() {
                fault.retry_after = retry_after;
            }
            return Err(ErpError::from_fault(fault));
        }
        if !status.is_success() {
            return Err(http_error());
        }
        // The body was checked as UTF-8 by the parser.
        let text = std::str::from_utf8(&body).unwrap_or_default();
        let value = decode(&envelope.payload, text)?;
        Ok((
            value,
            CallInfo {
                endpoint: self.config.endpoint.clone(),
                operation,
                request_id,
                response_time_ms,
                attempts: 1,
            },
        ))
    }
}

/// A nonce source that hands out the same nonce every time: for tests of replay refusal.
#[derive(Debug, Clone)]
pub struct FixedNonce(pub Vec<u8>);

impl NonceSource for FixedNonce {
    fn nonce(&self) -> Vec<u8> {
        self.0.clone()
    }
}
