//! Receipt recovery (issue 14, "blindatura"): operators ask for the receipt of one notice to
//! be fetched from pagoPA's biz-events API, and see what waits.
//!
//! - `POST /api/v1/organizations/{cf}/receipts/recover` with `noticeNumber` or `iuv` (and the
//!   `iur` when known): 202 + the queue entry. An entry that ended NOT_FOUND / FAILED is re-armed
//!   (attempts from 0); a WAITING or RECOVERED one is answered as it is.
//! - `GET /api/v1/organizations/{cf}/receipts/recovery?state=`: the organization's entries.
//!
//! The `ReceiptRecovery` worker (`mpay_actors::receipt_recovery`) makes the calls within the
//! hourly quota; the rules are `mpay_messages::domain::recovery`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use mpay_messages::domain::recovery::{RecoveryEntry, RecoveryReason, RecoveryState};
use mpay_messages::NoticeNumber;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::AppState;

/// Routes (under `/api/v1`; registered before the receipts' scope, whose `{receiptId}` would
/// take `recovery`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    const ORG: &str = "/organizations/{organizationfiscalcode}";
    cfg.route(&format!("{ORG}/receipts/recover"), web::post().to(recover))
        .route(
            &format!("{ORG}/receipts/recovery"),
            web::get().to(list_recovery),
        );
}

/// What to recover: a notice number or an IUV.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"noticeNumber": "312000000000000042"}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverRequest {
    /// Notice number (18 digits).
    #[serde(default)]
    pub notice_number: Option<String>,
    /// IUV (`creditorReferenceId`), when the notice number is not given.
    #[serde(default)]
    pub iuv: Option<String>,
    /// IUR (= receiptId, the payment token) when known: the API looks the receipt up by it.
    #[serde(default)]
    pub iur: Option<String>,
}

/// An entry of the recovery queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryEntryModel {
    /// Organization.
    pub organization: String,
    /// IUV.
    pub iuv: String,
    /// Notice number, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_number: Option<String>,
    /// IUR, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iur: Option<String>,
    /// `IUV_NO_RT` (a flow reports it, no receipt), `PAYMENT_IN_PROGRESS` (paGetPayment
    /// answered, no receipt after `[biz_events] delay_secs`), `OPERATOR`.
    pub reason: String,
    /// `WAITING`, `RECOVERED`, `NOT_FOUND`, `FAILED`.
    pub state: String,
    /// Calls made.
    pub attempts: u32,
    /// Not before (WAITING).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// First queued.
    pub queued_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The last call's failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The receipt stored (RECOVERED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

fn reason_name(r: RecoveryReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl From<RecoveryEntry> for RecoveryEntryModel {
    fn from(e: RecoveryEntry) -> Self {
        RecoveryEntryModel {
            organization: e.organization,
            iuv: e.iuv,
            notice_number: e.notice_number,
            iur: e.iur,
            reason: reason_name(e.reason),
            state: e.state.as_str().to_string(),
            attempts: e.attempts,
            next_attempt: e.next_attempt,
            queued_at: e.queued_at,
            updated_at: e.updated_at,
            last_error: e.last_error,
            receipt_id: e.receipt_id,
        }
    }
}

/// A token of the identifiers' alphabet (IUV, IUR: letters, digits, `-`, `_`, `.`; 1..35).
fn token(field: &str, s: &str) -> Result<String, Problem> {
    let t = s.trim();
    let ok = (1..=35).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(t.to_string())
    } else {
        Err(Problem::field(
            field,
            "1 to 35 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// `POST /api/v1/organizations/{cf}/receipts/recover`.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/recover",
    params(("organizationfiscalcode" = String, Path)),
    request_body = RecoverRequest,
    responses((status = 202, body = RecoveryEntryModel, description = "the queue entry: WAITING until the worker calls pagoPA's biz-events API within its hourly quota; an entry already RECOVERED or WAITING is answered as it is"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn recover(
    state: web::Data<AppState>,
    auth: OrgAuth,
    body: web::Json<RecoverRequest>,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let req = body.into_inner();
    let iur = match req.iur.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(token("iur", s)?),
    };
    let (nav, iuv) = match (
        req.notice_number
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty()),
        req.iuv.as_deref().map(str::trim).filter(|s| !s.is_empty()),
    ) {
        (Some(n), iuv) => {
            let nav = NoticeNumber::parse_unchecked(n)
                .map_err(|e| Problem::field("noticeNumber", e.to_string()))?;
            let derived = nav.iuv().as_str().to_string();
            if let Some(given) = iuv {
                if given != derived {
                    return Err(Problem::field(
                        "iuv",
                        format!("the notice number's IUV is {derived}"),
                    ));
                }
            }
            (Some(nav.as_str().to_string()), derived)
        }
        (None, Some(iuv)) => (None, token("iuv", iuv)?),
        (None, None) => {
            return Err(Problem::field(
                "noticeNumber",
                "give the notice number or the IUV",
            ))
        }
    };
    let (entry, _) = state
        .store
        .blocking(move |s| {
            let now = Utc::now();
            let q = s.recovery()?;
            let e = RecoveryEntry::new(&org, &iuv, nav, iur, RecoveryReason::Operator, now);
            let out = q.request(e, now)?;
            s.flush_blocking()?;
            Ok::<_, mpay_storage::StorageError>(out)
        })
        .await
        .map_err(|e| Problem::from(mpay_storage::LedgerError::Storage(e)))?;
    Ok(HttpResponse::Accepted().json(RecoveryEntryModel::from(entry)))
}

/// Filters of `GET …/receipts/recovery`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecoveryQuery {
    /// WAITING, RECOVERED, NOT_FOUND or FAILED (default: all).
    pub state: Option<String>,
    /// The API key, when not sent in the `Ocp-Apim-Subscription-Key` header.
    #[serde(default, rename = "subscription-key")]
    pub subscription_key: Option<String>,
}

/// `GET /api/v1/organizations/{cf}/receipts/recovery`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/recovery",
    params(("organizationfiscalcode" = String, Path), RecoveryQuery),
    responses((status = 200, body = [RecoveryEntryModel], description = "the organization's recovery queue by IUV"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "receipts"
)]
pub async fn list_recovery(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<RecoveryQuery>,
) -> Result<HttpResponse, Problem> {
    let filter = match query.state.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(RecoveryState::parse(s).ok_or_else(|| {
            Problem::field("state", "must be WAITING, RECOVERED, NOT_FOUND or FAILED")
        })?),
    };
    let org = auth.fiscal_code().to_string();
    let entries = state
        .store
        .blocking(move |s| s.recovery()?.list(&org, filter))
        .await
        .map_err(|e| Problem::from(mpay_storage::LedgerError::Storage(e)))?;
    let out: Vec<RecoveryEntryModel> = entries.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(out))
}
