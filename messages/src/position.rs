//! The debt position (posizione debitoria), modelled after pagoPA GPD
//! (`gpd.json`: PaymentPositionModel, PaymentOptionModel, TransferModel, Stamp) and SPEC §6.
//!
//! These are the stored domain records: identifiers are typed, amounts are [`Amount`]
//! (integer euro cents), instants are UTC. The REST layer has its own DTOs with GPD
//! field names and converts into these after validation.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Amount, FiscalCode, Iban, Iuv, NoticeNumber, OrgFiscalCode};
use crate::time::rome_date;

/// Most transfers (beneficiaries) one payment option may carry (SPEC §5.2, `ctTransferListPA` 1..5).
pub const MAX_TRANSFERS: usize = 5;

/// Lifecycle of a debt position (GPD `status`, SPEC §6).
///
/// `DRAFT → PUBLISHED → VALID → (PARTIALLY_PAID) → PAID → REPORTED`; `INVALID` (cancelled),
/// `EXPIRED` (due date passed with `switchToExpired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PositionStatus {
    /// Created, not yet visible to pagoPA; freely editable and deletable.
    Draft,
    /// Published with a future validity date; becomes VALID at that date.
    Published,
    /// Payable.
    Valid,
    /// Cancelled by the organization.
    Invalid,
    /// Past its due date with `switchToExpired`.
    Expired,
    /// Some installments paid.
    PartiallyPaid,
    /// Paid.
    Paid,
    /// Paid and found in a reporting flow (FdR).
    Reported,
}

impl PositionStatus {
    /// The wire name (`"VALID"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Published => "PUBLISHED",
            Self::Valid => "VALID",
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::PartiallyPaid => "PARTIALLY_PAID",
            Self::Paid => "PAID",
            Self::Reported => "REPORTED",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "DRAFT" => Self::Draft,
            "PUBLISHED" => Self::Published,
            "VALID" => Self::Valid,
            "INVALID" => Self::Invalid,
            "EXPIRED" => Self::Expired,
            "PARTIALLY_PAID" => Self::PartiallyPaid,
            "PAID" => Self::Paid,
            "REPORTED" => Self::Reported,
            _ => return None,
        })
    }

    /// True once money has been collected on the position (PARTIALLY_PAID, PAID, REPORTED):
    /// such a position can no longer be updated, deleted or invalidated.
    pub fn has_payments(self) -> bool {
        matches!(self, Self::PartiallyPaid | Self::Paid | Self::Reported)
    }
}

/// State of one payment option (GPD PaymentOptionModelResponse.status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OptionStatus {
    /// Not paid.
    PoUnpaid,
    /// Paid (a receipt arrived).
    PoPaid,
    /// Partially paid.
    PoPartiallyReported,
    /// Paid and reported in a flow.
    PoReported,
}

/// Debtor kind: natural (`F`) or legal (`G`) person (`stEntityUniqueIdentifierType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum DebtorType {
    /// Natural person (persona fisica).
    F,
    /// Legal person (persona giuridica).
    G,
}

/// The debtor of a position (GPD flat fields `type`, `fiscalCode`, `fullName`, address, contacts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Debtor {
    /// F or G.
    pub kind: DebtorType,
    /// Person or organization fiscal code, or `ANONIMO`.
    pub fiscal_code: FiscalCode,
    /// Name and surname or company name (1..70 in the pagoPA XSD).
    pub full_name: String,
    /// Street.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province (2 letters).
    pub province: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Country (ISO 3166 alpha-2).
    pub country: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
}

/// A key/value pair of metadata (`ctMetadata` mapEntry, ≤ 140 chars each; ≤ 10 per owner in GPD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapEntry {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A marca da bollo digitale request (GPD `Stamp`, SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    /// Base64 SHA-256 of the document (stBase64Binary72, 4..72 chars).
    pub hash_document: String,
    /// Stamp type (`01`).
    pub stamp_type: String,
    /// Province of residence of the payer (2 capital letters).
    pub provincial_residence: String,
}

/// Where the money of a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Destination {
    /// A bank account, optionally with a postal account the PSP may prefer.
    Iban {
        /// Bank IBAN.
        iban: Iban,
        /// Optional postal IBAN.
        postal_iban: Option<Iban>,
    },
    /// A postal account only.
    PostalIban {
        /// Postal IBAN.
        postal_iban: Iban,
    },
    /// A digital revenue stamp: served only through paGetPaymentV2.
    Stamp(Stamp),
}

/// One beneficiary share of a payment option (GPD TransferModel; SPEC §5.2 ctTransferPA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// 1..5, unique within the option.
    pub id_transfer: u8,
    /// Share in cents (> 0).
    pub amount: Amount,
    /// Beneficiary organization; `None` = the position's organization.
    #[serde(deserialize_with = "crate::ids::gpd::org_opt")]
    pub organization_fiscal_code: Option<OrgFiscalCode>,
    /// Causale (≤ 140 chars).
    pub remittance_information: String,
    /// Taxonomy code (tassonomia, e.g. `9/0101108TS/`).
    pub category: String,
    /// Where the money goes.
    pub destination: Destination,
    /// Beneficiary company name.
    pub company_name: Option<String>,
    /// Metadata (≤ 10).
    pub metadata: Vec<MapEntry>,
}

/// One way of paying the position: the single solution or one installment (GPD PaymentOptionModel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOption {
    /// Notice number (NAV), unique per organization (GPD's looser form only in positions of
    /// an organization with `gpd_compat.free_identifiers`).
    #[serde(deserialize_with = "crate::ids::gpd::nav")]
    pub nav: NoticeNumber,
    /// IUV, unique per organization forever (GPD's looser form as `nav`).
    #[serde(deserialize_with = "crate::ids::gpd::iuv")]
    pub iuv: Iuv,
    /// Amount in cents (> 0) = sum of the transfers.
    pub amount: Amount,
    /// Description (≤ 140).
    pub description: String,
    /// True for an installment (rata), false for the single solution.
    pub is_partial_payment: bool,
    /// Due date (instant; its Europe/Rome date is the business due date).
    pub due_date: DateTime<Utc>,
    /// Retention date.
    pub retention_date: Option<DateTime<Utc>>,
    /// Fee in cents.
    pub fee: Amount,
    /// Notification fee in cents.
    pub notification_fee: Amount,
    /// Option state.
    pub status: OptionStatus,
    /// When it was paid.
    pub payment_date: Option<DateTime<Utc>>,
    /// 1..5 transfers.
    pub transfers: Vec<Transfer>,
    /// Metadata (≤ 10).
    pub metadata: Vec<MapEntry>,
    /// What GPD clients read besides (plan, dates, how it was paid, reporting); empty in
    /// records written before.
    #[serde(default)]
    pub details: OptionDetails,
}

/// Per-option facts beyond pagoPA's option: the installment plan it belongs to (GPD v3
/// `paymentOption` group), its own dates, how it was paid and when it was reported. Every field
/// defaults to empty so that records stored before decode.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionDetails {
    /// The plan (GPD v3 payment option) an installment belongs to; `None` = the one implicit
    /// plan of v1 (every `isPartialPayment` option) or the single solution.
    #[serde(default)]
    pub plan: Option<String>,
    /// The plan's description (GPD v3 `paymentOption[].description`).
    #[serde(default)]
    pub plan_description: Option<String>,
    /// When the option was created.
    #[serde(default)]
    pub inserted_date: Option<DateTime<Utc>>,
    /// Last change of the option.
    #[serde(default)]
    pub last_updated_date: Option<DateTime<Utc>>,
    /// How it was paid (receipt `paymentMethod`, or what the organization declared).
    #[serde(default)]
    pub payment_method: Option<String>,
    /// The PSP (receipt `pspCompanyName`).
    #[serde(default)]
    pub psp_company: Option<String>,
    /// The receipt id.
    #[serde(default)]
    pub id_receipt: Option<String>,
    /// The reporting flow (FdR) that reported it.
    #[serde(default)]
    pub id_flow_reporting: Option<String>,
    /// When it was reported.
    #[serde(default)]
    pub reporting_date: Option<DateTime<Utc>>,
    /// Paid outside pagoPA (declared by the organization, e.g. at its counter).
    #[serde(default)]
    pub paid_outside: bool,
    /// Transfers (`idTransfer`) found in a reporting flow.
    #[serde(default)]
    pub reported_transfers: Vec<u8>,
    /// Last change of the notification fee.
    #[serde(default)]
    pub notification_fee_date: Option<DateTime<Utc>>,
}

impl PaymentOption {
    /// An unpaid single-solution option without transfers or metadata; the IUV is the notice
    /// number's. Fees are zero.
    pub fn new(
        nav: NoticeNumber,
        amount: Amount,
        description: impl Into<String>,
        due_date: DateTime<Utc>,
    ) -> Self {
        PaymentOption {
            iuv: nav.iuv(),
            nav,
            amount,
            description: description.into(),
            is_partial_payment: false,
            due_date,
            retention_date: None,
            fee: Amount::ZERO,
            notification_fee: Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers: Vec::new(),
            metadata: Vec::new(),
            details: OptionDetails::default(),
        }
    }

    /// The installment plan this option belongs to: `None` for a single solution
    /// (`isPartialPayment=false`), `Some("")` for the implicit plan of v1 installments.
    pub fn plan_key(&self) -> Option<&str> {
        self.is_partial_payment
            .then(|| self.details.plan.as_deref().unwrap_or(""))
    }

    /// Business due date in Europe/Rome.
    pub fn due_day(&self) -> NaiveDate {
        rome_date(self.due_date)
    }
}

/// A debt position (GPD PaymentPositionModel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DebtPosition {
    /// Organization that owns it (GPD's looser form only for an organization with
    /// `gpd_compat.free_identifiers`).
    #[serde(deserialize_with = "crate::ids::gpd::org")]
    pub organization_fiscal_code: OrgFiscalCode,
    /// Position id chosen by the organization (unique per organization; ≤ 256 printable chars).
    pub iupd: String,
    /// Debtor.
    pub debtor: Debtor,
    /// Expire after the last due date (GPD `switchToExpired`, SPEC §6 rule 6).
    pub switch_to_expired: bool,
    /// Payable in Stand-In (GPD `payStandIn`).
    pub pay_stand_in: bool,
    /// Organization (company) name shown on the notice.
    pub company_name: String,
    /// Office name.
    pub office_name: Option<String>,
    /// Service code (TipologiaServizio), when the position belongs to a configured service.
    pub service_code: Option<String>,
    /// When it becomes payable after publication; `None` = at publication.
    pub validity_date: Option<DateTime<Utc>>,
    /// Status.
    pub status: PositionStatus,
    /// Creation instant.
    pub inserted_date: DateTime<Utc>,
    /// Publication instant.
    pub publish_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// When it was (fully) paid.
    pub payment_date: Option<DateTime<Utc>>,
    /// Options (single solution and/or installments), at least one.
    pub payment_options: Vec<PaymentOption>,
    /// Revision, incremented by every stored change (optimistic concurrency).
    pub revision: u64,
    /// Where the position came from (records written before it was recorded read as
    /// [`Origin::Unrecorded`]).
    #[serde(default)]
    pub origin: Origin,
}

/// Where a debt position came from: decides who may change it and what is ours in it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Origin {
    /// Stored before origins were recorded (see [`DebtPosition::origin_or_derived`]).
    #[default]
    Unrecorded,
    /// Created through the REST API (GPD-style).
    Rest,
    /// An MPay Archivio Carichi document (`iupd` = `numeroDocumento`).
    ArchivioCarichi,
    /// Created by a bulk feed.
    Feed {
        /// The flow (file) that created it.
        flow_id: String,
    },
    /// Created on a PSP's paDemandPaymentNotice for a service.
    PspDemand {
        /// The service code (TipologiaServizio).
        service: String,
    },
    /// Created for a spontaneous payment in the citizen portal.
    Portal {
        /// The service code (TipologiaServizio).
        service: String,
    },
}

impl Debtor {
    /// A debtor with only a fiscal code and a name: kind `G` for an organization's fiscal code,
    /// `F` otherwise (including `ANONIMO`).
    pub fn new(fiscal_code: FiscalCode, full_name: impl Into<String>) -> Self {
        Debtor {
            kind: match fiscal_code {
                FiscalCode::Organization(_) => DebtorType::G,
                _ => DebtorType::F,
            },
            fiscal_code,
            full_name: full_name.into(),
            street_name: None,
            civic_number: None,
            postal_code: None,
            city: None,
            province: None,
            region: None,
            country: None,
            email: None,
            phone: None,
        }
    }
}

impl Transfer {
    /// A transfer to a bank IBAN of the position's own organization, without metadata.
    pub fn to_iban(
        id_transfer: u8,
        amount: Amount,
        iban: Iban,
        remittance_information: impl Into<String>,
        category: impl Into<String>,
    ) -> Self {
        Transfer {
            id_transfer,
            amount,
            organization_fiscal_code: None,
            remittance_information: remittance_information.into(),
            category: category.into(),
            destination: Destination::Iban {
                iban,
                postal_iban: None,
            },
            company_name: None,
            metadata: Vec::new(),
        }
    }
}

impl DebtPosition {
    /// A new DRAFT position without options, created at `now` (revision 0). Set the options,
    /// then [`DebtPosition::mark_published`] when it is created published.
    pub fn new(
        organization_fiscal_code: OrgFiscalCode,
        iupd: impl Into<String>,
        debtor: Debtor,
        company_name: impl Into<String>,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Self {
        DebtPosition {
            organization_fiscal_code,
            iupd: iupd.into(),
            debtor,
            switch_to_expired: false,
            pay_stand_in: true,
            company_name: company_name.into(),
            office_name: None,
            service_code: None,
            validity_date: None,
            status: PositionStatus::Draft,
            inserted_date: now,
            publish_date: None,
            last_updated_date: now,
            payment_date: None,
            payment_options: Vec::new(),
            revision: 0,
            origin,
        }
    }

    /// The latest business due date (Europe/Rome) among the options; drives expiry.
    pub fn last_due_day(&self) -> Option<NaiveDate> {
        self.payment_options.iter().map(|o| o.due_day()).max()
    }

    /// Earliest and latest option due instants.
    pub fn due_range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let min = self.payment_options.iter().map(|o| o.due_date).min()?;
        let max = self.payment_options.iter().map(|o| o.due_date).max()?;
        Some((min, max))
    }
}
