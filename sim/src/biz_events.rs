//! pagoPA's biz-events API for organizations (`biz_events.json`), as far as receipt recovery
//! needs it: `getOrganizationReceiptIur` (`GET /organizations/{cf}/receipts/{iur}`) and
//! `getOrganizationReceiptIuvIur` (`GET /organizations/{cf}/receipts/{iur}/paymentoptions/{iuv}`),
//! answering `CtReceiptModelResponse` JSON, 404 with a ProblemJson, 401 without the
//! subscription key when one is required, 429 past an hourly quota when one is set.
//!
//! The receipts it knows are given, not invented: a **JSON lines file** (one
//! `CtReceiptModelResponse` object per line, exactly as the API answers it; blank lines and lines
//! starting with `#` are skipped), receipts on the command line (`pagopa-sim biz-events
//! --receipt JSON`), or [`receipt_json`] of a receipt the PSP simulator built. A line is served
//! byte-exact. Lookup: `fiscalCode` = `{cf}` and `receiptId` = `{iur}` (and
//! `creditorReferenceId` = `{iuv}` on the second path). A caller that never saw the payment
//! token may pass the IUV as `{iur}`: the simulator then matches `creditorReferenceId` too (the
//! real API's behaviour for that case is not documented: see the node's receipt recovery).
//!
//! Independent of the platform's crates like the rest of the simulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::build::{Receipt, ReceiptAccount};
use crate::model::Subject;

/// One receipt the API knows: its JSON text and the keys it is found by.
#[derive(Debug, Clone)]
pub struct KnownReceipt {
    /// `fiscalCode`.
    pub fiscal_code: String,
    /// `receiptId`.
    pub receipt_id: String,
    /// `creditorReferenceId` (IUV).
    pub iuv: String,
    /// The JSON served, byte-exact.
    pub json: String,
}

impl KnownReceipt {
    /// Reads one `CtReceiptModelResponse` JSON text.
    ///
    /// # Errors
    /// Not a JSON object with `fiscalCode`, `receiptId`, `creditorReferenceId`.
    pub fn parse(text: &str) -> Result<KnownReceipt, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("no {k}"))
        };
        Ok(KnownReceipt {
            fiscal_code: get("fiscalCode")?,
            receipt_id: get("receiptId")?,
            iuv: get("creditorReferenceId")?,
            json: text.trim().to_string(),
        })
    }
}

/// Reads a JSON lines file of receipts (see the module docs).
///
/// # Errors
/// The file cannot be read, or a line is not a receipt (its number is named).
pub fn read_jsonl(text: &str) -> Result<Vec<KnownReceipt>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| KnownReceipt::parse(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn subject_json(s: &Subject) -> Value {
    json!({
        "entityUniqueIdentifierType": s.id_type,
        "entityUniqueIdentifierValue": s.id_value,
        "fullName": s.full_name,
        "streetName": s.street_name,
        "civicNumber": s.civic_number,
        "postalCode": s.postal_code,
        "city": s.city,
        "stateProvinceRegion": s.state_province_region,
        "country": s.country,
        "email": s.email,
    })
}

/// The `CtReceiptModelResponse` of a receipt the simulator built (amounts as JSON numbers with
/// two decimals, written from cents: never a float).
pub fn receipt_json(r: &Receipt) -> String {
    // amounts go in as raw number text: serde_json would write a float
    const AMOUNT: &str = "\u{0}AMOUNT:";
    let amount = |c: crate::amount::Cents| format!("{AMOUNT}{}", c.to_xml());
    let transfers: Vec<Value> = r
        .transfers
        .iter()
        .map(|t| {
            let (iban, mbd) = match &t.account {
                ReceiptAccount::Iban(i) => (i.clone(), String::new()),
                ReceiptAccount::MbdAttachment(m) => (String::new(), m.clone()),
            };
            json!({
                "idTransfer": t.id_transfer,
                "transferAmount": amount(t.amount),
                "fiscalCodePA": t.fiscal_code_pa,
                "iban": iban,
                "mbdAttachment": mbd,
                "remittanceInformation": t.remittance_information,
                "transferCategory": t.transfer_category,
                "metadata": t.metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = json!({
        "receiptId": r.receipt_id,
        "noticeNumber": r.notice_number,
        "fiscalCode": r.fiscal_code,
        "outcome": "OK",
        "creditorReferenceId": r.creditor_reference_id,
        "paymentAmount": amount(r.payment_amount),
        "description": r.description,
        "companyName": r.company_name,
        "officeName": r.office_name,
        "debtor": subject_json(&r.debtor),
        "transferList": transfers,
        "idPSP": r.psp.id_psp,
        "pspFiscalCode": r.psp.fiscal_code,
        "pspPartitaIVA": r.psp.partita_iva,
        "pspCompanyName": r.psp.company_name,
        "idChannel": r.psp.id_channel,
        "channelDescription": r.psp.channel_description,
        "payer": r.payer.as_ref().map(subject_json),
        "paymentMethod": r.psp.payment_method,
        "fee": r.psp.fee.map(amount),
        "idBundle": r.id_bundle,
        "paymentDateTime": r.payment_date_time,
        "applicationDate": r.application_date,
        "transferDate": r.transfer_date,
        "metadata": r.metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    });
    // "\u0000AMOUNT:12.34" → 12.34 (the marker cannot occur in real text: NUL is escaped)
    let text = v.to_string();
    let marker = "\"\\u0000AMOUNT:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some((before, after)) = rest.split_once(marker) {
        out.push_str(before);
        let (number, tail) = after.split_once('"').unwrap_or((after, ""));
        out.push_str(number);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The simulated API: what it knows, what it requires, what it served.
#[derive(Debug)]
pub struct BizEventsSim {
    receipts: Mutex<Vec<KnownReceipt>>,
    subscription_key: Option<String>,
    calls_per_hour: Option<usize>,
    calls: Mutex<Vec<Instant>>,
    served: AtomicUsize,
}

impl BizEventsSim {
    /// An API knowing `receipts`; `subscription_key` required when given; `calls_per_hour`
    /// answered 429 past that many calls in the last hour when given.
    pub fn new(
        receipts: Vec<KnownReceipt>,
        subscription_key: Option<String>,
        calls_per_hour: Option<usize>,
    ) -> Arc<BizEventsSim> {
        Arc::new(BizEventsSim {
            receipts: Mutex::new(receipts),
            subscription_key,
            calls_per_hour,
            calls: Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
        })
    }

    /// Learns one more receipt (a payment made after the server started).
    pub fn add(&self, r: KnownReceipt) {
        self.receipts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(r);
    }

    /// Requests answered (any status), to check a caller's rate limit.
    pub fn requests(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    fn find(&self, org: &str, iur: &str, iuv: Option<&str>) -> Option<String> {
        let all = self
            .receipts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .find(|r| {
                r.fiscal_code == org
                    && match iuv {
                        Some(iuv) => r.receipt_id == iur && r.iuv == iuv,
                        None => r.receipt_id == iur || r.iuv == iur,
                    }
            })
            .map(|r| r.json.clone())
    }

    fn answer(&self, req: &HttpRequest, org: &str, iur: &str, iuv: Option<&str>) -> HttpResponse {
        self.served.fetch_add(1, Ordering::SeqCst);
        let request_id = req
            .headers()
            .get("X-Request-Id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| format!("sim-{}", self.requests()), str::to_string);
        if let Some(key) = &self.subscription_key {
            let given = req
                .headers()
                .get("Ocp-Apim-Subscription-Key")
                .and_then(|v| v.to_str().ok());
            if given != Some(key.as_str()) {
                return HttpResponse::Unauthorized()
                    .insert_header(("X-Request-Id", request_id))
                    .finish();
            }
        }
        if let Some(limit) = self.calls_per_hour {
            let mut calls = self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let hour = Duration::from_secs(3600);
            calls.retain(|t| t.elapsed() < hour);
            if calls.len() >= limit {
                return HttpResponse::TooManyRequests()
                    .insert_header(("X-Request-Id", request_id))
                    .finish();
            }
            calls.push(Instant::now());
        }
        match self.find(org, iur, iuv) {
            Some(text) => HttpResponse::Ok()
                .insert_header(("X-Request-Id", request_id))
                .content_type("application/json")
                .body(text),
            None => HttpResponse::NotFound()
                .insert_header(("X-Request-Id", request_id))
                .content_type("application/json")
                .body(
                    json!({"title": "Not found the receipt.", "status": 404,
                           "detail": format!("no receipt {iur} for {org}")})
                    .to_string(),
                ),
        }
    }
}

async fn by_iur(
    sim: web::Data<Arc<BizEventsSim>>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (org, iur) = path.into_inner();
    sim.answer(&req, &org, &iur, None)
}

async fn by_iur_iuv(
    sim: web::Data<Arc<BizEventsSim>>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (org, iur, iuv) = path.into_inner();
    sim.answer(&req, &org, &iur, Some(&iuv))
}

/// Routes under `prefix` (e.g. `/bizevents/service/v1`, or "" to serve at the root).
pub fn configure(sim: Arc<BizEventsSim>, prefix: &str) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let data = web::Data::new(sim);
    let prefix = prefix.trim_end_matches('/').to_string();
    move |c: &mut web::ServiceConfig| {
        c.app_data(data.clone())
            .route(
                &format!("{prefix}/organizations/{{cf}}/receipts/{{iur}}"),
                web::get().to(by_iur),
            )
            .route(
                &format!("{prefix}/organizations/{{cf}}/receipts/{{iur}}/paymentoptions/{{iuv}}"),
                web::get().to(by_iur_iuv),
            );
    }
}

/// Starts the API on `listener` (port 0 in tests) under `prefix`; returns the server to await
/// or spawn.
///
/// # Errors
/// The listener cannot be used.
pub fn serve(
    sim: Arc<BizEventsSim>,
    prefix: &str,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let routes = configure(sim, prefix);
    Ok(
        HttpServer::new(move || App::new().configure(routes.clone()))
            .workers(1)
            .listen(listener)?
            .run(),
    )
}

/// `pagopa-sim biz-events` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Listen address.
    pub bind: String,
    /// JSON lines file of receipts.
    pub receipts: Option<std::path::PathBuf>,
    /// Receipts given as JSON texts.
    pub receipt: Vec<String>,
    /// Required subscription key.
    pub subscription_key: Option<String>,
    /// Hourly quota answered 429 past it.
    pub calls_per_hour: Option<usize>,
    /// Path prefix.
    pub prefix: String,
}

/// `pagopa-sim biz-events`: serves until interrupted; exit code 2 on a bad file or address.
pub fn run(o: Options) -> std::process::ExitCode {
    let mut known = Vec::new();
    if let Some(path) = &o.receipts {
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| read_jsonl(&t))
        {
            Ok(mut r) => known.append(&mut r),
            Err(e) => {
                eprintln!("pagopa-sim: {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        }
    }
    for (i, text) in o.receipt.iter().enumerate() {
        match KnownReceipt::parse(text) {
            Ok(r) => known.push(r),
            Err(e) => {
                eprintln!("pagopa-sim: --receipt #{}: {e}", i + 1);
                return std::process::ExitCode::from(2);
            }
        }
    }
    let listener = match std::net::TcpListener::bind(&o.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pagopa-sim: cannot listen on {}: {e}", o.bind);
            return std::process::ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| o.bind.clone(), |a| a.to_string());
    println!(
        "biz-events: {} receipts on http://{addr}{}",
        known.len(),
        o.prefix.trim_end_matches('/')
    );
    let prefix = o.prefix.clone();
    let sim = BizEventsSim::new(known, o.subscription_key, o.calls_per_hour);
    let served =
        actix_web::rt::System::new().block_on(async move { serve(sim, &prefix, listener)?.await });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagopa-sim: biz-events server: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_are_read_and_named_when_wrong() {
        let text = "# receipts\n{\"fiscalCode\":\"80001234568\",\"receiptId\":\"t1\",\"creditorReferenceId\":\"IUV1\"}\n\n";
        let r = read_jsonl(text).unwrap();
        assert_eq!(
            (r[0].receipt_id.as_str(), r[0].iuv.as_str()),
            ("t1", "IUV1")
        );
        let err = read_jsonl("{\"fiscalCode\":\"1\"}\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }
}
