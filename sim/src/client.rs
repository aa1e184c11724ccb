//! Posting SOAP requests to the station and classifying what comes back.

use std::time::{Duration, Instant};

use crate::model::{parse_response, SoapResponse};
use crate::stats::{Stats, Unexpected, XsdFailure};
use crate::validate::ValidatorPool;

/// What the station answered, transport-wise.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Time from sending to the last byte.
    pub latency: Duration,
}

/// Posts one SOAP 1.1 request (`Content-Type: text/xml`, `SOAPAction`).
pub async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    soap_action: &str,
    quoted: bool,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<RawAnswer, (String, String, Duration)> {
    let action = if quoted {
        format!("\"{soap_action}\"")
    } else {
        soap_action.to_string()
    };
    let start = Instant::now();
    let resp = client
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", action)
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Err((transport_label(&e), e.to_string(), start.elapsed())),
    };
    let status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(b) => Ok(RawAnswer {
            status,
            body: b.to_vec(),
            latency: start.elapsed(),
        }),
        Err(e) => Err((transport_label(&e), e.to_string(), start.elapsed())),
    }
}

fn transport_label(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "TIMEOUT".into()
    } else if e.is_connect() {
        "CONNECT_ERROR".into()
    } else {
        "TRANSPORT_ERROR".into()
    }
}

/// Whether an accepted label matches: the exact label, `*` (any readable answer), or `KO*` (any
/// `outcome KO`).
pub fn label_matches(accepted: &str, label: &str, response: Option<&SoapResponse>) -> bool {
    match accepted {
        "*" => response.is_some(),
        "KO*" => response.is_some_and(|r| r.outcome == "KO"),
        a => a == label,
    }
}

/// The result of one checked exchange.
#[derive(Debug)]
pub struct Checked {
    /// The parsed answer, if it could be read at all.
    pub response: Option<SoapResponse>,
    /// `OK`, a fault code, `HTTP_500`, `TIMEOUT`, `UNREADABLE`, ...
    pub label: String,
    /// The answer passed the XSD (`None`: no answer at all).
    pub xsd_ok: Option<bool>,
    /// The label is one of the accepted ones and the answer is well-formed and of the right element.
    pub as_expected: bool,
    /// Body text (lossy).
    pub body: String,
    /// Latency.
    pub latency: Duration,
}

/// One exchange as the Node would do it, fully checked: optional validation of our own request,
/// POST, XSD validation of the answer, reading of outcome/fault, comparison with the accepted
/// labels. Everything is recorded in `stats` under `op` and `context`.
#[allow(clippy::too_many_arguments)]
pub async fn exchange(
    client: &reqwest::Client,
    pool: &ValidatorPool,
    stats: &Stats,
    url: &str,
    op: &str,
    response_element: &str,
    quoted: bool,
    request: String,
    validate_request: bool,
    timeout: Duration,
    accepted: &[String],
    context: &str,
) -> Checked {
    let expected = accepted.join("|");
    if validate_request {
        if let Err(errors) = pool.validate_soap(request.as_bytes().to_vec()).await {
            stats.xsd_failure(XsdFailure {
                context: context.to_string(),
                op: op.to_string(),
                direction: "request built by the simulator".into(),
                errors,
                body: request.clone(),
            });
        }
    }
    let raw = match post_soap(client, url, op, quoted, request.into_bytes(), timeout).await {
        Ok(r) => r,
        Err((label, detail, latency)) => {
            stats.record(op, &label, latency);
            stats.unexpected(Unexpected {
                context: context.to_string(),
                op: op.to_string(),
                expected,
                got: label.clone(),
                body: detail,
            });
            return Checked {
                response: None,
                label,
                xsd_ok: None,
                as_expected: false,
                body: String::new(),
                latency,
            };
        }
    };
    let body = String::from_utf8_lossy(&raw.body).into_owned();
    let xsd_ok = match pool.validate_soap(raw.body.clone()).await {
        Ok(_) => true,
        Err(errors) => {
            stats.xsd_failure(XsdFailure {
                context: context.to_string(),
                op: op.to_string(),
                direction: "response".into(),
                errors,
                body: body.clone(),
            });
            false
        }
    };
    let parsed = parse_response(&body);
    let (label, response, problem) = match parsed {
        Ok(r) => {
            let mut label = r.label();
            let mut problem = None;
            if raw.status != 200 {
                problem = Some(format!("HTTP {} (business answers use 200)", raw.status));
                label = format!("HTTP_{}:{label}", raw.status);
            } else if !crate::model::is_pa_element(&r, response_element) {
                problem = Some(format!(
                    "answer element is {{{}}}{}, expected {response_element}",
                    r.ns.clone().unwrap_or_default(),
                    r.element
                ));
            } else if r.outcome == "OK" && r.fault.is_some() {
                problem = Some("outcome OK together with a fault".into());
                label = "OK+fault".into();
            }
            (label, Some(r), problem)
        }
        Err(e) => {
            let label = if raw.status != 200 {
                format!("HTTP_{}", raw.status)
            } else {
                "UNREADABLE".into()
            };
            (label, None, Some(format!("unreadable answer: {e}")))
        }
    };
    stats.record(op, &label, raw.latency);
    let label_ok = accepted
        .iter()
        .any(|a| label_matches(a, &label, response.as_ref()));
    let as_expected = label_ok && problem.is_none() && response.is_some();
    if !as_expected {
        let got = match &problem {
            Some(p) => format!("{label} ({p})"),
            None => label.clone(),
        };
        stats.unexpected(Unexpected {
            context: context.to_string(),
            op: op.to_string(),
            expected,
            got,
            body: body.clone(),
        });
    }
    Checked {
        response,
        label,
        xsd_ok: Some(xsd_ok),
        as_expected,
        body,
        latency: raw.latency,
    }
}
