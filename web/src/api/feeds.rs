//! Bulk feeds over REST (FORMAT.md §5): `/api/v1/organizations/{organizationfiscalcode}/feeds`.
//!
//! The upload (multipart `file` field, or the raw body) streams into a file under the data
//! directory (at most `feeds.max_upload_bytes`), is handed to the [`FeedLauncher`] and
//! answered `202 Accepted` with the feed id and its `Location`; the load runs in a
//! `FeedLoader` actor. Status (with progress and ETA), the outcome report and the IUV exchange
//! file are read back from the persisted feed record; `result.zip` bundles them with the
//! MyPay / PU compatibility copies (FORMAT.md §5.5, §5.7), built on request from the stored
//! upload and streamed.
//!
//! Integrity (FORMAT.md §5.2): the status carries our SHA-256 of the bytes received; the upload
//! may declare `checksum=sha256:<hex>` or `checksum=md5:<hex>` (of the file as sent: the zip or
//! the CSV); a mismatch fails the load with `FILE_CHECKSUM_MISMATCH`, nothing applied.

use std::io::Write;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use mpay_actors::feed_loader::{flow_id_for, output_basename, FeedJob, FeedLauncher, SubmitError};
use mpay_messages::feeds::checksum::{ChecksumSource, ExpectedChecksum};
use mpay_messages::feeds::compat::result_zip_name;
use mpay_messages::feeds::FeedMode;
use mpay_storage::feeds::{
    get_feed, list_feeds, write_iuv_exchange, write_outcome_report, FeedError, FeedLoadRecord,
    FeedStatus,
};
use mpay_storage::feeds_output::{get_file_info, FeedFileInfo};
use mpay_storage::DurabilityPoint;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::AppState;

/// Header naming the uploaded file when the body is raw.
pub const FILE_NAME_HEADER: &str = "X-File-Name";

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/feeds")
            .service(
                web::resource("")
                    .route(web::post().to(upload))
                    .route(web::get().to(list)),
            )
            .service(web::resource("/{flowid}").route(web::get().to(status)))
            .service(web::resource("/{flowid}/report").route(web::get().to(report)))
            .service(web::resource("/{flowid}/iuv-file").route(web::get().to(iuv_file)))
            .service(web::resource("/{flowid}/result.zip").route(web::get().to(result_zip)))
            .service(web::resource("/{flowid}/confirm").route(web::post().to(confirm)))
            .service(web::resource("/{flowid}/reject").route(web::post().to(reject))),
    );
}

/// Upload parameters (any other is refused: 400 naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadQuery {
    /// `delta` (default, or the zip's manifest) or `full`.
    pub mode: Option<String>,
    /// Flow id (default: from the file name, FORMAT.md §5.2).
    pub flow_id: Option<String>,
    /// File name (default: the multipart file name or the `X-File-Name` header).
    pub file_name: Option<String>,
    /// Validate and report without applying.
    #[serde(default)]
    pub dry_run: bool,
    /// Checksum of the file as sent (the zip or the CSV): `sha256:<64 hex>` or `md5:<32 hex>`
    /// (FORMAT.md §5.2). A mismatch fails the load with `FILE_CHECKSUM_MISMATCH`.
    pub checksum: Option<String>,
}

/// Progress of a load.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedProgressModel {
    /// Data rows in the file (known after the pre-scan).
    pub rows_total: u64,
    /// Rows processed.
    pub rows_read: u64,
    /// Rows applied (OK or WARN).
    pub rows_loaded: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Rows applied with warnings.
    pub rows_warned: u64,
    /// FULL: installments cancelled because absent from the file.
    pub cancelled: u64,
    /// FULL: absent installments left alone because paid.
    pub skipped_paid: u64,
    /// 0–100.
    pub percent: u8,
    /// Rows per second so far.
    pub rows_per_second: u64,
    /// Estimated seconds to the end (running loads).
    pub eta_seconds: Option<u64>,
}

/// A file-level error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedErrorModel {
    /// FORMAT.md §5.7 code (`FILE_ENCODING`, `FULL_FEED_GUARD`, ...).
    pub code: String,
    /// Description (Italian).
    pub message: String,
    /// Row, when the error is tied to one.
    pub row: Option<u64>,
}

/// A checksum declared by the Ente and its result (FORMAT.md §5.2).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedChecksumModel {
    /// `md5` or `sha256`.
    pub algorithm: String,
    /// Declared digest (lower-case hex).
    pub expected: String,
    /// Computed digest.
    pub actual: Option<String>,
    /// `parameter` (the upload's `checksum`) or the sidecar file name.
    pub source: String,
    /// Equal.
    pub matched: bool,
}

/// A feed load.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedModel {
    /// Feed id inside the organization (= flow id).
    pub id: String,
    /// Organization fiscal code.
    pub organization_fiscal_code: String,
    /// File name as uploaded.
    pub file_name: String,
    /// DELTA or FULL.
    pub mode: String,
    /// Detected version (`1.3`, `2.0`, `2.0-eng`, ...).
    pub version: Option<String>,
    /// SHA-256 (hex) of the file as received (known once its load started).
    pub sha256: Option<String>,
    /// Size of the file as received, bytes.
    pub size_bytes: Option<u64>,
    /// Checksums declared for the file and whether they matched.
    pub checksums: Vec<FeedChecksumModel>,
    /// RUNNING, DONE, FAILED or AWAITING_CONFIRMATION.
    pub status: String,
    /// ROWS, CANCELLATIONS or FINISHED.
    pub phase: String,
    /// Dry run.
    pub dry_run: bool,
    /// Progress.
    pub progress: FeedProgressModel,
    /// File-level error or guard.
    pub error: Option<FeedErrorModel>,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Last checkpoint.
    pub updated_at: String,
    /// Ended.
    pub finished_at: Option<String>,
    /// Status URL.
    pub location: String,
    /// Outcome report URL.
    pub report: String,
    /// IUV exchange file URL.
    pub iuv_file: String,
    /// `<basename>-RESULT.zip` URL: every output, with the MyPay / PU compatibility copies.
    pub result_zip: String,
}

fn json_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn checksum_model(info: Option<&FeedFileInfo>) -> Vec<FeedChecksumModel> {
    info.map(|i| {
        i.checks
            .iter()
            .map(|c| FeedChecksumModel {
                algorithm: c.expected.algorithm.as_str().to_string(),
                expected: c.expected.hex.clone(),
                actual: c.actual.clone(),
                source: match &c.expected.source {
                    ChecksumSource::Parameter => "parameter".to_string(),
                    ChecksumSource::Sidecar { name } => name.clone(),
                },
                matched: c.matched,
            })
            .collect()
    })
    .unwrap_or_default()
}

fn model(r: &FeedLoadRecord, info: Option<&FeedFileInfo>) -> FeedModel {
    let end = r.finished_at.unwrap_or(r.updated_at);
    let elapsed_ms = (end - r.started_at).num_milliseconds().max(1) as u64;
    let rate = r.rows_read.saturating_mul(1000) / elapsed_ms;
    let percent = if r.status == FeedStatus::Done {
        100
    } else {
        r.rows_read
            .saturating_mul(100)
            .checked_div(r.rows_total)
            .unwrap_or(0)
            .min(100) as u8
    };
    let eta = (r.status == FeedStatus::Running && rate > 0)
        .then(|| r.rows_total.saturating_sub(r.rows_read) / rate.max(1));
    let base = feed_url(r.organization.as_str(), &r.flow_id);
    FeedModel {
        id: r.flow_id.clone(),
        organization_fiscal_code: r.organization.to_string(),
        file_name: r.file_name.clone(),
        mode: r.mode.as_str().to_string(),
        version: r.version.map(|v| v.to_string()),
        sha256: info.map(|i| i.digests.sha256.clone()),
        size_bytes: info.map(|i| i.digests.bytes),
        checksums: checksum_model(info),
        status: json_name(&r.status),
        phase: json_name(&r.phase),
        dry_run: r.dry_run,
        progress: FeedProgressModel {
            rows_total: r.rows_total,
            rows_read: r.rows_read,
            rows_loaded: r.rows_loaded,
            rows_rejected: r.rows_rejected,
            rows_warned: r.rows_warned,
            cancelled: r.cancelled,
            skipped_paid: r.skipped_paid,
            percent,
            rows_per_second: rate,
            eta_seconds: eta,
        },
        error: r.error.as_ref().map(|e| FeedErrorModel {
            code: e.code.as_str().to_string(),
            message: e.message.clone(),
            row: e.row,
        }),
        started_at: r.started_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
        finished_at: r.finished_at.map(|t| t.to_rfc3339()),
        report: format!("{base}/report"),
        iuv_file: format!("{base}/iuv-file"),
        result_zip: format!("{base}/result.zip"),
        location: base,
    }
}

/// The record and what was received, read together.
fn record_with_info(
    store: &mpay_storage::Store,
    org: &mpay_messages::OrgFiscalCode,
    flow_id: &str,
) -> Result<Option<(FeedLoadRecord, Option<FeedFileInfo>)>, FeedError> {
    match get_feed(store, org, flow_id)? {
        Some(r) => Ok(Some((r, get_file_info(store, org, flow_id)?))),
        None => Ok(None),
    }
}

fn launcher(state: &AppState) -> Result<FeedLauncher, Problem> {
    state.feeds.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Feeds unavailable",
            "bulk feeds are not enabled on this node",
        )
    })
}

impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Feed(f) => feed_problem(f),
            SubmitError::UnknownOrganization(_) => Problem::not_found(e.to_string()),
            SubmitError::Io(_) => Problem::internal(e),
        }
    }
}

fn feed_problem(e: FeedError) -> Problem {
    match e {
        FeedError::Duplicate { .. } | FeedError::NotResumable(_) => {
            Problem::conflict(e.to_string())
        }
        FeedError::NotFound => Problem::not_found("feed not found"),
        FeedError::Io(_) | FeedError::Ledger(_) => Problem::internal(e),
    }
}

/// Bytes percent-encoded in a path segment or a header: everything but `[A-Za-z0-9_.-]`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-');

/// The status URL of a feed (the `Location` header): the flow id percent-encoded, so no byte a
/// client sent (a record loaded by another transport may hold any) reaches a header raw.
fn feed_url(org: &str, flow_id: &str) -> String {
    format!(
        "/api/v1/organizations/{}/feeds/{}",
        percent_encoding::utf8_percent_encode(org, SEGMENT),
        percent_encoding::utf8_percent_encode(flow_id, SEGMENT)
    )
}

/// `Content-Disposition: attachment` for `name` (RFC 6266): an ASCII fallback `filename` with
/// every other byte as `_`, and the exact name percent-encoded in `filename*`.
fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        percent_encoding::utf8_percent_encode(name, SEGMENT)
    )
}

fn check_name(field: &str, v: &str) -> Result<(), Problem> {
    if v.is_empty()
        || v.len() > 200
        || v.contains("..")
        || v.contains('/')
        || v.contains('\\')
        || v.chars().any(char::is_control)
    {
        return Err(Problem::field(
            field,
            "must be 1..200 characters without `..`, `/`, `\\` or control characters",
        ));
    }
    Ok(())
}

/// Streams `stream` into `path`, at most `limit` bytes.
async fn spool<S, E>(path: &std::path::Path, mut stream: S, limit: u64) -> Result<u64, Problem>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(Problem::internal)?;
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Invalid upload", e.to_string()))?;
        n += chunk.len() as u64;
        if n > limit {
            drop(f);
            let _ = tokio::fs::remove_file(path).await;
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                format!("the feed is larger than {limit} bytes (feeds.max_upload_bytes)"),
            ));
        }
        f.write_all(&chunk).await.map_err(Problem::internal)?;
    }
    f.flush().await.map_err(Problem::internal)?;
    Ok(n)
}

/// Receives the body into a temp file; returns the multipart file name, if any.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    path: &std::path::Path,
    limit: u64,
) -> Result<Option<String>, Problem> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
        .unwrap_or(false);
    if !is_multipart {
        spool(path, payload, limit).await?;
        return Ok(None);
    }
    let mut mp = actix_multipart::Multipart::new(req.headers(), payload);
    while let Some(field) = mp.next().await {
        let field = field
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "Invalid upload", e.to_string()))?;
        let cd = field.content_disposition().cloned();
        let filename = cd
            .as_ref()
            .and_then(|c| c.get_filename())
            .map(str::to_string);
        let is_file = cd
            .as_ref()
            .and_then(|c| c.get_name())
            .map(|n| n == "file")
            .unwrap_or(false)
            || filename.is_some();
        if is_file {
            spool(path, field, limit).await?;
            return Ok(filename);
        }
    }
    Err(Problem::field(
        "file",
        "multipart upload without a `file` field",
    ))
}

/// Uploads a feed (CSV or zip, FORMAT.md §5.2) and starts its load.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds",
    params(("organizationfiscalcode" = String, Path), UploadQuery,
           ("X-File-Name" = Option<String>, Header, description = "file name when the body is raw")),
    request_body(content = Vec<u8>, content_type = "multipart/form-data",
                 description = "multipart with a `file` field, or the raw CSV / zip (application/octet-stream, text/csv, application/zip)"),
    responses((status = 202, body = FeedModel, description = "accepted; Location = status URL"),
              (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem),
              (status = 409, body = Problem, description = "FILE_DUPLICATE: same flow id already loaded or loading"),
              (status = 413, body = Problem)),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let launcher = launcher(&state)?;
    let mode = match query
        .mode
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("") => None,
        Some("DELTA") => Some(FeedMode::Delta),
        Some("FULL") => Some(FeedMode::Full),
        Some(other) => {
            return Err(Problem::field(
                "mode",
                format!("must be delta or full, not {other}"),
            ))
        }
    };
    let checksums = match query.checksum.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(c) => {
            vec![ExpectedChecksum::parse_parameter(c).map_err(|e| Problem::field("checksum", e))?]
        }
    };
    let header_name = req
        .headers()
        .get(FILE_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    let tmp = launcher.temp_upload_path().map_err(Problem::internal)?;
    let limit = state.settings.feeds.max_upload_bytes;
    let received = receive(&req, payload, &tmp, limit).await;
    let multipart_name = match received {
        Ok(n) => n,
        Err(p) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(p);
        }
    };
    let cleanup = |tmp: std::path::PathBuf| async move {
        let _ = tokio::fs::remove_file(&tmp).await;
    };
    let Some(file_name) = query.file_name.clone().or(header_name).or(multipart_name) else {
        cleanup(tmp).await;
        return Err(Problem::field(
            "fileName",
            "give the file name (multipart file name, `fileName` query or X-File-Name header)",
        ));
    };
    if let Err(p) = check_name("fileName", &file_name) {
        cleanup(tmp).await;
        return Err(p);
    }
    let flow_id = query
        .flow_id
        .clone()
        .unwrap_or_else(|| flow_id_for(&file_name));
    let given = query.flow_id.is_some();
    if let Err(why) = mpay_messages::feeds::check_rest_flow_id(&flow_id) {
        cleanup(tmp).await;
        let detail = if given {
            why.to_string()
        } else {
            format!("the flow id {flow_id:?} taken from the file name {why}: give `flowId`")
        };
        return Err(Problem::field("flowId", detail).with_code("INVALID_FLOW_ID"));
    }
    let org = auth.fiscal_code().to_string();
    let job = FeedJob {
        organization: org.clone(),
        flow_id: flow_id.clone(),
        file_name,
        mode,
        require_standard_name: false,
        dry_run: query.dry_run,
        out_dir: None,
        checksums,
        report_name: None,
    };
    let (l2, t2) = (launcher.clone(), tmp.clone());
    let file_name = job.file_name.clone();
    let submitted_at = chrono::Utc::now();
    let submitted = web::block(move || l2.submit(job, &t2))
        .await
        .map_err(Problem::internal)?;
    if let Err(e) = submitted {
        cleanup(tmp).await;
        return Err(e.into());
    }
    let store = state.store.clone();
    let (o2, f2) = (auth.fiscal_code().clone(), flow_id.clone());
    let rec = web::block(move || record_with_info(&store, &o2, &f2))
        .await
        .map_err(Problem::internal)?
        .map_err(feed_problem)?;
    let location = feed_url(&org, &flow_id);
    let body = match rec {
        // a record older than this upload is the failed attempt this one replaces
        Some((r, info)) if r.started_at >= submitted_at => {
            serde_json::to_value(model(&r, info.as_ref())).map_err(Problem::internal)?
        }
        _ => pending(&org, &flow_id, &file_name),
    };
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(body))
}

/// Lists the organization's feed loads.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds",
    params(("organizationfiscalcode" = String, Path)),
    responses((status = 200, body = Vec<FeedModel>), (status = 401, body = Problem),
              (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn list(state: web::Data<AppState>, auth: OrgAuth) -> Result<HttpResponse, Problem> {
    let store = state.store.clone();
    let org = auth.fiscal_code().clone();
    let v = web::block(move || {
        list_feeds(&store, Some(&org))?
            .into_iter()
            .map(|r| {
                let info = get_file_info(&store, &org, &r.flow_id)?;
                Ok(model(&r, info.as_ref()))
            })
            .collect::<Result<Vec<_>, FeedError>>()
    })
    .await
    .map_err(Problem::internal)?
    .map_err(feed_problem)?;
    Ok(HttpResponse::Ok().json(v))
}

async fn record(
    state: &AppState,
    auth: &OrgAuth,
    flow_id: &str,
) -> Result<FeedLoadRecord, Problem> {
    let store = state.store.clone();
    let (org, f) = (auth.fiscal_code().clone(), flow_id.to_string());
    web::block(move || get_feed(&store, &org, &f))
        .await
        .map_err(Problem::internal)?
        .map_err(feed_problem)?
        .ok_or_else(|| Problem::not_found(format!("feed {flow_id} not found")))
}

/// Status and progress of a load (rows read / loaded / rejected, percent, ETA).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 200, body = FeedModel), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn status(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let store = state.store.clone();
    let (org, f) = (auth.fiscal_code().clone(), path.1.clone());
    let found = web::block(move || record_with_info(&store, &org, &f))
        .await
        .map_err(Problem::internal)?
        .map_err(feed_problem)?;
    let active = state
        .feeds
        .as_ref()
        .is_some_and(|l| l.is_active(auth.fiscal_code().as_str(), &path.1));
    match found {
        // a FAILED record while a new upload of the flow is active: that upload's record is not
        // written yet, and the failed attempt it replaces is not its status
        Some((r, _)) if active && r.status == FeedStatus::Failed => Ok(
            HttpResponse::Ok().json(pending(auth.fiscal_code().as_str(), &path.1, &r.file_name))
        ),
        Some((r, info)) => Ok(HttpResponse::Ok().json(model(&r, info.as_ref()))),
        // accepted, its actor not yet started: no record yet
        None if active => {
            Ok(HttpResponse::Ok().json(pending(auth.fiscal_code().as_str(), &path.1, "")))
        }
        None => Err(Problem::not_found(format!("feed {} not found", path.1))),
    }
}

fn pending(org: &str, flow_id: &str, file_name: &str) -> serde_json::Value {
    let base = feed_url(org, flow_id);
    serde_json::json!({
        "id": flow_id,
        "organizationFiscalCode": org,
        "fileName": file_name,
        "status": "RUNNING",
        "phase": "ROWS",
        "progress": {"rowsTotal": 0, "rowsRead": 0, "rowsLoaded": 0, "rowsRejected": 0,
                     "rowsWarned": 0, "cancelled": 0, "skippedPaid": 0, "percent": 0,
                     "rowsPerSecond": 0, "etaSeconds": null},
        "location": base,
        "report": format!("{base}/report"),
        "iuvFile": format!("{base}/iuv-file"),
        "resultZip": format!("{base}/result.zip"),
        "sha256": null,
        "sizeBytes": null,
        "checksums": [],
    })
}

/// A `Write` that sends 64 KiB chunks to a channel (the response body), so a report of any
/// size is streamed with bounded memory.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<web::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = web::Bytes::from(std::mem::take(&mut self.buf));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::other("client went away"))?;
        }
        Ok(())
    }
}

type CsvWriterFn = fn(
    &mpay_storage::Store,
    &mpay_messages::OrgFiscalCode,
    &str,
    &mut dyn Write,
) -> Result<u64, FeedError>;

async fn csv_download(
    state: web::Data<AppState>,
    auth: OrgAuth,
    flow_id: &str,
    suffix: &str,
    writer: CsvWriterFn,
) -> Result<HttpResponse, Problem> {
    let r = record(&state, &auth, flow_id).await?;
    if r.status == FeedStatus::Running {
        return Err(Problem::conflict(format!(
            "feed {flow_id} is still loading ({} of {} rows): poll its status",
            r.rows_read, r.rows_total
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let store = state.store.clone();
    let (org, f) = (auth.fiscal_code().clone(), flow_id.to_string());
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let res = writer(&store, &org, &f, &mut w)
            .and_then(|_| w.flush().map_err(|e| FeedError::Io(e.to_string())));
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let name = format!("{}{suffix}", output_basename(&r.file_name));
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .streaming(stream))
}

/// The outcome report `<basename>-ESITO.csv` (FORMAT.md §5.7).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}/report",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "still loading")),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn report(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    csv_download(state, auth, &path.1, "-ESITO.csv", write_outcome_report).await
}

/// The IUV exchange file `<basename>-IUV-EXCHANGE.csv` (FORMAT.md §5.5).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}/iuv-file",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "still loading")),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn iuv_file(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    csv_download(
        state,
        auth,
        &path.1,
        "-IUV-EXCHANGE.csv",
        write_iuv_exchange,
    )
    .await
}

/// `<basename>-RESULT.zip` (FORMAT.md §5.7): the outcome report, the IUV exchange file and the
/// MyPay / PU compatibility copies (1.x input: `<basename>_SCARTI.csv`, `<basename>_IUV.csv`;
/// 2.0 input: `ERROR-<basename>.csv`, `<basename>_iuv.csv`), each present when it has lines.
/// Built on request from the stored upload and streamed.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}/result.zip",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "still loading"),
              (status = 503, body = Problem, description = "feeds not enabled on this node")),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn result_zip(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let launcher = launcher(&state)?;
    let flow_id = path.1.clone();
    let r = record(&state, &auth, &flow_id).await?;
    if r.status == FeedStatus::Running {
        return Err(Problem::conflict(format!(
            "feed {flow_id} is still loading ({} of {} rows): poll its status",
            r.rows_read, r.rows_total
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let org = auth.fiscal_code().clone();
    let f = flow_id.clone();
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let res = launcher
            .write_result_zip(&org, &f, w)
            .and_then(|(mut w, _)| w.flush().map_err(|e| FeedError::Io(e.to_string())));
        if let Err(e) = res {
            tracing::warn!(feed = %f, error = %e, "result.zip interrupted");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let name = result_zip_name(&output_basename(&r.file_name));
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .streaming(stream))
}

/// Confirms a FULL load held by `FULL_FEED_GUARD` (FORMAT.md §5.6): it is applied.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}/confirm",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 202, body = FeedModel), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "not awaiting confirmation")),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn confirm(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let launcher = launcher(&state)?;
    let (org, f) = (auth.fiscal_code().to_string(), path.1.clone());
    web::block(move || launcher.confirm(&org, &f))
        .await
        .map_err(Problem::internal)??;
    let r = record(&state, &auth, &path.1).await?;
    let m = model(&r, None);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, m.location.clone()))
        .json(m))
}

/// Rejects a FULL load held by `FULL_FEED_GUARD`: FAILED, nothing applied.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/feeds/{flowid}/reject",
    params(("organizationfiscalcode" = String, Path), ("flowid" = String, Path)),
    responses((status = 200, body = FeedModel), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "not awaiting confirmation")),
    security(("ApiKey" = [])),
    tag = "feeds"
)]
pub async fn reject(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let launcher = launcher(&state)?;
    let (org, f) = (auth.fiscal_code().to_string(), path.1.clone());
    let r = web::block(move || launcher.reject(&org, &f))
        .await
        .map_err(Problem::internal)??;
    state
        .store
        .durability
        .commit(DurabilityPoint::BulkLoad)
        .await
        .map_err(Problem::internal)?;
    Ok(HttpResponse::Ok().json(model(&r, None)))
}
