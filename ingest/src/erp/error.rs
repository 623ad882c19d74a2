//! What can go wrong talking to the ERP, and whether trying again can help.

use std::time::Duration;

use super::model::PayloadError;
use super::soap::{EnvelopeError, ErpFaultCode, FaultClass, SoapFault};
use super::xml::XmlError;

/// An ERP call failed.
#[derive(Debug, thiserror::Error)]
pub enum ErpError {
    /// The HTTP exchange failed (connection refused, reset, timed out): retryable.
    #[error("calling the ERP at {endpoint} failed: {source}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// A non-SOAP HTTP error status: retryable for 408, 429 and 5xx, permanent otherwise.
    #[error("the ERP at {endpoint} answered HTTP {status} without a SOAP fault")]
    HttpStatus {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds, if sent.
        retry_after: Option<Duration>,
    },
    /// The ERP asked us to slow down: retryable after `retry_after`.
    #[error("the ERP throttled the request ({reason}); retry after {retry_after:?}")]
    Throttled {
        /// The fault's reason text.
        reason: String,
        /// The delay asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The credentials were refused (wrong user or password, stale timestamp, replayed
    /// nonce): permanent until someone fixes the configuration or the clock.
    #[error("the ERP refused our credentials: {} ({})", fault.reason, fault.subcode.as_deref().unwrap_or(&fault.code))]
    Authentication {
        /// The fault.
        fault: SoapFault,
    },
    /// Any other SOAP fault: retryable when it blames the service (Server/Receiver).
    #[error("the ERP answered a SOAP fault {} ({}): {}", fault.code, fault.subcode.as_deref().unwrap_or("no subcode"), fault.reason)]
    Fault {
        /// The fault.
        fault: SoapFault,
    },
    /// The response was refused by the safe XML parser (attack, oversized, too deep,
    /// malformed): permanent, and worth an alert.
    #[error("refused the ERP's response: {0}")]
    UnsafeXml(#[from] XmlError),
    /// The response is XML but not a SOAP envelope.
    #[error("the ERP's response is not SOAP: {0}")]
    NotSoap(#[from] EnvelopeError),
    /// The response envelope holds an unexpected payload.
    #[error("the ERP's response does not follow the schema: {0}")]
    Schema(#[from] PayloadError),
    /// The configured endpoint cannot be used.
    #[error("invalid ERP client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl ErpError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ErpError::Transport { .. } | ErpError::Throttled { .. } => true,
            ErpError::HttpStatus { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            ErpError::Fault { fault } => fault.class == FaultClass::Receiver,
            ErpError::Authentication { .. }
            | ErpError::UnsafeXml(_)
            | ErpError::NotSoap(_)
            | ErpError::Schema(_)
            | ErpError::Config { .. } => false,
        }
    }

    /// The delay the ERP asked for before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ErpError::Throttled { retry_after, .. } | ErpError::HttpStatus { retry_after, .. } => {
                *retry_after
            }
            ErpError::Fault { fault } => fault.retry_after,
            _ => None,
        }
    }

    /// A short stable label for metrics: `transport`, `http_status`, `throttled`, `auth`,
    /// `fault`, `xml_<reason>`, `not_soap`, `schema`, `config`.
    pub fn label(&self) -> &'static str {
        match self {
            ErpError::Transport { .. } => "transport",
            ErpError::HttpStatus { .. } => "http_status",
            ErpError::Throttled { .. } => "throttled",
            ErpError::Authentication { .. } => "auth",
            ErpError::Fault { .. } => "fault",
            ErpError::UnsafeXml(e) => match e {
                XmlError::TooLarge { .. } => "xml_too_large",
                XmlError::TooDeep { .. } => "xml_too_deep",
                XmlError::ExternalEntity => "xml_external_entity",
                XmlError::EntityDeclaration => "xml_entity_declaration",
                XmlError::Dtd => "xml_dtd",
                XmlError::UnknownEntity { .. } => "xml_unknown_entity",
                _ => "xml_malformed",
            },
            ErpError::NotSoap(_) => "not_soap",
            ErpError::Schema(_) => "schema",
            ErpError::Config { .. } => "config",
        }
    }

    /// Sorts a SOAP fault into the variant a caller acts on.
    pub fn from_fault(fault: SoapFault) -> Self {
        match fault.erp_code() {
            Some(ErpFaultCode::Throttled) => ErpError::Throttled {
                reason: fault.reason,
                retry_after: fault.retry_after,
            },
            Some(
                ErpFaultCode::FailedAuthentication
                | ErpFaultCode::InvalidSecurity
                | ErpFaultCode::MessageExpired
                | ErpFaultCode::NonceReplayed,
            ) => ErpError::Authentication { fault },
            _ => ErpError::Fault { fault },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(class: FaultClass, subcode: &str) -> SoapFault {
        SoapFault {
            class,
            code: "soap:X".into(),
            subcode: Some(subcode.into()),
            reason: "r".into(),
            retry_after: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn faults_sort_into_retryable_and_permanent() {
        let auth = ErpError::from_fault(fault(FaultClass::Sender, "FailedAuthentication"));
        assert!(matches!(auth, ErpError::Authentication { .. }));
        assert!(!auth.is_retryable());
        let replay = ErpError::from_fault(fault(FaultClass::Sender, "NonceReplayed"));
        assert!(!replay.is_retryable());
        let throttled = ErpError::from_fault(fault(FaultClass::Receiver, "Throttled"));
        assert!(throttled.is_retryable());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
        assert!(ErpError::from_fault(fault(FaultClass::Receiver, "InternalError")).is_retryable());
        assert!(!ErpError::from_fault(fault(FaultClass::Sender, "BadCursor")).is_retryable());
        assert!(!ErpError::UnsafeXml(XmlError::Dtd).is_retryable());
        let status = |status| ErpError::HttpStatus {
            endpoint: "e".into(),
            status,
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(404).is_retryable());
    }
}
