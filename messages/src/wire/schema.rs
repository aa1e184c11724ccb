//! A validator for the station's SOAP bodies driven by the facts of the official schemas
//! (SANP 3.x `paForNode.xsd` and `sac-common-types-1.0.xsd`, SPEC §4.1): element sequences
//! with cardinalities and choices, unqualified children, and the simple types with their
//! whitespace rules, lengths, patterns, enumerations and value ranges. What the XSD rejects,
//! [`validate`] rejects; tests check this against libxml2 on a corpus of valid and mutated
//! messages.

use super::xml::Element;

/// Simple types used by paForNode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    /// `xs:string` without facets.
    Str,
    /// `xs:string` with minLength/maxLength (stText16/20/35/70/140/210, stIBAN,
    /// stEntityUniqueIdentifierValue).
    Text(usize, usize),
    /// `xs:string` with exact length (stIdentificativoServizio).
    Len(usize),
    /// stFiscalCodePA: `[0-9]{11}`.
    FiscalCodePa,
    /// stNoticeNumber: `[0-9]{18}`.
    NoticeNumber,
    /// stAmount: decimal `\d+\.\d{2}`, ≤ 999999999.99.
    Amount,
    /// stAmountNotZero: as stAmount, ≥ 0.01.
    AmountNotZero,
    /// `xs:date`.
    Date,
    /// `xs:dateTime`.
    DateTime,
    /// `xs:boolean`.
    Boolean,
    /// stIdTransfer: `xs:int` enumeration 1..5.
    IdTransfer,
    /// String enumeration.
    Enum(&'static [&'static str]),
    /// stEMail.
    Email,
    /// stNazioneProvincia: `[A-Z]{2}`.
    NazioneProvincia,
    /// `xs:base64Binary`.
    Base64,
    /// stBase64Binary72: base64 with pattern `.{4,72}`.
    Base64Max72,
}

/// Content of an element.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Simple content.
    Simple(St),
    /// Element-only content: a sequence.
    Complex(&'static [Particle]),
}

/// An element declaration inside a sequence.
#[derive(Debug, Clone, Copy)]
pub struct El {
    /// Local name (unqualified).
    pub name: &'static str,
    /// minOccurs.
    pub min: u32,
    /// maxOccurs.
    pub max: u32,
    /// Type.
    pub ty: Ty,
}

/// A particle of a sequence.
#[derive(Debug, Clone, Copy)]
pub enum Particle {
    /// One element declaration.
    El(El),
    /// A `xs:choice` of single elements (exactly one).
    Choice(&'static [El]),
}

const fn el(name: &'static str, ty: Ty) -> Particle {
    Particle::El(El {
        name,
        min: 1,
        max: 1,
        ty,
    })
}
const fn opt(name: &'static str, ty: Ty) -> Particle {
    Particle::El(El {
        name,
        min: 0,
        max: 1,
        ty,
    })
}
const fn s(st: St) -> Ty {
    Ty::Simple(st)
}
const T16: Ty = s(St::Text(1, 16));
const T20: Ty = s(St::Text(1, 20));
const T35: Ty = s(St::Text(1, 35));
const T70: Ty = s(St::Text(1, 70));
const T140: Ty = s(St::Text(1, 140));
const T210: Ty = s(St::Text(1, 210));

/// ctMapEntry.
pub const MAP_ENTRY: &[Particle] = &[el("key", T140), el("value", T140)];
/// ctMetadata (1..15 mapEntry).
pub const METADATA: &[Particle] = &[Particle::El(El {
    name: "mapEntry",
    min: 1,
    max: 15,
    ty: Ty::Complex(MAP_ENTRY),
})];
/// ctQrCode.
pub const QR_CODE: &[Particle] = &[
    el("fiscalCode", s(St::FiscalCodePa)),
    el("noticeNumber", s(St::NoticeNumber)),
];
/// ctEntityUniqueIdentifier.
pub const UNIQUE_ID: &[Particle] = &[
    el("entityUniqueIdentifierType", s(St::Enum(&["F", "G"]))),
    el("entityUniqueIdentifierValue", s(St::Text(2, 16))),
];
/// ctSubject.
pub const SUBJECT: &[Particle] = &[
    el("uniqueIdentifier", Ty::Complex(UNIQUE_ID)),
    el("fullName", T70),
    opt("streetName", T70),
    opt("civicNumber", T16),
    opt("postalCode", T16),
    opt("city", T35),
    opt("stateProvinceRegion", T35),
    opt("country", s(St::NazioneProvincia)),
    opt("e-mail", s(St::Email)),
];
/// ctRichiestaMarcaDaBollo.
pub const RICHIESTA_MARCA: &[Particle] = &[
    el("hashDocumento", s(St::Base64Max72)),
    el("tipoBollo", s(St::Enum(&["01"]))),
    el("provinciaResidenza", s(St::NazioneProvincia)),
];
const IBAN: Ty = s(St::Text(1, 35));
/// ctTransferPA.
pub const TRANSFER_PA: &[Particle] = &[
    el("idTransfer", s(St::IdTransfer)),
    el("transferAmount", s(St::AmountNotZero)),
    el("fiscalCodePA", s(St::FiscalCodePa)),
    el("IBAN", IBAN),
    el("remittanceInformation", T140),
    el("transferCategory", T140),
    opt("metadata", Ty::Complex(METADATA)),
];
/// ctTransferPAV2.
pub const TRANSFER_PA_V2: &[Particle] = &[
    el("idTransfer", s(St::IdTransfer)),
    el("transferAmount", s(St::AmountNotZero)),
    el("fiscalCodePA", s(St::FiscalCodePa)),
    opt("companyName", T140),
    Particle::Choice(&[
        El {
            name: "IBAN",
            min: 1,
            max: 1,
            ty: IBAN,
        },
        El {
            name: "richiestaMarcaDaBollo",
            min: 1,
            max: 1,
            ty: Ty::Complex(RICHIESTA_MARCA),
        },
    ]),
    el("remittanceInformation", T140),
    el("transferCategory", T140),
    opt("metadata", Ty::Complex(METADATA)),
];
/// ctTransferPAReceiptV2.
pub const TRANSFER_RECEIPT_V2: &[Particle] = &[
    el("idTransfer", s(St::IdTransfer)),
    el("transferAmount", s(St::AmountNotZero)),
    el("fiscalCodePA", s(St::FiscalCodePa)),
    opt("companyName", T140),
    Particle::Choice(&[
        El {
            name: "IBAN",
            min: 1,
            max: 1,
            ty: IBAN,
        },
        El {
            name: "MBDAttachment",
            min: 1,
            max: 1,
            ty: s(St::Base64),
        },
    ]),
    el("remittanceInformation", T140),
    el("transferCategory", T140),
    opt("metadata", Ty::Complex(METADATA)),
];
const fn transfer_list(t: &'static [Particle]) -> [Particle; 1] {
    [Particle::El(El {
        name: "transfer",
        min: 1,
        max: 5,
        ty: Ty::Complex(t),
    })]
}
/// ctTransferListPA.
pub const TRANSFER_LIST: &[Particle] = &transfer_list(TRANSFER_PA);
/// ctTransferListPAV2.
pub const TRANSFER_LIST_V2: &[Particle] = &transfer_list(TRANSFER_PA_V2);
/// ctTransferListPAReceiptV2.
pub const TRANSFER_LIST_RECEIPT_V2: &[Particle] = &transfer_list(TRANSFER_RECEIPT_V2);

/// ctReceipt.
pub const RECEIPT: &[Particle] = &[
    el("receiptId", s(St::Str)),
    el("noticeNumber", s(St::NoticeNumber)),
    el("fiscalCode", s(St::FiscalCodePa)),
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    el("creditorReferenceId", T35),
    el("paymentAmount", s(St::Amount)),
    el("description", T140),
    el("companyName", T140),
    opt("officeName", T140),
    el("debtor", Ty::Complex(SUBJECT)),
    el("transferList", Ty::Complex(TRANSFER_LIST)),
    el("idPSP", T35),
    opt("pspFiscalCode", T70),
    opt("pspPartitaIVA", T20),
    el("PSPCompanyName", T70),
    el("idChannel", T35),
    el("channelDescription", T35),
    opt("payer", Ty::Complex(SUBJECT)),
    opt("paymentMethod", T35),
    opt("fee", s(St::Amount)),
    opt("paymentDateTime", s(St::DateTime)),
    opt("applicationDate", s(St::Date)),
    opt("transferDate", s(St::Date)),
    opt("metadata", Ty::Complex(METADATA)),
    opt("standIn", s(St::Boolean)),
];

/// ctReceiptV2.
pub const RECEIPT_V2: &[Particle] = &[
    el("receiptId", s(St::Str)),
    el("noticeNumber", s(St::NoticeNumber)),
    el("fiscalCode", s(St::FiscalCodePa)),
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    el("creditorReferenceId", T35),
    el("paymentAmount", s(St::Amount)),
    el("description", T140),
    el("companyName", T140),
    opt("officeName", T140),
    el("debtor", Ty::Complex(SUBJECT)),
    el("transferList", Ty::Complex(TRANSFER_LIST_RECEIPT_V2)),
    el("idPSP", T35),
    opt("pspFiscalCode", T70),
    opt("pspPartitaIVA", T20),
    el("PSPCompanyName", T70),
    el("idChannel", T35),
    el("channelDescription", T35),
    opt("payer", Ty::Complex(SUBJECT)),
    opt("paymentMethod", T35),
    opt("paymentNote", T210),
    opt("fee", s(St::Amount)),
    opt("primaryCiIncurredFee", s(St::Amount)),
    opt("idBundle", T70),
    opt("idCiBundle", T70),
    opt("paymentDateTime", s(St::DateTime)),
    opt("applicationDate", s(St::Date)),
    opt("transferDate", s(St::Date)),
    opt("metadata", Ty::Complex(METADATA)),
    opt("standIn", s(St::Boolean)),
];

const IDS: [Particle; 3] = [el("idPA", T35), el("idBrokerPA", T35), el("idStation", T35)];

/// paVerifyPaymentNoticeReq.
pub const VERIFY_REQ: &[Particle] = &[IDS[0], IDS[1], IDS[2], el("qrCode", Ty::Complex(QR_CODE))];
/// paGetPaymentReq and paGetPaymentV2Request (identical).
pub const GET_PAYMENT_REQ: &[Particle] = &[
    IDS[0],
    IDS[1],
    IDS[2],
    el("qrCode", Ty::Complex(QR_CODE)),
    opt("amount", s(St::Amount)),
    opt("paymentNote", T210),
    opt("transferType", s(St::Enum(&["POSTAL", "PAGOPA"]))),
    opt("dueDate", s(St::Date)),
];
/// paSendRTReq.
pub const SEND_RT_REQ: &[Particle] = &[IDS[0], IDS[1], IDS[2], el("receipt", Ty::Complex(RECEIPT))];
/// paSendRTV2Request.
pub const SEND_RT_V2_REQ: &[Particle] = &[
    IDS[0],
    IDS[1],
    IDS[2],
    el("receipt", Ty::Complex(RECEIPT_V2)),
];
/// paDemandPaymentNoticeRequest.
pub const DEMAND_REQ: &[Particle] = &[
    IDS[0],
    IDS[1],
    IDS[2],
    el("idServizio", s(St::Len(5))),
    el("idSoggettoServizio", s(St::Len(5))),
    el("datiSpecificiServizioRequest", s(St::Base64)),
];

/// ctFaultBean.
pub const FAULT: &[Particle] = &[
    el("faultCode", s(St::Str)),
    el("faultString", s(St::Str)),
    el("id", s(St::Str)),
    opt("description", s(St::Str)),
    opt("serial", s(St::IdTransfer)),
    opt("originalFaultCode", s(St::Str)),
    opt("originalFaultString", s(St::Str)),
    opt("originalDescription", s(St::Str)),
];
/// ctPaymentOptionDescriptionPA.
pub const OPTION_DESCRIPTION: &[Particle] = &[
    el("amount", s(St::AmountNotZero)),
    el("options", s(St::Enum(&["EQ", "LS", "GT", "ANY"]))),
    opt("dueDate", s(St::Date)),
    opt("detailDescription", T140),
    el("allCCP", s(St::Boolean)),
];
/// ctPaymentOptionsDescriptionListPA.
pub const OPTION_LIST: &[Particle] = &[el(
    "paymentOptionDescription",
    Ty::Complex(OPTION_DESCRIPTION),
)];
/// paVerifyPaymentNoticeRes.
pub const VERIFY_RES: &[Particle] = &[
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    opt("fault", Ty::Complex(FAULT)),
    opt("paymentList", Ty::Complex(OPTION_LIST)),
    opt("paymentDescription", T140),
    opt("fiscalCodePA", s(St::FiscalCodePa)),
    opt("companyName", T140),
    opt("officeName", T140),
];
const fn payment_pa(transfers: &'static [Particle], v2: bool) -> [Particle; 11] {
    [
        el("creditorReferenceId", T35),
        el("paymentAmount", s(St::AmountNotZero)),
        el("dueDate", s(St::Date)),
        opt("retentionDate", s(St::DateTime)),
        opt("lastPayment", s(St::Boolean)),
        el("description", T140),
        if v2 {
            el("companyName", T140)
        } else {
            opt("companyName", T140)
        },
        opt("officeName", T140),
        el("debtor", Ty::Complex(SUBJECT)),
        el("transferList", Ty::Complex(transfers)),
        opt("metadata", Ty::Complex(METADATA)),
    ]
}
/// ctPaymentPA.
pub const PAYMENT_PA: &[Particle] = &payment_pa(TRANSFER_LIST, false);
/// ctPaymentPAV2.
pub const PAYMENT_PA_V2: &[Particle] = &payment_pa(TRANSFER_LIST_V2, true);
/// paGetPaymentRes.
pub const GET_PAYMENT_RES: &[Particle] = &[
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    opt("fault", Ty::Complex(FAULT)),
    opt("data", Ty::Complex(PAYMENT_PA)),
];
/// paGetPaymentV2Response.
pub const GET_PAYMENT_V2_RES: &[Particle] = &[
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    opt("fault", Ty::Complex(FAULT)),
    opt("data", Ty::Complex(PAYMENT_PA_V2)),
];
/// paSendRTRes / paSendRTV2Response (ctResponse).
pub const SEND_RT_RES: &[Particle] = &[
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    opt("fault", Ty::Complex(FAULT)),
];
/// paDemandPaymentNoticeResponse.
pub const DEMAND_RES: &[Particle] = &[
    el("outcome", s(St::Enum(&["OK", "KO"]))),
    opt("fault", Ty::Complex(FAULT)),
    opt("qrCode", Ty::Complex(QR_CODE)),
    opt("paymentList", Ty::Complex(OPTION_LIST)),
    opt("paymentDescription", T140),
    opt("fiscalCodePA", s(St::FiscalCodePa)),
    opt("companyName", T140),
    opt("officeName", T140),
];

/// Why a body is not schema-valid: the element path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SchemaError {
    /// Path of the offending element (`paSendRTReq/receipt/transferList/transfer[2]/IBAN`).
    pub path: String,
    /// Reason.
    pub reason: String,
}

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

fn fail(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn check_attributes(e: &Element, path: &str) -> Result<(), SchemaError> {
    for a in &e.attributes {
        let allowed = a.ns.as_deref() == Some(XSI)
            && matches!(
                a.local.as_str(),
                "schemaLocation" | "noNamespaceSchemaLocation"
            );
        if !allowed {
            return Err(fail(
                path,
                format!("attribute {:?} is not allowed", a.local),
            ));
        }
    }
    Ok(())
}

/// Validates `root` (the operation element, already known to be in the right namespace)
/// against the content model `model`.
pub fn validate(root: &Element, model: &[Particle]) -> Result<(), SchemaError> {
    check_attributes(root, &root.local)?;
    validate_complex(root, model, &root.local)
}

fn validate_complex(e: &Element, model: &[Particle], path: &str) -> Result<(), SchemaError> {
    if !is_xml_whitespace(&e.text) {
        return Err(fail(
            path,
            "character data is not allowed in element-only content",
        ));
    }
    let mut i = 0usize;
    let children = &e.children;
    for p in model {
        match p {
            Particle::El(d) => {
                let mut n = 0u32;
                while let Some(c) = children.get(i) {
                    if c.ns.is_none() && c.local == d.name && n < d.max {
                        let cpath = if d.max > 1 {
                            format!("{path}/{}[{}]", d.name, n + 1)
                        } else {
                            format!("{path}/{}", d.name)
                        };
                        validate_element(c, d.ty, &cpath)?;
                        n += 1;
                        i += 1;
                    } else {
                        break;
                    }
                }
                if n < d.min {
                    let found = children
                        .get(i)
                        .map(|c| format!("found {}", describe(c)))
                        .unwrap_or_else(|| "found the end of the element".into());
                    return Err(fail(path, format!("missing element {} ({found})", d.name)));
                }
            }
            Particle::Choice(options) => {
                let c = children
                    .get(i)
                    .ok_or_else(|| fail(path, format!("missing one of {}", names(options))))?;
                let d = options
                    .iter()
                    .find(|d| c.ns.is_none() && c.local == d.name)
                    .ok_or_else(|| {
                        fail(
                            path,
                            format!("expected one of {}, found {}", names(options), describe(c)),
                        )
                    })?;
                validate_element(c, d.ty, &format!("{path}/{}", d.name))?;
                i += 1;
            }
        }
    }
    if let Some(c) = children.get(i) {
        return Err(fail(path, format!("unexpected element {}", describe(c))));
    }
    Ok(())
}

fn names(options: &[El]) -> String {
    options
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn describe(c: &Element) -> String {
    match &c.ns {
        Some(ns) => format!("{{{ns}}}{}", c.local),
        None => c.local.clone(),
    }
}

fn validate_element(e: &Element, ty: Ty, path: &str) -> Result<(), SchemaError> {
    check_attributes(e, path)?;
    match ty {
        Ty::Complex(model) => validate_complex(e, model, path),
        Ty::Simple(st) => {
            if let Some(c) = e.children.first() {
                return Err(fail(
                    path,
                    format!("element {} is not allowed in a simple value", describe(c)),
                ));
            }
            check_simple(st, &e.text).map_err(|r| fail(path, r))
        }
    }
}

fn is_xml_whitespace(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// XSD whitespace "collapse": trims and folds runs of XML whitespace to one space.
fn collapse(s: &str) -> String {
    s.split([' ', '\t', '\n', '\r'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a lexical value against a simple type; `Err` says why.
pub fn check_simple(st: St, raw: &str) -> Result<(), String> {
    match st {
        St::Str => Ok(()),
        St::Text(min, max) => {
            let n = raw.chars().count();
            if n < min || n > max {
                Err(format!("length {n} is outside {min}..{max}"))
            } else {
                Ok(())
            }
        }
        St::Len(len) => {
            let n = raw.chars().count();
            if n != len {
                Err(format!("length {n}, expected exactly {len}"))
            } else {
                Ok(())
            }
        }
        St::FiscalCodePa => digits_exact(raw, 11),
        St::NoticeNumber => digits_exact(raw, 18),
        St::Amount => amount(&collapse(raw), false),
        St::AmountNotZero => amount(&collapse(raw), true),
        St::Date => date(&collapse(raw)),
        St::DateTime => date_time(&collapse(raw)),
        St::Boolean => match collapse(raw).as_str() {
            "true" | "false" | "1" | "0" => Ok(()),
            other => Err(format!("{other:?} is not a boolean")),
        },
        St::IdTransfer => {
            let v = collapse(raw);
            let digits = v.strip_prefix('+').unwrap_or(&v);
            let ok = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.trim_start_matches('0').len() <= 1
                && matches!(digits.trim_start_matches('0'), "1" | "2" | "3" | "4" | "5");
            if ok {
                Ok(())
            } else {
                Err(format!("{v:?} is not one of 1..5"))
            }
        }
        St::Enum(values) => {
            if values.contains(&raw) {
                Ok(())
            } else {
                Err(format!("{raw:?} is not one of {}", values.join(", ")))
            }
        }
        St::Email => {
            let n = raw.chars().count();
            let ok = n <= 256
                && raw.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
                        && {
                            let mut parts = d.split('.');
                            let first_ok = parts.next().is_some_and(|p| {
                                !p.is_empty()
                                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            });
                            first_ok
                                && parts.all(|p| {
                                    !p.is_empty()
                                        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                                })
                        }
                });
            if ok {
                Ok(())
            } else {
                Err("not an e-mail address (stEMail)".into())
            }
        }
        St::NazioneProvincia => {
            if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(())
            } else {
                Err(format!("{raw:?} is not two capital letters"))
            }
        }
        St::Base64 => base64(raw),
        St::Base64Max72 => {
            base64(raw)?;
            let v = collapse(raw);
            let n = v.chars().count();
            if (4..=72).contains(&n) {
                Ok(())
            } else {
                Err(format!("length {n} is outside 4..72"))
            }
        }
    }
}

fn digits_exact(raw: &str, n: usize) -> Result<(), String> {
    if raw.len() == n && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{raw:?} is not {n} digits"))
    }
}

fn amount(v: &str, not_zero: bool) -> Result<(), String> {
    let bad = || format!("{v:?} is not an amount with two decimals (\\d+\\.\\d{{2}})");
    let (int, frac) = v.split_once('.').ok_or_else(bad)?;
    if int.is_empty()
        || frac.len() != 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    if int.len() > 9 {
        return Err(format!("{v:?} is above 999999999.99"));
    }
    let cents = int.parse::<u64>().unwrap_or(0) * 100 + frac.parse::<u64>().unwrap_or(0);
    if not_zero && cents == 0 {
        return Err(format!("{v:?} is below 0.01"));
    }
    Ok(())
}

fn two_digits(s: &str) -> Option<u32> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Splits an optional timezone (`Z`, `+hh:mm`, `-hh:mm`) from the end.
fn split_tz(v: &str) -> Result<&str, String> {
    if let Some(rest) = v.strip_suffix('Z') {
        return Ok(rest);
    }
    // (a non-ASCII value must not be split inside a character: `get` instead of `split_at`)
    let cut = v.len().saturating_sub(6);
    if let (true, Some(head), Some(tz)) = (v.len() > 6, v.get(..cut), v.get(cut..)) {
        let b = tz.as_bytes();
        if matches!(b.first(), Some(b'+') | Some(b'-')) && b.get(3) == Some(&b':') {
            let h = two_digits(tz.get(1..3).unwrap_or("")).ok_or("bad timezone")?;
            let m = two_digits(tz.get(4..6).unwrap_or("")).ok_or("bad timezone")?;
            if m > 59 || h > 14 || (h == 14 && m != 0) {
                return Err("timezone out of range".into());
            }
            return Ok(head);
        }
    }
    Ok(v)
}

fn ymd(v: &str) -> Result<(), String> {
    let bad = || format!("{v:?} is not a date YYYY-MM-DD");
    let v2 = v.strip_prefix('-').unwrap_or(v);
    let mut parts = v2.splitn(3, '-');
    let (y, m, d) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    if y.len() < 4 || !y.bytes().all(|b| b.is_ascii_digit()) || (y.len() > 4 && y.starts_with('0'))
    {
        return Err(bad());
    }
    let year: i64 = y.parse().map_err(|_| bad())?;
    if year == 0 {
        return Err(bad());
    }
    let month = two_digits(m).ok_or_else(bad)?;
    let day = two_digits(d).ok_or_else(bad)?;
    let signed = if v.starts_with('-') { 1 - year } else { year };
    let leap = (signed % 4 == 0 && signed % 100 != 0) || signed % 400 == 0;
    let max = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > max {
        return Err(bad());
    }
    Ok(())
}

fn date(v: &str) -> Result<(), String> {
    ymd(split_tz(v)?)
}

fn date_time(v: &str) -> Result<(), String> {
    let bad = || format!("{v:?} is not a date-time YYYY-MM-DDThh:mm:ss");
    let v = split_tz(v)?;
    let (d, t) = v.split_once('T').ok_or_else(bad)?;
    ymd(d)?;
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (t, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let mut p = hms.split(':');
    let h = p.next().and_then(two_digits).ok_or_else(bad)?;
    let m = p.next().and_then(two_digits).ok_or_else(bad)?;
    let s = p.next().and_then(two_digits).ok_or_else(bad)?;
    if p.next().is_some() || m > 59 || s > 59 {
        return Err(bad());
    }
    let frac_zero = frac.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    if h > 24 || (h == 24 && (m != 0 || s != 0 || !frac_zero)) {
        return Err(bad());
    }
    Ok(())
}

fn base64(raw: &str) -> Result<(), String> {
    let compact: Vec<u8> = raw
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .collect();
    let bad = |why: &str| Err(format!("not base64: {why}"));
    if !compact
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return bad("invalid character");
    }
    if !compact.len().is_multiple_of(4) {
        return bad("length is not a multiple of 4");
    }
    let pad = compact.iter().rev().take_while(|b| **b == b'=').count();
    if pad > 2 {
        return bad("too much padding");
    }
    let body = compact.get(..compact.len() - pad).unwrap_or_default();
    if !body
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    {
        return bad("invalid character");
    }
    // canonical padding: the last symbol before `=` carries no stray bits
    if let Some(last) = body.last() {
        let ok = match pad {
            2 => b"AQgw".contains(last),
            1 => b"AEIMQUYcgkosw048".contains(last),
            _ => true,
        };
        if !ok {
            return bad("non-canonical final character");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_types() {
        assert!(check_simple(St::Amount, "0.00").is_ok());
        assert!(check_simple(St::Amount, " 12.30\n").is_ok());
        assert!(check_simple(St::AmountNotZero, "0.00").is_err());
        for bad in [
            "12",
            "12.3",
            "12.345",
            "-1.00",
            "+1.00",
            "1,00",
            "1000000000.00",
            "",
        ] {
            assert!(check_simple(St::Amount, bad).is_err(), "{bad}");
        }
        assert!(check_simple(St::Amount, "000999999999.99").is_ok());
        assert!(check_simple(St::Date, "2026-02-28").is_ok());
        assert!(check_simple(St::Date, "2024-02-29+01:00").is_ok());
        assert!(check_simple(St::Date, "2026-02-29").is_err());
        assert!(check_simple(St::Date, "2026-2-28").is_err());
        assert!(check_simple(St::DateTime, "2026-07-02T10:20:00.123+02:00").is_ok());
        assert!(check_simple(St::DateTime, "2026-07-02T10:20:00Z").is_ok());
        assert!(check_simple(St::DateTime, "2026-07-02 10:20:00").is_err());
        assert!(check_simple(St::DateTime, "2026-07-02T25:00:00").is_err());
        assert!(check_simple(St::IdTransfer, "01").is_ok());
        assert!(check_simple(St::IdTransfer, "6").is_err());
        assert!(check_simple(St::Text(1, 35), "").is_err());
        assert!(check_simple(St::FiscalCodePa, " 77777777777").is_err());
        assert!(check_simple(St::Base64, "QUJD").is_ok());
        assert!(check_simple(St::Base64, "QUJ").is_err());
        assert!(check_simple(St::Base64, "QU JD\n").is_ok());
        assert!(check_simple(St::Base64, "QQ= =").is_ok());
        assert!(check_simple(St::Base64, "QR==").is_err());
        assert!(check_simple(St::Base64, "QUJD&").is_err());
        assert!(check_simple(St::Base64, "").is_ok());
        assert!(check_simple(St::Date, " 2026-01-01\n").is_ok());
        assert!(check_simple(St::DateTime, "2026-07-02T24:00:00").is_ok());
        assert!(check_simple(St::Date, "0000-01-01").is_err());
        // found by fuzz_decoder: used to panic (slicing inside a multi-byte character)
        assert!(check_simple(St::Date, "\u{1F810}\u{a1}A").is_err());
        assert!(check_simple(St::DateTime, "2026-07-02T10:20:0\u{e8}").is_err());
        assert!(check_simple(St::Date, "2026-01-01+14:01").is_err());
        assert!(check_simple(St::IdTransfer, "+1").is_ok());
        assert!(check_simple(St::Boolean, " true ").is_ok());
        assert!(check_simple(St::Text(1, 3), "\u{1F600}\u{1F600}\u{1F600}").is_ok());
        assert!(check_simple(St::Email, "a.b+c@example.org").is_ok());
        assert!(check_simple(St::Email, "a@b..c").is_err());
    }
}
