//! The station's SOAP messages (SANP 3.x `paForNode.xsd`, SPEC §4–§5): request decoding
//! (namespace-aware, validated against the XSD facts of [`super::schema`]) and response
//! encoding (element order, two-decimal amounts, texts cleaned to their XSD lengths).
//!
//! Size (~1 150 lines of code): the six operations' requests and answers, V1 and V2, in one
//! file so that each element's XSD facts, decoding and encoding are read side by side; the
//! XML helpers, faults and schema facts are separate (`xml.rs`, `faults.rs`, `schema.rs`).

use base64::Engine as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::faults::{Fault, FaultCode};
use super::schema::{self, check_simple, Particle, St};
use super::xml::{self, escape, Element};
use crate::ids::Amount;

/// Namespace of the paForNode wrapper elements.
pub const NS: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";
/// SOAP 1.1 envelope namespace.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Namespace of the marca da bollo XML carried in `MBDAttachment` (SPEC §10).
pub const MARCA_NS: &str = "http://www.agenziaentrate.gov.it/2014/MarcaDaBollo";

/// The six station operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// paVerifyPaymentNotice.
    VerifyPaymentNotice,
    /// paGetPayment.
    GetPayment,
    /// paGetPaymentV2.
    GetPaymentV2,
    /// paSendRT.
    SendRt,
    /// paSendRTV2.
    SendRtV2,
    /// paDemandPaymentNotice.
    DemandPaymentNotice,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 6] = [
        Self::VerifyPaymentNotice,
        Self::GetPayment,
        Self::GetPaymentV2,
        Self::SendRt,
        Self::SendRtV2,
        Self::DemandPaymentNotice,
    ];

    /// The SOAPAction / operation name (`paVerifyPaymentNotice`).
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifyPaymentNotice => "paVerifyPaymentNotice",
            Self::GetPayment => "paGetPayment",
            Self::GetPaymentV2 => "paGetPaymentV2",
            Self::SendRt => "paSendRT",
            Self::SendRtV2 => "paSendRTV2",
            Self::DemandPaymentNotice => "paDemandPaymentNotice",
        }
    }

    /// The request wrapper element.
    pub fn request_element(self) -> &'static str {
        match self {
            Self::VerifyPaymentNotice => "paVerifyPaymentNoticeReq",
            Self::GetPayment => "paGetPaymentReq",
            Self::GetPaymentV2 => "paGetPaymentV2Request",
            Self::SendRt => "paSendRTReq",
            Self::SendRtV2 => "paSendRTV2Request",
            Self::DemandPaymentNotice => "paDemandPaymentNoticeRequest",
        }
    }

    /// The response wrapper element.
    pub fn response_element(self) -> &'static str {
        match self {
            Self::VerifyPaymentNotice => "paVerifyPaymentNoticeRes",
            Self::GetPayment => "paGetPaymentRes",
            Self::GetPaymentV2 => "paGetPaymentV2Response",
            Self::SendRt => "paSendRTRes",
            Self::SendRtV2 => "paSendRTV2Response",
            Self::DemandPaymentNotice => "paDemandPaymentNoticeResponse",
        }
    }

    fn request_model(self) -> &'static [Particle] {
        match self {
            Self::VerifyPaymentNotice => schema::VERIFY_REQ,
            Self::GetPayment | Self::GetPaymentV2 => schema::GET_PAYMENT_REQ,
            Self::SendRt => schema::SEND_RT_REQ,
            Self::SendRtV2 => schema::SEND_RT_V2_REQ,
            Self::DemandPaymentNotice => schema::DEMAND_REQ,
        }
    }

    /// The XSD content model of the response wrapper.
    pub fn response_model(self) -> &'static [Particle] {
        match self {
            Self::VerifyPaymentNotice => schema::VERIFY_RES,
            Self::GetPayment => schema::GET_PAYMENT_RES,
            Self::GetPaymentV2 => schema::GET_PAYMENT_V2_RES,
            Self::SendRt | Self::SendRtV2 => schema::SEND_RT_RES,
            Self::DemandPaymentNotice => schema::DEMAND_RES,
        }
    }

    /// From a request wrapper's local name.
    pub fn from_request_element(local: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.request_element() == local)
    }

    /// From a SOAPAction header value (quotes and a namespace prefix path tolerated).
    pub fn from_soap_action(action: &str) -> Option<Self> {
        let a = action.trim().trim_matches('"');
        let a = a.rsplit(['/', '#']).next().unwrap_or(a);
        Self::ALL.into_iter().find(|o| o.name() == a)
    }
}

/// idPA, idBrokerPA, idStation of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StationIds {
    /// idPA.
    pub id_pa: String,
    /// idBrokerPA.
    pub id_broker_pa: String,
    /// idStation.
    pub id_station: String,
}

/// ctQrCode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QrCode {
    /// Organization fiscal code (11 digits).
    pub fiscal_code: String,
    /// Notice number (18 digits).
    pub notice_number: String,
}

/// ctSubject (debtor or payer).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `F` or `G`.
    pub kind: String,
    /// Fiscal code or `ANONIMO` (2..16).
    pub id_value: String,
    /// Name (1..70).
    pub full_name: String,
    /// Street.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State/province/region.
    pub state_province_region: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// The decoded marca da bollo of an `MBDAttachment` (SPEC §10, MarcaDaBollo.xsd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarcaDaBollo {
    /// IUBD: the stamp's unique id.
    pub iubd: String,
    /// PSP fiscal code.
    pub psp_fiscal_code: String,
    /// PSP name.
    pub psp_name: String,
    /// Purchase time as written (`OraAcquisto`).
    pub purchased_at: String,
    /// Stamp amount in cents.
    pub amount: Option<Amount>,
    /// TipoBollo.
    pub stamp_type: String,
    /// ImprontaDocumento/DigestValue (base64 SHA-256 of the document).
    pub document_digest: String,
}

/// A transfer of a receipt (ctTransferPA / ctTransferPAReceiptV2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptTransfer {
    /// 1..5.
    pub id_transfer: u8,
    /// Cents.
    pub amount: Amount,
    /// Beneficiary organization.
    pub fiscal_code_pa: String,
    /// Beneficiary name (V2).
    pub company_name: Option<String>,
    /// IBAN credited (absent for a stamp).
    pub iban: Option<String>,
    /// The stamp bought (V2 `MBDAttachment`), base64 as received.
    pub mbd_attachment: Option<String>,
    /// The decoded stamp, when the attachment could be read.
    pub marca_da_bollo: Option<MarcaDaBollo>,
    /// Why the attachment could not be read, if so.
    pub marca_da_bollo_error: Option<String>,
    /// Causale.
    pub remittance_information: String,
    /// Taxonomy code.
    pub transfer_category: String,
    /// Metadata.
    pub metadata: Vec<(String, String)>,
}

/// ctReceipt / ctReceiptV2 (SPEC §5.4–§5.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// receiptId (= paymentToken): the idempotency key.
    pub receipt_id: String,
    /// Notice number.
    pub notice_number: String,
    /// Organization owning the notice.
    pub fiscal_code: String,
    /// OK / KO.
    pub outcome: String,
    /// IUV.
    pub creditor_reference_id: String,
    /// Paid amount, cents.
    pub payment_amount: Amount,
    /// Description.
    pub description: String,
    /// Organization name.
    pub company_name: String,
    /// Office name.
    pub office_name: Option<String>,
    /// Debtor.
    pub debtor: Subject,
    /// Transfers.
    pub transfers: Vec<ReceiptTransfer>,
    /// PSP id.
    pub id_psp: String,
    /// PSP fiscal code.
    pub psp_fiscal_code: Option<String>,
    /// PSP VAT number.
    pub psp_partita_iva: Option<String>,
    /// PSP name.
    pub psp_company_name: String,
    /// Channel.
    pub id_channel: String,
    /// Channel description.
    pub channel_description: String,
    /// Payer.
    pub payer: Option<Subject>,
    /// Payment method.
    pub payment_method: Option<String>,
    /// Cart id (V2).
    pub payment_note: Option<String>,
    /// Fee paid by the payer, cents.
    pub fee: Option<Amount>,
    /// Fee borne by the organization (V2), cents.
    pub primary_ci_incurred_fee: Option<Amount>,
    /// Bundle (V2).
    pub id_bundle: Option<String>,
    /// Organization bundle (V2).
    pub id_ci_bundle: Option<String>,
    /// Legally relevant payment time as written.
    pub payment_date_time: Option<String>,
    /// Application date.
    pub application_date: Option<String>,
    /// Transfer (credit) date.
    pub transfer_date: Option<String>,
    /// Metadata echoed.
    pub metadata: Vec<(String, String)>,
    /// Paid in Stand-In.
    pub stand_in: bool,
}

/// `transferType` of paGetPayment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferType {
    /// Prefer postal accounts.
    Postal,
    /// Default.
    Pagopa,
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// paVerifyPaymentNotice.
    Verify {
        /// Ids.
        ids: StationIds,
        /// Notice.
        qr: QrCode,
    },
    /// paGetPayment / paGetPaymentV2.
    GetPayment {
        /// Ids.
        ids: StationIds,
        /// Notice.
        qr: QrCode,
        /// Amount the PSP is about to collect (informative).
        amount: Option<Amount>,
        /// Cart id.
        payment_note: Option<String>,
        /// Postal preference.
        transfer_type: Option<TransferType>,
        /// V2?
        v2: bool,
    },
    /// paSendRT / paSendRTV2.
    SendRt {
        /// Ids.
        ids: StationIds,
        /// The receipt.
        receipt: Box<Receipt>,
        /// V2?
        v2: bool,
        /// How the request departs from the XSD (empty for a schema-valid receipt). A receipt
        /// is read even when it departs, as long as it can be attributed (collected money is
        /// never refused); [`crate::receipt_check::decide`] flags the departures.
        departures: Vec<String>,
    },
    /// paDemandPaymentNotice.
    Demand {
        /// Ids.
        ids: StationIds,
        /// idServizio (5 chars).
        id_servizio: String,
        /// idSoggettoServizio (5 chars).
        id_soggetto_servizio: String,
        /// datiSpecificiServizioRequest, decoded.
        service_data: Vec<u8>,
    },
}

impl Request {
    /// The station ids of the request.
    pub fn ids(&self) -> &StationIds {
        match self {
            Request::Verify { ids, .. }
            | Request::GetPayment { ids, .. }
            | Request::SendRt { ids, .. }
            | Request::Demand { ids, .. } => ids,
        }
    }
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not XML, not a SOAP 1.1 envelope, or an unknown operation: PAA_SINTASSI_EXTRAXSD.
    #[error("{0}")]
    ExtraXsd(String),
    /// The body violates the XSD: PAA_SINTASSI_XSD.
    #[error("{0}")]
    Xsd(String),
}

impl DecodeError {
    /// The fault code to answer.
    pub fn fault_code(&self) -> FaultCode {
        match self {
            DecodeError::ExtraXsd(_) => FaultCode::SintassiExtraXsd,
            DecodeError::Xsd(_) => FaultCode::SintassiXsd,
        }
    }
}

/// A decode failure with the operation when it could be told (from the body element or the
/// SOAPAction), so the answer can use the right response element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Operation, if known.
    pub operation: Option<Operation>,
    /// The idPA read from the body, if any (for the fault `id`).
    pub id_pa: Option<String>,
    /// Why.
    pub error: DecodeError,
}

/// The global attributes of envelope.xsd that lax wildcards validate wherever they appear:
/// `mustUnderstand` is a boolean restricted to the pattern `0|1`.
fn check_soap_attribute_values(e: &Element) -> Result<(), String> {
    for a in &e.attributes {
        if a.ns.as_deref() == Some(SOAP_NS) && a.local == "mustUnderstand" {
            let v = collapse(&a.value);
            if v != "0" && v != "1" {
                return Err(format!("soap:mustUnderstand {v:?} is not 0 or 1"));
            }
        }
    }
    Ok(())
}

/// Lax assessment of a wildcard-matched element (Header entries, elements after the Body):
/// no declaration for the element itself, but declared global attributes are validated, in
/// the element and its descendants.
fn lax_soap_attributes(e: &Element) -> Result<(), String> {
    check_soap_attribute_values(e)?;
    e.children.iter().try_for_each(lax_soap_attributes)
}

fn envelope_check(root: &Element) -> Result<&Element, String> {
    if !root.is(Some(SOAP_NS), "Envelope") {
        return Err(format!(
            "root element is {{{}}}{}, expected a SOAP 1.1 Envelope",
            root.ns.as_deref().unwrap_or(""),
            root.local
        ));
    }
    let foreign_attrs = |e: &Element| {
        e.attributes
            .iter()
            .all(|a| a.ns.as_deref().is_some_and(|ns| ns != SOAP_NS))
    };
    if !root.text.trim().is_empty() {
        return Err("text inside the Envelope".into());
    }
    if !foreign_attrs(root) {
        return Err("unexpected attribute on the Envelope".into());
    }
    let mut it = root.children.iter().peekable();
    if let Some(h) = it.peek() {
        if h.is(Some(SOAP_NS), "Header") {
            if !h.text.trim().is_empty() || !foreign_attrs(h) {
                return Err("invalid SOAP Header".into());
            }
            if h.children
                .iter()
                .any(|c| c.ns.is_none() || c.ns.as_deref() == Some(SOAP_NS))
            {
                return Err("SOAP Header entries must be namespace-qualified".into());
            }
            for entry in &h.children {
                lax_soap_attributes(entry)?;
            }
            it.next();
        }
    }
    let body = it
        .next()
        .filter(|b| b.is(Some(SOAP_NS), "Body"))
        .ok_or_else(|| "missing SOAP Body".to_string())?;
    for rest in it {
        if rest.ns.is_none() || rest.ns.as_deref() == Some(SOAP_NS) {
            return Err(format!("unexpected element {} after the Body", rest.local));
        }
        lax_soap_attributes(rest)?;
    }
    if !body.text.trim().is_empty() {
        return Err("text inside the SOAP Body".into());
    }
    // Body: `anyAttribute namespace="##any" processContents="lax"` (any attribute, the
    // envelope's global ones checked)
    check_soap_attribute_values(body)?;
    match body.children.as_slice() {
        [op] => Ok(op),
        [] => Err("empty SOAP Body".into()),
        _ => Err("the SOAP Body holds more than one element".into()),
    }
}

/// Decodes a station request. `soap_action` is used only to name the operation when the body
/// does not (the body element wins).
///
/// Errors: [`Rejected`] with `ExtraXsd` (not XML / not SOAP / unknown operation) or `Xsd`
/// (schema violation, including a wrapper in the wrong namespace).
pub fn decode_request(
    body: &[u8],
    soap_action: Option<&str>,
) -> Result<(Operation, Request), Rejected> {
    let action_op = soap_action.and_then(Operation::from_soap_action);
    let reject = |operation: Option<Operation>, id_pa: Option<String>, error| Rejected {
        operation,
        id_pa,
        error,
    };
    let root = xml::parse(body)
        .map_err(|e| reject(action_op, None, DecodeError::ExtraXsd(e.to_string())))?;
    let op_el =
        envelope_check(&root).map_err(|e| reject(action_op, None, DecodeError::ExtraXsd(e)))?;
    let id_pa = op_el.child_text("idPA").map(str::to_string);
    let Some(op) = Operation::from_request_element(&op_el.local) else {
        return Err(reject(
            action_op,
            id_pa,
            DecodeError::ExtraXsd(format!("unknown operation element {}", op_el.local)),
        ));
    };
    if op_el.ns.as_deref() != Some(NS) {
        return Err(reject(
            Some(op),
            id_pa,
            DecodeError::Xsd(format!(
                "{} must be in namespace {NS}, found {}",
                op_el.local,
                op_el.ns.as_deref().unwrap_or("no namespace")
            )),
        ));
    }
    let mut departures = Vec::new();
    if let Err(e) = schema::validate(op_el, op.request_model()) {
        // a receipt is read anyway when it can be attributed: the departure is flagged
        if !matches!(op, Operation::SendRt | Operation::SendRtV2) {
            return Err(reject(Some(op), id_pa, DecodeError::Xsd(e.to_string())));
        }
        departures.push(e.to_string());
    }
    let request = read_request(op, op_el, &mut departures).map_err(|why| {
        let error = departures
            .first()
            .map(|d| format!("{d}; {why}"))
            .unwrap_or(why);
        reject(Some(op), id_pa.clone(), DecodeError::Xsd(error))
    })?;
    Ok((op, request))
}

// ---- reading a validated tree ---------------------------------------------------------------

fn req<'a>(e: &'a Element, name: &str) -> Result<&'a Element, String> {
    e.child(name)
        .ok_or_else(|| format!("{}: missing {name}", e.local))
}

fn text(e: &Element, name: &str) -> Result<String, String> {
    Ok(req(e, name)?.text.clone())
}

/// An identifier of a receipt read trimmed (a padded one is a departure, still attributable);
/// one of blanks only is kept as it came.
fn identifier(s: String) -> String {
    let t = s.trim();
    if t.is_empty() || t.len() == s.len() {
        s
    } else {
        t.to_string()
    }
}

fn opt_text(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text.clone())
}

fn collapse(s: &str) -> String {
    s.split([' ', '\t', '\n', '\r'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cents of a schema-valid `\d+\.\d{2}` text (leading zeros and surrounding blanks allowed).
pub fn amount_of(raw: &str) -> Result<Amount, String> {
    let v = collapse(raw);
    let (i, f) = v.split_once('.').unwrap_or((v.as_str(), "00"));
    if f.is_empty() || f.len() > 2 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not an amount"));
    }
    let i = i.trim_start_matches('0');
    let int: i64 = if i.is_empty() {
        0
    } else {
        i.parse().map_err(|_| format!("{v:?} is not an amount"))?
    };
    let frac: i64 = f.parse().map_err(|_| format!("{v:?} is not an amount"))?;
    let frac = if f.len() == 1 { frac * 10 } else { frac };
    Amount::from_cents(int.saturating_mul(100).saturating_add(frac)).map_err(|e| e.to_string())
}

fn boolean(raw: &str) -> bool {
    matches!(collapse(raw).as_str(), "true" | "1")
}

fn ids(e: &Element) -> Result<StationIds, String> {
    Ok(StationIds {
        id_pa: text(e, "idPA")?,
        id_broker_pa: text(e, "idBrokerPA")?,
        id_station: text(e, "idStation")?,
    })
}

fn qr(e: &Element) -> Result<QrCode, String> {
    let q = req(e, "qrCode")?;
    Ok(QrCode {
        fiscal_code: text(q, "fiscalCode")?,
        notice_number: text(q, "noticeNumber")?,
    })
}

fn metadata(e: &Element) -> Vec<(String, String)> {
    e.child("metadata")
        .map(|m| {
            m.children_named("mapEntry")
                .map(|me| {
                    (
                        me.child_text("key").unwrap_or_default().to_string(),
                        me.child_text("value").unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn subject(e: &Element) -> Result<Subject, String> {
    let u = req(e, "uniqueIdentifier")?;
    Ok(Subject {
        kind: text(u, "entityUniqueIdentifierType")?,
        id_value: text(u, "entityUniqueIdentifierValue")?,
        full_name: text(e, "fullName")?,
        street_name: opt_text(e, "streetName"),
        civic_number: opt_text(e, "civicNumber"),
        postal_code: opt_text(e, "postalCode"),
        city: opt_text(e, "city"),
        state_province_region: opt_text(e, "stateProvinceRegion"),
        country: opt_text(e, "country"),
        email: opt_text(e, "e-mail"),
    })
}

/// Decodes the base64 `MBDAttachment` and reads the marca da bollo it carries.
pub fn read_marca_da_bollo(b64: &str) -> Result<MarcaDaBollo, String> {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("MBDAttachment is not base64: {e}"))?;
    let root = xml::parse(&bytes).map_err(|e| format!("MBDAttachment: {e}"))?;
    if !root.is(Some(MARCA_NS), "marcaDaBollo") {
        return Err(format!(
            "MBDAttachment root is {}, expected marcaDaBollo",
            root.local
        ));
    }
    let q = |e: &Element, name: &str| -> Option<String> {
        e.children
            .iter()
            .find(|c| c.ns.as_deref() == Some(MARCA_NS) && c.local == name)
            .map(|c| c.text.trim().to_string())
    };
    let psp = root
        .children
        .iter()
        .find(|c| c.local == "PSP")
        .ok_or("MBDAttachment: missing PSP")?;
    let digest = root
        .children
        .iter()
        .find(|c| c.local == "ImprontaDocumento")
        .and_then(|i| i.children.iter().find(|c| c.local == "DigestValue"))
        .map(|d| d.text.trim().to_string())
        .ok_or("MBDAttachment: missing ImprontaDocumento/DigestValue")?;
    Ok(MarcaDaBollo {
        iubd: q(&root, "IUBD").ok_or("MBDAttachment: missing IUBD")?,
        psp_fiscal_code: q(psp, "CodiceFiscale").unwrap_or_default(),
        psp_name: q(psp, "Denominazione").unwrap_or_default(),
        purchased_at: q(&root, "OraAcquisto").unwrap_or_default(),
        amount: q(&root, "Importo").and_then(|i| amount_of(&i).ok()),
        stamp_type: q(&root, "TipoBollo").unwrap_or_default(),
        document_digest: digest,
    })
}

/// A text the receipt reader tolerates missing (reported in `departures`).
fn soft(e: &Element, name: &str, path: &str, departures: &mut Vec<String>) -> String {
    match e.child(name) {
        Some(c) => c.text.clone(),
        None => {
            departures.push(format!("{path}{name}: missing"));
            String::new()
        }
    }
}

/// Reads a receipt. Fields that identify the payment (receiptId, noticeNumber, fiscalCode,
/// outcome, paymentAmount) are required: without them the receipt cannot be attributed. Every
/// other field that is missing or unreadable is filled with a neutral value and reported in
/// `departures` (the acceptance rule, [`crate::receipt_check`], flags them).
fn receipt(e: &Element, departures: &mut Vec<String>) -> Result<Receipt, String> {
    let mut transfers = Vec::new();
    let list = e.child("transferList");
    for (i, t) in list
        .map(|l| l.children_named("transfer").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let path = format!("receipt.transferList.transfer[{i}].");
        let mbd = opt_text(t, "MBDAttachment");
        let (marca, marca_err) = match &mbd {
            Some(b) => match read_marca_da_bollo(b) {
                Ok(m) => (Some(m), None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        };
        let id_raw = soft(t, "idTransfer", &path, departures);
        let id_transfer = collapse(&id_raw)
            .trim_start_matches('+')
            .parse()
            .unwrap_or_else(|_| u8::try_from(i + 1).unwrap_or(u8::MAX));
        let amount_raw = soft(t, "transferAmount", &path, departures);
        let amount = amount_of(&amount_raw).unwrap_or(Amount::ZERO);
        let fiscal_code_pa = soft(t, "fiscalCodePA", &path, departures);
        let remittance_information = soft(t, "remittanceInformation", &path, departures);
        let transfer_category = soft(t, "transferCategory", &path, departures);
        transfers.push(ReceiptTransfer {
            id_transfer,
            amount,
            fiscal_code_pa,
            company_name: opt_text(t, "companyName"),
            iban: opt_text(t, "IBAN"),
            mbd_attachment: mbd,
            marca_da_bollo: marca,
            marca_da_bollo_error: marca_err,
            remittance_information,
            transfer_category,
            metadata: metadata(t),
        });
    }
    if list.is_none() {
        departures.push("receipt.transferList: missing".into());
    }
    let amount_opt =
        |name: &str| -> Option<Amount> { e.child(name).and_then(|c| amount_of(&c.text).ok()) };
    let debtor = match e.child("debtor").map(subject) {
        Some(Ok(d)) => d,
        Some(Err(why)) => {
            departures.push(format!("receipt.debtor: {why}"));
            Subject::default()
        }
        None => {
            departures.push("receipt.debtor: missing".into());
            Subject::default()
        }
    };
    let path = "receipt.";
    Ok(Receipt {
        // identifiers are read trimmed: a padded notice number or fiscal code (read on as a
        // departure) must still find its position and organization
        receipt_id: identifier(text(e, "receiptId")?),
        notice_number: identifier(text(e, "noticeNumber")?),
        fiscal_code: identifier(text(e, "fiscalCode")?),
        outcome: identifier(text(e, "outcome")?),
        creditor_reference_id: soft(e, "creditorReferenceId", path, departures),
        payment_amount: amount_of(&text(e, "paymentAmount")?)?,
        description: soft(e, "description", path, departures),
        company_name: soft(e, "companyName", path, departures),
        office_name: opt_text(e, "officeName"),
        debtor,
        transfers,
        id_psp: soft(e, "idPSP", path, departures),
        psp_fiscal_code: opt_text(e, "pspFiscalCode"),
        psp_partita_iva: opt_text(e, "pspPartitaIVA"),
        psp_company_name: soft(e, "PSPCompanyName", path, departures),
        id_channel: soft(e, "idChannel", path, departures),
        channel_description: soft(e, "channelDescription", path, departures),
        payer: e.child("payer").and_then(|p| subject(p).ok()),
        payment_method: opt_text(e, "paymentMethod"),
        payment_note: opt_text(e, "paymentNote"),
        fee: amount_opt("fee"),
        primary_ci_incurred_fee: amount_opt("primaryCiIncurredFee"),
        id_bundle: opt_text(e, "idBundle"),
        id_ci_bundle: opt_text(e, "idCiBundle"),
        payment_date_time: opt_text(e, "paymentDateTime").map(|s| collapse(&s)),
        application_date: opt_text(e, "applicationDate").map(|s| collapse(&s)),
        transfer_date: opt_text(e, "transferDate").map(|s| collapse(&s)),
        metadata: metadata(e),
        stand_in: e.child("standIn").is_some_and(|c| boolean(&c.text)),
    })
}

fn read_request(
    op: Operation,
    e: &Element,
    departures: &mut Vec<String>,
) -> Result<Request, String> {
    Ok(match op {
        Operation::VerifyPaymentNotice => Request::Verify {
            ids: ids(e)?,
            qr: qr(e)?,
        },
        Operation::GetPayment | Operation::GetPaymentV2 => Request::GetPayment {
            ids: ids(e)?,
            qr: qr(e)?,
            amount: e.child("amount").map(|c| amount_of(&c.text)).transpose()?,
            payment_note: opt_text(e, "paymentNote"),
            transfer_type: opt_text(e, "transferType").map(|t| {
                if t == "POSTAL" {
                    TransferType::Postal
                } else {
                    TransferType::Pagopa
                }
            }),
            v2: op == Operation::GetPaymentV2,
        },
        Operation::SendRt | Operation::SendRtV2 => Request::SendRt {
            ids: ids(e)?,
            receipt: Box::new(receipt(req(e, "receipt")?, departures)?),
            v2: op == Operation::SendRtV2,
            departures: std::mem::take(departures),
        },
        Operation::DemandPaymentNotice => {
            let raw = text(e, "datiSpecificiServizioRequest")?;
            let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
            Request::Demand {
                ids: ids(e)?,
                id_servizio: text(e, "idServizio")?,
                id_soggetto_servizio: text(e, "idSoggettoServizio")?,
                service_data: base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| format!("datiSpecificiServizioRequest: {e}"))?,
            }
        }
    })
}

// ---- responses ------------------------------------------------------------------------------

/// The option described by verify/demand (ctPaymentOptionDescriptionPA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDescription {
    /// Current amount, cents (> 0).
    pub amount: Amount,
    /// Due date (business date).
    pub due_date: Option<NaiveDate>,
    /// Detail.
    pub detail_description: Option<String>,
    /// True when every transfer can go to a postal account.
    pub all_ccp: bool,
}

/// A payable notice as described by verify and demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeDescription {
    /// The option.
    pub option: OptionDescription,
    /// paymentDescription.
    pub payment_description: String,
    /// fiscalCodePA.
    pub fiscal_code_pa: String,
    /// companyName.
    pub company_name: String,
    /// officeName.
    pub office_name: Option<String>,
}

/// Where a transfer of paGetPayment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// IBAN.
    Iban(String),
    /// Marca da bollo request (V2 only).
    Stamp {
        /// hashDocumento.
        hash_document: String,
        /// tipoBollo.
        stamp_type: String,
        /// provinciaResidenza.
        province: String,
    },
}

/// A transfer of paGetPayment (ctTransferPA / ctTransferPAV2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTransfer {
    /// 1..5.
    pub id_transfer: u8,
    /// Cents (> 0).
    pub amount: Amount,
    /// Beneficiary.
    pub fiscal_code_pa: String,
    /// Beneficiary name (V2).
    pub company_name: Option<String>,
    /// Account.
    pub account: Account,
    /// Causale.
    pub remittance_information: String,
    /// Taxonomy code.
    pub transfer_category: String,
    /// Metadata.
    pub metadata: Vec<(String, String)>,
}

/// ctPaymentPA / ctPaymentPAV2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentData {
    /// IUV.
    pub creditor_reference_id: String,
    /// Cents = Σ transfers.
    pub payment_amount: Amount,
    /// Due date.
    pub due_date: NaiveDate,
    /// Description.
    pub description: String,
    /// Organization name (required in V2).
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Debtor.
    pub debtor: Subject,
    /// Transfers 1..5.
    pub transfers: Vec<PaymentTransfer>,
    /// Metadata.
    pub metadata: Vec<(String, String)>,
}

/// A response to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// paVerifyPaymentNoticeRes.
    Verify(NoticeDescription),
    /// paGetPaymentRes / paGetPaymentV2Response.
    GetPayment(Box<PaymentData>),
    /// paSendRTRes / paSendRTV2Response OK.
    SendRt,
    /// paDemandPaymentNoticeResponse.
    Demand(QrCode, NoticeDescription),
}

/// Text hygiene towards the Node ([`crate::text::normalise`]): control characters and runs of
/// whitespace become one space, ends trimmed, cut to `max` characters; never empty for required
/// fields (falls back to `-`).
pub fn clean(s: &str, max: usize) -> String {
    let (t, _) = crate::text::normalise(s, max);
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

struct W(String);

impl W {
    fn el(&mut self, name: &str, value: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        self.0.push_str(&escape(value));
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }
    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
    }
    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }
    /// Required text cleaned to its length.
    fn text(&mut self, name: &str, value: &str, max: usize) {
        self.el(name, &clean(value, max));
    }
    /// Optional value, written only when it fits its simple type after cleaning.
    fn opt(&mut self, name: &str, value: Option<&str>, st: St) {
        if let Some(v) = value {
            let max = match st {
                St::Text(_, max) => max,
                _ => 256,
            };
            let v = clean(v, max);
            if v != "-" && check_simple(st, &v).is_ok() {
                self.el(name, &v);
            }
        }
    }
    fn metadata(&mut self, m: &[(String, String)]) {
        let entries: Vec<_> = m.iter().take(15).collect();
        if entries.is_empty() {
            return;
        }
        self.open("metadata");
        for (k, v) in entries {
            self.open("mapEntry");
            self.text("key", k, 140);
            self.text("value", v, 140);
            self.close("mapEntry");
        }
        self.close("metadata");
    }
    fn subject(&mut self, name: &str, s: &Subject) {
        self.open(name);
        self.open("uniqueIdentifier");
        self.el(
            "entityUniqueIdentifierType",
            if s.kind == "G" { "G" } else { "F" },
        );
        let id = clean(&s.id_value, 16);
        self.el(
            "entityUniqueIdentifierValue",
            if id.chars().count() >= 2 {
                &id
            } else {
                "ANONIMO"
            },
        );
        self.close("uniqueIdentifier");
        self.text("fullName", &s.full_name, 70);
        self.opt("streetName", s.street_name.as_deref(), St::Text(1, 70));
        self.opt("civicNumber", s.civic_number.as_deref(), St::Text(1, 16));
        self.opt("postalCode", s.postal_code.as_deref(), St::Text(1, 16));
        self.opt("city", s.city.as_deref(), St::Text(1, 35));
        self.opt(
            "stateProvinceRegion",
            s.state_province_region.as_deref(),
            St::Text(1, 35),
        );
        self.opt("country", s.country.as_deref(), St::NazioneProvincia);
        self.opt("e-mail", s.email.as_deref(), St::Email);
        self.close(name);
    }
    fn notice(&mut self, n: &NoticeDescription) {
        self.open("paymentList");
        self.open("paymentOptionDescription");
        self.el("amount", &n.option.amount.to_decimal_string());
        self.el("options", "EQ");
        if let Some(d) = n.option.due_date {
            self.el("dueDate", &d.format("%Y-%m-%d").to_string());
        }
        self.opt(
            "detailDescription",
            n.option.detail_description.as_deref(),
            St::Text(1, 140),
        );
        self.el("allCCP", if n.option.all_ccp { "true" } else { "false" });
        self.close("paymentOptionDescription");
        self.close("paymentList");
        self.text("paymentDescription", &n.payment_description, 140);
        self.el("fiscalCodePA", &n.fiscal_code_pa);
        self.text("companyName", &n.company_name, 140);
        self.opt("officeName", n.office_name.as_deref(), St::Text(1, 140));
    }
}

fn envelope(op: Operation, body: impl FnOnce(&mut W)) -> String {
    let mut w = W(String::with_capacity(1024));
    w.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><pafn:"#);
    w.0.push_str(op.response_element());
    w.0.push('>');
    body(&mut w);
    w.0.push_str("</pafn:");
    w.0.push_str(op.response_element());
    w.0.push_str("></soapenv:Body></soapenv:Envelope>");
    w.0
}

/// Encodes an OK response of `op`. `v2` decides the transfer shape of getPayment.
pub fn encode_ok(op: Operation, response: &Response) -> String {
    let v2 = op == Operation::GetPaymentV2;
    envelope(op, |w| {
        w.el("outcome", "OK");
        match response {
            Response::Verify(n) => w.notice(n),
            Response::Demand(q, n) => {
                w.open("qrCode");
                w.el("fiscalCode", &q.fiscal_code);
                w.el("noticeNumber", &q.notice_number);
                w.close("qrCode");
                w.notice(n);
            }
            Response::SendRt => {}
            Response::GetPayment(d) => {
                w.open("data");
                w.text("creditorReferenceId", &d.creditor_reference_id, 35);
                w.el("paymentAmount", &d.payment_amount.to_decimal_string());
                w.el("dueDate", &d.due_date.format("%Y-%m-%d").to_string());
                w.text("description", &d.description, 140);
                if v2 {
                    w.text("companyName", &d.company_name, 140);
                } else {
                    w.opt("companyName", Some(&d.company_name), St::Text(1, 140));
                }
                w.opt("officeName", d.office_name.as_deref(), St::Text(1, 140));
                w.subject("debtor", &d.debtor);
                w.open("transferList");
                for t in &d.transfers {
                    w.open("transfer");
                    w.el("idTransfer", &t.id_transfer.to_string());
                    w.el("transferAmount", &t.amount.to_decimal_string());
                    w.el("fiscalCodePA", &t.fiscal_code_pa);
                    if v2 {
                        w.opt("companyName", t.company_name.as_deref(), St::Text(1, 140));
                    }
                    match &t.account {
                        Account::Iban(i) => w.text("IBAN", i, 35),
                        Account::Stamp {
                            hash_document,
                            stamp_type,
                            province,
                        } => {
                            w.open("richiestaMarcaDaBollo");
                            w.el("hashDocumento", hash_document);
                            w.el("tipoBollo", stamp_type);
                            w.el("provinciaResidenza", province);
                            w.close("richiestaMarcaDaBollo");
                        }
                    }
                    w.text("remittanceInformation", &t.remittance_information, 140);
                    w.text("transferCategory", &t.transfer_category, 140);
                    w.metadata(&t.metadata);
                    w.close("transfer");
                }
                w.close("transferList");
                w.metadata(&d.metadata);
                w.close("data");
            }
        }
    })
}

/// Encodes a KO response of `op` with its fault (faultCode, faultString, id, description).
pub fn encode_fault(op: Operation, fault: &Fault) -> String {
    envelope(op, |w| {
        w.el("outcome", "KO");
        w.open("fault");
        w.el("faultCode", fault.code.code());
        w.el("faultString", fault.code.fault_string());
        w.el("id", &clean(&fault.id, 256));
        w.el("description", &clean(&fault.description, 1000));
        w.close("fault");
    })
}

/// A SOAP 1.1 Fault (`soapenv:Client`) for a request whose operation cannot be told at all
/// (no known body element, no known SOAPAction): there is no paForNode response to use.
pub fn encode_soap_fault(reason: &str) -> String {
    encode_soap_fault_code(FaultCode::SintassiExtraXsd, reason)
}

/// A SOAP 1.1 Fault (`soapenv:Client`) whose faultstring starts with `code` (e.g. the
/// station's refusal of a peer that may not call it, before any operation is read).
pub fn encode_soap_fault_code(code: FaultCode, reason: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>{}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#,
        escape(&clean(&format!("{}: {reason}", code.code()), 500))
    )
}

/// Validates an encoded response with our own schema model (used in tests and debug checks).
pub fn check_response(op: Operation, xml_text: &str) -> Result<(), String> {
    let root = xml::parse(xml_text.as_bytes()).map_err(|e| e.to_string())?;
    let el = envelope_check(&root)?;
    if !el.is(Some(NS), op.response_element()) {
        return Err(format!("unexpected response element {}", el.local));
    }
    schema::validate(el, op.response_model()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: &str = "<pafn:paVerifyPaymentNoticeReq><idPA>77777777777</idPA><idBrokerPA>99999999999</idBrokerPA><idStation>99999999999_01</idStation><qrCode><fiscalCode>77777777777</fiscalCode><noticeNumber>312202600000000171</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq>";

    fn env(header: &str, body_attrs: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="{SOAP_NS}" xmlns:pafn="{NS}">{header}<s:Body{body_attrs}>{VERIFY}</s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn envelope_wildcards_follow_envelope_xsd() {
        // Body: anyAttribute ##any (lax): unqualified attributes are fine
        assert!(decode_request(env("", r#" a="1""#).as_bytes(), None).is_ok());
        assert!(decode_request(env("", r#" s:mustUnderstand=" 1 ""#).as_bytes(), None).is_ok());
        assert!(decode_request(env("", r#" s:mustUnderstand="true""#).as_bytes(), None).is_err());
        // Header entries are assessed laxly: the global soap:mustUnderstand is 0|1
        let h = |v: &str| {
            format!(
                r#"<s:Header><h:x xmlns:h="urn:h"><h:y s:mustUnderstand="{v}"/></h:x></s:Header>"#
            )
        };
        assert!(decode_request(env(&h("0"), "").as_bytes(), None).is_ok());
        assert!(decode_request(env(&h("false"), "").as_bytes(), None).is_err());
    }

    #[test]
    fn clean_removes_what_xml_cannot_carry() {
        assert_eq!(clean(" a\u{1}b\u{FFFE}\u{FFFF}c ", 10), "a b c");
        assert_eq!(clean("Comune\n\ndi   Prova", 140), "Comune di Prova");
        assert_eq!(clean("\u{0}", 10), "-");
        let xml = encode_fault(
            Operation::SendRt,
            &Fault {
                code: FaultCode::Semantica,
                id: "\u{0}x".into(),
                description: "\u{FFFF}".into(),
            },
        );
        assert!(check_response(Operation::SendRt, &xml).is_ok(), "{xml}");
    }
}
