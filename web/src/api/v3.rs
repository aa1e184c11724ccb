//! GPD's v3 debt positions (`/api/v3/organizations/{organizationfiscalcode}/debtpositions`,
//! `gpd_v3.json`): the same positions as v1, another representation. A v3 `paymentOption` is a
//! plan (several installments) or a single solution (one installment); its debtor, validity and
//! `switchToExpired` are the position's (the first option's are kept). Installments are stored
//! as v1 options with their plan in `details.plan`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use mpay_messages::position::{DebtPosition, DebtorType, PositionStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::*;
use super::positions::{
    create_position, decode, delete_action, durable, ledger, list_positions, may, page_info,
    read_own, update_position, ListQuery, PublishFlag,
};
use super::warnings::json_with_warnings;
use crate::auth::OrgAuth;
use crate::problem::Problem;
use crate::state::{AppState, PositionChange};

/// Routes of this module (under `/api/v3`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/organizations/{organizationfiscalcode}/debtpositions")
            .service(
                web::resource("")
                    .route(web::post().to(create))
                    .route(web::get().to(list)),
            )
            .service(
                web::resource("/{iupd}")
                    .route(web::get().to(get))
                    .route(web::put().to(update))
                    .route(web::delete().to(delete)),
            )
            .route("/{iupd}/publish", web::post().to(publish))
            .route("/{iupd}/invalidate", web::post().to(invalidate)),
    );
}

/// The debtor of a v3 payment option (GPD DebtorModel).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebtorModel {
    /// `F` natural person, `G` legal person.
    #[serde(rename = "type")]
    #[schema(example = "F")]
    pub kind: String,
    /// Fiscal code.
    #[schema(example = "RSSMRA80A01H501U")]
    pub fiscal_code: String,
    /// Name.
    #[schema(example = "Mario Rossi")]
    pub full_name: String,
    /// Street.
    pub street_name: Option<String>,
    /// Civic number.
    pub civic_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
}

/// One installment (GPD InstallmentModel).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallmentModel {
    /// Notice number: ignored (it is the aux digit + IUV), except for an organization with
    /// `gpd_compat.free_identifiers`, where GPD's looser notice numbers are kept as sent.
    pub nav: Option<String>,
    /// IUV; omit it to have the notice number generated.
    #[schema(example = "12000000000000123")]
    pub iuv: Option<String>,
    /// Amount, cents; the sum of the transfers.
    #[schema(example = 12050)]
    pub amount: i64,
    /// Description.
    pub description: String,
    /// Due date.
    #[schema(example = "2027-06-30T23:59:59")]
    pub due_date: String,
    /// Transfers, 1..5.
    #[serde(default)]
    pub transfer: Vec<TransferModel>,
    /// Metadata.
    #[serde(default)]
    pub installment_metadata: Vec<MapEntryModel>,
}

/// One v3 payment option: a single solution (one installment) or a plan (GPD PaymentOptionModelV3).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionModelV3 {
    /// Description of the alternative (e.g. "Piano rateale A").
    pub description: Option<String>,
    /// Payable from (date-time).
    pub validity_date: Option<String>,
    /// Retention date.
    pub retention_date: Option<String>,
    /// Expire after the last due date.
    #[serde(default)]
    pub switch_to_expired: bool,
    /// Debtor.
    pub debtor: DebtorModel,
    /// Installments, 1..100.
    #[serde(default)]
    pub installments: Vec<InstallmentModel>,
}

/// A v3 debt position (GPD PaymentPositionModelV3).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "iupd": "TARI-2027-0201",
    "companyName": "Comune di Borgo Demo",
    "paymentOption": [{
        "description": "Piano rateale (2 rate)",
        "switchToExpired": false,
        "debtor": {"type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi"},
        "installments": [
            {"amount": 6000, "description": "Rata 1", "dueDate": "2027-06-30",
             "transfer": [{"idTransfer": "1", "amount": 6000, "remittanceInformation": "TARI 2027 rata 1",
                           "category": "9/0101108TS/", "iban": "IT47D0103002600000061234567"}]},
            {"amount": 6050, "description": "Rata 2", "dueDate": "2027-09-30",
             "transfer": [{"idTransfer": "1", "amount": 6050, "remittanceInformation": "TARI 2027 rata 2",
                           "category": "9/0101108TS/", "iban": "IT47D0103002600000061234567"}]}
        ]
    }]
}))]
pub struct PaymentPositionModelV3 {
    /// Position id.
    pub iupd: String,
    /// Organization name.
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Payable during Stand-In.
    pub pay_stand_in: Option<bool>,
    /// Service code of the catalogue.
    pub service_code: Option<String>,
    /// Alternatives: single solutions and plans.
    #[serde(default)]
    pub payment_option: Vec<PaymentOptionModelV3>,
}

/// The plan of one v1 option (`None` for a single solution) and the plan's description.
type PlanOf = (Option<String>, Option<String>);

impl PaymentPositionModelV3 {
    /// The v1 model of the same position and, per v1 option, its plan (index + 1 of the v3
    /// option, for installments) and the plan's description. `keep_nav`: the installments'
    /// `nav` is kept (`gpd_compat.free_identifiers`), else dropped.
    fn to_v1(&self, keep_nav: bool) -> (PaymentPositionModel, Vec<PlanOf>) {
        let first = self.payment_option.first();
        let debtor = first.map(|o| o.debtor.clone());
        let mut options = Vec::new();
        let mut plans = Vec::new();
        for (i, g) in self.payment_option.iter().enumerate() {
            let partial = g.installments.len() > 1;
            for inst in &g.installments {
                options.push(PaymentOptionModel {
                    nav: inst.nav.clone().filter(|_| keep_nav),
                    iuv: inst.iuv.clone(),
                    amount: inst.amount,
                    description: inst.description.clone(),
                    is_partial_payment: partial,
                    due_date: inst.due_date.clone(),
                    retention_date: g.retention_date.clone(),
                    transfer: inst.transfer.clone(),
                    payment_option_metadata: inst.installment_metadata.clone(),
                });
                plans.push((partial.then(|| (i + 1).to_string()), g.description.clone()));
            }
        }
        let d = |f: fn(&DebtorModel) -> Option<String>| debtor.as_ref().and_then(f);
        (
            PaymentPositionModel {
                iupd: self.iupd.clone(),
                kind: debtor.as_ref().map(|d| d.kind.clone()).unwrap_or_default(),
                pay_stand_in: self.pay_stand_in,
                fiscal_code: debtor
                    .as_ref()
                    .map(|d| d.fiscal_code.clone())
                    .unwrap_or_default(),
                full_name: debtor
                    .as_ref()
                    .map(|d| d.full_name.clone())
                    .unwrap_or_default(),
                street_name: d(|d| d.street_name.clone()),
                civic_number: d(|d| d.civic_number.clone()),
                postal_code: d(|d| d.postal_code.clone()),
                city: d(|d| d.city.clone()),
                province: d(|d| d.province.clone()),
                region: d(|d| d.region.clone()),
                country: d(|d| d.country.clone()),
                email: d(|d| d.email.clone()),
                phone: d(|d| d.phone.clone()),
                switch_to_expired: self.payment_option.iter().any(|o| o.switch_to_expired),
                company_name: self.company_name.clone(),
                office_name: self.office_name.clone(),
                validity_date: first.and_then(|o| o.validity_date.clone()),
                service_code: self.service_code.clone(),
                payment_option: options,
            },
            plans,
        )
    }
}

/// A v3 payment option as answered: its installments are the stored options.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOptionResponseV3 {
    /// Description of the alternative.
    pub description: Option<String>,
    /// Payable from.
    pub validity_date: Option<DateTime<Utc>>,
    /// Retention date.
    pub retention_date: Option<DateTime<Utc>>,
    /// Expires after the last due date.
    pub switch_to_expired: bool,
    /// Debtor.
    pub debtor: DebtorModel,
    /// Installments.
    pub installments: Vec<PaymentOptionResponse>,
}

/// A v3 debt position as answered (GPD PaymentPositionModelResponseV3).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPositionResponseV3 {
    /// Position id.
    pub iupd: String,
    /// Organization.
    pub organization_fiscal_code: String,
    /// Organization name.
    pub company_name: String,
    /// Office.
    pub office_name: Option<String>,
    /// Payable in Stand-In.
    pub pay_stand_in: bool,
    /// Service code.
    pub service_code: Option<String>,
    /// Created.
    pub inserted_date: DateTime<Utc>,
    /// Published.
    pub publish_date: Option<DateTime<Utc>>,
    /// Paid.
    pub payment_date: Option<DateTime<Utc>>,
    /// Last change.
    pub last_updated_date: DateTime<Utc>,
    /// Status.
    pub status: PositionStatus,
    /// Alternatives.
    pub payment_option: Vec<PaymentOptionResponseV3>,
}

impl From<&DebtPosition> for PaymentPositionResponseV3 {
    fn from(p: &DebtPosition) -> Self {
        let debtor = DebtorModel {
            kind: match p.debtor.kind {
                DebtorType::F => "F".into(),
                DebtorType::G => "G".into(),
            },
            fiscal_code: p.debtor.fiscal_code.to_string(),
            full_name: p.debtor.full_name.clone(),
            street_name: p.debtor.street_name.clone(),
            civic_number: p.debtor.civic_number.clone(),
            postal_code: p.debtor.postal_code.clone(),
            city: p.debtor.city.clone(),
            province: p.debtor.province.clone(),
            region: p.debtor.region.clone(),
            country: p.debtor.country.clone(),
            email: p.debtor.email.clone(),
            phone: p.debtor.phone.clone(),
        };
        let mut groups: Vec<(Option<String>, PaymentOptionResponseV3)> = Vec::new();
        for o in &p.payment_options {
            let key = o.plan_key().map(str::to_string);
            let inst = PaymentOptionResponse::of(p, o);
            match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
                Some((_, g)) => g.installments.push(inst),
                None => groups.push((
                    key,
                    PaymentOptionResponseV3 {
                        description: o.details.plan_description.clone(),
                        validity_date: p.validity_date,
                        retention_date: o.retention_date,
                        switch_to_expired: p.switch_to_expired,
                        debtor: debtor.clone(),
                        installments: vec![inst],
                    },
                )),
            }
        }
        PaymentPositionResponseV3 {
            iupd: p.iupd.clone(),
            organization_fiscal_code: p.organization_fiscal_code.to_string(),
            company_name: p.company_name.clone(),
            office_name: p.office_name.clone(),
            pay_stand_in: p.pay_stand_in,
            service_code: p.service_code.clone(),
            inserted_date: p.inserted_date,
            publish_date: p.publish_date,
            payment_date: p.payment_date,
            last_updated_date: p.last_updated_date,
            status: p.status,
            payment_option: groups.into_iter().map(|(_, g)| g).collect(),
        }
    }
}

/// v3 list answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentPositionsInfoV3 {
    /// The page.
    pub payment_position_list: Vec<PaymentPositionResponseV3>,
    /// Paging.
    pub page_info: PageInfo,
}

fn shape(plans: Vec<PlanOf>) -> impl FnOnce(&mut Draft) {
    move |d: &mut Draft| {
        for (o, (plan, description)) in d.options.iter_mut().zip(plans) {
            o.details.plan = plan;
            o.details.plan_description = description;
        }
    }
}

/// `POST /api/v3/…/debtpositions[?toPublish=true]`.
#[utoipa::path(post, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions",
    summary = "Create a debt position (v3)",
    description = "The v3 representation of the v1 create: `paymentOption` lists alternatives, each a single solution (one installment) or a plan (several).",
    params(("organizationfiscalcode" = String, Path), PublishFlag),
    request_body = PaymentPositionModelV3,
    responses((status = 201, body = PaymentPositionResponseV3), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn create(
    state: web::Data<AppState>,
    auth: OrgAuth,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let m: PaymentPositionModelV3 = decode(&body)?;
    let (v1, plans) = m.to_v1(auth.org.settings.gpd_compat.free_identifiers);
    let (p, warnings) = create_position(&state, &auth, &v1, flag.to_publish, shape(plans)).await?;
    Ok(json_with_warnings(
        StatusCode::CREATED,
        &PaymentPositionResponseV3::from(&p),
        &warnings,
    ))
}

/// `PUT /api/v3/…/debtpositions/{iupd}[?toPublish=true]`.
#[utoipa::path(put, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Replace a debt position (v3)",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path), PublishFlag),
    request_body = PaymentPositionModelV3,
    responses((status = 200, body = PaymentPositionResponseV3), (status = 400, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn update(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
    flag: web::Query<PublishFlag>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let m: PaymentPositionModelV3 = decode(&body)?;
    let (v1, plans) = m.to_v1(auth.org.settings.gpd_compat.free_identifiers);
    let (p, warnings) =
        update_position(&state, &auth, &path.1, v1, flag.to_publish, shape(plans)).await?;
    Ok(json_with_warnings(
        StatusCode::OK,
        &PaymentPositionResponseV3::from(&p),
        &warnings,
    ))
}

/// `GET /api/v3/…/debtpositions/{iupd}`.
#[utoipa::path(get, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Read a debt position (v3)",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponseV3), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn get(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let p = read_own(&state, &auth, &path.1).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionResponseV3::from(&p)))
}

/// `GET /api/v3/…/debtpositions`: the v1 list's filters and paging.
#[utoipa::path(get, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions",
    summary = "List debt positions (v3)",
    params(("organizationfiscalcode" = String, Path), ListQuery),
    responses((status = 200, body = PaymentPositionsInfoV3), (status = 400, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn list(
    state: web::Data<AppState>,
    auth: OrgAuth,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, Problem> {
    let page = list_positions(&state, &auth, req.query_string()).await?;
    Ok(HttpResponse::Ok().json(PaymentPositionsInfoV3 {
        page_info: page_info(&page),
        payment_position_list: page
            .items
            .iter()
            .map(PaymentPositionResponseV3::from)
            .collect(),
    }))
}

/// `DELETE /api/v3/…/debtpositions/{iupd}` (the organization's delete rule, as v1).
#[utoipa::path(delete, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions/{iupd}",
    summary = "Delete a debt position (v3)",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn delete(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let iupd = super::positions::iupd_param(&path.1)?;
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

async fn transition(
    state: &AppState,
    auth: &OrgAuth,
    iupd: &str,
    publish: bool,
) -> Result<HttpResponse, Problem> {
    let iupd = super::positions::iupd_param(iupd)?;
    read_own(state, auth, &iupd).await?;
    let org = auth.fiscal_code().clone();
    let store = state.store.clone();
    let p = ledger(state, move |l| {
        l.modify(&org, &iupd, &mut |p| {
            let now = Utc::now();
            if publish {
                may(&store, p, mpay_messages::domain::Action::Publish)?;
                p.publish(now)?;
            } else {
                may(&store, p, mpay_messages::domain::Action::Invalidate)?;
                p.invalidate(now)?;
            }
            Ok(())
        })
    })
    .await?;
    durable(state).await?;
    let change = if publish {
        PositionChange::Updated
    } else {
        PositionChange::Cancelled
    };
    state.tell_position(change, &p);
    Ok(HttpResponse::Ok().json(PaymentPositionResponseV3::from(&p)))
}

/// `POST /api/v3/…/debtpositions/{iupd}/publish`.
#[utoipa::path(post, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions/{iupd}/publish",
    summary = "Publish a debt position (v3)",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponseV3), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn publish(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    transition(&state, &auth, &path.1, true).await
}

/// `POST /api/v3/…/debtpositions/{iupd}/invalidate`.
#[utoipa::path(post, path = "/api/v3/organizations/{organizationfiscalcode}/debtpositions/{iupd}/invalidate",
    summary = "Invalidate a debt position (v3)",
    params(("organizationfiscalcode" = String, Path), ("iupd" = String, Path)),
    responses((status = 200, body = PaymentPositionResponseV3), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("ApiKey" = [])), tag = "debt positions v3")]
pub async fn invalidate(
    state: web::Data<AppState>,
    auth: OrgAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    transition(&state, &auth, &path.1, false).await
}
