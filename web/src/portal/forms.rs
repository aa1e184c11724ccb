//! Spontaneous payments (MPay L1) and the `extern.do` deep link (MPay L2.1, INTERFACES §2).
//!
//! A service's form has the fields every spontaneous payment needs (amount, reference date,
//! debtor fiscal code and name, causale) plus the service's own (`[[services.fields]]`). It is
//! validated here, server-side; on success the position is created as a DRAFT with a fresh
//! notice number, added to the cart, then published — if the cart refuses it the draft is
//! deleted, so nothing is half-created.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDate, Utc};
use minijinja::context;
use mpay_actors::cart::AddItem;
use mpay_config::portal::FieldKind;
use mpay_config::{AmountRule, ServiceSettings};
use mpay_messages::domain::cart::{format_amount_it, parse_amount_it, CartItem};
use mpay_messages::position::{DebtPosition, Debtor, MapEntry, Origin, PaymentOption, Transfer};
use mpay_messages::{Amount, FiscalCode};
use mpay_storage::{LedgerError, PositionRepository};
use serde::Serialize;

use super::pages::{csrf_refused, current_cart};
use super::{csrf, csrf_ok, error_page, respond, see_other, Page, Portal};
use crate::AppState;

#[derive(Serialize, Clone)]
struct FieldView {
    key: String,
    label: String,
    kind: &'static str,
    value: String,
    error: Option<String>,
    hint: Option<String>,
    required: bool,
    readonly: bool,
    max_length: usize,
}

fn field(key: &str, label: &str, kind: &'static str, max_length: usize) -> FieldView {
    FieldView {
        key: key.into(),
        label: label.into(),
        kind,
        value: String::new(),
        error: None,
        hint: None,
        required: true,
        readonly: false,
        max_length,
    }
}

/// The form's fields, with `values` filled in.
fn fields_of(service: &ServiceSettings, values: &HashMap<String, String>) -> Vec<FieldView> {
    let mut amount = field("importo", "Importo in euro", "amount", 15);
    match service.amount {
        AmountRule::Fixed { cents } => {
            amount.readonly = true;
            amount.value = format_amount_it(cents);
            amount.hint = Some("Importo fisso del servizio.".into());
        }
        AmountRule::Range {
            min_cents,
            max_cents,
        } => {
            amount.hint = Some(format!(
                "Da {} a {} euro; usa la virgola per i decimali.",
                format_amount_it(min_cents),
                format_amount_it(max_cents)
            ))
        }
        AmountRule::Free => {
            amount.hint = Some("Usa la virgola per i decimali (esempio: 15,32).".into())
        }
    }
    let mut out = vec![
        amount,
        field("data", "Data di riferimento", "date", 10),
        field(
            "codice_fiscale",
            "Codice fiscale o partita IVA di chi deve pagare",
            "text",
            16,
        ),
        field("nominativo", "Nome e cognome o ragione sociale", "text", 70),
        field("causale", "Causale", "text", 140),
    ];
    for f in &service.fields {
        let mut v = field(
            &f.key,
            &f.label,
            match f.kind {
                FieldKind::Text => "text",
                FieldKind::Number => "number",
                FieldKind::Date => "date",
            },
            f.max_length,
        );
        v.required = f.required;
        out.push(v);
    }
    for f in &mut out {
        if !f.readonly {
            if let Some(v) = values.get(&f.key) {
                f.value = v.clone();
            }
        }
    }
    out
}

/// What a valid form says.
struct Valid {
    amount: Amount,
    date: NaiveDate,
    debtor: FiscalCode,
    name: String,
    causale: String,
    extra: Vec<MapEntry>,
}

/// Validates every field, writing the Italian message next to each wrong one.
fn validate(service: &ServiceSettings, fields: &mut [FieldView]) -> Option<Valid> {
    let mut ok = true;
    let mut amount = None;
    let mut date = None;
    let mut debtor = None;
    let mut extra = Vec::new();
    let (mut name, mut causale) = (String::new(), String::new());
    for f in fields.iter_mut() {
        let v = f.value.trim().to_string();
        let err: Option<String> = if v.is_empty() && f.required {
            Some("Campo obbligatorio.".into())
        } else if v.chars().count() > f.max_length {
            Some(format!("Al massimo {} caratteri.", f.max_length))
        } else {
            match f.key.as_str() {
                "importo" => match service.amount {
                    AmountRule::Fixed { cents } => {
                        amount = Amount::from_cents(cents).ok();
                        None
                    }
                    ref rule => match parse_amount_it(&v) {
                        Err(e) => Some(e.message_it().to_string()),
                        Ok(c) => match rule {
                            AmountRule::Range {
                                min_cents,
                                max_cents,
                            } if c < *min_cents || c > *max_cents => Some(format!(
                                "L'importo deve essere tra {} e {} euro.",
                                format_amount_it(*min_cents),
                                format_amount_it(*max_cents)
                            )),
                            _ => {
                                amount = Amount::from_cents(c).ok();
                                None
                            }
                        },
                    },
                },
                "data" => match NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                    .or_else(|_| NaiveDate::parse_from_str(&v, "%d/%m/%Y"))
                {
                    Ok(d) => {
                        date = Some(d);
                        None
                    }
                    Err(_) => Some("Data non valida (esempio: 31/12/2027).".into()),
                },
                "codice_fiscale" => match FiscalCode::parse(&v.to_ascii_uppercase()) {
                    Ok(FiscalCode::Anonymous) | Err(_) => Some(
                        "Codice fiscale non valido: controlla i 16 caratteri (o le 11 cifre della partita IVA); il carattere di controllo non corrisponde.".into(),
                    ),
                    Ok(fc) => {
                        debtor = Some(fc);
                        None
                    }
                },
                "nominativo" => {
                    name = v.clone();
                    None
                }
                "causale" => {
                    causale = v.clone();
                    None
                }
                _ => {
                    let bad = match () {
                        _ if v.is_empty() => None,
                        _ if f.kind == "number" && !v.bytes().all(|b| b.is_ascii_digit()) => {
                            Some("Solo cifre.".to_string())
                        }
                        _ if f.kind == "date" && NaiveDate::parse_from_str(&v, "%Y-%m-%d").is_err() => {
                            Some("Data non valida (esempio: 31/12/2027).".to_string())
                        }
                        _ => None,
                    };
                    if bad.is_none() && !v.is_empty() {
                        extra.push(MapEntry {
                            key: f.key.clone(),
                            value: v.clone(),
                        });
                    }
                    bad
                }
            }
        };
        if err.is_some() {
            ok = false;
        }
        f.error = err;
    }
    if !ok {
        return None;
    }
    Some(Valid {
        amount: amount?,
        date: date?,
        debtor: debtor?,
        name,
        causale,
        extra,
    })
}

fn find_service<'a>(state: &'a AppState, org: &str, code: &str) -> Option<&'a ServiceSettings> {
    state
        .settings
        .services
        .iter()
        .find(|s| s.organization == org && s.code.eq_ignore_ascii_case(code) && s.spontaneous)
}

#[allow(clippy::too_many_arguments)] // one page, its parts
fn render_form(
    portal: &Portal,
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    org: &str,
    service: &ServiceSettings,
    fields: Vec<FieldView>,
    error: Option<String>,
) -> HttpResponse {
    let (token, cookie) = csrf(req);
    let org_name = state
        .orgs
        .get(org)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    match portal.render(
        "service.html",
        context! { org, org_name, service => context!{ code => service.code, label => service.label },
                   fields, csrf => token, error },
    ) {
        Ok(html) => respond(
            portal,
            state,
            Page {
                status,
                html,
                cookies: cookie.into_iter().collect(),
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, "service form failed to render");
            error_page(portal, state, StatusCode::INTERNAL_SERVER_ERROR, "Errore", "Errore interno.")
        }
    }
}

fn unknown_service(portal: &Portal, state: &AppState, what: &str) -> HttpResponse {
    error_page(
        portal,
        state,
        StatusCode::NOT_FOUND,
        "Servizio non trovato",
        what,
    )
}

/// `GET /servizio/{org}/{code}`: the service's form (query parameters pre-fill it).
pub async fn service_form(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    path: web::Path<(String, String)>,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    let (org, code) = path.into_inner();
    let Some(service) = find_service(&state, &org, &code) else {
        return unknown_service(
            &portal,
            &state,
            &format!("Il servizio {code} non è pagabile online per questo ente."),
        );
    };
    let mut values = q.into_inner();
    values.entry("data".into()).or_insert_with(|| {
        mpay_messages::time::rome_date(Utc::now())
            .format("%Y-%m-%d")
            .to_string()
    });
    let fields = fields_of(service, &values);
    render_form(
        &portal,
        &state,
        &req,
        StatusCode::OK,
        &org,
        service,
        fields,
        None,
    )
}

/// `POST /servizio/{org}/{code}`: validate → position (DRAFT) → cart → publish.
pub async fn service_submit(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    path: web::Path<(String, String)>,
    form: web::Form<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    if !csrf_ok(&req, form.get("csrf")) {
        return csrf_refused(&portal, &state);
    }
    let (org, code) = path.into_inner();
    let Some(service) = find_service(&state, &org, &code) else {
        return unknown_service(
            &portal,
            &state,
            &format!("Il servizio {code} non è pagabile online per questo ente."),
        );
    };
    // an organization code in GPD's looser form (`gpd_compat.free_identifiers`) is REST-only
    let Some(ctx) = state
        .orgs
        .get(&org)
        .filter(|c| c.fiscal_code.is_pagopa())
        .cloned()
    else {
        return unknown_service(&portal, &state, "Ente non trovato.");
    };
    let mut fields = fields_of(service, &form);
    let Some(valid) = validate(service, &mut fields) else {
        return render_form(
            &portal,
            &state,
            &req,
            StatusCode::UNPROCESSABLE_ENTITY,
            &org,
            service,
            fields,
            Some("Controlla i campi segnalati.".into()),
        );
    };
    let fail = |msg: String| {
        render_form(
            &portal,
            &state,
            &req,
            StatusCode::UNPROCESSABLE_ENTITY,
            &org,
            service,
            fields.clone(),
            Some(msg),
        )
    };
    let Some(iban) = state
        .catalogue
        .organization(&org)
        .and_then(|o| o.service_iban(&service.code))
        .cloned()
    else {
        return fail("Il servizio non è configurato correttamente: contatta l'ente.".into());
    };
    // the cart first: a full or closed cart refuses before anything is created
    let (cart_id, cookie) = match current_cart(&portal, &req).await {
        Ok(x) => x,
        Err(e) => return fail(e.message_it()),
    };
    if let Ok(Some(c)) = portal.carts.ask(&cart_id, mpay_actors::cart::GetCart).await {
        if c.items.len() >= mpay_messages::domain::cart::MAX_ITEMS {
            return fail(
                mpay_messages::domain::cart::CartError::Full
                    .message_it()
                    .into(),
            );
        }
    }
    let now = Utc::now();
    let due = now + Duration::days(i64::from(state.settings.portal.spontaneous_due_days));
    let ledger = state.store.ledger.clone();
    let (ctx2, svc_code, label, category) = (
        ctx.clone(),
        service.code.clone(),
        service.label.clone(),
        service.category.clone(),
    );
    let Valid {
        amount,
        date,
        debtor,
        name,
        causale,
        extra,
    } = valid;
    let created = web::block(move || -> Result<DebtPosition, LedgerError> {
        let nav =
            ledger.next_notice(&ctx2.fiscal_code, &ctx2.layout_for_service(Some(&svc_code)))?;
        let mut position = DebtPosition::new(
            ctx2.fiscal_code.clone(),
            format!("WEB-{svc_code}-{nav}"),
            Debtor::new(debtor, name),
            ctx2.name.clone(),
            Origin::Portal {
                service: svc_code.clone(),
            },
            now,
        );
        position.switch_to_expired = true;
        position.service_code = Some(svc_code.clone());
        let mut option = PaymentOption::new(nav, amount, causale.clone(), due);
        option.metadata.push(MapEntry {
            key: "dataRiferimento".into(),
            value: date.format("%Y-%m-%d").to_string(),
        });
        option.metadata.extend(extra);
        option
            .transfers
            .push(Transfer::to_iban(1, amount, iban, causale, category));
        let _ = label;
        position.payment_options.push(option);
        ledger.create(position)
    })
    .await;
    let position = match created {
        Ok(Ok(p)) => p,
        _ => return fail("Si è verificato un errore interno: riprova tra qualche minuto.".into()),
    };
    let Some(option) = position.payment_options.first() else {
        return fail("Errore interno.".into());
    };
    let item = CartItem {
        organization: ctx.fiscal_code.as_str().to_string(),
        company_name: ctx.name.clone(),
        notice_number: option.nav.as_str().to_string(),
        iuv: option.iuv.as_str().to_string(),
        amount_cents: option.amount.cents(),
        description: option.description.clone(),
        due_date: Some(option.due_day()),
        iupd: position.iupd.clone(),
    };
    let added = portal.carts.ask(&cart_id, AddItem(item)).await;
    let ledger = state.store.ledger.clone();
    let (org_fc, iupd) = (ctx.fiscal_code.clone(), position.iupd.clone());
    if !matches!(added, Ok(Some(_))) {
        // nothing half-created: the draft goes away
        let _ = web::block(move || ledger.delete(&org_fc, &iupd, &|_| Ok(()))).await;
        let msg = match added {
            Err(e) => e.message_it(),
            _ => "Si è verificato un errore interno: riprova tra qualche minuto.".into(),
        };
        return fail(msg);
    }
    let published = web::block(move || {
        ledger.modify(&org_fc, &iupd, &mut |p| {
            p.mark_published(Utc::now());
            Ok(())
        })
    })
    .await;
    if !matches!(published, Ok(Ok(_))) {
        return fail("Si è verificato un errore interno: riprova tra qualche minuto.".into());
    }
    let durable = state
        .store
        .durability
        .commit(mpay_storage::DurabilityPoint::RestWrite)
        .await;
    if durable.is_ok() {
        // created and published in this request: one event, once durable
        state.tell_position(crate::state::PositionChange::Created, &position);
    }
    see_other(
        &portal,
        &state,
        &format!("/carrello/{cart_id}"),
        cookie.into_iter().collect(),
    )
}

/// `extern.do` parameters → the service form's values (INTERFACES §2).
fn extern_values(p: &HashMap<String, String>) -> HashMap<String, String> {
    let get = |k: &str| {
        p.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out = HashMap::new();
    if let Some(euro) = get("payerImporto") {
        let cent = get("payerImportoCent").unwrap_or_else(|| "0".into());
        let cent = cent
            .parse::<u32>()
            .map(|c| format!("{c:02}"))
            .unwrap_or(cent);
        out.insert("importo".into(), format!("{euro},{cent}"));
    }
    if let Some(c) = get("payerCausale") {
        out.insert("causale".into(), c);
    }
    if let Some(c) = get("payerCodiceFiscaleContribuente") {
        out.insert("codice_fiscale".into(), c.to_ascii_uppercase());
    }
    let name = [
        get("payerNomeContribuente"),
        get("payerCognomeContribuente"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    if !name.is_empty() {
        out.insert("nominativo".into(), name);
    }
    if let Some(a) = get("payerAnno") {
        out.insert("anno".into(), a);
    }
    if let Some(c) = get("payerCespite") {
        out.insert("cespite".into(), c);
    }
    out
}

async fn extern_do(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    params: HashMap<String, String>,
    req: HttpRequest,
) -> HttpResponse {
    let get = |k: &str| {
        params
            .get(k)
            .map(|v| v.trim().to_ascii_uppercase())
            .unwrap_or_default()
    };
    let (utente, ente) = (get("payerCodiceUtente"), get("payerCodiceEnte"));
    let (tipo_uff, cod_uff) = (get("payerTipoUfficio"), get("payerCodiceUfficio"));
    let org = state.settings.organizations.iter().find(|o| {
        o.mpay.codice_utente.trim().eq_ignore_ascii_case(&utente)
            && o.mpay.codice_ente.trim().eq_ignore_ascii_case(&ente)
            && (tipo_uff.is_empty() || o.mpay.tipo_ufficio.trim().eq_ignore_ascii_case(&tipo_uff))
            && (cod_uff.is_empty() || o.mpay.codice_ufficio.trim().eq_ignore_ascii_case(&cod_uff))
    });
    let Some(org) = org else {
        return error_page(
            &portal,
            &state,
            StatusCode::NOT_FOUND,
            "Ente non trovato",
            &format!(
                "Nessun ente con codice utente «{utente}» e codice ente «{ente}»: controlla il collegamento ricevuto dall'ente."
            ),
        );
    };
    let code = get("payerTipologiaServizio");
    if code.is_empty() {
        return see_other(
            &portal,
            &state,
            &format!("/?ente={}", org.fiscal_code),
            vec![],
        );
    }
    let Some(service) = find_service(&state, &org.fiscal_code, &code) else {
        return unknown_service(
            &portal,
            &state,
            &format!(
                "Il servizio «{code}» non è pagabile online per {}: controlla il collegamento ricevuto dall'ente.",
                org.name
            ),
        );
    };
    let tipo = get("payerTipoBollettino");
    if !tipo.is_empty() && !tipo.starts_with("SPO") && !tipo.starts_with("CDS") {
        return error_page(
            &portal,
            &state,
            StatusCode::NOT_FOUND,
            "Tipo di pagamento non disponibile",
            &format!("Il tipo bollettino «{tipo}» non è disponibile online: per pagare un avviso usa «Paga un avviso»."),
        );
    }
    let mut values = extern_values(&params);
    values.entry("data".into()).or_insert_with(|| {
        mpay_messages::time::rome_date(Utc::now())
            .format("%Y-%m-%d")
            .to_string()
    });
    let fields = fields_of(service, &values);
    let org_fc = org.fiscal_code.clone();
    render_form(
        &portal,
        &state,
        &req,
        StatusCode::OK,
        &org_fc,
        service,
        fields,
        None,
    )
}

/// `GET /mpay/pagonet/extern.do?formName=formExtern&payer…`.
pub async fn extern_get(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    extern_do(state, portal, q.into_inner(), req).await
}

/// `POST /mpay/pagonet/extern.do` (form-encoded, same parameters).
pub async fn extern_post(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    form: web::Form<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    extern_do(state, portal, form.into_inner(), req).await
}
