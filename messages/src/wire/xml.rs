//! A small namespace-aware XML tree built with quick-xml's `NsReader` (DESIGN §9): every
//! element keeps its resolved namespace URI and local name, so prefixes never matter.
//!
//! Hostile input: a DOCTYPE is refused (no DTD, no entity expansion), only the five predefined
//! entities and character references are resolved, depth and element count are bounded,
//! input must be UTF-8.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 20_000;
/// Most attributes (namespace declarations included) accepted on one element: the duplicate
/// check costs quadratic time in their number, so an unbounded count is a CPU attack.
pub const MAX_ATTRIBUTES: usize = 256;

/// A document that is not well-formed XML (or not acceptable: DTD, too deep, not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not well-formed XML: {0}")]
pub struct XmlError(pub String);

/// An attribute with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Namespace URI (`None` = unqualified).
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Unescaped value.
    pub value: String,
}

/// An element: resolved name, attributes (namespace declarations excluded), children and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI (`None` = no namespace).
    pub ns: Option<String>,
    /// Local name.
    pub local: String,
    /// Attributes other than `xmlns` declarations.
    pub attributes: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated character data (text and CDATA) directly inside this element.
    pub text: String,
}

impl Element {
    /// True when this element is `{ns}local`.
    pub fn is(&self, ns: Option<&str>, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == ns
    }

    /// First unqualified child with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.ns.is_none() && c.local == local)
    }

    /// Every unqualified child with this local name.
    pub fn children_named<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.ns.is_none() && c.local == local)
    }

    /// Text of an unqualified child.
    pub fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local).map(|c| c.text.as_str())
    }
}

fn err(e: impl std::fmt::Display) -> XmlError {
    XmlError(e.to_string())
}

/// The text of an entity or character reference: the five predefined entities and references
/// to XML 1.0 characters; anything else is refused (no DTD, so no other entity exists). Shared
/// by every reader of outside XML (this tree, the reporting-flow and bank-statement streams).
pub(crate) fn general_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<String, XmlError> {
    Ok(match r.resolve_char_ref().map_err(err)? {
        Some(c) if is_xml_char(c) => c.to_string(),
        Some(c) => {
            return Err(XmlError(format!(
                "character reference to U+{:04X}, not allowed in XML 1.0",
                u32::from(c)
            )));
        }
        None => match r.decode().map_err(err)?.as_ref() {
            "amp" => "&".into(),
            "lt" => "<".into(),
            "gt" => ">".into(),
            "apos" => "'".into(),
            "quot" => "\"".into(),
            other => {
                return Err(XmlError(format!("undefined entity &{other};")));
            }
        },
    })
}

fn resolved_ns(r: &ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(
            std::str::from_utf8(ns.as_ref()).map_err(err)?.to_string(),
        )),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(XmlError(format!(
            "undeclared namespace prefix {:?}",
            String::from_utf8_lossy(p)
        ))),
    }
}

/// Parses a whole document into its root element.
///
/// Errors: [`XmlError`] for malformed XML, a DOCTYPE, unknown entities, undeclared prefixes,
/// non-UTF-8 input, more than [`MAX_DEPTH`] levels or [`MAX_ELEMENTS`] elements, text or
/// a second element outside the root.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(input).map_err(|_| XmlError("input is not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
        return Err(XmlError(format!(
            "character U+{:04X} is not allowed in XML 1.0",
            u32::from(c)
        )));
    }
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(XmlError("content after the root element".into()));
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError(format!("more than {MAX_ELEMENTS} elements")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!("nesting deeper than {MAX_DEPTH}")));
                }
                let ns = resolved_ns(&ns)?;
                check_qname(e.name().as_ref())?;
                let local = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(err)?
                    .to_string();
                let mut attributes = Vec::new();
                for (i, a) in e.attributes().enumerate() {
                    if i >= MAX_ATTRIBUTES {
                        return Err(XmlError(format!(
                            "more than {MAX_ATTRIBUTES} attributes on one element"
                        )));
                    }
                    let a = a.map_err(err)?;
                    let key = a.key;
                    check_qname(key.as_ref())?;
                    if a.value.contains(&b'<') {
                        return Err(XmlError("'<' in an attribute value".into()));
                    }
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (ans, alocal) = reader.resolve_attribute(key);
                    let ans = resolved_ns(&ans)?;
                    let value = a.unescape_value().map_err(err)?.into_owned();
                    attributes.push(Attribute {
                        ns: ans,
                        local: std::str::from_utf8(alocal.as_ref())
                            .map_err(err)?
                            .to_string(),
                        value,
                    });
                }
                let el = Element {
                    ns,
                    local,
                    attributes,
                    children: Vec::new(),
                    text: String::new(),
                };
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError("unexpected end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            // XML 1.0 §2.11: CR LF and lone CR are read as LF (char references excepted)
            Event::Text(t) => {
                // XML 1.0 §2.4: `]]>` may not appear in character data
                if t.windows(3).any(|w| w == b"]]>") {
                    return Err(XmlError("']]>' in character data".into()));
                }
                let s = t.xml10_content().map_err(err)?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = t.xml10_content().map_err(err)?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let c = general_ref(&r)?;
                push_text(&mut stack, &c)?;
            }
            Event::DocType(_) => {
                return Err(XmlError("DOCTYPE declarations are not accepted".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("unexpected end of document".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

/// XML 1.0 `NameStartChar` (§2.3), colon excluded (namespaces: it separates the prefix).
fn is_name_start(c: char) -> bool {
    matches!(c, 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar` (§2.3), colon excluded.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A namespace-well-formed qualified name: `NCName` or `NCName:NCName`.
fn check_qname(raw: &[u8]) -> Result<(), XmlError> {
    let name = std::str::from_utf8(raw).map_err(err)?;
    let ok = name.split(':').count() <= 2
        && name.split(':').all(|part| {
            let mut cs = part.chars();
            cs.next().is_some_and(is_name_start) && cs.all(is_name_char)
        });
    if ok {
        Ok(())
    } else {
        Err(XmlError(format!("{name:?} is not a valid XML name")))
    }
}

/// XML 1.0 `Char` (§2.2): tab, LF, CR and U+0020.. except surrogates, U+FFFE and U+FFFF.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn push_text(stack: &mut [Element], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError("text outside the root element".into())),
    }
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// Escapes text for element content and attribute values. A character XML 1.0 cannot carry
/// (a control character echoed from a malformed request, say) becomes U+FFFD, so what we
/// write is always well-formed.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        return quick_xml::escape::escape(s);
    }
    let kept: String = s
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    std::borrow::Cow::Owned(quick_xml::escape::escape(&kept).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_never_writes_what_xml_cannot_carry() {
        // found by the fuzz target `archivio_request`: a control character echoed from a
        // request's encoding label made the SOAP fault ill-formed
        let text = escape("a\u{2}<b>\u{FFFF}\t\u{1F600}");
        assert_eq!(text, "a\u{FFFD}&lt;b&gt;\u{FFFD}\t\u{1F600}");
        let doc = format!("<x>{text}</x>");
        assert!(parse(doc.as_bytes()).is_ok());
        assert_eq!(escape("plain & simple"), "plain &amp; simple");
    }

    #[test]
    fn namespaces_resolve_whatever_the_prefix() {
        let a =
            parse(br#"<a:x xmlns:a="urn:n"><y>1 &amp; &#50;</y><![CDATA[<z>]]></a:x>"#).unwrap();
        let b = parse(br#"<x xmlns="urn:n"><y xmlns="">1 &amp; 2</y>&lt;z&gt;</x>"#).unwrap();
        assert!(a.is(Some("urn:n"), "x") && b.is(Some("urn:n"), "x"));
        assert_eq!(a.child_text("y"), Some("1 & 2"));
        assert_eq!(b.child_text("y"), Some("1 & 2"));
        assert_eq!(a.text, "<z>");
        assert_eq!(b.text, "<z>");
        // a child under a default namespace is qualified
        let c = parse(br#"<x xmlns="urn:n"><y>1</y></x>"#).unwrap();
        assert!(c.child("y").is_none());
    }

    #[test]
    fn line_ends_are_normalised_but_char_references_kept() {
        let e = parse(b"<x>a\r\nb\rc&#13;<![CDATA[d\r\n]]></x>").unwrap();
        assert_eq!(e.text, "a\nb\nc\rd\n");
        // DEL and non-BMP characters are legal XML characters
        assert_eq!(
            parse("<x>\u{7f}\u{1F600}</x>".as_bytes()).unwrap().text,
            "\u{7f}\u{1F600}"
        );
    }

    #[test]
    fn an_element_with_too_many_attributes_is_refused_quickly() {
        let mut doc = String::from("<a");
        for i in 0..50_000 {
            doc.push_str(&format!(" a{i}=\"x\""));
        }
        doc.push_str("/>");
        let started = std::time::Instant::now();
        let e = parse(doc.as_bytes()).unwrap_err();
        assert!(e.0.contains("attributes"), "{e}");
        // a finding, not a timing assertion: print it
        println!("refused in {:?}", started.elapsed());
        let mut ok = String::from("<a");
        for i in 0..MAX_ATTRIBUTES {
            ok.push_str(&format!(" a{i}=\"x\""));
        }
        ok.push_str("/>");
        assert_eq!(
            parse(ok.as_bytes()).unwrap().attributes.len(),
            MAX_ATTRIBUTES
        );
    }

    #[test]
    fn hostile_documents_are_refused() {
        for bad in [
            &br#"<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>"#[..],
            b"<x>&e;</x>",
            b"<x><y></x>",
            b"<p:x/>",
            b"<x/><y/>",
            b"plain text",
            b"",
            b"<x>\xff</x>",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        for bad in [
            "<1x/>",
            "<x a:1b='1' xmlns:a='urn:a'/>",
            "<x a='<'/>",
            "<a:b:c xmlns:a='urn:a'/>",
            "<x>a\u{1}</x>",
            "<x>&#1;</x>",
            "<x>&#x0;</x>",
            "<x>\u{FFFF}</x>",
            "<x>&#xFFFE;</x>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
