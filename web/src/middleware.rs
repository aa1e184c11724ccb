//! Request middleware: per-route metrics for every request, and a journal entry for every API
//! call (sent to the `JournalWriter` actor).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use chrono::Utc;
use mpay_actors::Record;
use mpay_messages::journal::JournalEntry;

use crate::state::AppState;

/// Request id of the current request (from `X-Request-Id` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id [`observe`] gave this request (the one in its log line and `X-Request-Id`
    /// answer header), or a new one outside the middleware (unit tests).
    pub fn of(req: &actix_web::HttpRequest) -> String {
        req.extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }
}

/// Metrics: `mpay_http_requests_total{method,route,status}` and
/// `mpay_http_request_duration_seconds{method,route}`; journal for `/api/` routes.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let at = Utc::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let elapsed = started.elapsed();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16();
    if status >= 500 {
        tracing::warn!(%method, %route, status, latency_us = elapsed.as_micros() as u64, %request_id, "request failed");
    } else {
        tracing::debug!(%method, %route, status, latency_us = elapsed.as_micros() as u64, %request_id, "request");
    }
    metrics::counter!("mpay_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("mpay_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if route.starts_with("/api/v1/") {
        if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
            if let Some(addr) = state.journal_addr() {
                let mi = res.request().match_info();
                let outcome = if res.status().is_success() {
                    "OK".to_string()
                } else {
                    res.status()
                        .canonical_reason()
                        .unwrap_or("error")
                        .to_string()
                };
                let entry = JournalEntry {
                    at,
                    channel: "rest".into(),
                    operation: format!("{method} {route}"),
                    organization: mi.get("organizationfiscalcode").map(str::to_string),
                    key: mi.get("iupd").map(str::to_string),
                    status,
                    outcome,
                    latency_us: elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
                    request_id: request_id.clone(),
                    note: None,
                    payload: None,
                };
                // Bounded mailbox: try first, wait for room only when it is full.
                if let Err(actix::dev::SendError::Full(Record(entry))) =
                    addr.try_send(Record(entry))
                {
                    let _ = addr.send(Record(entry)).await;
                }
            }
        }
    }
    // Errors raised by the framework itself (body too large, wrong method, ...) come as plain
    // text: give API clients the same problem JSON as every other error.
    let is_problem = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // the SANP payment-options API answers its own error body (application/json)
    let own_errors = route.starts_with("/api/v1/payment-options/");
    let mut res = if (route.starts_with("/api/") || route == "unmatched")
        && res.status().as_u16() >= 400
        && !is_problem
        && !own_errors
    {
        let status = res.status();
        let detail = match status.as_u16() {
            413 => {
                let limit = res
                    .request()
                    .app_data::<web::Data<AppState>>()
                    .map(|s| s.settings.http.body_limit_bytes)
                    .unwrap_or_default();
                format!("the request body is larger than {limit} bytes")
            }
            405 => format!("method {method} is not allowed on this resource"),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        };
        let problem = crate::problem::Problem::new(
            status,
            status.canonical_reason().unwrap_or("Error"),
            detail,
        );
        let (req, _) = res.into_parts();
        ServiceResponse::new(req, actix_web::ResponseError::error_response(&problem))
            .map_into_boxed_body()
    } else {
        res.map_into_boxed_body()
    };
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            v,
        );
    }
    Ok(res)
}
