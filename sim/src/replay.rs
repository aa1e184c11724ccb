//! `pagopa-sim replay`: posts request files to the station and compares the answers with the
//! expected outcome (from `--expect FILE` or from the sibling `_res_` file names).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::build::Op;
use crate::client::exchange;
use crate::stats::Stats;
use crate::validate::ValidatorPool;
use crate::xml::{extract_body_child, NS_PA_FOR_NODE};

/// One expected answer: `OK`, a fault code, `KO*` (any KO) or `*` (anything readable).
pub type Expectation = Vec<String>;

/// Reads an expectations file:
///
/// ```toml
/// # the same file posted twice, with successive expectations (inline form: before any [header])
/// "paSendRT_req.xml" = [ { outcome = "OK" }, { fault = "PAA_RECEIPT_DUPLICATA" } ]
///
/// ["paVerifyPaymentNotice_req.xml"]
/// outcome = "OK"
///
/// # the same, as an array of tables
/// [["paSendRTV2_req_with_marca_da_bollo.xml"]]
/// outcome = "OK"
/// [["paSendRTV2_req_with_marca_da_bollo.xml"]]
/// fault = "PAA_RECEIPT_DUPLICATA"
///
/// ["paGetPayment_req.xml"]
/// fault = ["PAA_PAGAMENTO_DUPLICATO", "PAA_PAGAMENTO_SCONOSCIUTO"]   # any of these
///
/// ["nodoChiediFlussoRendicontazione_req.xml"]
/// skip = true
/// ```
pub fn load_expectations(text: &str) -> Result<HashMap<String, Vec<Option<Expectation>>>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (file, v) in table {
        let entries: Vec<&toml::Table> = match &v {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_table()
                        .ok_or_else(|| format!("{file}: list entries must be tables"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("{file}: expected a table or a list of tables")),
        };
        let mut list = Vec::new();
        for t in entries {
            list.push(parse_entry(&file, t)?);
        }
        out.insert(file, list);
    }
    Ok(out)
}

/// `None` = skip.
fn parse_entry(file: &str, t: &toml::Table) -> Result<Option<Expectation>, String> {
    for k in t.keys() {
        if !["outcome", "fault", "skip"].contains(&k.as_str()) {
            return Err(format!("{file}: unknown key {k:?} (outcome, fault, skip)"));
        }
    }
    if t.get("skip").and_then(toml::Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let outcome = t.get("outcome").and_then(toml::Value::as_str);
    let faults: Vec<String> = match t.get("fault") {
        None => Vec::new(),
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{file}: fault list must hold strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{file}: fault must be a string or a list")),
    };
    match (outcome, faults.is_empty()) {
        (Some("OK"), true) => Ok(Some(vec!["OK".into()])),
        (Some("OK"), false) => Err(format!("{file}: outcome OK with a fault")),
        (Some("KO"), true) => Ok(Some(vec!["KO*".into()])),
        (Some("KO") | None, false) => Ok(Some(faults)),
        (None, true) => Ok(Some(vec!["*".into()])),
        (Some(o), _) => Err(format!("{file}: outcome {o:?} (OK or KO)")),
    }
}

/// Expectation from sibling names: `<op>_res_OK*.xml` → OK, else `<op>_res_KO_<CODE>.xml` →
/// `PAA_<CODE>`; `None` when there is no sibling.
pub fn expectation_from_names(file: &str, siblings: &[String]) -> Option<Expectation> {
    let prefix = file.split("_req").next()?;
    let ok = format!("{prefix}_res_OK");
    let ko = format!("{prefix}_res_KO_");
    if siblings.iter().any(|s| s.starts_with(&ok)) {
        return Some(vec!["OK".into()]);
    }
    let codes: Vec<String> = siblings
        .iter()
        .filter_map(|s| s.strip_prefix(&ko))
        .filter_map(|rest| rest.strip_suffix(".xml"))
        .map(|code| {
            if code.starts_with("PAA_") {
                code.to_string()
            } else {
                format!("PAA_{code}")
            }
        })
        .collect();
    if codes.is_empty() {
        None
    } else {
        Some(codes)
    }
}

/// Replay settings.
pub struct ReplayArgs {
    /// Station SOAP URL.
    pub station: String,
    /// Folder with `*_req*.xml`.
    pub dir: PathBuf,
    /// Expectations file.
    pub expect: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Quote the SOAPAction.
    pub soap_action_quoted: bool,
}

fn list_requests(dir: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            if let Some(name) = e.file_name().to_str() {
                all.push(name.to_string());
            }
        }
    }
    all.sort();
    let reqs = all
        .iter()
        .filter(|n| n.ends_with(".xml") && n.contains("_req"))
        .cloned()
        .collect();
    Ok((reqs, all))
}

/// Runs a replay; returns true when every posted file got its expected answer and every answer
/// passed the XSD.
pub async fn run(args: &ReplayArgs, pool: &ValidatorPool) -> Result<bool, String> {
    let (files, siblings) = list_requests(&args.dir)?;
    if files.is_empty() {
        return Err(format!("no *_req*.xml files in {}", args.dir.display()));
    }
    let expectations = match &args.expect {
        Some(p) => load_expectations(
            &std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        )
        .map_err(|e| format!("{}: {e}", p.display()))?,
        None => HashMap::new(),
    };
    for k in expectations.keys() {
        if !files.contains(k) {
            return Err(format!(
                "expectation for {k:?}, which is not a request file in {}",
                args.dir.display()
            ));
        }
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let stats = Stats::default();
    let start = Instant::now();
    let (mut posted, mut mismatches, mut xsd_fail, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    println!(
        "{:<48} {:<40} {:<32} {:<4} {:>8}  result",
        "file", "expected", "got", "xsd", "ms"
    );
    for file in &files {
        let path = args.dir.join(file);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = match extract_body_child(&text) {
            Ok(b) => b,
            Err(e) => {
                println!(
                    "{file:<48} {:<40} {:<32} {:<4} {:>8}  SKIP ({e})",
                    "-", "-", "-", "-"
                );
                skipped += 1;
                continue;
            }
        };
        let is_station_op = body.ns.as_deref() == Some(NS_PA_FOR_NODE);
        let plan: Vec<Option<Expectation>> = match expectations.get(file) {
            Some(list) => list.clone(),
            None if !is_station_op => {
                println!(
                    "{file:<48} {:<40} {:<32} {:<4} {:>8}  SKIP (not a paForNode request: {})",
                    "-", "-", "-", "-", body.local
                );
                skipped += 1;
                continue;
            }
            None => vec![Some(
                expectation_from_names(file, &siblings).unwrap_or_else(|| vec!["*".into()]),
            )],
        };
        let op = Op::from_request_element(&body.local);
        let action = match op {
            Some(o) => o.name().to_string(),
            None => body
                .local
                .strip_suffix("Request")
                .or_else(|| body.local.strip_suffix("Req"))
                .unwrap_or(&body.local)
                .to_string(),
        };
        let response_element = op.map(Op::response_element).unwrap_or("?");
        for (i, exp) in plan.iter().enumerate() {
            let label = if plan.len() > 1 {
                format!("{file} #{}", i + 1)
            } else {
                file.clone()
            };
            let Some(exp) = exp else {
                println!(
                    "{label:<48} {:<40} {:<32} {:<4} {:>8}  SKIP",
                    "-", "-", "-", "-"
                );
                skipped += 1;
                continue;
            };
            posted += 1;
            let c = exchange(
                &client,
                pool,
                &stats,
                &args.station,
                &action,
                response_element,
                args.soap_action_quoted,
                text.clone(),
                false,
                args.timeout,
                exp,
                &label,
            )
            .await;
            if c.xsd_ok == Some(false) {
                xsd_fail += 1;
            }
            let verdict = if c.as_expected && c.xsd_ok != Some(false) {
                "ok"
            } else {
                mismatches += u64::from(!c.as_expected);
                "MISMATCH"
            };
            println!(
                "{label:<48} {:<40} {:<32} {:<4} {:>8.1}  {verdict}",
                exp.join("|"),
                c.label,
                match c.xsd_ok {
                    Some(true) => "ok",
                    Some(false) => "FAIL",
                    None => "-",
                },
                c.latency.as_secs_f64() * 1000.0
            );
        }
    }
    let elapsed = start.elapsed();
    stats.print_human(elapsed);
    let ok = mismatches == 0 && xsd_fail == 0 && posted > 0;
    let summary = stats.summary_json(
        elapsed,
        json!({
            "mode": "replay",
            "dir": args.dir.display().to_string(),
            "posted": posted,
            "skipped": skipped,
            "mismatches": mismatches,
        }),
    );
    println!("SUMMARY {summary}");
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let sib: Vec<String> = [
            "paSendRT_req.xml",
            "paSendRT_res_KO_RECEIPT_DUPLICATA.xml",
            "paSendRT_res_OK.xml",
            "paGetPayment_res_KO_PAGAMENTO_DUPLICATO.xml",
            "paGetPaymentV2_res_OK_with_marca_da_bollo.xml",
            "paDemandPaymentNotice_res_KO_PAA_SEMANTICA.xml",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            expectation_from_names("paSendRT_req.xml", &sib),
            Some(vec!["OK".to_string()])
        );
        assert_eq!(
            expectation_from_names("paGetPayment_req.xml", &sib),
            Some(vec!["PAA_PAGAMENTO_DUPLICATO".to_string()])
        );
        assert_eq!(
            expectation_from_names("paGetPaymentV2_req.xml", &sib),
            Some(vec!["OK".to_string()])
        );
        assert_eq!(
            expectation_from_names("paDemandPaymentNotice_req.xml", &sib),
            Some(vec!["PAA_SEMANTICA".to_string()])
        );
        assert_eq!(
            expectation_from_names("paVerifyPaymentNotice_req.xml", &sib),
            None
        );
    }

    #[test]
    fn expect_file() {
        let t = r#"
"paSendRT_req.xml" = [ { outcome = "OK" }, { fault = "PAA_RECEIPT_DUPLICATA" } ]

["paVerifyPaymentNotice_req.xml"]
outcome = "OK"

[[ "paSendRTV2_req_with_marca_da_bollo.xml" ]]
outcome = "KO"
[[ "paSendRTV2_req_with_marca_da_bollo.xml" ]]
skip = true
"#;
        let e = load_expectations(t).unwrap();
        assert_eq!(
            e["paVerifyPaymentNotice_req.xml"],
            vec![Some(vec!["OK".to_string()])]
        );
        assert_eq!(
            e["paSendRT_req.xml"],
            vec![
                Some(vec!["OK".to_string()]),
                Some(vec!["PAA_RECEIPT_DUPLICATA".to_string()])
            ]
        );
        assert_eq!(
            e["paSendRTV2_req_with_marca_da_bollo.xml"],
            vec![Some(vec!["KO*".to_string()]), None]
        );
        assert!(load_expectations("[\"a.xml\"]\noutcome = \"MAYBE\"\n").is_err());
        assert!(load_expectations("[\"a.xml\"]\nfoo = 1\n").is_err());
    }
}
