//! `mpay fdr import|sync|list`, `mpay bank import`, `mpay recon run|export`: the reconciliation
//! commands an
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
pub fn run(
    store: &Store,
    org: &str,
    json: bool,
    date: Option<chrono::NaiveDate>,
) -> anyhow::Result<ExitCode> {
    let report = reconciliation::reconcile(store, org)?;
    let as_of = date.unwrap_or_else(mpay_messages::time::rome_today);
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
    let late = reconciliation::unreported(&report.payments, as_of);
    println!(
        "  {} receipts not reported after their D+2 deadline on {as_of}",
        late.len()
    );
    for (p, deadline) in &late {
        println!(
            "  UNREPORTED  receipt {} IUV {} {} EUR (deadline {deadline})",
            p.receipt_id,
            p.iuv,
            euros(p.amount_cents)
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

/// The renderer the daily export batch uses: `mpay-web`'s exports (the only crate with the XLSX
/// writer), one business day.
pub fn export_render() -> mpay_actors::export_batch::ExportRender {
    use mpay_web::exports::{export_from_store, ExportFormat, ExportKind, Period};
    std::sync::Arc::new(|store: &Store, org: &str, kind: &str, format: &str, day| {
        let kind =
            ExportKind::parse(kind).ok_or_else(|| format!("unknown export kind {kind:?}"))?;
        let format = ExportFormat::parse(format)
            .ok_or_else(|| format!("unknown export format {format:?}"))?;
        export_from_store(store, org, kind, format, Period { from: day, to: day })
    })
}

/// The daily export batch of `settings`: `None` when no organization has
/// `[organizations.exports]` with an e-mail recipient or an FTP URL. Errors: an FTP URL or
/// password that cannot be used, an SMTP setting that cannot be read (named by key).
pub fn export_batch_settings(
    settings: &mpay_config::Settings,
) -> anyhow::Result<Option<mpay_actors::export_batch::ExportBatchSettings>> {
    use mpay_actors::export_batch::{ExportBatchSettings, FtpTarget, OrgExports};
    let mut organizations = Vec::new();
    for (i, o) in settings.organizations.iter().enumerate() {
        let Some(x) = &o.exports else { continue };
        let ftp = if x.ftp_url.trim().is_empty() {
            None
        } else {
            let password = x
                .ftp_password()
                .map_err(|e| anyhow::anyhow!("organizations[{i}].{e}"))?;
            Some(
                FtpTarget::parse(&x.ftp_url, password)
                    .map_err(|e| anyhow::anyhow!("organizations[{i}].exports.ftp_url: {e}"))?,
            )
        };
        if x.email_to.is_empty() && ftp.is_none() {
            continue;
        }
        if !x.email_to.is_empty() && settings.mail.host.trim().is_empty() {
            anyhow::bail!(
                "organizations[{i}].exports.email_to: e-mail needs the SMTP server of [mail] (host, from)"
            );
        }
        organizations.push(OrgExports {
            organization: o.fiscal_code.clone(),
            email_to: x.email_to.iter().map(|a| a.trim().to_string()).collect(),
            ftp,
            kinds: x.kinds.iter().map(|k| k.trim().to_string()).collect(),
            formats: x.formats.iter().map(|f| f.trim().to_string()).collect(),
        });
    }
    if organizations.is_empty() {
        return Ok(None);
    }
    let smtp = if settings.mail.host.trim().is_empty() {
        None
    } else {
        Some(crate::smtp::smtp_settings(settings)?)
    };
    Ok(Some(ExportBatchSettings {
        hour: settings.fdr.daily_export_hour,
        check_every: std::time::Duration::from_secs(300),
        smtp,
        organizations,
    }))
}

/// `mpay recon export`: writes one export of `org` for `from..=to` to `out` (default: its
/// standard name in the current folder) and prints the path.
pub fn export(
    store: &Store,
    org: &str,
    kind: &str,
    format: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use mpay_web::exports::{export_from_store, ExportFormat, ExportKind, Period};
    let kind = ExportKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!("--kind {kind:?}: must be payments, flows or reconciliation")
    })?;
    let format = ExportFormat::parse(format)
        .ok_or_else(|| anyhow::anyhow!("--format {format:?}: must be csv or xlsx"))?;
    if to < from {
        anyhow::bail!("--to {to} is before --from {from}");
    }
    let (name, bytes) = export_from_store(store, org, kind, format, Period { from, to })
        .map_err(|e| anyhow::anyhow!(e))?;
    let path = out.unwrap_or_else(|| PathBuf::from(name));
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(ExitCode::SUCCESS)
}

/// `mpay fdr sync`: the FdR API download of `POST …/fdrs/sync` on a stopped node (the flows
/// stored, their revocations queued for the Ente, flushed). Exit code 1 when some flows failed
/// (fetched again next time), 2 when the API is not configured.
pub fn sync(
    settings: &mpay_config::Settings,
    store: &Store,
    org: &str,
) -> anyhow::Result<ExitCode> {
    let Some(api) = mpay_web::api::reconciliation::fdr_api(&settings.fdr) else {
        eprintln!("the FdR API is not configured ([fdr] base_url): import flows from files (mpay fdr import)");
        return Ok(ExitCode::from(2));
    };
    let system = actix_rt::System::new();
    let (s, o) = (store.clone(), org.to_string());
    let report = system
        .block_on(async move { api.sync(&s, &o).await })
        .map_err(|e| anyhow::anyhow!("FdR sync: {e}"))?;
    let mut revocations = 0;
    for id in &report.acquired {
        revocations += store
            .enqueue_revocations_of_flow(org, id, Utc::now())?
            .len();
    }
    store.flush_blocking()?;
    println!(
        "FdR sync of {org}: {} listed, {} stored ({} revisions), {} already known, {} failed, {} for another organization{}",
        report.listed,
        report.stored,
        report.revisions,
        report.already_known,
        report.failed.len(),
        report.flagged,
        if revocations > 0 {
            format!(", {revocations} revocations queued for the Ente")
        } else {
            String::new()
        }
    );
    for f in &report.acquired {
        println!("  {f}");
    }
    for f in &report.failed {
        println!("  FAILED {f:?}");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
