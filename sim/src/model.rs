//! The data the simulator reads from station answers and echoes into receipts, with its own
//! parsing from the mini DOM (never the platform's codecs).

use crate::amount::Cents;
use crate::xml::{extract_body_child, parse_document, Elem, NS_PA_FOR_NODE, NS_SOAP};

/// A subject (`ctSubject`): debtor or payer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// `F` (natural person) or `G` (legal person).
    pub id_type: String,
    /// Fiscal code / VAT number / `ANONIMO`.
    pub id_value: String,
    /// Full name.
    pub full_name: String,
    /// Optional address fields, in XSD order.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province / region.
    pub state_province_region: Option<String>,
    /// Two-letter country code.
    pub country: Option<String>,
    /// E-mail (`e-mail` element).
    pub email: Option<String>,
}

impl Subject {
    /// The anonymous debtor used when nobody is known (`ANONIMO`, SPEC §5.2).
    pub fn anonymous() -> Subject {
        Subject {
            id_type: "F".into(),
            id_value: "ANONIMO".into(),
            full_name: "ANONIMO".into(),
            ..Subject::default()
        }
    }
}

/// The account of a transfer in a getPayment answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferAccount {
    /// Bank or postal IBAN.
    Iban(String),
    /// V2 only: a digital stamp request.
    Stamp {
        /// base64 SHA-256 of the document.
        hash_documento: String,
        /// Always `01`.
        tipo_bollo: String,
        /// Two-letter province.
        provincia_residenza: String,
    },
}

/// One transfer (`ctTransferPA` / `ctTransferPAV2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// 1..5.
    pub id_transfer: u8,
    /// Amount in cents.
    pub amount: Cents,
    /// Beneficiary EC.
    pub fiscal_code_pa: String,
    /// V2 only.
    pub company_name: Option<String>,
    /// IBAN or stamp request.
    pub account: TransferAccount,
    /// Causale.
    pub remittance_information: String,
    /// Taxonomy code.
    pub transfer_category: String,
    /// Transfer metadata.
    pub metadata: Vec<(String, String)>,
}

/// The `data` of a getPayment(V2) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentData {
    /// IUV.
    pub creditor_reference_id: String,
    /// Amount in cents.
    pub payment_amount: Cents,
    /// Due date as sent.
    pub due_date: String,
    /// Retention date as sent.
    pub retention_date: Option<String>,
    /// lastPayment flag.
    pub last_payment: Option<String>,
    /// Causale.
    pub description: String,
    /// EC name (required in V2).
    pub company_name: Option<String>,
    /// Office name.
    pub office_name: Option<String>,
    /// Debtor.
    pub debtor: Subject,
    /// 1..5 transfers.
    pub transfers: Vec<Transfer>,
    /// Position metadata.
    pub metadata: Vec<(String, String)>,
}

impl PaymentData {
    /// Σ transferAmount.
    pub fn transfers_total(&self) -> Cents {
        self.transfers.iter().map(|t| t.amount).sum()
    }
}

/// The useful part of a paVerifyPaymentNotice / paDemandPaymentNotice OK answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyData {
    /// The notice created (demand only).
    pub qr_code: Option<(String, String)>,
    /// Current amount.
    pub amount: Option<Cents>,
    /// `EQ`, ...
    pub options: Option<String>,
    /// Due date.
    pub due_date: Option<String>,
    /// Detail description.
    pub detail_description: Option<String>,
    /// allCCP.
    pub all_ccp: Option<String>,
    /// Payment description.
    pub payment_description: Option<String>,
    /// Fiscal code of the EC.
    pub fiscal_code_pa: Option<String>,
    /// EC name.
    pub company_name: Option<String>,
    /// Office.
    pub office_name: Option<String>,
}

/// A fault bean.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    /// `PAA_...`.
    pub fault_code: String,
    /// Canonical text.
    pub fault_string: String,
    /// EC fiscal code.
    pub id: String,
    /// Free text.
    pub description: Option<String>,
}

/// A station answer, read namespace-aware.
#[derive(Debug, Clone)]
pub struct SoapResponse {
    /// Local name of the Body child (e.g. `paSendRTRes`, or `Fault` for a SOAP Fault).
    pub element: String,
    /// Namespace of the Body child.
    pub ns: Option<String>,
    /// `OK` / `KO` (empty when absent).
    pub outcome: String,
    /// The fault bean, if any.
    pub fault: Option<Fault>,
    /// The Body child.
    pub body: Elem,
}

impl SoapResponse {
    /// `OK`, or the fault code for a KO (`KO` if the fault is missing), or `SOAP_FAULT:<code>`.
    pub fn label(&self) -> String {
        if self.element == "Fault" && self.ns.as_deref() == Some(NS_SOAP) {
            let code = self.body.text_of("faultcode").unwrap_or("?");
            return format!("SOAP_FAULT:{code}");
        }
        match (self.outcome.as_str(), &self.fault) {
            ("OK", _) => "OK".into(),
            ("KO", Some(f)) => f.fault_code.clone(),
            ("KO", None) => "KO(no fault)".into(),
            (o, _) => format!("outcome={o:?}"),
        }
    }
}

/// Reads a station answer: Envelope/Body/child, outcome and fault.
pub fn parse_response(xml: &str) -> Result<SoapResponse, String> {
    let body = extract_body_child(xml)?;
    let el = parse_document(&body.document)?;
    let outcome = el.text_of("outcome").unwrap_or("").to_string();
    let fault = el.child("fault").map(|f| Fault {
        fault_code: f.text_of("faultCode").unwrap_or("").to_string(),
        fault_string: f.text_of("faultString").unwrap_or("").to_string(),
        id: f.text_of("id").unwrap_or("").to_string(),
        description: f.text_of("description").map(str::to_string),
    });
    Ok(SoapResponse {
        element: el.name.clone(),
        ns: el.ns.clone(),
        outcome,
        fault,
        body: el,
    })
}

/// True if the Body child is a paForNode element with this name.
pub fn is_pa_element(r: &SoapResponse, name: &str) -> bool {
    r.ns.as_deref() == Some(NS_PA_FOR_NODE) && r.element == name
}

fn req<'a>(el: &'a Elem, name: &str) -> Result<&'a str, String> {
    el.text_of(name)
        .ok_or_else(|| format!("<{}> has no <{name}>", el.name))
}

fn opt(el: &Elem, name: &str) -> Option<String> {
    el.text_of(name).map(str::to_string)
}

fn amount(el: &Elem, name: &str) -> Result<Cents, String> {
    Cents::parse_xml(req(el, name)?)
}

/// Reads `ctMetadata` (`mapEntry{key,value}`*).
pub fn parse_metadata(el: Option<&Elem>) -> Vec<(String, String)> {
    el.map(|m| {
        m.children_named("mapEntry")
            .map(|e| {
                (
                    e.text_of("key").unwrap_or("").to_string(),
                    e.text_of("value").unwrap_or("").to_string(),
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Reads a `ctSubject`.
pub fn parse_subject(el: &Elem) -> Result<Subject, String> {
    let uid = el
        .child("uniqueIdentifier")
        .ok_or("subject without uniqueIdentifier")?;
    Ok(Subject {
        id_type: req(uid, "entityUniqueIdentifierType")?.to_string(),
        id_value: req(uid, "entityUniqueIdentifierValue")?.to_string(),
        full_name: req(el, "fullName")?.to_string(),
        street_name: opt(el, "streetName"),
        civic_number: opt(el, "civicNumber"),
        postal_code: opt(el, "postalCode"),
        city: opt(el, "city"),
        state_province_region: opt(el, "stateProvinceRegion"),
        country: opt(el, "country"),
        email: opt(el, "e-mail"),
    })
}

/// Reads the `data` element of a getPayment(V2) answer.
pub fn parse_payment_data(data: &Elem) -> Result<PaymentData, String> {
    let mut transfers = Vec::new();
    let list = data
        .child("transferList")
        .ok_or("data without transferList")?;
    for t in list.children_named("transfer") {
        let id: u8 = req(t, "idTransfer")?
            .parse()
            .map_err(|e| format!("idTransfer: {e}"))?;
        let account = if let Some(iban) = t.text_of("IBAN") {
            TransferAccount::Iban(iban.to_string())
        } else if let Some(s) = t.child("richiestaMarcaDaBollo") {
            TransferAccount::Stamp {
                hash_documento: req(s, "hashDocumento")?.to_string(),
                tipo_bollo: req(s, "tipoBollo")?.to_string(),
                provincia_residenza: req(s, "provinciaResidenza")?.to_string(),
            }
        } else {
            return Err(format!(
                "transfer {id} has neither IBAN nor richiestaMarcaDaBollo"
            ));
        };
        transfers.push(Transfer {
            id_transfer: id,
            amount: amount(t, "transferAmount")?,
            fiscal_code_pa: req(t, "fiscalCodePA")?.to_string(),
            company_name: opt(t, "companyName"),
            account,
            remittance_information: req(t, "remittanceInformation")?.to_string(),
            transfer_category: req(t, "transferCategory")?.to_string(),
            metadata: parse_metadata(t.child("metadata")),
        });
    }
    Ok(PaymentData {
        creditor_reference_id: req(data, "creditorReferenceId")?.to_string(),
        payment_amount: amount(data, "paymentAmount")?,
        due_date: req(data, "dueDate")?.to_string(),
        retention_date: opt(data, "retentionDate"),
        last_payment: opt(data, "lastPayment"),
        description: req(data, "description")?.to_string(),
        company_name: opt(data, "companyName"),
        office_name: opt(data, "officeName"),
        debtor: parse_subject(data.child("debtor").ok_or("data without debtor")?)?,
        transfers,
        metadata: parse_metadata(data.child("metadata")),
    })
}

/// Reads a verify (or demand) OK answer.
pub fn parse_verify_data(body: &Elem) -> Result<VerifyData, String> {
    let option = body
        .child("paymentList")
        .and_then(|l| l.child("paymentOptionDescription"));
    let qr = body.child("qrCode").map(|q| {
        (
            q.text_of("fiscalCode").unwrap_or("").to_string(),
            q.text_of("noticeNumber").unwrap_or("").to_string(),
        )
    });
    Ok(VerifyData {
        qr_code: qr,
        amount: match option {
            Some(o) => Some(amount(o, "amount")?),
            None => None,
        },
        options: option.and_then(|o| opt(o, "options")),
        due_date: option.and_then(|o| opt(o, "dueDate")),
        detail_description: option.and_then(|o| opt(o, "detailDescription")),
        all_ccp: option.and_then(|o| opt(o, "allCCP")),
        payment_description: opt(body, "paymentDescription"),
        fiscal_code_pa: opt(body, "fiscalCodePA"),
        company_name: opt(body, "companyName"),
        office_name: opt(body, "officeName"),
    })
}
