//! `mpay dev ente-receiver`: a stand-in for an Ente's system that prints every notification it
//! receives — a signed JSON webhook (signature checked when `--secret` is given) or MPay's SOAP
//! `notificaPagamento` (answered `retcode 00`), or a reporting flow (`inviaFlussoRend`, answered
//! `retcode 00`; the webhook's `REPORTING_FLOW` is printed like any webhook) — for demos and for
//! trying an integration.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mpay_messages::wire::ente::{self, Pagato};

struct Receiver {
    secret: Option<String>,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn receive(req: HttpRequest, body: web::Bytes, rx: web::Data<Receiver>) -> HttpResponse {
    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
    let soap = header(&req, "content-type").is_some_and(|c| c.contains("xml"));
    if soap && String::from_utf8_lossy(&body).contains("InviaFlussoRendRequest") {
        // a reporting flow (inviaFlussoRend): printed as received, answered retcode 00
        println!(
            "{now} inviaFlussoRend {} ({} records)\n{}",
            req.path(),
            String::from_utf8_lossy(&body)
                .matches("RecordVersamento>")
                .count()
                / 2,
            String::from_utf8_lossy(&body)
        );
        return HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(mpay_messages::wire::ente_flow::invia_flusso_response_soap(
                "00", "OK",
            ));
    }
    if soap {
        return match ente::decode_notifica(&body) {
            Ok(n) => {
                let what = match &n.pagato {
                    Pagato::Avviso(nav) => format!("notice {nav}"),
                    Pagato::Spontaneo(s) => format!(
                        "spontaneous payment, service {} ({})",
                        s.codice_tipologia_servizio, s.tipo_spontaneo.causale_servizio
                    ),
                };
                println!(
                    "{now} notificaPagamento {} codiceEnte={} {what} importo={} cents dataPagamento={} transazione={}",
                    req.path(),
                    n.codice_ente,
                    n.importo_pagato,
                    n.data_pagamento,
                    n.codice_transazione
                );
                HttpResponse::Ok()
                    .content_type("text/xml; charset=utf-8")
                    .body(ente::risultato_soap("00", "OK"))
            }
            Err(e) => {
                println!("{now} SOAP request not understood: {e}");
                HttpResponse::Ok()
                    .content_type("text/xml; charset=utf-8")
                    .body(ente::risultato_soap("01", &e))
            }
        };
    }
    let key = header(&req, ente::IDEMPOTENCY_HEADER).unwrap_or("-");
    let signature = match (
        &rx.secret,
        header(&req, ente::TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok()),
        header(&req, ente::SIGNATURE_HEADER),
    ) {
        (None, _, _) => "not checked (no --secret)",
        (Some(secret), Some(ts), Some(sig))
            if ente::verify_signature(secret.as_bytes(), ts, &body, sig) =>
        {
            "valid"
        }
        (Some(_), _, _) => "INVALID",
    };
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    println!(
        "{now} webhook {} Idempotency-Key={key} signature {signature}\n{pretty}",
        req.path()
    );
    if signature == "INVALID" {
        HttpResponse::Unauthorized().body("bad signature")
    } else {
        HttpResponse::NoContent().finish()
    }
}

/// Serves until Ctrl-C.
pub fn ente_receiver(bind: &str, secret: Option<String>) -> anyhow::Result<()> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let data = web::Data::new(Receiver { secret });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(bind)?;
        for a in server.addrs() {
            println!("Ente receiver listening on http://{a}/ (Ctrl-C to stop)");
        }
        server.run().await?;
        Ok(())
    })
}
