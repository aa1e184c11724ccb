//! GPD-compatible debt positions: `/api/v1/organizations/{organizationfiscalcode}/debtpositions`.
//!
//! Every write is acknowledged only after it is durable (group commit, DESIGN §4).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{NaiveDate, Utc};
use mpay_messages::domain::{Action, PositionError};
use mpay_messages::position::{DebtPosition, Origin, PositionStatus};
use mpay_messages::time::parse_api_datetime;
use mpay_storage::{DurabilityPoint, LedgerError, ListOrder, PositionFilter, PositionRepository};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::*;
use super::warnings::json_with_warnings;
use crate::auth::OrgAuth;
use crate::problem::{FieldError, Problem};
use crate::state::{AppState, OrgContext, PositionChange};

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let not_allowed = || web::to(method_not_allowed);
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/debtpositions")
            .wrap(actix_web::middleware::from_fn(only_known_query))
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

/// Refuses a query parameter the route does not know (400 naming it). The list endpoint and
/// the `toPublish` flag check their own parameters; every other route takes none but
/// `segregationCodes`.
async fn only_known_query(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let path = req.path().trim_end_matches('/');
    let method = req.method().clone();
    let own_checks = path.ends_with("/debtpositions")
        || path.ends_with("/debtpositions/bulk")
        || method == actix_web::http::Method::PUT;
    if !own_checks && !req.query_string().is_empty() {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
        if let Some((name, _)) = pairs
            .iter()
            .find(|(n, _)| n != crate::auth::SEGREGATION_CODES_PARAMETER)
        {
            let problem = Problem::field(
                name.clone(),
                "unknown query parameter: this operation takes none",
            )
            .with_code("UNKNOWN_QUERY_PARAMETER");
            let res = actix_web::ResponseError::error_response(&problem);
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

pub(crate) async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let path = req.match_pattern().unwrap_or_default();
    let allow = if path.ends_with("/debtpositions/transfers") {
        "PATCH"
    } else if path.ends_with("/debtpositions") {
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

/// `toPublish` query flag (GPD); any other query parameter is refused (400 naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishFlag {
    /// Publish right away (VALID, or PUBLISHED until `validityDate`). `true`, `True`, `TRUE`
    /// and `1` are true; `false`, `False`, `FALSE` and `0` false (as GPD reads it).
    #[serde(default, deserialize_with = "lenient_bool")]
    #[param(value_type = bool)]
    pub to_publish: bool,
    /// Segregation codes the call is limited to (GPD API management; see `auth`).
    #[serde(default, rename = "segregationCodes")]
    pub segregation_codes: Option<String>,
}

/// A boolean query value as GPD (Spring) reads it: `true/True/TRUE/1`, `false/False/FALSE/0`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "True" | "TRUE" | "1" => Some(true),
        "false" | "False" | "FALSE" | "0" => Some(false),
        _ => None,
    }
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = String::deserialize(d)?;
    parse_bool(&v).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "toPublish must be true, True, TRUE, 1, false, False, FALSE or 0, got {v:?}"
        ))
    })
}

/// List filters: every GPD query parameter, plus lookups by debtor, notice number, IUV, iupd
/// prefix and service. Any other parameter is refused (400 naming it).
#[derive(Debug, Default, Deserialize, IntoParams)]
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
    /// Paid at or after (date-time, e.g. 2026-03-01T10:00:00; Europe/Rome without offset).
    pub payment_date_time_from: Option<String>,
    /// Paid at or before (date-time).
    pub payment_date_time_to: Option<String>,
    /// Status (DRAFT, PUBLISHED, VALID, INVALID, EXPIRED, PARTIALLY_PAID, PAID, REPORTED).
    pub status: Option<String>,
    /// INSERTED_DATE (default) or IUPD.
    pub orderby: Option<String>,
    /// DESC (default) or ASC.
    pub ordering: Option<String>,
    /// Debtor fiscal code (exact; from the debtor index).
    #[serde(rename = "fiscalCode")]
    pub fiscal_code: Option<String>,
    /// Notice number ("numero avviso", 18 digits; from the notice index).
    pub nav: Option<String>,
    /// IUV (from the IUV index).
    pub iuv: Option<String>,
    /// Positions whose iupd starts with this text.
    #[serde(rename = "iupdPrefix")]
    pub iupd_prefix: Option<String>,
    /// Catalogue service code.
    #[serde(rename = "serviceCode")]
    pub service_code: Option<String>,
}

/// The query parameters the list endpoint knows.
const LIST_PARAMETERS: &[&str] = &[
    "limit",
    "page",
    "due_date_from",
    "due_date_to",
    "payment_date_from",
    "payment_date_to",
    "payment_date_time_from",
    "payment_date_time_to",
    "status",
    "orderby",
    "ordering",
    "fiscalCode",
    "nav",
    "iuv",
    "iupdPrefix",
    "serviceCode",
    crate::auth::SEGREGATION_CODES_PARAMETER,
];

impl ListQuery {
    /// Reads a query string: an unknown parameter or a value that is not a number where one is
    /// expected is a 400 naming the parameter.
    pub fn parse(query: &str) -> Result<Self, Problem> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| Problem::from_query_error(&e.to_string()))?
            .into_inner();
        let mut q = ListQuery::default();
        for (name, value) in pairs {
            let number = |v: &str| {
                v.trim().parse::<usize>().map_err(|_| {
                    Problem::field(
                        name.clone(),
                        format!("must be a whole number (0 or more), got {v:?}"),
                    )
                    .with_code("INVALID_QUERY")
                })
            };
            let text = Some(value.clone());
            match name.as_str() {
                "limit" => q.limit = Some(number(&value)?),
                "page" => q.page = Some(number(&value)?),
                "due_date_from" => q.due_date_from = text,
                "due_date_to" => q.due_date_to = text,
                "payment_date_from" => q.payment_date_from = text,
                "payment_date_to" => q.payment_date_to = text,
                "payment_date_time_from" => q.payment_date_time_from = text,
                "payment_date_time_to" => q.payment_date_time_to = text,
                "status" => q.status = text,
                "orderby" => q.orderby = text,
                "ordering" => q.ordering = text,
                "fiscalCode" => q.fiscal_code = text,
                "nav" => q.nav = text,
                "iuv" => q.iuv = text,
                "iupdPrefix" => q.iupd_prefix = text,
                "serviceCode" => q.service_code = text,
                crate::auth::SEGREGATION_CODES_PARAMETER => {}
                other => {
                    return Err(Problem::field(
                        other,
                        format!(
                            "unknown query parameter; known: {}",
                            LIST_PARAMETERS.join(", ")
                        ),
                    )
                    .with_code("UNKNOWN_QUERY_PARAMETER"))
                }
            }
        }
        Ok(q)
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(Problem::from_json_error)
}

pub(crate) async fn ledger<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn PositionRepository) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, Problem> {
    let ledger = state.store.ledger.clone();
    web::block(move || f(ledger.as_ref()))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::from)
}

/// Whether `action` is allowed on `p`: the domain's rule ([`DebtPosition::may`]). Positions
/// stored before origins were recorded ([`Origin::Unrecorded`]) are Archivio Carichi
/// documents when the archive holds a live document for them (its own record).
pub(crate) fn may(
    store: &mpay_storage::Store,
    p: &DebtPosition,
    action: Action,
) -> Result<(), LedgerError> {
    if p.origin == Origin::Unrecorded {
        let managed = mpay_storage::archive::read(store, &p.organization_fiscal_code, &p.iupd)
            .map_err(|e| match e {
                mpay_storage::archive::ArchiveError::Ledger(l) => l,
                other => LedgerError::Storage(mpay_storage::StorageError::Io(other.to_string())),
            })?
            .document
            .is_some_and(|d| !d.cancelled);
        if managed && p.status != PositionStatus::Invalid {
            return Err(PositionError::ManagedByArchive.into());
        }
    }
    p.may(action).map_err(LedgerError::from)
}

pub(crate) async fn durable(state: &AppState) -> Result<(), Problem> {
    state
        .store
        .durability
        .commit(DurabilityPoint::RestWrite)
        .await
        .map_err(Problem::internal)
}

/// Fills generated notice numbers and the publication status.
pub(crate) fn materialise(
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
        let mut o = o.finish(nav);
        o.details.inserted_date.get_or_insert(p.inserted_date);
        o.details.last_updated_date = Some(p.last_updated_date);
        p.payment_options.push(o);
    }
    if publish {
        p.mark_published(Utc::now());
    }
    Ok(p)
}

/// 403 when an option's notice (given, or to be generated with the organization's layout) is
/// outside the caller's segregation codes.
pub(crate) fn check_draft(auth: &OrgAuth, draft: &Draft) -> Result<(), Problem> {
    for o in &draft.options {
        match &o.nav {
            Some(n) => auth.check_notices([n])?,
            None => {
                let layout = auth
                    .org
                    .layout_for_service(draft.position.service_code.as_deref());
                if !auth.allows_layout(&layout) {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        format!("notices generated with layout {layout} are outside the segregation codes this call may act on"),
                    )
                    .with_code("SEGREGATION_CODE_NOT_ALLOWED"));
                }
            }
        }
    }
    Ok(())
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
    summary = "Create a debt position",
    description = "Creates a debt position (DRAFT, or published with `toPublish=true`). Omit `nav` and `iuv` to have the notice number generated. Amounts are integer euro cents. A debtor fiscal code with a wrong check character is stored as sent and reported in `warnings`.",
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
    let (created, warnings) =
        create_position(&state, &auth, &model, flag.to_publish, |_| {}).await?;
    Ok(json_with_warnings(
        StatusCode::CREATED,
        &PaymentPositionResponse::from(&created),
        &warnings,
    ))
}

/// Validates, stores durably and answers a new position; `shape` adjusts the validated draft
/// (the v3 API sets the plans). Shared by v1 and v3.
pub(crate) async fn create_position(
    state: &AppState,
    auth: &OrgAuth,
    model: &PaymentPositionModel,
    publish: bool,
    shape: impl FnOnce(&mut Draft),
) -> Result<(DebtPosition, Vec<FieldError>), Problem> {
    check_service(state, &auth.org, model, "")?;
    let mut draft = to_domain(model, &auth.org, "", Utc::now()).map_err(Problem::invalid)?;
    shape(&mut draft);
    check_draft(auth, &draft)?;
    let warnings = draft.warnings.clone();
    let org = auth.org.clone();
    let created = ledger(state, move |l| {
        let p = materialise(l, &org, draft, publish)?;
        l.create(p)
    })
    .await?;
    durable(state).await?;
    state.tell_position(PositionChange::Created, &created);
    Ok((created, warnings))
}

/// `POST .../debtpositions/bulk[?toPublish=true]`: creates up to `api.bulk_limit` positions, all
/// or none (201 with the stored positions in request order).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/bulk",
    summary = "Create several debt positions at once",
    description = "Creates up to `api.bulk_limit` positions in one request: all of them or none.",
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
                check_draft(&auth, &d)?;
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
    for p in &created {
        state.tell_position(PositionChange::Created, p);
    }
    Ok(json_with_warnings(
        StatusCode::CREATED,
        &MultiplePaymentPositionResponse {
            payment_positions: created.iter().map(PaymentPositionResponse::from).collect(),
        },
        &warnings,
    ))
}

pub(crate) fn iupd_param(iupd: &str) -> Result<String, Problem> {
    validate_iupd(iupd).map_err(|e| Problem::field("iupd", e))?;
    Ok(iupd.to_string())
}

/// `GET .../debtpositions/{iupd}`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Read a debt position",
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
    let p = read_own(&state, &auth, &iupd).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionResponse::from(&p)))
}

/// Reads a position of the caller's organization: 404 when absent, 403 when it holds a notice
/// outside the caller's segregation codes.
pub(crate) async fn read_own(
    state: &AppState,
    auth: &OrgAuth,
    iupd: &str,
) -> Result<DebtPosition, Problem> {
    let org = auth.fiscal_code().clone();
    let key = iupd.to_string();
    let found = ledger(state, move |l| l.get(&org, &key)).await?;
    let p = found.ok_or_else(|| {
        Problem::not_found(format!(
            "no debt position {iupd:?} for organization {}",
            auth.fiscal_code()
        ))
    })?;
    auth.check_position(&p)?;
    Ok(p)
}

/// The delete rule of the organization: GPD's (any position without payments) when
/// `gpd_compat.delete_unpaid`, else mpay's (DRAFT only).
pub(crate) fn delete_action(org: &OrgContext) -> Action {
    if org.settings.gpd_compat.delete_unpaid {
        Action::DeleteUnpaid
    } else {
        Action::Delete
    }
}

fn day_param(name: &str, v: &Option<String>) -> Result<Option<NaiveDate>, Problem> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| Problem::field(name, format!("must be a date YYYY-MM-DD, got {s:?}"))),
    }
}

fn instant_param(name: &str, v: &Option<String>) -> Result<Option<chrono::DateTime<Utc>>, Problem> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_api_datetime(s).map(Some).map_err(|_| {
            Problem::field(
                name,
                format!(
                    "must be a date-time YYYY-MM-DDTHH:MM:SS (Europe/Rome) or RFC 3339, got {s:?}"
                ),
            )
        }),
    }
}

fn text_param(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GET .../debtpositions`: lists with filters and paging (GPD PaymentPositionsInfo).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions",
    summary = "List and search debt positions",
    description = "Lists the organization's positions, newest first, with paging. Find a position by debtor (`fiscalCode`), notice number (`nav`), `iuv`, `iupdPrefix` or `serviceCode`; filter by `status`, due and payment dates. An unknown parameter is refused (400 naming it).",
    params(("organizationfiscalcode" = String, Path), ListQuery),
    responses((status = 200, body = PaymentPositionsInfo), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("ApiKey" = [])),
    tag = "debt positions"
)]
pub async fn list(
    state: web::Data<AppState>,
    auth: OrgAuth,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, Problem> {
    let page = list_positions(&state, &auth, req.query_string()).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionsInfo {
        page_info: page_info(&page),
        payment_position_list: page
            .items
            .iter()
            .map(PaymentPositionResponse::from)
            .collect(),
    }))
}

/// GPD PageInfo of a page.
pub(crate) fn page_info<T>(page: &mpay_storage::Page<T>) -> PageInfo {
    PageInfo {
        page: page.page,
        limit: page.limit,
        items_found: page.items.len(),
        total_pages: page.total_items.div_ceil(page.limit.max(1)),
    }
}

/// One page of the organization's positions for a list query string (v1 and v3).
pub(crate) async fn list_positions(
    state: &AppState,
    auth: &OrgAuth,
    query: &str,
) -> Result<mpay_storage::Page<DebtPosition>, Problem> {
    let query = ListQuery::parse(query)?;
    let max = state.settings.api.max_page_limit;
    let limit = query.limit.unwrap_or(10.min(max));
    if limit == 0 || limit > max {
        return Err(Problem::field(
            "limit",
            format!("must be a whole number 1..{max}, got {limit}"),
        ));
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
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    let groups = [
        (
            "due_date_from/due_date_to",
            present(&query.due_date_from) || present(&query.due_date_to),
        ),
        (
            "payment_date_from/payment_date_to",
            present(&query.payment_date_from) || present(&query.payment_date_to),
        ),
        (
            "payment_date_time_from/payment_date_time_to",
            present(&query.payment_date_time_from) || present(&query.payment_date_time_to),
        ),
    ];
    let used: Vec<&str> = groups
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    if used.len() > 1 {
        return Err(Problem::field(
            used.join(", "),
            "these filters exclude each other (as in GPD): filter by due date, by payment date or by payment date-time, one group at a time",
        )
        .with_code("EXCLUSIVE_FILTERS"));
    }
    let due_from = day_param("due_date_from", &query.due_date_from)?;
    let due_to = day_param("due_date_to", &query.due_date_to)?;
    let paid_from = day_param("payment_date_from", &query.payment_date_from)?
        .and_then(|d| parse_api_datetime(&format!("{d}T00:00:00")).ok());
    let paid_to = day_param("payment_date_to", &query.payment_date_to)?
        .and_then(|d| parse_api_datetime(&d.to_string()).ok());
    let paid_from = instant_param("payment_date_time_from", &query.payment_date_time_from)?
        .into_iter()
        .chain(paid_from)
        .max();
    let paid_to = instant_param("payment_date_time_to", &query.payment_date_time_to)?
        .into_iter()
        .chain(paid_to)
        .min();
    let desc = match query.ordering.as_deref().unwrap_or("DESC") {
        "DESC" | "desc" => true,
        "ASC" | "asc" => false,
        other => {
            return Err(Problem::field(
                "ordering",
                format!("must be ASC or DESC, got {other:?}"),
            ))
        }
    };
    let (order, by) = match (query.orderby.as_deref().unwrap_or("INSERTED_DATE"), desc) {
        ("INSERTED_DATE", true) => (ListOrder::InsertedDesc, None),
        ("INSERTED_DATE", false) => (ListOrder::InsertedAsc, None),
        ("IUPD", true) => (ListOrder::IupdDesc, None),
        ("IUPD", false) => (ListOrder::IupdAsc, None),
        ("COMPANY_NAME", _) => (ListOrder::InsertedAsc, Some(SortBy::CompanyName)),
        ("STATUS", _) => (ListOrder::InsertedAsc, Some(SortBy::Status)),
        (other, _) => {
            return Err(Problem::field(
                "orderby",
                format!("must be INSERTED_DATE, IUPD, COMPANY_NAME or STATUS, got {other:?}"),
            ))
        }
    };
    let debtor_fiscal_code = text_param(&query.fiscal_code).map(|s| s.to_ascii_uppercase());
    let filter = PositionFilter {
        status,
        due_from,
        due_to,
        paid_from,
        paid_to,
        debtor_fiscal_code,
        notice_number: text_param(&query.nav),
        iuv: text_param(&query.iuv),
        iupd_prefix: text_param(&query.iupd_prefix),
        service_code: text_param(&query.service_code),
    };
    let org = auth.fiscal_code().clone();
    let page = match (by, auth.segregation_codes.clone()) {
        (None, None) => ledger(state, move |l| l.list(&org, &filter, order, page, limit)).await?,
        (by, codes) => {
            let all = ledger(state, move |l| l.list(&org, &filter, order, 0, usize::MAX)).await?;
            let mut items: Vec<DebtPosition> = all
                .items
                .into_iter()
                .filter(|p| {
                    codes.is_none() || p.payment_options.iter().all(|o| auth.allows(&o.nav))
                })
                .collect();
            match by {
                Some(SortBy::CompanyName) => {
                    items.sort_by(|a, b| a.company_name.cmp(&b.company_name))
                }
                Some(SortBy::Status) => {
                    items.sort_by(|a, b| a.status.as_str().cmp(b.status.as_str()))
                }
                None => {}
            }
            if by.is_some() && desc {
                items.reverse();
            }
            let total_items = items.len();
            mpay_storage::Page {
                items: items
                    .into_iter()
                    .skip(page.saturating_mul(limit))
                    .take(limit)
                    .collect(),
                page,
                limit,
                total_items,
            }
        }
    };
    Ok(page)
}

/// Orders the ledger does not keep (sorted here, stable over the insertion order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    CompanyName,
    Status,
}

/// `PUT .../debtpositions/{iupd}[?toPublish=true]`: replaces a position that has no payment
/// (DRAFT, PUBLISHED, VALID, EXPIRED). As in GPD it goes back to DRAFT unless `toPublish=true`.
/// Options without `nav`/`iuv` get new numbers.
#[utoipa::path(
    put,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Replace a debt position",
    description = "Replaces a position that has no payment (DRAFT, PUBLISHED, VALID, EXPIRED). As in GPD it goes back to DRAFT unless `toPublish=true`.",
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
    let model: PaymentPositionModel = decode(&body)?;
    let (updated, warnings) =
        update_position(&state, &auth, &path.1, model, flag.to_publish, |_| {}).await?;
    Ok(json_with_warnings(
        StatusCode::OK,
        &PaymentPositionResponse::from(&updated),
        &warnings,
    ))
}

/// Replaces a position (PUT): validated, checked against the change rule inside the
/// compare-and-swap, stored durably. Shared by v1, v3 and the v2 bulk update.
/// The checks of a replacement before anything is written: the iupd (`prefix` names the
/// model's place in a bulk body), the service, the model (400), the notices' segregation codes
/// (403), the position exists and is the caller's (404, 403). Answers the iupd and the draft.
pub(crate) async fn update_draft(
    state: &AppState,
    auth: &OrgAuth,
    iupd: &str,
    mut model: PaymentPositionModel,
    prefix: &str,
    shape: impl FnOnce(&mut Draft),
) -> Result<(String, Draft), Problem> {
    let iupd = iupd_param(iupd)?;
    if model.iupd.is_empty() {
        model.iupd = iupd.clone();
    }
    if model.iupd != iupd {
        return Err(Problem::field(
            format!("{prefix}iupd"),
            "must match the iupd in the path",
        ));
    }
    check_service(state, &auth.org, &model, prefix)?;
    let mut draft = to_domain(&model, &auth.org, prefix, Utc::now()).map_err(Problem::invalid)?;
    shape(&mut draft);
    check_draft(auth, &draft)?;
    read_own(state, auth, &iupd).await?;
    Ok((iupd, draft))
}

pub(crate) async fn update_position(
    state: &AppState,
    auth: &OrgAuth,
    iupd: &str,
    model: PaymentPositionModel,
    publish: bool,
    shape: impl FnOnce(&mut Draft),
) -> Result<(DebtPosition, Vec<FieldError>), Problem> {
    let (iupd, draft) = update_draft(state, auth, iupd, model, "", shape).await?;
    let warnings = draft.warnings.clone();
    let org = auth.org.clone();
    let store = state.store.clone();
    let updated = ledger(state, move |l| {
        let current = l
            .get(&org.fiscal_code, &iupd)?
            .ok_or(LedgerError::NotFound)?;
        may(&store, &current, Action::Update)?;
        let new = materialise(l, &org, draft, publish)?;
        l.modify(&org.fiscal_code, &iupd, &mut |p| {
            p.may(Action::Update)?;
            let (inserted, origin) = (p.inserted_date, p.origin.clone());
            *p = new.clone();
            p.inserted_date = inserted;
            p.origin = origin;
            Ok(())
        })
    })
    .await?;
    durable(state).await?;
    state.tell_position(PositionChange::Updated, &updated);
    Ok((updated, warnings))
}

/// `DELETE .../debtpositions/{iupd}`: removes a DRAFT position (409 otherwise: invalidate a
/// published one instead).
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Delete a debt position",
    description = "By default only a DRAFT position can be deleted (withdraw a published one with `invalidate`); an organization with `gpd_compat.delete_unpaid` deletes, as GPD, any position on which nothing was paid.",
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
    read_own(&state, &auth, &iupd).await?;
    let org = auth.fiscal_code().clone();
    let store = state.store.clone();
    let action = delete_action(&auth.org);
    let (org2, iupd2) = (org.clone(), iupd.clone());
    ledger(&state, move |l| {
        l.delete(&org, &iupd, &|p| may(&store, p, action))
    })
    .await?;
    durable(&state).await?;
    state.tell_position_id(PositionChange::Cancelled, org2.as_str(), &iupd2);
    Ok(HttpResponse::Ok().json("OK"))
}

/// `POST .../debtpositions/{iupd}/publish`: DRAFT → VALID (or PUBLISHED until `validityDate`).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/publish",
    summary = "Publish a debt position",
    description = "DRAFT → VALID (or PUBLISHED until its `validityDate`): from then on the Node can verify and pay its notices.",
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
    transition(state, auth, &path.1, Action::Publish).await
}

/// `POST .../debtpositions/{iupd}/invalidate`: PUBLISHED/VALID/EXPIRED → INVALID (cancelled;
/// the Node then gets PAA_PAGAMENTO_ANNULLATO).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/invalidate",
    summary = "Invalidate (cancel) a debt position",
    description = "PUBLISHED, VALID or EXPIRED → INVALID: the Node then answers PAA_PAGAMENTO_ANNULLATO for its notices.",
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
    transition(state, auth, &path.1, Action::Invalidate).await
}

/// Publish or invalidate: the domain's transition, checked and applied in one
/// compare-and-swap.
async fn transition(
    state: web::Data<AppState>,
    auth: OrgAuth,
    iupd: &str,
    action: Action,
) -> Result<HttpResponse, Problem> {
    let iupd = iupd_param(iupd)?;
    read_own(&state, &auth, &iupd).await?;
    let org = auth.fiscal_code().clone();
    let store = state.store.clone();
    let p = ledger(&state, move |l| {
        l.modify(&org, &iupd, &mut |p| {
            may(&store, p, action)?;
            let now = Utc::now();
            match action {
                Action::Publish => p.publish(now)?,
                Action::Invalidate => p.invalidate(now)?,
                Action::Update | Action::Delete | Action::DeleteUnpaid => p.may(action)?,
            }
            Ok(())
        })
    })
    .await?;
    durable(&state).await?;
    let change = match action {
        Action::Invalidate => PositionChange::Cancelled,
        _ => PositionChange::Updated,
    };
    state.tell_position(change, &p);
    Ok(HttpResponse::Ok().json(PaymentPositionResponse::from(&p)))
}
