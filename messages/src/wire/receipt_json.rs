//! A receipt as JSON, in pagoPA's field names (paSendRT `ctReceipt` / `ctReceiptV2`), amounts
//! in integer euro cents: what the REST API shows and what an Ente's webhook receives.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::wire::pafornode::{Receipt, ReceiptTransfer, Subject};

/// A key/value pair (`metadata.mapEntry`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MapEntry {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

pub(crate) fn map(m: &[(String, String)]) -> Vec<MapEntry> {
    m.iter()
        .map(|(key, value)| MapEntry {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// `ctSubject` (debtor, payer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubjectModel {
    /// `F` (person) or `G` (legal entity).
    #[serde(rename = "entityUniqueIdentifierType")]
    pub entity_unique_identifier_type: String,
    /// Fiscal code or `ANONIMO`.
    #[serde(rename = "entityUniqueIdentifierValue")]
    pub entity_unique_identifier_value: String,
    /// Name.
    #[serde(rename = "fullName")]
    pub full_name: String,
    /// Street.
    #[serde(rename = "streetName", skip_serializing_if = "Option::is_none")]
    pub street_name: Option<String>,
    /// Civic number.
    #[serde(rename = "civicNumber", skip_serializing_if = "Option::is_none")]
    pub civic_number: Option<String>,
    /// Postal code.
    #[serde(rename = "postalCode", skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Province/region.
    #[serde(
        rename = "stateProvinceRegion",
        skip_serializing_if = "Option::is_none"
    )]
    pub state_province_region: Option<String>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// E-mail.
    #[serde(rename = "e-mail", skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&Subject> for SubjectModel {
    fn from(s: &Subject) -> Self {
        SubjectModel {
            entity_unique_identifier_type: s.kind.clone(),
            entity_unique_identifier_value: s.id_value.clone(),
            full_name: s.full_name.clone(),
            street_name: s.street_name.clone(),
            civic_number: s.civic_number.clone(),
            postal_code: s.postal_code.clone(),
            city: s.city.clone(),
            state_province_region: s.state_province_region.clone(),
            country: s.country.clone(),
            email: s.email.clone(),
        }
    }
}

/// A transfer of a receipt (`ctTransferPA` / `ctTransferPAReceiptV2`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptTransferModel {
    /// 1..5.
    #[serde(rename = "idTransfer")]
    pub id_transfer: u8,
    /// Cents.
    #[serde(rename = "transferAmount")]
    pub transfer_amount: i64,
    /// Beneficiary organization.
    #[serde(rename = "fiscalCodePA")]
    pub fiscal_code_pa: String,
    /// Beneficiary name (V2).
    #[serde(rename = "companyName", skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Account credited.
    #[serde(rename = "IBAN", skip_serializing_if = "Option::is_none")]
    pub iban: Option<String>,
    /// The stamp bought (V2), base64 as received.
    #[serde(rename = "MBDAttachment", skip_serializing_if = "Option::is_none")]
    pub mbd_attachment: Option<String>,
    /// Remittance information as received.
    #[serde(rename = "remittanceInformation")]
    pub remittance_information: String,
    /// Taxonomy code (empty when the PSP left it out).
    #[serde(rename = "transferCategory")]
    pub transfer_category: String,
    /// Metadata.
    pub metadata: Vec<MapEntry>,
}

impl From<&ReceiptTransfer> for ReceiptTransferModel {
    fn from(t: &ReceiptTransfer) -> Self {
        ReceiptTransferModel {
            id_transfer: t.id_transfer,
            transfer_amount: t.amount.cents(),
            fiscal_code_pa: t.fiscal_code_pa.clone(),
            company_name: t.company_name.clone(),
            iban: t.iban.clone(),
            mbd_attachment: t.mbd_attachment.clone(),
            remittance_information: t.remittance_information.clone(),
            transfer_category: t.transfer_category.clone(),
            metadata: map(&t.metadata),
        }
    }
}

/// The receipt (`ctReceipt` / `ctReceiptV2`), pagoPA's field names, amounts in cents.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptModel {
    /// receiptId (payment token).
    #[serde(rename = "receiptId")]
    pub receipt_id: String,
    /// Notice number.
    #[serde(rename = "noticeNumber")]
    pub notice_number: String,
    /// Organization owning the notice.
    #[serde(rename = "fiscalCode")]
    pub fiscal_code: String,
    /// OK.
    pub outcome: String,
    /// IUV.
    #[serde(rename = "creditorReferenceId")]
    pub creditor_reference_id: String,
    /// Cents.
    #[serde(rename = "paymentAmount")]
    pub payment_amount: i64,
    /// Description.
    pub description: String,
    /// Organization name.
    #[serde(rename = "companyName")]
    pub company_name: String,
    /// Office.
    #[serde(rename = "officeName", skip_serializing_if = "Option::is_none")]
    pub office_name: Option<String>,
    /// Debtor.
    pub debtor: SubjectModel,
    /// Transfers.
    #[serde(rename = "transferList")]
    pub transfer_list: Vec<ReceiptTransferModel>,
    /// PSP.
    #[serde(rename = "idPSP")]
    pub id_psp: String,
    /// PSP fiscal code.
    #[serde(rename = "pspFiscalCode", skip_serializing_if = "Option::is_none")]
    pub psp_fiscal_code: Option<String>,
    /// PSP VAT number.
    #[serde(rename = "pspPartitaIVA", skip_serializing_if = "Option::is_none")]
    pub psp_partita_iva: Option<String>,
    /// PSP name.
    #[serde(rename = "PSPCompanyName")]
    pub psp_company_name: String,
    /// Channel.
    #[serde(rename = "idChannel")]
    pub id_channel: String,
    /// Channel description.
    #[serde(rename = "channelDescription")]
    pub channel_description: String,
    /// Payer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<SubjectModel>,
    /// Payment method.
    #[serde(rename = "paymentMethod", skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// Cart id (V2).
    #[serde(rename = "paymentNote", skip_serializing_if = "Option::is_none")]
    pub payment_note: Option<String>,
    /// Fee paid by the payer, cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<i64>,
    /// Fee borne by the organization (V2), cents.
    #[serde(
        rename = "primaryCiIncurredFee",
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_ci_incurred_fee: Option<i64>,
    /// Bundle (V2).
    #[serde(rename = "idBundle", skip_serializing_if = "Option::is_none")]
    pub id_bundle: Option<String>,
    /// Organization bundle (V2).
    #[serde(rename = "idCiBundle", skip_serializing_if = "Option::is_none")]
    pub id_ci_bundle: Option<String>,
    /// Payment time as written.
    #[serde(rename = "paymentDateTime", skip_serializing_if = "Option::is_none")]
    pub payment_date_time: Option<String>,
    /// Application date.
    #[serde(rename = "applicationDate", skip_serializing_if = "Option::is_none")]
    pub application_date: Option<String>,
    /// Transfer date.
    #[serde(rename = "transferDate", skip_serializing_if = "Option::is_none")]
    pub transfer_date: Option<String>,
    /// Metadata.
    pub metadata: Vec<MapEntry>,
    /// Paid in Stand-In.
    #[serde(rename = "standIn")]
    pub stand_in: bool,
}

impl From<&Receipt> for ReceiptModel {
    fn from(r: &Receipt) -> Self {
        ReceiptModel {
            receipt_id: r.receipt_id.clone(),
            notice_number: r.notice_number.clone(),
            fiscal_code: r.fiscal_code.clone(),
            outcome: r.outcome.clone(),
            creditor_reference_id: r.creditor_reference_id.clone(),
            payment_amount: r.payment_amount.cents(),
            description: r.description.clone(),
            company_name: r.company_name.clone(),
            office_name: r.office_name.clone(),
            debtor: SubjectModel::from(&r.debtor),
            transfer_list: r.transfers.iter().map(ReceiptTransferModel::from).collect(),
            id_psp: r.id_psp.clone(),
            psp_fiscal_code: r.psp_fiscal_code.clone(),
            psp_partita_iva: r.psp_partita_iva.clone(),
            psp_company_name: r.psp_company_name.clone(),
            id_channel: r.id_channel.clone(),
            channel_description: r.channel_description.clone(),
            payer: r.payer.as_ref().map(SubjectModel::from),
            payment_method: r.payment_method.clone(),
            payment_note: r.payment_note.clone(),
            fee: r.fee.map(|a| a.cents()),
            primary_ci_incurred_fee: r.primary_ci_incurred_fee.map(|a| a.cents()),
            id_bundle: r.id_bundle.clone(),
            id_ci_bundle: r.id_ci_bundle.clone(),
            payment_date_time: r.payment_date_time.clone(),
            application_date: r.application_date.clone(),
            transfer_date: r.transfer_date.clone(),
            metadata: map(&r.metadata),
            stand_in: r.stand_in,
        }
    }
}
