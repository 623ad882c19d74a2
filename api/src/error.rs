//! Errors, their HTTP statuses (decided in [`ApiError::status`] and nowhere else) and their
//! problem-JSON bodies (RFC 9457, `application/problem+json`).
//!
//! Handlers return [`ApiError`]s; everything poem or poem-openapi rejects before a handler
//! runs (a `limit` that is not a number, an unknown route) goes through [`from_poem_error`], so
//! every error body a client sees has the same shape.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use tributary_marts::MartsError;
use tributary_rankings::RankingsError;
use tributary_raw::RawError;

/// A problem-details body.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:tributary:problem:…`).
    #[oai(rename = "type")]
    pub kind: String,
    /// Short, fixed summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request, and what to do about it.
    pub detail: String,
    /// The offending query or path parameter, for `invalid-parameter`.
    #[oai(skip_serializing_if_is_none)]
    pub parameter: Option<String>,
}

/// What can go wrong serving a request or starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Every lake request slot was taken for as long as a request waits for one.
    #[error(
        "{running} requests reading the lake are running (limits.lake_concurrency); none finished within {waited_ms} ms: retry shortly"
    )]
    Busy {
        /// The slots.
        running: usize,
        /// How long this request waited.
        waited_ms: u64,
    },
    /// The request ran longer than `limits.request_timeout_ms`.
    #[error("the request did not finish within {after_ms} ms (limits.request_timeout_ms)")]
    TimedOut {
        /// The limit.
        after_ms: u64,
    },
    /// A query or path parameter is missing, unparsable or out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The city is not in the latest publication.
    #[error("city {city_id} is not in publication {publication_id}")]
    CityNotFound {
        /// The city asked for.
        city_id: i64,
        /// The publication searched.
        publication_id: String,
    },
    /// The salesman is in no ranking of the publication.
    #[error("salesman {salesman_id} is not in publication {publication_id}")]
    SalesmanNotFound {
        /// The salesman asked for.
        salesman_id: i64,
        /// The publication searched.
        publication_id: String,
    },
    /// No raw table of the lake has this snapshot (`?as_of_snapshot=`).
    #[error("no raw table of the lake has snapshot {snapshot_id}; GET /v1/snapshots lists them")]
    SnapshotNotFound {
        /// The snapshot asked for.
        snapshot_id: i64,
    },
    /// No route matches the path.
    #[error("no route for {path}")]
    RouteNotFound {
        /// The request path.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The marts have not published anything yet.
    #[error("no rankings have been published yet")]
    NotPublished,
    /// The request needs a bearer token it did not present, or presented a wrong one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A write, with no write token configured: this API takes no writes.
    #[error(
        "this API takes no writes: no auth.write_token is configured (TRIBUTARY_AUTH__WRITE_TOKEN)"
    )]
    WritesDisabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] RankingsError),
    /// Reading the lake for an on-demand (`as_of`) answer failed.
    #[error("lake: {0}")]
    Lake(MartsError),
    /// A computation over the lake needed more memory than `limits.lake_memory_mb` leaves it
    /// (with the other lake requests running).
    #[error(
        "the lake computation needs more memory than limits.lake_memory_mb \
         (TRIBUTARY_LIMITS__LAKE_MEMORY_MB) leaves it: {0}"
    )]
    LakeMemory(MartsError),
    /// The lake cannot be opened (catalog or object store down, or none configured).
    #[error("lake unavailable: {0}")]
    LakeUnavailable(String),
    /// `raw.dead_letters` has rows the API cannot read (a column missing or of another type).
    #[error("unreadable dead letters: {0}")]
    DeadLetterRows(String),
    /// Any other error poem reports, with its status.
    #[error("{message}")]
    Http {
        /// The status poem chose.
        status: StatusCode,
        /// Its message.
        message: String,
    },
    /// The listener failed.
    #[error("serving http failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ApiError {
    /// A failed computation over the lake: [`ApiError::LakeMemory`] when it ran out of its
    /// memory budget, else [`ApiError::Lake`].
    pub fn from_lake(error: MartsError) -> Self {
        if error.is_out_of_memory() {
            ApiError::LakeMemory(error)
        } else {
            ApiError::Lake(error)
        }
    }

    /// The HTTP status of each error: the one place it is decided.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TimedOut { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // Refused for the process's sake: it may fit once the other lake requests are done,
            // or with a larger budget.
            ApiError::LakeMemory(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::CityNotFound { .. }
            | ApiError::SalesmanNotFound { .. }
            | ApiError::SnapshotNotFound { .. }
            | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::WritesDisabled => StatusCode::FORBIDDEN,
            // Retrying later helps: the marts job has not run yet.
            ApiError::NotPublished => StatusCode::SERVICE_UNAVAILABLE,
            // An unreachable ClickHouse is an outage of a dependency; anything else it says
            // (a missing table, an unreadable row) is ours to fix.
            ApiError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Io(_) | ApiError::DeadLetterRows(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            // Time travel to before the history maintenance kept: gone for good.
            ApiError::Lake(MartsError::Raw(RawError::BeforeRetention { .. })) => StatusCode::GONE,
            // The catalog, a table or the object store cannot be read: a dependency outage.
            // A failing query or an impossible value is ours to fix.
            ApiError::LakeUnavailable(_)
            | ApiError::Lake(
                MartsError::Lake { .. }
                | MartsError::LakeTableMissing { .. }
                | MartsError::Raw(RawError::Iceberg { .. } | RawError::OpenCatalog { .. }),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Lake(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Lake(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Http { status, .. } => *status,
        }
    }

    /// The problem-JSON body.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (slug, title, parameter) = match self {
            ApiError::InvalidParameter { name, .. } => (
                "invalid-parameter",
                "Invalid request parameter",
                Some(name.clone()),
            ),
            ApiError::Busy { .. } => ("busy", "Too many lake requests", None),
            ApiError::TimedOut { .. } => ("timeout", "Request timed out", None),
            ApiError::CityNotFound { .. } => ("city-not-found", "City not found", None),
            ApiError::SalesmanNotFound { .. } => ("salesman-not-found", "Salesman not found", None),
            ApiError::SnapshotNotFound { .. } => (
                "snapshot-not-found",
                "Snapshot not found",
                Some("as_of_snapshot".to_string()),
            ),
            ApiError::RouteNotFound { .. } => ("not-found", "Not found", None),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed", None),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized", None),
            ApiError::WritesDisabled => ("writes-disabled", "Writes disabled", None),
            ApiError::NotPublished => ("not-published", "Rankings not published yet", None),
            ApiError::LakeMemory(_) => (
                "lake-memory",
                "Lake computation over its memory budget",
                None,
            ),
            ApiError::Lake(MartsError::Raw(RawError::BeforeRetention { .. })) => (
                "before-retention",
                "Before the lake's retained history",
                Some("as_of".to_string()),
            ),
            ApiError::Store(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                ("store-unavailable", "Rankings store unavailable", None)
            }
            ApiError::Lake(_) | ApiError::LakeUnavailable(_)
                if status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                ("lake-unavailable", "Lake unavailable", None)
            }
            ApiError::Store(_)
            | ApiError::Io(_)
            | ApiError::DeadLetterRows(_)
            | ApiError::Lake(_)
            | ApiError::LakeUnavailable(_) => ("internal", "Internal error", None),
            ApiError::Http { .. } => (
                "http",
                status.canonical_reason().unwrap_or("HTTP error"),
                None,
            ),
        };
        let detail = match self {
            ApiError::NotPublished => "the marts job (tributary-marts) has not published any \
                rankings yet; retry after its first run"
                .to_string(),
            ApiError::Store(e) => format!("{e}"),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:tributary:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            parameter,
        }
    }
}

/// `Retry-After` of a 429 `busy`, in seconds.
pub const RETRY_BUSY_AFTER_S: u64 = 1;

/// Every error response of the API: a problem-JSON body with the status of
/// [`ApiError::status`].
#[derive(Debug, ApiResponse)]
pub enum ProblemResponse {
    /// A parameter is invalid (`parameter` names it).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No such city, or no such route.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// No rankings are published yet, or ClickHouse (or, for `as_of`, the lake) cannot be
    /// reached; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
    /// Something that will not fix itself.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// Too many lake requests at once: retry after `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    Busy(
        Json<Problem>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Any other status poem itself produces (405 and the like).
    #[oai(content_type = "application/problem+json")]
    Other(StatusCode, Json<Problem>),
}

impl From<ApiError> for ProblemResponse {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        if status.is_server_error() {
            tracing::warn!(%error, status = status.as_u16(), "request failed");
        }
        let body = Json(error.problem());
        match status {
            StatusCode::BAD_REQUEST => ProblemResponse::BadRequest(body),
            StatusCode::NOT_FOUND => ProblemResponse::NotFound(body),
            StatusCode::SERVICE_UNAVAILABLE => ProblemResponse::Unavailable(body),
            StatusCode::INTERNAL_SERVER_ERROR => ProblemResponse::Internal(body),
            // A turn frees within a lake request's time; a second is the queue's own wait.
            StatusCode::TOO_MANY_REQUESTS => ProblemResponse::Busy(body, RETRY_BUSY_AFTER_S),
            other => ProblemResponse::Other(other, body),
        }
    }
}

impl From<RankingsError> for ProblemResponse {
    fn from(error: RankingsError) -> Self {
        ApiError::Store(error).into()
    }
}

/// Turns an error raised by poem or poem-openapi (before or around a handler) into an
/// [`ApiError`]: parameter parse and validation failures become `invalid-parameter`.
///
/// `templates` are the API's path templates (`/v1/rankings/cities/{city_id}/salesmen`):
/// poem-openapi names path parameters `param0`, `param1`, … internally, and the client should
/// hear the name it knows.
pub fn from_poem_error(error: &poem::Error, path: &str, templates: &[String]) -> ApiError {
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return ApiError::InvalidParameter {
            name: e.name.to_string(),
            reason: e.reason.clone(),
        };
    }
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        let name = e
            .name
            .strip_prefix("param")
            .and_then(|i| i.parse().ok())
            .and_then(|i| path_param_name(templates, path, i))
            .unwrap_or_else(|| e.name.to_string());
        return ApiError::InvalidParameter {
            name,
            reason: e.reason.clone(),
        };
    }
    if error.is::<poem::error::NotFoundError>() {
        return ApiError::RouteNotFound {
            path: path.to_string(),
        };
    }
    if error.is::<poem::error::MethodNotAllowedError>() {
        return ApiError::MethodNotAllowed;
    }
    ApiError::Http {
        status: error.status(),
        message: error.to_string(),
    }
}

/// The name of the `index`-th `{…}` segment of the template that `path` matches.
fn path_param_name(templates: &[String], path: &str, index: usize) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    templates.iter().find_map(|template| {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        let is_var = |p: &str| p.starts_with('{') && p.ends_with('}');
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| is_var(p) || p == s);
        matches
            .then(|| parts.iter().copied().filter(|p| is_var(p)).nth(index))
            .flatten()
            .map(|p| p[1..p.len() - 1].to_string())
    })
}

impl From<RawError> for ApiError {
    fn from(error: RawError) -> Self {
        match error {
            RawError::SnapshotNotFound { snapshot_id } => {
                ApiError::SnapshotNotFound { snapshot_id }
            }
            other => ApiError::Lake(other.into()),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_travel_before_the_retention_is_gone_and_says_why() {
        let error = ApiError::Lake(MartsError::Raw(RawError::BeforeRetention {
            table: "raw.pg_sale".into(),
            at: chrono::DateTime::from_timestamp(1_000, 0).unwrap(),
            oldest: chrono::DateTime::from_timestamp(2_000, 0).unwrap(),
            retention: "every snapshot of the last 3600 s".into(),
        }));
        assert_eq!(error.status(), StatusCode::GONE);
        let problem = error.problem();
        assert_eq!(problem.kind, "urn:tributary:problem:before-retention");
        assert_eq!(problem.parameter.as_deref(), Some("as_of"));
        assert!(
            problem.detail.contains("1970-01-01 00:33:20 UTC")
                && problem.detail.contains("every snapshot of the last 3600 s"),
            "{}",
            problem.detail
        );
    }

    #[test]
    fn statuses_are_decided_by_kind() {
        let invalid = ApiError::InvalidParameter {
            name: "limit".into(),
            reason: "must be at least 1".into(),
        };
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let problem = invalid.problem();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.kind, "urn:tributary:problem:invalid-parameter");
        assert_eq!(problem.parameter.as_deref(), Some("limit"));
        assert!(problem.detail.contains("limit"));

        assert_eq!(
            ApiError::NotPublished.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let unreachable = ApiError::Store(RankingsError::ClickHouse {
            action: "ping".into(),
            source: clickhouse::error::Error::TimedOut,
        });
        assert_eq!(unreachable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let broken = ApiError::Store(RankingsError::CorruptPublication {
            publication_id: "p".into(),
            reason: "bad json".into(),
        });
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn path_parameters_get_their_documented_names() {
        let templates = vec![
            "/v1/rankings/salesmen".to_string(),
            "/v1/rankings/cities/{city_id}/salesmen".to_string(),
        ];
        let path = "/v1/rankings/cities/seven/salesmen";
        assert_eq!(
            path_param_name(&templates, path, 0).as_deref(),
            Some("city_id")
        );
        assert_eq!(path_param_name(&templates, path, 1), None);
        assert_eq!(path_param_name(&templates, "/v1/other/x", 0), None);
        let parse: poem::Error = poem_openapi::error::ParsePathError {
            name: "param0",
            reason: "not a number".into(),
        }
        .into();
        let error = from_poem_error(&parse, path, &templates);
        assert!(matches!(&error, ApiError::InvalidParameter { name, .. } if name == "city_id"));
    }

    #[test]
    fn poem_parse_errors_become_invalid_parameter() {
        let parse: poem::Error = poem_openapi::error::ParseParamError {
            name: "limit",
            reason: "failed to parse".into(),
        }
        .into();
        let error = from_poem_error(&parse, "/v1/rankings/cities", &[]);
        assert!(matches!(&error, ApiError::InvalidParameter { name, .. } if name == "limit"));
        let not_found: poem::Error = poem::error::NotFoundError.into();
        assert_eq!(
            from_poem_error(&not_found, "/nope", &[]).status(),
            StatusCode::NOT_FOUND
        );
    }
}
