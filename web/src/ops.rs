//! Operator endpoints: `/health/live`, `/health/ready`, `/health/actors`, `/metrics`.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mpay_storage::{JournalStore, PositionRepository};
use serde_json::json;

use crate::state::AppState;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use; `None` if another recorder was
/// installed first).
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 7.0,
                ])
                .ok()
                .and_then(|b| b.install_recorder().ok())
        })
        .clone()
}

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health/actors", web::get().to(actors))
        .route("/metrics", web::get().to(metrics_endpoint));
}

/// Liveness: the process answers.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Readiness: 200 when the store is open and every required actor runs; 503 with the list of
/// what is missing otherwise.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let down = state.health.not_ready();
    if down.is_empty() {
        HttpResponse::Ok().json(json!({"status": "UP", "store": "open"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "DOWN", "store": "open", "notRunning": down}))
    }
}

/// The actor list (kind, id, state, restarts, backlog, last error, last heartbeat).
async fn actors(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.health.snapshot())
}

/// Prometheus text exposition.
async fn metrics_endpoint(state: web::Data<AppState>) -> HttpResponse {
    metrics::gauge!("mpay_ledger_positions").set(state.store.ledger.count() as f64);
    metrics::gauge!("mpay_journal_entries").set(state.store.journal.len() as f64);
    metrics::gauge!("mpay_store_bytes").set(state.store.size_on_disk() as f64);
    metrics::gauge!("mpay_store_flushes").set(state.store.durability.flushes() as f64);
    for a in state.health.snapshot() {
        metrics::gauge!("mpay_actor_restarts", "kind" => a.kind.clone(), "id" => a.id.clone())
            .set(a.restarts as f64);
        metrics::gauge!("mpay_actor_backlog", "kind" => a.kind, "id" => a.id)
            .set(a.mailbox_backlog as f64);
    }
    match prometheus() {
        Some(h) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => HttpResponse::ServiceUnavailable().body("metrics recorder not installed"),
    }
}
