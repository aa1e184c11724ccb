//! The rest of GPD's API beside the v1 debt positions (`positions.rs`) and v3 (`v3.rs`):
//!
//! - `GET /api/info` (GPD's health check: name, version, environment);
//! - by IUV (or notice number): `GET …/paymentoptions/{iuv}`, `GET …/paymentoptions/{iuv}/debtposition`;
//! - an option paid outside pagoPA (`POST …/paymentoptions/paids/{nav}`, and GPD's
//!   `POST …/paymentoptions/{iuv}/pay` with the payment's facts): for MPay users the "discarico"
//!   of a payment made at the Ente's counter;
//! - a transfer found in a reporting flow (`POST …/paymentoptions/{iuv}/transfers/{id}/report`);
//! - the notification fee (`PUT …/paymentoptions/{iuv}/notificationfee`);
//! - the mass IBAN change (`PATCH …/debtpositions/transfers?oldIban=`);
//! - the external v2 bulk API (`POST/PUT/DELETE /api/v2/organizations/{org}/debtpositions`);
//! - the EC-side payment-options API of SANP 3.9+
//!   (`POST /api/v1/payment-options/organizations/{org}/notices/{nav}`).
//!
//! Every rule is the domain's (`DebtPosition::pay_outside`, `report_transfer`,
//! `set_notification_fee`, `replace_iban`, `notice_status`, `may`).

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use mpay_messages::domain::{Action, NoticeStatus, PaymentFacts};
use mpay_messages::position::{DebtPosition, PaymentOption, PositionStatus};
use mpay_messages::time::parse_api_datetime;
use mpay_messages::{Amount, Iban, NoticeNumber};
use mpay_storage::{LedgerError, ListOrder, PositionFilter, PositionRepository};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::*;
use super::positions::{
    decode, delete_action, durable, ledger, materialise, may, read_own, update_draft, PublishFlag,
};
use crate::auth::OrgAuth;
use crate::problem::{FieldError, Problem};
use crate::state::{AppState, PositionChange};

/// Routes under `/api/v1/organizations/{organizationfiscalcode}/paymentoptions` and
/// `/api/v1/payment-options`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/paymentoptions")
            .route("/paids/{nav}", web::post().to(paid_outside))
            .route("/{iuv}", web::get().to(get_option))
            .route("/{iuv}/debtposition", web::get().to(get_position))
            .route("/{iuv}/pay", web::post().to(pay))
            .route("/{iuv}/notificationfee", web::put().to(notification_fee))
            .route(
                "/{iuv}/transfers/{idtransfer}/report",
                web::post().to(report),
            ),
    )
    .route(
        "/payment-options/organizations/{organizationfiscalcode}/notices/{noticenumber}",
        web::post().to(payment_options),
    );
}

/// `PATCH …/debtpositions/transfers` (GPD's IBAN change of every unpaid transfer). Registered
/// before the debt-positions scope (`lib.rs`), which would otherwise read `transfers` as an iupd.
pub fn configure_transfers(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organizations/{organizationfiscalcode}/debtpositions/transfers")
            .route(web::patch().to(change_iban))
            .default_service(web::to(super::positions::method_not_allowed)),
    );
}

/// Routes of the external v2 bulk API (`/api/v2`).
pub fn configure_v2(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organizations/{organizationfiscalcode}/debtpositions")
            .route(web::post().to(super::positions::create_bulk))
            .route(web::put().to(update_bulk))
            .route(web::delete().to(delete_bulk)),
    );
}

/// GPD AppInfo.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppInfo {
    /// Application.
    pub name: String,
    /// Version.
    pub version: String,
    /// This node's id.
    pub environment: String,
}

/// `GET /api/info`: name, version and node (GPD's health check; no key needed).
#[utoipa::path(get, path = "/api/info", summary = "Application info (GPD health check)",
    responses((status = 200, body = AppInfo)), tag = "GPD compatibility")]
pub async fn info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(AppInfo {
        name: "mpay".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        environment: state.settings.node.id.clone(),
    })
}

/// The position holding the option with IUV or notice number `key`, and the option's index.
async fn find(
    state: &AppState,
    auth: &OrgAuth,
    key: &str,
) -> Result<(DebtPosition, usize), Problem> {
    let k = key.trim().to_string();
    if k.is_empty() || k.len() > 35 || !k.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Problem::field("iuv", "must be an IUV or a notice number"));
    }
    let org = auth.fiscal_code().clone();
    let needle = k.clone();
    let free = auth.org.settings.gpd_compat.free_identifiers;
    let found = ledger(state, move |l| {
        let nav = if free {
            NoticeNumber::parse_gpd(&needle)
        } else {
            NoticeNumber::parse_unchecked(&needle)
        };
        if let Ok(nav) = nav {
            if let Some(p) = l.find_by_notice(&org, &nav)? {
                return Ok(Some(p));
            }
        }
        let filter = PositionFilter {
            iuv: Some(needle.clone()),
            ..Default::default()
        };
        Ok(l.list(&org, &filter, ListOrder::InsertedAsc, 0, 1)?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let p = found.ok_or_else(|| not_found(&k))?;
    let idx = p
        .payment_options
        .iter()
        .position(|o| o.iuv.as_str() == k || o.nav.as_str() == k)
        .ok_or_else(|| not_found(&k))?;
    auth.check_position(&p)?;
    Ok((p, idx))
}

fn not_found(k: &str) -> Problem {
    Problem::not_found(format!("no payment option with IUV or notice number {k}"))
}

/// A payment option with its position's identity (GPD PaymentsWithDebtorInfoModelResponse).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptionWithPosition {
    /// The option.
    #[serde(flatten)]
    pub option: PaymentOptionResponse,
    /// Its position.
    pub iupd: String,
    /// The position's status.
    pub debt_position_status: PositionStatus,
    /// Organization name.
    pub company_name: String,
    /// Debtor fiscal code.
    pub fiscal_code: String,
    /// Debtor name.
    pub full_name: String,
}

fn with_position(p: &DebtPosition, o: &PaymentOption) -> OptionWithPosition {
    OptionWithPosition {
        option: PaymentOptionResponse::of(p, o),
        iupd: p.iupd.clone(),
        debt_position_status: p.status,
        company_name: p.company_name.clone(),
        fiscal_code: p.debtor.fiscal_code.to_string(),
        full_name: p.debtor.full_name.clone(),
    }
}

/// `GET …/paymentoptions/{iuv}`: the option with that IUV or notice number; 404 also when the
/// option was set aside because another option or plan of its position was paid.
#[utoipa::path(get, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/{iuv}",
    summary = "Read a payment option by IUV or notice number",
    params(("organizationfiscalcode" = String, Path), ("iuv" = String, Path, description = "IUV or notice number")),
    responses((status = 200, body = OptionWithPosition), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn get_option(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (p, idx) = find(&state, &auth, &path.1).await?;
    let o = p
        .payment_options
        .get(idx)
        .ok_or_else(|| not_found(&path.1))?;
    if p.superseded(o) {
        return Err(Problem::not_found(format!(
            "payment option {} is no longer payable: another option or plan of position {:?} was paid",
            path.1, p.iupd
        )));
    }
    Ok(HttpResponse::Ok().json(with_position(&p, o)))
}

/// `GET …/paymentoptions/{iuv}/debtposition`: the position holding that IUV or notice number.
#[utoipa::path(get, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/{iuv}/debtposition",
    summary = "Read a debt position by IUV or notice number",
    params(("organizationfiscalcode" = String, Path), ("iuv" = String, Path)),
    responses((status = 200, body = PaymentPositionResponse), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn get_position(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (p, _) = find(&state, &auth, &path.1).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionResponse::from(&p)))
}

/// What the organization declares of a payment made outside pagoPA (GPD PaymentOptionModel of
/// `/pay`); every field is optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"paymentDate": "2027-03-10T08:23:52Z", "paymentMethod": "CONTANTI", "pspCompany": "Sportello comunale", "idReceipt": "SPORTELLO-2027-0001", "fee": 0}))]
pub struct PaidModel {
    /// When the citizen paid (date-time; default now).
    pub payment_date: Option<String>,
    /// How (e.g. cash at the counter).
    pub payment_method: Option<String>,
    /// Who collected it.
    pub psp_company: Option<String>,
    /// The organization's receipt number.
    pub id_receipt: Option<String>,
    /// Fee, cents.
    pub fee: Option<i64>,
}

impl PaidModel {
    fn facts(&self) -> Result<PaymentFacts, Problem> {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(|s| s.trim().chars().take(140).collect::<String>())
                .filter(|s| !s.is_empty())
        };
        let payment_date = match self.payment_date.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(
                parse_api_datetime(d).map_err(|e| Problem::field("paymentDate", e.to_string()))?,
            ),
        };
        let fee = match self.fee {
            None => None,
            Some(c) => Some(
                Amount::from_cents(c)
                    .map_err(|_| Problem::field("fee", "must be 0..99999999999 euro cents"))?,
            ),
        };
        Ok(PaymentFacts {
            payment_date,
            payment_method: text(&self.payment_method),
            psp_company: text(&self.psp_company),
            id_receipt: text(&self.id_receipt),
            fee,
        })
    }
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        decode(body)
    }
}

async fn mark_paid(
    state: &AppState,
    auth: &OrgAuth,
    key: &str,
    body: &[u8],
) -> Result<HttpResponse, Problem> {
    let model: PaidModel = body_or_default(body)?;
    let facts = model.facts()?;
    let (p, idx) = find(state, auth, key).await?;
    let nav = p
        .payment_options
        .get(idx)
        .map(|o| o.nav.to_string())
        .ok_or_else(|| not_found(key))?;
    let org = auth.fiscal_code().clone();
    let iupd = p.iupd.clone();
    let store = state.store.clone();
    let n = nav.clone();
    let result = web::block(move || {
        let l = store.ledger.clone();
        let mut refusal = None;
        let r = l.modify(&org, &iupd, &mut |p| {
            if p.origin == mpay_messages::position::Origin::ArchivioCarichi {
                return Err(mpay_messages::domain::PositionError::ManagedByArchive.into());
            }
            match p.pay_outside(&n, facts.clone(), Utc::now()) {
                Ok(()) => Ok(()),
                Err(e) => {
                    refusal = Some(e);
                    Err(LedgerError::Contended)
                }
            }
        });
        (r, refusal)
    })
    .await
    .map_err(Problem::internal)?;
    let updated = match result {
        (_, Some(e)) => {
            let status = match e {
                mpay_messages::domain::PaidOutsideError::UnknownNotice => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            return Err(
                Problem::new(status, "Not payable", e.to_string()).with_code("OPTION_NOT_PAYABLE")
            );
        }
        (r, None) => r.map_err(Problem::from)?,
    };
    durable(state).await?;
    state.tell_position(PositionChange::Updated, &updated);
    let o = updated
        .payment_options
        .iter()
        .find(|o| o.nav.as_str() == nav)
        .ok_or_else(|| not_found(key))?;
    Ok(HttpResponse::Ok().json(PaymentOptionResponse::of(&updated, o)))
}

/// `POST …/paymentoptions/paids/{nav}`: the option was paid outside pagoPA (e.g. at the
/// organization's counter: MPay's "discarico"); the position becomes PAID or PARTIALLY_PAID.
#[utoipa::path(post, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/paids/{nav}",
    summary = "Mark a payment option paid outside pagoPA",
    description = "Declares that the option was paid outside pagoPA (e.g. at the organization's counter). The body is optional. 409 when already paid, cancelled, or another option or plan was paid.",
    params(("organizationfiscalcode" = String, Path), ("nav" = String, Path, description = "notice number or IUV")),
    request_body(content = PaidModel, description = "optional"),
    responses((status = 200, body = PaymentOptionResponse), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn paid_outside(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    mark_paid(&state, &auth, &path.1, &body).await
}

/// `POST …/paymentoptions/{iuv}/pay`: GPD's payment call, here a payment declared by the
/// organization (as `paids/{nav}`); pagoPA payments arrive at the station as receipts.
#[utoipa::path(post, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/{iuv}/pay",
    summary = "Pay a payment option (declared by the organization)",
    params(("organizationfiscalcode" = String, Path), ("iuv" = String, Path, description = "IUV or notice number")),
    request_body = PaidModel,
    responses((status = 200, body = PaymentOptionResponse), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn pay(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    mark_paid(&state, &auth, &path.1, &body).await
}

/// Runs a domain change on the position holding `key` and answers the changed option.
async fn change_option<E: std::fmt::Display + Send + 'static>(
    state: &AppState,
    auth: &OrgAuth,
    key: &str,
    refuse: StatusCode,
    change: impl Fn(&mut DebtPosition, &str) -> Result<(), E> + Send + 'static,
) -> Result<HttpResponse, Problem> {
    let (p, idx) = find(state, auth, key).await?;
    let nav = p
        .payment_options
        .get(idx)
        .map(|o| o.nav.to_string())
        .ok_or_else(|| not_found(key))?;
    let org = auth.fiscal_code().clone();
    let iupd = p.iupd.clone();
    let store = state.store.clone();
    let n = nav.clone();
    let (r, refusal) = web::block(move || {
        let mut refusal = None;
        let r = store.ledger.modify(&org, &iupd, &mut |p| {
            change(p, &n).map_err(|e| {
                refusal = Some(e.to_string());
                LedgerError::Contended
            })
        });
        (r, refusal)
    })
    .await
    .map_err(Problem::internal)?;
    if let Some(reason) = refusal {
        return Err(Problem::new(refuse, "Refused", reason).with_code("OPTION_NOT_CHANGEABLE"));
    }
    let updated = r.map_err(Problem::from)?;
    durable(state).await?;
    state.tell_position(PositionChange::Updated, &updated);
    let o = updated
        .payment_options
        .iter()
        .find(|o| o.nav.as_str() == nav)
        .ok_or_else(|| not_found(key))?;
    Ok(HttpResponse::Ok().json(PaymentOptionResponse::of(&updated, o)))
}

/// `POST …/paymentoptions/{iuv}/transfers/{idtransfer}/report`: the transfer was found in a
/// reporting flow (the option becomes PO_REPORTED when all its transfers are, the position
/// REPORTED when all its paid options are).
#[utoipa::path(post, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/{iuv}/transfers/{idtransfer}/report",
    summary = "Mark a transfer reported",
    params(("organizationfiscalcode" = String, Path), ("iuv" = String, Path), ("idtransfer" = String, Path)),
    responses((status = 200, body = PaymentOptionResponse), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn report(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, Problem> {
    let id: u8 = path
        .2
        .trim()
        .parse()
        .map_err(|_| Problem::field("idtransfer", "must be 1..5"))?;
    change_option(
        &state,
        &auth,
        &path.1,
        StatusCode::CONFLICT,
        move |p, nav| p.report_transfer(nav, id, None, Utc::now()),
    )
    .await
}

/// `PUT …/notificationfee` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"notificationFee": 150}))]
pub struct NotificationFeeModel {
    /// Notification fee, cents (≥ 0).
    pub notification_fee: i64,
}

/// `PUT …/paymentoptions/{iuv}/notificationfee`: sets the notification fee; it is added to the
/// option's amount and to its first transfer to the organization.
#[utoipa::path(put, path = "/api/v1/organizations/{organizationfiscalcode}/paymentoptions/{iuv}/notificationfee",
    summary = "Set the notification fee of a payment option",
    params(("organizationfiscalcode" = String, Path), ("iuv" = String, Path)),
    request_body = NotificationFeeModel,
    responses((status = 200, body = PaymentOptionResponse), (status = 400, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn notification_fee(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let m: NotificationFeeModel = decode(&body)?;
    let fee = Amount::from_cents(m.notification_fee)
        .map_err(|_| Problem::field("notificationFee", "must be 0..99999999999 euro cents"))?;
    change_option(
        &state,
        &auth,
        &path.1,
        StatusCode::UNPROCESSABLE_ENTITY,
        move |p, nav| p.set_notification_fee(nav, fee, Utc::now()),
    )
    .await
}

/// `PATCH …/debtpositions/transfers` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"newIban": "IT47D0103002600000061234567"}))]
pub struct IbanChangeModel {
    /// The IBAN that replaces `oldIban`.
    pub new_iban: String,
}

/// Answer of the mass IBAN change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IbanChangeResponse {
    /// Transfers changed.
    pub updated_transfers: usize,
}

/// `PATCH …/debtpositions/transfers?oldIban=…[&limit=N]`: replaces the bank IBAN of every
/// transfer to the organization in positions that can still change (at most `limit`
/// positions, default 100).
#[utoipa::path(patch, path = "/api/v1/organizations/{organizationfiscalcode}/debtpositions/transfers",
    summary = "Replace an IBAN on the organization's transfers",
    params(("organizationfiscalcode" = String, Path), ("oldIban" = String, Query), ("limit" = Option<usize>, Query)),
    request_body = IbanChangeModel,
    responses((status = 200, body = IbanChangeResponse), (status = 400, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions")]
pub async fn change_iban(
    state: web::Data<AppState>,
    auth: OrgAuth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| Problem::from_query_error(&e.to_string()))?
        .into_inner();
    let mut old = None;
    let mut limit = 100usize;
    for (n, v) in pairs {
        match n.as_str() {
            "oldIban" => old = Some(v),
            "limit" => {
                limit = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| Problem::field("limit", "must be a whole number ≥ 1"))?
            }
            crate::auth::SEGREGATION_CODES_PARAMETER => {}
            other => {
                return Err(
                    Problem::field(other, "unknown query parameter; known: oldIban, limit")
                        .with_code("UNKNOWN_QUERY_PARAMETER"),
                )
            }
        }
    }
    let old = Iban::parse_unchecked(old.as_deref().unwrap_or(""))
        .map_err(|e| Problem::field("oldIban", e.to_string()))?;
    let m: IbanChangeModel = decode(&body)?;
    let loose = auth.org.settings.gpd_compat.iban_format_only;
    let new = if loose {
        Iban::parse_unchecked(&m.new_iban)
    } else {
        Iban::parse(&m.new_iban)
    }
    .map_err(|e| Problem::field("newIban", e.to_string()))?;
    if !loose && !auth.org.ibans.is_empty() && !auth.org.ibans.contains(&new) {
        return Err(Problem::field(
            "newIban",
            format!(
                "{new} is not registered for organization {}",
                auth.org.fiscal_code
            ),
        ));
    }
    let org = auth.fiscal_code().clone();
    let codes = auth.segregation_codes.clone();
    let allowed = move |p: &DebtPosition| match &codes {
        None => true,
        Some(c) => p.payment_options.iter().all(|o| match o.nav.layout() {
            mpay_messages::NoticeLayout::Aux3 { segregation_code } if o.nav.is_pagopa() => {
                c.contains(&segregation_code)
            }
            _ => false,
        }),
    };
    let store = state.store.clone();
    let org_cf = org.clone();
    let (updated, touched) = ledger(&state, move |l| {
        let all = l.list(
            &org,
            &PositionFilter::default(),
            ListOrder::InsertedAsc,
            0,
            usize::MAX,
        )?;
        let mut changed = 0;
        let mut positions = 0;
        let mut touched = Vec::new();
        for p in all.items.iter().filter(|p| allowed(p)) {
            if positions >= limit {
                break;
            }
            let mut probe = p.clone();
            if may(&store, p, Action::Update).is_err()
                || probe.replace_iban(&old, &new, Utc::now()) == 0
            {
                continue;
            }
            let mut n = 0;
            l.modify(&org, &p.iupd, &mut |q| {
                n = q.replace_iban(&old, &new, Utc::now());
                Ok(())
            })?;
            changed += n;
            positions += 1;
            touched.push(p.iupd.clone());
        }
        Ok((changed, touched))
    })
    .await?;
    durable(&state).await?;
    for iupd in &touched {
        state.tell_position_id(PositionChange::Updated, org_cf.as_str(), iupd);
    }
    Ok(HttpResponse::Ok().json(IbanChangeResponse {
        updated_transfers: updated,
    }))
}

/// `PUT /api/v2/…/debtpositions`: replaces several positions as one unit of work. Every one is
/// checked first (validation, existence, segregation codes, change rule), then all are written
/// in one storage transaction: if one cannot be written (e.g. its notice number is held by
/// another position, or it changed meanwhile), none is.
#[utoipa::path(put, path = "/api/v2/organizations/{organizationfiscalcode}/debtpositions",
    summary = "Replace several debt positions (all or nothing)",
    params(("organizationfiscalcode" = String, Path), PublishFlag),
    request_body = MultiplePaymentPositionModel,
    responses((status = 200, body = MultiplePaymentPositionResponse), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions")]
pub async fn update_bulk(
    state: web::Data<AppState>,
    auth: OrgAuth,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let model: MultiplePaymentPositionModel = decode(&body)?;
    check_count(&state, model.payment_positions.len(), "paymentPositions")?;
    let now = Utc::now();
    let mut errors: Vec<FieldError> = Vec::new();
    for (i, m) in model.payment_positions.iter().enumerate() {
        if let Err(e) = to_domain(m, &auth.org, &format!("paymentPositions[{i}]."), now) {
            errors.extend(e);
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let mut drafts = Vec::new();
    for (i, m) in model.payment_positions.into_iter().enumerate() {
        let iupd = m.iupd.clone();
        let prefix = format!("paymentPositions[{i}].");
        drafts.push(update_draft(&state, &auth, &iupd, m, &prefix, |_| {}).await?);
    }
    let org = auth.org.clone();
    let store = state.store.clone();
    let publish = flag.to_publish;
    let written = ledger(&state, move |l| {
        let mut iupds = Vec::with_capacity(drafts.len());
        // an iupd given twice keeps its last replacement
        let mut news = std::collections::HashMap::new();
        for (iupd, draft) in drafts {
            news.insert(iupd.clone(), materialise(l, &org, draft, publish)?);
            iupds.push(iupd);
        }
        l.change_many(&org.fiscal_code, &iupds, &|current| {
            may(&store, current, Action::Update)?;
            let mut new = news
                .get(&current.iupd)
                .cloned()
                .ok_or(LedgerError::NotFound)?;
            new.inserted_date = current.inserted_date;
            new.origin = current.origin.clone();
            Ok(Some(new))
        })
    })
    .await?;
    durable(&state).await?;
    for p in written.iter().flatten() {
        state.tell_position(PositionChange::Updated, p);
    }
    let out = written
        .iter()
        .flatten()
        .map(PaymentPositionResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(MultiplePaymentPositionResponse {
        payment_positions: out,
    }))
}

/// `DELETE /api/v2/…/debtpositions` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"paymentPositionIUPDs": ["TARI-2027-0101", "TARI-2027-0102"]}))]
pub struct MultipleIupdModel {
    /// The positions to delete.
    #[serde(rename = "paymentPositionIUPDs")]
    pub payment_position_iupds: Vec<String>,
}

fn check_count(state: &AppState, n: usize, field: &str) -> Result<(), Problem> {
    let limit = state.settings.api.bulk_limit;
    if n == 0 {
        return Err(Problem::field(field, "at least one position is required"));
    }
    if n > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many positions",
            format!("{field} holds {n} positions; at most {limit} per request"),
        ));
    }
    Ok(())
}

/// `DELETE /api/v2/…/debtpositions`: deletes several positions as one unit of work. Every one
/// is checked first (existence, segregation codes, delete rule), then all are deleted in one
/// storage transaction: if one cannot be deleted (e.g. it was paid meanwhile), none is.
#[utoipa::path(delete, path = "/api/v2/organizations/{organizationfiscalcode}/debtpositions",
    summary = "Delete several debt positions (all or nothing)",
    params(("organizationfiscalcode" = String, Path)),
    request_body = MultipleIupdModel,
    responses((status = 200, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions")]
pub async fn delete_bulk(
    state: web::Data<AppState>,
    auth: OrgAuth,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let model: MultipleIupdModel = decode(&body)?;
    check_count(
        &state,
        model.payment_position_iupds.len(),
        "paymentPositionIUPDs",
    )?;
    let action = delete_action(&auth.org);
    for iupd in &model.payment_position_iupds {
        let current = read_own(&state, &auth, iupd).await?;
        may(&state.store, &current, action).map_err(Problem::from)?;
    }
    let org = auth.fiscal_code().clone();
    let store = state.store.clone();
    let iupds = model.payment_position_iupds;
    let (org_cf, deleted) = (org.clone(), iupds.clone());
    ledger(&state, move |l| {
        l.change_many(&org, &iupds, &|current| {
            may(&store, current, action)?;
            Ok(None)
        })
    })
    .await?;
    durable(&state).await?;
    for iupd in &deleted {
        state.tell_position_id(PositionChange::Cancelled, org_cf.as_str(), iupd);
    }
    Ok(HttpResponse::Ok().json("OK"))
}

/// One installment of the payment-options answer (SANP 3.9 `Installment`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallmentOption {
    /// Notice number.
    pub nav: String,
    /// IUV.
    pub iuv: String,
    /// Amount, cents.
    pub amount: i64,
    /// Description.
    pub description: String,
    /// Due date.
    pub due_date: DateTime<Utc>,
    /// Payable from (null = now).
    pub valid_from: Option<DateTime<Utc>>,
    /// `POI_UNPAID`, `POI_PAID`, `POI_EXPIRED_NOT_PAYABLE`, `POI_EXPIRED_UNPAID`, `POI_INVALID`.
    pub status: String,
    /// Why (Italian, for the citizen).
    pub status_reason: Option<String>,
}

/// One payable alternative: the single solution or a plan (SANP 3.9 `PaymentOption`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionGroup {
    /// Description.
    pub description: Option<String>,
    /// Installments in it.
    pub number_of_installments: usize,
    /// Earliest due date.
    pub due_date: DateTime<Utc>,
    /// Payable from.
    pub valid_from: Option<DateTime<Utc>>,
    /// Total, cents.
    pub amount: i64,
    /// `PO_UNPAID`, `PO_PAID`, `PO_PARTIALLY_PAID`, `PO_EXPIRED_NOT_PAYABLE`, `PO_EXPIRED_UNPAID`, `PO_INVALID`.
    pub status: String,
    /// Why.
    pub status_reason: Option<String>,
    /// Every transfer goes to a postal account (`allCCP`).
    #[serde(rename = "allCCP")]
    pub all_ccp: bool,
    /// Its installments.
    pub installments: Vec<InstallmentOption>,
}

/// SANP 3.9 `PaymentOptionsResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionsResponse {
    /// Organization.
    pub organization_fiscal_code: String,
    /// Name.
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Payable in Stand-In.
    pub standin: bool,
    /// Alternatives, by ascending due date.
    pub payment_options: Vec<PaymentOptionGroup>,
}

fn status_name(s: NoticeStatus, prefix: &str) -> String {
    let n = match s {
        NoticeStatus::Unpaid => "UNPAID",
        NoticeStatus::Paid => "PAID",
        NoticeStatus::ExpiredNotPayable => "EXPIRED_NOT_PAYABLE",
        NoticeStatus::ExpiredUnpaid => "EXPIRED_UNPAID",
        NoticeStatus::Invalid => "INVALID",
    };
    format!("{prefix}_{n}")
}

fn reason_it(s: NoticeStatus) -> Option<String> {
    match s {
        NoticeStatus::Unpaid => None,
        NoticeStatus::Paid => Some("Pagato".into()),
        NoticeStatus::ExpiredNotPayable => Some("Scaduto: non più pagabile".into()),
        NoticeStatus::ExpiredUnpaid => Some("Scaduto: ancora pagabile".into()),
        NoticeStatus::Invalid => Some("Annullato, o pagata un'altra opzione".into()),
    }
}

/// The payment-options answer for the position holding a notice: the single solution(s) and
/// each plan, with the statuses of [`DebtPosition::notice_status`] (`drafts`: of
/// [`DebtPosition::notice_status_with_drafts`]).
pub fn payment_options_of(
    p: &DebtPosition,
    now: DateTime<Utc>,
    drafts: bool,
) -> PaymentOptionsResponse {
    let mut groups: Vec<(Option<String>, Vec<&PaymentOption>)> = Vec::new();
    for o in &p.payment_options {
        match o.plan_key() {
            None => groups.push((None, vec![o])),
            Some(k) => match groups.iter_mut().find(|(g, _)| g.as_deref() == Some(k)) {
                Some((_, v)) => v.push(o),
                None => groups.push((Some(k.to_string()), vec![o])),
            },
        }
    }
    let mut out: Vec<PaymentOptionGroup> = groups
        .into_iter()
        .map(|(plan, opts)| {
            let installments: Vec<InstallmentOption> = opts
                .iter()
                .map(|o| {
                    let st =
                        status_of(p, o.nav.as_str(), now, drafts).unwrap_or(NoticeStatus::Invalid);
                    InstallmentOption {
                        nav: o.nav.to_string(),
                        iuv: o.iuv.to_string(),
                        amount: o.amount.cents(),
                        description: o.description.clone(),
                        due_date: o.due_date,
                        valid_from: p.validity_date,
                        status: status_name(st, "POI"),
                        status_reason: reason_it(st),
                    }
                })
                .collect();
            let statuses: Vec<NoticeStatus> = opts
                .iter()
                .map(|o| status_of(p, o.nav.as_str(), now, drafts).unwrap_or(NoticeStatus::Invalid))
                .collect();
            let paid = statuses
                .iter()
                .filter(|s| **s == NoticeStatus::Paid)
                .count();
            let status = if paid == statuses.len() {
                "PO_PAID".to_string()
            } else if paid > 0 {
                "PO_PARTIALLY_PAID".to_string()
            } else {
                statuses
                    .iter()
                    .find(|s| **s != NoticeStatus::Paid)
                    .map(|s| status_name(*s, "PO"))
                    .unwrap_or_else(|| "PO_UNPAID".into())
            };
            let n = opts.len();
            let first = opts.first();
            let description = first
                .and_then(|o| o.details.plan_description.clone())
                .or_else(|| {
                    if plan.is_none() {
                        Some("Pagamento in un'unica soluzione".to_string())
                    } else {
                        Some(format!("Piano rateale ({n} rate)"))
                    }
                });
            PaymentOptionGroup {
                description,
                number_of_installments: n,
                due_date: opts.iter().map(|o| o.due_date).min().unwrap_or(now),
                valid_from: p.validity_date,
                amount: opts.iter().map(|o| o.amount.cents()).sum(),
                status_reason: None,
                status,
                all_ccp: opts.iter().all(|o| {
                    o.transfers.iter().all(|t| {
                        matches!(
                            t.destination,
                            mpay_messages::position::Destination::PostalIban { .. }
                        )
                    })
                }),
                installments,
            }
        })
        .collect();
    out.sort_by_key(|g| g.due_date);
    PaymentOptionsResponse {
        organization_fiscal_code: p.organization_fiscal_code.to_string(),
        company_name: p.company_name.clone(),
        office_name: p.office_name.clone(),
        standin: p.pay_stand_in,
        payment_options: out,
    }
}

/// `POST /api/v1/payment-options/organizations/{org}/notices/{nav}` (SANP 3.9+): every
/// alternative of the notice's position (single solution, plans) with its status. 400 for a
/// notice number that is not digits, 404 when no published position holds it.
#[utoipa::path(post, path = "/api/v1/payment-options/organizations/{organizationfiscalcode}/notices/{noticenumber}",
    summary = "Payment options of a notice",
    params(("organizationfiscalcode" = String, Path), ("noticenumber" = String, Path)),
    responses((status = 200, body = PaymentOptionsResponse), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)),
    security(("ApiKey" = [])), tag = "payment options")]
pub async fn payment_options(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match payment_options_answer(&state, &req).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(p) => error_response(&p),
    }
}

/// The payment-options API's error body (SANP 3.9 `ErrorResponse`, `application/json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// HTTP status.
    pub http_status_code: u16,
    /// Its reason phrase.
    pub http_status_description: String,
    /// What went wrong.
    pub error_message: String,
    /// Stable code (`ODP-` + mpay's problem code).
    pub app_error_code: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// UTC date-time.
    pub date_time: String,
}

/// Maps a problem to this edge's error body (the one table of the payment-options API).
fn error_response(p: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let now = Utc::now();
    let message = match p.errors.first() {
        Some(f) => format!("{}: {}", f.field, f.message),
        None => p.detail.clone(),
    };
    HttpResponse::build(status).json(ErrorResponse {
        http_status_code: p.status,
        http_status_description: status.canonical_reason().unwrap_or("Error").to_string(),
        error_message: message,
        app_error_code: format!("ODP-{}", p.code),
        timestamp: now.timestamp(),
        date_time: now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    })
}

async fn payment_options_answer(
    state: &AppState,
    req: &HttpRequest,
) -> Result<PaymentOptionsResponse, Problem> {
    let nav_in = req
        .match_info()
        .get("noticenumber")
        .unwrap_or("")
        .to_string();
    if nav_in.is_empty() || !nav_in.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::field(
            "notice-number",
            format!("must be a notice number (18 digits), got {nav_in:?}"),
        ));
    }
    let org_in = req.match_info().get("organizationfiscalcode").unwrap_or("");
    let auth = match OrgAuth::extract(req).await {
        // a valid key asking about an organization this platform does not serve: no notice
        // of it can exist here (no tenant's data is involved)
        Err(p) if p.status == 403 && !state.orgs.contains_key(org_in) => {
            return Err(Problem::not_found(format!(
                "no notice {nav_in}: organization {org_in} is not served by this platform"
            )))
        }
        other => other?,
    };
    let not_found = || {
        Problem::not_found(format!(
            "no notice {nav_in} for organization {}",
            auth.fiscal_code()
        ))
    };
    let compat = &auth.org.settings.gpd_compat;
    let nav = if compat.free_identifiers {
        NoticeNumber::parse_gpd(&nav_in)
    } else {
        NoticeNumber::parse_unchecked(&nav_in)
    }
    .map_err(|_| not_found())?;
    let org = auth.fiscal_code().clone();
    let n = nav.clone();
    let p = ledger(state, move |l| l.find_by_notice(&org, &n))
        .await?
        .ok_or_else(not_found)?;
    auth.check_position(&p)?;
    let drafts = compat.draft_payment_options;
    if status_of(&p, nav.as_str(), Utc::now(), drafts).is_none() {
        return Err(not_found());
    }
    Ok(payment_options_of(&p, Utc::now(), drafts))
}

/// [`DebtPosition::notice_status`], or with DRAFT positions shown
/// ([`DebtPosition::notice_status_with_drafts`], `gpd_compat.draft_payment_options`).
fn status_of(
    p: &DebtPosition,
    nav: &str,
    now: DateTime<Utc>,
    drafts: bool,
) -> Option<NoticeStatus> {
    if drafts {
        p.notice_status_with_drafts(nav, now)
    } else {
        p.notice_status(nav, now)
    }
}
