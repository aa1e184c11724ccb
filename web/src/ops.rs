//! Operator endpoints: `/health/live`, `/health/ready`, `/health/actors`, `/metrics`.

use std::sync::OnceLock;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
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
                .inspect(|_| describe_metrics())
        })
        .clone()
}

/// Every metric of the platform: kind, name, `# HELP` text, and the label sets that exist from
/// the start (a counter is exported at 0 before its first event, so rates and alerts work
/// from the first scrape).
/// One metric: kind (`c` counter, `h` histogram, `g` gauge), name, help, initial label sets.
type MetricSpec = (
    char,
    &'static str,
    &'static str,
    &'static [&'static [(&'static str, &'static str)]],
);

const METRICS: &[MetricSpec] = &[
    (
        'c',
        "mpay_http_requests_total",
        "HTTP requests answered, by method, route pattern and status",
        &[],
    ),
    (
        'h',
        "mpay_http_request_duration_seconds",
        "HTTP request latency in seconds, by method and route pattern",
        &[],
    ),
    (
        'c',
        "mpay_station_requests_total",
        "pagoPA station (paForNode) requests, by operation and outcome (OK or PAA_* fault code)",
        &[
            &[("operation", "paVerifyPaymentNotice"), ("outcome", "OK")],
            &[("operation", "paGetPayment"), ("outcome", "OK")],
            &[("operation", "paGetPaymentV2"), ("outcome", "OK")],
            &[("operation", "paSendRT"), ("outcome", "OK")],
            &[("operation", "paSendRTV2"), ("outcome", "OK")],
            &[("operation", "paDemandPaymentNotice"), ("outcome", "OK")],
        ],
    ),
    (
        'h',
        "mpay_station_request_seconds",
        "pagoPA station request latency in seconds, by operation",
        &[],
    ),
    (
        'c',
        "mpay_archivio_requests_total",
        "MPay Archivio Carichi requests, by operation and outcome (codiceEsito)",
        &[
            &[("operation", "inserimentoEC"), ("outcome", "00")],
            &[("operation", "variazioneEC"), ("outcome", "00")],
            &[("operation", "cancellazioneEC"), ("outcome", "00")],
            &[("operation", "discaricoEC"), ("outcome", "00")],
            &[("operation", "richiestaAvvisoPagoPa"), ("outcome", "00")],
        ],
    ),
    (
        'c',
        "mpay_actor_errors_total",
        "errors reported by actors, by kind",
        &[&[("kind", "JournalWriter")], &[("kind", "Scheduler")]],
    ),
    (
        'c',
        "mpay_actor_restarts_total",
        "actor restarts by the watchdog, by kind",
        &[&[("kind", "JournalWriter")], &[("kind", "Scheduler")]],
    ),
    (
        'c',
        "mpay_journal_entries_written_total",
        "journal entries written to the store",
        &[&[]],
    ),
    (
        'c',
        "mpay_journal_entries_dropped_total",
        "journal entries dropped (journal writer overloaded)",
        &[&[]],
    ),
    (
        'c',
        "mpay_positions_validated_total",
        "PUBLISHED positions that became VALID at their validity date",
        &[&[]],
    ),
    (
        'c',
        "mpay_positions_expired_total",
        "positions that became EXPIRED after their last due date",
        &[&[]],
    ),
    (
        'c',
        "mpay_iuv_blocks_reserved_total",
        "blocks of notice-number sequence reserved on disk",
        &[&[]],
    ),
    (
        'c',
        "mpay_ledger_cas_retries_total",
        "ledger writes retried after a concurrent change",
        &[&[]],
    ),
    (
        'c',
        "mpay_feed_batch_retries_total",
        "bulk feed batches retried",
        &[&[]],
    ),
    (
        'c',
        "mpay_receipts_total",
        "receipts (paSendRT) stored, by disposition",
        &[
            &[("disposition", "applied")],
            &[("disposition", "duplicate")],
            &[("disposition", "orphan")],
            &[("disposition", "double_payment")],
        ],
    ),
    (
        'c',
        "mpay_durable_commits_total",
        "writes acknowledged after a durable commit, by point",
        &[
            &[("point", "rest_write")],
            &[("point", "receipt")],
            &[("point", "bulk_load")],
            &[("point", "iuv_block")],
            &[("point", "cli")],
            &[("point", "notification")],
        ],
    ),
    (
        'h',
        "mpay_flush_seconds",
        "store flush (fsync) duration in seconds",
        &[],
    ),
    (
        'g',
        "mpay_ledger_positions",
        "debt positions in the ledger",
        &[&[]],
    ),
    (
        'g',
        "mpay_journal_entries",
        "entries in the journal",
        &[&[]],
    ),
    (
        'c',
        "mpay_journal_payloads_truncated_total",
        "request payloads journaled truncated (not attributed to a served organization)",
        &[&[]],
    ),
    (
        'g',
        "mpay_store_bytes",
        "bytes the store takes on disk",
        &[&[]],
    ),
    (
        'g',
        "mpay_store_flushes",
        "store flushes since start",
        &[&[]],
    ),
    (
        'g',
        "mpay_actor_restarts",
        "restarts of each actor, by kind and id",
        &[],
    ),
    (
        'g',
        "mpay_actor_backlog",
        "mailbox backlog of each actor, by kind and id",
        &[],
    ),
    (
        'g',
        "mpay_ente_backlog",
        "notifications waiting in an Ente's outbox (PENDING + RETRYING), by organization",
        &[],
    ),
    (
        'g',
        "mpay_ente_oldest_pending_seconds",
        "age in seconds of the oldest open notification of an Ente, by organization",
        &[],
    ),
    (
        'c',
        "mpay_ente_deliveries_total",
        "notifications acknowledged by the Ente (HTTP 2xx / retcode 00), by organization",
        &[],
    ),
    (
        'c',
        "mpay_ente_delivery_failures_total",
        "notification attempts not acknowledged, by organization and reason (refused: the Ente answered; unreachable: no answer)",
        &[],
    ),
    (
        'c',
        "mpay_ente_notifications_failed_total",
        "notifications that reached the horizon without an ack (FAILED), by organization",
        &[],
    ),
    (
        'g',
        "mpay_ente_breaker_state",
        "circuit breaker of an Ente's endpoint: 0 closed, 1 open, 2 half-open, by organization",
        &[],
    ),
    (
        'h',
        "mpay_ente_delivery_lag_seconds",
        "seconds from a receipt stored to its notification acknowledged by the Ente",
        &[],
    ),
    (
        'c',
        "mpay_bus_events_total",
        "events published on the message bus, by type",
        &[],
    ),
];

/// Describes every metric (`# HELP` lines) and registers the counters with their initial
/// label sets at 0.
fn describe_metrics() {
    for (kind, name, help, label_sets) in METRICS {
        let (name, help) = (*name, *help);
        match kind {
            'c' => metrics::describe_counter!(name, help),
            'h' => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
            _ => metrics::describe_gauge!(name, help),
        }
        for labels in label_sets.iter() {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, *v))
                .collect();
            match kind {
                'c' => metrics::counter!(name, labels).increment(0),
                'g' => metrics::gauge!(name, labels).set(0.0),
                _ => {}
            }
        }
    }
}

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health/actors", web::get().to(actors))
        .route("/metrics", web::get().to(metrics_endpoint))
        .route("/ops/backup", web::post().to(backup));
}

/// The header that carries the operator token.
pub const OPS_TOKEN_HEADER: &str = "X-Mpay-Ops-Token";

/// What a running node writes to `<data_dir>/ops.json` (owner-readable only) when it starts:
/// where it answers and the token its operator endpoints want.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpsFile {
    /// `http://host:port` of the node.
    pub url: String,
    /// The token (`X-Mpay-Ops-Token`).
    pub token: String,
}

/// Writes `ops.json` with a fresh random token, at start-up.
/// Errors: the file cannot be written.
pub fn write_ops_file(path: &std::path::Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let file = OpsFile {
        url: format!("http://{host}:{}", addr.port()),
        token: hex::encode(bytes),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        serde_json::to_writer(&mut f, &file)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Does the request carry the token of this node's `ops.json`?
fn ops_token_ok(req: &HttpRequest, settings: &mpay_config::Settings) -> bool {
    use sha2::{Digest as _, Sha256};
    let Some(given) = req
        .headers()
        .get(OPS_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let expected = std::fs::read(settings.ops_file_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<OpsFile>(&b).ok());
    match expected {
        // compared as digests: the time taken says nothing about the token
        Some(f) => {
            !f.token.is_empty()
                && Sha256::digest(f.token.as_bytes()) == Sha256::digest(given.trim().as_bytes())
        }
        None => false,
    }
}

#[derive(serde::Deserialize)]
struct BackupQuery {
    #[serde(default)]
    journal: bool,
}

/// Online backup (`mpay store export` while the node runs): writes every tree into
/// `<data_dir>/backups/mpay-<UTC>.jsonl` and answers the file and its summary. Needs the
/// operator token of the data directory (`X-Mpay-Ops-Token`); 403 otherwise.
async fn backup(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<BackupQuery>,
) -> HttpResponse {
    if !ops_token_ok(&req, &state.settings) {
        return crate::problem::Problem::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "Forbidden",
            "operator endpoints need the token of the node's data directory (X-Mpay-Ops-Token)",
        )
        .error_response();
    }
    let dir = state.settings.backups_dir();
    let store = state.store.clone();
    let journal = query.journal;
    let started = std::time::Instant::now();
    let result = web::block(
        move || -> Result<(std::path::PathBuf, mpay_storage::backup::BackupSummary), String> {
            let io = |e: std::io::Error| format!("{}: {e}", dir.display());
            std::fs::create_dir_all(&dir).map_err(io)?;
            let name = format!(
                "mpay-{}.jsonl",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            );
            let path = dir.join(name);
            let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
            let summary = {
                let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                let s = store.backup(&mut w, journal).map_err(|e| e.to_string())?;
                std::io::Write::flush(&mut w).map_err(io)?;
                s
            };
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(&path).map_err(|e| io(e.error))?;
            Ok((path, summary))
        },
    )
    .await;
    match result {
        Ok(Ok((path, summary))) => {
            tracing::info!(file = %path.display(), records = summary.records, ms = started.elapsed().as_millis() as u64, "online backup written");
            HttpResponse::Ok().json(json!({
                "file": path.display().to_string(),
                "records": summary.records,
                "trees": summary.trees,
                "sha256": summary.sha256,
                "millis": started.elapsed().as_millis() as u64,
            }))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "online backup failed");
            crate::problem::Problem::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Backup failed",
                format!("the backup failed: {e}"),
            )
            .with_code("BACKUP_FAILED")
            .error_response()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// Liveness: the process answers.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Readiness: 200 when the store is open and every required actor runs; 503 with the list of
/// what is missing otherwise.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let down = state.health.not_ready();
    let store = if state.health.store_writable() {
        "open"
    } else {
        "unwritable"
    };
    if down.is_empty() {
        HttpResponse::Ok().json(json!({"status": "UP", "store": store}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "DOWN", "store": store, "notRunning": down}))
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
