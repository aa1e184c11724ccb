//! Reporting flows, bank statements and reconciliation (issue 14), per organization:
//!
//! - `POST …/fdrs/import`: a FlussoRiversamento file (XML 1.0.4/1.0.5, base64 of it, or the
//!   `nodoChiediFlussoRendicontazione` answer) → stored (every revision kept); a file that is
//!   not a flow is kept for inspection and answered 422;
//! - `GET …/fdrs`: the latest revision of each flow with its settlement and flags;
//! - `POST …/bank-statements`: a camt.053/054 or OPI giornale di cassa → its credits stored
//!   (importing the same statement twice changes nothing);
//! - `GET …/reconciliation`: every payment, reported row and credit with its label, and the
//!   summary of the `ReconciliationWorker`'s last run (`lastRun`);
//! - `GET …/reconciliation/unreported?asOf=`: receipts no flow reports after their D+2
//!   deadline (`domain::reporting`);
//! - `GET …/reconciliation/exports/{kind}?from=&to=&format=`: the treasury's files
//!   (`crate::exports`: payments, flows, reconciliation; CSV or XLSX);
//! - `POST …/fdrs/sync`: the FdR API download, through the `ReconciliationWorker` when the
//!   node runs one.
//!
//! The body is the file itself (any content type).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use mpay_storage::reconciliation::{self, FileImport, FlowImport, SledReconciliation};

use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::AppState;

/// Routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    const ORG: &str = "/organizations/{organizationfiscalcode}";
    cfg.route(&format!("{ORG}/fdrs"), web::get().to(list_flows))
        .route(&format!("{ORG}/fdrs/import"), web::post().to(import_flow))
        .route(&format!("{ORG}/fdrs/sync"), web::post().to(sync_flows))
        .route(
            &format!("{ORG}/bank-statements"),
            web::post().to(import_statement),
        )
        .route(&format!("{ORG}/reconciliation"), web::get().to(report))
        .route(
            &format!("{ORG}/reconciliation/unreported"),
            web::get().to(unreported),
        )
        .route(
            &format!("{ORG}/reconciliation/exports/{{kind}}"),
            web::get().to(export),
        );
}

/// Reads the uploaded file, at most `feeds.max_upload_bytes` (flows and statements are files
/// of the same size class as feeds).
async fn read_file(state: &AppState, mut payload: web::Payload) -> Result<web::Bytes, Problem> {
    use futures_util::StreamExt;
    let limit = usize::try_from(state.settings.feeds.max_upload_bytes).unwrap_or(usize::MAX);
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::field("body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "File too large",
                format!("the file is larger than {limit} bytes (feeds.max_upload_bytes)"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn file_name(req: &HttpRequest) -> String {
    req.headers()
        .get("X-File-Name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| "upload".to_string())
}

fn unprocessable(detail: String) -> Problem {
    Problem::new(
        actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        "Unreadable file",
        detail,
    )
    .with_code("UNREADABLE_FILE")
}

/// `POST /api/v1/organizations/{cf}/fdrs/import`.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/fdrs/import",
    params(("organizationfiscalcode" = String, Path), ("X-File-Name" = Option<String>, Header, description = "the file's name, kept with the flow")),
    request_body(content = String, content_type = "application/xml", description = "a FlussoRiversamento file (1.0.4 or 1.0.5, any namespace prefix), base64 of it, or a nodoChiediFlussoRendicontazione answer"),
    responses((status = 201, description = "a new flow or a higher revision: flowId, revision, outcome, rows, totalCents, flags"),
              (status = 200, description = "the same flow again (UNCHANGED) or corrected (REPLACED)"),
              (status = 400, body = Problem, description = "the flow is for another organization"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 413, body = Problem),
              (status = 422, body = Problem, description = "not a flow: kept for inspection")),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn import_flow(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: OrgAuth,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let done = import(&req, &state, &auth, payload, |r, org, name, body| {
        r.import_flow_file(org, name, body, Utc::now())
    })
    .await?;
    if let FileImport::Imported(f) = &done {
        // a corrected flow (REPLACED) was forwarded again with it: the connector is woken too
        if matches!(
            f.outcome,
            FlowImport::New | FlowImport::Revision | FlowImport::Replaced
        ) {
            flow_acquired(&state, auth.fiscal_code().as_str(), &f.flow_id).await?;
        }
    }
    match done {
        FileImport::Imported(f) => Ok(match f.outcome {
            FlowImport::New | FlowImport::Revision => HttpResponse::Created().json(f),
            FlowImport::Unchanged | FlowImport::Replaced => HttpResponse::Ok().json(f),
        }),
        FileImport::Rejected(why) => Err(unprocessable(why)),
        FileImport::OtherOrganization(receiver) => Err(Problem::field(
            "istitutoRicevente",
            format!(
                "the flow is for organization {receiver}, not {}",
                auth.fiscal_code()
            ),
        )),
    }
}

/// Reads the uploaded file, runs one of the storage's import paths on it and makes the result
/// durable before the answer.
async fn import<T: Send + 'static>(
    req: &HttpRequest,
    state: &AppState,
    auth: &OrgAuth,
    payload: web::Payload,
    run: impl FnOnce(
            &SledReconciliation,
            &str,
            &str,
            &[u8],
        ) -> Result<FileImport<T>, mpay_storage::StorageError>
        + Send
        + 'static,
) -> Result<FileImport<T>, Problem> {
    let body = read_file(state, payload).await?;
    let org = auth.fiscal_code().to_string();
    let name = file_name(req);
    let done = state
        .store
        .blocking(move |s| run(&s.reconciliation, &org, &name, &body))
        .await
        .map_err(Problem::internal)?;
    committed(state).await?;
    Ok(done)
}

/// A flow revision is stored: the revocations it announces go to the Ente's outbox (durable
/// before the answer), and the bus hears `FdrAcquired` (the Ente's connector wakes on it).
async fn flow_acquired(state: &AppState, org: &str, flow_id: &str) -> Result<(), Problem> {
    let (o, f) = (org.to_string(), flow_id.to_string());
    let queued = state
        .store
        .blocking(move |s| s.enqueue_revocations_of_flow(&o, &f, Utc::now()))
        .await
        .map_err(Problem::internal)?;
    if !queued.is_empty() {
        committed(state).await?;
        tracing::info!(
            organization = org,
            flow = flow_id,
            revocations = queued.len(),
            "revocations queued for the Ente"
        );
    }
    state.tell(mpay_actors::bus::Event::FdrAcquired {
        organization: org.to_string(),
        flow_id: flow_id.to_string(),
    });
    Ok(())
}

async fn committed(state: &AppState) -> Result<(), Problem> {
    state
        .store
        .durability
        .commit(mpay_storage::DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)
}

/// `POST /api/v1/organizations/{cf}/bank-statements`.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/bank-statements",
    params(("organizationfiscalcode" = String, Path), ("X-File-Name" = Option<String>, Header, description = "the file's name")),
    request_body(content = String, content_type = "application/xml", description = "an ISO 20022 camt.053 or camt.054 (001.02 to 001.08, bare or in CBI envelopes) or an OPI giornale di cassa (1.4 to 1.8)"),
    responses((status = 200, description = "format, credits, new, alreadyKnown, skipped, problems"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 413, body = Problem),
              (status = 422, body = Problem, description = "not a statement: kept for inspection")),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn import_statement(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: OrgAuth,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let done = import(&req, &state, &auth, payload, |r, org, name, body| {
        r.import_statement_file(org, name, body, Utc::now())
    })
    .await?;
    match done {
        FileImport::Imported(s) => {
            if s.new > 0 {
                state.tell(mpay_actors::bus::Event::BankStatementImported {
                    organization: auth.fiscal_code().to_string(),
                    new_credits: s.new,
                });
            }
            Ok(HttpResponse::Ok().json(s))
        }
        FileImport::Rejected(why) | FileImport::OtherOrganization(why) => Err(unprocessable(why)),
    }
}

/// `POST /api/v1/organizations/{cf}/fdrs/sync`.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/fdrs/sync",
    params(("organizationfiscalcode" = String, Path)),
    responses((status = 200, description = "listed, stored, revisions, alreadyKnown, failed (each fetched again next time), cursor"),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 409, body = Problem, description = "the FdR API is not configured ([fdr] base_url)"),
              (status = 502, body = Problem, description = "the FdR API could not be listed")),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn sync_flows(
    state: web::Data<AppState>,
    auth: OrgAuth,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let done = match &state.recon {
        Some(worker) if worker.can_sync() => worker.sync(&org).await,
        _ => {
            let Some(api) = fdr_api(&state.settings.fdr) else {
                return Err(Problem::conflict(
                    "the FdR API is not configured ([fdr] base_url): import flows from files (…/fdrs/import)",
                )
                .with_code("FDR_NOT_CONFIGURED"));
            };
            match api.sync(&state.store, &org).await {
                Ok(report) => {
                    committed(&state).await?;
                    for flow_id in &report.acquired {
                        flow_acquired(&state, &org, flow_id).await?;
                    }
                    Ok(report)
                }
                Err(e) => Err(e),
            }
        }
    };
    match done {
        Ok(report) => Ok(HttpResponse::Ok().json(report)),
        Err(mpay_actors::fdr_sync::SyncError::List(e)) => Err(Problem::new(
            actix_web::http::StatusCode::BAD_GATEWAY,
            "FdR API unavailable",
            e,
        )
        .with_code("FDR_UNAVAILABLE")),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// The FdR API of `[fdr]`; `None` when `base_url` is empty.
pub fn fdr_api(s: &mpay_config::reporting::FdrSettings) -> Option<mpay_actors::fdr_sync::FdrApi> {
    use secrecy::ExposeSecret;
    if s.base_url.trim().is_empty() {
        return None;
    }
    Some(mpay_actors::fdr_sync::FdrApi {
        base_url: s.base_url.trim().to_string(),
        subscription_key: s
            .subscription_key
            .as_ref()
            .map(|k| k.expose_secret().to_string()),
        page_size: s.page_size,
        timeout: std::time::Duration::from_millis(s.timeout_ms),
    })
}

/// `GET /api/v1/organizations/{cf}/fdrs`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/fdrs",
    params(("organizationfiscalcode" = String, Path)),
    responses((status = 200, description = "the latest revision of each flow: flowId, revision, regulationDate, totalCents, creditedCents, settlement, flags"),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn list_flows(
    state: web::Data<AppState>,
    auth: OrgAuth,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let flows = state
        .store
        .blocking(move |s| reconciliation::flow_lines(s, &org))
        .await
        .map_err(Problem::internal)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "flows": flows })))
}

/// `GET /api/v1/organizations/{cf}/reconciliation`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/reconciliation",
    params(("organizationfiscalcode" = String, Path), ("format" = Option<String>, Query, description = "json (default) or csv: `;`-separated, decimal comma, one line per payment, reported row and credit")),
    responses((status = 200, description = "flows, payments (each receipt transfer with its label RT_IUF_TES, RT_IUF, RT_NO_IUF, IUF_TES_DIV_IMP or RT_NO_IUF_BOLLO), rowsWithoutReceipt (IUV_NO_RT), credits (TES_NO_IUF_OR_IUV when unexplained), totals per label"),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn report(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, Problem> {
    let csv = match query.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(Problem::field("format", "must be json or csv")),
    };
    let org = auth.fiscal_code().to_string();
    let report = state
        .store
        .blocking(move |s| reconciliation::reconcile(s, &org))
        .await
        .map_err(Problem::internal)?;
    if csv {
        let body = report.to_csv().map_err(Problem::internal)?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!(
                    "attachment; filename=\"riconciliazione-{}.csv\"",
                    auth.fiscal_code()
                ),
            ))
            .body(body));
    }
    let org = auth.fiscal_code().to_string();
    let last = state
        .store
        .blocking(move |s| s.reconciliation.last_run(&org))
        .await
        .map_err(Problem::internal)?;
    let mut body = serde_json::to_value(&report).map_err(Problem::internal)?;
    if let Some(o) = body.as_object_mut() {
        o.insert(
            "lastRun".into(),
            serde_json::to_value(last).map_err(Problem::internal)?,
        );
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/v1/organizations/{cf}/reconciliation/unreported`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/reconciliation/unreported",
    params(("organizationfiscalcode" = String, Path), ("asOf" = Option<String>, Query, description = "business day (Europe/Rome) judged, YYYY-MM-DD or a date-time; default today")),
    responses((status = 200, description = "asOf, count, receipts: receiptId, iuv, idTransfer, amountCents, paidAt, deadline (the last day the PSP could publish its flow: D+2 operating days, Italian calendar, 13:00 cut)"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn unreported(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<UnreportedQuery>,
) -> Result<HttpResponse, Problem> {
    let as_of = match query.as_of.as_deref().map(str::trim) {
        None | Some("") => mpay_messages::time::rome_today(),
        Some(t) => match chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => mpay_messages::time::parse_api_datetime(t)
                .map(mpay_messages::time::rome_date)
                .map_err(|e| Problem::field("asOf", e.to_string()))?,
        },
    };
    let org = auth.fiscal_code().to_string();
    let open = state
        .store
        .blocking(move |s| reconciliation::unreported_payments(s, &org))
        .await
        .map_err(Problem::internal)?;
    let late = reconciliation::unreported(&open, as_of);
    let receipts: Vec<serde_json::Value> = late
        .iter()
        .map(|(p, deadline)| {
            serde_json::json!({
                "receiptId": p.receipt_id,
                "iuv": p.iuv,
                "idTransfer": p.id_transfer,
                "amountCents": p.amount_cents,
                "paidAt": p.paid_at,
                "deadline": deadline,
                "label": p.label,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "organization": auth.fiscal_code(),
        "asOf": as_of,
        "count": receipts.len(),
        "receipts": receipts,
    })))
}

/// Query of `GET …/reconciliation/unreported`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UnreportedQuery {
    /// Business day judged.
    as_of: Option<String>,
}

/// Query of `GET …/reconciliation`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The longest period one export covers (days).
pub const MAX_EXPORT_DAYS: i64 = 366;

/// Reads `from`, `to` and `format` of an export request; errors name the parameter.
pub fn export_params(
    query: &std::collections::HashMap<String, String>,
) -> Result<(crate::exports::Period, crate::exports::ExportFormat), Problem> {
    use crate::exports::{ExportFormat, Period};
    if let Some(k) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "from" | "to" | "format"))
    {
        return Err(Problem::field(
            k.clone(),
            "unknown parameter (from, to, format)",
        ));
    }
    let day = |name: &str| -> Result<chrono::NaiveDate, Problem> {
        let v = query
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Problem::field(name, "required: a day YYYY-MM-DD (Europe/Rome)"))?;
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| Problem::field(name, format!("{v:?} is not a day YYYY-MM-DD")))
    };
    let (from, to) = (day("from")?, day("to")?);
    if to < from {
        return Err(Problem::field("to", "must not be before from"));
    }
    if (to - from).num_days() >= MAX_EXPORT_DAYS {
        return Err(Problem::field(
            "to",
            format!("the period is at most {MAX_EXPORT_DAYS} days"),
        ));
    }
    let format = match query.get("format").map(|f| f.trim()) {
        None | Some("") => ExportFormat::Csv,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| Problem::field("format", format!("{f:?}: must be csv or xlsx")))?,
    };
    Ok((Period { from, to }, format))
}

/// `GET /api/v1/organizations/{cf}/reconciliation/exports/{kind}`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/reconciliation/exports/{kind}",
    params(("organizationfiscalcode" = String, Path),
           ("kind" = String, Path, description = "payments (the receipts paid in the period, with their label and flow), flows (every row of the flows regulated in the period, with the flow's totals, settlement and flags), reconciliation (count and amount per day, flow and label, then a total per label)"),
           ("from" = String, Query, description = "first day, YYYY-MM-DD (Europe/Rome)"),
           ("to" = String, Query, description = "last day, YYYY-MM-DD, included; at most 366 days after from"),
           ("format" = Option<String>, Query, description = "csv (default: `;`-separated, decimal comma, UTF-8) or xlsx (amounts as numbers, dates as dates, frozen header)")),
    responses((status = 200, description = "the file (Content-Disposition: attachment; name like pagamenti-<cf>-<from>-<to>.csv; text/csv or the XLSX content type)"),
              (status = 400, body = Problem, description = "a bad parameter, named in `errors[].field` (kind, from, to, format)"),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "reconciliation"
)]
pub async fn export(
    state: web::Data<AppState>,
    auth: OrgAuth,
    kind: web::Path<(String, String)>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, Problem> {
    use crate::exports::{export_from_store, ExportKind};
    let (_, kind) = kind.into_inner();
    let kind = ExportKind::parse(&kind).ok_or_else(|| {
        Problem::field(
            "kind",
            format!("{kind:?}: must be payments, flows or reconciliation"),
        )
    })?;
    let (period, format) = export_params(&query)?;
    let org = auth.fiscal_code().to_string();
    let (name, bytes) = state
        .store
        .blocking(move |s| {
            Ok::<_, mpay_storage::StorageError>(export_from_store(s, &org, kind, format, period))
        })
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .body(bytes))
}
