//! GPD-compatible debt positions: `/api/v1/organizations/{organizationfiscalcode}/debtpositions`.
//!
//! Every write is acknowledged only after it is durable (group commit, DESIGN §4).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{NaiveDate, Utc};
use mpay_messages::position::{DebtPosition, PositionStatus};
use mpay_messages::time::parse_api_datetime;
use mpay_storage::{DurabilityPoint, LedgerError, ListOrder, PositionFilter, PositionRepository};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::*;
use super::warnings::json_with_warnings;
use crate::auth::OrgAuth;
use crate::problem::{FieldError, Problem};
use crate::state::{AppState, OrgContext};

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let not_allowed = || web::to(method_not_allowed);
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/debtpositions")
            .service(
                web::resource("")
                    .route(web::post().to(create))
                    .route(web::get().to(list))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/bulk")
                    .route(web::post().to(create_bulk))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/{iupd}")
                    .route(web::get().to(get))
                    .route(web::put().to(update))
                    .route(web::delete().to(delete))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/{iupd}/invalidate")
                    .route(web::post().to(invalidate))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/{iupd}/publish")
                    .route(web::post().to(publish))
                    .default_service(not_allowed()),
            ),
    );
}

async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let path = req.match_pattern().unwrap_or_default();
    let allow = if path.ends_with("/debtpositions") {
        "GET, POST"
    } else if path.ends_with("/{iupd}") {
        "GET, PUT, DELETE"
    } else {
        "POST"
    };
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        format!(
            "method {} is not allowed on this resource (allowed: {allow})",
            req.method()
        ),
    );
    let mut res = actix_web::ResponseError::error_response(&problem);
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// `toPublish` query flag (GPD).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PublishFlag {
    /// Publish right away (VALID, or PUBLISHED until `validityDate`).
    #[serde(default)]
    pub to_publish: bool,
}

/// List filters (GPD query parameters).
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size (1..max_page_limit, default 10).
    pub limit: Option<usize>,
    /// Page number, 0-based.
    pub page: Option<usize>,
    /// Some option due on or after (YYYY-MM-DD, Europe/Rome).
    pub due_date_from: Option<String>,
    /// Some option due on or before (YYYY-MM-DD).
    pub due_date_to: Option<String>,
    /// Paid on or after (YYYY-MM-DD).
    pub payment_date_from: Option<String>,
    /// Paid on or before (YYYY-MM-DD).
    pub payment_date_to: Option<String>,
    /// Status (DRAFT, PUBLISHED, VALID, INVALID, EXPIRED, PARTIALLY_PAID, PAID, REPORTED).
    pub status: Option<String>,
    /// INSERTED_DATE (default) or IUPD.
    pub orderby: Option<String>,
    /// DESC (default) or ASC.
    pub ordering: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Problem::field(field, inner.to_string())
    })
}

async fn ledger<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn PositionRepository) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, Problem> {
    let ledger = state.store.ledger.clone();
    web::block(move || f(ledger.as_ref()))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::from)
}

/// Positions created through MPay's Archivio Carichi SOAP are changed only through it (its
/// document is rebuilt from its own record): 409 for REST writes on them.
async fn refuse_archive_document(
    state: &AppState,
    org: &mpay_messages::OrgFiscalCode,
    iupd: &str,
) -> Result<(), Problem> {
    let store = state.store.clone();
    let (org, iupd) = (org.clone(), iupd.to_string());
    let managed = web::block(move || {
        mpay_storage::archive::read(&store, &org, &iupd)
            .map(|s| s.document.is_some_and(|d| !d.cancelled))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    if managed {
        return Err(Problem::new(
            actix_web::http::StatusCode::CONFLICT,
            "Managed by Archivio Carichi",
            "this debt position is an MPay Archivio Carichi document: change it with variazioneEC, cancellazioneEC or discaricoEC",
        ));
    }
    Ok(())
}

async fn durable(state: &AppState) -> Result<(), Problem> {
    state
        .store
        .durability
        .commit(DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)
}

/// Fills generated notice numbers and the publication status.
fn materialise(
    ledger: &dyn PositionRepository,
    org: &OrgContext,
    draft: Draft,
    publish: bool,
) -> Result<DebtPosition, LedgerError> {
    let mut p = draft.position;
    for o in draft.options {
        let nav = match &o.nav {
            Some(n) => n.clone(),
            None => ledger.next_notice(
                &org.fiscal_code,
                &org.layout_for_service(p.service_code.as_deref()),
            )?,
        };
        p.payment_options.push(o.finish(nav));
    }
    if publish {
        apply_publish(&mut p);
    }
    Ok(p)
}

fn apply_publish(p: &mut DebtPosition) {
    let now = Utc::now();
    p.publish_date = Some(now);
    p.status = match p.validity_date {
        Some(v) if v > now => PositionStatus::Published,
        _ => PositionStatus::Valid,
    };
}

fn check_service(
    state: &AppState,
    org: &OrgContext,
    m: &PaymentPositionModel,
    prefix: &str,
) -> Result<(), Problem> {
    if let Some(code) = m.service_code.as_deref().filter(|c| !c.trim().is_empty()) {
        let known = state
            .settings
            .services
            .iter()
            .any(|s| s.organization == org.fiscal_code.as_str() && s.code == code.trim());
        if !known {
            return Err(Problem::field(
                format!("{prefix}serviceCode"),
                format!(
                    "service {code:?} is not in the catalogue of organization {}",
                    org.fiscal_code
                ),
            ));
        }
    }
    Ok(())
}

/// `POST .../debtpositions[?toPublish=true]`: creates a position (201 with the stored position).
///
/// Errors: 400 problem naming the field; 401/403; 409 when the iupd, a notice number or an IUV
/// is taken.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions",
    params(("organizationfiscalcode" = String, Path, description = "Organization fiscal code"), PublishFlag),
    request_body = PaymentPositionModel,
    responses(
        (status = 201, body = PaymentPositionResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)
    ),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn create(
    state: web::Data<AppState>,
    auth: OrgAuth,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let model: PaymentPositionModel = decode(&body)?;
    check_service(&state, &auth.org, &model, "")?;
    let draft = to_domain(&model, &auth.org, "", Utc::now()).map_err(Problem::invalid)?;
    let warnings = draft.warnings.clone();
    let org = auth.org.clone();
    let publish = flag.to_publish;
    let created = ledger(&state, move |l| {
        let p = materialise(l, &org, draft, publish)?;
        l.create(p)
    })
    .await?;
    durable(&state).await?;
    Ok(json_with_warnings(
        StatusCode::CREATED,
        &PaymentPositionResponse::from(&created),
        &warnings,
    ))
}

/// `POST .../debtpositions/bulk[?toPublish=true]`: creates up to `api.bulk_limit` positions, all
/// or none (201 with the stored positions in request order).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/bulk",
    params(("organizationfiscalcode" = String, Path, description = "Organization fiscal code"), PublishFlag),
    request_body = MultiplePaymentPositionModel,
    responses(
        (status = 201, body = MultiplePaymentPositionResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem)
    ),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn create_bulk(
    state: web::Data<AppState>,
    auth: OrgAuth,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let model: MultiplePaymentPositionModel = decode(&body)?;
    let limit = state.settings.api.bulk_limit;
    if model.payment_positions.is_empty() {
        return Err(Problem::field(
            "paymentPositions",
            "at least one position is required",
        ));
    }
    if model.payment_positions.len() > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many positions",
            format!(
                "paymentPositions holds {} positions; at most {limit} per request",
                model.payment_positions.len()
            ),
        ));
    }
    let now = Utc::now();
    let mut drafts = Vec::new();
    let mut errors: Vec<FieldError> = Vec::new();
    let mut iupds = std::collections::HashSet::new();
    let mut warnings: Vec<FieldError> = Vec::new();
    for (i, m) in model.payment_positions.iter().enumerate() {
        let prefix = format!("paymentPositions[{i}].");
        if !iupds.insert(m.iupd.clone()) {
            errors.push(FieldError {
                field: format!("{prefix}iupd"),
                message: "the same iupd appears twice in the request".into(),
            });
        }
        if let Err(p) = check_service(&state, &auth.org, m, &prefix) {
            errors.extend(p.errors);
        }
        match to_domain(m, &auth.org, &prefix, now) {
            Ok(d) => {
                warnings.extend(d.warnings.iter().cloned());
                drafts.push(d)
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let org = auth.org.clone();
    let publish = flag.to_publish;
    let created = ledger(&state, move |l| {
        let positions = drafts
            .into_iter()
            .map(|d| materialise(l, &org, d, publish))
            .collect::<Result<Vec<_>, _>>()?;
        l.create_many(positions)
    })
    .await?;
    durable(&state).await?;
    Ok(json_with_warnings(
        StatusCode::CREATED,
        &MultiplePaymentPositionResponse {
            payment_positions: created.iter().map(PaymentPositionResponse::from).collect(),
        },
        &warnings,
    ))
}

fn iupd_param(iupd: &str) -> Result<String, Problem> {
    validate_iupd(iupd).map_err(|e| Problem::field("iupd", e))?;
    Ok(iupd.to_string())
}

/// `GET .../debtpositions/{iupd}`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn get(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let iupd = iupd_param(&path.1)?;
    let org = auth.fiscal_code().clone();
    let found = ledger(&state, move |l| l.get(&org, &iupd)).await?;
    match found {
        Some(p) => Ok(HttpResponse::Ok().json(PaymentPositionResponse::from(&p))),
        None => Err(Problem::not_found(format!(
            "no debt position {:?} for organization {}",
            path.1,
            auth.fiscal_code()
        ))),
    }
}

fn day_param(name: &str, v: &Option<String>) -> Result<Option<NaiveDate>, Problem> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| Problem::field(name, "must be a date YYYY-MM-DD")),
    }
}

/// `GET .../debtpositions`: lists with filters and paging (GPD PaymentPositionsInfo).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions",
    params(("organizationfiscalcode" = String, Path), ListQuery),
    responses((status = 200, body = PaymentPositionsInfo), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn list(
    state: web::Data<AppState>,
    auth: OrgAuth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let max = state.settings.api.max_page_limit;
    let limit = query.limit.unwrap_or(10.min(max));
    if limit == 0 || limit > max {
        return Err(Problem::field("limit", format!("must be 1..{max}")));
    }
    let page = query.page.unwrap_or(0);
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(PositionStatus::from_wire(s).ok_or_else(|| {
            Problem::field(
                "status",
                "must be one of DRAFT, PUBLISHED, VALID, INVALID, EXPIRED, PARTIALLY_PAID, PAID, REPORTED",
            )
        })?),
    };
    let due_from = day_param("due_date_from", &query.due_date_from)?;
    let due_to = day_param("due_date_to", &query.due_date_to)?;
    let paid_from = day_param("payment_date_from", &query.payment_date_from)?
        .and_then(|d| parse_api_datetime(&format!("{d}T00:00:00")).ok());
    let paid_to = day_param("payment_date_to", &query.payment_date_to)?
        .and_then(|d| parse_api_datetime(&d.to_string()).ok());
    let desc = match query.ordering.as_deref().unwrap_or("DESC") {
        "DESC" | "desc" => true,
        "ASC" | "asc" => false,
        _ => return Err(Problem::field("ordering", "must be ASC or DESC")),
    };
    let order = match (query.orderby.as_deref().unwrap_or("INSERTED_DATE"), desc) {
        ("INSERTED_DATE", true) => ListOrder::InsertedDesc,
        ("INSERTED_DATE", false) => ListOrder::InsertedAsc,
        ("IUPD", true) => ListOrder::IupdDesc,
        ("IUPD", false) => ListOrder::IupdAsc,
        _ => return Err(Problem::field("orderby", "must be INSERTED_DATE or IUPD")),
    };
    let filter = PositionFilter {
        status,
        due_from,
        due_to,
        paid_from,
        paid_to,
    };
    let org = auth.fiscal_code().clone();
    let page = ledger(&state, move |l| l.list(&org, &filter, order, page, limit)).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionsInfo {
        page_info: PageInfo {
            page: page.page,
            limit: page.limit,
            items_found: page.items.len(),
            total_pages: page.total_items.div_ceil(page.limit.max(1)),
        },
        payment_position_list: page
            .items
            .iter()
            .map(PaymentPositionResponse::from)
            .collect(),
    }))
}

/// `PUT .../debtpositions/{iupd}[?toPublish=true]`: replaces a position that has no payment
/// (DRAFT, PUBLISHED, VALID, EXPIRED). As in GPD it goes back to DRAFT unless `toPublish=true`.
/// Options without `nav`/`iuv` get new numbers.
#[utoipa::path(
    put,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path), PublishFlag),
    request_body = PaymentPositionModel,
    responses((status = 200, body = PaymentPositionResponse), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn update(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let iupd = iupd_param(&path.1)?;
    let mut model: PaymentPositionModel = decode(&body)?;
    if model.iupd.is_empty() {
        model.iupd = iupd.clone();
    }
    if model.iupd != iupd {
        return Err(Problem::field("iupd", "must match the iupd in the path"));
    }
    check_service(&state, &auth.org, &model, "")?;
    refuse_archive_document(&state, &auth.org.fiscal_code, &iupd).await?;
    let draft = to_domain(&model, &auth.org, "", Utc::now()).map_err(Problem::invalid)?;
    let warnings = draft.warnings.clone();
    let org = auth.org.clone();
    let publish = flag.to_publish;
    let updated = ledger(&state, move |l| {
        let current = l
            .get(&org.fiscal_code, &iupd)?
            .ok_or(LedgerError::NotFound)?;
        refuse_if_closed(&current, "update")?;
        let new = materialise(l, &org, draft, publish)?;
        l.modify(&org.fiscal_code, &iupd, &mut |p| {
            refuse_if_closed(p, "update")?;
            let inserted = p.inserted_date;
            *p = new.clone();
            p.inserted_date = inserted;
            Ok(())
        })
    })
    .await?;
    durable(&state).await?;
    Ok(json_with_warnings(
        StatusCode::OK,
        &PaymentPositionResponse::from(&updated),
        &warnings,
    ))
}

fn refuse_if_closed(p: &DebtPosition, action: &'static str) -> Result<(), LedgerError> {
    if p.status.has_payments() || p.status == PositionStatus::Invalid {
        return Err(LedgerError::InvalidState {
            action,
            status: p.status.as_str(),
        });
    }
    Ok(())
}

/// `DELETE .../debtpositions/{iupd}`: removes a DRAFT position (409 otherwise: invalidate a
/// published one instead).
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, description = "deleted"), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn delete(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let iupd = iupd_param(&path.1)?;
    let org = auth.fiscal_code().clone();
    refuse_archive_document(&state, &org, &iupd).await?;
    ledger(&state, move |l| {
        l.delete(&org, &iupd, &|p| {
            if p.status == PositionStatus::Draft {
                Ok(())
            } else {
                Err(LedgerError::InvalidState {
                    action: "delete (only DRAFT positions can be deleted; invalidate it instead)",
                    status: p.status.as_str(),
                })
            }
        })
    })
    .await?;
    durable(&state).await?;
    Ok(HttpResponse::Ok().json("OK"))
}

/// `POST .../debtpositions/{iupd}/publish`: DRAFT → VALID (or PUBLISHED until `validityDate`).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/publish",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponse), (status = 404, body = Problem),
              (status = 409, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn publish(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    transition(state, auth, &path.1, "publish", |p| {
        if p.status != PositionStatus::Draft {
            return Err(LedgerError::InvalidState {
                action: "publish",
                status: p.status.as_str(),
            });
        }
        apply_publish(p);
        Ok(())
    })
    .await
}

/// `POST .../debtpositions/{iupd}/invalidate`: PUBLISHED/VALID/EXPIRED → INVALID (cancelled;
/// the Node then gets PAA_PAGAMENTO_ANNULLATO).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/invalidate",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponse), (status = 404, body = Problem),
              (status = 409, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn invalidate(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    transition(state, auth, &path.1, "invalidate", |p| {
        if !matches!(
            p.status,
            PositionStatus::Published | PositionStatus::Valid | PositionStatus::Expired
        ) {
            return Err(LedgerError::InvalidState {
                action: "invalidate",
                status: p.status.as_str(),
            });
        }
        p.status = PositionStatus::Invalid;
        Ok(())
    })
    .await
}

async fn transition(
    state: web::Data<AppState>,
    auth: OrgAuth,
    iupd: &str,
    _action: &'static str,
    change: fn(&mut DebtPosition) -> Result<(), LedgerError>,
) -> Result<HttpResponse, Problem> {
    let iupd = iupd_param(iupd)?;
    let org = auth.fiscal_code().clone();
    refuse_archive_document(&state, &org, &iupd).await?;
    let p = ledger(&state, move |l| l.modify(&org, &iupd, &mut |p| change(p))).await?;
    durable(&state).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionResponse::from(&p)))
}
