//! The pagoPA Checkout side of the simulator (SPEC §3.3; `checkout_v1.json` / `checkout_v2.json`
//! of the spec pack): `POST /checkout/ec/v1/carts` and `/checkout/ec/v2/carts` validate the
//! `CartRequest` as the OpenAPI says (1..5 notices, 18-digit notice numbers, 11-digit fiscal
//! codes, amounts ≥ 1 cent, texts ≤ 140, the return URLs — v2 also `returnWaitingUrl`), refuse
//! duplicated notices, and answer 302 to a simulated payment page. The page (a button to pay, a
//! button to cancel; `?autopay=1` for tests) plays the Node: one paGetPaymentV2 per notice with
//! `paymentNote` = `idCart`, the amount checked against the cart, then one paSendRTV2 each, and
//! the browser goes to the right return URL. Built from the spec, with the simulator's own XML.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::Value;

use crate::amount::Cents;
use crate::build::{
    get_payment_request, receipt_from_payment, send_rt_request, GetPaymentOpts, Op, PspInfo,
    QrCode, ReceiptDates, ReceiptOpts, StationIds, Version,
};
use crate::model::{parse_payment_data, parse_response};

/// Where the simulated Checkout sends the Node's calls.
#[derive(Debug, Clone)]
pub struct CheckoutSimConfig {
    /// The station's paForNode URL.
    pub station_url: String,
    /// idBrokerPA.
    pub broker: String,
    /// idStation.
    pub station: String,
}

#[derive(Debug, Clone)]
struct Notice {
    notice_number: String,
    fiscal_code: String,
    amount: i64,
    description: String,
    company_name: String,
}

#[derive(Debug, Clone)]
struct Session {
    notices: Vec<Notice>,
    id_cart: Option<String>,
    ok: String,
    cancel: String,
    error: String,
    done: bool,
}

struct Shared {
    cfg: CheckoutSimConfig,
    sessions: Mutex<HashMap<String, Session>>,
    client: reqwest::Client,
}

fn problem(status: u16, detail: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/problem+json")
        .json(serde_json::json!({"type": "about:blank", "title": "Bad Request", "status": status, "detail": detail}))
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A valid cart: notices, the ok/cancel/error return URLs, idCart.
type ValidCart = (Vec<Notice>, [String; 3], Option<String>);

/// Validates a `CartRequest` (v1) / `CartRequestV2` (v2) body; `Err` is the ProblemJson detail.
fn validate(version: u8, body: &Value) -> Result<ValidCart, String> {
    let obj = body.as_object().ok_or("body is not a JSON object")?;
    let notices = obj
        .get("paymentNotices")
        .and_then(Value::as_array)
        .ok_or("paymentNotices: required array")?;
    if notices.is_empty() || notices.len() > 5 {
        return Err(format!("paymentNotices: 1..5 items, got {}", notices.len()));
    }
    let mut out = Vec::new();
    for (i, n) in notices.iter().enumerate() {
        let nn = str_field(n, "noticeNumber")
            .ok_or(format!("paymentNotices[{i}].noticeNumber: required"))?;
        let fc = str_field(n, "fiscalCode")
            .ok_or(format!("paymentNotices[{i}].fiscalCode: required"))?;
        let amount = n
            .get("amount")
            .and_then(Value::as_i64)
            .ok_or(format!("paymentNotices[{i}].amount: required integer"))?;
        let cn = str_field(n, "companyName")
            .ok_or(format!("paymentNotices[{i}].companyName: required"))?;
        let d = str_field(n, "description")
            .ok_or(format!("paymentNotices[{i}].description: required"))?;
        if nn.chars().count() != 18 {
            return Err(format!("paymentNotices[{i}].noticeNumber: length 18"));
        }
        if fc.chars().count() != 11 {
            return Err(format!("paymentNotices[{i}].fiscalCode: length 11"));
        }
        if amount < 1 {
            return Err(format!("paymentNotices[{i}].amount: minimum 1"));
        }
        if cn.chars().count() > 140 || d.chars().count() > 140 {
            return Err(format!(
                "paymentNotices[{i}]: companyName/description maxLength 140"
            ));
        }
        if out
            .iter()
            .any(|o: &Notice| o.notice_number == nn && o.fiscal_code == fc)
        {
            return Err(format!("paymentNotices[{i}]: duplicated notice {fc}/{nn}"));
        }
        out.push(Notice {
            notice_number: nn.into(),
            fiscal_code: fc.into(),
            amount,
            description: d.into(),
            company_name: cn.into(),
        });
    }
    let urls = obj.get("returnUrls").ok_or("returnUrls: required")?;
    let mut need = vec!["returnOkUrl", "returnCancelUrl", "returnErrorUrl"];
    if version == 2 {
        need.push("returnWaitingUrl");
    }
    for k in &need {
        if str_field(urls, k).is_none_or(str::is_empty) {
            return Err(format!("returnUrls.{k}: required"));
        }
    }
    if let Some(e) = obj.get("emailNotice") {
        if !e.as_str().is_some_and(|e| e.contains('@')) {
            return Err("emailNotice: format email".into());
        }
    }
    let get = |k: &str| str_field(urls, k).unwrap_or("").to_string();
    Ok((
        out,
        [
            get("returnOkUrl"),
            get("returnCancelUrl"),
            get("returnErrorUrl"),
        ],
        str_field(body, "idCart").map(str::to_string),
    ))
}

async fn post_carts(
    shared: web::Data<Shared>,
    version: u8,
    body: web::Bytes,
    req: actix_web::HttpRequest,
) -> HttpResponse {
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return problem(400, "body is not JSON");
    };
    let (notices, [ok, cancel, error], id_cart) = match validate(version, &json) {
        Ok(x) => x,
        Err(d) => return problem(400, &d),
    };
    let id = format!("{:032x}", rand::random::<u128>());
    if let Ok(mut s) = shared.sessions.lock() {
        s.insert(
            id.clone(),
            Session {
                notices,
                id_cart,
                ok,
                cancel,
                error,
                done: false,
            },
        );
    }
    let ci = req.connection_info();
    let location = format!("{}://{}/checkout/pay/{id}", ci.scheme(), ci.host());
    HttpResponse::Found()
        .insert_header(("Location", location))
        .finish()
}

fn session(shared: &Shared, id: &str) -> Option<Session> {
    shared.sessions.lock().ok()?.get(id).cloned()
}

async fn page(
    shared: web::Data<Shared>,
    id: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(s) = session(&shared, &id) else {
        return HttpResponse::NotFound().body("cart not found (expired?)");
    };
    if q.get("autopay").map(String::as_str) == Some("1") {
        return pay_now(&shared, &id, &s).await;
    }
    let rows: String = s
        .notices
        .iter()
        .map(|n| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}.{:02} €</td></tr>",
                esc(&n.company_name),
                esc(&n.description),
                esc(&n.notice_number),
                n.amount / 100,
                n.amount % 100
            )
        })
        .collect();
    let total: i64 = s.notices.iter().map(|n| n.amount).sum();
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"it\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>pagoPA Checkout (simulatore)</title></head><body><main><h1>pagoPA Checkout (simulatore)</h1>\
         <table><caption>Avvisi</caption><thead><tr><th scope=\"col\">Ente</th><th scope=\"col\">Causale</th><th scope=\"col\">Avviso</th><th scope=\"col\">Importo</th></tr></thead><tbody>{rows}</tbody></table>\
         <p>Totale: {}.{:02} €</p>\
         <form method=\"post\" action=\"/checkout/pay/{id}/pay\"><button type=\"submit\" id=\"paga\">Paga</button></form>\
         <form method=\"post\" action=\"/checkout/pay/{id}/cancel\"><button type=\"submit\" id=\"annulla\">Annulla</button></form></main></body></html>",
        total / 100,
        total % 100,
        id = id.as_str()
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to.to_string()))
        .finish()
}

async fn pay(shared: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    let Some(s) = session(&shared, &id) else {
        return HttpResponse::NotFound().body("cart not found (expired?)");
    };
    pay_now(&shared, &id, &s).await
}

async fn cancel(shared: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    let Some(s) = session(&shared, &id) else {
        return HttpResponse::NotFound().body("cart not found (expired?)");
    };
    if let Ok(mut m) = shared.sessions.lock() {
        m.remove(id.as_str());
    }
    redirect(&s.cancel)
}

async fn soap(shared: &Shared, op: Op, body: String) -> Result<crate::model::SoapResponse, String> {
    let resp = shared
        .client
        .post(&shared.cfg.station_url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", op.name())
        .timeout(Duration::from_secs(15))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    parse_response(&text)
}

/// What the Node does for one notice: paGetPaymentV2 (paymentNote = idCart), amount check,
/// paSendRTV2.
async fn pay_notice(shared: &Shared, s: &Session, n: &Notice) -> Result<(), String> {
    let ids = StationIds {
        id_pa: n.fiscal_code.clone(),
        id_broker_pa: shared.cfg.broker.clone(),
        id_station: shared.cfg.station.clone(),
    };
    let qr = QrCode {
        fiscal_code: n.fiscal_code.clone(),
        notice_number: n.notice_number.clone(),
    };
    let opts = GetPaymentOpts {
        amount: Some(Cents(n.amount)),
        payment_note: s.id_cart.clone(),
        transfer_type: None,
        due_date: None,
    };
    let r = soap(
        shared,
        Op::get_payment(Version::V2),
        get_payment_request(Version::V2, &ids, &qr, &opts),
    )
    .await?;
    if r.label() != "OK" {
        return Err(format!("paGetPaymentV2 {}: {}", n.notice_number, r.label()));
    }
    let data = r.body.child("data").ok_or("paGetPaymentV2 without data")?;
    let data = parse_payment_data(data)?;
    if data.payment_amount.0 != n.amount {
        return Err(format!(
            "amount mismatch on {}: cart {} cents, station {} cents",
            n.notice_number, n.amount, data.payment_amount.0
        ));
    }
    let psp = PspInfo {
        id_psp: "SIMCHECKOUT".into(),
        fiscal_code: Some("00000000000".into()),
        partita_iva: None,
        company_name: "PSP simulato Checkout".into(),
        id_channel: "SIMCHECKOUT_01".into(),
        channel_description: "app".into(),
        payment_method: Some("CP".into()),
        fee: Some(Cents(100)),
    };
    let ropts = ReceiptOpts {
        payment_note: s.id_cart.clone(),
        id_bundle: None,
        primary_ci_incurred_fee: Some(Cents(0)),
        payer: None,
        fallback_company_name: Some(n.company_name.clone()),
    };
    let mut rng = rand::rng();
    let receipt = receipt_from_payment(
        Version::V2,
        &qr,
        &data,
        &psp,
        &ReceiptDates::now(),
        &ropts,
        &mut rng,
    )?;
    let body = send_rt_request(Version::V2, &ids, &receipt)?;
    let r = soap(shared, Op::send_rt(Version::V2), body).await?;
    if r.label() != "OK" {
        return Err(format!("paSendRTV2 {}: {}", n.notice_number, r.label()));
    }
    Ok(())
}

async fn pay_now(shared: &Shared, id: &str, s: &Session) -> HttpResponse {
    if s.done {
        return redirect(&s.ok);
    }
    // activation first for every notice (as Checkout does), then the receipts
    for n in &s.notices {
        if let Err(e) = pay_notice(shared, s, n).await {
            eprintln!("checkout sim: {e}");
            return redirect(&s.error);
        }
    }
    if let Ok(mut m) = shared.sessions.lock() {
        if let Some(x) = m.get_mut(id) {
            x.done = true;
        }
    }
    redirect(&s.ok)
}

/// Routes of the simulated Checkout (mount them on any actix-web app).
pub fn configure(cfg: CheckoutSimConfig) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let shared = web::Data::new(Shared {
        cfg,
        sessions: Mutex::new(HashMap::new()),
        client: reqwest::Client::new(),
    });
    move |c: &mut web::ServiceConfig| {
        c.app_data(shared.clone())
            .route(
                "/checkout/ec/v1/carts",
                web::post().to(|s, b, r| post_carts(s, 1, b, r)),
            )
            .route(
                "/checkout/ec/v2/carts",
                web::post().to(|s, b, r| post_carts(s, 2, b, r)),
            )
            .route("/checkout/pay/{id}", web::get().to(page))
            .route("/checkout/pay/{id}/pay", web::post().to(pay))
            .route("/checkout/pay/{id}/cancel", web::post().to(cancel));
    }
}

/// Starts the simulated Checkout on `listener` (port 0 in tests); returns the server to await
/// or spawn.
pub fn serve(
    cfg: CheckoutSimConfig,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let routes = configure(cfg);
    Ok(
        HttpServer::new(move || App::new().configure(routes.clone()))
            .workers(1)
            .listen(listener)?
            .run(),
    )
}
