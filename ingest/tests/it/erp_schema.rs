//! The WSDL and XSD are checked with Debian's `xmllint` (package `libxml2-utils`), and so are
//! the messages the client builds and the simulator answers.
//!
//! What is checked, and what cannot be: the WSDL and XSD must be well-formed; the XSD must
//! compile as a schema; the schema inside the WSDL's `types` (which imports the XSD) must
//! compile; every message part, binding, operation and port of the WSDL must refer to
//! something that exists. There is no official WSDL 1.1 schema available offline, so the WSDL
//! itself is not validated against one. Payloads are validated alone (each declares its own
//! namespace); the envelope and WS-Security header schemas are W3C/OASIS files that are not
//! available offline either.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tributary_ingest::erp::{
    ErpClient, ErpClientConfig, ErpSimConfig,
    model::{GetSaleRequest, GetSalesRequest},
    sim::{self, Simulator},
    soap::{self, SoapVersion, TNS},
    wssec::SystemClock,
    xml::{self, Element, XmlLimits},
};

fn wsdl_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wsdl")
}

fn xsd_path() -> PathBuf {
    wsdl_dir().join("erp-sales.xsd")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tributary-erp-schema-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs xmllint; fails the test loudly (never skips) when it is not installed.
fn xmllint(args: &[&str]) -> (bool, String) {
    let output = Command::new("xmllint").args(args).output().unwrap_or_else(|e| {
        panic!(
            "xmllint is required for the WSDL/XSD tests but cannot be run ({e}); \
             install it with `apt-get install -y libxml2-utils` (make test installs the prerequisites)"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn assert_valid(document: &str, name: &str) {
    let dir = scratch(name);
    let file = dir.join(format!("{name}.xml"));
    std::fs::write(&file, document).unwrap();
    let (ok, out) = xmllint(&[
        "--noout",
        "--nonet",
        "--schema",
        xsd_path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "{name} does not validate against the XSD:\n{out}\n{document}"
    );
}

fn payload_of(document: &str) -> String {
    let root = xml::parse(document.as_bytes(), &XmlLimits::default()).unwrap();
    let envelope = soap::open_envelope(root).unwrap();
    soap::payload_text(document, &envelope).to_string()
}

#[test]
fn the_wsdl_and_xsd_are_well_formed_and_the_schemas_compile() {
    let wsdl = wsdl_dir().join("erp-sales.wsdl");
    let (ok, out) = xmllint(&["--noout", "--nonet", wsdl.to_str().unwrap()]);
    assert!(ok, "WSDL not well-formed:\n{out}");
    let (ok, out) = xmllint(&["--noout", "--nonet", xsd_path().to_str().unwrap()]);
    assert!(ok, "XSD not well-formed:\n{out}");

    // The schema in the WSDL's types section, with the XSD beside it as on disk.
    let (ok, types) = xmllint(&[
        "--nonet",
        "--xpath",
        "/*[local-name()='definitions']/*[local-name()='types']/*[local-name()='schema']",
        wsdl.to_str().unwrap(),
    ]);
    assert!(ok, "cannot extract the WSDL types schema:\n{types}");
    let dir = scratch("types");
    std::fs::copy(xsd_path(), dir.join("erp-sales.xsd")).unwrap();
    let types_xsd = dir.join("types.xsd");
    std::fs::write(&types_xsd, types).unwrap();
    let instance = dir.join("instance.xml");
    std::fs::write(
        &instance,
        GetSalesRequest {
            cursor: String::new(),
            page_size: 10,
        }
        .to_xml(),
    )
    .unwrap();
    let (ok, out) = xmllint(&[
        "--noout",
        "--nonet",
        "--schema",
        types_xsd.to_str().unwrap(),
        instance.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "the WSDL's types schema does not compile or import the XSD:\n{out}"
    );

    // And the XSD rejects what it must: a page size out of range.
    let bad = format!(
        r#"<GetSalesRequest xmlns="{TNS}"><cursor/><pageSize>0</pageSize></GetSalesRequest>"#
    );
    let file = dir.join("bad.xml");
    std::fs::write(&file, bad).unwrap();
    let (ok, _) = xmllint(&[
        "--noout",
        "--schema",
        xsd_path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(!ok, "pageSize 0 must be invalid");
}

const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const XS_NS: &str = "http://www.w3.org/2001/XMLSchema";

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap()
}

fn names<'a>(el: &'a Element, ns: &'a str, tag: &'a str) -> Vec<&'a str> {
    el.children_named(ns, tag)
        .filter_map(|c| c.attribute("name"))
        .collect()
}

#[test]
fn every_wsdl_reference_resolves() {
    let limits = XmlLimits::default();
    let wsdl = xml::parse(tributary_ingest::erp::WSDL.as_bytes(), &limits).unwrap();
    let xsd = xml::parse(tributary_ingest::erp::XSD.as_bytes(), &limits).unwrap();
    assert_eq!(wsdl.attribute("targetNamespace"), Some(TNS));
    assert_eq!(xsd.attribute("targetNamespace"), Some(TNS));
    let elements = names(&xsd, XS_NS, "element");
    let messages = names(&wsdl, WSDL_NS, "message");
    for message in wsdl.children_named(WSDL_NS, "message") {
        for part in message.children_named(WSDL_NS, "part") {
            let element = part.attribute("element").unwrap();
            assert!(
                elements.contains(&local(element)),
                "part element {element} not in the XSD"
            );
        }
    }
    let port_type = wsdl.child(WSDL_NS, "portType").unwrap();
    let operations = names(port_type, WSDL_NS, "operation");
    assert_eq!(operations, ["GetSales", "GetSale"]);
    for op in port_type.children_named(WSDL_NS, "operation") {
        for io in &op.children {
            if let Some(message) = io.attribute("message") {
                assert!(
                    messages.contains(&local(message)),
                    "message {message} undefined"
                );
            }
        }
    }
    let bindings = names(&wsdl, WSDL_NS, "binding");
    assert_eq!(bindings, ["ErpSalesSoap11", "ErpSalesSoap12"]);
    for binding in wsdl.children_named(WSDL_NS, "binding") {
        assert_eq!(
            local(binding.attribute("type").unwrap()),
            port_type.attribute("name").unwrap()
        );
        assert_eq!(names(binding, WSDL_NS, "operation"), operations);
    }
    let service = wsdl.child(WSDL_NS, "service").unwrap();
    for port in service.children_named(WSDL_NS, "port") {
        assert!(bindings.contains(&local(port.attribute("binding").unwrap())));
    }
}

#[test]
fn requests_built_by_the_client_validate() {
    for version in [SoapVersion::V11, SoapVersion::V12] {
        let client = ErpClient::new(ErpClientConfig {
            soap_version: version,
            ..ErpClientConfig::default()
        })
        .unwrap();
        let request = client.build_request(
            &GetSalesRequest {
                cursor: tributary_ingest::erp::model::encode_cursor(17),
                page_size: 100,
            }
            .to_xml(),
        );
        assert_valid(&payload_of(&request), "get-sales-request");
        let request = client.build_request(
            &GetSaleRequest {
                sale_id: "ERP-000001".into(),
            }
            .to_xml(),
        );
        assert_valid(&payload_of(&request), "get-sale-request");
        let (ok, out) = {
            let dir = scratch("envelope");
            let file = dir.join("envelope.xml");
            std::fs::write(&file, &request).unwrap();
            xmllint(&["--noout", "--nonet", file.to_str().unwrap()])
        };
        assert!(ok, "the envelope is not well-formed:\n{out}");
    }
}

#[tokio::test]
async fn simulator_responses_and_faults_validate() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let simulator = Simulator::new(
        ErpSimConfig {
            initial_changes: 60,
            ..ErpSimConfig::default()
        },
        Arc::new(SystemClock),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(sim::serve(listener, simulator, shutdown.clone()));
    let endpoint = format!("{base}/ws/sales");
    let client = ErpClient::new(ErpClientConfig {
        endpoint: endpoint.clone(),
        ..ErpClientConfig::default()
    })
    .unwrap();
    let http = reqwest::Client::new();
    let post = |payload: String| {
        let envelope = client.build_request(&payload);
        let http = http.clone();
        let endpoint = endpoint.clone();
        async move {
            http.post(endpoint)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"urn:tributary:erp:sales:v1/GetSales\"")
                .body(envelope)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let page = post(
        GetSalesRequest {
            cursor: String::new(),
            page_size: 60,
        }
        .to_xml(),
    )
    .await;
    let payload = payload_of(&page);
    assert!(
        payload.contains("<cancellation>"),
        "the seeded page has a cancellation"
    );
    assert_valid(&payload, "get-sales-response");
    let sale = post(
        GetSaleRequest {
            sale_id: "ERP-000001".into(),
        }
        .to_xml(),
    )
    .await;
    assert_valid(&payload_of(&sale), "get-sale-response");
    let fault = post(
        GetSaleRequest {
            sale_id: "ERP-404".into(),
        }
        .to_xml(),
    )
    .await;
    let root = xml::parse(fault.as_bytes(), &XmlLimits::default()).unwrap();
    let detail = soap::open_envelope(root)
        .unwrap()
        .payload
        .children
        .into_iter()
        .find(|c| c.local == "detail")
        .expect("a SOAP 1.1 fault detail")
        .children
        .remove(0);
    assert_valid(&fault[detail.span.clone()], "erp-fault-detail");

    let served = http
        .get(format!("{base}/ws/sales?wsdl"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = scratch("served");
    std::fs::write(dir.join("served.wsdl"), served).unwrap();
    let (ok, out) = xmllint(&[
        "--noout",
        "--nonet",
        dir.join("served.wsdl").to_str().unwrap(),
    ]);
    assert!(ok, "the served WSDL is not well-formed:\n{out}");
    shutdown.cancel();
}
