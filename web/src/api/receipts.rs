//! Receipts and anomalies of an organization (the Ente's IT sees what happened):
//! `GET …/receipts`, `GET …/receipts/{receiptId}`, `GET …/anomalies`,
//! `POST …/anomalies/{id}/acknowledge`. Same API key and cross-tenant rules as the debt
//! positions (401 without a key, 403 for another organization's path).
//!
//! Receipts are shown with pagoPA's field names (paSendRT `ctReceipt`), amounts in integer euro
//! cents like the rest of the API; the detail adds the request as received, byte-exact.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mpay_messages::time::rome_local_to_utc;
use mpay_messages::wire::pafornode::{Receipt, ReceiptTransfer, Subject};
use mpay_storage::{AnomalyRecord, AnomalyState, ReceiptFilter, StoredReceipt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::model::PageInfo;
use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::AppState;

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/receipts")
            .route("", web::get().to(list_receipts))
            .route("/{receiptId}", web::get().to(get_receipt)),
    )
    .service(
        web::scope("/organizations/{organizationfiscalcode}/anomalies")
            .route("", web::get().to(list_anomalies))
            .route("/{id}/acknowledge", web::post().to(acknowledge)),
    );
}

/// A key/value pair (`metadata.mapEntry`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MapEntry {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

fn map(m: &[(String, String)]) -> Vec<MapEntry> {
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

/// A stored receipt: how and when it arrived, what it paid, the flags raised, the receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRecordModel {
    /// receiptId.
    pub receipt_id: String,
    /// idPA of the request.
    #[serde(rename = "idPA")]
    pub id_pa: String,
    /// Station it arrived on.
    pub id_station: String,
    /// `paSendRT` or `paSendRTV2`.
    pub operation: String,
    /// Arrival (UTC).
    pub received_at: DateTime<Utc>,
    /// APPLIED, DUPLICATE, DOUBLE_PAYMENT or ORPHAN.
    pub disposition: String,
    /// The debt position it paid, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iupd: Option<String>,
    /// Departures flagged when it was accepted (`kind` + details), empty when none.
    #[schema(value_type = Vec<Object>)]
    pub flags: Vec<serde_json::Value>,
    /// The receipt.
    pub receipt: ReceiptModel,
    /// The request as received, byte-exact (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_xml: Option<String>,
}

impl ReceiptRecordModel {
    fn of(r: &StoredReceipt, with_raw: bool) -> Self {
        ReceiptRecordModel {
            receipt_id: r.receipt_id.clone(),
            id_pa: r.id_pa.clone(),
            id_station: r.id_station.clone(),
            operation: r.operation.clone(),
            received_at: r.received_at,
            disposition: serde_json::to_value(r.disposition)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            iupd: r.iupd.clone(),
            flags: r
                .flags
                .iter()
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect(),
            receipt: ReceiptModel::from(&r.receipt),
            raw_xml: with_raw.then(|| r.raw_xml.clone()),
        }
    }
}

/// A page of receipts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptsPage {
    /// The page.
    pub page_info: PageInfo,
    /// Receipts, newest first.
    pub receipts: Vec<ReceiptRecordModel>,
}

/// An anomaly for operators.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyModel {
    /// Id (for the acknowledge action).
    pub id: String,
    /// ORPHAN_RECEIPT (unknown notice), POSSIBLE_DOUBLE_PAYMENT, PAID_WITH_DIFFERENCE,
    /// PAID_WHILE_NOT_PAYABLE, STATION_MISMATCH or RECEIPT_DEPARTURE.
    pub kind: String,
    /// The kind's details (amounts in cents, flags of a departure…).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Notice number.
    pub notice_number: String,
    /// The receipt that raised it.
    pub receipt_id: String,
    /// Raised at (UTC).
    pub at: DateTime<Utc>,
    /// OPEN or ACKNOWLEDGED.
    pub state: String,
    /// When it was acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The operator's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgement_note: Option<String>,
}

impl From<&AnomalyRecord> for AnomalyModel {
    fn from(a: &AnomalyRecord) -> Self {
        let mut details = serde_json::to_value(&a.anomaly.kind).unwrap_or_default();
        let kind = details
            .as_object_mut()
            .and_then(|o| o.remove("kind"))
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_default();
        AnomalyModel {
            id: a.id.to_string(),
            kind,
            details,
            notice_number: a.anomaly.notice_number.clone(),
            receipt_id: a.anomaly.receipt_id.clone(),
            at: a.anomaly.at,
            state: match a.state() {
                AnomalyState::Open => "OPEN".into(),
                AnomalyState::Acknowledged => "ACKNOWLEDGED".into(),
            },
            acknowledged_at: a.acknowledgement.as_ref().map(|k| k.at),
            acknowledgement_note: a.acknowledgement.as_ref().and_then(|k| k.note.clone()),
        }
    }
}

/// A page of anomalies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnomaliesPage {
    /// The page.
    pub page_info: PageInfo,
    /// Anomalies, newest first.
    pub anomalies: Vec<AnomalyModel>,
}

/// Body of the acknowledge action (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "refunded to the payer, bank transfer of 2026-12-05"}))]
pub struct AcknowledgeModel {
    /// Free note (e.g. the refund reference), up to 500 characters.
    pub note: Option<String>,
}

/// Filters of `GET …/receipts`. Any other parameter is refused (400 naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// Received on or after: a day `YYYY-MM-DD` (Europe/Rome, from 00:00) or a date-time.
    pub from: Option<String>,
    /// Received on or before: a day `YYYY-MM-DD` (Europe/Rome, the whole day) or a date-time.
    pub to: Option<String>,
    /// Notice number (18 digits).
    pub notice_number: Option<String>,
    /// IUV (`creditorReferenceId`).
    pub iuv: Option<String>,
    /// Debtor's fiscal code.
    pub debtor: Option<String>,
    /// Page number, 0-based.
    pub page: Option<usize>,
    /// Page size (1..max_page_limit, default 10).
    pub limit: Option<usize>,
}

/// Filters of `GET …/anomalies`. Any other parameter is refused (400 naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomalyQuery {
    /// OPEN or ACKNOWLEDGED (default: both).
    pub state: Option<String>,
    /// Page number, 0-based.
    pub page: Option<usize>,
    /// Page size (1..max_page_limit, default 10).
    pub limit: Option<usize>,
}

fn paging(
    state: &AppState,
    page: Option<usize>,
    limit: Option<usize>,
) -> Result<(usize, usize), Problem> {
    let max = state.settings.api.max_page_limit;
    let limit = limit.unwrap_or(10.min(max));
    if limit == 0 || limit > max {
        return Err(Problem::field("limit", format!("must be 1..{max}")));
    }
    Ok((page.unwrap_or(0), limit))
}

/// A bound of the date range: a day (Europe/Rome; `end` = the next midnight) or a date-time.
fn bound(name: &str, v: Option<&str>, end: bool) -> Result<Option<DateTime<Utc>>, Problem> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        return Ok(rome_local_to_utc(day.and_time(NaiveTime::MIN)));
    }
    mpay_messages::time::parse_api_datetime(s)
        .map(|t| {
            Some(if end {
                t + chrono::Duration::nanoseconds(1)
            } else {
                t
            })
        })
        .map_err(|_| Problem::field(name, "must be a day YYYY-MM-DD or a date-time"))
}

fn page_info<T>(p: &mpay_storage::Page<T>) -> PageInfo {
    PageInfo {
        page: p.page,
        limit: p.limit,
        items_found: p.items.len(),
        total_pages: p.total_items.div_ceil(p.limit.max(1)),
    }
}

/// `GET …/receipts`: the organization's receipts, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts",
    params(("organizationfiscalcode" = String, Path), ReceiptQuery),
    responses((status = 200, body = ReceiptsPage), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn list_receipts(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<ReceiptQuery>,
) -> Result<HttpResponse, Problem> {
    let (page, limit) = paging(&state, query.page, query.limit)?;
    let trimmed = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let filter = ReceiptFilter {
        from: bound("from", query.from.as_deref(), false)?,
        to: bound("to", query.to.as_deref(), true)?,
        notice_number: trimmed(&query.notice_number),
        iuv: trimmed(&query.iuv),
        debtor: trimmed(&query.debtor),
    };
    let org = auth.fiscal_code().to_string();
    let p = state.store.list_receipts(org, filter, page, limit).await?;
    Ok(HttpResponse::Ok().json(ReceiptsPage {
        page_info: page_info(&p),
        receipts: p
            .items
            .iter()
            .map(|r| ReceiptRecordModel::of(r, false))
            .collect(),
    }))
}

/// `GET …/receipts/{receiptId}`: one receipt with the request as received (`rawXml`).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}",
    params(("organizationfiscalcode" = String, Path), ("receiptId" = String, Path)),
    responses((status = 200, body = ReceiptRecordModel), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn get_receipt(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let id = path.1.clone();
    let found = state.store.organization_receipt(org, id).await?;
    match found {
        Some(r) => Ok(HttpResponse::Ok().json(ReceiptRecordModel::of(&r, true))),
        None => Err(Problem::not_found(format!(
            "no receipt {:?} for organization {}",
            path.1,
            auth.fiscal_code()
        ))),
    }
}

/// `GET …/anomalies`: double payments, payments with a difference, unknown notices, station
/// mismatches, receipt departures…; newest first, filtered by state, paged.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/anomalies",
    params(("organizationfiscalcode" = String, Path), AnomalyQuery),
    responses((status = 200, body = AnomaliesPage), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn list_anomalies(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<AnomalyQuery>,
) -> Result<HttpResponse, Problem> {
    let (page, limit) = paging(&state, query.page, query.limit)?;
    let filter = match query.state.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if s.eq_ignore_ascii_case("OPEN") => Some(AnomalyState::Open),
        Some(s) if s.eq_ignore_ascii_case("ACKNOWLEDGED") => Some(AnomalyState::Acknowledged),
        Some(_) => return Err(Problem::field("state", "must be OPEN or ACKNOWLEDGED")),
    };
    let org = auth.fiscal_code().to_string();
    let p = state.store.list_anomalies(org, filter, page, limit).await?;
    Ok(HttpResponse::Ok().json(AnomaliesPage {
        page_info: page_info(&p),
        anomalies: p.items.iter().map(AnomalyModel::from).collect(),
    }))
}

/// `POST …/anomalies/{id}/acknowledge`: marks an anomaly as seen (idempotent: the first
/// acknowledgement is kept). Body optional: `{"note": "refund 2026/123"}`.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/anomalies/{id}/acknowledge",
    params(("organizationfiscalcode" = String, Path), ("id" = String, Path)),
    request_body(content = AcknowledgeModel, description = "optional note"),
    responses((status = 200, body = AnomalyModel), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn acknowledge(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let not_found = || {
        Problem::not_found(format!(
            "no anomaly {:?} for organization {}",
            path.1,
            auth.fiscal_code()
        ))
    };
    let id: u64 = path.1.trim().parse().map_err(|_| not_found())?;
    let model: AcknowledgeModel = if body.iter().all(u8::is_ascii_whitespace) {
        AcknowledgeModel::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::field("body", format!("must be {{\"note\": \"...\"}}: {e}")))?
    };
    let note = model
        .note
        .map(|n| mpay_messages::text::normalise(&n, 500).0)
        .filter(|n| !n.is_empty());
    let org = auth.fiscal_code().to_string();
    let rec = state
        .store
        .acknowledge_anomaly(org, id, note, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    state
        .store
        .durability
        .commit(mpay_storage::DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)?;
    Ok(HttpResponse::Ok().json(AnomalyModel::from(&rec)))
}
