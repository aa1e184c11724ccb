//! `mpay-web`: the actix-web application — REST API (`/api/v1`, GPD-compatible), OpenAPI and
//! Swagger UI, operator endpoints. Handlers stay thin: decode → one repository call → encode;
//! errors are mapped once to RFC 7807 problem JSON.

pub mod api;
pub mod archivio;
pub mod auth;
pub mod demo;
pub mod documents;
pub mod exports;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod portal;
pub mod print_jobs;
pub mod problem;
pub mod state;
pub mod station;
pub mod station_access;
pub mod throttle;
pub mod wsdl;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use state::AppState;

use problem::Problem;

/// Registers every route of the application.
pub fn configure(state: AppState) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let limit = state.settings.http.body_limit_bytes;
        cfg.app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|err, _| Problem::from_query_error(&err.to_string()).into()),
            )
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                Problem::new(StatusCode::BAD_REQUEST, "Invalid path", err.to_string())
                    .with_code("INVALID_PATH")
                    .into()
            }))
            .configure(ops::configure)
            .configure(station::configure)
            .configure(archivio::configure)
            .configure(wsdl::configure)
            .route("/api/info", web::get().to(api::gpd::info))
            .service(
                web::scope("/api/v1")
                    .wrap(actix_web::middleware::from_fn(auth::refuse_key_in_query))
                    .configure(api::documents::configure)
                    .configure(api::gpd::configure_transfers)
                    .configure(api::positions::configure)
                    .configure(api::gpd::configure)
                    .configure(api::feeds::configure)
                    .configure(api::recovery::configure)
                    .configure(api::receipts::configure)
                    .configure(api::reconciliation::configure)
                    .configure(api::notifications::configure),
            )
            .service(
                web::scope("/api/v2")
                    .wrap(actix_web::middleware::from_fn(auth::refuse_key_in_query))
                    .configure(api::gpd::configure_v2),
            )
            .service(
                web::scope("/api/v3")
                    .wrap(actix_web::middleware::from_fn(auth::refuse_key_in_query))
                    .configure(api::v3::configure),
            )
            .service(
                SwaggerUi::new("/api/docs/{_:.*}")
                    .url("/api/openapi.json", openapi::ApiDoc::openapi()),
            )
            .route(
                "/api/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/api/docs/"))
                        .finish()
                }),
            );
    }
}

async fn home() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(
        "<!doctype html><html lang=\"it\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mpay</title></head>\
         <body><h1>mpay</h1><p>Piattaforma pagoPA. <a href=\"/api/docs/\">API REST (Swagger UI)</a> · <a href=\"/api/openapi.json\">OpenAPI</a> · <a href=\"/health/ready\">stato</a> · <a href=\"/health/actors\">attori</a> · <a href=\"/metrics\">metriche</a></p>\
         <h2>Servizi SOAP (POST)</h2><ul><li>Stazione pagoPA <code>/pagopa/paForNode</code> — <a href=\"/pagopa/paForNode?wsdl\">WSDL</a></li>\
         <li>MPay Archivio Carichi <code>/ArchivioCarichiService/integraecdifferito</code> — <a href=\"/ArchivioCarichiService/integraecdifferito?wsdl\">WSDL</a></li></ul></body></html>",
    )
}

/// Builds the HTTP server on an already bound listener (port 0 in tests). The server stops
/// gracefully on SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish (up to 30 s)
/// and then resolves.
pub fn server(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    server_with_portal(state, listener, None)
}

/// [`server`] with the citizen portal at `/` (without it, `/` is a page of links for operators).
pub fn server_with_portal(
    state: AppState,
    listener: TcpListener,
    portal: Option<portal::Portal>,
) -> std::io::Result<Server> {
    server_with_listeners(state, listener, None, portal)
}

/// [`server_with_portal`] with, optionally, the station's mutual-TLS listener
/// (`[station] tls_bind`, already bound: port 0 in tests): the same application, where a
/// client must present a certificate of `[station] client_ca` (see [`station_access`]).
pub fn server_with_listeners(
    state: AppState,
    listener: TcpListener,
    station_tls: Option<TcpListener>,
    portal: Option<portal::Portal>,
) -> std::io::Result<Server> {
    let _ = ops::prometheus();
    let workers = match state.settings.http.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    // the station tells the portal's carts about the receipts it stores
    let state = match &portal {
        Some(p) => state.with_carts(p.carts.clone()),
        None => state,
    };
    state.station_access.warn_if_open();
    let tls = match &station_tls {
        Some(_) => Some(
            station_access::tls_server_config(&state.settings)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ),
        None => None,
    };
    let subjects = state.settings.station.client_subjects.clone();
    let http = state.settings.http.clone();
    let routes = configure(state);
    let tracker = limits::ConnTracker::new(http.max_connections_per_ip);
    let body_timeout = limits::BodyTimeout(std::time::Duration::from_millis(http.body_timeout_ms));
    let inflight = web::Data::new(limits::OtherInflight::new(http.max_inflight_other));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(body_timeout))
            .app_data(inflight.clone())
            .wrap(actix_web::middleware::from_fn(limits::other_inflight))
            .wrap(actix_web::middleware::from_fn(limits::body_deadline))
            .wrap(actix_web::middleware::from_fn(middleware::observe))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Problem::new(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "no such resource",
                ))
            }))
            .configure(routes.clone())
            .configure(|cfg| match &portal {
                Some(p) => portal::configure(p.clone())(cfg),
                None => {
                    cfg.route("/", web::get().to(home));
                }
            })
    })
    .on_connect(move |conn, ext| {
        tracker.on_connect(conn, ext);
        station_access::on_tls_connect(conn, ext, &subjects);
    })
    .client_request_timeout(std::time::Duration::from_millis(http.head_timeout_ms))
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .keep_alive(std::time::Duration::from_secs(http.keep_alive_secs))
    .workers(workers)
    .shutdown_timeout(30)
    .listen(listener)?;
    let server = match (station_tls, tls) {
        (Some(l), Some(cfg)) => server.listen_rustls_0_23(l, cfg)?,
        _ => server,
    };
    let server = server.run();
    Ok(server)
}
