//! `ops/bench/notify`: Ente notifications through the outbox, measured (issue 13).
//!
//! One process: the node (in-process, temp store, the tests' configuration with a webhook
//! endpoint for organization A; the NATS bus when `BENCH_NATS` is a URL), a test Ente (actix-web
//! on port 0: checks nothing, parses each body and records when its receipt arrived — the
//! baseline's calls alike —, answers 204) and the load:
//! `paSendRTV2` requests to the station for notices without a position (stored as ORPHAN
//! receipts: the station's fastest path, so that the intake does not hide the outbox).
//!
//! 1. **baseline**: the same webhook calls (bodies and headers as the connector sends them)
//!    made directly in a loop, one at a time (the baseline), and again with
//!    `BENCH_CONCURRENCY` calls in flight (the connector's `[notifications] concurrency`, 8 by
//!    default: the fair comparison for a connector that delivers that many positions at once);
//!    for comparison also the loop to an Ente that answers without reading the body (the
//!    baseline of the runs before 2026-12-05 evening);
//! 2. **drain**: `BENCH_RECEIPTS` receipts stored while the Ente holds its first answer (the
//!    outbox fills), then released: deliveries per second until the last ack;
//! 3. **lag**: `BENCH_LAG_SECS` seconds of receipts at `BENCH_RATE` per second: lag from the
//!    station's answer (the receipt durable) to the Ente's receipt of the call, p50/p99/max.
//!
//! Prints figures, never fails on them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{KEY_A, ORG_A};
use serde_json::Value;

/// The allocator of the `mpay` binary (src/main.rs): the node measured here allocates as the
/// real one does (glibc malloc was a fifth of this bench's profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A call as the connector made it: headers and body.
type Sample = (Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct Ente {
    /// receiptId → when its notification arrived.
    arrived: HashMap<String, Instant>,
    /// (headers, body) of the first calls: the baseline replays them.
    samples: Vec<Sample>,
    calls: u64,
    /// The baseline's calls, recorded as the connector's are.
    baseline_arrived: HashMap<String, Instant>,
}

struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    ente: web::Data<Arc<Mutex<Ente>>>,
    gate: web::Data<Gate>,
) -> HttpResponse {
    let mut open = gate.open.clone();
    while !*open.borrow() {
        if open.changed().await.is_err() {
            break;
        }
    }
    let now = Instant::now();
    if req.path() == "/bare" {
        // the earlier baseline's Ente: answers without reading the body
        return HttpResponse::NoContent().finish();
    }
    // the same work for the baseline's calls as for the connector's (the baseline measures
    // the calls, not a cheaper Ente)
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = v["receipt"]["receiptId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut e = ente.lock().unwrap();
    if req.path() == "/baseline" {
        e.baseline_arrived.entry(id).or_insert(now);
        return HttpResponse::NoContent().finish();
    }
    e.calls += 1;
    e.arrived.entry(id).or_insert(now);
    if e.samples.len() < 2000 {
        let headers = req
            .headers()
            .iter()
            .filter(|(n, _)| {
                n.as_str().starts_with("x-mpay") || *n == "idempotency-key" || *n == "content-type"
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        e.samples.push((headers, body.to_vec()));
    }
    HttpResponse::NoContent().finish()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The station's paSendRTV2 for a notice without a position: the template with the receipt
/// id, notice number and IUV replaced.
fn receipt_request(
    template: &(String, String, String, String),
    n: u64,
    run: &str,
) -> (String, String) {
    let (xml, rid, nav, iuv) = template;
    let new_iuv = format!("{:017}", 50_000_000_000_000_000u64 / 10 + n);
    let new_nav = format!("3{new_iuv}");
    let new_rid = format!("bench-{run}-{n}");
    let x = xml
        .replace(rid.as_str(), &new_rid)
        .replace(nav.as_str(), &new_nav)
        .replace(iuv.as_str(), &new_iuv);
    (new_rid, x)
}

async fn send(client: &reqwest::Client, base: &str, body: String) {
    for _ in 0..20 {
        if let Ok(r) = client
            .post(format!("{base}/pagopa/paForNode"))
            .header("content-type", "text/xml; charset=utf-8")
            .header("SOAPAction", "paSendRTV2")
            .body(body.clone())
            .send()
            .await
        {
            if r.status() == 200
                && r.text()
                    .await
                    .is_ok_and(|t| t.contains("<outcome>OK</outcome>"))
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the station did not store a receipt");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[actix_web::main]
async fn main() {
    let receipts = env("BENCH_RECEIPTS", 100_000);
    let rate = env("BENCH_RATE", 1000);
    let lag_secs = env("BENCH_LAG_SECS", 10);
    let conns = env("BENCH_CONNS", 16) as usize;
    let nats = std::env::var("BENCH_NATS").unwrap_or_default();
    // the connector's calls in flight (config default unless BENCH_CONCURRENCY is set)
    let concurrency = env("BENCH_CONCURRENCY", 8) as usize;
    let bus = if nats.is_empty() {
        "in-process"
    } else {
        "NATS"
    };

    // the Ente
    let ente: Arc<Mutex<Ente>> = Arc::default();
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(true);
    let (data, gate) = (
        web::Data::new(ente.clone()),
        web::Data::new(Gate { open: gate_rx }),
    );
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(gate.clone())
            .default_service(web::to(receive))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());

    // the node: organization A notified by webhook
    let url = format!("http://127.0.0.1:{port}/hook");
    let nats2 = nats.clone();
    let app = common::spawn_app_edited(move |mut cfg| {
        let second = cfg.match_indices("[[organizations]]").nth(1).unwrap().0;
        cfg.insert_str(
            second,
            &format!(
                "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"bench-secret-0123456789\"\ntimeout_ms = 600000\n"
            ),
        );
        cfg.push_str(&format!("\n[notifications]\nbackoff_base_ms = 200\nbackoff_max_ms = 1000\nbatch = 256\nconcurrency = {concurrency}\n"));
        if !nats2.is_empty() {
            cfg.push_str(&format!("\n[bus]\nnats_url = \"{nats2}\"\n"));
        }
        cfg
    })
    .await;

    // a real payment gives the template request (then only orphans are sent)
    let body = common::position_body("BENCH-TEMPLATE", 1200);
    let r = app.post(ORG_A, KEY_A, "?toPublish=true", &body).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let nav = v["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let paid = common::pay_notice(&app.client, &app.base, ORG_A, &nav).await;
    let template = (
        paid.request.clone(),
        paid.receipt_id.clone(),
        nav.clone(),
        paid.iuv.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while ente.lock().unwrap().arrived.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the template's notification never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();

    // 2. drain: the Ente holds its answers while the outbox fills
    gate_tx.send(false).unwrap();
    let t_fill = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, base, next, template) = (
            client.clone(),
            app.base.clone(),
            next.clone(),
            template.clone(),
        );
        tasks.push(actix_rt::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= receipts {
                    break;
                }
                let (_, x) = receipt_request(&template, n, "d");
                send(&client, &base, x).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fill = t_fill.elapsed();
    let before = ente.lock().unwrap().arrived.len() as u64;
    let t_drain = Instant::now();
    gate_tx.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let n = ente.lock().unwrap().arrived.len() as u64;
        if n >= before + receipts {
            break;
        }
        assert!(Instant::now() < deadline, "drain: {n} of {receipts}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = t_drain.elapsed();
    let drain_rate = receipts as f64 / drain.as_secs_f64();
    let calls_after_drain = ente.lock().unwrap().calls;

    // 1. baseline: the same calls, directly, one at a time in a loop; and the same calls with
    //    as many in flight as the connector has (`[notifications] concurrency`)
    let samples = Arc::new(ente.lock().unwrap().samples.clone());
    let base_n = receipts.min(50_000);
    let call = move |client: reqwest::Client,
                     samples: Arc<Vec<Sample>>,
                     i: u64,
                     path: &'static str| async move {
        let (headers, body) = &samples[(i as usize) % samples.len()];
        let mut req = client.post(format!("http://127.0.0.1:{port}/{path}"));
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let r = req.body(body.clone()).send().await.unwrap();
        assert!(r.status().is_success());
    };
    let t_base = Instant::now();
    for i in 0..base_n {
        call(client.clone(), samples.clone(), i, "baseline").await;
    }
    let base_rate = base_n as f64 / t_base.elapsed().as_secs_f64();
    // the same loop to an Ente that answers without reading the body (the baseline of the
    // earlier runs: shown for comparison)
    let t_base = Instant::now();
    for i in 0..base_n {
        call(client.clone(), samples.clone(), i, "bare").await;
    }
    let bare_rate = base_n as f64 / t_base.elapsed().as_secs_f64();
    let t_base = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, samples, next) = (client.clone(), samples.clone(), next.clone());
        tasks.push(actix_rt::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= base_n {
                    break;
                }
                call(client.clone(), samples.clone(), i, "baseline").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let base_conc_rate = base_n as f64 / t_base.elapsed().as_secs_f64();

    // 3. lag at a fixed rate
    let lag_n = rate * lag_secs;
    let stored: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let per_task = lag_n.div_ceil(conns as u64);
    for c in 0..conns as u64 {
        let (client, base, template, stored) = (
            client.clone(),
            app.base.clone(),
            template.clone(),
            stored.clone(),
        );
        tasks.push(actix_rt::spawn(async move {
            for k in 0..per_task {
                let n = k * conns as u64 + c;
                if n >= lag_n {
                    break;
                }
                // receipt n is due at t0 + n / rate
                let due = t0 + Duration::from_secs_f64(n as f64 / rate as f64);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(w).await;
                }
                let (rid, x) = receipt_request(&template, receipts + n, "l");
                send(&client, &base, x).await;
                stored.lock().unwrap().insert(rid, Instant::now());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let offered = lag_n as f64 / t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    let lags_now = || {
        let (st, e) = (stored.lock().unwrap(), ente.lock().unwrap());
        st.iter()
            .filter_map(|(rid, at)| e.arrived.get(rid).map(|a| a.saturating_duration_since(*at)))
            .collect::<Vec<Duration>>()
    };
    let mut lags = loop {
        let lags = lags_now();
        if lags.len() as u64 >= lag_n || Instant::now() > deadline {
            break lags;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    lags.sort();
    let redelivered = ente.lock().unwrap().calls - calls_after_drain - lags.len() as u64;

    println!(
        "notify bench ({bus} bus, {} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "  intake:   {receipts} receipts stored in {:.1} s ({:.0}/s, {conns} connections)",
        fill.as_secs_f64(),
        receipts as f64 / fill.as_secs_f64()
    );
    println!("  baseline: {base_n} webhook calls in a loop, one at a time: {base_rate:.0} calls/s");
    println!("  baseline: the same loop to an Ente that does not read the body: {bare_rate:.0} calls/s (outbox = {:.2} x)", drain_rate / bare_rate);
    println!("  baseline: {base_n} webhook calls, {concurrency} in flight (the connector's concurrency): {base_conc_rate:.0} calls/s");
    println!("  outbox:   {receipts} deliveries drained in {:.1} s: {drain_rate:.0} deliveries/s = {:.2} x loop baseline (target >= 0.8), {:.2} x {concurrency}-in-flight baseline", drain.as_secs_f64(), drain_rate / base_rate, drain_rate / base_conc_rate);
    println!(
        "  lag:      {} receipts at {offered:.0}/s offered: p50 {} ms, p99 {} ms, max {} ms (target p99 <= 1000 ms){}",
        lags.len(),
        pct(&lags, 0.5).as_millis(),
        pct(&lags, 0.99).as_millis(),
        lags.last().copied().unwrap_or_default().as_millis(),
        if redelivered > 0 { format!("; {redelivered} calls beyond one per receipt") } else { String::new() }
    );
    app.handle.stop(false).await;
    // leave now: tearing the runtime down drops the node's NATS client after its reactor is
    // gone (async-nats panics "no reactor running"; `mpay serve` stops its bus first)
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}
