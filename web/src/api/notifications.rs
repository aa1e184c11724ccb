//! An Ente's notifications (issue 13): what the outbox holds for it and what happened to each
//! delivery — `GET …/notifications?state=…` (paged, newest first, with attempts, last error and
//! next attempt) and `POST …/notifications/{id}/resend` (back to PENDING, due now, a new
//! delivery window; the connector is woken through the bus). Same API key and cross-tenant
//! rules as the debt positions (401 without a key, 403 for another organization's path).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use mpay_actors::bus::Event;
use mpay_messages::domain::delivery::{Notification, NotificationState};
use mpay_messages::wire::ente::idempotency_key;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::model::PageInfo;
use super::receipts::{page_info, paging};
use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::AppState;

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/notifications")
            .route("", web::get().to(list_notifications))
            .route("/{id}/resend", web::post().to(resend)),
    );
}

/// One notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationModel {
    /// Id (path of the resend action).
    pub id: String,
    /// The `Idempotency-Key` the Ente receives (the same on every attempt).
    pub idempotency_key: String,
    /// `PAYMENT_RECEIPT`, `PAYMENT_REVOCATION` or `REPORTING_FLOW`.
    pub kind: String,
    /// The receipt notified (empty for a reporting flow).
    pub receipt_id: String,
    /// Its notice number (empty for a reporting flow).
    pub notice_number: String,
    /// The reporting flow forwarded (`REPORTING_FLOW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// Its revision (0 for an XML file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_revision: Option<u32>,
    /// The PSP that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_sender: Option<String>,
    /// PENDING, RETRYING, DELIVERED or FAILED.
    pub state: String,
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
    /// Acknowledged by the Ente.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<&Notification> for NotificationModel {
    fn from(n: &Notification) -> Self {
        let flow = n.flow_ref();
        let (receipt_id, notice_number) = if flow.is_some() {
            (String::new(), String::new())
        } else {
            (n.receipt_id.clone(), n.notice_number.clone())
        };
        NotificationModel {
            id: n.id.to_string(),
            idempotency_key: idempotency_key(&n.organization, n.id),
            kind: serde_json::to_value(n.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            receipt_id,
            notice_number,
            flow_id: flow.as_ref().map(|f| f.flow_id.clone()),
            flow_revision: flow.as_ref().map(|f| f.revision),
            flow_sender: flow.map(|f| f.sender),
            state: n.state.as_str().to_string(),
            attempts: n.attempts,
            created_at: n.created_at,
            next_attempt_at: n.next_attempt_at.filter(|_| n.state.is_open()),
            last_attempt_at: n.last_attempt_at,
            last_error: n.last_error.clone(),
            delivered_at: n.delivered_at,
        }
    }
}

/// A page of notifications.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsPage {
    /// The page.
    pub page_info: PageInfo,
    /// Notifications, newest first.
    pub notifications: Vec<NotificationModel>,
}

/// Filters of `GET …/notifications`. Any other parameter is refused (400 naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// PENDING, RETRYING, DELIVERED or FAILED (default: all).
    pub state: Option<String>,
    /// Page number, 0-based.
    pub page: Option<usize>,
    /// Page size (1..max_page_limit, default 10).
    pub limit: Option<usize>,
    /// The API key, when not sent in the `Ocp-Apim-Subscription-Key` header.
    #[serde(default, rename = "subscription-key")]
    pub subscription_key: Option<String>,
}

/// `GET …/notifications`: the organization's notifications, newest first, by state, paged.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/notifications",
    params(("organizationfiscalcode" = String, Path), NotificationQuery),
    responses((status = 200, body = NotificationsPage), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "notifications"
)]
pub async fn list_notifications(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<NotificationQuery>,
) -> Result<HttpResponse, Problem> {
    let (page, limit) = paging(&state, query.page, query.limit)?;
    let filter = match query.state.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            NotificationState::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                Problem::field("state", "must be PENDING, RETRYING, DELIVERED or FAILED")
            })?,
        ),
    };
    let org = auth.fiscal_code().to_string();
    let p = state
        .store
        .list_notifications(org, filter, page, limit)
        .await?;
    Ok(HttpResponse::Ok().json(NotificationsPage {
        page_info: page_info(&p),
        notifications: p.items.iter().map(NotificationModel::from).collect(),
    }))
}

/// `POST …/notifications/{id}/resend`: delivers a notification again (a FAILED one, or a
/// DELIVERED one the Ente lost), with the same `Idempotency-Key`; an open one is made due now.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/notifications/{id}/resend",
    params(("organizationfiscalcode" = String, Path), ("id" = String, Path)),
    responses((status = 202, body = NotificationModel), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "notifications"
)]
pub async fn resend(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let not_found = || {
        Problem::not_found(format!(
            "no notification {:?} for organization {}",
            path.1,
            auth.fiscal_code()
        ))
    };
    let id: u64 = path.1.trim().parse().map_err(|_| not_found())?;
    let org = auth.fiscal_code().to_string();
    let n = state
        .store
        .resend_notification(org.clone(), id, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    state
        .store
        .durability
        .commit(mpay_storage::DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)?;
    if let Some(bus) = &state.bus {
        bus.publish(Event::NotificationRequeued {
            organization: org,
            id,
        });
    }
    Ok(HttpResponse::Accepted().json(NotificationModel::from(&n)))
}
