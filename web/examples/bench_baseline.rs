//! Bare actix-web baseline for `ops/bench/rest`: the same HTTP stack and worker count as the
//! mpay server, with none of its work (no auth, validation, storage or middleware). Its
//! throughput is the ceiling the real create/get endpoints are compared with.
//!
//! Usage: `bench_baseline [ADDR]` (default 127.0.0.1:18080).
//!
//! - `POST /create` reads the whole body and answers 201 with a fixed JSON document;
//! - `GET /get/{id}` answers 200 with the same document.
//!
//! The document is a copy of a real create answer of mpay (~1 KB).

use actix_web::{http::StatusCode, web, App, HttpResponse, HttpServer};

/// A fixed answer: a real create answer of mpay (942 bytes), so both servers send as much.
const BODY: &str = r#"{"iupd":"BENCH-0-2","organizationFiscalCode":"80001234568","type":"F","fiscalCode":"RSSMRA80A01H501U","fullName":"Mario Rossi","switchToExpired":false,"payStandIn":true,"companyName":"Comune di Borgo Demo","insertedDate":"2026-01-01T11:42:44.412768542Z","publishDate":"2026-01-01T11:42:44.415993970Z","validityDate":null,"paymentDate":null,"lastUpdatedDate":"2026-01-01T11:42:44.412768542Z","status":"VALID","paymentOption":[{"nav":"312000000000000119","iuv":"12000000000000119","organizationFiscalCode":"80001234568","amount":12050,"description":"TARI 2026","isPartialPayment":false,"dueDate":"2026-12-31T22:59:59Z","retentionDate":null,"paymentDate":null,"fee":0,"notificationFee":0,"status":"PO_UNPAID","paymentOptionMetadata":[],"transfer":[{"idTransfer":"1","amount":12050,"organizationFiscalCode":"80001234568","remittanceInformation":"TARI 2026","category":"9/0101108TS/","iban":"IT47D0103002600000061234567","transferMetadata":[]}]}]}"#;

/// Reads the whole body (the `Bytes` extractor, as the real handler does) and ignores it.
async fn create(_body: web::Bytes) -> HttpResponse {
    HttpResponse::build(StatusCode::CREATED)
        .content_type("application/json")
        .body(BODY)
}

async fn get(_id: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(BODY)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    // Same rule as mpay's `http.workers = 0`: one worker per core.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    println!("bench_baseline listening on http://{addr} ({workers} workers)");
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(1 << 20))
            .route("/create", web::post().to(create))
            .route("/get/{id}", web::get().to(get))
    })
    .workers(workers)
    .bind(&addr)?
    .run()
    .await
}
