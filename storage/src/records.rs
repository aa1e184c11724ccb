//! Compact storage records (schema byte 2, postcard) of the domain types, converted from/to
//! them. Frozen: a field added to a domain type needs a new record type and schema byte here,
//! never an edit of these (postcard bodies carry no field names).
//!
//! What makes them small, besides varints and no field names: instants as (seconds, nanos)
//! varints instead of RFC 3339 text; an option's IUV omitted when it is its notice number's
//! (the usual case); enums as one-byte variant indexes.
//!
//! Identifiers are read back through `mpay_messages::ids::gpd` (pagoPA's shapes, or GPD's looser
//! ones in positions of organizations with `gpd_compat.free_identifiers`): the bytes are the
//! same strings either way.

use chrono::{DateTime, Utc};
use mpay_messages::domain::delivery::{Notification, NotificationKind, NotificationState};
use mpay_messages::ids::gpd;
use mpay_messages::position::{
    DebtPosition, Debtor, DebtorType, Destination, MapEntry, OptionDetails, OptionStatus, Origin,
    PaymentOption, PositionStatus, Stamp, Transfer,
};
use mpay_messages::{Amount, FiscalCode, Iban, Iuv, NoticeNumber, OrgFiscalCode};
use serde::{Deserialize, Serialize};

use crate::codec::Compact;

/// An instant: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InstantV2(i64, u32);

impl InstantV2 {
    fn of(t: &DateTime<Utc>) -> Self {
        InstantV2(t.timestamp(), t.timestamp_subsec_nanos())
    }

    fn instant(self) -> Result<DateTime<Utc>, String> {
        DateTime::from_timestamp(self.0, self.1).ok_or_else(|| format!("bad instant {self:?}"))
    }
}

fn opt_instant(t: Option<InstantV2>) -> Result<Option<DateTime<Utc>>, String> {
    t.map(InstantV2::instant).transpose()
}

/// [`PositionStatus`], frozen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum PositionStatusV2 {
    /// DRAFT.
    Draft,
    /// PUBLISHED.
    Published,
    /// VALID.
    Valid,
    /// INVALID.
    Invalid,
    /// EXPIRED.
    Expired,
    /// PARTIALLY_PAID.
    PartiallyPaid,
    /// PAID.
    Paid,
    /// REPORTED.
    Reported,
}

impl From<PositionStatus> for PositionStatusV2 {
    fn from(s: PositionStatus) -> Self {
        match s {
            PositionStatus::Draft => Self::Draft,
            PositionStatus::Published => Self::Published,
            PositionStatus::Valid => Self::Valid,
            PositionStatus::Invalid => Self::Invalid,
            PositionStatus::Expired => Self::Expired,
            PositionStatus::PartiallyPaid => Self::PartiallyPaid,
            PositionStatus::Paid => Self::Paid,
            PositionStatus::Reported => Self::Reported,
        }
    }
}

impl From<PositionStatusV2> for PositionStatus {
    fn from(s: PositionStatusV2) -> Self {
        match s {
            PositionStatusV2::Draft => Self::Draft,
            PositionStatusV2::Published => Self::Published,
            PositionStatusV2::Valid => Self::Valid,
            PositionStatusV2::Invalid => Self::Invalid,
            PositionStatusV2::Expired => Self::Expired,
            PositionStatusV2::PartiallyPaid => Self::PartiallyPaid,
            PositionStatusV2::Paid => Self::Paid,
            PositionStatusV2::Reported => Self::Reported,
        }
    }
}

/// [`OptionStatus`], frozen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum OptionStatusV2 {
    /// PO_UNPAID.
    Unpaid,
    /// PO_PAID.
    Paid,
    /// PO_PARTIALLY_REPORTED.
    PartiallyReported,
    /// PO_REPORTED.
    Reported,
}

impl From<OptionStatus> for OptionStatusV2 {
    fn from(s: OptionStatus) -> Self {
        match s {
            OptionStatus::PoUnpaid => Self::Unpaid,
            OptionStatus::PoPaid => Self::Paid,
            OptionStatus::PoPartiallyReported => Self::PartiallyReported,
            OptionStatus::PoReported => Self::Reported,
        }
    }
}

impl From<OptionStatusV2> for OptionStatus {
    fn from(s: OptionStatusV2) -> Self {
        match s {
            OptionStatusV2::Unpaid => Self::PoUnpaid,
            OptionStatusV2::Paid => Self::PoPaid,
            OptionStatusV2::PartiallyReported => Self::PoPartiallyReported,
            OptionStatusV2::Reported => Self::PoReported,
        }
    }
}

/// [`Origin`], frozen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OriginV2 {
    /// Unrecorded.
    Unrecorded,
    /// REST.
    Rest,
    /// Archivio Carichi.
    ArchivioCarichi,
    /// Feed with its flow id.
    Feed(String),
    /// PSP demand with its service.
    PspDemand(String),
    /// Portal with its service.
    Portal(String),
}

impl From<&Origin> for OriginV2 {
    fn from(o: &Origin) -> Self {
        match o {
            Origin::Unrecorded => Self::Unrecorded,
            Origin::Rest => Self::Rest,
            Origin::ArchivioCarichi => Self::ArchivioCarichi,
            Origin::Feed { flow_id } => Self::Feed(flow_id.clone()),
            Origin::PspDemand { service } => Self::PspDemand(service.clone()),
            Origin::Portal { service } => Self::Portal(service.clone()),
        }
    }
}

impl From<OriginV2> for Origin {
    fn from(o: OriginV2) -> Self {
        match o {
            OriginV2::Unrecorded => Self::Unrecorded,
            OriginV2::Rest => Self::Rest,
            OriginV2::ArchivioCarichi => Self::ArchivioCarichi,
            OriginV2::Feed(flow_id) => Self::Feed { flow_id },
            OriginV2::PspDemand(service) => Self::PspDemand { service },
            OriginV2::Portal(service) => Self::Portal { service },
        }
    }
}

/// [`Debtor`], frozen (`kind`: true = legal person `G`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebtorV2 {
    legal: bool,
    fiscal_code: FiscalCode,
    full_name: String,
    street_name: Option<String>,
    civic_number: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    province: Option<String>,
    region: Option<String>,
    country: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

/// [`Destination`], frozen (externally tagged: one variant byte).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DestinationV2 {
    /// Bank IBAN and optional postal IBAN.
    Iban(Iban, Option<Iban>),
    /// Postal IBAN only.
    PostalIban(Iban),
    /// Marca da bollo: hash, type, province.
    Stamp(String, String, String),
}

/// [`Transfer`], frozen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferV2 {
    id_transfer: u8,
    amount: Amount,
    #[serde(deserialize_with = "gpd::org_opt")]
    organization_fiscal_code: Option<OrgFiscalCode>,
    remittance_information: String,
    category: String,
    destination: DestinationV2,
    company_name: Option<String>,
    metadata: Vec<(String, String)>,
}

/// [`PaymentOption`], frozen (`iuv` absent when it is the notice number's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentOptionV2 {
    #[serde(deserialize_with = "gpd::nav")]
    nav: NoticeNumber,
    #[serde(deserialize_with = "gpd::iuv_opt")]
    iuv: Option<Iuv>,
    amount: Amount,
    description: String,
    is_partial_payment: bool,
    due_date: InstantV2,
    retention_date: Option<InstantV2>,
    fee: Amount,
    notification_fee: Amount,
    status: OptionStatusV2,
    payment_date: Option<InstantV2>,
    transfers: Vec<TransferV2>,
    metadata: Vec<(String, String)>,
    details: OptionDetailsV2,
}

/// [`OptionDetails`], frozen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptionDetailsV2 {
    plan: Option<String>,
    plan_description: Option<String>,
    inserted_date: Option<InstantV2>,
    last_updated_date: Option<InstantV2>,
    payment_method: Option<String>,
    psp_company: Option<String>,
    id_receipt: Option<String>,
    id_flow_reporting: Option<String>,
    reporting_date: Option<InstantV2>,
    paid_outside: bool,
    reported_transfers: Vec<u8>,
    notification_fee_date: Option<InstantV2>,
}

fn details_record(d: &OptionDetails) -> OptionDetailsV2 {
    OptionDetailsV2 {
        plan: d.plan.clone(),
        plan_description: d.plan_description.clone(),
        inserted_date: d.inserted_date.as_ref().map(InstantV2::of),
        last_updated_date: d.last_updated_date.as_ref().map(InstantV2::of),
        payment_method: d.payment_method.clone(),
        psp_company: d.psp_company.clone(),
        id_receipt: d.id_receipt.clone(),
        id_flow_reporting: d.id_flow_reporting.clone(),
        reporting_date: d.reporting_date.as_ref().map(InstantV2::of),
        paid_outside: d.paid_outside,
        reported_transfers: d.reported_transfers.clone(),
        notification_fee_date: d.notification_fee_date.as_ref().map(InstantV2::of),
    }
}

fn details_of(d: OptionDetailsV2) -> Result<OptionDetails, String> {
    Ok(OptionDetails {
        plan: d.plan,
        plan_description: d.plan_description,
        inserted_date: opt_instant(d.inserted_date)?,
        last_updated_date: opt_instant(d.last_updated_date)?,
        payment_method: d.payment_method,
        psp_company: d.psp_company,
        id_receipt: d.id_receipt,
        id_flow_reporting: d.id_flow_reporting,
        reporting_date: opt_instant(d.reporting_date)?,
        paid_outside: d.paid_outside,
        reported_transfers: d.reported_transfers,
        notification_fee_date: opt_instant(d.notification_fee_date)?,
    })
}

/// [`DebtPosition`], frozen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PositionV2 {
    #[serde(deserialize_with = "gpd::org")]
    organization_fiscal_code: OrgFiscalCode,
    iupd: String,
    debtor: DebtorV2,
    switch_to_expired: bool,
    pay_stand_in: bool,
    company_name: String,
    office_name: Option<String>,
    service_code: Option<String>,
    validity_date: Option<InstantV2>,
    status: PositionStatusV2,
    inserted_date: InstantV2,
    publish_date: Option<InstantV2>,
    last_updated_date: InstantV2,
    payment_date: Option<InstantV2>,
    payment_options: Vec<PaymentOptionV2>,
    revision: u64,
    origin: OriginV2,
}

fn pairs(m: &[MapEntry]) -> Vec<(String, String)> {
    m.iter().map(|e| (e.key.clone(), e.value.clone())).collect()
}

fn entries(m: Vec<(String, String)>) -> Vec<MapEntry> {
    m.into_iter()
        .map(|(key, value)| MapEntry { key, value })
        .collect()
}

impl Compact for DebtPosition {
    type Record = PositionV2;

    fn to_record(&self) -> PositionV2 {
        let d = &self.debtor;
        PositionV2 {
            organization_fiscal_code: self.organization_fiscal_code.clone(),
            iupd: self.iupd.clone(),
            debtor: DebtorV2 {
                legal: d.kind == DebtorType::G,
                fiscal_code: d.fiscal_code.clone(),
                full_name: d.full_name.clone(),
                street_name: d.street_name.clone(),
                civic_number: d.civic_number.clone(),
                postal_code: d.postal_code.clone(),
                city: d.city.clone(),
                province: d.province.clone(),
                region: d.region.clone(),
                country: d.country.clone(),
                email: d.email.clone(),
                phone: d.phone.clone(),
            },
            switch_to_expired: self.switch_to_expired,
            pay_stand_in: self.pay_stand_in,
            company_name: self.company_name.clone(),
            office_name: self.office_name.clone(),
            service_code: self.service_code.clone(),
            validity_date: self.validity_date.as_ref().map(InstantV2::of),
            status: self.status.into(),
            inserted_date: InstantV2::of(&self.inserted_date),
            publish_date: self.publish_date.as_ref().map(InstantV2::of),
            last_updated_date: InstantV2::of(&self.last_updated_date),
            payment_date: self.payment_date.as_ref().map(InstantV2::of),
            payment_options: self.payment_options.iter().map(option_record).collect(),
            revision: self.revision,
            origin: (&self.origin).into(),
        }
    }

    fn from_record(r: PositionV2) -> Result<Self, String> {
        let d = r.debtor;
        Ok(DebtPosition {
            organization_fiscal_code: r.organization_fiscal_code,
            iupd: r.iupd,
            debtor: Debtor {
                kind: if d.legal {
                    DebtorType::G
                } else {
                    DebtorType::F
                },
                fiscal_code: d.fiscal_code,
                full_name: d.full_name,
                street_name: d.street_name,
                civic_number: d.civic_number,
                postal_code: d.postal_code,
                city: d.city,
                province: d.province,
                region: d.region,
                country: d.country,
                email: d.email,
                phone: d.phone,
            },
            switch_to_expired: r.switch_to_expired,
            pay_stand_in: r.pay_stand_in,
            company_name: r.company_name,
            office_name: r.office_name,
            service_code: r.service_code,
            validity_date: opt_instant(r.validity_date)?,
            status: r.status.into(),
            inserted_date: r.inserted_date.instant()?,
            publish_date: opt_instant(r.publish_date)?,
            last_updated_date: r.last_updated_date.instant()?,
            payment_date: opt_instant(r.payment_date)?,
            payment_options: r
                .payment_options
                .into_iter()
                .map(option_of)
                .collect::<Result<_, _>>()?,
            revision: r.revision,
            origin: r.origin.into(),
        })
    }
}

fn option_record(o: &PaymentOption) -> PaymentOptionV2 {
    PaymentOptionV2 {
        nav: o.nav.clone(),
        iuv: (o.iuv != o.nav.iuv()).then(|| o.iuv.clone()),
        amount: o.amount,
        description: o.description.clone(),
        is_partial_payment: o.is_partial_payment,
        due_date: InstantV2::of(&o.due_date),
        retention_date: o.retention_date.as_ref().map(InstantV2::of),
        fee: o.fee,
        notification_fee: o.notification_fee,
        status: o.status.into(),
        payment_date: o.payment_date.as_ref().map(InstantV2::of),
        transfers: o.transfers.iter().map(transfer_record).collect(),
        metadata: pairs(&o.metadata),
        details: details_record(&o.details),
    }
}

fn option_of(o: PaymentOptionV2) -> Result<PaymentOption, String> {
    Ok(PaymentOption {
        iuv: o.iuv.unwrap_or_else(|| o.nav.iuv()),
        nav: o.nav,
        amount: o.amount,
        description: o.description,
        is_partial_payment: o.is_partial_payment,
        due_date: o.due_date.instant()?,
        retention_date: opt_instant(o.retention_date)?,
        fee: o.fee,
        notification_fee: o.notification_fee,
        status: o.status.into(),
        payment_date: opt_instant(o.payment_date)?,
        transfers: o.transfers.into_iter().map(transfer_of).collect(),
        metadata: entries(o.metadata),
        details: details_of(o.details)?,
    })
}

fn transfer_record(t: &Transfer) -> TransferV2 {
    TransferV2 {
        id_transfer: t.id_transfer,
        amount: t.amount,
        organization_fiscal_code: t.organization_fiscal_code.clone(),
        remittance_information: t.remittance_information.clone(),
        category: t.category.clone(),
        destination: match &t.destination {
            Destination::Iban { iban, postal_iban } => {
                DestinationV2::Iban(iban.clone(), postal_iban.clone())
            }
            Destination::PostalIban { postal_iban } => {
                DestinationV2::PostalIban(postal_iban.clone())
            }
            Destination::Stamp(s) => DestinationV2::Stamp(
                s.hash_document.clone(),
                s.stamp_type.clone(),
                s.provincial_residence.clone(),
            ),
        },
        company_name: t.company_name.clone(),
        metadata: pairs(&t.metadata),
    }
}

fn transfer_of(t: TransferV2) -> Transfer {
    Transfer {
        id_transfer: t.id_transfer,
        amount: t.amount,
        organization_fiscal_code: t.organization_fiscal_code,
        remittance_information: t.remittance_information,
        category: t.category,
        destination: match t.destination {
            DestinationV2::Iban(iban, postal_iban) => Destination::Iban { iban, postal_iban },
            DestinationV2::PostalIban(postal_iban) => Destination::PostalIban { postal_iban },
            DestinationV2::Stamp(hash_document, stamp_type, provincial_residence) => {
                Destination::Stamp(Stamp {
                    hash_document,
                    stamp_type,
                    provincial_residence,
                })
            }
        },
        company_name: t.company_name,
        metadata: entries(t.metadata),
    }
}

/// [`NotificationState`], frozen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum NotificationStateV2 {
    /// PENDING.
    Pending,
    /// RETRYING.
    Retrying,
    /// DELIVERED.
    Delivered,
    /// FAILED.
    Failed,
}

/// [`NotificationKind`], frozen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum NotificationKindV2 {
    /// PAYMENT_RECEIPT.
    PaymentReceipt,
    /// PAYMENT_REVOCATION (appended: postcard numbers variants in order, so records written
    /// before it read unchanged).
    PaymentRevocation,
    /// REPORTING_FLOW (appended, as above).
    ReportingFlow,
}

/// [`Notification`] (an Ente's outbox entry), frozen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationV2 {
    id: u64,
    organization: String,
    kind: NotificationKindV2,
    receipt_id: String,
    notice_number: String,
    position: String,
    state: NotificationStateV2,
    attempts: u32,
    created_at: InstantV2,
    window_start: InstantV2,
    next_attempt_at: Option<InstantV2>,
    last_attempt_at: Option<InstantV2>,
    last_error: Option<String>,
    delivered_at: Option<InstantV2>,
}

impl Compact for Notification {
    type Record = NotificationV2;

    fn to_record(&self) -> NotificationV2 {
        NotificationV2 {
            id: self.id,
            organization: self.organization.clone(),
            kind: match self.kind {
                NotificationKind::PaymentReceipt => NotificationKindV2::PaymentReceipt,
                NotificationKind::PaymentRevocation => NotificationKindV2::PaymentRevocation,
                NotificationKind::ReportingFlow => NotificationKindV2::ReportingFlow,
            },
            receipt_id: self.receipt_id.clone(),
            notice_number: self.notice_number.clone(),
            position: self.position.clone(),
            state: match self.state {
                NotificationState::Pending => NotificationStateV2::Pending,
                NotificationState::Retrying => NotificationStateV2::Retrying,
                NotificationState::Delivered => NotificationStateV2::Delivered,
                NotificationState::Failed => NotificationStateV2::Failed,
            },
            attempts: self.attempts,
            created_at: InstantV2::of(&self.created_at),
            window_start: InstantV2::of(&self.window_start),
            next_attempt_at: self.next_attempt_at.as_ref().map(InstantV2::of),
            last_attempt_at: self.last_attempt_at.as_ref().map(InstantV2::of),
            last_error: self.last_error.clone(),
            delivered_at: self.delivered_at.as_ref().map(InstantV2::of),
        }
    }

    fn from_record(r: NotificationV2) -> Result<Self, String> {
        Ok(Notification {
            id: r.id,
            organization: r.organization,
            kind: match r.kind {
                NotificationKindV2::PaymentReceipt => NotificationKind::PaymentReceipt,
                NotificationKindV2::PaymentRevocation => NotificationKind::PaymentRevocation,
                NotificationKindV2::ReportingFlow => NotificationKind::ReportingFlow,
            },
            receipt_id: r.receipt_id,
            notice_number: r.notice_number,
            position: r.position,
            state: match r.state {
                NotificationStateV2::Pending => NotificationState::Pending,
                NotificationStateV2::Retrying => NotificationState::Retrying,
                NotificationStateV2::Delivered => NotificationState::Delivered,
                NotificationStateV2::Failed => NotificationState::Failed,
            },
            attempts: r.attempts,
            created_at: r.created_at.instant()?,
            window_start: r.window_start.instant()?,
            next_attempt_at: opt_instant(r.next_attempt_at)?,
            last_attempt_at: opt_instant(r.last_attempt_at)?,
            last_error: r.last_error,
            delivered_at: opt_instant(r.delivered_at)?,
        })
    }
}
