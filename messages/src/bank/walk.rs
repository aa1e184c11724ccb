//! A streaming walk over an XML document by local names (prefixes ignored): the visitor sees
//! every element's opening (its path) and closing (its path and trimmed text). A DOCTYPE is
//! refused, nesting is bounded.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::StatementError;

/// Deepest nesting accepted (CBI envelopes around camt reach about 15).
const MAX_DEPTH: usize = 40;

fn unreadable(e: impl std::fmt::Display) -> StatementError {
    StatementError::Unreadable(e.to_string())
}

/// What the visitor is told.
pub(super) enum Step<'a> {
    /// An element opens (its path includes it).
    Open(&'a [String]),
    /// An element closes, with its trimmed text.
    Close(&'a [String], &'a str),
}

fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// The root element's local name and namespace URI (its prefix's, or the default one).
pub(super) fn root(text: &str) -> Result<(String, String), StatementError> {
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event().map_err(unreadable)? {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let wanted = match name.split_once(':') {
                    Some((p, _)) => format!("xmlns:{p}"),
                    None => "xmlns".to_string(),
                };
                let mut ns = String::new();
                for a in e.attributes().flatten() {
                    if a.key.as_ref() == wanted.as_bytes() {
                        ns = a.unescape_value().map_err(unreadable)?.into_owned();
                    }
                }
                return Ok((local(&e), ns));
            }
            Event::DocType(_) => return Err(unreadable("DOCTYPE declarations are not accepted")),
            Event::Eof => return Err(unreadable("no root element")),
            _ => {}
        }
    }
}

/// Walks the document.
pub(super) fn walk(
    text: &str,
    mut visit: impl FnMut(Step<'_>) -> Result<(), StatementError>,
) -> Result<(), StatementError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    loop {
        match reader.read_event().map_err(unreadable)? {
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(unreadable(format!("nesting deeper than {MAX_DEPTH}")));
                }
                path.push(local(&e));
                buf.clear();
                visit(Step::Open(&path))?;
            }
            Event::Empty(e) => {
                path.push(local(&e));
                visit(Step::Open(&path))?;
                visit(Step::Close(&path, ""))?;
                path.pop();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content().map_err(unreadable)?),
            Event::CData(t) => buf.push_str(&t.xml10_content().map_err(unreadable)?),
            Event::GeneralRef(r) => {
                let c = crate::wire::xml::general_ref(&r).map_err(|e| unreadable(e.0))?;
                buf.push_str(&c);
            }
            Event::End(_) => {
                let value = buf.trim().to_string();
                buf.clear();
                visit(Step::Close(&path, &value))?;
                path.pop();
            }
            Event::DocType(_) => return Err(unreadable("DOCTYPE declarations are not accepted")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if path.is_empty() {
        Ok(())
    } else {
        Err(unreadable("the document ends inside an element"))
    }
}
