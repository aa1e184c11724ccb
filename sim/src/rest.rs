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
pub async fn discover(
    client: &reqwest::Client,
    cfg: &DiscoverConfig,
) -> Result<Vec<Notice>, String> {
    let base = cfg.rest.trim_end_matches('/');
    let mut out = Vec::new();
    for org in &cfg.organizations {
        let mut page = 0u64;
        loop {
            let url = format!(
                "{base}/api/v1/organizations/{org}/debtpositions?status=VALID&limit={}&page={page}",
                cfg.limit
            );
            let mut req = client.get(&url).header("Accept", "application/json");
            if let Some(k) = &cfg.api_key {
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
