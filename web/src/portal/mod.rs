//! The citizen portal ("Pagamenti on-line", "Carrello Virtuale"): home (province → organization
//! → service), pay a notice, spontaneous payments from the service catalogue, MPay's `extern.do`
//! deep link, the cart (one [`CartSession`](mpay_actors::cart::CartSession) each) paid through
//! pagoPA Checkout, and the outcome page.
//!
//! Server-side pages (minijinja templates under `web/templates/portal/`), Bootstrap Italia
//! embedded in the binary ([`assets`]); every flow works without JavaScript. Forms carry a CSRF
//! token (double-submit cookie); pages carry a CSP allowing only our own assets. A position is
//! marked paid only by its receipt: the outcome page reads the receipts the station stored.

pub mod assets;
mod documents;
mod forms;
mod pages;

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::Environment;
use mpay_actors::cart::CartRegistry;

use crate::AppState;

/// The portal's services: the cart sessions and the templates.
#[derive(Clone)]
pub struct Portal {
    /// Cart sessions.
    pub carts: CartRegistry,
    templates: Arc<Environment<'static>>,
    /// The Checkout origin the browser is sent to (CSP `form-action`).
    checkout_origin: String,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../templates/portal/base.html"),
    ),
    (
        "home.html",
        include_str!("../../templates/portal/home.html"),
    ),
    (
        "notice.html",
        include_str!("../../templates/portal/notice.html"),
    ),
    (
        "service.html",
        include_str!("../../templates/portal/service.html"),
    ),
    (
        "cart.html",
        include_str!("../../templates/portal/cart.html"),
    ),
    (
        "outcome.html",
        include_str!("../../templates/portal/outcome.html"),
    ),
    (
        "verify.html",
        include_str!("../../templates/portal/verify.html"),
    ),
    (
        "error.html",
        include_str!("../../templates/portal/error.html"),
    ),
];

/// A template that does not load (a defect of the build).
#[derive(Debug, thiserror::Error)]
#[error("portal template: {0}")]
pub struct TemplateError(String);

impl Portal {
    /// The portal over `carts`; `checkout_base_url` is where carts are posted (its origin is
    /// allowed as a form target).
    ///
    /// Errors: a template does not parse.
    pub fn new(carts: CartRegistry, checkout_base_url: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .map_err(|e| TemplateError(e.to_string()))?;
        }
        let checkout_origin = origin_of(checkout_base_url);
        Ok(Portal {
            carts,
            templates: Arc::new(env),
            checkout_origin,
        })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, String> {
        self.templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| e.to_string())
    }
}

fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split('/').next().unwrap_or("");
    format!("{scheme}://{host}")
}

/// Name of the CSRF cookie (double submit).
pub const CSRF_COOKIE: &str = "mpay_csrf";
/// Name of the cookie with the current cart id.
pub const CART_COOKIE: &str = "mpay_cart";

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The request's CSRF token, and the cookie to set when it is new.
fn csrf(req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    if let Some(c) = req.cookie(CSRF_COOKIE) {
        let v = c.value();
        if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return (v.to_string(), None);
        }
    }
    let token = random_hex(16);
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    (token, Some(cookie))
}

/// Whether the form's token matches the cookie (constant-time comparison).
fn csrf_ok(req: &HttpRequest, form_token: Option<&String>) -> bool {
    let (Some(cookie), Some(token)) = (req.cookie(CSRF_COOKIE), form_token) else {
        return false;
    };
    let (a, b) = (cookie.value().as_bytes(), token.as_bytes());
    a.len() == 32
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A rendered page with the security headers.
struct Page {
    status: StatusCode,
    html: String,
    cookies: Vec<Cookie<'static>>,
}

fn respond(portal: &Portal, state: &AppState, page: Page) -> HttpResponse {
    let mut b = HttpResponse::build(page.status);
    b.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
    security_headers(&mut b, portal, state);
    for c in page.cookies {
        b.cookie(c);
    }
    b.body(page.html)
}

fn security_headers(b: &mut actix_web::HttpResponseBuilder, portal: &Portal, state: &AppState) {
    let form_action = if portal.checkout_origin.is_empty() {
        "'self'".to_string()
    } else {
        format!("'self' {}", portal.checkout_origin)
    };
    b.insert_header((
        header::CONTENT_SECURITY_POLICY,
        format!(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action {form_action}; frame-ancestors 'none'"
        ),
    ))
    .insert_header((header::X_FRAME_OPTIONS, "DENY"))
    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .insert_header((header::REFERRER_POLICY, "same-origin"))
    .insert_header((header::CACHE_CONTROL, "no-store"));
    if state.settings.portal.hsts {
        b.insert_header((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
}

/// A 303 to `location` (after a POST), with cookies and security headers.
fn see_other(
    portal: &Portal,
    state: &AppState,
    location: &str,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    let mut b = HttpResponse::SeeOther();
    b.insert_header((header::LOCATION, location.to_string()));
    security_headers(&mut b, portal, state);
    for c in cookies {
        b.cookie(c);
    }
    b.finish()
}

fn error_page(
    portal: &Portal,
    state: &AppState,
    status: StatusCode,
    title: &str,
    message: &str,
) -> HttpResponse {
    let html = portal
        .render(
            "error.html",
            minijinja::context! { title => title, message => message },
        )
        .unwrap_or_else(|_| {
            format!(
                "<!doctype html><html lang=\"it\"><title>{status}</title><p>{status}</p></html>"
            )
        });
    respond(
        portal,
        state,
        Page {
            status,
            html,
            cookies: vec![],
        },
    )
}

/// Registers the portal's routes (`/`, `/avviso`, `/servizio/…`, `/carrello…`, the documents
/// (`/avvisi/{org}/{nav}/pdf`, `/ricevute/{id}/pdf`, `/ricevute/verify/{id}`),
/// `/mpay/pagonet/extern.do`, `/static/…`).
pub fn configure(portal: Portal) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(portal.clone()))
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .configure(assets::configure)
            .route("/", web::get().to(pages::home))
            .route("/avviso", web::get().to(pages::notice_form))
            .route("/avviso", web::post().to(pages::notice_lookup))
            .route("/carrello", web::get().to(pages::my_cart))
            .route("/carrello/aggiungi", web::post().to(pages::add_notice))
            .route("/carrello/{id}", web::get().to(pages::cart))
            .route("/carrello/{id}/rimuovi", web::post().to(pages::remove_item))
            .route("/carrello/{id}/paga", web::post().to(pages::pay))
            .route("/carrello/{id}/esito", web::get().to(pages::outcome))
            .route("/servizio/{org}/{code}", web::get().to(forms::service_form))
            .route(
                "/servizio/{org}/{code}",
                web::post().to(forms::service_submit),
            )
            .route(
                "/avvisi/{org}/{nav}/pdf",
                web::get().to(documents::notice_pdf),
            )
            .route("/ricevute/verify/{id}", web::get().to(documents::verify))
            .route("/ricevute/{id}/pdf", web::get().to(documents::receipt_pdf))
            .route("/mpay/pagonet/extern.do", web::get().to(forms::extern_get))
            .route(
                "/mpay/pagonet/extern.do",
                web::post().to(forms::extern_post),
            );
    }
}
