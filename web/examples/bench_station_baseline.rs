//! Bare actix-web baseline for `ops/bench/station`: the same HTTP stack and worker count as the
//! mpay server, none of its work. `POST /pagopa/paForNode` reads the whole body and answers 200
//! with a fixed paVerifyPaymentNoticeRes of the same shape and size as the station's answer for a
//! seeded position. Its throughput is the ceiling the station's verify is compared with.
//!
//! Usage: `bench_station_baseline [ADDR]` (default 127.0.0.1:18090).

use actix_web::{web, App, HttpResponse, HttpServer};

/// The station's verify answer for a position seeded by `ops/bench/station` (same bytes but the
/// notice-specific values are fixed).
const BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><pafn:paVerifyPaymentNoticeRes><outcome>OK</outcome><paymentList><paymentOptionDescription><amount>120.50</amount><options>EQ</options><dueDate>2026-12-31</dueDate><detailDescription>TARI 2026</detailDescription><allCCP>false</allCCP></paymentOptionDescription></paymentList><paymentDescription>TARI 2026</paymentDescription><fiscalCodePA>80001234568</fiscalCodePA><companyName>Comune di Borgo Demo</companyName></pafn:paVerifyPaymentNoticeRes></soapenv:Body></soapenv:Envelope>"#;

async fn pa_for_node(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(BODY)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_string());
    // Same rule as mpay's `http.workers = 0`: one worker per core.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    println!("bench_station_baseline listening on http://{addr} ({workers} workers)");
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(1 << 20))
            .route("/pagopa/paForNode", web::post().to(pa_for_node))
    })
    .workers(workers)
    .bind(&addr)?
    .run()
    .await
}
