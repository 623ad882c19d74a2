//! The ERP's messages (the XSD's types) as Rust values, written and read as XML.
//!
//! Every payload element declares the target namespace itself (as the default namespace), so a
//! payload cut out of its envelope is still a valid document for the XSD.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::soap::TNS;
use super::xml::{Element, XmlWriter};

/// One version of a sale as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpSale {
    /// The ERP's sale id.
    pub sale_id: String,
    /// The ERP's own revision counter of this sale (1 for the first version).
    pub revision: u32,
    /// The salesman's code (`salesman.code` in salesdb), which may not be known there yet.
    pub salesman_code: String,
    /// City name, as the ERP spells it.
    pub city_name: String,
    /// City state.
    pub city_state: String,
    /// Amount, two fraction digits.
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// When the sale happened.
    pub sold_at: DateTime<Utc>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A sale was created or corrected; this is its new version.
    Upsert(ErpSale),
    /// A sale was cancelled.
    Cancel {
        /// The cancelled sale.
        sale_id: String,
        /// Why, if the ERP says.
        reason: Option<String>,
    },
}

/// One entry of the ERP's change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpChange {
    /// The ERP's change sequence number: strictly increasing, no reuse.
    pub sequence: i64,
    /// When the change was made in the ERP.
    pub changed_at: DateTime<Utc>,
    /// What changed.
    pub kind: ChangeKind,
}

impl ErpChange {
    /// The sale the change is about.
    pub fn sale_id(&self) -> &str {
        match &self.kind {
            ChangeKind::Upsert(sale) => &sale.sale_id,
            ChangeKind::Cancel { sale_id, .. } => sale_id,
        }
    }
}

/// A `change` element that could not be read, kept whole for the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedChange {
    /// Machine-readable class (`missing_field`, `bad_amount`, `bad_timestamp`, …).
    pub kind: &'static str,
    /// What is wrong, naming the field and value.
    pub reason: String,
    /// The `change` element exactly as received.
    pub raw: String,
}

/// `GetSales` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSalesRequest {
    /// Where to continue; empty for the start of the log.
    pub cursor: String,
    /// Most changes wanted.
    pub page_size: u32,
}

/// `GetSales` response as read by the client: unreadable changes are kept as rejections so a
/// bad record never blocks the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSalesPage {
    /// The changes in sequence order.
    pub changes: Vec<Result<ErpChange, RejectedChange>>,
    /// The cursor to ask with next (the same as requested if the page is empty).
    pub next_cursor: String,
    /// Whether more changes were already available when the page was cut.
    pub has_more: bool,
}

/// `GetSale` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSaleRequest {
    /// The sale asked for.
    pub sale_id: String,
}

/// Whether a sale still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleStatus {
    /// Not cancelled.
    Active,
    /// Cancelled.
    Cancelled,
}

/// `GetSale` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRecord {
    /// The sale's latest version.
    pub sale: ErpSale,
    /// Active or cancelled.
    pub status: SaleStatus,
    /// Sequence number of the sale's latest change.
    pub last_sequence: i64,
}

/// Why a payload does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct PayloadError {
    /// Machine-readable class (see [`RejectedChange::kind`]).
    pub kind: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn missing(element: &str, field: &str) -> PayloadError {
    PayloadError {
        kind: "missing_field",
        reason: format!("{element} has no {field}"),
    }
}

fn required<'a>(el: &'a Element, field: &str) -> Result<&'a str, PayloadError> {
    el.child_text(TNS, field)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(&el.local, field))
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, PayloadError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PayloadError {
            kind: "bad_timestamp",
            reason: format!("{field} {text:?} is not a date-time with a time zone: {e}"),
        })
}

fn parse_int<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, PayloadError> {
    text.parse().map_err(|_| PayloadError {
        kind: "bad_number",
        reason: format!("{field} {text:?} is not a valid integer"),
    })
}

fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The only currency an ERP sale may carry (the partner files' default too): the rankings add
/// amounts up as they are, so a sale in another currency is refused as `bad_currency` and
/// dead-lettered, never summed as if it were reais.
pub const CURRENCY: &str = "BRL";

/// The largest amount an ERP sale may carry (1,000,000.00, the partner files' default maximum):
/// above it the sale is refused as `bad_amount` and dead-lettered with the reason, not trusted.
/// An absurd amount would otherwise dominate the rankings, and enough of them overflow any sum.
pub fn max_amount() -> Decimal {
    Decimal::new(100_000_000, 2)
}

impl ErpSale {
    fn write(&self, w: &mut XmlWriter) {
        w.start("sale", &[])
            .element("saleId", &self.sale_id)
            .element("revision", &self.revision.to_string())
            .element("salesmanCode", &self.salesman_code)
            .start("city", &[])
            .element("name", &self.city_name)
            .element("state", &self.city_state)
            .end("city")
            .element("amount", &self.amount.to_string())
            .element("currency", &self.currency)
            .element("soldAt", &time_text(&self.sold_at))
            .end("sale");
    }

    /// Reads a `sale` element.
    pub fn from_element(el: &Element) -> Result<Self, PayloadError> {
        let city = el
            .child(TNS, "city")
            .ok_or_else(|| missing("sale", "city"))?;
        let amount_text = required(el, "amount")?;
        let amount: Decimal = amount_text.parse().map_err(|_| PayloadError {
            kind: "bad_amount",
            reason: format!("amount {amount_text:?} is not a decimal number"),
        })?;
        if amount.scale() > 2 || amount.is_sign_negative() {
            return Err(PayloadError {
                kind: "bad_amount",
                reason: format!(
                    "amount {amount_text:?} must be non-negative with at most two fraction digits"
                ),
            });
        }
        if amount > max_amount() {
            return Err(PayloadError {
                kind: "bad_amount",
                reason: format!(
                    "amount {amount_text:?} is above the maximum of {} (absurd amount)",
                    max_amount()
                ),
            });
        }
        let currency = required(el, "currency")?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(PayloadError {
                kind: "bad_currency",
                reason: format!("currency {currency:?} is not an ISO 4217 code"),
            });
        }
        if currency != CURRENCY {
            return Err(PayloadError {
                kind: "bad_currency",
                reason: format!(
                    "currency {currency:?} is not {CURRENCY:?}, the only currency the rankings add up"
                ),
            });
        }
        Ok(Self {
            sale_id: required(el, "saleId")?.to_string(),
            revision: parse_int("revision", required(el, "revision")?)?,
            salesman_code: required(el, "salesmanCode")?.to_string(),
            city_name: required(city, "name")?.to_string(),
            city_state: required(city, "state")?.to_string(),
            amount,
            currency: currency.to_string(),
            sold_at: parse_time("soldAt", required(el, "soldAt")?)?,
        })
    }
}

impl ErpChange {
    fn write(&self, w: &mut XmlWriter) {
        w.start("change", &[])
            .element("sequence", &self.sequence.to_string())
            .element("changedAt", &time_text(&self.changed_at));
        match &self.kind {
            ChangeKind::Upsert(sale) => sale.write(w),
            ChangeKind::Cancel { sale_id, reason } => {
                w.start("cancellation", &[]).element("saleId", sale_id);
                if let Some(reason) = reason {
                    w.element("reason", reason);
                }
                w.end("cancellation");
            }
        }
        w.end("change");
    }

    /// Reads a `change` element.
    pub fn from_element(el: &Element) -> Result<Self, PayloadError> {
        let sequence = parse_int("sequence", required(el, "sequence")?)?;
        let changed_at = parse_time("changedAt", required(el, "changedAt")?)?;
        let kind = if let Some(sale) = el.child(TNS, "sale") {
            ChangeKind::Upsert(ErpSale::from_element(sale)?)
        } else if let Some(cancel) = el.child(TNS, "cancellation") {
            ChangeKind::Cancel {
                sale_id: required(cancel, "saleId")?.to_string(),
                reason: cancel
                    .child_text(TNS, "reason")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            }
        } else {
            return Err(missing("change", "sale or cancellation"));
        };
        Ok(Self {
            sequence,
            changed_at,
            kind,
        })
    }
}

fn expect_payload(el: &Element, local: &str) -> Result<(), PayloadError> {
    if el.is(TNS, local) {
        Ok(())
    } else {
        Err(PayloadError {
            kind: "unexpected_payload",
            reason: format!("expected {{{TNS}}}{local}, got {}", el.qualified()),
        })
    }
}

impl GetSalesRequest {
    /// The payload element.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::fragment();
        w.start("GetSalesRequest", &[("xmlns", TNS)])
            .element("cursor", &self.cursor)
            .element("pageSize", &self.page_size.to_string())
            .end("GetSalesRequest");
        w.finish()
    }

    /// Reads the payload (service side).
    pub fn from_element(el: &Element) -> Result<Self, PayloadError> {
        expect_payload(el, "GetSalesRequest")?;
        Ok(Self {
            cursor: el.child_text(TNS, "cursor").unwrap_or_default().to_string(),
            page_size: parse_int("pageSize", required(el, "pageSize")?)?,
        })
    }
}

/// Writes a `GetSalesResponse` payload (service side).
pub fn get_sales_response_xml(changes: &[ErpChange], next_cursor: &str, has_more: bool) -> String {
    let mut w = XmlWriter::fragment();
    w.start("GetSalesResponse", &[("xmlns", TNS)]);
    for change in changes {
        change.write(&mut w);
    }
    w.element("nextCursor", next_cursor)
        .element("hasMore", if has_more { "true" } else { "false" })
        .end("GetSalesResponse");
    w.finish()
}

impl GetSalesPage {
    /// Reads a `GetSalesResponse` payload; `document` is the text the element was parsed from,
    /// to keep unreadable changes verbatim.
    pub fn from_element(el: &Element, document: &str) -> Result<Self, PayloadError> {
        expect_payload(el, "GetSalesResponse")?;
        let has_more = match required(el, "hasMore")? {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(PayloadError {
                    kind: "bad_boolean",
                    reason: format!("hasMore {other:?} is not a boolean"),
                });
            }
        };
        let changes = el
            .children_named(TNS, "change")
            .map(|c| {
                ErpChange::from_element(c).map_err(|e| RejectedChange {
                    kind: e.kind,
                    reason: e.reason,
                    raw: document.get(c.span.clone()).unwrap_or_default().to_string(),
                })
            })
            .collect();
        Ok(Self {
            changes,
            next_cursor: required(el, "nextCursor")?.to_string(),
            has_more,
        })
    }
}

impl GetSaleRequest {
    /// The payload element.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::fragment();
        w.start("GetSaleRequest", &[("xmlns", TNS)])
            .element("saleId", &self.sale_id)
            .end("GetSaleRequest");
        w.finish()
    }

    /// Reads the payload (service side).
    pub fn from_element(el: &Element) -> Result<Self, PayloadError> {
        expect_payload(el, "GetSaleRequest")?;
        Ok(Self {
            sale_id: required(el, "saleId")?.to_string(),
        })
    }
}

impl SaleRecord {
    /// The `GetSaleResponse` payload (service side).
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::fragment();
        w.start("GetSaleResponse", &[("xmlns", TNS)]);
        self.sale.write(&mut w);
        w.element(
            "status",
            match self.status {
                SaleStatus::Active => "Active",
                SaleStatus::Cancelled => "Cancelled",
            },
        )
        .element("lastSequence", &self.last_sequence.to_string())
        .end("GetSaleResponse");
        w.finish()
    }

    /// Reads a `GetSaleResponse` payload.
    pub fn from_element(el: &Element) -> Result<Self, PayloadError> {
        expect_payload(el, "GetSaleResponse")?;
        let sale = el
            .child(TNS, "sale")
            .ok_or_else(|| missing("GetSaleResponse", "sale"))?;
        let status = match required(el, "status")? {
            "Active" => SaleStatus::Active,
            "Cancelled" => SaleStatus::Cancelled,
            other => {
                return Err(PayloadError {
                    kind: "bad_status",
                    reason: format!("status {other:?} is neither Active nor Cancelled"),
                });
            }
        };
        Ok(Self {
            sale: ErpSale::from_element(sale)?,
            status,
            last_sequence: parse_int("lastSequence", required(el, "lastSequence")?)?,
        })
    }
}

const CURSOR_TAG: &str = "tributary-erp:v1:";

/// The cursor that continues after change `sequence` (0 = from the start). Opaque to clients:
/// they store it and send it back.
pub fn encode_cursor(sequence: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{sequence}"))
}

/// The sequence a cursor continues after; the empty cursor is the start of the log.
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    if cursor.is_empty() {
        return Some(0);
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(CURSOR_TAG)?
        .parse()
        .ok()
        .filter(|s| *s >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erp::xml::{XmlLimits, parse};

    fn sale() -> ErpSale {
        ErpSale {
            sale_id: "ERP-000001".into(),
            revision: 2,
            salesman_code: "S007".into(),
            city_name: "São Paulo".into(),
            city_state: "SP".into(),
            amount: "1234.50".parse().unwrap(),
            currency: "BRL".into(),
            sold_at: "2026-03-01T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn get_sales_response_round_trips() {
        let changes = vec![
            ErpChange {
                sequence: 7,
                changed_at: "2026-03-02T00:00:00Z".parse().unwrap(),
                kind: ChangeKind::Upsert(sale()),
            },
            ErpChange {
                sequence: 8,
                changed_at: "2026-03-02T00:00:01Z".parse().unwrap(),
                kind: ChangeKind::Cancel {
                    sale_id: "ERP-000001".into(),
                    reason: Some("customer <refund>".into()),
                },
            },
        ];
        let xml = get_sales_response_xml(&changes, &encode_cursor(8), true);
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        let page = GetSalesPage::from_element(&root, &xml).unwrap();
        assert_eq!(
            page.changes,
            changes.into_iter().map(Ok).collect::<Vec<_>>()
        );
        assert_eq!(decode_cursor(&page.next_cursor), Some(8));
        assert!(page.has_more);
    }

    /// An amount that fits Decimal(18,2) but is absurd for a sale (ten of them would overflow a
    /// ranking's sum) is refused with its reason; the changes around it are read.
    #[test]
    fn an_absurd_amount_is_rejected() {
        let sale = |seq: i64, amount: &str| {
            format!(
                "<change><sequence>{seq}</sequence><changedAt>2026-01-01T00:00:00Z</changedAt><sale><saleId>S{seq}</saleId><revision>1</revision><salesmanCode>S001</salesmanCode><city><name>X</name><state>SP</state></city><amount>{amount}</amount><currency>BRL</currency><soldAt>2026-01-01T00:00:00Z</soldAt></sale></change>"
            )
        };
        let xml = format!(
            r#"<GetSalesResponse xmlns="{TNS}">{}{}{}<nextCursor>{}</nextCursor><hasMore>false</hasMore></GetSalesResponse>"#,
            sale(1, "1000000.00"),
            sale(2, "9999999999999999.99"),
            sale(3, "1000000.01"),
            encode_cursor(3)
        );
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        let page = GetSalesPage::from_element(&root, &xml).unwrap();
        assert!(page.changes[0].is_ok());
        for change in &page.changes[1..] {
            let rejected = change.as_ref().unwrap_err();
            assert_eq!(rejected.kind, "bad_amount");
            assert!(
                rejected.reason.contains("above the maximum of 1000000.00"),
                "{}",
                rejected.reason
            );
        }
    }

    /// A sale in another currency would be added to reais as it is: refused, with its reason.
    #[test]
    fn a_sale_in_another_currency_is_rejected() {
        let xml = format!(
            r#"<GetSalesResponse xmlns="{TNS}"><change><sequence>1</sequence><changedAt>2026-01-01T00:00:00Z</changedAt><sale><saleId>A</saleId><revision>1</revision><salesmanCode>S001</salesmanCode><city><name>X</name><state>SP</state></city><amount>12.34</amount><currency>USD</currency><soldAt>2026-01-01T00:00:00Z</soldAt></sale></change><nextCursor>{}</nextCursor><hasMore>false</hasMore></GetSalesResponse>"#,
            encode_cursor(1)
        );
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        let page = GetSalesPage::from_element(&root, &xml).unwrap();
        let rejected = page.changes[0].as_ref().unwrap_err();
        assert_eq!(rejected.kind, "bad_currency");
        assert!(
            rejected.reason.contains("\"USD\" is not \"BRL\""),
            "{}",
            rejected.reason
        );
    }

    #[test]
    fn a_bad_change_is_rejected_alone_and_kept_verbatim() {
        let xml = format!(
            r#"<GetSalesResponse xmlns="{TNS}"><change><sequence>1</sequence><changedAt>2026-01-01T00:00:00Z</changedAt><sale><saleId>A</saleId><revision>1</revision><salesmanCode>S001</salesmanCode><city><name>X</name><state>SP</state></city><amount>12.345</amount><currency>BRL</currency><soldAt>2026-01-01T00:00:00Z</soldAt></sale></change><change><sequence>2</sequence><changedAt>2026-01-01T00:00:00Z</changedAt><cancellation><saleId>B</saleId></cancellation></change><nextCursor>{}</nextCursor><hasMore>false</hasMore></GetSalesResponse>"#,
            encode_cursor(2)
        );
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        let page = GetSalesPage::from_element(&root, &xml).unwrap();
        let rejected = page.changes[0].as_ref().unwrap_err();
        assert_eq!(rejected.kind, "bad_amount");
        assert!(
            rejected.raw.starts_with("<change><sequence>1<"),
            "{}",
            rejected.raw
        );
        assert!(rejected.raw.ends_with("</change>"));
        assert_eq!(page.changes[1].as_ref().unwrap().sale_id(), "B");
    }

    #[test]
    fn requests_round_trip() {
        let req = GetSalesRequest {
            cursor: encode_cursor(3),
            page_size: 50,
        };
        let xml = req.to_xml();
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        assert_eq!(GetSalesRequest::from_element(&root).unwrap(), req);
        let record = SaleRecord {
            sale: sale(),
            status: SaleStatus::Cancelled,
            last_sequence: 9,
        };
        let xml = record.to_xml();
        let root = parse(xml.as_bytes(), &XmlLimits::default()).unwrap();
        assert_eq!(SaleRecord::from_element(&root).unwrap(), record);
    }

    #[test]
    fn cursors_are_opaque_and_checked() {
        assert_eq!(decode_cursor(""), Some(0));
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("42"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("other:1")), None);
    }
}
