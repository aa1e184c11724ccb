//! Message builders: the simulator's own templates, written from SPEC §5 and the examples, with
//! XML escaping. Children of the paForNode wrappers are unqualified (SPEC §4).

use base64::Engine as _;
use chrono::{DateTime, Duration, TimeZone};
use chrono_tz::Tz;
use rand::Rng;

use crate::amount::Cents;
use crate::model::{PaymentData, Subject, TransferAccount};
use crate::xml::escape;

/// Primitive version (V1: paGetPayment/paSendRT, V2: paGetPaymentV2/paSendRTV2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// paGetPayment / paSendRT.
    V1,
    /// paGetPaymentV2 / paSendRTV2.
    V2,
}

/// The operations of the station, with their SOAPAction and wrapper names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// paVerifyPaymentNotice.
    Verify,
    /// paGetPayment.
    GetPayment,
    /// paGetPaymentV2.
    GetPaymentV2,
    /// paSendRT.
    SendRt,
    /// paSendRTV2.
    SendRtV2,
    /// paDemandPaymentNotice.
    Demand,
}

impl Op {
    /// All operations.
    pub const ALL: [Op; 6] = [
        Op::Verify,
        Op::GetPayment,
        Op::GetPaymentV2,
        Op::SendRt,
        Op::SendRtV2,
        Op::Demand,
    ];

    /// Operation name = SOAPAction.
    pub fn name(self) -> &'static str {
        match self {
            Op::Verify => "paVerifyPaymentNotice",
            Op::GetPayment => "paGetPayment",
            Op::GetPaymentV2 => "paGetPaymentV2",
            Op::SendRt => "paSendRT",
            Op::SendRtV2 => "paSendRTV2",
            Op::Demand => "paDemandPaymentNotice",
        }
    }

    /// Request wrapper element.
    pub fn request_element(self) -> &'static str {
        match self {
            Op::Verify => "paVerifyPaymentNoticeReq",
            Op::GetPayment => "paGetPaymentReq",
            Op::GetPaymentV2 => "paGetPaymentV2Request",
            Op::SendRt => "paSendRTReq",
            Op::SendRtV2 => "paSendRTV2Request",
            Op::Demand => "paDemandPaymentNoticeRequest",
        }
    }

    /// Response wrapper element.
    pub fn response_element(self) -> &'static str {
        match self {
            Op::Verify => "paVerifyPaymentNoticeRes",
            Op::GetPayment => "paGetPaymentRes",
            Op::GetPaymentV2 => "paGetPaymentV2Response",
            Op::SendRt => "paSendRTRes",
            Op::SendRtV2 => "paSendRTV2Response",
            Op::Demand => "paDemandPaymentNoticeResponse",
        }
    }

    /// The operation whose request wrapper has this local name.
    pub fn from_request_element(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.request_element() == name)
    }

    /// getPayment of a version.
    pub fn get_payment(v: Version) -> Op {
        match v {
            Version::V1 => Op::GetPayment,
            Version::V2 => Op::GetPaymentV2,
        }
    }

    /// sendRT of a version.
    pub fn send_rt(v: Version) -> Op {
        match v {
            Version::V1 => Op::SendRt,
            Version::V2 => Op::SendRtV2,
        }
    }
}

/// `idPA`, `idBrokerPA`, `idStation` of a request.
#[derive(Debug, Clone)]
pub struct StationIds {
    /// The EC addressed (notice owner, or the EC notified for multi-beneficiary copies).
    pub id_pa: String,
    /// Intermediary.
    pub id_broker_pa: String,
    /// Station.
    pub id_station: String,
}

/// A notice: `qrCode{fiscalCode, noticeNumber}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCode {
    /// EC fiscal code (11 digits).
    pub fiscal_code: String,
    /// NAV (18 digits).
    pub notice_number: String,
}

/// Optional fields of a getPayment request.
#[derive(Debug, Clone, Default)]
pub struct GetPaymentOpts {
    /// Amount the PSP is about to collect.
    pub amount: Option<Cents>,
    /// Cart id in portal payments.
    pub payment_note: Option<String>,
    /// `POSTAL` / `PAGOPA`.
    pub transfer_type: Option<String>,
    /// Due date.
    pub due_date: Option<String>,
}

/// The PSP side of a receipt.
#[derive(Debug, Clone)]
pub struct PspInfo {
    /// idPSP.
    pub id_psp: String,
    /// pspFiscalCode.
    pub fiscal_code: Option<String>,
    /// pspPartitaIVA.
    pub partita_iva: Option<String>,
    /// PSPCompanyName (≤70).
    pub company_name: String,
    /// idChannel.
    pub id_channel: String,
    /// channelDescription (≤35).
    pub channel_description: String,
    /// paymentMethod.
    pub payment_method: Option<String>,
    /// Fee paid by the payer.
    pub fee: Option<Cents>,
}

/// The account of a receipt transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptAccount {
    /// IBAN.
    Iban(String),
    /// V2 only: base64 of the signed marcaDaBollo document.
    MbdAttachment(String),
}

/// A transfer of a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptTransfer {
    /// 1..5.
    pub id_transfer: u8,
    /// Amount.
    pub amount: Cents,
    /// Beneficiary EC.
    pub fiscal_code_pa: String,
    /// V2 only.
    pub company_name: Option<String>,
    /// IBAN or MBD.
    pub account: ReceiptAccount,
    /// Causale.
    pub remittance_information: String,
    /// Taxonomy.
    pub transfer_category: String,
    /// Metadata.
    pub metadata: Vec<(String, String)>,
}

/// A receipt (`ctReceipt` / `ctReceiptV2`).
#[derive(Debug, Clone)]
pub struct Receipt {
    /// = payment token.
    pub receipt_id: String,
    /// NAV.
    pub notice_number: String,
    /// Notice owner.
    pub fiscal_code: String,
    /// IUV.
    pub creditor_reference_id: String,
    /// Amount.
    pub payment_amount: Cents,
    /// Causale.
    pub description: String,
    /// EC name (required).
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Debtor.
    pub debtor: Subject,
    /// Transfers.
    pub transfers: Vec<ReceiptTransfer>,
    /// PSP.
    pub psp: PspInfo,
    /// Payer.
    pub payer: Option<Subject>,
    /// V2: cart id.
    pub payment_note: Option<String>,
    /// V2: part of the fee borne by the EC.
    pub primary_ci_incurred_fee: Option<Cents>,
    /// V2: bundle id.
    pub id_bundle: Option<String>,
    /// Local date-time of payment (`2026-07-02T10:15:30`).
    pub payment_date_time: Option<String>,
    /// Application date.
    pub application_date: Option<String>,
    /// Transfer date.
    pub transfer_date: Option<String>,
    /// Metadata echoed.
    pub metadata: Vec<(String, String)>,
    /// Stand-In flag.
    pub stand_in: Option<bool>,
}

/// Input of a marcaDaBollo document.
#[derive(Debug, Clone)]
pub struct MarcaDaBollo {
    /// PSP fiscal code.
    pub psp_fiscal_code: String,
    /// PSP name.
    pub psp_name: String,
    /// Stamp unique id.
    pub iubd: String,
    /// Purchase time with offset.
    pub ora_acquisto: String,
    /// Stamp value.
    pub importo: Cents,
    /// `01`.
    pub tipo_bollo: String,
    /// `hashDocumento` of the request (base64 SHA-256).
    pub digest_value: String,
}

/// A tiny indenting writer for the templates.
struct W {
    out: String,
    depth: usize,
}

impl W {
    fn new(depth: usize) -> W {
        W {
            out: String::with_capacity(2048),
            depth,
        }
    }
    fn pad(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }
    fn open(&mut self, tag: &str) {
        self.pad();
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str(">\n");
        self.depth += 1;
    }
    fn close(&mut self, tag: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.pad();
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }
    fn leaf(&mut self, tag: &str, text: &str) {
        self.pad();
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out.push_str(&escape(text));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }
    fn opt(&mut self, tag: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(tag, t);
        }
    }
    fn raw(&mut self, s: &str) {
        self.pad();
        self.out.push_str(s);
        self.out.push('\n');
    }
}

const ENVELOPE_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
xmlns:pafn=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\">\n  <soapenv:Header/>\n  <soapenv:Body>\n";
const ENVELOPE_TAIL: &str = "  </soapenv:Body>\n</soapenv:Envelope>\n";

fn envelope(wrapper: &str, body: impl FnOnce(&mut W)) -> String {
    let mut w = W::new(2);
    w.open(&format!("pafn:{wrapper}"));
    body(&mut w);
    w.close(&format!("pafn:{wrapper}"));
    let mut s = String::with_capacity(ENVELOPE_HEAD.len() + w.out.len() + ENVELOPE_TAIL.len());
    s.push_str(ENVELOPE_HEAD);
    s.push_str(&w.out);
    s.push_str(ENVELOPE_TAIL);
    s
}

fn ids(w: &mut W, ids: &StationIds) {
    w.leaf("idPA", &ids.id_pa);
    w.leaf("idBrokerPA", &ids.id_broker_pa);
    w.leaf("idStation", &ids.id_station);
}

fn qr(w: &mut W, qr: &QrCode) {
    w.open("qrCode");
    w.leaf("fiscalCode", &qr.fiscal_code);
    w.leaf("noticeNumber", &qr.notice_number);
    w.close("qrCode");
}

fn metadata(w: &mut W, md: &[(String, String)]) {
    if md.is_empty() {
        return;
    }
    w.open("metadata");
    for (k, v) in md {
        w.open("mapEntry");
        w.leaf("key", k);
        w.leaf("value", v);
        w.close("mapEntry");
    }
    w.close("metadata");
}

fn subject(w: &mut W, tag: &str, s: &Subject) {
    w.open(tag);
    w.open("uniqueIdentifier");
    w.leaf("entityUniqueIdentifierType", &s.id_type);
    w.leaf("entityUniqueIdentifierValue", &s.id_value);
    w.close("uniqueIdentifier");
    w.leaf("fullName", &s.full_name);
    w.opt("streetName", s.street_name.as_deref());
    w.opt("civicNumber", s.civic_number.as_deref());
    w.opt("postalCode", s.postal_code.as_deref());
    w.opt("city", s.city.as_deref());
    w.opt("stateProvinceRegion", s.state_province_region.as_deref());
    w.opt("country", s.country.as_deref());
    w.opt("e-mail", s.email.as_deref());
    w.close(tag);
}

/// `paVerifyPaymentNoticeReq`.
pub fn verify_request(station: &StationIds, notice: &QrCode) -> String {
    envelope(Op::Verify.request_element(), |w| {
        ids(w, station);
        qr(w, notice);
    })
}

/// `paGetPaymentReq` / `paGetPaymentV2Request` (same fields).
pub fn get_payment_request(
    v: Version,
    station: &StationIds,
    notice: &QrCode,
    o: &GetPaymentOpts,
) -> String {
    envelope(Op::get_payment(v).request_element(), |w| {
        ids(w, station);
        qr(w, notice);
        w.opt("amount", o.amount.map(Cents::to_xml).as_deref());
        w.opt("paymentNote", o.payment_note.as_deref());
        w.opt("transferType", o.transfer_type.as_deref());
        w.opt("dueDate", o.due_date.as_deref());
    })
}

/// `paDemandPaymentNoticeRequest`; `service_data` is the XML document (base64-encoded here).
pub fn demand_request(
    station: &StationIds,
    id_servizio: &str,
    id_soggetto_servizio: &str,
    service_data: &[u8],
) -> String {
    envelope(Op::Demand.request_element(), |w| {
        ids(w, station);
        w.leaf("idServizio", id_servizio);
        w.leaf("idSoggettoServizio", id_soggetto_servizio);
        w.leaf(
            "datiSpecificiServizioRequest",
            &base64::engine::general_purpose::STANDARD.encode(service_data),
        );
    })
}

/// `paSendRTReq` / `paSendRTV2Request`. A V1 receipt cannot carry an MBD attachment, and V1
/// transfers have no companyName (dropped).
pub fn send_rt_request(v: Version, station: &StationIds, r: &Receipt) -> Result<String, String> {
    if v == Version::V1
        && r.transfers
            .iter()
            .any(|t| matches!(t.account, ReceiptAccount::MbdAttachment(_)))
    {
        return Err("a V1 receipt cannot carry a digital stamp (MBDAttachment)".into());
    }
    if r.transfers.is_empty() || r.transfers.len() > 5 {
        return Err(format!(
            "a receipt needs 1..5 transfers, not {}",
            r.transfers.len()
        ));
    }
    Ok(envelope(Op::send_rt(v).request_element(), |w| {
        ids(w, station);
        w.open("receipt");
        w.leaf("receiptId", &r.receipt_id);
        w.leaf("noticeNumber", &r.notice_number);
        w.leaf("fiscalCode", &r.fiscal_code);
        w.leaf("outcome", "OK");
        w.leaf("creditorReferenceId", &r.creditor_reference_id);
        w.leaf("paymentAmount", &r.payment_amount.to_xml());
        w.leaf("description", &r.description);
        w.leaf("companyName", &r.company_name);
        w.opt("officeName", r.office_name.as_deref());
        subject(w, "debtor", &r.debtor);
        w.open("transferList");
        for t in &r.transfers {
            w.open("transfer");
            w.leaf("idTransfer", &t.id_transfer.to_string());
            w.leaf("transferAmount", &t.amount.to_xml());
            w.leaf("fiscalCodePA", &t.fiscal_code_pa);
            if v == Version::V2 {
                w.opt("companyName", t.company_name.as_deref());
            }
            match &t.account {
                ReceiptAccount::Iban(i) => w.leaf("IBAN", i),
                ReceiptAccount::MbdAttachment(b) => w.leaf("MBDAttachment", b),
            }
            w.leaf("remittanceInformation", &t.remittance_information);
            w.leaf("transferCategory", &t.transfer_category);
            metadata(w, &t.metadata);
            w.close("transfer");
        }
        w.close("transferList");
        w.leaf("idPSP", &r.psp.id_psp);
        w.opt("pspFiscalCode", r.psp.fiscal_code.as_deref());
        w.opt("pspPartitaIVA", r.psp.partita_iva.as_deref());
        w.leaf("PSPCompanyName", &r.psp.company_name);
        w.leaf("idChannel", &r.psp.id_channel);
        w.leaf("channelDescription", &r.psp.channel_description);
        if let Some(p) = &r.payer {
            subject(w, "payer", p);
        }
        w.opt("paymentMethod", r.psp.payment_method.as_deref());
        if v == Version::V2 {
            w.opt("paymentNote", r.payment_note.as_deref());
        }
        w.opt("fee", r.psp.fee.map(Cents::to_xml).as_deref());
        if v == Version::V2 {
            w.opt(
                "primaryCiIncurredFee",
                r.primary_ci_incurred_fee.map(Cents::to_xml).as_deref(),
            );
            w.opt("idBundle", r.id_bundle.as_deref());
        }
        w.opt("paymentDateTime", r.payment_date_time.as_deref());
        w.opt("applicationDate", r.application_date.as_deref());
        w.opt("transferDate", r.transfer_date.as_deref());
        metadata(w, &r.metadata);
        w.opt("standIn", r.stand_in.map(|b| b.to_string()).as_deref());
        w.close("receipt");
    }))
}

/// A marcaDaBollo document like `examples/marcaDaBollo_sample.xml`. The signature is
/// structurally valid and cryptographically meaningless (the simulator has no PSP key).
pub fn marca_da_bollo_xml(m: &MarcaDaBollo) -> String {
    let mut w = W::new(0);
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.raw("<marcaDaBollo xmlns=\"http://www.agenziaentrate.gov.it/2014/MarcaDaBollo\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">");
    w.depth += 1;
    w.open("PSP");
    w.leaf("CodiceFiscale", &m.psp_fiscal_code);
    w.leaf("Denominazione", &m.psp_name);
    w.close("PSP");
    w.leaf("IUBD", &m.iubd);
    w.leaf("OraAcquisto", &m.ora_acquisto);
    w.leaf("Importo", &m.importo.to_xml());
    w.leaf("TipoBollo", &m.tipo_bollo);
    w.open("ImprontaDocumento");
    w.raw("<DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>");
    w.leaf("ds:DigestValue", &m.digest_value);
    w.close("ImprontaDocumento");
    w.open("ds:Signature");
    w.open("ds:SignedInfo");
    w.raw("<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/>");
    w.raw("<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>");
    w.raw("<ds:Reference URI=\"\">");
    w.depth += 1;
    w.open("ds:Transforms");
    w.raw("<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>");
    w.close("ds:Transforms");
    w.raw("<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>");
    w.leaf(
        "ds:DigestValue",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    w.close("ds:Reference");
    w.close("ds:SignedInfo");
    w.leaf(
        "ds:SignatureValue",
        &base64::engine::general_purpose::STANDARD.encode(b"PAGOPA-SIM-FAKE-SIGNATURE"),
    );
    w.close("ds:Signature");
    w.depth -= 1;
    w.raw("</marcaDaBollo>");
    w.out
}

/// Dates for a receipt, in Italian local time: `paymentDateTime` (no offset), application and
/// transfer (D+1) dates, and the stamp purchase time with offset.
#[derive(Debug, Clone)]
pub struct ReceiptDates {
    /// `2026-07-02T10:15:30`.
    pub payment_date_time: String,
    /// `2026-07-02`.
    pub application_date: String,
    /// `2026-07-03`.
    pub transfer_date: String,
    /// `2026-07-02T10:15:30+02:00`.
    pub with_offset: String,
}

impl ReceiptDates {
    /// From an instant in a time zone.
    pub fn at(t: DateTime<Tz>) -> ReceiptDates {
        let next = t + Duration::days(1);
        ReceiptDates {
            payment_date_time: t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            application_date: t.format("%Y-%m-%d").to_string(),
            transfer_date: next.format("%Y-%m-%d").to_string(),
            with_offset: t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        }
    }

    /// Now, Europe/Rome.
    pub fn now() -> ReceiptDates {
        ReceiptDates::at(chrono_tz::Europe::Rome.from_utc_datetime(&chrono::Utc::now().naive_utc()))
    }
}

/// A random 32-hex-digit id (payment token / receiptId style).
pub fn random_token<R: Rng + ?Sized>(rng: &mut R) -> String {
    let v: u128 = rng.random();
    format!("{v:032x}")
}

/// Options for a receipt built from a getPayment answer.
#[derive(Debug, Clone, Default)]
pub struct ReceiptOpts {
    /// V2 paymentNote (cart id).
    pub payment_note: Option<String>,
    /// V2 idBundle.
    pub id_bundle: Option<String>,
    /// V2 primaryCiIncurredFee.
    pub primary_ci_incurred_fee: Option<Cents>,
    /// Who paid (defaults to the debtor).
    pub payer: Option<Subject>,
    /// Company name to use when the getPayment answer had none (V1 allows that).
    pub fallback_company_name: Option<String>,
}

/// Builds the receipt of a payment, echoing the getPayment answer (debtor, transfers, metadata).
/// Stamp transfers become `MBDAttachment` (V2 only; a V1 receipt with a stamp is refused).
pub fn receipt_from_payment<R: Rng + ?Sized>(
    v: Version,
    notice: &QrCode,
    data: &PaymentData,
    psp: &PspInfo,
    dates: &ReceiptDates,
    o: &ReceiptOpts,
    rng: &mut R,
) -> Result<Receipt, String> {
    let mut transfers = Vec::with_capacity(data.transfers.len());
    for t in &data.transfers {
        let account = match &t.account {
            TransferAccount::Iban(i) => ReceiptAccount::Iban(i.clone()),
            TransferAccount::Stamp {
                hash_documento,
                tipo_bollo,
                ..
            } => {
                if v == Version::V1 {
                    return Err("getPayment answer has a stamp transfer: not possible in V1".into());
                }
                let iubd: u64 = rng.random_range(10_000_000_000_000..100_000_000_000_000);
                let doc = marca_da_bollo_xml(&MarcaDaBollo {
                    psp_fiscal_code: psp
                        .fiscal_code
                        .clone()
                        .unwrap_or_else(|| psp.id_psp.clone()),
                    psp_name: psp.company_name.clone(),
                    iubd: iubd.to_string(),
                    ora_acquisto: dates.with_offset.clone(),
                    importo: t.amount,
                    tipo_bollo: tipo_bollo.clone(),
                    digest_value: hash_documento.clone(),
                });
                ReceiptAccount::MbdAttachment(
                    base64::engine::general_purpose::STANDARD.encode(doc.as_bytes()),
                )
            }
        };
        transfers.push(ReceiptTransfer {
            id_transfer: t.id_transfer,
            amount: t.amount,
            fiscal_code_pa: t.fiscal_code_pa.clone(),
            company_name: if v == Version::V2 {
                t.company_name.clone()
            } else {
                None
            },
            account,
            remittance_information: t.remittance_information.clone(),
            transfer_category: t.transfer_category.clone(),
            metadata: t.metadata.clone(),
        });
    }
    let company_name = data
        .company_name
        .clone()
        .or_else(|| o.fallback_company_name.clone())
        .unwrap_or_else(|| notice.fiscal_code.clone());
    Ok(Receipt {
        receipt_id: random_token(rng),
        notice_number: notice.notice_number.clone(),
        fiscal_code: notice.fiscal_code.clone(),
        creditor_reference_id: data.creditor_reference_id.clone(),
        payment_amount: data.payment_amount,
        description: data.description.clone(),
        company_name,
        office_name: data.office_name.clone(),
        debtor: data.debtor.clone(),
        transfers,
        psp: psp.clone(),
        payer: Some(o.payer.clone().unwrap_or_else(|| data.debtor.clone())),
        payment_note: o.payment_note.clone(),
        primary_ci_incurred_fee: o.primary_ci_incurred_fee,
        id_bundle: o.id_bundle.clone(),
        payment_date_time: Some(dates.payment_date_time.clone()),
        application_date: Some(dates.application_date.clone()),
        transfer_date: Some(dates.transfer_date.clone()),
        metadata: data.metadata.clone(),
        stand_in: Some(false),
    })
}

/// What a Stand-In receipt is built from: the Node paid without asking the EC, so no getPayment.
#[derive(Debug, Clone)]
pub struct StandInInput {
    /// The notice.
    pub notice: QrCode,
    /// Amount collected (may differ from the position's).
    pub amount: Cents,
    /// Causale.
    pub description: String,
    /// EC name.
    pub company_name: String,
    /// Account credited.
    pub iban: String,
    /// Taxonomy code.
    pub transfer_category: String,
    /// Debtor (ANONIMO when unknown).
    pub debtor: Subject,
}

/// A Stand-In receipt: `standIn=true`, one transfer of the whole amount to the notice's EC.
pub fn stand_in_receipt<R: Rng + ?Sized>(
    i: &StandInInput,
    psp: &PspInfo,
    dates: &ReceiptDates,
    rng: &mut R,
) -> Receipt {
    let iuv = crate::nav::iuv_of(&i.notice.notice_number)
        .unwrap_or(&i.notice.notice_number)
        .to_string();
    Receipt {
        receipt_id: random_token(rng),
        notice_number: i.notice.notice_number.clone(),
        fiscal_code: i.notice.fiscal_code.clone(),
        creditor_reference_id: iuv,
        payment_amount: i.amount,
        description: i.description.clone(),
        company_name: i.company_name.clone(),
        office_name: None,
        debtor: i.debtor.clone(),
        transfers: vec![ReceiptTransfer {
            id_transfer: 1,
            amount: i.amount,
            fiscal_code_pa: i.notice.fiscal_code.clone(),
            company_name: None,
            account: ReceiptAccount::Iban(i.iban.clone()),
            remittance_information: i.description.clone(),
            transfer_category: i.transfer_category.clone(),
            metadata: Vec::new(),
        }],
        psp: psp.clone(),
        payer: None,
        payment_note: None,
        primary_ci_incurred_fee: None,
        id_bundle: None,
        payment_date_time: Some(dates.payment_date_time.clone()),
        application_date: Some(dates.application_date.clone()),
        transfer_date: Some(dates.transfer_date.clone()),
        metadata: Vec::new(),
        stand_in: Some(true),
    }
}
