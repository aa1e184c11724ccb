//! What an Ente receives when one of its reporting flows (FdR) is stored (issue 13, INTERFACES.md
//! §6.3), through the same outbox and connector as its payment notifications:
//!
//! **Webhook** — the same transport, signature (`X-Mpay-Signature` over timestamp + body),
//! `X-Mpay-Timestamp` and `Idempotency-Key` as the receipt webhook ([`super::ente`]); body
//! [`FlowNotification`] with event `REPORTING_FLOW`: the flow header and every row as the PSP
//! sent it, amounts in integer euro cents. Any 2xx is the acknowledgement.
//!
//! **Legacy SOAP** — MPay's `RendicontazioneEnte.inviaFlussoRend` (reconstructed WSDL
//! `RendicontazioneEnte.reconstructed.wsdl`): document/literal SOAP 1.1, `SOAPAction: ""`, HTTP
//! Basic auth, element `InviaFlussoRendRequest` in `http://dati.webservice.integrazioneente.payer.seda.com`,
//! children qualified, in the WSDL's order. The WSDL carries no flow XML: the flow travels as
//! structured records — `chiaveRendicontazione`, `tipoInvio`, one `RecordVersamento` per row,
//! then `RecordRiepilogo`. The reply is `InviaFlussoRendResponse/response{retcode 00|01,
//! retmessage}`; `00` is the acknowledgement.
//!
//! How a pagoPA flow fills MPay's bollettino-shaped records is not documented (the sender side
//! is not public); the mapping below is ours [I] and written once, here:
//! - `chiaveRendicontazione` = the flow id; `tipoInvio` = `A` (what MPay's reporting batch
//!   passes, INTERFACES.md §6.3);
//! - each counted row (a repeated row is sent once) is a `BollettinoPremarcato`:
//!   `ProgressivoCaricamento` = flow id, `ProgressivoSelezione` = row number,
//!   `NumeroCCbeneficiario` = empty (a flow names no account), `DataAccettazione` = the row's
//!   date (`yyyy-MM-dd`), `TipoDocumento` = [`TIPO_DOCUMENTO_PAGOPA`], `Importo` = euros with
//!   two decimals, `UfficioSportello` = 0, `Divisa` = `EUR`, `DataContabileAccredito` = the
//!   flow's regulation date, `Bollettino` and `NumeroDocumento` = the IUV, `CodiceEnte` = MPay's
//!   codiceEnte, `NumeroRata` = 0, `CodiceIUV` = IUV, `FlussoRendicontazionePagoPA` = flow id,
//!   `NumeroSospeso` = the pagoPA outcome code (`0`, `3`, `4`, `8`, `9`),
//!   `ChiaveSpedizionePagamento` = the IUR;
//! - `RecordRiepilogo`: `CodiceCUAS` = the PSP, `DataContabileAccredito` = regulation date,
//!   `Identificativo` = the revision (0 for a file), totals of the counted rows, "esatti" the
//!   rows whose money was collected, "errati" the others (revoked, unknown outcome).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ente::Risultato;
use super::xml::{self, escape, Element};
use crate::fdr::{Flow, FlowFlag, PayStatus, SenderKind};

/// Webhook event of a reporting flow.
pub const REPORTING_FLOW_EVENT: &str = "REPORTING_FLOW";

/// Namespace of the RendicontazioneEnte data types (integrazioneente, not integraente).
pub const INTEGRAZIONE_ENTE_NS: &str = "http://dati.webservice.integrazioneente.payer.seda.com";

/// `TipoDocumento` of a pagoPA row [I].
pub const TIPO_DOCUMENTO_PAGOPA: &str = "PAGOPA";

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// One row of a forwarded flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowRowModel {
    /// 1-based position in the flow.
    pub number: usize,
    /// IUV.
    pub iuv: String,
    /// IUR (the receipt id it should be).
    pub iur: String,
    /// Transfer index (1..=5), when sent and valid.
    pub id_transfer: Option<u8>,
    /// Amount in cents, when readable.
    pub amount_cents: Option<i64>,
    /// `EXECUTED`, `REVOKED`, `STAND_IN`, `STAND_IN_NO_RPT`, `NO_RPT`, or the unknown code.
    pub pay_status: String,
    /// The outcome code of the XML form (`0`, `3`, `4`, `8`, `9`).
    pub status_code: String,
    /// Business day of the payment, when readable.
    pub date: Option<NaiveDate>,
    /// Repeats an earlier row (not counted in the totals).
    pub duplicate: bool,
}

/// The webhook body of a reporting flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowNotification {
    /// The notification's key (also the `Idempotency-Key` header).
    pub notification_id: String,
    /// `REPORTING_FLOW`.
    pub event: String,
    /// Body version (1).
    pub version: u32,
    /// The Ente.
    pub organization_fiscal_code: String,
    /// Flow id.
    pub flow_id: String,
    /// Revision (0 for an XML file).
    pub revision: u32,
    /// `dataOraFlusso` / `fdrDate`, as sent.
    pub flow_date: String,
    /// The bank credit's reference (TRN / EndToEndId).
    pub regulation: String,
    /// The credit's execution date.
    pub regulation_date: Option<NaiveDate>,
    /// The PSP's identifier (fiscal code, ABI or BIC).
    pub sender_id: String,
    /// `LEGAL_PERSON`, `ABI_CODE`, `BIC_CODE` or as sent.
    pub sender_kind: String,
    /// The PSP's pagoPA id, when known.
    pub psp_id: Option<String>,
    /// The PSP's name.
    pub sender_name: Option<String>,
    /// Declared number of payments, when readable.
    pub declared_count: Option<u64>,
    /// Declared total, cents, when readable.
    pub declared_total_cents: Option<i64>,
    /// Sum of the counted rows, cents.
    pub total_cents: i64,
    /// What is odd about the flow (`COUNT_MISMATCH`, `REVOKED_ROWS`, …).
    pub flags: Vec<String>,
    /// Where it came from (file name, `fdr-rest`).
    pub source: String,
    /// When it was acquired (UTC).
    pub acquired_at: DateTime<Utc>,
    /// Every row, in order.
    pub rows: Vec<FlowRowModel>,
}

/// The REST name of an outcome.
pub fn pay_status_name(s: &PayStatus) -> String {
    match s {
        PayStatus::Executed => "EXECUTED".into(),
        PayStatus::Revoked => "REVOKED".into(),
        PayStatus::StandIn => "STAND_IN".into(),
        PayStatus::StandInNoRpt => "STAND_IN_NO_RPT".into(),
        PayStatus::NoRpt => "NO_RPT".into(),
        PayStatus::Unknown(code) => code.clone(),
    }
}

fn flag_name(f: &FlowFlag) -> &'static str {
    match f {
        FlowFlag::CountMismatch { .. } => "COUNT_MISMATCH",
        FlowFlag::TotalMismatch { .. } => "TOTAL_MISMATCH",
        FlowFlag::UnreadableTotals => "UNREADABLE_TOTALS",
        FlowFlag::BadRows(_) => "BAD_ROWS",
        FlowFlag::DuplicateRows(_) => "DUPLICATE_ROWS",
        FlowFlag::UnknownStatuses(_) => "UNKNOWN_STATUSES",
        FlowFlag::StandInRows(_) => "STAND_IN_ROWS",
        FlowFlag::RevokedRows(_) => "REVOKED_ROWS",
        FlowFlag::NoReceiptRows(_) => "NO_RECEIPT_ROWS",
        FlowFlag::Empty => "EMPTY",
        FlowFlag::OtherReceiver { .. } => "OTHER_RECEIVER",
        FlowFlag::UnknownPsp { .. } => "UNKNOWN_PSP",
    }
}

impl FlowNotification {
    /// The webhook body of `flow` of `organization` (notification key `notification_id`).
    pub fn of(
        notification_id: String,
        organization: &str,
        flow: &Flow,
        source: &str,
        acquired_at: DateTime<Utc>,
    ) -> Self {
        let h = &flow.header;
        FlowNotification {
            notification_id,
            event: REPORTING_FLOW_EVENT.into(),
            version: 1,
            organization_fiscal_code: organization.to_string(),
            flow_id: h.flow_id.clone(),
            revision: h.revision.unwrap_or(0),
            flow_date: h.flow_date.clone(),
            regulation: h.regulation.clone(),
            regulation_date: h.regulation_date,
            sender_id: h.sender_id.clone(),
            sender_kind: match &h.sender_kind {
                SenderKind::LegalPerson => "LEGAL_PERSON".into(),
                SenderKind::AbiCode => "ABI_CODE".into(),
                SenderKind::BicCode => "BIC_CODE".into(),
                SenderKind::Other(s) => s.clone(),
            },
            psp_id: h.psp_id.clone(),
            sender_name: h.sender_name.clone(),
            declared_count: h.declared_count,
            declared_total_cents: h.declared_total_cents,
            total_cents: flow.counted_total_cents(),
            flags: flow
                .flags
                .iter()
                .map(|f| flag_name(f).to_string())
                .collect(),
            source: source.to_string(),
            acquired_at,
            rows: flow
                .rows
                .iter()
                .map(|r| FlowRowModel {
                    number: r.number,
                    iuv: r.iuv.clone(),
                    iur: r.iur.clone(),
                    id_transfer: r.id_transfer,
                    amount_cents: r.amount_cents,
                    pay_status: pay_status_name(&r.status),
                    status_code: r.status.code().to_string(),
                    date: r.date,
                    duplicate: !r.counted(),
                })
                .collect(),
        }
    }
}

/// Euros with two decimals (`xsd:decimal`) of an amount in cents.
pub fn euro_decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// One `RecordVersamento` (a `BollettinoPremarcato`, see the module's mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordVersamento {
    /// Row number (`ProgressivoSelezione`).
    pub progressivo: usize,
    /// `DataAccettazione` (`yyyy-MM-dd` or empty).
    pub data_accettazione: String,
    /// Cents.
    pub importo_cents: i64,
    /// IUV.
    pub iuv: String,
    /// IUR (`ChiaveSpedizionePagamento`).
    pub iur: String,
    /// Outcome code (`NumeroSospeso`).
    pub esito: String,
}

/// `RecordRiepilogo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRiepilogo {
    /// `CodiceCUAS`: the PSP.
    pub codice_cuas: String,
    /// `Identificativo`: the revision.
    pub identificativo: u32,
    /// Counted rows and their sum.
    pub totale: (usize, i64),
    /// Rows whose money was collected and their sum.
    pub esatti: (usize, i64),
    /// The other counted rows and their sum.
    pub errati: (usize, i64),
}

/// `InviaFlussoRendRequest` of one flow revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviaFlussoRend {
    /// `chiaveRendicontazione`: the flow id.
    pub chiave_rendicontazione: String,
    /// `tipoInvio` (`A`).
    pub tipo_invio: String,
    /// MPay's `codiceEnte`.
    pub codice_ente: String,
    /// `DataContabileAccredito` (regulation date, `yyyy-MM-dd`, or empty).
    pub data_contabile: String,
    /// One per counted row.
    pub records: Vec<RecordVersamento>,
    /// Totals.
    pub riepilogo: RecordRiepilogo,
}

impl InviaFlussoRend {
    /// The request forwarding `flow` to the Ente whose MPay `codiceEnte` is `codice_ente`.
    pub fn of(flow: &Flow, codice_ente: &str) -> Self {
        let h = &flow.header;
        let mut totale = (0usize, 0i64);
        let mut esatti = (0usize, 0i64);
        let mut errati = (0usize, 0i64);
        let mut records = Vec::with_capacity(flow.rows.len());
        for r in flow.rows.iter().filter(|r| r.counted()) {
            let cents = r.amount_cents.unwrap_or(0);
            totale = (totale.0 + 1, totale.1 + cents);
            if r.status.is_collected() {
                esatti = (esatti.0 + 1, esatti.1 + cents);
            } else {
                errati = (errati.0 + 1, errati.1 + cents);
            }
            records.push(RecordVersamento {
                progressivo: r.number,
                data_accettazione: r.date.map(|d| d.to_string()).unwrap_or_default(),
                importo_cents: cents,
                iuv: r.iuv.trim().to_string(),
                iur: r.iur.trim().to_string(),
                esito: r.status.code().to_string(),
            });
        }
        InviaFlussoRend {
            chiave_rendicontazione: h.flow_id.clone(),
            tipo_invio: "A".into(),
            codice_ente: codice_ente.trim().to_string(),
            data_contabile: h.regulation_date.map(|d| d.to_string()).unwrap_or_default(),
            records,
            riepilogo: RecordRiepilogo {
                codice_cuas: h.psp_id.clone().unwrap_or_else(|| h.sender_id.clone()),
                identificativo: h.revision.unwrap_or(0),
                totale,
                esatti,
                errati,
            },
        }
    }

    /// The SOAP 1.1 envelope (elements in the WSDL's order).
    pub fn to_soap(&self) -> String {
        let mut w = String::with_capacity(1024 + self.records.len() * 900);
        let el = |w: &mut String, name: &str, value: &str| {
            w.push_str("<d:");
            w.push_str(name);
            w.push('>');
            w.push_str(&escape(value));
            w.push_str("</d:");
            w.push_str(name);
            w.push('>');
        };
        w.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        w.push_str(&format!(
            r#"<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{INTEGRAZIONE_ENTE_NS}"><soapenv:Header/><soapenv:Body><d:InviaFlussoRendRequest>"#
        ));
        el(
            &mut w,
            "chiaveRendicontazione",
            &self.chiave_rendicontazione,
        );
        el(&mut w, "tipoInvio", &self.tipo_invio);
        let flow = &self.chiave_rendicontazione;
        for r in &self.records {
            w.push_str("<d:RecordVersamento><d:BollettinoPremarcato>");
            el(&mut w, "ProgressivoCaricamento", flow);
            el(&mut w, "ProgressivoSelezione", &r.progressivo.to_string());
            el(&mut w, "NumeroCCbeneficiario", "");
            el(&mut w, "DataAccettazione", &r.data_accettazione);
            el(&mut w, "TipoDocumento", TIPO_DOCUMENTO_PAGOPA);
            el(&mut w, "Importo", &euro_decimal(r.importo_cents));
            el(&mut w, "UfficioSportello", "0");
            el(&mut w, "Divisa", "EUR");
            el(&mut w, "DataContabileAccredito", &self.data_contabile);
            el(&mut w, "Bollettino", &r.iuv);
            el(&mut w, "CodiceEnte", &self.codice_ente);
            el(&mut w, "NumeroDocumento", &r.iuv);
            el(&mut w, "NumeroRata", "0");
            el(&mut w, "CodiceIUV", &r.iuv);
            el(&mut w, "FlussoRendicontazionePagoPA", flow);
            el(&mut w, "NumeroSospeso", &r.esito);
            el(&mut w, "ChiaveSpedizionePagamento", &r.iur);
            w.push_str("</d:BollettinoPremarcato></d:RecordVersamento>");
        }
        let s = &self.riepilogo;
        w.push_str("<d:RecordRiepilogo>");
        el(&mut w, "CodiceCUAS", &s.codice_cuas);
        el(&mut w, "NumeroCCbeneficiario", "");
        el(&mut w, "DataContabileAccredito", &self.data_contabile);
        el(&mut w, "Identificativo", &s.identificativo.to_string());
        el(&mut w, "TotaleDocumenti", &s.totale.0.to_string());
        el(&mut w, "ImportoTotali", &euro_decimal(s.totale.1));
        el(&mut w, "TotaleDocumentiEsatti", &s.esatti.0.to_string());
        el(&mut w, "ImportoTotaliEsatti", &euro_decimal(s.esatti.1));
        el(&mut w, "TotaleDocumentiErrati", &s.errati.0.to_string());
        el(&mut w, "ImportoTotaliErrati", &euro_decimal(s.errati.1));
        w.push_str("</d:RecordRiepilogo>");
        w.push_str("</d:InviaFlussoRendRequest></soapenv:Body></soapenv:Envelope>");
        w
    }
}

fn find<'a>(e: &'a Element, local: &str) -> Option<&'a Element> {
    if e.local == local {
        return Some(e);
    }
    e.children.iter().find_map(|c| find(c, local))
}

/// Reads `InviaFlussoRendResponse/response` (any prefix), or a Fault (SOAP or the WSDL's
/// `srv:Fault{code, message}`). Errors: not XML, a Fault (`SOAP Fault: …`), no `retcode`.
pub fn decode_invia_flusso_response(body: &[u8]) -> Result<Risultato, String> {
    let doc = xml::parse(body).map_err(|e| e.to_string())?;
    if let Some(fault) = find(&doc, "Fault") {
        let text = fault
            .child("faultstring")
            .or_else(|| find(fault, "message"))
            .map(|f| f.text.trim().to_string())
            .unwrap_or_else(|| "no message".into());
        return Err(format!("SOAP Fault: {text}"));
    }
    let Some(response) = find(&doc, "InviaFlussoRendResponse").and_then(|r| find(r, "response"))
    else {
        return Err("no InviaFlussoRendResponse/response in the answer".into());
    };
    let text = |name: &str| {
        response
            .children
            .iter()
            .find(|c| c.local == name)
            .map(|c| c.text.trim().to_string())
    };
    let retcode = text("retcode").ok_or("no retcode in the answer")?;
    Ok(Risultato {
        retcode,
        retmessage: text("retmessage").unwrap_or_default(),
    })
}

/// The answer an Ente's `inviaFlussoRend` gives (the receiver and the tests).
pub fn invia_flusso_response_soap(retcode: &str, retmessage: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{INTEGRAZIONE_ENTE_NS}"><soapenv:Body><d:InviaFlussoRendResponse><d:response><d:retcode>{}</d:retcode><d:retmessage>{}</d:retmessage></d:response></d:InviaFlussoRendResponse></soapenv:Body></soapenv:Envelope>"#,
        escape(retcode),
        escape(retmessage)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::fdr::{FlowHeader, FlowRow};

    fn row(n: usize, iuv: &str, iur: &str, cents: i64, status: PayStatus) -> FlowRow {
        FlowRow {
            number: n,
            iuv: iuv.into(),
            iur: iur.into(),
            id_transfer: Some(1),
            amount_cents: Some(cents),
            status,
            date: NaiveDate::from_ymd_opt(2026, 7, 2),
            problems: vec![],
        }
    }

    fn flow() -> Flow {
        Flow::new(
            FlowHeader {
                flow_id: "2026-07-04PSP<&>-1".into(),
                revision: Some(2),
                flow_date: "2026-07-04T08:30:00".into(),
                regulation: "TRN-1".into(),
                regulation_date: NaiveDate::from_ymd_opt(2026, 7, 3),
                sender_kind: SenderKind::BicCode,
                sender_id: "PSPXITXXXXX".into(),
                psp_id: None,
                sender_name: Some("PSP di Prova".into()),
                bic_pouring_bank: None,
                receiver_id: "80001234568".into(),
                receiver_name: None,
                declared_count: Some(4),
                declared_total_cents: Some(1500 + 2505 + 99 + 2505),
            },
            vec![
                row(1, "01000000000000001", "iur-1", 1500, PayStatus::Executed),
                row(2, "01000000000000002", "iur-2", 2505, PayStatus::Revoked),
                row(3, "01000000000000003", "iur-3", 99, PayStatus::StandIn),
                // a repetition of row 2: listed, not counted
                row(4, "01000000000000002", "iur-2", 2505, PayStatus::Revoked),
            ],
        )
    }

    #[test]
    fn euros_have_two_decimals_from_integer_cents() {
        assert_eq!(euro_decimal(0), "0.00");
        assert_eq!(euro_decimal(5), "0.05");
        assert_eq!(euro_decimal(1500), "15.00");
        assert_eq!(euro_decimal(123_456_789), "1234567.89");
        assert_eq!(euro_decimal(-2505), "-25.05");
    }

    #[test]
    fn invia_flusso_rend_follows_the_wsdl_order_and_escapes() {
        let x = InviaFlussoRend::of(&flow(), " 05671 ").to_soap();
        assert!(x.contains(&format!("xmlns:d=\"{INTEGRAZIONE_ENTE_NS}\"")));
        // the flow id is escaped everywhere it goes
        assert!(!x.contains("PSP<&>"));
        assert!(x.contains(
            "<d:chiaveRendicontazione>2026-07-04PSP&lt;&amp;&gt;-1</d:chiaveRendicontazione><d:tipoInvio>A</d:tipoInvio><d:RecordVersamento>"
        ));
        // three counted rows (the repetition is sent once), then the summary
        assert_eq!(x.matches("<d:RecordVersamento>").count(), 3);
        let first = x
            .split("<d:BollettinoPremarcato>")
            .nth(1)
            .unwrap()
            .split("</d:BollettinoPremarcato>")
            .next()
            .unwrap();
        let order = [
            "ProgressivoCaricamento",
            "ProgressivoSelezione",
            "NumeroCCbeneficiario",
            "DataAccettazione",
            "TipoDocumento",
            "Importo",
            "UfficioSportello",
            "Divisa",
            "DataContabileAccredito",
            "Bollettino",
            "CodiceEnte",
            "NumeroDocumento",
            "NumeroRata",
            "CodiceIUV",
            "FlussoRendicontazionePagoPA",
            "NumeroSospeso",
            "ChiaveSpedizionePagamento",
        ];
        let names: Vec<&str> = first
            .split("<d:")
            .skip(1)
            .map(|s| s.split('>').next().unwrap())
            .collect();
        assert_eq!(names, order);
        assert!(first.contains("<d:Importo>15.00</d:Importo>"));
        assert!(first.contains("<d:DataAccettazione>2026-07-02</d:DataAccettazione>"));
        assert!(first.contains("<d:DataContabileAccredito>2026-07-03</d:DataContabileAccredito>"));
        assert!(first.contains("<d:CodiceEnte>05671</d:CodiceEnte>"));
        assert!(first.contains("<d:CodiceIUV>01000000000000001</d:CodiceIUV>"));
        assert!(first.contains("<d:ChiaveSpedizionePagamento>iur-1</d:ChiaveSpedizionePagamento>"));
        assert!(x.contains("<d:NumeroSospeso>3</d:NumeroSospeso>"));
        let riepilogo = x.split("<d:RecordRiepilogo>").nth(1).unwrap();
        assert!(riepilogo.starts_with(
            "<d:CodiceCUAS>PSPXITXXXXX</d:CodiceCUAS><d:NumeroCCbeneficiario></d:NumeroCCbeneficiario>\
<d:DataContabileAccredito>2026-07-03</d:DataContabileAccredito><d:Identificativo>2</d:Identificativo>\
<d:TotaleDocumenti>3</d:TotaleDocumenti><d:ImportoTotali>41.04</d:ImportoTotali>\
<d:TotaleDocumentiEsatti>2</d:TotaleDocumentiEsatti><d:ImportoTotaliEsatti>15.99</d:ImportoTotaliEsatti>\
<d:TotaleDocumentiErrati>1</d:TotaleDocumentiErrati><d:ImportoTotaliErrati>25.05</d:ImportoTotaliErrati></d:RecordRiepilogo>"
        ));
        // well-formed
        let doc = xml::parse(x.as_bytes()).unwrap();
        assert!(find(&doc, "InviaFlussoRendRequest")
            .is_some_and(|e| e.ns.as_deref() == Some(INTEGRAZIONE_ENTE_NS)));
    }

    #[test]
    fn the_webhook_body_has_the_header_and_every_row_in_cents() {
        let at = DateTime::parse_from_rfc3339("2026-07-04T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = FlowNotification::of(
            "mpay-80001234568-7".into(),
            "80001234568",
            &flow(),
            "flow.xml",
            at,
        );
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["event"], "REPORTING_FLOW");
        assert_eq!(v["notificationId"], "mpay-80001234568-7");
        assert_eq!(v["flowId"], "2026-07-04PSP<&>-1");
        assert_eq!(v["revision"], 2);
        assert_eq!(v["regulation"], "TRN-1");
        assert_eq!(v["regulationDate"], "2026-07-03");
        assert_eq!(v["senderKind"], "BIC_CODE");
        assert_eq!(v["totalCents"], 4104);
        assert_eq!(v["declaredTotalCents"], 6609);
        assert_eq!(v["rows"].as_array().unwrap().len(), 4, "every row as sent");
        assert_eq!(v["rows"][0]["amountCents"], 1500);
        assert_eq!(v["rows"][1]["payStatus"], "REVOKED");
        assert_eq!(v["rows"][1]["statusCode"], "3");
        assert_eq!(v["rows"][3]["duplicate"], true);
        assert_eq!(v["rows"][2]["payStatus"], "STAND_IN");
        assert!(v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "REVOKED_ROWS"));
        // the key order of the body is the struct's (what the signature covers)
        let text = serde_json::to_string(&n).unwrap();
        assert!(text.starts_with(
            r#"{"notificationId":"mpay-80001234568-7","event":"REPORTING_FLOW","version":1,"organizationFiscalCode":"80001234568","flowId":"#
        ));
        let back: FlowNotification = serde_json::from_str(&text).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn retcode_00_acks_01_and_faults_do_not() {
        let ok = decode_invia_flusso_response(invia_flusso_response_soap("00", "OK").as_bytes())
            .unwrap();
        assert!(ok.is_ack());
        let no = decode_invia_flusso_response(
            invia_flusso_response_soap("01", "flusso <già> presente").as_bytes(),
        )
        .unwrap();
        assert!(!no.is_ack());
        assert_eq!(no.retmessage, "flusso <già> presente");
        let fault = format!(
            r#"<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>boom</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        assert_eq!(
            decode_invia_flusso_response(fault.as_bytes()).unwrap_err(),
            "SOAP Fault: boom"
        );
        assert!(decode_invia_flusso_response(b"not xml").is_err());
        assert!(decode_invia_flusso_response(
            crate::wire::ente::risultato_soap("00", "OK").as_bytes()
        )
        .is_err());
    }
}
