//! Bearer tokens: what writes needs one, what reads needs one only if configured.
//!
//! - **Writes** (any method but GET, HEAD and OPTIONS: today `POST /api/v1/lineage`) need
//!   `Authorization: Bearer <auth.write_token>`. With no write token configured, writes are
//!   refused (403): an open lineage store lets anyone rewrite "where did this number come from".
//!   The services send the token the OpenLineage way (`OPENLINEAGE_API_KEY`).
//! - **Reads** are open unless `auth.read_token` is set; then every read needs that token (or
//!   the write token), except the probes a load balancer or Prometheus calls without one:
//!   `/healthz`, `/readyz`, `/metrics`.
//!
//! Tokens are compared in constant time. A missing or wrong token is 401 with
//! `WWW-Authenticate: Bearer` and a problem-JSON body that never echoes the token.

use poem::http::{Method, StatusCode, header};
use poem::{IntoResponse, Request, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// `[auth]`: the tokens (`TRIBUTARY_AUTH__WRITE_TOKEN`, `TRIBUTARY_AUTH__READ_TOKEN`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer token of writers; unset, every write is refused.
    pub write_token: Option<String>,
    /// Bearer token of readers; unset, reads are open.
    pub read_token: Option<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |t: &Option<String>| if t.is_some() { "set" } else { "unset" };
        f.debug_struct("AuthSettings")
            .field("write_token", &set(&self.write_token))
            .field("read_token", &set(&self.read_token))
            .finish()
    }
}

/// The shortest token accepted: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

impl AuthSettings {
    /// Refuses a token too short to be a secret.
    pub fn validate(&self) -> Result<(), String> {
        for (name, token) in [
            ("auth.write_token", &self.write_token),
            ("auth.read_token", &self.read_token),
        ] {
            if token.as_ref().is_some_and(|t| t.len() < MIN_TOKEN_LEN) {
                return Err(format!(
                    "invalid api config: {name} must be at least {MIN_TOKEN_LEN} characters"
                ));
            }
        }
        Ok(())
    }

    /// Whether `req` may proceed; the error says why not.
    pub fn check(&self, req: &Request) -> Result<(), ApiError> {
        let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let presented = bearer(req);
        let matches = |token: &Option<String>| matches!((token, presented), (Some(want), Some(got)) if bool::from(want.as_bytes().ct_eq(got.as_bytes())));
        if writes {
            return match (&self.write_token, presented) {
                (None, _) => Err(ApiError::WritesDisabled),
                (Some(_), _) if matches(&self.write_token) => Ok(()),
                (Some(_), None) => Err(ApiError::Unauthorized("a bearer token is required")),
                (Some(_), Some(_)) => Err(ApiError::Unauthorized("the bearer token is not valid")),
            };
        }
        if self.read_token.is_none() || is_probe(req.uri().path()) {
            return Ok(());
        }
        if matches(&self.read_token) || matches(&self.write_token) {
            Ok(())
        } else if presented.is_none() {
            Err(ApiError::Unauthorized("a bearer token is required"))
        } else {
            Err(ApiError::Unauthorized("the bearer token is not valid"))
        }
    }
}

/// The paths answered without a token whatever the configuration.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The token of `Authorization: Bearer <token>`, if any.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.header(header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The response to a refused request: problem JSON, with the challenge on 401.
pub fn refusal(error: ApiError) -> Response {
    let status = error.status();
    let body = poem_openapi::types::ToJSON::to_json(&error.problem())
        .map(|json| json.to_string())
        .unwrap_or_default();
    let mut response = body
        .with_status(status)
        .with_content_type("application/problem+json")
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("static header"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: &str = "write-token-0123456789";
    const READ: &str = "read-token-0123456789";

    fn request(method: Method, path: &str, token: Option<&str>) -> Request {
        let mut req = Request::builder().method(method).uri(path.parse().unwrap());
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req.finish()
    }

    fn settings(write: Option<&str>, read: Option<&str>) -> AuthSettings {
        AuthSettings {
            write_token: write.map(str::to_string),
            read_token: read.map(str::to_string),
        }
    }

    fn status(auth: &AuthSettings, method: Method, path: &str, token: Option<&str>) -> u16 {
        match auth.check(&request(method, path, token)) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn writes_need_the_write_token_and_are_refused_without_one_configured() {
        let open = settings(None, None);
        assert_eq!(
            status(&open, Method::POST, "/api/v1/lineage", Some(WRITE)),
            403
        );
        let auth = settings(Some(WRITE), None);
        assert_eq!(
            status(&auth, Method::POST, "/api/v1/lineage", Some(WRITE)),
            200
        );
        assert_eq!(status(&auth, Method::POST, "/api/v1/lineage", None), 401);
        assert_eq!(
            status(&auth, Method::POST, "/api/v1/lineage", Some("nope")),
            401
        );
        assert_eq!(status(&auth, Method::DELETE, "/anything", Some(READ)), 401);
        // Reads stay open without a read token.
        assert_eq!(status(&auth, Method::GET, "/v1/rankings/cities", None), 200);
    }

    #[test]
    fn a_read_token_closes_reads_but_not_the_probes() {
        let auth = settings(Some(WRITE), Some(READ));
        assert_eq!(status(&auth, Method::GET, "/v1/rankings/cities", None), 401);
        assert_eq!(
            status(&auth, Method::GET, "/v1/rankings/cities", Some("x")),
            401
        );
        assert_eq!(
            status(&auth, Method::GET, "/v1/rankings/cities", Some(READ)),
            200
        );
        assert_eq!(
            status(&auth, Method::GET, "/v1/rankings/cities", Some(WRITE)),
            200
        );
        for probe in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(status(&auth, Method::GET, probe, None), 200, "{probe}");
        }
        // A read token does not write.
        assert_eq!(
            status(&auth, Method::POST, "/api/v1/lineage", Some(READ)),
            401
        );
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_other_schemes_are_no_token() {
        let auth = settings(Some(WRITE), None);
        let req = Request::builder()
            .method(Method::POST)
            .header(header::AUTHORIZATION, format!("bearer {WRITE}"))
            .finish();
        assert!(auth.check(&req).is_ok());
        let req = Request::builder()
            .method(Method::POST)
            .header(header::AUTHORIZATION, format!("Basic {WRITE}"))
            .finish();
        assert!(matches!(auth.check(&req), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn short_tokens_are_refused_and_debug_never_shows_a_token() {
        assert!(settings(Some("short"), None).validate().is_err());
        assert!(settings(None, Some("short")).validate().is_err());
        assert!(settings(Some(WRITE), Some(READ)).validate().is_ok());
        let shown = format!("{:?}", settings(Some(WRITE), Some(READ)));
        assert!(!shown.contains(WRITE) && !shown.contains(READ), "{shown}");
    }

    #[test]
    fn a_refusal_is_problem_json_with_a_challenge_and_no_token() {
        let response = refusal(ApiError::Unauthorized("the bearer token is not valid"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let response = refusal(ApiError::WritesDisabled);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
