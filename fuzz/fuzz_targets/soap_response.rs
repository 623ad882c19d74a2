//! The ERP's SOAP answers: the bounded XML parser, the envelope, faults and the `GetSales`
//! page. Whatever the bytes, each step answers a value or an error; never a panic, and the
//! payload's text is always a slice of the document.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_ingest::erp::model::GetSalesPage;
use tributary_ingest::erp::soap::{open_envelope, payload_text, read_fault};
use tributary_ingest::erp::xml::{XmlLimits, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(root) = parse(data, &XmlLimits::default()) else {
        return;
    };
    let Ok(envelope) = open_envelope(root) else {
        return;
    };
    let _ = read_fault(envelope.version, &envelope.payload);
    let document = String::from_utf8_lossy(data);
    let payload = payload_text(&document, &envelope);
    assert!(payload.len() <= document.len());
    let _ = GetSalesPage::from_element(&envelope.payload, &document);
});
