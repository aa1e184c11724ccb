//! The simulator's own small XML toolkit: escaping for the templates, a namespace-aware mini DOM
//! for reading station answers, and extraction of the SOAP Body child as a standalone document.
//!
//! Nothing here comes from the platform's codecs (DESIGN §8).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Namespace of the station's wrapper elements (new connectivity).
pub const NS_PA_FOR_NODE: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";
/// Namespace of the nodeForPa wrappers (EC → Node, legacy FdR download).
pub const NS_NODE_FOR_PA: &str = "http://ws.pagamenti.telematici.gov/";
/// Namespace of the digital stamp document carried in `MBDAttachment`.
pub const NS_MARCA_DA_BOLLO: &str = "http://www.agenziaentrate.gov.it/2014/MarcaDaBollo";
/// Namespace of FlussoRiversamento (FdR).
pub const NS_FLUSSO: &str = "http://www.digitpa.gov.it/schemas/2011/Pagamenti/";
/// XML-DSig namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Escapes text content / attribute values: `& < > " '`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all: drop them rather than emit a broken document.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// One element of the mini DOM: namespace (None = unqualified), local name, concatenated text,
/// element children in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Elem {
    /// Namespace URI, `None` when the element is in no namespace.
    pub ns: Option<String>,
    /// Local name (prefix stripped).
    pub name: String,
    /// Direct text content (entities resolved), untrimmed.
    pub text: String,
    /// Element children.
    pub children: Vec<Elem>,
}

impl Elem {
    /// First unqualified child with this local name.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children
            .iter()
            .find(|c| c.ns.is_none() && c.name == name)
    }

    /// All unqualified children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children
            .iter()
            .filter(move |c| c.ns.is_none() && c.name == name)
    }

    /// Trimmed text of the first unqualified child with this name.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// Trimmed text of the element itself.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }

    /// Depth-first search (self included) for elements with this local name, any namespace.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Elem>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.find_all(name, out);
        }
    }
}

fn resolved_ns(res: &ResolveResult<'_>) -> Result<Option<String>, String> {
    match res {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(format!(
            "undeclared namespace prefix {:?}",
            String::from_utf8_lossy(p)
        )),
    }
}

/// Parses a whole document into the mini DOM (namespace-aware; prefixes are never matched).
pub fn parse_document(xml: &str) -> Result<Elem, String> {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    loop {
        let at = reader.buffer_position();
        let (res, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error after byte {at}: {e}"))?;
        match ev {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err("content after the root element".into());
            }
            Event::Start(e) => {
                let ns = resolved_ns(&res)?;
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push(Elem {
                    ns,
                    name,
                    ..Elem::default()
                });
            }
            Event::Empty(e) => {
                let ns = resolved_ns(&res)?;
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let el = Elem {
                    ns,
                    name,
                    ..Elem::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| format!("text: {e}"))?;
                match stack.last_mut() {
                    Some(cur) => cur.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| format!("CDATA: {e}"))?;
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if let Some(ch) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    ch.to_string()
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_string()
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("DOCTYPE not allowed".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// The single element inside `soapenv:Body`, cut out as a standalone document.
#[derive(Debug, Clone)]
pub struct BodyChild {
    /// Namespace URI of the element (None if unqualified).
    pub ns: Option<String>,
    /// Local name, e.g. `paVerifyPaymentNoticeRes`.
    pub local: String,
    /// The element re-serialised as its own document, carrying the namespace declarations in
    /// scope at the original position (Envelope's and Body's), so its meaning is unchanged.
    pub document: String,
}

fn xmlns_decls(e: &quick_xml::events::BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| format!("attribute: {err}"))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            // keep the raw (still escaped) value: it is re-emitted verbatim
            let raw = String::from_utf8_lossy(&a.value).into_owned();
            out.push((key, raw));
        }
    }
    Ok(out)
}

/// Finds the single child of `Envelope/Body` and returns it as a standalone document
/// (the same extraction `examples/validate_examples.py` does). Fails if the document is not a
/// SOAP 1.1 envelope or the Body does not hold exactly one element.
pub fn extract_body_child(xml: &str) -> Result<BodyChild, String> {
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0usize;
    let mut in_scope: Vec<(String, String)> = Vec::new();
    let mut in_body = false;
    let mut found: Option<BodyChild> = None;
    let mut seen_root = false;
    loop {
        let before = usize::try_from(reader.buffer_position()).map_err(|e| e.to_string())?;
        let (res, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error at byte {before}: {e}"))?;
        let ns = match &ev {
            Event::Start(_) | Event::Empty(_) => resolved_ns(&res)?,
            _ => None,
        };
        let (start, is_empty) = match ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            other => {
                match other {
                    Event::End(_) => {
                        if depth == 2 && in_body {
                            in_body = false;
                        }
                        depth = depth.saturating_sub(1);
                    }
                    Event::Text(t)
                        if in_body
                            && depth == 2
                            && !t.xml10_content().is_ok_and(|c| c.trim().is_empty()) =>
                    {
                        return Err("text inside Body".into());
                    }
                    Event::DocType(_) => return Err("DOCTYPE not allowed".into()),
                    Event::Eof => break,
                    _ => {}
                }
                (None, false)
            }
        };
        if let Some(e) = start {
            {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                depth += 1;
                match depth {
                    1 => {
                        if seen_root {
                            return Err("content after the root element".into());
                        }
                        seen_root = true;
                        if ns.as_deref() != Some(NS_SOAP) || local != "Envelope" {
                            return Err(format!(
                                "root is {{{}}}{local}, not a SOAP 1.1 Envelope",
                                ns.unwrap_or_default()
                            ));
                        }
                        in_scope.extend(xmlns_decls(&e)?);
                        if is_empty {
                            return Err("empty Envelope".into());
                        }
                    }
                    2 => {
                        if ns.as_deref() == Some(NS_SOAP) && local == "Body" {
                            if is_empty {
                                return Err("Body must contain exactly one element".into());
                            }
                            in_scope.extend(xmlns_decls(&e)?);
                            in_body = true;
                        } else if !is_empty {
                            let end = e.name().as_ref().to_vec();
                            reader
                                .read_to_end(quick_xml::name::QName(&end))
                                .map_err(|err| format!("XML error: {err}"))?;
                            depth -= 1;
                        } else {
                            depth -= 1;
                        }
                    }
                    3 if in_body => {
                        if found.is_some() {
                            return Err("Body must contain exactly one element".into());
                        }
                        let qname = e.name().as_ref().to_vec();
                        let own = xmlns_decls(&e)?;
                        if !is_empty {
                            reader
                                .read_to_end(quick_xml::name::QName(&qname))
                                .map_err(|err| format!("XML error: {err}"))?;
                        }
                        depth -= 1;
                        let end =
                            usize::try_from(reader.buffer_position()).map_err(|e| e.to_string())?;
                        let slice = xml
                            .get(before..end)
                            .ok_or("body element boundaries are not on character boundaries")?;
                        // later declarations (Body) override earlier ones (Envelope); the child's own win.
                        let mut inject: Vec<(String, String)> = Vec::new();
                        for (k, v) in &in_scope {
                            if own.iter().any(|(ok, _)| ok == k) {
                                continue;
                            }
                            if let Some(slot) = inject.iter_mut().find(|(ik, _)| ik == k) {
                                slot.1 = v.clone();
                            } else {
                                inject.push((k.clone(), v.clone()));
                            }
                        }
                        let cut = 1 + qname.len();
                        let (head, tail) = (
                            slice.get(..cut).ok_or("bad element start")?,
                            slice.get(cut..).ok_or("bad element start")?,
                        );
                        let mut doc = String::with_capacity(slice.len() + 200);
                        doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                        doc.push_str(head);
                        for (k, v) in inject {
                            doc.push(' ');
                            doc.push_str(&k);
                            doc.push_str("=\"");
                            doc.push_str(&v.replace('"', "&quot;"));
                            doc.push('"');
                        }
                        doc.push_str(tail);
                        found = Some(BodyChild {
                            ns,
                            local,
                            document: doc,
                        });
                    }
                    _ => {
                        if is_empty {
                            depth -= 1;
                        }
                    }
                }
            }
        }
    }
    found.ok_or_else(|| "Body must contain exactly one element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:p="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd">
 <s:Header/>
 <s:Body>
  <p:paSendRTRes><outcome>OK</outcome><x>a &amp; b &#65;</x></p:paSendRTRes>
 </s:Body>
</s:Envelope>"#;

    #[test]
    fn extracts_body_child_with_namespaces() {
        let b = extract_body_child(ENV).unwrap();
        assert_eq!(b.local, "paSendRTRes");
        assert_eq!(b.ns.as_deref(), Some(NS_PA_FOR_NODE));
        assert!(b.document.contains("<p:paSendRTRes xmlns:s="));
        assert!(b
            .document
            .contains("xmlns:p=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\""));
        assert!(b.document.ends_with("</p:paSendRTRes>"));
        let dom = parse_document(&b.document).unwrap();
        assert_eq!(dom.text_of("outcome"), Some("OK"));
        assert_eq!(dom.text_of("x"), Some("a & b A"));
    }

    #[test]
    fn rejects_two_children_and_non_soap() {
        let two = ENV.replace(
            "</p:paSendRTRes>",
            "</p:paSendRTRes><p:paSendRTRes><outcome>OK</outcome></p:paSendRTRes>",
        );
        assert!(extract_body_child(&two).is_err());
        assert!(extract_body_child("<a/>").is_err());
        let empty = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
        assert!(extract_body_child(empty).is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\u{1}y"), "xy");
    }
}
