//! Malicious ERP responses, served by a tiny hostile poem server: each is refused by the
//! client with its own error, not retried, and nothing reaches the poller's output.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use poem::{EndpointExt, Response, Route, Server, handler, listener::TcpAcceptor, web::Data};
use tokio_util::sync::CancellationToken;
use tributary_ingest::erp::{ErpClient, ErpClientConfig, ErpError, ErpPoller, XmlError};

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetSalesResponse xmlns="urn:tributary:erp:sales:v1"><nextCursor>&lol9;</nextCursor><hasMore>false</hasMore></GetSalesResponse></soap:Body></soap:Envelope>"#;

const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetSalesResponse xmlns="urn:tributary:erp:sales:v1"><nextCursor>&xxe;</nextCursor><hasMore>false</hasMore></GetSalesResponse></soap:Body></soap:Envelope>"#;

const UNDECLARED_ENTITY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetSalesResponse xmlns="urn:tributary:erp:sales:v1"><nextCursor>&xxe;</nextCursor><hasMore>false</hasMore></GetSalesResponse></soap:Body></soap:Envelope>"#;

fn oversized() -> String {
    let filler = "<!-- padding -->".repeat(100_000);
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{filler}</soap:Body></soap:Envelope>"#
    )
}

fn too_deep() -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{}{}</soap:Body></soap:Envelope>"#,
        "<a>".repeat(500),
        "</a>".repeat(500)
    )
}

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

fn xml(body: String) -> Response {
    Response::builder()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

#[handler]
fn billion(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    xml(BILLION_LAUGHS.into())
}
#[handler]
fn xxe(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    xml(XXE.into())
}
#[handler]
fn undeclared(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    xml(UNDECLARED_ENTITY.into())
}
#[handler]
fn big(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    xml(oversized())
}
#[handler]
fn big_streamed(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    // No Content-Length: the client must stop reading at the limit on its own.
    let chunks =
        (0..200).map(|_| Ok::<_, std::io::Error>(bytes_of("<!-- padding -->".repeat(1_000))));
    Response::builder()
        .content_type("text/xml; charset=utf-8")
        .body(poem::Body::from_bytes_stream(futures::stream::iter(chunks)))
}
#[handler]
fn deep(Data(hits): Data<&Hits>) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    xml(too_deep())
}

fn bytes_of(s: String) -> bytes::Bytes {
    bytes::Bytes::from(s)
}

struct Hostile {
    base: String,
    hits: Hits,
    shutdown: CancellationToken,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn hostile() -> Hostile {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Hits::default();
    let app = Route::new()
        .at("/billion", poem::post(billion))
        .at("/xxe", poem::post(xxe))
        .at("/undeclared", poem::post(undeclared))
        .at("/big", poem::post(big))
        .at("/big-streamed", poem::post(big_streamed))
        .at("/deep", poem::post(deep))
        .data(hits.clone());
    let shutdown = CancellationToken::new();
    let server = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap())
        .run_with_graceful_shutdown(app, shutdown.clone().cancelled_owned(), None);
    tokio::spawn(server);
    Hostile {
        base,
        hits,
        shutdown,
    }
}

async fn poll(server: &Hostile, path: &str) -> ErpError {
    let config = ErpClientConfig {
        endpoint: format!("{}{path}", server.base),
        max_response_bytes: 256 * 1024,
        max_depth: 32,
        ..ErpClientConfig::default()
    };
    let before = server.hits.0.load(Ordering::SeqCst);
    let poller = ErpPoller::new(ErpClient::new(config).unwrap());
    let err = poller
        .poll_page("")
        .await
        .expect_err("a hostile response must be refused");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        server.hits.0.load(Ordering::SeqCst) - before,
        1,
        "refusals are permanent: no retry"
    );
    err
}

#[tokio::test]
async fn billion_laughs_is_refused() {
    let server = hostile().await;
    let err = poll(&server, "/billion").await;
    assert!(
        matches!(err, ErpError::UnsafeXml(XmlError::EntityDeclaration)),
        "{err:?}"
    );
    assert_eq!(err.label(), "xml_entity_declaration");
}

#[tokio::test]
async fn external_entities_are_refused() {
    let server = hostile().await;
    let err = poll(&server, "/xxe").await;
    assert!(
        matches!(err, ErpError::UnsafeXml(XmlError::ExternalEntity)),
        "{err:?}"
    );
    let err = poll(&server, "/undeclared").await;
    assert!(
        matches!(err, ErpError::UnsafeXml(XmlError::UnknownEntity { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_responses_are_refused_with_or_without_a_length() {
    let server = hostile().await;
    let err = poll(&server, "/big").await;
    assert!(
        matches!(
            err,
            ErpError::UnsafeXml(XmlError::TooLarge { limit: 262_144, .. })
        ),
        "{err:?}"
    );
    let err = poll(&server, "/big-streamed").await;
    assert!(
        matches!(err, ErpError::UnsafeXml(XmlError::TooLarge { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn too_deep_responses_are_refused() {
    let server = hostile().await;
    let err = poll(&server, "/deep").await;
    assert!(
        matches!(err, ErpError::UnsafeXml(XmlError::TooDeep { limit: 32 })),
        "{err:?}"
    );
}

/// What `ingest/tests/bad-inputs/soap/expectations.toml` says of one ERP answer.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAnswer {
    file: String,
    /// `refused` (the whole answer: an error, nothing out) or `page` (read, some changes
    /// dead-lettered).
    outcome: String,
    /// For `refused`: words of the error.
    #[serde(default)]
    error: String,
    /// For `refused`: whether asking again may help.
    #[serde(default)]
    retryable: bool,
    /// For `page`: changes that became sale events.
    #[serde(default)]
    events: usize,
    /// For `page`: every dead-lettered change, as `"<kind>: <words of the reason>"`.
    #[serde(default)]
    dead_letters: Vec<String>,
    #[allow(dead_code)]
    why: String,
}

#[derive(Debug, serde::Deserialize)]
struct SoapCorpus {
    answer: Vec<ExpectedAnswer>,
}

#[handler]
fn corpus_file(poem::web::Path(name): poem::web::Path<String>) -> Response {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad-inputs/soap")
        .join(name);
    xml(String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned())
}

/// The committed corpus of hostile or broken ERP answers (`ingest/tests/bad-inputs/soap/`),
/// each served as the answer to `GetSales`: refused whole with its error (and whether a retry
/// may help), or read with exactly its good changes as events and the others as dead letters
/// with their kind and reason.
#[tokio::test]
async fn every_committed_bad_answer_is_refused_or_dead_lettered_with_its_reason() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inputs/soap");
    let corpus: SoapCorpus = tributary_common::corpus::load(&dir, |c: &SoapCorpus| {
        c.answer.iter().map(|a| a.file.clone()).collect()
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let app = Route::new().at("/corpus/:name", poem::post(corpus_file));
    tokio::spawn(
        Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap())
            .run_with_graceful_shutdown(app, shutdown.clone().cancelled_owned(), None),
    );
    let mut problems = Vec::new();
    for answer in &corpus.answer {
        let config = ErpClientConfig {
            endpoint: format!("{base}/corpus/{}", answer.file),
            max_response_bytes: 256 * 1024,
            max_depth: 32,
            retry: tributary_ingest::erp::RetrySettings {
                max_retries: 0,
                ..Default::default()
            },
            ..ErpClientConfig::default()
        };
        let poller = ErpPoller::new(ErpClient::new(config).unwrap());
        let got = poller.poll_page("").await;
        let ok = match (answer.outcome.as_str(), &got) {
            ("refused", Err(error)) => {
                format!("{error:#}").contains(&answer.error)
                    && error.is_retryable() == answer.retryable
            }
            ("page", Ok(page)) => {
                page.events.len() == answer.events
                    && page.rejected.len() == answer.dead_letters.len()
                    && page
                        .rejected
                        .iter()
                        .zip(&answer.dead_letters)
                        .all(|(r, want)| {
                            let (kind, words) = want.split_once(": ").unwrap_or((want, ""));
                            r.error_kind == kind && r.reason.contains(words)
                        })
            }
            _ => false,
        };
        if !ok {
            let got = match &got {
                Ok(page) => format!(
                    "a page of {} events, dead letters {:?}",
                    page.events.len(),
                    page.rejected
                        .iter()
                        .map(|r| format!("{}: {}", r.error_kind, r.reason))
                        .collect::<Vec<_>>()
                ),
                Err(error) => format!("refused ({error:#}; retryable {})", error.is_retryable()),
            };
            problems.push(format!(
                "{}: expected {} {:?}; got {got}",
                answer.file, answer.outcome, answer.error
            ));
        }
    }
    shutdown.cancel();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
