//! Reporting-flow forwarding across SIGKILL (issue 13, INTERFACES.md §6.3): the `mpay` binary as
//! a process, a webhook Ente with flows on (slow on purpose, so kills land mid-delivery), flows
//! imported through `POST …/fdrs/import` — one of them while the node is being killed — and the
//! node killed with SIGKILL at random moments, round after round, on the same store. After the
//! last restart: every flow the node stored (acknowledged or not) reached the Ente, every
//! acknowledged import is among them, each flow under one `Idempotency-Key` (no flow without its
//! notification, none twice), and a re-import of a flow already stored forwards nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::node::{ready, start};
use common::{config_text, KEY_A, ORG_A};
use rand::Rng as _;
use serde_json::Value;

const SECRET: &str = "webhook-secret-of-the-ente-0123";

type Log = Arc<Mutex<Vec<(String, String, bool)>>>;

async fn receive(req: HttpRequest, body: web::Bytes, log: web::Data<Log>) -> HttpResponse {
    actix_rt::time::sleep(Duration::from_millis(25)).await;
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ts: i64 = h("X-Mpay-Timestamp").parse().unwrap_or_default();
    let signed = mpay_messages::wire::ente::verify_signature(
        SECRET.as_bytes(),
        ts,
        &body,
        &h("X-Mpay-Signature"),
    );
    log.lock().unwrap().push((
        h("Idempotency-Key"),
        String::from_utf8_lossy(&body).into_owned(),
        signed,
    ));
    HttpResponse::NoContent().finish()
}

/// A FlussoRiversamento of organization A with one executed row of `cents`.
fn flow(id: &str, cents: i64) -> String {
    let euros = format!("{}.{:02}", cents / 100, cents % 100);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><pag:FlussoRiversamento xmlns:pag=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<pag:versioneOggetto>1.0</pag:versioneOggetto><pag:identificativoFlusso>{id}</pag:identificativoFlusso>\
<pag:dataOraFlusso>2026-07-04T08:30:00</pag:dataOraFlusso><pag:identificativoUnivocoRegolamento>TRN-{id}</pag:identificativoUnivocoRegolamento>\
<pag:dataRegolamento>2026-07-03</pag:dataRegolamento><pag:istitutoMittente><pag:identificativoUnivocoMittente>\
<pag:tipoIdentificativoUnivoco>B</pag:tipoIdentificativoUnivoco><pag:codiceIdentificativoUnivoco>PSPXITXXXXX</pag:codiceIdentificativoUnivoco>\
</pag:identificativoUnivocoMittente><pag:denominazioneMittente>PSP di Prova</pag:denominazioneMittente></pag:istitutoMittente>\
<pag:istitutoRicevente><pag:identificativoUnivocoRicevente><pag:tipoIdentificativoUnivoco>G</pag:tipoIdentificativoUnivoco>\
<pag:codiceIdentificativoUnivoco>{ORG_A}</pag:codiceIdentificativoUnivoco></pag:identificativoUnivocoRicevente></pag:istitutoRicevente>\
<pag:numeroTotalePagamenti>1</pag:numeroTotalePagamenti><pag:importoTotalePagamenti>{euros}</pag:importoTotalePagamenti>\
<pag:datiSingoliPagamenti><pag:identificativoUnivocoVersamento>01000000000000001</pag:identificativoUnivocoVersamento>\
<pag:identificativoUnivocoRiscossione>iur-{id}</pag:identificativoUnivocoRiscossione><pag:indiceDatiSingoloPagamento>1</pag:indiceDatiSingoloPagamento>\
<pag:singoloImportoPagato>{euros}</pag:singoloImportoPagato><pag:codiceEsitoSingoloPagamento>0</pag:codiceEsitoSingoloPagamento>\
<pag:dataEsitoSingoloPagamento>2026-07-02</pag:dataEsitoSingoloPagamento></pag:datiSingoliPagamenti></pag:FlussoRiversamento>"
    )
}

/// Imports a flow; the status, or `None` when the node died before answering.
async fn import(client: &reqwest::Client, base: &str, id: &str, cents: i64) -> Option<u16> {
    client
        .post(format!("{base}/api/v1/organizations/{ORG_A}/fdrs/import"))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("X-File-Name", format!("{id}.xml"))
        .body(flow(id, cents))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    let r = client
        .get(url)
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[actix_web::test]
async fn sigkill_never_leaves_a_stored_flow_without_its_forwarding_nor_forwards_one_twice() {
    let log: Log = Arc::default();
    let data = web::Data::new(log.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let mut text = config_text(&dir.path().join("data"));
    let second = text.match_indices("[[organizations]]").nth(1).unwrap().0;
    text.insert_str(
        second,
        &format!(
            "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\nflows = true\n"
        ),
    );
    text.push_str(
        "\n[notifications]\nbackoff_base_ms = 50\nbackoff_max_ms = 200\nbreaker_failures = 5\nbreaker_open_ms = 200\nbatch = 4\n",
    );
    std::fs::write(&cfg, text).unwrap();

    let client = reqwest::Client::new();
    let mut acked: Vec<String> = Vec::new();
    let rounds = 4;
    for round in 0..rounds {
        let mut node = start(&cfg, &[]);
        ready(&client, &node.base).await;
        for i in 0..5 {
            let id = format!("2026-07-04PSPXITXXXXX-K{round}{i}");
            assert_eq!(import(&client, &node.base, &id, 100 + i).await, Some(201));
            acked.push(id);
        }
        // a flow already stored, imported again: nothing to forward
        if let Some(first) = acked.first().cloned() {
            assert_eq!(import(&client, &node.base, &first, 100).await, Some(200));
        }
        // one more import racing the kill: forwarded if it was stored, whatever the answer
        let (c, base) = (client.clone(), node.base.clone());
        let racing_id = format!("2026-07-04PSPXITXXXXX-R{round}");
        let racing = actix_rt::spawn({
            let id = racing_id.clone();
            async move { import(&c, &base, &id, 999).await }
        });
        let wait = rand::rng().random_range(0..120);
        actix_rt::time::sleep(Duration::from_millis(wait)).await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
        if racing.await.unwrap() == Some(201) {
            acked.push(racing_id);
        }
    }
    // the last life: everything stored is forwarded
    let mut node = start(&cfg, &[]);
    ready(&client, &node.base).await;
    let stored: HashSet<String> = get(
        &client,
        format!("{}/api/v1/organizations/{ORG_A}/fdrs", node.base),
    )
    .await["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flowId"].as_str().unwrap().to_string())
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged flow {id} stored");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(
            &client,
            format!(
                "{}/api/v1/organizations/{ORG_A}/notifications?state=DELIVERED&limit=50",
                node.base
            ),
        )
        .await;
        if v["pageInfo"]["items_found"].as_u64() == Some(stored.len() as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all delivered ({} stored): {v}",
            stored.len()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let all = get(
        &client,
        format!(
            "{}/api/v1/organizations/{ORG_A}/notifications?limit=50",
            node.base
        ),
    )
    .await;
    assert_eq!(
        all["pageInfo"]["items_found"].as_u64(),
        Some(stored.len() as u64),
        "one notification per stored flow: {all}"
    );
    let before = log.lock().unwrap().len();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let entries = log.lock().unwrap().clone();
    assert_eq!(entries.len(), before, "nothing again after the acks");
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (key, body, signed) in &entries {
        assert!(signed, "every delivery signed");
        by_key.entry(key.clone()).or_default().push(body.clone());
    }
    let mut forwarded: Vec<String> = by_key
        .values()
        .map(|bodies| {
            assert!(
                bodies.iter().all(|b| b == &bodies[0]),
                "a key always carries the same flow"
            );
            let v: Value = serde_json::from_str(&bodies[0]).unwrap();
            assert_eq!(v["event"], "REPORTING_FLOW");
            assert_eq!(v["rows"].as_array().unwrap().len(), 1);
            v["flowId"].as_str().unwrap().to_string()
        })
        .collect();
    forwarded.sort();
    let distinct: HashSet<String> = forwarded.iter().cloned().collect();
    assert_eq!(distinct.len(), forwarded.len(), "each flow under one key");
    assert_eq!(distinct, stored, "every stored flow forwarded, no other");
    let redeliveries = entries.len() - by_key.len();
    eprintln!(
        "{} flows stored ({} acknowledged), {} deliveries, {redeliveries} redeliveries across {rounds} SIGKILLs",
        stored.len(),
        acked.len(),
        entries.len()
    );
    assert!(redeliveries <= rounds * 4, "{redeliveries} redeliveries");
}
