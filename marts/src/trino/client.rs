//! A client of Trino's HTTP protocol, for the few statements the marts send: POST the SQL to
//! `/v1/statement`, then follow `nextUri` until the query is done, collecting the columns, the
//! rows and the final statistics. (The crates.io Trino clients are thin wrappers over the same
//! loop with heavier dependencies, and none is maintained alongside Trino.)
//!
//! Protocol: <https://trino.io/docs/current/develop/client-protocol.html>.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::TrinoSettings;
use crate::error::MartsError;

/// One query's result.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Trino's query id (`20261203_210634_00001_3wwxj`), to find it in Trino's UI and logs.
    pub query_id: String,
    /// Name and Trino type (`bigint`, `varchar`, `decimal(38,2)`, …) of each column.
    pub columns: Vec<Column>,
    /// Rows, one JSON value per column (decimals as strings, as the protocol sends them).
    pub rows: Vec<Vec<Value>>,
    /// The query's peak memory over the cluster, in bytes, from its final statistics.
    pub peak_memory_bytes: u64,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Trino type, e.g. `decimal(38,2)`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// One page of the protocol.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    id: String,
    next_uri: Option<String>,
    columns: Option<Vec<Column>>,
    data: Option<Vec<Vec<Value>>>,
    error: Option<QueryError>,
    stats: Option<Stats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryError {
    message: String,
    error_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    #[serde(default)]
    peak_memory_bytes: u64,
}

/// A Trino coordinator.
#[derive(Debug, Clone)]
pub struct TrinoClient {
    http: reqwest::Client,
    settings: TrinoSettings,
}

/// How long one HTTP exchange may take (Trino answers a poll within about a second).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait before polling again after Trino asked us to (503).
const BUSY_WAIT: Duration = Duration::from_millis(250);

impl TrinoClient {
    /// A client of the coordinator at `settings.url`.
    pub fn new(settings: &TrinoSettings) -> Result<Self, MartsError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| MartsError::Trino {
                query: "connect".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            settings: settings.clone(),
        })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &TrinoSettings {
        &self.settings
    }

    /// The coordinator's Trino version (`/v1/info`), e.g. `476`.
    pub async fn version(&self) -> Result<String, MartsError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            node_version: NodeVersion,
        }
        #[derive(Deserialize)]
        struct NodeVersion {
            version: String,
        }
        let url = format!("{}/v1/info", self.settings.url.trim_end_matches('/'));
        let fail = |message: String| MartsError::Trino {
            query: "info".into(),
            message,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(format!("{} unreachable: {e}", self.settings.url)))?
            .error_for_status()
            .map_err(|e| fail(e.to_string()))?;
        let info: Info = response
            .json()
            .await
            .map_err(|e| fail(format!("unreadable answer: {e}")))?;
        Ok(info.node_version.version)
    }

    /// Runs `sql` to the end (at most `settings.query_timeout_s`). `label` names the query in
    /// errors and in Trino (`X-Trino-Source`).
    pub async fn query(&self, label: &str, sql: &str) -> Result<QueryResult, MartsError> {
        let timeout = Duration::from_secs(self.settings.query_timeout_s);
        match tokio::time::timeout(timeout, self.run(label, sql)).await {
            Ok(result) => result,
            Err(_) => Err(MartsError::Trino {
                query: label.into(),
                message: format!("no answer within {} s", timeout.as_secs()),
            }),
        }
    }

    async fn run(&self, label: &str, sql: &str) -> Result<QueryResult, MartsError> {
        let fail = |message: String| MartsError::Trino {
            query: label.into(),
            message,
        };
        let url = format!("{}/v1/statement", self.settings.url.trim_end_matches('/'));
        let request = self
            .http
            .post(&url)
            .header("X-Trino-User", &self.settings.user)
            .header("X-Trino-Catalog", &self.settings.catalog)
            .header("X-Trino-Source", format!("tributary-marts/{label}"))
            .body(sql.to_string());
        let mut page = self.page(request, &fail).await?;
        let mut result = QueryResult {
            query_id: page.id.clone(),
            ..QueryResult::default()
        };
        loop {
            if let Some(error) = page.error {
                return Err(fail(format!(
                    "{} ({}; query {})",
                    error.message,
                    error.error_name.as_deref().unwrap_or("error"),
                    result.query_id
                )));
            }
            if let Some(columns) = page.columns.take() {
                result.columns = columns;
            }
            result.rows.extend(page.data.take().unwrap_or_default());
            if let Some(stats) = &page.stats {
                result.peak_memory_bytes = result.peak_memory_bytes.max(stats.peak_memory_bytes);
            }
            let Some(next) = page.next_uri.take() else {
                return Ok(result);
            };
            page = self.page(self.http.get(&next), &fail).await?;
        }
    }

    /// One exchange, repeated while Trino answers 503 (busy), as the protocol asks.
    async fn page(
        &self,
        request: reqwest::RequestBuilder,
        fail: &impl Fn(String) -> MartsError,
    ) -> Result<Page, MartsError> {
        loop {
            let attempt = request
                .try_clone()
                .ok_or_else(|| fail("request body cannot be resent".into()))?;
            let response = attempt
                .send()
                .await
                .map_err(|e| fail(format!("{} unreachable: {e}", self.settings.url)))?;
            let status = response.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(BUSY_WAIT).await;
                continue;
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(fail(format!("HTTP {status}: {}", body.trim())));
            }
            return response
                .json::<Page>()
                .await
                .map_err(|e| fail(format!("unreadable answer: {e}")));
        }
    }
}
