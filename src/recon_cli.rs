//! `mpay fdr import|list`, `mpay bank import`, `mpay recon run`: the reconciliation commands an
//! operator runs on a stopped node (with the server running, the same through the REST API
//! `…/fdrs/import`, `…/bank-statements`, `…/reconciliation`). Imports go through the same
//! functions as the REST API (`storage::reconciliation`); a flow import queues the revocations
//! it announces with the same function too (`Store::enqueue_revocations_of_flow`: delivered by
//! the Ente's connector when the node runs). The organizations notified are those with an
//! `[organizations.notification]` endpoint, set by the caller from the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use mpay_storage::reconciliation::{self, FileImport, FlowImport};
use mpay_storage::Store;

fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// What kind of file an import reads.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Reporting flows.
    Flow,
    /// Bank statements.
    Statement,
}

/// Imports `files` for `org`; exit code 1 when a file was refused (the others are imported).
pub fn import(store: &Store, org: &str, kind: Kind, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let r = &store.reconciliation;
        let line = match kind {
            Kind::Flow => match r.import_flow_file(org, &name, &bytes, Utc::now())? {
                FileImport::Imported(f) => {
                    // as the REST import: a new flow or revision queues its revocations
                    let revocations = if matches!(f.outcome, FlowImport::New | FlowImport::Revision)
                    {
                        store
                            .enqueue_revocations_of_flow(org, &f.flow_id, Utc::now())?
                            .len()
                    } else {
                        0
                    };
                    format!(
                        "{name}: flow {} revision {} {:?}: {} rows, {} EUR{}{}",
                        f.flow_id,
                        f.revision,
                        f.outcome,
                        f.rows,
                        euros(f.total_cents),
                        if f.flags.is_empty() {
                            String::new()
                        } else {
                            format!(", flags {:?}", f.flags)
                        },
                        if revocations > 0 {
                            format!(", {revocations} revocations queued for the Ente")
                        } else {
                            String::new()
                        }
                    )
                }
                FileImport::Rejected(why) => {
                    failed = true;
                    format!("{name}: REFUSED (kept for inspection): {why}")
                }
                FileImport::OtherOrganization(rx) => {
                    failed = true;
                    format!("{name}: REFUSED: the flow is for organization {rx}, not {org}")
                }
            },
            Kind::Statement => match r.import_statement_file(org, &name, &bytes, Utc::now())? {
                FileImport::Imported(s) => format!(
                    "{name}: {:?}, {} credits ({} new, {} already imported), {} other movements{}",
                    s.format,
                    s.credits,
                    s.new,
                    s.already_known,
                    s.skipped,
                    if s.problems.is_empty() {
                        String::new()
                    } else {
                        format!("; unreadable: {}", s.problems.join("; "))
                    }
                ),
                FileImport::Rejected(why) | FileImport::OtherOrganization(why) => {
                    failed = true;
                    format!("{name}: REFUSED (kept for inspection): {why}")
                }
            },
        };
        println!("{line}");
    }
    store.flush_blocking()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the flows of `org` (latest revisions) with their settlement.
pub fn list(store: &Store, org: &str) -> anyhow::Result<ExitCode> {
    let flows = reconciliation::flow_lines(store, org)?;
    if flows.is_empty() {
        println!("no flows for organization {org}");
    }
    for f in &flows {
        println!(
            "{}  rev {}  regulation {}  total {} EUR  credited {} EUR  {:?}{}",
            f.flow_id,
            f.revision,
            f.regulation_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into()),
            euros(f.total_cents),
            euros(f.credited_cents),
            f.settlement,
            if f.flags.is_empty() {
                String::new()
            } else {
                format!("  flags {:?}", f.flags)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the reconciliation of `org`: totals per label, then what needs a look (or every line
/// as JSON).
pub fn run(store: &Store, org: &str, json: bool) -> anyhow::Result<ExitCode> {
    let report = reconciliation::reconcile(store, org)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "reconciliation of {org}: {} flows, {} payments, {} credits",
        report.flows.len(),
        report.payments.len(),
        report.credits.len()
    );
    for (label, (n, cents)) in &report.totals {
        println!("  {label:<18} {n:>8}  {:>14} EUR", euros(*cents));
    }
    for r in &report.rows_without_receipt {
        println!(
            "  IUV_NO_RT  flow {} row {}: IUV {} IUR {} {} EUR (code {})",
            r.flow_id,
            r.row,
            r.iuv,
            r.iur,
            euros(r.amount_cents.unwrap_or(0)),
            r.status.code()
        );
    }
    for c in report
        .credits
        .iter()
        .filter(|c| c.label.code() == "TES_NO_IUF_OR_IUV")
    {
        println!(
            "  TES_NO_IUF_OR_IUV  {} EUR on {} ({})",
            euros(c.credit.amount_cents),
            c.credit.account,
            c.credit.texts.first().map(String::as_str).unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
