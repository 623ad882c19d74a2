//! Where events go, configured the way OpenLineage clients are configured: from `OPENLINEAGE_*`
//! environment variables.
//!
//! | variable | meaning |
//! |---|---|
//! | `OPENLINEAGE_DISABLED=true` | emit nothing (overrides everything else) |
//! | `OPENLINEAGE_URL` | HTTP transport to this base URL (Marquez: `http://127.0.0.1:5000`) |
//! | `OPENLINEAGE_ENDPOINT` | path appended to the URL (default `api/v1/lineage`) |
//! | `OPENLINEAGE_API_KEY` | sent as `Authorization: Bearer <key>` |
//! | `OPENLINEAGE__TRANSPORT__TYPE` | `http`, `file`, `console`, `noop`, or several joined by `,` (`file,http`) |
//! | `OPENLINEAGE__TRANSPORT__URL` / `__ENDPOINT` / `__AUTH__API_KEY` / `__TIMEOUT` | the HTTP transport's settings (timeout in seconds, default 5) |
//! | `OPENLINEAGE__TRANSPORT__LOG_FILE_PATH` | the file transport's file: one JSON event per line, appended |
//! | `OPENLINEAGE_NAMESPACE` | the job namespace (default `tributary`) |
//! | `OPENLINEAGE_RUN_JOURNAL` | Tributary's own: a file listing this process's open runs, so the next process closes them if it crashed, and counts the crash ([`crate::journal`]) |
//!
//! Without any of these, lineage is off. With only `OPENLINEAGE_URL`, the transport is HTTP.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::LineageError;
use crate::event::RunEvent;

/// The default job namespace.
pub const DEFAULT_NAMESPACE: &str = "tributary";
const DEFAULT_ENDPOINT: &str = "api/v1/lineage";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One configured destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    /// POST each event as JSON to `url`/`endpoint`.
    Http {
        /// Base URL.
        url: String,
        /// Path under it.
        endpoint: String,
        /// Bearer token.
        api_key: Option<String>,
        /// Request timeout.
        timeout: Duration,
    },
    /// Append each event as one JSON line to a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Log each event (target `openlineage`, level info).
    Console,
}

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageConfig {
    /// Job namespace.
    pub namespace: String,
    /// Destinations; empty = lineage off.
    pub transports: Vec<TransportConfig>,
    /// The run journal (`OPENLINEAGE_RUN_JOURNAL`, see [`crate::journal`]): kept even when
    /// lineage is off, to count crashes.
    pub journal: Option<PathBuf>,
}

impl LineageConfig {
    /// Reads `OPENLINEAGE_*` from `vars` (pure: pass `std::env::vars()`).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LineageError> {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("OPENLINEAGE"))
            .collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let namespace = get("OPENLINEAGE_NAMESPACE")
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let journal = get("OPENLINEAGE_RUN_JOURNAL").map(PathBuf::from);
        if get("OPENLINEAGE_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self {
                namespace,
                transports: Vec::new(),
                journal,
            });
        }
        let url = get("OPENLINEAGE__TRANSPORT__URL").or(get("OPENLINEAGE_URL"));
        let kinds: Vec<String> = match get("OPENLINEAGE__TRANSPORT__TYPE") {
            Some(list) => list
                .split(',')
                .map(|k| k.trim().to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            None if url.is_some() => vec!["http".to_string()],
            None => Vec::new(),
        };
        let mut transports = Vec::new();
        for kind in kinds {
            match kind.as_str() {
                "http" => {
                    let url = url.ok_or_else(|| {
                        LineageError::Config(
                            "transport http needs OPENLINEAGE_URL (or OPENLINEAGE__TRANSPORT__URL)"
                                .into(),
                        )
                    })?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(LineageError::Config(format!(
                            "OPENLINEAGE_URL must be an http(s) URL, got {url:?}"
                        )));
                    }
                    let timeout = match get("OPENLINEAGE__TRANSPORT__TIMEOUT") {
                        Some(s) => Duration::from_secs_f64(s.parse::<f64>().map_err(|_| {
                            LineageError::Config(format!(
                                "OPENLINEAGE__TRANSPORT__TIMEOUT must be seconds, got {s:?}"
                            ))
                        })?),
                        None => DEFAULT_TIMEOUT,
                    };
                    transports.push(TransportConfig::Http {
                        url: url.to_string(),
                        endpoint: get("OPENLINEAGE__TRANSPORT__ENDPOINT")
                            .or(get("OPENLINEAGE_ENDPOINT"))
                            .unwrap_or(DEFAULT_ENDPOINT)
                            .to_string(),
                        api_key: get("OPENLINEAGE__TRANSPORT__AUTH__API_KEY")
                            .or(get("OPENLINEAGE_API_KEY"))
                            .map(str::to_string),
                        timeout,
                    });
                }
                "file" => {
                    let path = get("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH").ok_or_else(|| {
                        LineageError::Config(
                            "transport file needs OPENLINEAGE__TRANSPORT__LOG_FILE_PATH".into(),
                        )
                    })?;
                    transports.push(TransportConfig::File { path: path.into() });
                }
                "console" => transports.push(TransportConfig::Console),
                "noop" => {}
                other => {
                    return Err(LineageError::Config(format!(
                        "unknown OPENLINEAGE__TRANSPORT__TYPE {other:?} (http, file, console, noop)"
                    )));
                }
            }
        }
        Ok(Self {
            namespace,
            transports,
            journal,
        })
    }
}

/// A destination ready to send.
#[derive(Debug)]
pub(crate) enum Transport {
    Http {
        client: reqwest::Client,
        target: String,
        api_key: Option<String>,
    },
    File {
        path: PathBuf,
    },
    Console,
}

impl Transport {
    pub(crate) fn open(config: &TransportConfig) -> Result<Self, LineageError> {
        Ok(match config {
            TransportConfig::Http {
                url,
                endpoint,
                api_key,
                timeout,
            } => Transport::Http {
                client: reqwest::Client::builder()
                    .timeout(*timeout)
                    .build()
                    .map_err(|e| LineageError::Config(format!("HTTP client: {e}")))?,
                target: format!(
                    "{}/{}",
                    url.trim_end_matches('/'),
                    endpoint.trim_start_matches('/')
                ),
                api_key: api_key.clone(),
            },
            TransportConfig::File { path } => Transport::File { path: path.clone() },
            TransportConfig::Console => Transport::Console,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Transport::Http { .. } => "http",
            Transport::File { .. } => "file",
            Transport::Console => "console",
        }
    }

    pub(crate) async fn send(&self, event: &RunEvent, json: &str) -> Result<(), LineageError> {
        match self {
            Transport::Http {
                client,
                target,
                api_key,
            } => {
                let mut request = client
                    .post(target)
                    .header("Content-Type", "application/json")
                    .body(json.to_string());
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| LineageError::Send(format!("POST {target}: {e}")))?;
                let status = response.status();
                if !status.is_success() {
                    let body = response.text().await.unwrap_or_default();
                    return Err(LineageError::Send(format!(
                        "POST {target}: HTTP {status}: {}",
                        body.chars().take(500).collect::<String>()
                    )));
                }
                Ok(())
            }
            Transport::File { path } => {
                // One write of the whole line with O_APPEND: lines from several processes
                // appending to the same file do not interleave.
                let mut line = json.to_string();
                line.push('\n');
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?
                        .write_all(line.as_bytes())
                })
                .await
                .map_err(|e| LineageError::Send(format!("file transport task: {e}")))?
                .map_err(|e| LineageError::Send(format!("file transport: {e}")))
            }
            Transport::Console => {
                tracing::info!(
                    target: "openlineage",
                    event_type = ?event.event_type,
                    job = %event.job.name,
                    run_id = %event.run.run_id,
                    event = %json,
                    "OpenLineage event"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn off_by_default() {
        let c = LineageConfig::from_vars(vars(&[("PATH", "/bin")])).unwrap();
        assert!(c.transports.is_empty());
        assert_eq!(c.namespace, "tributary");
    }

    #[test]
    fn openlineage_url_means_http_with_bearer_key() {
        let c = LineageConfig::from_vars(vars(&[
            ("OPENLINEAGE_URL", "http://127.0.0.1:5000"),
            ("OPENLINEAGE_API_KEY", "k"),
            ("OPENLINEAGE_NAMESPACE", "prod"),
        ]))
        .unwrap();
        assert_eq!(c.namespace, "prod");
        assert_eq!(
            c.transports,
            vec![TransportConfig::Http {
                url: "http://127.0.0.1:5000".into(),
                endpoint: "api/v1/lineage".into(),
                api_key: Some("k".into()),
                timeout: DEFAULT_TIMEOUT,
            }]
        );
    }

    #[test]
    fn file_and_http_together_and_errors() {
        let c = LineageConfig::from_vars(vars(&[
            ("OPENLINEAGE__TRANSPORT__TYPE", "file, http"),
            ("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", "/tmp/ol.jsonl"),
            ("OPENLINEAGE_URL", "http://m:5000/"),
            ("OPENLINEAGE_ENDPOINT", "/api/v1/lineage"),
        ]))
        .unwrap();
        assert_eq!(c.transports.len(), 2);
        assert_eq!(
            c.transports[0],
            TransportConfig::File {
                path: "/tmp/ol.jsonl".into()
            }
        );
        let err = LineageConfig::from_vars(vars(&[("OPENLINEAGE__TRANSPORT__TYPE", "file")]));
        assert!(err.unwrap_err().to_string().contains("LOG_FILE_PATH"));
        let err = LineageConfig::from_vars(vars(&[("OPENLINEAGE__TRANSPORT__TYPE", "kafka")]));
        assert!(err.unwrap_err().to_string().contains("kafka"));
        let off = LineageConfig::from_vars(vars(&[
            ("OPENLINEAGE_URL", "http://m:5000"),
            ("OPENLINEAGE_DISABLED", "true"),
        ]))
        .unwrap();
        assert!(off.transports.is_empty());
    }
}
