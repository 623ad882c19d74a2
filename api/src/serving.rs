//! Serving from memory: the latest publication held by a [`ServedStore`] and kept fresh by
//! [`keep_fresh`], and HTTP validators over it ([`conditional`]): every ranking and detail
//! response of the latest publication carries an `ETag` derived from the publication and the
//! request's path and query, and `If-None-Match` with that tag is answered 304 without running
//! the handler.
//!
//! Requests with `as_of` or `as_of_snapshot` (computed from the lake) carry no tag, nor does a
//! response whose publication changed while it was built: a tag always names what was sent.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tributary_rankings::schema::PublicationRow;
use tributary_rankings::store::{Refresh, ServedPublication, ServedStore};

/// `Cache-Control` of a tagged response: any cache may keep it but must revalidate it (a newer
/// publication may appear at any moment), which `If-None-Match` makes a 304.
pub const CACHE_CONTROL: &str = "public, no-cache";

/// How the API holds the latest publication in memory (`[serving]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSettings {
    /// How often to ask ClickHouse whether a newer publication exists (one small query); a
    /// newer one is read whole and swapped in. A publication the marts announce (on the
    /// catalog's Postgres) is looked for at once; this interval covers missed announcements.
    /// 0 holds nothing in memory: every request then reads ClickHouse.
    pub refresh_ms: u64,
    /// Bytes of answers kept as rendered from the served publication ([`AnswerCache`]); 0
    /// renders every answer afresh. An answer over a sixteenth of it is never kept.
    pub answer_cache_bytes: u64,
}

impl Default for ServingSettings {
    fn default() -> Self {
        Self {
            refresh_ms: 500,
            answer_cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Refreshes `served` every `every`, and at once when `published` is woken (the marts announced
/// a publication, [`tributary_raw::commits::listen_for_publications`]), until `shutdown`. A
/// failure is logged once when it starts and once when it ends (ClickHouse down for an hour is two lines, not 7,200); the publication
/// already held keeps being served meanwhile.
pub async fn keep_fresh(
    served: Arc<ServedStore>,
    every: Duration,
    published: Option<Arc<tokio::sync::Notify>>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        let started = Instant::now();
        match served.refresh().await {
            Ok(refresh) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("refreshing the served publication works again");
                }
                if let Refresh::Loaded {
                    publication_id,
                    version,
                    rows,
                    rows_read,
                } = refresh
                {
                    tracing::info!(
                        %publication_id,
                        version,
                        rows,
                        rows_read,
                        seconds = started.elapsed().as_secs_f64(),
                        "serving a newer publication from memory"
                    );
                }
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cannot refresh the served publication; serving the one held");
                }
            }
        }
        let announced = async {
            match &published {
                Some(published) => published.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = announced => {}
        }
    }
}

/// Whether a request's answer depends only on the latest publication and its own path and
/// query: a GET of a ranking or detail route, without time travel.
pub fn cacheable(method: &Method, path: &str, query: Option<&str>) -> bool {
    let route = matches!(path, "/v1/months")
        || ["/v1/rankings/", "/v1/salesmen/", "/v1/cities/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
    let travels = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair.split('=').next(), Some("as_of" | "as_of_snapshot")))
    });
    *method == Method::GET && route && !travels
}

/// The entity tag of the answer to `path_and_query` from `publication`: quoted, its version in
/// hex, then a hash of the publication id, version and request (stable within one build).
pub fn etag(publication: &PublicationRow, path_and_query: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    (
        publication.publication_id.as_str(),
        publication.version,
        path_and_query,
    )
        .hash(&mut hasher);
    format!("\"{:x}-{:016x}\"", publication.version, hasher.finish())
}

/// Whether an `If-None-Match` header value names `etag` (weakly compared, as RFC 9110 asks for
/// `If-None-Match`) or is `*`.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let wanted = opaque(etag);
    if_none_match
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == wanted)
}

fn tagged(mut resp: Response, etag: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, value);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    resp
}

/// Answers rendered from the served publication, by their tag. A publication never changes, so
/// until a newer one is swapped in the same request is the same bytes, and rendering it again
/// (lookups, DTOs, JSON) is most of what a request costs once ClickHouse is out of the path.
/// Bounded by bytes. The tag names the publication, so an answer of an older one is never sent;
/// the cache is also emptied when the publication changes, so such answers do not sit in it.
pub struct AnswerCache {
    answers: moka::future::Cache<String, Arc<Answer>>,
    max_answer_bytes: usize,
    /// Version of the publication the kept answers were rendered from.
    rendered_from: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// One rendered 200: its headers (content type, tag, cache control) and body.
struct Answer {
    headers: HeaderMap,
    body: Bytes,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("answers", &self.answers.entry_count())
            .field("bytes", &self.answers.weighted_size())
            .finish_non_exhaustive()
    }
}

impl AnswerCache {
    /// A cache of at most `bytes` of answers, or none when `bytes` is 0.
    pub fn new(bytes: u64) -> Option<Self> {
        (bytes > 0).then(|| Self {
            answers: moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|tag: &String, answer: &Arc<Answer>| {
                    let headers: usize = answer
                        .headers
                        .iter()
                        .map(|(name, value)| name.as_str().len() + value.len())
                        .sum();
                    u32::try_from(tag.len() + headers + answer.body.len()).unwrap_or(u32::MAX)
                })
                .build(),
            max_answer_bytes: usize::try_from(bytes / 16).unwrap_or(usize::MAX),
            rendered_from: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Answers found and answers rendered since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Empties the cache if `publication` is not the one its answers were rendered from.
    fn follow(&self, publication: &PublicationRow) {
        if self
            .rendered_from
            .swap(publication.version, Ordering::Relaxed)
            != publication.version
        {
            self.answers.invalidate_all();
        }
    }

    async fn answer(&self, tag: &str) -> Option<Response> {
        let Some(answer) = self.answers.get(tag).await else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let mut resp = Response::builder()
            .status(StatusCode::OK)
            .body(Body::from_bytes(answer.body.clone()));
        *resp.headers_mut() = answer.headers.clone();
        Some(resp)
    }

    /// Keeps the rendered `resp` under `tag` (unless it is too big) and returns it.
    async fn keep(&self, tag: String, resp: Response) -> poem::Result<Response> {
        let (parts, body) = resp.into_parts();
        let body = body.into_bytes().await?;
        if body.len() <= self.max_answer_bytes {
            let answer = Answer {
                headers: parts.headers.clone(),
                body: body.clone(),
            };
            self.answers.insert(tag, Arc::new(answer)).await;
        }
        Ok(Response::from_parts(parts, Body::from_bytes(body)))
    }
}

/// Runs `ep` for `req` with validators: a cacheable request whose `If-None-Match` names the
/// current tag is answered 304 at once; one whose answer is in `answers` is sent from there; a
/// 200 is tagged (and kept in `answers`) if the served publication was the same before and
/// after it was built.
pub async fn conditional<E: Endpoint>(
    served: &ServedStore,
    answers: Option<&AnswerCache>,
    ep: &E,
    req: Request,
) -> poem::Result<Response> {
    let before = served.served();
    let tag = match &before {
        Some(p) if cacheable(req.method(), req.uri().path(), req.uri().query()) => {
            let path_and_query = req
                .uri()
                .path_and_query()
                .map_or(req.uri().path(), |pq| pq.as_str());
            Some(etag(p.row(), path_and_query))
        }
        _ => None,
    };
    let (Some(tag), Some(before)) = (tag, before) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    if req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|v| none_match(v, &tag))
    {
        return Ok(tagged(StatusCode::NOT_MODIFIED.into_response(), &tag));
    }
    if let Some(answers) = answers {
        answers.follow(before.row());
        if let Some(answer) = answers.answer(&tag).await {
            return Ok(answer);
        }
    }
    let resp = ep.call(req).await?.into_response();
    let unchanged = served.served().is_some_and(|now| same(&now, &before));
    if resp.status() != StatusCode::OK || !unchanged {
        return Ok(resp);
    }
    let resp = tagged(resp, &tag);
    match answers {
        Some(answers) => answers.keep(tag, resp).await,
        None => Ok(resp),
    }
}

fn same(a: &ServedPublication, b: &ServedPublication) -> bool {
    a.row().publication_id == b.row().publication_id && a.row().version == b.row().version
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, version: u64) -> PublicationRow {
        PublicationRow {
            publication_id: id.into(),
            version,
            ..crate::tests::publication().rows().publication
        }
    }

    #[test]
    fn only_latest_ranking_and_detail_reads_are_cacheable() {
        let get = Method::GET;
        assert!(cacheable(&get, "/v1/rankings/cities", None));
        assert!(cacheable(
            &get,
            "/v1/rankings/cities",
            Some("month=2026-03&limit=5")
        ));
        assert!(cacheable(&get, "/v1/salesmen/7", None));
        assert!(cacheable(&get, "/v1/cities/7", Some("months=true")));
        assert!(cacheable(&get, "/v1/months", None));
        assert!(cacheable(&get, "/v1/rankings/salesmen/3/provenance", None));
        assert!(!cacheable(&Method::HEAD, "/v1/months", None));
        assert!(!cacheable(&Method::POST, "/v1/rankings/cities", None));
        assert!(!cacheable(
            &get,
            "/v1/rankings/cities",
            Some("as_of=2026-03-01T00:00:00Z")
        ));
        assert!(!cacheable(
            &get,
            "/v1/rankings/salesmen",
            Some("limit=1&as_of_snapshot=4")
        ));
        assert!(cacheable(
            &get,
            "/v1/rankings/salesmen",
            Some("as_office=1")
        ));
        for path in [
            "/v1/completeness",
            "/v1/snapshots",
            "/v1/dead-letters",
            "/status",
        ] {
            assert!(!cacheable(&get, path, None), "{path}");
        }
    }

    #[test]
    fn the_tag_changes_with_the_publication_and_the_request() {
        let a = etag(&row("p1", 1), "/v1/months");
        assert_eq!(a, etag(&row("p1", 1), "/v1/months"));
        assert!(a.starts_with("\"1-") && a.ends_with('"'), "{a}");
        assert_ne!(a, etag(&row("p1", 2), "/v1/months"));
        assert_ne!(a, etag(&row("p2", 1), "/v1/months"));
        assert_ne!(a, etag(&row("p1", 1), "/v1/months?x=1"));
    }

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let tag = "\"1-00ff\"";
        assert!(none_match("\"1-00ff\"", tag));
        assert!(none_match("W/\"1-00ff\"", tag));
        assert!(none_match("\"0-1\", \"1-00ff\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"1-00fe\"", tag));
        assert!(!none_match("", tag));
    }
}
