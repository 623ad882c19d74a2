//! Safe XML: one parser for everything the ERP client and the simulator read.
//!
//! A SOAP peer is untrusted input. The parser refuses any DOCTYPE (so no DTD, no entity
//! declarations, no external entities: billion-laughs and XXE cannot even start), refuses
//! references to entities other than the five predefined ones, and bounds the message size and
//! the element depth before anything is allocated per element. Each refusal is its own
//! [`XmlError`] variant so callers can count them apart.
//!
//! The result is a small namespace-resolved tree ([`Element`]): SOAP peers may pick any prefix
//! for a namespace, so everything is matched on (namespace URI, local name), never on prefixes.
//! Writing goes through [`XmlWriter`], a thin layer over quick-xml's writer that escapes text
//! and attribute values.

use std::ops::Range;

use quick_xml::{
    Writer,
    escape::resolve_predefined_entity,
    events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event},
    name::ResolveResult,
    reader::NsReader,
};

/// Bounds applied to every document before and while it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the root element is depth 1).
    pub max_depth: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 32,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The document is larger than [`XmlLimits::max_bytes`].
    #[error("xml document refused: {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Bytes seen (at least; reading stops at the limit).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Elements nest deeper than [`XmlLimits::max_depth`].
    #[error("xml document refused: elements nest deeper than the limit of {limit} levels")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// The DOCTYPE names or declares an external entity (`SYSTEM`/`PUBLIC`): an XXE attempt.
    #[error("xml document refused: its DOCTYPE references an external entity or DTD (XXE)")]
    ExternalEntity,
    /// The DOCTYPE declares internal entities (the billion-laughs shape).
    #[error("xml document refused: its DOCTYPE declares entities (entity expansion attack)")]
    EntityDeclaration,
    /// Any other DOCTYPE: SOAP forbids DTDs altogether.
    #[error("xml document refused: DOCTYPE/DTD is not allowed in SOAP messages")]
    Dtd,
    /// A reference to an entity that is not one of XML's five predefined entities.
    #[error("xml document refused: reference to undeclared entity &{name};")]
    UnknownEntity {
        /// The entity name.
        name: String,
    },
    /// Not UTF-8 (SOAP messages here are UTF-8).
    #[error("xml document is not valid UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// Not well-formed XML.
    #[error("xml document is not well-formed at byte {position}: {source}")]
    Malformed {
        /// Byte offset where the parser stopped.
        position: u64,
        /// The parser's error.
        source: quick_xml::Error,
    },
    /// A prefix is used without being declared.
    #[error("xml document uses the undeclared namespace prefix {prefix:?}")]
    UnknownPrefix {
        /// The prefix.
        prefix: String,
    },
    /// The document has no root element.
    #[error("xml document has no root element")]
    Empty,
}

impl XmlError {
    /// Whether this refusal is a deliberate safety refusal (an attack or an oversized message)
    /// rather than plain malformed input. Both are permanent; this is for metrics and logs.
    pub fn is_security_refusal(&self) -> bool {
        matches!(
            self,
            XmlError::TooLarge { .. }
                | XmlError::TooDeep { .. }
                | XmlError::ExternalEntity
                | XmlError::EntityDeclaration
                | XmlError::Dtd
                | XmlError::UnknownEntity { .. }
        )
    }

    /// A short stable label for metrics (`too_large`, `xxe`, …).
    pub fn label(&self) -> &'static str {
        match self {
            XmlError::TooLarge { .. } => "too_large",
            XmlError::TooDeep { .. } => "too_deep",
            XmlError::ExternalEntity => "external_entity",
            XmlError::EntityDeclaration => "entity_declaration",
            XmlError::Dtd => "dtd",
            XmlError::UnknownEntity { .. } => "unknown_entity",
            XmlError::NotUtf8(_) => "not_utf8",
            XmlError::Malformed { .. } => "malformed",
            XmlError::UnknownPrefix { .. } => "unknown_prefix",
            XmlError::Empty => "empty",
        }
    }
}

/// One attribute, namespace resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Namespace URI (`None` for unprefixed attributes).
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Unescaped value.
    pub value: String,
}

/// One element, namespace resolved, with its text and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, if the element is in one.
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Attributes other than namespace declarations.
    pub attributes: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Character data directly inside this element (not its children's), unescaped.
    pub text: String,
    /// Byte range of the element in the parsed document, so a caller can keep the raw
    /// fragment (for a dead letter, say).
    pub span: Range<usize>,
}

impl Element {
    /// Whether this element is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }

    /// The first child `{ns}local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// Every child `{ns}local`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, local))
    }

    /// The text of the first child `{ns}local`, trimmed.
    pub fn child_text(&self, ns: &str, local: &str) -> Option<&str> {
        self.child(ns, local).map(|c| c.text.trim())
    }

    /// The value of the attribute named `local` (any or no namespace).
    pub fn attribute(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.local == local)
            .map(|a| a.value.as_str())
    }

    /// `{ns}local`, for messages.
    pub fn qualified(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
}

/// Parses `input` into a tree after the safety checks described in the module docs.
pub fn parse(input: &[u8], limits: &XmlLimits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: input.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let start_pos = reader.buffer_position() as usize;
        let read = reader.read_resolved_event();
        let (resolved, event) = match read {
            Ok(ok) => ok,
            Err(source) => {
                return Err(XmlError::Malformed {
                    position: reader.error_position(),
                    source,
                });
            }
        };
        let ns = namespace(resolved)?;
        match event {
            Event::DocType(doctype) => return Err(classify_doctype(&doctype)),
            Event::Start(start) => {
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let attributes = attributes_of(&reader, &start)?;
                stack.push(Element {
                    ns,
                    local,
                    attributes,
                    children: Vec::new(),
                    text: String::new(),
                    span: start_pos..start_pos,
                });
            }
            Event::End(_) => {
                // quick-xml checks that end tags match, so the stack cannot be empty here.
                let Some(mut done) = stack.pop() else {
                    return Err(XmlError::Empty);
                };
                done.span.end = reader.buffer_position() as usize;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let decoded = t.decode().map_err(|e| XmlError::Malformed {
                    position: reader.buffer_position(),
                    source: e.into(),
                })?;
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&decoded);
                }
            }
            Event::CData(c) => {
                let decoded = c.decode().map_err(|e| XmlError::Malformed {
                    position: reader.buffer_position(),
                    source: e.into(),
                })?;
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&decoded);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|source| XmlError::Malformed {
                            position: reader.buffer_position(),
                            source,
                        })?
                        .map(String::from)
                } else {
                    let name = String::from_utf8_lossy(&r).into_owned();
                    match resolve_predefined_entity(&name) {
                        Some(s) => Some(s.to_string()),
                        None => return Err(XmlError::UnknownEntity { name }),
                    }
                };
                if let (Some(current), Some(s)) = (stack.last_mut(), resolved) {
                    current.text.push_str(&s);
                }
            }
            Event::Eof => break,
            // The XML declaration, comments and processing instructions carry nothing we read;
            // `expand_empty_elements` turns every `<a/>` into Start + End, so Empty never comes.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::Empty(_) => {}
        }
    }
    root.ok_or(XmlError::Empty)
}

fn namespace(resolved: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match resolved {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(XmlError::UnknownPrefix {
            prefix: String::from_utf8_lossy(&prefix).into_owned(),
        }),
    }
}

fn attributes_of(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
) -> Result<Vec<Attribute>, XmlError> {
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError::Malformed {
            position: reader.buffer_position(),
            source: e.into(),
        })?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(key);
        let ns = namespace(resolved)?;
        // Attribute values may hold entity references too: refuse unknown ones like in text.
        let value = attr.unescape_value().map_err(|source| match source {
            quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(
                _,
                name,
            )) => XmlError::UnknownEntity { name },
            source => XmlError::Malformed {
                position: reader.buffer_position(),
                source,
            },
        })?;
        out.push(Attribute {
            ns,
            local: String::from_utf8_lossy(local.as_ref()).into_owned(),
            value: value.into_owned(),
        });
    }
    Ok(out)
}

fn classify_doctype(doctype: &[u8]) -> XmlError {
    let text = String::from_utf8_lossy(doctype).to_ascii_uppercase();
    if text.contains("SYSTEM") || text.contains("PUBLIC") {
        XmlError::ExternalEntity
    } else if text.contains("<!ENTITY") {
        XmlError::EntityDeclaration
    } else {
        XmlError::Dtd
    }
}

/// Builds a document with escaping handled by quick-xml. Writing into memory cannot fail, so
/// the methods do not return results.
pub struct XmlWriter {
    writer: Writer<Vec<u8>>,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlWriter {
    /// A document starting with `<?xml version="1.0" encoding="UTF-8"?>`.
    pub fn new() -> Self {
        let mut writer = Writer::new(Vec::new());
        write(
            &mut writer,
            Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
        );
        Self { writer }
    }

    /// A fragment without an XML declaration.
    pub fn fragment() -> Self {
        Self {
            writer: Writer::new(Vec::new()),
        }
    }

    /// Opens `<name attr="value" …>`.
    pub fn start(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        let mut start = BytesStart::new(name);
        for (key, value) in attributes {
            start.push_attribute((*key, *value));
        }
        write(&mut self.writer, Event::Start(start));
        self
    }

    /// Closes `</name>`.
    pub fn end(&mut self, name: &str) -> &mut Self {
        write(&mut self.writer, Event::End(BytesEnd::new(name)));
        self
    }

    /// Writes escaped character data.
    pub fn text(&mut self, text: &str) -> &mut Self {
        write(&mut self.writer, Event::Text(BytesText::new(text)));
        self
    }

    /// `<name>text</name>`.
    pub fn element(&mut self, name: &str, text: &str) -> &mut Self {
        self.start(name, &[]).text(text).end(name)
    }

    /// The document as a string.
    pub fn finish(self) -> String {
        // Only `&str` input was written, so the output is UTF-8.
        String::from_utf8_lossy(&self.writer.into_inner()).into_owned()
    }
}

fn write(writer: &mut Writer<Vec<u8>>, event: Event<'_>) {
    if let Err(error) = writer.write_event(event) {
        // A Vec sink has no I/O errors; this is unreachable in practice, so log, don't panic.
        tracing::error!(%error, "writing xml into memory failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> XmlLimits {
        XmlLimits {
            max_bytes: 10_000,
            max_depth: 8,
        }
    }

    #[test]
    fn parses_namespaces_whatever_the_prefix() {
        let doc = br#"<?xml version="1.0"?><x:a xmlns:x="urn:x" xmlns="urn:d" k="v&amp;w"><b>t&lt;1&#33;</b><x:c/></x:a>"#;
        let root = parse(doc, &limits()).unwrap();
        assert!(root.is("urn:x", "a"));
        assert_eq!(root.attribute("k"), Some("v&w"));
        assert_eq!(root.child_text("urn:d", "b"), Some("t<1!"));
        assert!(root.child("urn:x", "c").is_some());
        let b = root.child("urn:d", "b").unwrap();
        assert_eq!(
            &std::str::from_utf8(doc).unwrap()[b.span.clone()],
            "<b>t&lt;1&#33;</b>"
        );
    }

    #[test]
    fn refuses_billion_laughs() {
        let doc = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        assert!(matches!(
            parse(doc, &limits()),
            Err(XmlError::EntityDeclaration)
        ));
    }

    #[test]
    fn refuses_external_entities() {
        let doc = br#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert!(matches!(
            parse(doc, &limits()),
            Err(XmlError::ExternalEntity)
        ));
        let doc = br#"<!DOCTYPE foo SYSTEM "http://evil.example/x.dtd"><foo/>"#;
        assert!(matches!(
            parse(doc, &limits()),
            Err(XmlError::ExternalEntity)
        ));
    }

    #[test]
    fn refuses_any_doctype() {
        assert!(matches!(
            parse(b"<!DOCTYPE foo><foo/>", &limits()),
            Err(XmlError::Dtd)
        ));
    }

    #[test]
    fn refuses_undeclared_entities_in_text_and_attributes() {
        assert!(matches!(
            parse(b"<a>&boom;</a>", &limits()),
            Err(XmlError::UnknownEntity { name }) if name == "boom"
        ));
        assert!(matches!(
            parse(br#"<a b="&boom;"/>"#, &limits()),
            Err(XmlError::UnknownEntity { .. })
        ));
    }

    #[test]
    fn refuses_oversized_and_too_deep_documents() {
        let big = format!("<a>{}</a>", "x".repeat(20_000));
        assert!(matches!(
            parse(big.as_bytes(), &limits()),
            Err(XmlError::TooLarge { limit: 10_000, .. })
        ));
        let deep = format!("{}{}", "<a>".repeat(9), "</a>".repeat(9));
        assert!(matches!(
            parse(deep.as_bytes(), &limits()),
            Err(XmlError::TooDeep { limit: 8 })
        ));
        let ok = format!("{}{}", "<a>".repeat(8), "</a>".repeat(8));
        assert!(parse(ok.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn refuses_malformed_and_unknown_prefixes() {
        assert!(matches!(
            parse(b"<a><b></a>", &limits()),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"<p:a/>", &limits()),
            Err(XmlError::UnknownPrefix { .. })
        ));
        assert!(matches!(parse(b"  ", &limits()), Err(XmlError::Empty)));
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::fragment();
        w.start("a", &[("k", "\"<&>")])
            .element("b", "1 < 2 & 3")
            .end("a");
        let out = w.finish();
        let root = parse(out.as_bytes(), &limits()).unwrap();
        assert_eq!(root.attribute("k"), Some("\"<&>"));
        assert_eq!(root.child_text("", "b"), None, "unnamespaced");
        assert_eq!(root.children[0].text, "1 < 2 & 3");
    }
}
