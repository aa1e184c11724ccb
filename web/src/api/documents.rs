//! Payment documents over REST: a position's notice, one notice by number, a receipt — as PDF —
//! and asynchronous mass printing (`…/notices/print-jobs`: 202 + job id, idempotent with an
//! `Idempotency-Key`; status with progress; `result.zip`). Same API key and tenant rules as the
//! debt positions; rendering runs on the blocking pool.

use std::io::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, Utc};
use mpay_messages::position::{DebtPosition, Origin, PositionStatus};
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use mpay_storage::{ListOrder, PositionFilter, PositionRepository};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::positions::{ledger, read_own};
use crate::auth::OrgAuth;
use crate::documents::{notice_input, pdf_response, receipt_input, render};
use crate::print_jobs::{Job, PrintJobModel};
use crate::problem::Problem;
use crate::state::AppState;

/// Routes of this module (registered before the positions' and receipts' scopes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/organizations/{organizationfiscalcode}/debtpositions/{iupd}/notices/pdf",
        web::get().to(position_notice_pdf),
    )
    .route(
        "/organizations/{organizationfiscalcode}/notices/print-jobs",
        web::post().to(create_print_job),
    )
    .route(
        "/organizations/{organizationfiscalcode}/notices/print-jobs/{jobId}",
        web::get().to(print_job_status),
    )
    .route(
        "/organizations/{organizationfiscalcode}/notices/print-jobs/{jobId}/result.zip",
        web::get().to(print_job_result),
    )
    .route(
        "/organizations/{organizationfiscalcode}/notices/{noticeNumber}/pdf",
        web::get().to(notice_pdf),
    )
    .route(
        "/organizations/{organizationfiscalcode}/receipts/{receiptId}/pdf",
        web::get().to(receipt_pdf),
    );
}

/// `GET …/debtpositions/{iupd}/notices/pdf`: the position's notice, every option.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/notices/pdf",
    summary = "The payment notice of a position (PDF)",
    description = "The pagoPA payment notice of the position: the single solution and every installment, each with its QR code; the Poste bollettino with its Data Matrix for options paid to a postal account.",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn position_notice_pdf(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let p = read_own(&state, &auth, &path.1).await?;
    if p.payment_options.is_empty() {
        return Err(Problem::not_found(format!(
            "debt position {:?} has no notice",
            path.1
        )));
    }
    let input = notice_input(&auth.org.settings, &p, None);
    let name = input
        .options
        .first()
        .map_or_else(|| p.iupd.clone(), |o| o.nav.clone());
    let pdf = render(move || mpay_documents::render_notice(&input)).await?;
    Ok(pdf_response(pdf, &format!("avviso-{name}.pdf")))
}

/// `GET …/notices/{noticeNumber}/pdf`: one notice (the option with that number).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/notices/{noticeNumber}/pdf",
    summary = "One payment notice by notice number (PDF)",
    params(("organizationfiscalcode" = String, Path), ("noticeNumber" = String, Path)),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, description = "not a notice of this organization", body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn notice_pdf(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let raw = path.1.trim().to_owned();
    let not_ours = || {
        Problem::not_found(format!(
            "no notice {raw:?} for organization {}",
            auth.fiscal_code()
        ))
    };
    let nav = NoticeNumber::parse_unchecked(&raw).map_err(|_| not_ours())?;
    if !auth.allows(&nav) {
        return Err(Problem::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "Forbidden",
            "the notice is outside the segregation codes of this key",
        ));
    }
    let org = auth.fiscal_code().clone();
    let key = nav.clone();
    let p = ledger(&state, move |l| l.find_by_notice(&org, &key))
        .await?
        .ok_or_else(not_ours)?;
    let input = notice_input(&auth.org.settings, &p, Some(nav.as_str()));
    if input.options.is_empty() {
        return Err(not_ours());
    }
    let pdf = render(move || mpay_documents::render_notice(&input)).await?;
    Ok(pdf_response(pdf, &format!("avviso-{}.pdf", nav.as_str())))
}

/// The public origin documents link to: `[portal] public_url`, else the request's.
pub(crate) fn public_origin(state: &AppState, req: &HttpRequest) -> String {
    let configured = state
        .settings
        .portal
        .public_url
        .trim()
        .trim_end_matches('/');
    if configured.is_empty() {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    } else {
        configured.to_owned()
    }
}

/// `GET …/receipts/{receiptId}/pdf`: the receipt.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}/pdf",
    summary = "A receipt (PDF)",
    description = "The receipt with its transfers, stamps and a QR code linking to the public verification page `/ricevute/verify/{id}`.",
    params(("organizationfiscalcode" = String, Path), ("receiptId" = String, Path)),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn receipt_pdf(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let found = state
        .store
        .organization_receipt(org.clone(), path.1.clone())
        .await?;
    let r = found.ok_or_else(|| {
        Problem::not_found(format!("no receipt {:?} for organization {org}", path.1))
    })?;
    let verify = format!(
        "{}/ricevute/verify/{}",
        public_origin(&state, &req),
        state.verify_key.id(&org, &r.receipt_id)
    );
    let input = receipt_input(&r, &auth.org.name, verify);
    let pdf = render(move || mpay_documents::render_receipt(&input)).await?;
    Ok(pdf_response(
        pdf,
        &format!("ricevuta-{}.pdf", safe_name(&r.receipt_id)),
    ))
}

/// A file-name-safe form of an identifier.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which positions a mass print takes (one of).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"status": "VALID", "merge": false}))]
pub struct PrintSelection {
    /// The positions created by this feed (flow id).
    pub feed: Option<String>,
    /// The positions in this status (e.g. `VALID`).
    pub status: Option<String>,
    /// Positions with an option due on or after this day (`YYYY-MM-DD`).
    pub due_from: Option<NaiveDate>,
    /// … on or before this day.
    pub due_to: Option<NaiveDate>,
    /// One merged PDF (`notices.pdf`) instead of one PDF per position.
    #[serde(default)]
    pub merge: bool,
}

impl PrintSelection {
    fn check(&self) -> Result<PositionFilter, String> {
        let by_date = self.due_from.is_some() || self.due_to.is_some();
        let chosen = [self.feed.is_some(), self.status.is_some(), by_date]
            .iter()
            .filter(|b| **b)
            .count();
        if chosen != 1 {
            return Err("choose one of feed, status, or dueFrom/dueTo".into());
        }
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(
                serde_json::from_value::<PositionStatus>(serde_json::Value::String(
                    s.trim().to_ascii_uppercase(),
                ))
                .map_err(|_| format!("unknown status {s:?}"))?,
            ),
        };
        Ok(PositionFilter {
            status,
            due_from: self.due_from,
            due_to: self.due_to,
            ..PositionFilter::default()
        })
    }
}

/// The positions a selection takes, oldest first (a feed's positions are found by their
/// origin, reading the organization's positions page by page).
pub fn select_positions(
    ledger: &dyn PositionRepository,
    org: &OrgFiscalCode,
    selection: &PrintSelection,
) -> Result<Vec<DebtPosition>, String> {
    let filter = selection.check()?;
    let mut out = Vec::new();
    let mut page = 0;
    loop {
        let p = ledger
            .list(org, &filter, ListOrder::InsertedAsc, page, 1000)
            .map_err(|e| e.to_string())?;
        let n = p.items.len();
        out.extend(
            p.items
                .into_iter()
                .filter(|d| match &selection.feed {
                    Some(flow) => matches!(&d.origin, Origin::Feed { flow_id } if flow_id == flow),
                    None => true,
                })
                .filter(|d| !d.payment_options.is_empty()),
        );
        if n < 1000 {
            break;
        }
        page += 1;
    }
    Ok(out)
}

/// `POST …/notices/print-jobs`: starts a mass print; 202 with the job. The same
/// `Idempotency-Key` answers the same job.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/notices/print-jobs",
    summary = "Start a mass print of notices",
    params(("organizationfiscalcode" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "the same key answers the same job")),
    request_body = PrintSelection,
    responses((status = 202, body = PrintJobModel), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn create_print_job(
    state: web::Data<AppState>,
    auth: OrgAuth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let selection: PrintSelection = super::positions::decode(&body)?;
    selection.check().map_err(|e| Problem::field("body", e))?;
    let org = auth.fiscal_code().to_string();
    let jobs = state.print_jobs.clone();
    let idem = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(key) = &idem {
        let mut map = jobs.idempotency.lock().map_err(Problem::internal)?;
        if let Some(existing) = map.get(&(org.clone(), key.clone())) {
            if let Some((model, _)) = jobs.get(&org, existing) {
                return Ok(HttpResponse::Accepted().json(model));
            }
        }
        map.insert((org.clone(), key.clone()), id.clone());
    }
    let path = jobs.dir.join(&id).join("result.zip");
    let model = PrintJobModel {
        job_id: id.clone(),
        status: "QUEUED".into(),
        total: 0,
        done: 0,
        failed: 0,
        errors: vec![],
        created_at: Utc::now(),
        result: None,
    };
    jobs.jobs.lock().map_err(Problem::internal)?.insert(
        id.clone(),
        Job {
            org: org.clone(),
            model: model.clone(),
            path: path.clone(),
        },
    );
    let ledger = state.store.ledger.clone();
    let ctx = auth.org.clone();
    let segregation = auth.segregation_codes.clone();
    let run_jobs = jobs.clone();
    let job_id = id.clone();
    let result_url = format!("/api/v1/organizations/{org}/notices/print-jobs/{id}/result.zip");
    tokio::task::spawn_blocking(move || {
        let auth = OrgAuth {
            org: ctx.clone(),
            segregation_codes: segregation,
        };
        let outcome = (|| -> Result<(), String> {
            let positions: Vec<DebtPosition> =
                select_positions(ledger.as_ref(), &ctx.fiscal_code, &selection)?
                    .into_iter()
                    .filter(|p| auth.check_position(p).is_ok())
                    .collect();
            run_jobs.update(&job_id, |m| {
                m.status = "RUNNING".into();
                m.total = positions.len();
            });
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let tmp = path.with_extension("zip.part");
            let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            let mut merged = selection.merge.then(mpay_documents::MergedNotices::new);
            for p in &positions {
                let input = notice_input(&ctx.settings, p, None);
                let name = input
                    .options
                    .first()
                    .map_or_else(|| safe_name(&p.iupd), |o| o.nav.clone());
                let result = match merged.as_mut() {
                    Some(m) => m.add(&input),
                    None => mpay_documents::render_notice(&input).and_then(|pdf| {
                        zip.start_file(format!("{name}.pdf"), opts)
                            .and_then(|()| zip.write_all(&pdf).map_err(Into::into))
                            .map_err(|e| mpay_documents::DocumentError::Layout(e.to_string()))
                    }),
                };
                run_jobs.update(&job_id, |m| match result {
                    Ok(()) => m.done += 1,
                    Err(e) => {
                        m.failed += 1;
                        if m.errors.len() < 100 {
                            m.errors.push(format!("{}: {e}", p.iupd));
                        }
                    }
                });
            }
            if let Some(m) = merged {
                let pdf = m.finish().map_err(|e| e.to_string())?;
                zip.start_file("notices.pdf", opts)
                    .map_err(|e| e.to_string())?;
                zip.write_all(&pdf).map_err(|e| e.to_string())?;
            }
            zip.finish()
                .map_err(|e| e.to_string())?
                .flush()
                .map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
            Ok(())
        })();
        run_jobs.update(&job_id, |m| match outcome {
            Ok(()) => {
                m.status = "DONE".into();
                m.result = Some(result_url);
            }
            Err(e) => {
                m.status = "FAILED".into();
                m.errors.push(e);
            }
        });
    });
    Ok(HttpResponse::Accepted()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/organizations/{org}/notices/print-jobs/{id}"),
        ))
        .json(model))
}

/// `GET …/notices/print-jobs/{jobId}`: status and progress.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/notices/print-jobs/{jobId}",
    params(("organizationfiscalcode" = String, Path), ("jobId" = String, Path)),
    responses((status = 200, body = PrintJobModel), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn print_job_status(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let (model, _) = state.print_jobs.get(&org, &path.1).ok_or_else(|| {
        Problem::not_found(format!("no print job {:?} for organization {org}", path.1))
    })?;
    Ok(HttpResponse::Ok().json(model))
}

/// `GET …/notices/print-jobs/{jobId}/result.zip`: the PDFs (409 while the job runs).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/notices/print-jobs/{jobId}/result.zip",
    params(("organizationfiscalcode" = String, Path), ("jobId" = String, Path)),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, description = "not finished", body = Problem)),
    security(("ApiKey" = [])),
    tag = "documents"
)]
pub async fn print_job_result(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let org = auth.fiscal_code().to_string();
    let (model, file) = state.print_jobs.get(&org, &path.1).ok_or_else(|| {
        Problem::not_found(format!("no print job {:?} for organization {org}", path.1))
    })?;
    if model.status != "DONE" {
        return Err(Problem::conflict(format!(
            "print job {} is {}",
            model.job_id, model.status
        )));
    }
    let bytes = web::block(move || std::fs::read(file))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"avvisi-{}.zip\"", model.job_id),
        ))
        .body(bytes))
}
