//! SOAP 1.1 and 1.2 envelopes and faults: building and reading them, for the client and the
//! simulator alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::xml::{Element, XmlWriter};

/// Target namespace of the ERP's messages (the WSDL's and XSD's `targetNamespace`).
pub const TNS: &str = "urn:tributary:erp:sales:v1";
/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Which SOAP version a message uses. Both are served on the same endpoint; the content type
/// tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SoapVersion {
    /// SOAP 1.1: `text/xml` plus a `SOAPAction` header.
    #[default]
    V11,
    /// SOAP 1.2: `application/soap+xml` with the action as a content-type parameter.
    V12,
}

impl Serialize for SoapVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            SoapVersion::V11 => "1.1",
            SoapVersion::V12 => "1.2",
        })
    }
}

impl<'de> Deserialize<'de> for SoapVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `TRIBUTARY_ERP__SOAP_VERSION=1.2` arrives as a number, a TOML file gives a string.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Number(n) => format!("{n:.1}"),
        };
        match text.as_str() {
            "1.1" => Ok(SoapVersion::V11),
            "1.2" => Ok(SoapVersion::V12),
            other => Err(serde::de::Error::custom(format!(
                "soap_version must be \"1.1\" or \"1.2\", not {other:?}"
            ))),
        }
    }
}

impl SoapVersion {
    /// The envelope namespace.
    pub fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    /// The `Content-Type` of a message carrying `action` (SOAP 1.2 puts the action there).
    pub fn content_type(self, action: &str) -> String {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8".to_string(),
            SoapVersion::V12 => format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
        }
    }

    /// The version a `Content-Type` announces, if it is a SOAP one.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/xml" => Some(SoapVersion::V11),
            "application/soap+xml" => Some(SoapVersion::V12),
            _ => None,
        }
    }
}

/// The `SOAPAction` / `action` URI of an operation.
pub fn action_uri(operation: &str) -> String {
    format!("{TNS}/{operation}")
}

/// Wraps `header` (already serialised header blocks, may be empty) and `body` (one payload
/// element) in an envelope.
pub fn envelope(version: SoapVersion, header: &str, body: &str) -> String {
    let mut w = XmlWriter::new();
    w.start("soap:Envelope", &[("xmlns:soap", version.envelope_ns())]);
    let mut out = w.finish();
    // The header and body are complete XML fragments produced by XmlWriter; splicing them keeps
    // each fragment self-contained (its own namespace declarations), which lets a receiver
    // validate the payload on its own against the XSD.
    if !header.is_empty() {
        out.push_str("<soap:Header>");
        out.push_str(header);
        out.push_str("</soap:Header>");
    }
    out.push_str("<soap:Body>");
    out.push_str(body);
    out.push_str("</soap:Body></soap:Envelope>");
    out
}

/// What a parsed envelope holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Its SOAP version (from the envelope namespace).
    pub version: SoapVersion,
    /// The `Header` element, if any.
    pub header: Option<Element>,
    /// The first element inside `Body` (the payload or a `Fault`).
    pub payload: Element,
}

/// Why a document is not a usable SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The root is not `Envelope` in a SOAP namespace.
    #[error("not a SOAP envelope: root element is {found}")]
    NotAnEnvelope {
        /// The root's qualified name.
        found: String,
    },
    /// No `Body` or an empty one.
    #[error("SOAP envelope has no Body payload")]
    NoBody,
}

/// Splits a parsed document into header and payload.
pub fn open_envelope(root: Element) -> Result<Envelope, EnvelopeError> {
    let version = if root.is(SOAP11_NS, "Envelope") {
        SoapVersion::V11
    } else if root.is(SOAP12_NS, "Envelope") {
        SoapVersion::V12
    } else {
        return Err(EnvelopeError::NotAnEnvelope {
            found: root.qualified(),
        });
    };
    let ns = version.envelope_ns();
    let mut header = None;
    let mut payload = None;
    for child in root.children {
        if child.is(ns, "Header") {
            header = Some(child);
        } else if child.is(ns, "Body") {
            payload = child.children.into_iter().next();
        }
    }
    Ok(Envelope {
        version,
        header,
        payload: payload.ok_or(EnvelopeError::NoBody)?,
    })
}

/// Who a fault blames, independent of the SOAP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultClass {
    /// 1.1 `Client`, 1.2 `Sender`: the request is wrong; sending it again will not help.
    Sender,
    /// 1.1 `Server`, 1.2 `Receiver`: the service could not answer now; may be retried.
    Receiver,
    /// `VersionMismatch`, `MustUnderstand` or an unknown code.
    Other,
}

/// The ERP's own fault codes, carried as the SOAP 1.2 subcode and in the `ErpFault` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErpFaultCode {
    /// Unknown user or wrong password digest.
    FailedAuthentication,
    /// No or malformed `wsse:Security` header.
    InvalidSecurity,
    /// `wsu:Created` outside the accepted clock skew.
    MessageExpired,
    /// A nonce seen before within the window.
    NonceReplayed,
    /// The request does not follow the schema.
    BadRequest,
    /// The cursor was not issued by this service.
    BadCursor,
    /// `GetSale` for an id that does not exist.
    UnknownSale,
    /// Too many requests; retry after the given delay.
    Throttled,
    /// The service failed.
    InternalError,
}

impl ErpFaultCode {
    /// The code as written in messages (the XSD's `FaultCode` enumeration).
    pub fn as_str(self) -> &'static str {
        match self {
            ErpFaultCode::FailedAuthentication => "FailedAuthentication",
            ErpFaultCode::InvalidSecurity => "InvalidSecurity",
            ErpFaultCode::MessageExpired => "MessageExpired",
            ErpFaultCode::NonceReplayed => "NonceReplayed",
            ErpFaultCode::BadRequest => "BadRequest",
            ErpFaultCode::BadCursor => "BadCursor",
            ErpFaultCode::UnknownSale => "UnknownSale",
            ErpFaultCode::Throttled => "Throttled",
            ErpFaultCode::InternalError => "InternalError",
        }
    }

    /// Parses [`Self::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "FailedAuthentication" => ErpFaultCode::FailedAuthentication,
            "InvalidSecurity" => ErpFaultCode::InvalidSecurity,
            "MessageExpired" => ErpFaultCode::MessageExpired,
            "NonceReplayed" => ErpFaultCode::NonceReplayed,
            "BadRequest" => ErpFaultCode::BadRequest,
            "BadCursor" => ErpFaultCode::BadCursor,
            "UnknownSale" => ErpFaultCode::UnknownSale,
            "Throttled" => ErpFaultCode::Throttled,
            "InternalError" => ErpFaultCode::InternalError,
            _ => return None,
        })
    }

    /// Whose fault it is.
    pub fn class(self) -> FaultClass {
        match self {
            ErpFaultCode::Throttled | ErpFaultCode::InternalError => FaultClass::Receiver,
            _ => FaultClass::Sender,
        }
    }
}

/// A SOAP Fault, as read from either SOAP version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// Who is blamed.
    pub class: FaultClass,
    /// The fault code as written (`soap:Client`, `env:Sender`, …).
    pub code: String,
    /// The most specific code found: the 1.2 subcode, else the `ErpFault` detail code, else the
    /// local name of a non-standard 1.1 fault code (such as `wsse:FailedAuthentication`).
    pub subcode: Option<String>,
    /// The human-readable reason.
    pub reason: String,
    /// The retry delay the service asked for (the `ErpFault/retryAfterSeconds` detail).
    pub retry_after: Option<Duration>,
}

impl SoapFault {
    /// The ERP fault code, if the subcode is one.
    pub fn erp_code(&self) -> Option<ErpFaultCode> {
        self.subcode.as_deref().and_then(ErpFaultCode::parse)
    }
}

/// Reads a `Fault` payload; `None` if `payload` is not a fault.
pub fn read_fault(version: SoapVersion, payload: &Element) -> Option<SoapFault> {
    let ns = version.envelope_ns();
    if !payload.is(ns, "Fault") {
        return None;
    }
    let (code, mut subcode, reason, detail) = match version {
        // SOAP 1.1 children are unqualified.
        SoapVersion::V11 => (
            payload.child_text_any("faultcode").unwrap_or_default(),
            None,
            payload.child_text_any("faultstring").unwrap_or_default(),
            payload.children.iter().find(|c| c.local == "detail"),
        ),
        SoapVersion::V12 => {
            let code = payload.child(ns, "Code");
            let value = code
                .and_then(|c| c.child_text(ns, "Value"))
                .unwrap_or_default();
            let sub = code
                .and_then(|c| c.child(ns, "Subcode"))
                .and_then(|s| s.child_text(ns, "Value"))
                .map(|v| local_part(v).to_string());
            let reason = payload
                .child(ns, "Reason")
                .and_then(|r| r.child_text(ns, "Text"))
                .unwrap_or_default();
            (
                value.to_string(),
                sub,
                reason.to_string(),
                payload.child(ns, "Detail"),
            )
        }
    };
    let local = local_part(&code).to_string();
    let class = match local.split('.').next().unwrap_or_default() {
        "Client" | "Sender" => FaultClass::Sender,
        "Server" | "Receiver" => FaultClass::Receiver,
        _ => FaultClass::Other,
    };
    let erp_detail = detail.and_then(|d| d.child(TNS, "ErpFault"));
    if subcode.is_none() {
        subcode = erp_detail
            .and_then(|d| d.child_text(TNS, "code"))
            .map(str::to_string);
    }
    if subcode.is_none() && class == FaultClass::Other {
        // WS-Security faults (wsse:FailedAuthentication, …) are 1.1 fault codes of their own.
        subcode = Some(local.clone());
    }
    let retry_after = erp_detail
        .and_then(|d| d.child_text(TNS, "retryAfterSeconds"))
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    // A WS-Security fault code blames the sender even in a 1.1 message.
    let class = match (class, subcode.as_deref().and_then(ErpFaultCode::parse)) {
        (FaultClass::Other, Some(code)) => code.class(),
        (class, _) => class,
    };
    Some(SoapFault {
        class,
        code,
        subcode,
        reason: reason.to_string(),
        retry_after,
    })
}

fn local_part(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

impl Element {
    /// Text of the first child named `local`, in any or no namespace (SOAP 1.1 fault children
    /// are unqualified, but some stacks qualify them).
    fn child_text_any(&self, local: &str) -> Option<String> {
        self.children
            .iter()
            .find(|c| c.local == local)
            .map(|c| c.text.trim().to_string())
    }
}

/// Builds a complete fault envelope (simulator side).
pub fn fault_envelope(
    version: SoapVersion,
    code: ErpFaultCode,
    message: &str,
    retry_after: Option<Duration>,
) -> String {
    let mut detail = XmlWriter::fragment();
    detail
        .start("tns:ErpFault", &[("xmlns:tns", TNS)])
        .element("tns:code", code.as_str())
        .element("tns:message", message);
    if let Some(delay) = retry_after {
        detail.element("tns:retryAfterSeconds", &delay.as_secs().to_string());
    }
    detail.end("tns:ErpFault");
    let detail = detail.finish();

    let mut w = XmlWriter::fragment();
    match version {
        SoapVersion::V11 => {
            let faultcode = match code.class() {
                FaultClass::Receiver => "soap:Server",
                _ => "soap:Client",
            };
            w.start("soap:Fault", &[])
                .element("faultcode", faultcode)
                .element("faultstring", message)
                .start("detail", &[]);
            let mut out = w.finish();
            out.push_str(&detail);
            out.push_str("</detail></soap:Fault>");
            envelope(version, "", &out)
        }
        SoapVersion::V12 => {
            let value = match code.class() {
                FaultClass::Receiver => "soap:Receiver",
                _ => "soap:Sender",
            };
            w.start("soap:Fault", &[("xmlns:tns", TNS)])
                .start("soap:Code", &[])
                .element("soap:Value", value)
                .start("soap:Subcode", &[])
                .element("soap:Value", &format!("tns:{}", code.as_str()))
                .end("soap:Subcode")
                .end("soap:Code")
                .start("soap:Reason", &[])
                .start("soap:Text", &[("xml:lang", "en")])
                .text(message)
                .end("soap:Text")
                .end("soap:Reason")
                .start("soap:Detail", &[]);
            let mut out = w.finish();
            out.push_str(&detail);
            out.push_str("</soap:Detail></soap:Fault>");
            envelope(version, "", &out)
        }
    }
}

/// The exact text of the `Body`'s payload element in `document`, for keeping the raw message
/// and for validating the payload alone against the XSD.
pub fn payload_text<'d>(document: &'d str, envelope: &Envelope) -> &'d str {
    document
        .get(envelope.payload.span.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erp::xml::{XmlLimits, parse};

    fn fault_of(doc: &str) -> SoapFault {
        let env = open_envelope(parse(doc.as_bytes(), &XmlLimits::default()).unwrap()).unwrap();
        read_fault(env.version, &env.payload).expect("a fault")
    }

    #[test]
    fn faults_round_trip_in_both_versions() {
        for version in [SoapVersion::V11, SoapVersion::V12] {
            let doc = fault_envelope(
                version,
                ErpFaultCode::Throttled,
                "slow down",
                Some(Duration::from_secs(3)),
            );
            let fault = fault_of(&doc);
            assert_eq!(fault.class, FaultClass::Receiver, "{version:?}");
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::Throttled));
            assert_eq!(fault.retry_after, Some(Duration::from_secs(3)));
            assert_eq!(fault.reason, "slow down");

            let doc = fault_envelope(version, ErpFaultCode::FailedAuthentication, "no", None);
            let fault = fault_of(&doc);
            assert_eq!(fault.class, FaultClass::Sender);
            assert_eq!(fault.erp_code(), Some(ErpFaultCode::FailedAuthentication));
            assert_eq!(fault.retry_after, None);
        }
    }

    #[test]
    fn reads_a_foreign_ws_security_fault() {
        let doc = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
            <faultcode xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">wsse:FailedAuthentication</faultcode>
            <faultstring>The security token could not be authenticated or authorized</faultstring>
            </s:Fault></s:Body></s:Envelope>"#;
        let fault = fault_of(doc);
        assert_eq!(fault.class, FaultClass::Sender);
        assert_eq!(fault.erp_code(), Some(ErpFaultCode::FailedAuthentication));
    }

    #[test]
    fn content_types_name_the_version() {
        assert_eq!(
            SoapVersion::from_content_type("text/xml; charset=utf-8"),
            Some(SoapVersion::V11)
        );
        assert_eq!(
            SoapVersion::from_content_type(&SoapVersion::V12.content_type("a")),
            Some(SoapVersion::V12)
        );
        assert_eq!(SoapVersion::from_content_type("application/json"), None);
    }

    #[test]
    fn refuses_non_envelopes() {
        let root = parse(b"<a/>", &XmlLimits::default()).unwrap();
        assert!(matches!(
            open_envelope(root),
            Err(EnvelopeError::NotAnEnvelope { .. })
        ));
        let root = parse(
            br#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#,
            &XmlLimits::default(),
        )
        .unwrap();
        assert_eq!(open_envelope(root), Err(EnvelopeError::NoBody));
    }
}
