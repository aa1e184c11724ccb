//! Discovery of payable notices through the station's GPD-style REST API:
//! `GET {rest}/api/v1/organizations/{cf}/debtpositions?status=VALID&limit=L&page=N`.

use serde::Deserialize;

use crate::amount::Cents;
use crate::build::QrCode;
use crate::config::DiscoverConfig;

/// A notice to pay, with what is known about it beforehand.
#[derive(Debug, Clone)]
pub struct Notice {
    /// fiscalCode + noticeNumber.
    pub qr: QrCode,
    /// Amount known beforehand (REST or config), checked against verify.
    pub amount: Option<Cents>,
    /// Description known beforehand.
    pub description: Option<String>,
    /// EC name known beforehand.
    pub company_name: Option<String>,
    /// A fault expected at verify/getPayment instead of a payment.
    pub expect: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    payment_position_list: Vec<Position>,
    page_info: Option<PageInfo>,
}

#[derive(Debug, Deserialize)]
struct PageInfo {
    #[serde(default)]
    total_pages: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Position {
    #[serde(default, rename = "companyName")]
    company_name: Option<String>,
    #[serde(default, rename = "organizationFiscalCode")]
    organization_fiscal_code: Option<String>,
    #[serde(default, rename = "paymentOption")]
    payment_option: Vec<PayOption>,
}

#[derive(Debug, Deserialize)]
struct PayOption {
    #[serde(default)]
    nav: Option<String>,
    #[serde(default)]
    iuv: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "organizationFiscalCode")]
    organization_fiscal_code: Option<String>,
}

/// Hard stop on pagination, whatever `total_pages` says.
const MAX_PAGES: u64 = 100_000;

/// Lists the `PO_UNPAID` options of the VALID positions of each organization.
/// `rest` is the REST base URL, `api_key` the organization's key (both already resolved from
/// the command line and `cfg`).
pub async fn discover(
    client: &reqwest::Client,
    cfg: &DiscoverConfig,
    rest: &str,
    api_key: Option<&str>,
) -> Result<Vec<Notice>, String> {
    let base = rest.trim_end_matches('/');
    let mut out = Vec::new();
    for org in &cfg.organizations {
        let mut page = 0u64;
        loop {
            let url = format!(
                "{base}/api/v1/organizations/{org}/debtpositions?status=VALID&limit={}&page={page}",
                cfg.limit
            );
            let mut req = client.get(&url).header("Accept", "application/json");
            if let Some(k) = api_key {
                req = req.header("Ocp-Apim-Subscription-Key", k);
            }
            let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
            if !status.is_success() {
                let head: String = text.chars().take(500).collect();
                return Err(format!("GET {url}: HTTP {status}: {head}"));
            }
            let p: Page = serde_json::from_str(&text)
                .map_err(|e| format!("GET {url}: unexpected JSON: {e}"))?;
            let n_positions = p.payment_position_list.len();
            for pos in p.payment_position_list {
                for o in pos.payment_option {
                    if o.status.as_deref() != Some("PO_UNPAID") {
                        continue;
                    }
                    let nav = match (o.nav, o.iuv) {
                        (Some(n), _) if !n.is_empty() => n,
                        (_, Some(i)) if i.len() == 17 => format!("3{i}"),
                        _ => continue,
                    };
                    let fiscal_code = o
                        .organization_fiscal_code
                        .or_else(|| pos.organization_fiscal_code.clone())
                        .unwrap_or_else(|| org.clone());
                    out.push(Notice {
                        qr: QrCode {
                            fiscal_code,
                            notice_number: nav,
                        },
                        amount: o.amount.map(Cents),
                        description: o.description,
                        company_name: pos.company_name.clone(),
                        expect: None,
                    });
                    if cfg.max.is_some_and(|m| out.len() >= m) {
                        return Ok(out);
                    }
                    // One notice per position: paying the single solution closes the
                    // installments and vice versa (SPEC §6 rule 5), so a second option of the
                    // same position would rightly answer PAA_PAGAMENTO_DUPLICATO.
                    break;
                }
            }
            page += 1;
            let total = p.page_info.and_then(|i| i.total_pages).unwrap_or(0);
            if page >= total || n_positions == 0 || page >= MAX_PAGES {
                break;
            }
        }
    }
    Ok(out)
}

/// What `psp --create N` needs to create fresh notices through the REST API.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// REST base URL, e.g. `http://127.0.0.1:8080`.
    pub rest: String,
    /// `Ocp-Apim-Subscription-Key` of the organization.
    pub api_key: Option<String>,
    /// The organization (creditor) fiscal code.
    pub organization: String,
    /// Positions to create (one single-payment notice each).
    pub count: usize,
    /// Amount of each notice, in cents.
    pub amount_cents: i64,
    /// IBAN credited by the transfer.
    pub iban: String,
    /// Transfer category (taxonomy code).
    pub category: String,
}

/// The body of a one-option position (GPD `PaymentPositionModel`) for `iupd`.
pub fn position_body(req: &CreateRequest, iupd: &str, due: chrono::NaiveDate) -> serde_json::Value {
    serde_json::json!({
        "iupd": iupd,
        "type": "F",
        "fiscalCode": "RSSMRA80A01H501U",
        "fullName": "Mario Rossi",
        "companyName": "pagopa-sim",
        "paymentOption": [{
            "amount": req.amount_cents,
            "description": format!("pagopa-sim {iupd}"),
            "isPartialPayment": false,
            "dueDate": due.format("%Y-%m-%d").to_string(),
            "transfer": [{
                "idTransfer": "1",
                "amount": req.amount_cents,
                "remittanceInformation": format!("pagopa-sim {iupd}"),
                "category": req.category,
                "iban": req.iban,
            }]
        }]
    })
}

/// Creates `req.count` fresh VALID positions (`POST …/debtpositions?toPublish=true`) and returns
/// their notices, so that every run has unpaid notices to pay (the demo can be replayed).
pub async fn create_notices(
    client: &reqwest::Client,
    req: &CreateRequest,
) -> Result<Vec<Notice>, String> {
    use rand::Rng as _;
    let base = req.rest.trim_end_matches('/');
    let url = format!(
        "{base}/api/v1/organizations/{}/debtpositions?toPublish=true",
        req.organization
    );
    let run = format!(
        "SIM-{}-{:06}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        rand::rng().random_range(0..1_000_000u32)
    );
    let due = chrono::Utc::now().date_naive() + chrono::Days::new(30);
    let mut out = Vec::with_capacity(req.count);
    for i in 1..=req.count {
        let iupd = format!("{run}-{i}");
        let mut r = client
            .post(&url)
            .header("Accept", "application/json")
            .json(&position_body(req, &iupd, due));
        if let Some(k) = &req.api_key {
            r = r.header("Ocp-Apim-Subscription-Key", k);
        }
        let resp = r.send().await.map_err(|e| format!("POST {url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("POST {url}: {e}"))?;
        if !status.is_success() {
            let head: String = text.chars().take(500).collect();
            let hint = if status.as_u16() == 401 || status.as_u16() == 403 {
                " (pass the organization's API key with --key)"
            } else {
                ""
            };
            return Err(format!("POST {url}: HTTP {status}{hint}: {head}"));
        }
        let p: Position =
            serde_json::from_str(&text).map_err(|e| format!("POST {url}: unexpected JSON: {e}"))?;
        let Some(o) = p.payment_option.into_iter().next() else {
            return Err(format!(
                "POST {url}: the created position {iupd} has no option"
            ));
        };
        let nav = o
            .nav
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("POST {url}: the created position {iupd} has no nav"))?;
        out.push(Notice {
            qr: QrCode {
                fiscal_code: req.organization.clone(),
                notice_number: nav,
            },
            amount: o.amount.map(Cents),
            description: o.description,
            company_name: p.company_name,
            expect: None,
        });
    }
    Ok(out)
}

/// The origin (`scheme://host:port`) of a URL such as the station's
/// `http://127.0.0.1:8080/pagopa/paForNode`: the REST API of the same node.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_the_station_url() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/pagopa/paForNode").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
