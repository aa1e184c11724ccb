//! Receipts and anomalies of an organization (the Ente's IT sees what happened):
//! `GET …/receipts`, `GET …/receipts/{receiptId}`, `GET …/anomalies`,
//! `POST …/anomalies/{id}/acknowledge`, the receipt's e-mail to its payer/debtor
//! (`GET …/receipts/{receiptId}/email`, `POST …/receipts/{receiptId}/email/resend`). Same API key and cross-tenant rules as the debt
//! positions (401 without a key, 403 for another organization's path).
//!
//! Receipts are shown with pagoPA's field names (paSendRT `ctReceipt`), amounts in integer euro
//! cents like the rest of the API; the detail adds the request as received, byte-exact.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mpay_messages::domain::mail::ReceiptMail;
use mpay_messages::time::rome_local_to_utc;
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
            .route("/{receiptId}", web::get().to(get_receipt))
            .route("/{receiptId}/email", web::get().to(get_receipt_email))
            .route(
                "/{receiptId}/email/resend",
                web::post().to(resend_receipt_email),
            ),
    )
    .service(
        web::scope("/organizations/{organizationfiscalcode}/anomalies")
            .route("", web::get().to(list_anomalies))
            .route("/{id}/acknowledge", web::post().to(acknowledge)),
    );
}

pub use mpay_messages::wire::receipt_json::{
    MapEntry, ReceiptModel, ReceiptTransferModel, SubjectModel,
};

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

pub(crate) fn paging(
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

pub(crate) fn page_info<T>(p: &mpay_storage::Page<T>) -> PageInfo {
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

/// The e-mail of a receipt to its payer/debtor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptEmailModel {
    /// receiptId.
    pub receipt_id: String,
    /// PENDING, RETRYING, SENT or FAILED.
    pub state: String,
    /// Where it goes.
    pub recipients: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Enqueued (with the receipt).
    pub created_at: DateTime<Utc>,
    /// Next attempt (PENDING / RETRYING).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Accepted by the SMTP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<&ReceiptMail> for ReceiptEmailModel {
    fn from(m: &ReceiptMail) -> Self {
        ReceiptEmailModel {
            receipt_id: m.receipt_id.clone(),
            state: m.state.as_str().to_string(),
            recipients: m.recipients.clone(),
            attempts: m.attempts,
            created_at: m.created_at,
            next_attempt_at: m.next_attempt_at.filter(|_| m.state.is_open()),
            last_attempt_at: m.last_attempt_at,
            last_error: m.last_error.clone(),
            sent_at: m.sent_at,
        }
    }
}

/// The receipt's e-mail, when the receipt is the organization's; 404 otherwise.
async fn org_mail(
    state: &AppState,
    auth: &OrgAuth,
    receipt_id: &str,
) -> Result<Option<ReceiptMail>, Problem> {
    let org = auth.fiscal_code().to_string();
    let id = receipt_id.to_string();
    let (receipt, mail) = state
        .store
        .blocking(move |s| {
            Ok::<_, mpay_storage::LedgerError>((
                s.ledger.organization_receipt(&org, &id)?,
                s.ledger.receipt_mail(&id)?,
            ))
        })
        .await?;
    if receipt.is_none() {
        return Err(Problem::not_found(format!(
            "no receipt {receipt_id:?} for organization {}",
            auth.fiscal_code()
        )));
    }
    Ok(mail)
}

fn no_mail(receipt_id: &str) -> Problem {
    Problem::not_found(format!(
        "receipt {receipt_id:?} has no e-mail (no payer or debtor address, or e-mail was off when it was stored)"
    ))
}

/// `GET …/receipts/{receiptId}/email`: the receipt's e-mail to its payer/debtor — state
/// (PENDING, RETRYING, SENT, FAILED), recipients, attempts, last error, next attempt.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}/email",
    params(("organizationfiscalcode" = String, Path), ("receiptId" = String, Path)),
    responses((status = 200, body = ReceiptEmailModel), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn get_receipt_email(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let m = org_mail(&state, &auth, &path.1)
        .await?
        .ok_or_else(|| no_mail(&path.1))?;
    Ok(HttpResponse::Ok().json(ReceiptEmailModel::from(&m)))
}

/// `POST …/receipts/{receiptId}/email/resend`: sends the receipt's e-mail again (a FAILED
/// one, or a SENT one the citizen lost); an open one is made due now.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}/email/resend",
    params(("organizationfiscalcode" = String, Path), ("receiptId" = String, Path)),
    responses((status = 202, body = ReceiptEmailModel), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn resend_receipt_email(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    org_mail(&state, &auth, &path.1)
        .await?
        .ok_or_else(|| no_mail(&path.1))?;
    let id = path.1.clone();
    let m = state
        .store
        .blocking(move |s| s.ledger.resend_mail(&id, Utc::now()))
        .await?
        .ok_or_else(|| no_mail(&path.1))?;
    state
        .store
        .durability
        .commit(mpay_storage::DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)?;
    if let Some(bus) = &state.bus {
        bus.publish(mpay_actors::bus::Event::MailRequeued {
            organization: auth.fiscal_code().to_string(),
            receipt_id: m.receipt_id.clone(),
        });
    }
    Ok(HttpResponse::Accepted().json(ReceiptEmailModel::from(&m)))
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
