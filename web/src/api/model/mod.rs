//! REST DTOs with the field names of pagoPA GPD (`gpd.json`: PaymentPositionModel,
//! PaymentOptionModel, TransferModel, Stamp, PaymentPositionsInfo, PageInfo) and their
//! validation into the domain model. Amounts are integer euro cents, as in GPD.
//!
//! Departures from GPD, all additive: `iuv` and `nav` may be omitted (the platform generates
//! them with the organization's layout); `serviceCode` links a position to the service
//! catalogue; responses carry the debtor fields as well.
//!
//! This file holds the DTOs and the answers built from the domain; `validate.rs` turns a
//! request into the domain model (field errors with their JSON paths, warnings).

use chrono::{DateTime, Utc};
use mpay_messages::position::{
    DebtPosition, Debtor, DebtorType, Destination, MapEntry, OptionStatus, PaymentOption,
    PositionStatus, Stamp, Transfer, MAX_TRANSFERS,
};
use mpay_messages::time::parse_api_datetime;
use mpay_messages::{Amount, FiscalCode, Iban, Iuv, NoticeLayout, NoticeNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::FieldError;
use crate::state::OrgContext;

mod validate;
pub use validate::*;

/// A debt position as sent by the organization (GPD PaymentPositionModel). Omit `nav` and `iuv`
/// to have the notice number generated; amounts are integer euro cents.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "iupd": "TARI-2027-0001",
    "type": "F",
    "fiscalCode": "RSSMRA80A01H501U",
    "fullName": "Mario Rossi",
    "email": "mario.rossi@example.org",
    "companyName": "Comune di Borgo Demo",
    "paymentOption": [{
        "amount": 12050,
        "description": "TARI 2027",
        "isPartialPayment": false,
        "dueDate": "2027-06-30",
        "transfer": [{
            "idTransfer": "1",
            "amount": 12050,
            "remittanceInformation": "TARI 2027",
            "category": "9/0101108TS/",
            "iban": "IT47D0103002600000061234567"
        }]
    }]
}))]
pub struct PaymentPositionModel {
    /// Position id chosen by the organization, unique within it (1..256 characters, no `/`).
    #[schema(example = "80001234568-TARI-2026-000123")]
    pub iupd: String,
    /// Debtor kind: `F` natural person, `G` legal person.
    #[serde(rename = "type")]
    #[schema(example = "F")]
    pub kind: String,
    /// Payable during Stand-In (default true).
    pub pay_stand_in: Option<bool>,
    /// Debtor fiscal code (16 characters for a person, 11 digits for an organization) or `ANONIMO`.
    #[schema(example = "RSSMRA80A01H501U")]
    pub fiscal_code: String,
    /// Debtor name (1..70).
    #[schema(example = "Mario Rossi")]
    pub full_name: String,
    /// Street.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province (2 capital letters).
    pub province: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Country (ISO 3166 alpha-2).
    pub country: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Expire the position after its last due date (default false).
    #[serde(default)]
    pub switch_to_expired: bool,
    /// Organization name shown to the payer (1..140).
    #[schema(example = "Comune di Borgo Demo")]
    pub company_name: String,
    /// Office name (≤ 140).
    pub office_name: Option<String>,
    /// When the position becomes payable after publication (date-time; none = at publication).
    pub validity_date: Option<String>,
    /// Service code of the catalogue (MPay TipologiaServizio), optional.
    pub service_code: Option<String>,
    /// Payment options: one single solution and/or installments (1..100).
    #[serde(default)]
    pub payment_option: Vec<PaymentOptionModel>,
}

/// One payment option (GPD PaymentOptionModel).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionModel {
    /// Notice number (18 digits). Omit it to have one generated.
    #[schema(example = "312000000000000123")]
    pub nav: Option<String>,
    /// IUV (15 or 17 digits). Omit it (and `nav`) to have one generated.
    #[schema(example = "12000000000000123")]
    pub iuv: Option<String>,
    /// Amount in euro cents (1..99999999999); must equal the sum of the transfers.
    #[schema(example = 12050)]
    pub amount: i64,
    /// Description (1..140).
    pub description: String,
    /// True for an installment, false for the single solution (at most one per position).
    pub is_partial_payment: bool,
    /// Due date (RFC 3339 date-time; a local date-time or a date is read in Europe/Rome).
    #[schema(example = "2026-12-31T23:59:59")]
    pub due_date: String,
    /// Retention date.
    pub retention_date: Option<String>,
    /// Transfers (beneficiaries), 1..5.
    #[serde(default)]
    pub transfer: Vec<TransferModel>,
    /// Metadata, up to 10 unique keys.
    #[serde(default)]
    pub payment_option_metadata: Vec<MapEntryModel>,
}

/// One transfer (GPD TransferModel).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferModel {
    /// "1".."5", unique within the option.
    #[schema(example = "1")]
    pub id_transfer: String,
    /// Amount in cents (≥ 1).
    #[schema(example = 12050)]
    pub amount: i64,
    /// Beneficiary organization (11 digits); default the position's organization.
    #[schema(example = "80001234568")]
    pub organization_fiscal_code: Option<String>,
    /// Causale (1..140).
    #[schema(example = "TARI 2027")]
    pub remittance_information: String,
    /// Taxonomy code (tassonomia), e.g. `9/0101108TS/`.
    #[schema(example = "9/0101108TS/")]
    pub category: String,
    /// Bank IBAN (registered for the organization). Mutually exclusive with `stamp`.
    #[schema(example = "IT47D0103002600000061234567")]
    pub iban: Option<String>,
    /// Postal IBAN. Mutually exclusive with `stamp`.
    pub postal_iban: Option<String>,
    /// Marca da bollo digitale request. Mutually exclusive with `iban` and `postalIban`.
    pub stamp: Option<StampModel>,
    /// Beneficiary name.
    pub company_name: Option<String>,
    /// Metadata, up to 10 unique keys.
    #[serde(default)]
    pub transfer_metadata: Vec<MapEntryModel>,
}

/// GPD Stamp.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampModel {
    /// Base64 SHA-256 of the document (4..72 characters).
    pub hash_document: String,
    /// Stamp type (`01`).
    pub stamp_type: String,
    /// Province of residence (2 capital letters).
    pub provincial_residence: String,
}

/// Key/value metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MapEntryModel {
    /// Key (1..140).
    pub key: String,
    /// Value (1..140).
    pub value: String,
}

/// Bulk create body (GPD MultiplePaymentPositionModel).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"paymentPositions": [
    {"iupd": "TARI-2027-0101", "type": "F", "fiscalCode": "VRDGPP75C41F205I", "fullName": "Giuseppina Verdi",
     "companyName": "Comune di Borgo Demo",
     "paymentOption": [{"amount": 24000, "description": "TARI 2027", "isPartialPayment": false, "dueDate": "2027-06-30",
        "transfer": [{"idTransfer": "1", "amount": 24000, "remittanceInformation": "TARI 2027",
                      "category": "9/0101108TS/", "iban": "IT47D0103002600000061234567"}]}]},
    {"iupd": "TARI-2027-0102", "type": "G", "fiscalCode": "01987654322", "fullName": "Trasporti Demo S.r.l.",
     "companyName": "Comune di Borgo Demo",
     "paymentOption": [{"amount": 51000, "description": "TARI 2027", "isPartialPayment": false, "dueDate": "2027-06-30",
        "transfer": [{"idTransfer": "1", "amount": 51000, "remittanceInformation": "TARI 2027",
                      "category": "9/0101108TS/", "iban": "IT47D0103002600000061234567"}]}]}
]}))]
pub struct MultiplePaymentPositionModel {
    /// Positions to create, all or none.
    pub payment_positions: Vec<PaymentPositionModel>,
}

/// A stored debt position as answered (GPD PaymentPositionModelBaseResponse plus debtor fields).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPositionResponse {
    /// Position id.
    pub iupd: String,
    /// Organization.
    pub organization_fiscal_code: String,
    /// F or G.
    #[serde(rename = "type")]
    pub kind: DebtorType,
    /// Debtor fiscal code.
    pub fiscal_code: String,
    /// Debtor name.
    pub full_name: String,
    /// Street.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Expires after the last due date.
    pub switch_to_expired: bool,
    /// Payable in Stand-In.
    pub pay_stand_in: bool,
    /// Organization name.
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Service code.
    pub service_code: Option<String>,
    /// Created.
    pub inserted_date: DateTime<Utc>,
    /// Published.
    pub publish_date: Option<DateTime<Utc>>,
    /// Payable from.
    pub validity_date: Option<DateTime<Utc>>,
    /// Paid at.
    pub payment_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// Status.
    pub status: PositionStatus,
    /// Options.
    pub payment_option: Vec<PaymentOptionResponse>,
    /// Things accepted as sent but worth a look (e.g. a debtor fiscal code whose check
    /// character is wrong: stored as sent, as pagoPA takes what organizations send).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldError>,
}

/// A stored payment option as answered (GPD PaymentOptionModelResponse).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionResponse {
    /// Notice number (18 digits).
    pub nav: String,
    /// IUV.
    pub iuv: String,
    /// Organization.
    pub organization_fiscal_code: String,
    /// Amount, cents.
    #[schema(example = 12050)]
    pub amount: i64,
    /// Description.
    pub description: String,
    /// Installment?
    pub is_partial_payment: bool,
    /// Due date.
    pub due_date: DateTime<Utc>,
    /// Retention date.
    pub retention_date: Option<DateTime<Utc>>,
    /// When the citizen paid (null when unpaid).
    pub payment_date: Option<DateTime<Utc>>,
    /// When it was reported (null until then).
    pub reporting_date: Option<DateTime<Utc>>,
    /// Created.
    pub inserted_date: DateTime<Utc>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// Last change of the notification fee (null when never set).
    pub last_updated_date_notification_fee: Option<DateTime<Utc>>,
    /// Payment method (null when unpaid or unknown).
    pub payment_method: Option<String>,
    /// PSP (null when unpaid or unknown).
    pub psp_company: Option<String>,
    /// Receipt id (null when unpaid).
    pub id_receipt: Option<String>,
    /// Reporting flow (null until reported).
    pub id_flow_reporting: Option<String>,
    /// Fee, cents.
    #[schema(example = 0)]
    pub fee: i64,
    /// Notification fee, cents.
    #[schema(example = 0)]
    pub notification_fee: i64,
    /// Option status.
    pub status: OptionStatus,
    /// Metadata.
    pub payment_option_metadata: Vec<MapEntryModel>,
    /// Transfers.
    pub transfer: Vec<TransferResponse>,
}

/// A stored transfer as answered (GPD TransferModelResponse).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferResponse {
    /// "1".."5".
    #[schema(example = "1")]
    pub id_transfer: String,
    /// Cents.
    #[schema(example = 12050)]
    pub amount: i64,
    /// Beneficiary organization.
    pub organization_fiscal_code: String,
    /// Causale.
    pub remittance_information: String,
    /// Taxonomy.
    pub category: String,
    /// Bank IBAN.
    pub iban: Option<String>,
    /// Postal IBAN.
    pub postal_iban: Option<String>,
    /// Stamp.
    pub stamp: Option<StampModel>,
    /// Beneficiary name.
    pub company_name: Option<String>,
    /// Metadata.
    pub transfer_metadata: Vec<MapEntryModel>,
    /// Reporting state.
    pub status: TransferStatus,
    /// Created.
    pub inserted_date: DateTime<Utc>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
}

/// GPD PageInfo.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PageInfo {
    /// Page number (0-based).
    #[schema(example = 0)]
    pub page: usize,
    /// Page size.
    #[schema(example = 10)]
    pub limit: usize,
    /// Items on this page.
    #[schema(example = 1)]
    pub items_found: usize,
    /// Pages in all.
    #[schema(example = 1)]
    pub total_pages: usize,
}

/// GPD PaymentPositionsInfo (list answer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentPositionsInfo {
    /// The page.
    pub payment_position_list: Vec<PaymentPositionResponse>,
    /// Paging.
    pub page_info: PageInfo,
}

/// Bulk answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiplePaymentPositionResponse {
    /// Created positions, in request order.
    pub payment_positions: Vec<PaymentPositionResponse>,
}

fn entries(m: &[MapEntry]) -> Vec<MapEntryModel> {
    m.iter()
        .map(|e| MapEntryModel {
            key: e.key.clone(),
            value: e.value.clone(),
        })
        .collect()
}

impl From<&DebtPosition> for PaymentPositionResponse {
    fn from(p: &DebtPosition) -> Self {
        let org = p.organization_fiscal_code.to_string();
        PaymentPositionResponse {
            iupd: p.iupd.clone(),
            organization_fiscal_code: org.clone(),
            kind: p.debtor.kind,
            fiscal_code: p.debtor.fiscal_code.to_string(),
            full_name: p.debtor.full_name.clone(),
            street_name: p.debtor.street_name.clone(),
            civic_number: p.debtor.civic_number.clone(),
            postal_code: p.debtor.postal_code.clone(),
            city: p.debtor.city.clone(),
            province: p.debtor.province.clone(),
            region: p.debtor.region.clone(),
            country: p.debtor.country.clone(),
            email: p.debtor.email.clone(),
            phone: p.debtor.phone.clone(),
            switch_to_expired: p.switch_to_expired,
            pay_stand_in: p.pay_stand_in,
            company_name: p.company_name.clone(),
            office_name: p.office_name.clone(),
            service_code: p.service_code.clone(),
            inserted_date: p.inserted_date,
            publish_date: p.publish_date,
            validity_date: p.validity_date,
            payment_date: p.payment_date,
            last_updated_date: p.last_updated_date,
            status: p.status,
            warnings: p
                .debtor
                .fiscal_code
                .check_problem()
                .map(|e| FieldError {
                    field: "fiscalCode".into(),
                    message: format!(
                        "{e}: stored as sent (pagoPA takes the debtor's code as the organization sends it); check it with the debtor"
                    ),
                })
                .into_iter()
                .collect(),
            payment_option: p
                .payment_options
                .iter()
                .map(|o| PaymentOptionResponse::of(p, o))
                .collect(),
        }
    }
}

impl PaymentOptionResponse {
    /// The answer for option `o` of position `p`.
    pub fn of(p: &DebtPosition, o: &PaymentOption) -> Self {
        let org = p.organization_fiscal_code.to_string();
        let d = &o.details;
        PaymentOptionResponse {
            nav: o.nav.to_string(),
            iuv: o.iuv.to_string(),
            organization_fiscal_code: org.clone(),
            amount: o.amount.cents(),
            description: o.description.clone(),
            is_partial_payment: o.is_partial_payment,
            due_date: o.due_date,
            retention_date: o.retention_date,
            payment_date: o.payment_date,
            reporting_date: d.reporting_date,
            inserted_date: d.inserted_date.unwrap_or(p.inserted_date),
            last_updated_date: d.last_updated_date.unwrap_or(p.last_updated_date),
            last_updated_date_notification_fee: d.notification_fee_date,
            payment_method: d.payment_method.clone(),
            psp_company: d.psp_company.clone(),
            id_receipt: d.id_receipt.clone(),
            id_flow_reporting: d.id_flow_reporting.clone(),
            fee: o.fee.cents(),
            notification_fee: o.notification_fee.cents(),
            status: o.status,
            payment_option_metadata: entries(&o.metadata),
            transfer: o
                .transfers
                .iter()
                .map(|t| {
                    let (iban, postal_iban, stamp) = match &t.destination {
                        Destination::Iban { iban, postal_iban } => (
                            Some(iban.to_string()),
                            postal_iban.as_ref().map(|i| i.to_string()),
                            None,
                        ),
                        Destination::PostalIban { postal_iban } => {
                            (None, Some(postal_iban.to_string()), None)
                        }
                        Destination::Stamp(s) => (
                            None,
                            None,
                            Some(StampModel {
                                hash_document: s.hash_document.clone(),
                                stamp_type: s.stamp_type.clone(),
                                provincial_residence: s.provincial_residence.clone(),
                            }),
                        ),
                    };
                    let reported = d.reported_transfers.contains(&t.id_transfer);
                    TransferResponse {
                        id_transfer: t.id_transfer.to_string(),
                        amount: t.amount.cents(),
                        organization_fiscal_code: t
                            .organization_fiscal_code
                            .as_ref()
                            .map(|o| o.to_string())
                            .unwrap_or_else(|| org.clone()),
                        remittance_information: t.remittance_information.clone(),
                        category: t.category.clone(),
                        iban,
                        postal_iban,
                        stamp,
                        company_name: t.company_name.clone(),
                        transfer_metadata: entries(&t.metadata),
                        status: if reported {
                            TransferStatus::TReported
                        } else {
                            TransferStatus::TUnreported
                        },
                        inserted_date: d.inserted_date.unwrap_or(p.inserted_date),
                        last_updated_date: d.last_updated_date.unwrap_or(p.last_updated_date),
                    }
                })
                .collect(),
        }
    }
}

/// Reporting state of a transfer (GPD TransferModelResponse.status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransferStatus {
    /// Not yet found in a reporting flow.
    TUnreported,
    /// Found in a reporting flow.
    TReported,
}
