//! Static assets served by the binary itself: the Bootstrap Italia build (installed by
//! `web/build.rs` from `web/package.json`, embedded here at compile time in release builds) and
//! the portal's own stylesheet. Nothing is fetched at run time.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

/// Bootstrap Italia's built files (CSS, JS bundle, web fonts, icon sprite).
#[derive(RustEmbed)]
#[folder = "node_modules/bootstrap-italia/dist/"]
#[include = "css/bootstrap-italia.min.css"]
#[include = "js/bootstrap-italia.bundle.min.js"]
#[include = "fonts/Titillium_Web/*.woff2"]
#[include = "fonts/Roboto_Mono/*.woff2"]
#[include = "fonts/Lora/*.woff2"]
#[include = "svg/sprites.svg"]
pub struct BootstrapItalia;

/// The portal's own files.
#[derive(RustEmbed)]
#[folder = "static/"]
pub struct PortalStatic;

fn serve(file: Option<rust_embed::EmbeddedFile>, path: &str, req: &HttpRequest) -> HttpResponse {
    let Some(file) = file else {
        return HttpResponse::NotFound().finish();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..8]));
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return HttpResponse::NotModified().finish();
    }
    let mime = mime_guess_for(path);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mime))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(file.data.into_owned())
}

fn mime_guess_for(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

async fn bootstrap_italia(path: web::Path<String>, req: HttpRequest) -> HttpResponse {
    serve(BootstrapItalia::get(&path), &path, &req)
}

async fn own(path: web::Path<String>, req: HttpRequest) -> HttpResponse {
    serve(PortalStatic::get(&path), &path, &req)
}

/// `/static/bi/{file}` and `/static/portal/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/bi/{path:.*}", web::get().to(bootstrap_italia))
        .route("/static/portal/{path:.*}", web::get().to(own));
}
