//! The legacy ERP source: a SOAP 1.1/1.2 service with a WSDL, paged by cursor and secured by
//! WS-Security UsernameToken — its client (the WS ingestor's poller) and its simulator.
//!
//! ```text
//!  ErpPoller::poll_page(cursor)
//!     └─ ErpClient::get_sales ── sign (wssec) ── envelope (soap) ── HTTP POST ──► ERP /ws/sales
//!                              ◄─ safe parse (xml) ── fault? (soap, error) ── payload (model)
//!     └─ change → SaleEvent / RejectedRecord (poller) + next cursor to persist
//!  ErpIngestor (ingestor): page + next cursor in one Kafka transaction, metrics, backoff
//! ```
//!
//! The pure parts (XML safety, envelopes, faults, the digest, payloads, the mapping to
//! [`tributary_common::sale_event::SaleEvent`]) are plain functions tested without a server;
//! [`sim`] is the peer for integration tests and the demo.

pub mod client;
pub mod config;
pub mod error;
pub mod ingestor;
pub mod lineage;
pub mod metrics;
pub mod model;
pub mod poller;
pub mod sim;
pub mod soap;
pub mod wssec;
pub mod xml;

pub use client::{CallInfo, ErpClient, Operation, Response};
pub use config::{ErpClientConfig, ErpIngestConfig, ErpSimConfig, ErpTopics, RetrySettings};
pub use error::ErpError;
pub use ingestor::{ErpIngestError, ErpIngestor, ErpProgress};
pub use metrics::ErpMetrics;
pub use poller::{ErpPoller, Page};
pub use soap::SoapVersion;
pub use xml::{XmlError, XmlLimits};

/// The WSDL as shipped in `ingest/wsdl/` (the simulator serves it with its own address).
pub const WSDL: &str = include_str!("../../wsdl/erp-sales.wsdl");
/// The XSD of the messages, as shipped in `ingest/wsdl/`.
pub const XSD: &str = include_str!("../../wsdl/erp-sales.xsd");
/// The `soap:address` written in the shipped WSDL; the simulator replaces it with its own.
pub const WSDL_ADDRESS: &str = "http://127.0.0.1:8088/ws/sales";
/// The XSD's `schemaLocation` in the shipped WSDL (next to it on disk); the simulator serves
/// it as `sales?xsd=1`, relative to `/ws/sales?wsdl`.
pub const WSDL_XSD_LOCATION: &str = "erp-sales.xsd";
