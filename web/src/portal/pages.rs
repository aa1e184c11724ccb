//! Home, pay a notice, cart, checkout and outcome pages.

use std::collections::{BTreeSet, HashMap};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use minijinja::context;
use mpay_actors::cart::{
    AddItem, CartOpError, CheckReceipts, GetCart, RemoveItem, Reopen, SetEmail, StartCheckout,
};
use mpay_actors::node_channel::ReturnUrls;
use mpay_messages::domain::cart::{format_amount_it, Cart, CartItem, CartState, MAX_ITEMS};
use mpay_messages::{Iuv, NoticeNumber};
use mpay_storage::PositionRepository;
use serde::Serialize;

use super::{csrf, csrf_ok, error_page, respond, see_other, Page, Portal, CART_COOKIE};
use crate::AppState;

type Form = web::Form<HashMap<String, String>>;

#[derive(Serialize)]
pub(super) struct OrgView {
    fiscal_code: String,
    name: String,
    province: String,
}

pub(super) fn org_views(state: &AppState) -> Vec<OrgView> {
    let mut v: Vec<OrgView> = state
        .settings
        .organizations
        .iter()
        // GPD's looser organization codes (`gpd_compat.free_identifiers`) are REST-only
        .filter(|o| o.fiscal_code.len() == 11)
        .map(|o| OrgView {
            fiscal_code: o.fiscal_code.clone(),
            name: o.name.clone(),
            province: o.province.clone().unwrap_or_default().to_ascii_uppercase(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// An item as the pages show it.
#[derive(Serialize)]
pub(super) struct ItemView {
    organization: String,
    company_name: String,
    notice_number: String,
    description: String,
    amount: String,
    due_date: String,
    receipt_id: Option<String>,
    /// The public receipt download (`/ricevute/{verification id}/pdf`), once paid.
    receipt_link: Option<String>,
}

pub(super) fn item_view(i: &CartItem) -> ItemView {
    ItemView {
        organization: i.organization.clone(),
        company_name: i.company_name.clone(),
        notice_number: i.notice_number.clone(),
        description: i.description.clone(),
        amount: format_amount_it(i.amount_cents),
        due_date: i
            .due_date
            .map(|d| d.format("%d/%m/%Y").to_string())
            .unwrap_or_else(|| "—".into()),
        receipt_id: None,
        receipt_link: None,
    }
}

#[derive(Serialize)]
struct CartView {
    id: String,
    items: Vec<ItemView>,
    total: String,
    open: bool,
}

fn cart_view(c: &Cart) -> CartView {
    CartView {
        id: c.id.clone(),
        items: c
            .items
            .iter()
            .map(|i| {
                let mut v = item_view(i);
                v.receipt_id = c
                    .receipt_of(&i.organization, &i.notice_number)
                    .map(str::to_string);
                v
            })
            .collect(),
        total: format_amount_it(c.total_cents()),
        open: c.is_open(),
    }
}

fn cart_cookie(id: &str) -> Cookie<'static> {
    Cookie::build(CART_COOKIE, id.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish()
}

/// The number of items of the browser's current cart (header badge).
async fn cart_count(portal: &Portal, req: &HttpRequest) -> usize {
    let Some(id) = req.cookie(CART_COOKIE).map(|c| c.value().to_string()) else {
        return 0;
    };
    match portal.carts.ask(&id, GetCart).await {
        Ok(Some(c)) if c.is_open() => c.items.len(),
        _ => 0,
    }
}

fn page(
    portal: &Portal,
    state: &AppState,
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    match portal.render(name, ctx) {
        Ok(html) => respond(
            portal,
            state,
            Page {
                status,
                html,
                cookies,
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, template = name, "portal page failed to render");
            error_page(
                portal,
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Errore",
                "Si è verificato un errore interno: riprova tra qualche minuto.",
            )
        }
    }
}

pub(super) fn csrf_refused(portal: &Portal, state: &AppState) -> HttpResponse {
    error_page(
        portal,
        state,
        StatusCode::FORBIDDEN,
        "Sessione scaduta",
        "La pagina è scaduta o il modulo non proviene da questo sito. Torna indietro, ricarica la pagina e riprova.",
    )
}

/// `GET /`: province → organization → services, or "Paga un avviso".
pub async fn home(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    let province = q.get("provincia").cloned().unwrap_or_default();
    let org = q.get("ente").cloned().unwrap_or_default();
    let all = org_views(&state);
    let provinces: BTreeSet<String> = all
        .iter()
        .filter(|o| !o.province.is_empty())
        .map(|o| o.province.clone())
        .collect();
    let orgs: Vec<&OrgView> = all
        .iter()
        .filter(|o| province.is_empty() || o.province == province)
        .collect();
    let org_name = all
        .iter()
        .find(|o| o.fiscal_code == org)
        .map(|o| o.name.clone());
    let services: Vec<_> = state
        .settings
        .services
        .iter()
        .filter(|s| s.organization == org && s.spontaneous)
        .map(|s| context! { code => s.code, label => s.label })
        .collect();
    let (_, cookie) = csrf(&req);
    let count = cart_count(&portal, &req).await;
    page(
        &portal,
        &state,
        StatusCode::OK,
        "home.html",
        context! { provinces, province, orgs, org, org_name, services, cart_count => count },
        cookie.into_iter().collect(),
    )
}

/// Finds a notice and checks it can be paid now (the same rule the station applies for the
/// Node). The error is the Italian sentence for the citizen.
pub(super) async fn lookup_notice(
    state: &AppState,
    portal: &Portal,
    org: &str,
    code: &str,
) -> Result<CartItem, (Option<&'static str>, String)> {
    // an organization code in GPD's looser form (`gpd_compat.free_identifiers`) is REST-only
    let Some(ctx) = state
        .orgs
        .get(org)
        .filter(|c| c.fiscal_code.is_pagopa())
        .cloned()
    else {
        return Err((Some("ente"), "Scegli l'ente creditore.".into()));
    };
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let nav = match code.len() {
        0 => {
            return Err((
                Some("codice"),
                "Inserisci il codice avviso o lo IUV.".into(),
            ))
        }
        18 => NoticeNumber::parse(&code),
        _ => Iuv::parse(&code).and_then(|iuv| NoticeNumber::from_iuv(&iuv, &ctx.layout)),
    };
    let Ok(nav) = nav else {
        return Err((
            Some("codice"),
            "Codice non valido: il codice avviso ha 18 cifre, lo IUV 15 o 17 (controlla le cifre copiate dall'avviso).".into(),
        ));
    };
    let ledger = state.store.ledger.clone();
    let (org_fc, nav2) = (ctx.fiscal_code.clone(), nav.clone());
    let found = web::block(move || ledger.find_by_notice(&org_fc, &nav2)).await;
    let position = match found {
        Ok(Ok(p)) => p,
        _ => {
            return Err((
                None,
                "Si è verificato un errore interno: riprova tra qualche minuto.".into(),
            ))
        }
    };
    let now = Utc::now();
    // a position with GPD's looser identifiers is REST-only: unknown here as at the station
    let Some(position) = position.filter(|p| !p.rest_only()) else {
        return Err((
            None,
            mpay_messages::domain::NotPayable::UnknownNotice
                .message_it()
                .to_string(),
        ));
    };
    let option = position
        .payable(nav.as_str(), now)
        .map_err(|r| (None, r.message_it().to_string()))?;
    let item = CartItem {
        organization: ctx.fiscal_code.as_str().to_string(),
        company_name: if position.company_name.is_empty() {
            ctx.name.clone()
        } else {
            position.company_name.clone()
        },
        notice_number: nav.as_str().to_string(),
        iuv: option.iuv.as_str().to_string(),
        amount_cents: option.amount.cents(),
        description: option.description.clone(),
        due_date: Some(option.due_day()),
        iupd: position.iupd.clone(),
    };
    let timers = portal.carts.timers();
    if let Ok(Some(_)) =
        portal
            .carts
            .store()
            .holder(&item.organization, &item.notice_number, now, timers)
    {
        // the page tells it now; the cart refuses it again when added (another cart)
        tracing::debug!(notice = %item.notice_number, "notice held by a cart");
    }
    Ok(item)
}

/// `GET /avviso`.
pub async fn notice_form(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    let (token, cookie) = csrf(&req);
    let form = context! { ente => q.get("ente").cloned().unwrap_or_default(), codice => "" };
    let count = cart_count(&portal, &req).await;
    page(
        &portal,
        &state,
        StatusCode::OK,
        "notice.html",
        context! { orgs => org_views(&state), form, csrf => token, errors => context!{}, cart_count => count },
        cookie.into_iter().collect(),
    )
}

/// `POST /avviso`: looks the notice up and shows it with "Aggiungi al carrello".
pub async fn notice_lookup(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    form: Form,
    req: HttpRequest,
) -> HttpResponse {
    if !csrf_ok(&req, form.get("csrf")) {
        return csrf_refused(&portal, &state);
    }
    let (token, _) = csrf(&req);
    let org = form.get("ente").cloned().unwrap_or_default();
    let code = form.get("codice").cloned().unwrap_or_default();
    let found = lookup_notice(&state, &portal, &org, &code).await;
    let count = cart_count(&portal, &req).await;
    let form_ctx = context! { ente => org, codice => code };
    match found {
        Ok(item) => page(
            &portal,
            &state,
            StatusCode::OK,
            "notice.html",
            context! { orgs => org_views(&state), form => form_ctx, csrf => token, errors => context!{},
            notice => minijinja::Value::from_serialize(item_view(&item)), cart_count => count },
            vec![],
        ),
        Err((field, message)) => {
            let errors = match field {
                Some(f) => minijinja::Value::from_serialize(HashMap::from([(f, message.clone())])),
                None => context! {},
            };
            let error = field.is_none().then_some(message);
            page(
                &portal,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                "notice.html",
                context! { orgs => org_views(&state), form => form_ctx, csrf => token, errors, error, cart_count => count },
                vec![],
            )
        }
    }
}

/// The browser's open cart, or a new one. Returns the id and the cookie to set when new.
pub(super) async fn current_cart(
    portal: &Portal,
    req: &HttpRequest,
) -> Result<(String, Option<Cookie<'static>>), CartOpError> {
    if let Some(id) = req.cookie(CART_COOKIE).map(|c| c.value().to_string()) {
        if let Ok(Some(c)) = portal.carts.ask(&id, GetCart).await {
            if c.is_open() {
                return Ok((id, None));
            }
        }
    }
    let (id, _) = portal.carts.create()?;
    let cookie = cart_cookie(&id);
    Ok((id, Some(cookie)))
}

/// `POST /carrello/aggiungi` (ente, avviso): the notice is looked up again (amounts never come
/// from the browser) and added to the browser's cart.
pub async fn add_notice(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    form: Form,
    req: HttpRequest,
) -> HttpResponse {
    if !csrf_ok(&req, form.get("csrf")) {
        return csrf_refused(&portal, &state);
    }
    let org = form.get("ente").cloned().unwrap_or_default();
    let nav = form.get("avviso").cloned().unwrap_or_default();
    let (token, _) = csrf(&req);
    let count = cart_count(&portal, &req).await;
    let fail = |message: String| {
        page(
            &portal,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            "notice.html",
            context! { orgs => org_views(&state), form => context!{ ente => org, codice => nav }, csrf => token,
            errors => context!{}, error => message, cart_count => count },
            vec![],
        )
    };
    let item = match lookup_notice(&state, &portal, &org, &nav).await {
        Ok(i) => i,
        Err((_, m)) => return fail(m),
    };
    let (id, cookie) = match current_cart(&portal, &req).await {
        Ok(x) => x,
        Err(e) => return fail(e.message_it()),
    };
    match portal.carts.ask(&id, AddItem(item)).await {
        Ok(Some(_)) => see_other(
            &portal,
            &state,
            &format!("/carrello/{id}"),
            cookie.into_iter().collect(),
        ),
        Ok(None) => fail(CartOpError::Unavailable.message_it()),
        Err(e) => fail(e.message_it()),
    }
}

/// `GET /carrello`: the browser's cart.
pub async fn my_cart(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    req: HttpRequest,
) -> HttpResponse {
    match req.cookie(CART_COOKIE).map(|c| c.value().to_string()) {
        Some(id) if matches!(portal.carts.session(&id), Ok(Some(_))) => {
            see_other(&portal, &state, &format!("/carrello/{id}"), vec![])
        }
        _ => {
            let (token, cookie) = csrf(&req);
            page(
                &portal,
                &state,
                StatusCode::OK,
                "cart.html",
                context! { cart => (), csrf => token, max_items => MAX_ITEMS },
                cookie.into_iter().collect(),
            )
        }
    }
}

fn render_cart(
    portal: &Portal,
    state: &AppState,
    req: &HttpRequest,
    cart: &Cart,
    status: StatusCode,
    error: Option<String>,
    email: Option<(String, String)>,
) -> HttpResponse {
    let (token, cookie) = csrf(req);
    let notice_msg = cart.last_failure.as_ref().map(|f| {
        if f.maybe_received {
            format!(
                "{} (tentativi di pagamento finora: {}).",
                f.message_it.trim_end_matches('.'),
                cart.attempts
            )
        } else {
            f.message_it.clone()
        }
    });
    let (email_value, email_error) = match email {
        Some((v, e)) => (v, Some(e)),
        None => (cart.email.clone().unwrap_or_default(), None),
    };
    let count = if cart.is_open() { cart.items.len() } else { 0 };
    page(
        portal,
        state,
        status,
        "cart.html",
        context! { cart => cart_view(cart), csrf => token, max_items => MAX_ITEMS, error,
        notice_msg => if error.is_none() { notice_msg } else { None },
        email => email_value, email_error, cart_count => count },
        cookie.into_iter().collect(),
    )
}

fn no_cart(portal: &Portal, state: &AppState) -> HttpResponse {
    error_page(
        portal,
        state,
        StatusCode::NOT_FOUND,
        "Carrello non trovato",
        "Il carrello non esiste o è scaduto.",
    )
}

/// `GET /carrello/{id}`.
pub async fn cart(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    match portal.carts.ask(&id, GetCart).await {
        Ok(Some(c)) => render_cart(&portal, &state, &req, &c, StatusCode::OK, None, None),
        Ok(None) => no_cart(&portal, &state),
        Err(e) => error_page(
            &portal,
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Errore",
            &e.message_it(),
        ),
    }
}

/// `POST /carrello/{id}/rimuovi` (ente, avviso).
pub async fn remove_item(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
    form: Form,
    req: HttpRequest,
) -> HttpResponse {
    if !csrf_ok(&req, form.get("csrf")) {
        return csrf_refused(&portal, &state);
    }
    let msg = RemoveItem {
        organization: form.get("ente").cloned().unwrap_or_default(),
        notice_number: form.get("avviso").cloned().unwrap_or_default(),
    };
    match portal.carts.ask(&id, msg).await {
        Ok(Some(_)) => see_other(&portal, &state, &format!("/carrello/{id}"), vec![]),
        Ok(None) => no_cart(&portal, &state),
        Err(e) => match portal.carts.ask(&id, GetCart).await {
            Ok(Some(c)) => render_cart(
                &portal,
                &state,
                &req,
                &c,
                StatusCode::CONFLICT,
                Some(e.message_it()),
                None,
            ),
            _ => no_cart(&portal, &state),
        },
    }
}

fn public_base(state: &AppState, req: &HttpRequest) -> String {
    let configured = state.settings.portal.public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let ci = req.connection_info();
    format!("{}://{}", ci.scheme(), ci.host())
}

/// `POST /carrello/{id}/paga` (email): hands the cart to pagoPA Checkout through the
/// `NodeChannel` and sends the browser there (303). Errors leave the cart payable.
pub async fn pay(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
    form: Form,
    req: HttpRequest,
) -> HttpResponse {
    if !csrf_ok(&req, form.get("csrf")) {
        return csrf_refused(&portal, &state);
    }
    let email = form.get("email").cloned().unwrap_or_default();
    let current = match portal.carts.ask(&id, GetCart).await {
        Ok(Some(c)) => c,
        Ok(None) => return no_cart(&portal, &state),
        Err(e) => {
            return error_page(
                &portal,
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Errore",
                &e.message_it(),
            )
        }
    };
    if current.is_open() && current.email.as_deref().unwrap_or("") != email.trim() {
        if let Err(e) = portal.carts.ask(&id, SetEmail(email.clone())).await {
            return render_cart(
                &portal,
                &state,
                &req,
                &current,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some((email, e.message_it())),
            );
        }
    }
    let base = public_base(&state, &req);
    let esito = |e: &str| format!("{base}/carrello/{id}/esito?esito={e}");
    let msg = StartCheckout {
        return_urls: ReturnUrls {
            return_ok_url: esito("ok"),
            return_cancel_url: esito("annullato"),
            return_error_url: esito("errore"),
            return_waiting_url: Some(esito("attesa")),
        },
        all_postal: false,
    };
    match portal.carts.ask(&id, msg).await {
        Ok(Some(Cart {
            state: CartState::AtCheckout { location, .. },
            ..
        })) => see_other(&portal, &state, &location, vec![]),
        Ok(Some(c)) => render_cart(&portal, &state, &req, &c, StatusCode::CONFLICT, None, None),
        Ok(None) => no_cart(&portal, &state),
        Err(e) => match portal.carts.ask(&id, GetCart).await {
            Ok(Some(c)) => render_cart(
                &portal,
                &state,
                &req,
                &c,
                StatusCode::BAD_GATEWAY,
                Some(e.message_it()),
                None,
            ),
            _ => no_cart(&portal, &state),
        },
    }
}

/// `GET /carrello/{id}/esito?esito=ok|annullato|errore|attesa`: the outcome. Items are paid
/// only when the station stored their receipt (the cart session records them: told by the
/// station, or looking the store up now); until then the page refreshes itself.
pub async fn outcome(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    let cart = match portal.carts.ask(&id, CheckReceipts).await {
        Ok(Some(c)) => c,
        Ok(None) => return no_cart(&portal, &state),
        Err(e) => {
            return error_page(
                &portal,
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Errore",
                &e.message_it(),
            )
        }
    };
    let all_paid = matches!(cart.state, CartState::Paid { .. }) && cart.all_receipts();
    let views: Vec<ItemView> = cart
        .items
        .iter()
        .map(|i| {
            let mut v = item_view(i);
            v.receipt_id = cart
                .receipt_of(&i.organization, &i.notice_number)
                .map(str::to_string);
            v.receipt_link = v
                .receipt_id
                .as_deref()
                .map(|r| format!("/ricevute/{}/pdf", state.verify_key.id(&i.organization, r)));
            v
        })
        .collect();
    let esito = q.get("esito").map(String::as_str).unwrap_or("");
    let mut refresh = None;
    let mut reopen = false;
    let (level, headline) = if all_paid {
        (
            "success",
            "Pagamento completato: le ricevute sono elencate qui sotto.".to_string(),
        )
    } else if matches!(esito, "annullato" | "errore")
        && matches!(cart.state, CartState::AtCheckout { .. } | CartState::Open)
    {
        let text = if esito == "annullato" {
            "Pagamento annullato: nessun importo è stato addebitato. Puoi pagare di nuovo il carrello."
        } else {
            "Il pagamento non è andato a buon fine. Puoi pagare di nuovo il carrello."
        };
        let _ = portal.carts.ask(&id, Reopen(text.to_string())).await;
        reopen = true;
        ("danger", text.to_string())
    } else {
        let since = match &cart.state {
            CartState::AtCheckout { at, .. } | CartState::CheckoutSending { at } => Some(*at),
            _ => None,
        };
        let waited = since
            .map(|at| (Utc::now() - at).num_seconds())
            .unwrap_or(i64::MAX);
        let limit = i64::try_from(state.settings.portal.receipt_wait_secs).unwrap_or(i64::MAX);
        if cart.is_open() {
            reopen = true;
            ("info", "Il carrello non è ancora stato pagato.".to_string())
        } else if waited < limit {
            refresh = Some(2);
            ("info", "Stiamo attendendo la conferma del pagamento da pagoPA: la pagina si aggiorna da sola.".to_string())
        } else {
            ("warning", "Pagamento in lavorazione: la conferma non è ancora arrivata. Torna su questa pagina più tardi; riceverai l'esito anche via e-mail se l'hai indicata.".to_string())
        }
    };
    let (_, cookie) = csrf(&req);
    page(
        &portal,
        &state,
        StatusCode::OK,
        "outcome.html",
        context! { items => views, level, headline, refresh, reopen, cart_id => id.as_str() },
        cookie.into_iter().collect(),
    )
}
