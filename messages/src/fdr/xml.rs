//! FlussoRiversamento XML (SPEC §9.2), streamed: a 100 000-row flow is read without building a
//! tree. Elements are matched by local name (any prefix, the default namespace or none), both
//! schema versions are accepted (1.0.4 has code 3, 1.0.5 has 4 and 8: no single XSD is
//! enforced), text is trimmed (tabs, CRLF). The input may also be the flow in base64 (as
//! `nodoChiediFlussoRendicontazione` returned it) or that whole SOAP answer.
//!
//! Hostile input: a DOCTYPE is refused, only the predefined entities and character references
//! are resolved, nesting is bounded.

use base64::Engine;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::{
    business_day, cents_of, Flow, FlowError, FlowHeader, FlowRow, PayStatus, RowProblem, SenderKind,
};

/// Deepest nesting accepted (a flow needs 4, a SOAP envelope around it 4 more).
const MAX_DEPTH: usize = 16;

/// Reads a flow from XML bytes, base64 of them, or a `nodoChiediFlussoRendicontazione`
/// answer carrying them.
///
/// # Errors
/// [`FlowError`] when the input is not a flow at all; odd rows and totals are problems and
/// flags of the [`Flow`], never errors.
pub fn decode(input: &[u8]) -> Result<Flow, FlowError> {
    decode_nested(input, 0)
}

fn decode_nested(input: &[u8], depth: u8) -> Result<Flow, FlowError> {
    let text = std::str::from_utf8(input)
        .map_err(|_| FlowError::Unreadable("the file is not UTF-8 text".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
    if !text.starts_with('<') {
        if depth > 1 {
            return Err(FlowError::Unreadable("neither XML nor base64".into()));
        }
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| FlowError::Unreadable("neither XML nor base64 of XML".into()))?;
        return decode_nested(&bytes, depth + 1);
    }
    match read(text)? {
        Parsed::Flow(flow) => Ok(*flow),
        Parsed::Wrapped(b64) if depth <= 1 => decode_nested(b64.as_bytes(), depth + 1),
        Parsed::Wrapped(_) => Err(FlowError::Unreadable(
            "a flow wrapped too many times".into(),
        )),
    }
}

enum Parsed {
    Flow(Box<Flow>),
    /// The text of `xmlRendicontazione` of a SOAP answer.
    Wrapped(String),
}

#[derive(Default)]
struct RowDraft {
    iuv: String,
    iur: String,
    index: Option<String>,
    amount: Option<String>,
    code: Option<String>,
    date: Option<String>,
}

#[derive(Default)]
struct HeaderDraft {
    flow_id: String,
    flow_date: String,
    regulation: String,
    regulation_date: Option<String>,
    sender_kind: String,
    sender_id: String,
    sender_name: Option<String>,
    bic: Option<String>,
    receiver_id: String,
    receiver_name: Option<String>,
    count: Option<String>,
    total: Option<String>,
}

fn unreadable(e: impl std::fmt::Display) -> FlowError {
    FlowError::Unreadable(e.to_string())
}

fn read(text: &str) -> Result<Parsed, FlowError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut header = HeaderDraft::default();
    let mut rows: Vec<FlowRow> = Vec::new();
    let mut row: Option<RowDraft> = None;
    let mut root: Option<String> = None;
    loop {
        match reader.read_event().map_err(unreadable)? {
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(unreadable(format!("nesting deeper than {MAX_DEPTH}")));
                }
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    root = Some(local.clone());
                    if local != "FlussoRiversamento" && local != "Envelope" {
                        return Err(FlowError::NotAFlow(local));
                    }
                }
                if path.len() == 1 && local == "datiSingoliPagamenti" && is_flow(&root) {
                    row = Some(RowDraft::default());
                }
                path.push(local);
                buf.clear();
            }
            Event::Empty(e) => {
                if path.is_empty() {
                    let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    return Err(FlowError::NotAFlow(local));
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(unreadable)?;
                buf.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.xml10_content().map_err(unreadable)?;
                buf.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let c = crate::wire::xml::general_ref(&r).map_err(|e| unreadable(e.0))?;
                buf.push_str(&c);
            }
            Event::End(_) => {
                let value = buf.trim().to_string();
                buf.clear();
                if !is_flow(&root) {
                    if path.last().map(String::as_str) == Some("xmlRendicontazione") {
                        return Ok(Parsed::Wrapped(value));
                    }
                } else {
                    let inner: Vec<&str> = path.iter().skip(1).map(String::as_str).collect();
                    match inner.as_slice() {
                        ["datiSingoliPagamenti"] => {
                            if let Some(draft) = row.take() {
                                rows.push(finish_row(rows.len() + 1, draft));
                            }
                        }
                        ["datiSingoliPagamenti", field] => {
                            if let Some(r) = row.as_mut() {
                                row_field(r, field, value);
                            }
                        }
                        _ => header_field(&mut header, &inner, value),
                    }
                }
                path.pop();
            }
            Event::DocType(_) => {
                return Err(unreadable("DOCTYPE declarations are not accepted"));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !path.is_empty() {
        return Err(unreadable("the document ends inside an element"));
    }
    match root.as_deref() {
        Some("FlussoRiversamento") => finish(header, rows).map(|f| Parsed::Flow(Box::new(f))),
        Some(other) => Err(FlowError::NotAFlow(format!(
            "{other} without xmlRendicontazione"
        ))),
        None => Err(unreadable("no root element")),
    }
}

fn is_flow(root: &Option<String>) -> bool {
    root.as_deref() == Some("FlussoRiversamento")
}

fn header_field(h: &mut HeaderDraft, path: &[&str], value: String) {
    match path {
        ["identificativoFlusso"] => h.flow_id = value,
        ["dataOraFlusso"] => h.flow_date = value,
        ["identificativoUnivocoRegolamento"] => h.regulation = value,
        ["dataRegolamento"] => h.regulation_date = Some(value),
        ["istitutoMittente", "identificativoUnivocoMittente", "tipoIdentificativoUnivoco"] => {
            h.sender_kind = value;
        }
        ["istitutoMittente", "identificativoUnivocoMittente", "codiceIdentificativoUnivoco"] => {
            h.sender_id = value;
        }
        ["istitutoMittente", "denominazioneMittente"] => h.sender_name = Some(value),
        ["codiceBicBancaDiRiversamento"] => h.bic = Some(value),
        ["istitutoRicevente", "identificativoUnivocoRicevente", "codiceIdentificativoUnivoco"] => {
            h.receiver_id = value;
        }
        ["istitutoRicevente", "denominazioneRicevente"] => h.receiver_name = Some(value),
        ["numeroTotalePagamenti"] => h.count = Some(value),
        ["importoTotalePagamenti"] => h.total = Some(value),
        _ => {}
    }
}

fn row_field(r: &mut RowDraft, name: &str, value: String) {
    match name {
        "identificativoUnivocoVersamento" => r.iuv = value,
        "identificativoUnivocoRiscossione" => r.iur = value,
        "indiceDatiSingoloPagamento" => r.index = Some(value),
        "singoloImportoPagato" => r.amount = Some(value),
        "codiceEsitoSingoloPagamento" => r.code = Some(value),
        "dataEsitoSingoloPagamento" => r.date = Some(value),
        _ => {}
    }
}

/// A row from its texts: what cannot be read becomes a problem on the row.
pub(crate) fn row_of(
    number: usize,
    iuv: String,
    iur: String,
    index: Option<String>,
    amount: Option<String>,
    status: PayStatus,
    date: Option<String>,
) -> FlowRow {
    let mut problems = Vec::new();
    if iuv.is_empty() {
        problems.push(RowProblem::MissingIuv);
    }
    if iur.is_empty() {
        problems.push(RowProblem::MissingIur);
    }
    let id_transfer = match index {
        None => None,
        Some(t) => match t.trim().parse::<u8>() {
            Ok(n) if (1..=5).contains(&n) => Some(n),
            _ => {
                problems.push(RowProblem::BadIndex(t));
                None
            }
        },
    };
    let amount_cents = match amount {
        Some(t) => match cents_of(&t) {
            Some(c) if c > 0 => Some(c),
            _ => {
                problems.push(RowProblem::BadAmount(t));
                None
            }
        },
        None => {
            problems.push(RowProblem::BadAmount(String::new()));
            None
        }
    };
    if let PayStatus::Unknown(code) = &status {
        problems.push(RowProblem::UnknownStatus(code.clone()));
    }
    let date = match date {
        Some(t) => {
            let d = business_day(&t);
            if d.is_none() {
                problems.push(RowProblem::BadDate(t));
            }
            d
        }
        None => {
            problems.push(RowProblem::BadDate(String::new()));
            None
        }
    };
    FlowRow {
        number,
        iuv,
        iur,
        id_transfer,
        amount_cents,
        status,
        date,
        problems,
    }
}

fn finish_row(number: usize, d: RowDraft) -> FlowRow {
    let status = PayStatus::from_code(d.code.as_deref().unwrap_or(""));
    row_of(number, d.iuv, d.iur, d.index, d.amount, status, d.date)
}

fn finish(h: HeaderDraft, rows: Vec<FlowRow>) -> Result<Flow, FlowError> {
    if h.flow_id.is_empty() {
        return Err(FlowError::Missing("identificativoFlusso"));
    }
    if h.receiver_id.is_empty() {
        return Err(FlowError::Missing(
            "istitutoRicevente/identificativoUnivocoRicevente",
        ));
    }
    let header = FlowHeader {
        flow_id: h.flow_id,
        revision: None,
        flow_date: h.flow_date,
        regulation: h.regulation,
        regulation_date: h.regulation_date.as_deref().and_then(business_day),
        sender_kind: SenderKind::parse(&h.sender_kind),
        sender_id: h.sender_id,
        psp_id: None,
        sender_name: h.sender_name,
        bic_pouring_bank: h.bic,
        receiver_id: h.receiver_id,
        receiver_name: h.receiver_name,
        declared_count: h.count.and_then(|c| c.trim().parse::<u64>().ok()),
        declared_total_cents: h.total.as_deref().and_then(cents_of),
    };
    Ok(Flow::new(header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdr::FlowFlag;

    fn sample() -> String {
        r#"<?xml version="1.0" encoding="UTF-8"?>
<FlussoRiversamento xmlns="http://www.digitpa.gov.it/schemas/2011/Pagamenti/">
  <versioneOggetto>1.0</versioneOggetto>
  <identificativoFlusso>2026-07-0388888888888-S0000001</identificativoFlusso>
  <dataOraFlusso>2026-07-04T08:30:00</dataOraFlusso>
  <identificativoUnivocoRegolamento>SCTRN0000000000000000000123</identificativoUnivocoRegolamento>
  <dataRegolamento>2026-07-03</dataRegolamento>
  <istitutoMittente>
    <identificativoUnivocoMittente>
      <tipoIdentificativoUnivoco>B</tipoIdentificativoUnivoco>
      <codiceIdentificativoUnivoco>PSPXITXXXXX</codiceIdentificativoUnivoco>
    </identificativoUnivocoMittente>
    <denominazioneMittente>PSP di Prova S.p.A.</denominazioneMittente>
  </istitutoMittente>
  <istitutoRicevente>
    <identificativoUnivocoRicevente>
      <tipoIdentificativoUnivoco>G</tipoIdentificativoUnivoco>
      <codiceIdentificativoUnivoco>77777777777</codiceIdentificativoUnivoco>
    </identificativoUnivocoRicevente>
  </istitutoRicevente>
  <numeroTotalePagamenti>2</numeroTotalePagamenti>
  <importoTotalePagamenti>130.00</importoTotalePagamenti>
  <datiSingoliPagamenti>
    <identificativoUnivocoVersamento>12202600000000171</identificativoUnivocoVersamento>
    <identificativoUnivocoRiscossione>0c2a5f1e</identificativoUnivocoRiscossione>
    <indiceDatiSingoloPagamento>1</indiceDatiSingoloPagamento>
    <singoloImportoPagato>120.00</singoloImportoPagato>
    <codiceEsitoSingoloPagamento>0</codiceEsitoSingoloPagamento>
    <dataEsitoSingoloPagamento>2026-07-02</dataEsitoSingoloPagamento>
  </datiSingoliPagamenti>
  <datiSingoliPagamenti>
    <identificativoUnivocoVersamento>12202600000000272</identificativoUnivocoVersamento>
    <identificativoUnivocoRiscossione>7d41c0e2</identificativoUnivocoRiscossione>
    <indiceDatiSingoloPagamento>1</indiceDatiSingoloPagamento>
    <singoloImportoPagato>10.00</singoloImportoPagato>
    <codiceEsitoSingoloPagamento>4</codiceEsitoSingoloPagamento>
    <dataEsitoSingoloPagamento>2026-07-02</dataEsitoSingoloPagamento>
  </datiSingoliPagamenti>
</FlussoRiversamento>"#
            .to_string()
    }

    #[test]
    fn a_flow_is_read_whatever_its_prefix_and_line_ends() {
        let plain = decode(sample().as_bytes()).unwrap();
        assert_eq!(plain.header.flow_id, "2026-07-0388888888888-S0000001");
        assert_eq!(plain.header.receiver_id, "77777777777");
        assert_eq!(plain.header.declared_total_cents, Some(13_000));
        assert_eq!(plain.rows.len(), 2);
        assert_eq!(plain.rows[0].amount_cents, Some(12_000));
        assert_eq!(plain.rows[1].status, PayStatus::StandIn);
        assert_eq!(plain.flags, vec![FlowFlag::StandInRows(1)]);
        let prefixed = sample()
            .replace(
                "<FlussoRiversamento xmlns=",
                "<pag:FlussoRiversamento xmlns:pag=",
            )
            .replace("</FlussoRiversamento>", "</pag:FlussoRiversamento>")
            .replace('<', "\r\n\t<")
            .replace("\r\n\t</", "</")
            .replace("<identificativoFlusso>", "<identificativoFlusso>\t");
        // every element under the root keeps no prefix but the root has one: fine either way
        let f = decode(prefixed.trim_start().as_bytes()).unwrap();
        assert_eq!(f, plain);
    }

    #[test]
    fn base64_and_the_soap_answer_are_unwrapped() {
        let plain = decode(sample().as_bytes()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(sample());
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned() + "\r\n")
            .collect();
        assert_eq!(decode(wrapped.as_bytes()).unwrap(), plain);
        let soap = format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:nfpa="http://ws.pagamenti.telematici.gov/"><soapenv:Body><nfpa:nodoChiediFlussoRendicontazioneRisposta><xmlRendicontazione>{b64}</xmlRendicontazione></nfpa:nodoChiediFlussoRendicontazioneRisposta></soapenv:Body></soapenv:Envelope>"#
        );
        assert_eq!(decode(soap.as_bytes()).unwrap(), plain);
    }

    #[test]
    fn one_bad_row_never_aborts_the_flow() {
        let bad = sample()
            .replacen(
                "<singoloImportoPagato>120.00",
                "<singoloImportoPagato>12O.00",
                1,
            )
            .replacen(
                "<codiceEsitoSingoloPagamento>4",
                "<codiceEsitoSingoloPagamento>7",
                1,
            );
        let f = decode(bad.as_bytes()).unwrap();
        assert_eq!(f.rows.len(), 2);
        assert_eq!(
            f.rows[0].problems,
            vec![RowProblem::BadAmount("12O.00".into())]
        );
        assert_eq!(
            f.rows[1].problems,
            vec![RowProblem::UnknownStatus("7".into())]
        );
        assert!(f.flags.contains(&FlowFlag::BadRows(2)));
        assert!(f.flags.contains(&FlowFlag::TotalMismatch {
            declared_cents: 13_000,
            rows_cents: 1_000
        }));
    }

    #[test]
    fn what_is_not_a_flow_is_an_error() {
        assert!(matches!(
            decode(b"<a><b/></a>"),
            Err(FlowError::NotAFlow(r)) if r == "a"
        ));
        assert!(matches!(
            decode(b"<!DOCTYPE x [<!ENTITY e 'x'>]><FlussoRiversamento/>"),
            Err(FlowError::Unreadable(_))
        ));
        assert!(matches!(
            decode(b"not a flow"),
            Err(FlowError::Unreadable(_))
        ));
        let no_id = sample().replace("2026-07-0388888888888-S0000001", "");
        assert_eq!(
            decode(no_id.as_bytes()),
            Err(FlowError::Missing("identificativoFlusso"))
        );
        assert!(matches!(
            decode(b"<FlussoRiversamento><x>"),
            Err(FlowError::Unreadable(_))
        ));
    }

    #[test]
    fn the_spec_pack_samples_are_read() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pagopa/examples");
        if !dir.is_dir() {
            assert!(
                std::env::var_os("MPAY_REQUIRE_SHARED").is_none(),
                "../shared is required (MPAY_REQUIRE_SHARED)"
            );
            return;
        }
        for name in [
            "FlussoRiversamento_sample.xml",
            "FlussoRiversamento_sample_standin_code4.xml",
            "nodoChiediFlussoRendicontazione_res.xml",
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let f = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!f.rows.is_empty(), "{name}");
            assert!(
                !f.flags.iter().any(|x| matches!(
                    x,
                    FlowFlag::CountMismatch { .. } | FlowFlag::TotalMismatch { .. }
                )),
                "{name}: {:?}",
                f.flags
            );
        }
    }
}
