//! GovPay's default CSV tracciato for loading debt positions ("caricamento pendenze", GovPay
//! docs `formatoCSV.rst`; `docs/GOVPAY-CSV.md` in this repository): comma-separated, `"` as
//! quote, a header of field names, one pendenza per row, up to 5 "voce" groups.
//!
//! A GovPay file is read as the equivalent PU 2.0 file (FORMAT.md §1.3): [`GovPayToPu`] is a
//! streaming adapter that rewrites each row into 2.0 columns, so the same reader, rules,
//! outcome report and compatibility copies apply. [`is_govpay_header`] tells a GovPay header
//! from the first line of a file.

use std::collections::HashMap;
use std::io::{self, Read};

/// Does this first line look like GovPay's header (`idA2A,idPendenza,…`)?
pub fn is_govpay_header(first_line: &[u8]) -> bool {
    let line = first_line
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(first_line);
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'"'))
        .unwrap_or(line.len());
    let rest = line.get(start..).unwrap_or_default();
    rest.len() >= 6
        && rest
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"ida2a"))
        && rest
            .get(5..)
            .is_some_and(|r| r.starts_with(b",") || r.starts_with(b"\","))
}

/// The 2.0 columns written (Italian names, FORMAT.md §1.3).
fn pu_columns() -> Vec<String> {
    let mut c: Vec<String> = [
        "IUPD",
        "descrizionePosizioneDebitoria",
        "indiceOpzionePagamento",
        "tipoOpzionePagamento",
        "descrizioneOpzionePagamento",
        "IUD",
        "numeroAvviso",
        "tipoIdentificativoUnivoco",
        "codiceIdentificativoUnivoco",
        "anagraficaPagatore",
        "indirizzoPagatore",
        "civicoPagatore",
        "capPagatore",
        "localitaPagatore",
        "provinciaPagatore",
        "nazionePagatore",
        "mailPagatore",
        "dataEsecuzionePagamento",
        "importoDovuto",
        "tipoDovuto",
        "causaleVersamento",
        "datiSpecificiRiscossione",
        "flgGeneraIuv",
        "flagPagamentoPu",
        "flagMultiBeneficiario",
        "numeroBeneficiari",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in 1..=5 {
        for stem in [
            "codiceFiscaleEnte",
            "denominazioneEnte",
            "ibanAccreditoEnte",
            "causaleVersamentoEnte",
            "importoVersamentoEnte",
            "codiceTassonomiaEnte",
        ] {
            c.push(format!("{stem}_{n}"));
        }
    }
    c.push("azione".into());
    c
}

/// `tipoContabilita` → the digit of `datiSpecificiRiscossione` (pagoPA: 0 capitolo, 1
/// speciale, 2 SIOPE, 9 altro).
fn accounting_digit(kind: &str) -> Option<&'static str> {
    match kind.trim().to_ascii_uppercase().as_str() {
        "CAPITOLO" | "0" => Some("0"),
        "SPECIALE" | "1" => Some("1"),
        "SIOPE" | "2" => Some("2"),
        "ALTRO" | "9" => Some("9"),
        _ => None,
    }
}

fn is_zero_amount(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && t.bytes().all(|b| matches!(b, b'0' | b'.'))
}

/// Maps one GovPay row (`get` = value of a GovPay column by name, case-insensitive) to the
/// values of [`pu_columns`], in order.
fn convert(get: &dyn Fn(&str) -> String) -> Vec<String> {
    let id_pendenza = get("idPendenza");
    let id_documento = get("idDocumento");
    let causale = get("causale");
    let rata = get("numeroRata");
    let (index, kind, option_description) = if rata.is_empty() {
        (
            "1".to_string(),
            "SINGLE_INSTALLMENT".to_string(),
            String::new(),
        )
    } else if rata.bytes().all(|b| b.is_ascii_digit()) {
        (
            "2".to_string(),
            "INSTALLMENTS".to_string(),
            format!("Rata {rata}"),
        )
    } else {
        // ENTROxxx / OLTRExxx time-threshold options have no 2.0 equivalent: the reader
        // refuses the value with ROW_BAD_FORMAT naming it
        ("1".to_string(), rata.clone(), String::new())
    };
    let notice = get("numeroAvviso");
    let importo = get("importo");
    let category = |k: usize| {
        let code = get(&format!("codiceContabilitaVoce{k}"));
        match accounting_digit(&get(&format!("tipoContabilitaVoce{k}"))) {
            Some(d) if !code.is_empty() => format!("{d}/{code}"),
            _ => code,
        }
    };
    let voci: Vec<usize> = (1..=5)
        .filter(|k| !get(&format!("importoVoce{k}")).is_empty())
        .collect();
    let mut tipo = get("tipoPendenza");
    if tipo.is_empty() {
        tipo = get("tipoEntrataVoce1");
    }
    if tipo.is_empty() {
        tipo = "LIBERO".into();
    }
    let mut out = vec![
        if id_documento.is_empty() {
            id_pendenza.clone()
        } else {
            id_documento
        },
        {
            let d = get("descrizioneDocumento");
            if d.is_empty() {
                causale.clone()
            } else {
                d
            }
        },
        index,
        kind,
        option_description,
        id_pendenza,
        notice.clone(),
        get("tipoSoggettoPagatore"),
        get("identificativoPagatore"),
        get("anagraficaPagatore"),
        get("indirizzoPagatore"),
        get("civicoPagatore"),
        get("capPagatore"),
        get("localitaPagatore"),
        get("provinciaPagatore"),
        get("nazionePagatore"),
        get("emailPagatore"),
        get("dataScadenza"),
        importo.clone(),
        tipo,
        causale,
        category(1),
        if notice.is_empty() { "true" } else { "false" }.into(),
        "true".into(),
        if voci.len() > 1 { "true" } else { "false" }.into(),
        if voci.len() > 1 {
            voci.len().to_string()
        } else {
            String::new()
        },
    ];
    let dominio = get("idDominio");
    // voce 1 is the Ente itself (implicit primary transfer: the service's IBAN); a stamp voce 1
    // is written explicitly without an IBAN so the reader refuses it (ibanAccreditoEnte_1)
    if get("tipoBolloVoce1").is_empty() {
        out.extend(std::iter::repeat_n(String::new(), 6));
    } else {
        out.push(dominio.clone());
        out.push(dominio.clone());
        out.push(String::new());
        out.push(get("descrizioneVoce1"));
        out.push(get("importoVoce1"));
        out.push(category(1));
    }
    for n in 2..=5 {
        match voci.get(n - 1) {
            Some(&k) => {
                // a stamp voce has no IBAN: the reader refuses it (ibanAccreditoEnte_N)
                out.push(dominio.clone());
                out.push(String::new());
                out.push(get(&format!("ibanAccreditoVoce{k}")));
                out.push(get(&format!("descrizioneVoce{k}")));
                out.push(get(&format!("importoVoce{k}")));
                out.push(category(k));
            }
            None => out.extend(std::iter::repeat_n(String::new(), 6)),
        }
    }
    out.push(if is_zero_amount(&importo) { "A" } else { "I" }.into());
    out
}

fn quoted_line(fields: &[String]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b';');
        }
        line.push(b'"');
        line.extend_from_slice(f.replace('"', "\"\"").as_bytes());
        line.push(b'"');
    }
    line.push(b'\n');
    line
}

/// Streaming adapter: a GovPay CSV in, the equivalent PU 2.0 CSV (`;`, quoted) out.
pub struct GovPayToPu<R: Read> {
    csv: csv::Reader<R>,
    header: Option<HashMap<String, usize>>,
    record: csv::ByteRecord,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> GovPayToPu<R> {
    /// Wraps a GovPay CSV.
    pub fn new(input: R) -> Self {
        GovPayToPu {
            csv: csv::ReaderBuilder::new()
                .delimiter(b',')
                .quote(b'"')
                .double_quote(true)
                .has_headers(false)
                .flexible(true)
                .from_reader(input),
            header: None,
            record: csv::ByteRecord::new(),
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn fields(&self) -> io::Result<Vec<String>> {
        self.record
            .iter()
            .map(|f| {
                std::str::from_utf8(f)
                    .map(|s| s.trim().to_string())
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "il file non è codificato in UTF-8",
                        )
                    })
            })
            .collect()
    }

    /// Converts the next record into `out`; false at the end.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if !self
                .csv
                .read_byte_record(&mut self.record)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            {
                return Ok(false);
            }
            let fields = self.fields()?;
            if fields.iter().all(String::is_empty) {
                continue;
            }
            match &self.header {
                None => {
                    let map = fields
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            (
                                h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase(),
                                i,
                            )
                        })
                        .collect();
                    self.header = Some(map);
                    self.out = quoted_line(&pu_columns());
                }
                Some(map) => {
                    let get = |name: &str| {
                        map.get(&name.to_ascii_lowercase())
                            .and_then(|i| fields.get(*i))
                            .cloned()
                            .unwrap_or_default()
                    };
                    self.out = quoted_line(&convert(&get));
                }
            }
            self.pos = 0;
            return Ok(true);
        }
    }
}

impl<R: Read> Read for GovPayToPu<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.out.len() {
            if self.done || !self.fill()? {
                self.done = true;
                return Ok(0);
            }
        }
        let rest = self.out.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::{FeedReader, FeedVersion, ReadOptions};

    const HEADER: &str = "idA2A,idPendenza,idDominio,numeroAvviso,tipoPendenza,idUnitaOperativa,causale,annoRiferimento,cartellaPagamento,datiAllegati,direzione,divisione,importo,dataValidita,dataScadenza,tassonomiaAvviso,tipoSoggettoPagatore,identificativoPagatore,anagraficaPagatore,indirizzoPagatore,civicoPagatore,capPagatore,localitaPagatore,provinciaPagatore,nazionePagatore,emailPagatore,cellularePagatore,idVoce1,importoVoce1,descrizioneVoce1,ibanAccreditoVoce1,ibanAppoggioVoce1,tipoContabilitaVoce1,codiceContabilitaVoce1,tipoEntrataVoce1,tipoBolloVoce1,hashBolloVoce1,provinciaBolloVoce1,idVoce2,importoVoce2,descrizioneVoce2,ibanAccreditoVoce2,ibanAppoggioVoce2,tipoContabilitaVoce2,codiceContabilitaVoce2,tipoEntrataVoce2,tipoBolloVoce2,hashBolloVoce2,provinciaBolloVoce2";

    fn file(rows: &[&str]) -> String {
        let mut s = format!("{HEADER}\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn the_header_is_recognised() {
        assert!(is_govpay_header(HEADER.as_bytes()));
        assert!(is_govpay_header(b"\xEF\xBB\xBF\"idA2A\",\"idPendenza\""));
        assert!(!is_govpay_header(b"IUD;codIuv;tipoIdentificativoUnivoco"));
        assert!(!is_govpay_header(b"idA2AX,foo"));
    }

    #[test]
    fn a_govpay_file_reads_as_the_equivalent_pu_2_0_file() {
        let text = file(&[
            // one voce, generated notice, quoted causale with a comma
            "GESTIONALE,PEND-1,80001234568,,AOC,,\"Loculo 12, fila B\",2026,,,,,350.00,,2026-12-31,,F,RSSMRA80A01H501U,Mario Rossi,Via Roma,1,60100,Ancona,AN,IT,mario@example.org,,V1,350.00,Loculo,IT47D0103002600000061234567,,ALTRO,0201133IM,,,,,,,,,,,,,,,",
            // two voci, supplied notice
            "GESTIONALE,PEND-2,80001234568,312000000000000119,UBC,,Canone,2026,,,,,100.00,,2026-06-30,,G,01987654322,Ditta Srl,,,,,,,,,V1,70.00,Canone quota 1,IT47D0103002600000061234567,,CAPITOLO,1234,,,,,V2,30.00,Canone quota 2,IT47D0103002600000061234567,,SIOPE,5678,,,,",
        ]);
        let mut reader =
            FeedReader::new(GovPayToPu::new(text.as_bytes()), ReadOptions::default()).unwrap();
        assert_eq!(reader.version(), FeedVersion::V2_0);
        let r1 = reader.next().unwrap().unwrap();
        let rec = r1.record.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(rec.iupd, "PEND-1");
        assert_eq!(rec.iud, "PEND-1");
        assert_eq!(rec.amount.cents(), 35_000);
        assert_eq!(rec.remittance, "Loculo 12, fila B");
        assert_eq!(rec.tipo_dovuto, "AOC");
        assert_eq!(rec.transfer_count(), 1);
        let r2 = reader.next().unwrap().unwrap();
        let rec = r2.record.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(rec.transfer_count(), 2);
        assert_eq!(rec.amount.cents(), 10_000);
        assert!(reader.next().is_none());
    }

    #[test]
    fn stamps_and_cancellations_are_refused_with_their_code() {
        let text = file(&[
            "G,BOLLO-1,80001234568,,AOC,,Bollo,,,,,,16.00,,,,F,RSSMRA80A01H501U,Mario Rossi,,,,,,,,,B1,16.00,Bollo,,,,,,01,6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=,AN,,,,,,,,,,,",
            "G,PEND-9,80001234568,,AOC,,Annullo,,,,,,0,,,,F,RSSMRA80A01H501U,Mario Rossi,,,,,,,,,V1,0,x,IT47D0103002600000061234567,,,,,,,,,,,,,,,,,",
        ]);
        let reader =
            FeedReader::new(GovPayToPu::new(text.as_bytes()), ReadOptions::default()).unwrap();
        let codes: Vec<Vec<String>> = reader
            .map(|r| {
                r.unwrap()
                    .record
                    .unwrap_err()
                    .iter()
                    .map(|i| i.code.as_str().to_string())
                    .collect()
            })
            .collect();
        assert!(
            codes[0].contains(&"ROW_BAD_BENEFICIARY".to_string()),
            "{codes:?}"
        );
        assert!(
            codes[1].contains(&"ROW_BAD_AMOUNT".to_string()),
            "{codes:?}"
        );
    }

    #[test]
    fn voci_accounting_becomes_dati_specifici_riscossione() {
        let get = |name: &str| match name {
            "tipoContabilitaVoce1" => "ALTRO".to_string(),
            "codiceContabilitaVoce1" => "0101100IM".to_string(),
            "importoVoce1" => "1.00".to_string(),
            "importo" => "0".to_string(),
            _ => String::new(),
        };
        let row = convert(&get);
        let cols = pu_columns();
        let at = |c: &str| row[cols.iter().position(|x| x == c).unwrap()].clone();
        assert_eq!(at("datiSpecificiRiscossione"), "9/0101100IM");
        assert_eq!(at("tipoDovuto"), "LIBERO");
        assert_eq!(at("flgGeneraIuv"), "true");
        // importo 0 = GovPay's cancellation
        assert_eq!(at("azione"), "A");
        assert_eq!(row.len(), cols.len());
    }
}
