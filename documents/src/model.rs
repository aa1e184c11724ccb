//! What the renderers take: plain data, filled by the callers (the web crate maps positions and
//! stored receipts to these).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The languages a notice is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Italian only.
    #[default]
    It,
    /// Italian and German (bilingual areas): every label in both.
    ItDe,
}

/// A payment notice: one position, every way of paying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeInput {
    /// The organization (Ente creditore) as printed.
    pub ec_name: String,
    /// The organization's fiscal code (11 digits).
    pub ec_fiscal_code: String,
    /// The organization's CBILL code, when it has one (home banking).
    pub cbill: Option<String>,
    /// Office or sector, when given.
    pub ec_office: Option<String>,
    /// The debtor.
    pub debtor: Party,
    /// What is paid (oggetto del pagamento).
    pub subject: String,
    /// The single solution and/or the installments, in printing order.
    pub options: Vec<NoticeOption>,
    /// Languages.
    pub language: Language,
}

/// A person or organization named on a document.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Party {
    /// Name and surname, or company name.
    pub name: String,
    /// Fiscal code (or `ANONIMO`).
    pub fiscal_code: String,
    /// Address on one line, when known.
    pub address: Option<String>,
}

/// Which option of a notice this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptionKind {
    /// The single solution (rata unica).
    Single,
    /// Installment `number` of `of`.
    Installment {
        /// 1-based.
        number: u32,
        /// How many installments the plan has.
        of: u32,
    },
}

/// One way of paying: its own notice number, amount and QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeOption {
    /// Single solution or installment.
    pub kind: OptionKind,
    /// Notice number (18 digits).
    pub nav: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Due date (Europe/Rome business day).
    pub due_date: NaiveDate,
    /// The option's description.
    pub description: String,
    /// Poste current account (digits, ≤ 12) when the money goes to a postal IBAN: the notice
    /// then carries the Poste bollettino with its Data Matrix.
    pub postal_account: Option<String>,
}

/// A receipt of a payment (one notice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptInput {
    /// The organization (Ente creditore).
    pub ec_name: String,
    /// Its fiscal code.
    pub ec_fiscal_code: String,
    /// The debtor.
    pub debtor: Party,
    /// The payer, when known.
    pub payer: Option<Party>,
    /// Notice number.
    pub nav: String,
    /// IUV (creditorReferenceId).
    pub iuv: String,
    /// The receipt id as pagoPA gave it (never with a transfer index appended).
    pub receipt_id: String,
    /// What was paid.
    pub description: String,
    /// Total in cents.
    pub total_cents: i64,
    /// Fee paid to the PSP in cents, when known.
    pub fee_cents: Option<i64>,
    /// The transfers: amount and beneficiary.
    pub transfers: Vec<ReceiptTransfer>,
    /// PSP name (and id).
    pub psp: String,
    /// Channel (e.g. the PSP's channel id or the payment method).
    pub channel: String,
    /// When it was paid (UTC; printed in Europe/Rome time).
    pub paid_at: DateTime<Utc>,
    /// Outcome (e.g. `OK`).
    pub outcome: String,
    /// Stamps (marca da bollo digitale), one per stamp transfer.
    pub stamps: Vec<StampInfo>,
    /// The public verification address printed as a QR code.
    pub verify_url: String,
}

/// One transfer of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptTransfer {
    /// Amount in cents.
    pub amount_cents: i64,
    /// Beneficiary fiscal code.
    pub beneficiary_fiscal_code: String,
    /// Beneficiary name, when known.
    pub beneficiary_name: Option<String>,
    /// Causale (≤ 140).
    pub remittance_information: String,
    /// IBAN credited, when known.
    pub iban: Option<String>,
}

/// A digital revenue stamp from the receipt's MBDAttachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampInfo {
    /// Stamp unique id (IUBD).
    pub iubd: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// When it was bought (OraAcquisto, as given).
    pub purchased_at: String,
    /// The document digest (base64 SHA-256).
    pub document_digest: String,
}
