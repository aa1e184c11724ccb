//! `mpay notices print`: mass printing of payment notices on a stopped node (with the server
//! running, the REST job `POST …/notices/print-jobs` does the same). One PDF per position,
//! named by its (first) notice number, or one merged file; a progress bar and a summary line.
//! The positions are chosen as the REST job chooses them
//! ([`mpay_web::api::documents::select_positions`]) and mapped by the same function
//! ([`mpay_web::documents::notice_input`]); the PDFs are rendered on every core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use mpay_config::OrganizationSettings;
use mpay_messages::position::DebtPosition;
use mpay_messages::OrgFiscalCode;
use mpay_storage::Store;
use mpay_web::api::documents::{select_positions, PrintSelection};
use mpay_web::documents::notice_input;

/// What to print and where.
pub struct PrintArgs {
    /// Which positions.
    pub selection: PrintSelection,
    /// Output folder (created).
    pub out: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Also time the QR codes alone for the same notices (the benchmark's baseline).
    pub qr_baseline: bool,
}

fn file_name(p: &DebtPosition, first_nav: Option<&str>) -> String {
    match first_nav {
        Some(nav) => format!("{nav}.pdf"),
        None => format!("{}.pdf", mpay_web::api::documents::safe_name(&p.iupd)),
    }
}

/// Prints the notices; exit code 1 when a position could not be printed (the others are).
pub fn print(
    store: &Store,
    org: &OrganizationSettings,
    args: &PrintArgs,
) -> anyhow::Result<ExitCode> {
    let fc = OrgFiscalCode::parse(&org.fiscal_code)
        .or_else(|_| OrgFiscalCode::parse_gpd(&org.fiscal_code))
        .map_err(|e| anyhow::anyhow!("organization {}: {e}", org.fiscal_code))?;
    let positions = select_positions(store.ledger.as_ref(), &fc, &args.selection)
        .map_err(|e| anyhow::anyhow!(e))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(positions.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} notices ({per_sec}, eta {eta}) {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let started = Instant::now();
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let options = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let fail = |p: &DebtPosition, e: &dyn std::fmt::Display| {
        if let Ok(mut f) = failures.lock() {
            f.push(format!("{}: {e}", p.iupd));
        }
    };
    let merged_path = args.out.join("notices.pdf");
    if args.selection.merge {
        let mut merged = mpay_documents::MergedNotices::new();
        for p in &positions {
            let input = notice_input(org, p, None);
            match merged.add(&input) {
                Ok(()) => {
                    options.fetch_add(input.options.len(), Ordering::Relaxed);
                }
                Err(e) => fail(p, &e),
            }
            bar.inc(1);
        }
        if !merged.is_empty() {
            let pdf = merged.finish().map_err(|e| anyhow::anyhow!(e))?;
            bytes.fetch_add(pdf.len(), Ordering::Relaxed);
            write_atomically(&merged_path, &pdf)?;
        }
    } else {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = positions.get(i) else { break };
                    let input = notice_input(org, p, None);
                    let name = file_name(p, input.options.first().map(|o| o.nav.as_str()));
                    match mpay_documents::render_notice(&input) {
                        Ok(pdf) => match write_atomically(&args.out.join(&name), &pdf) {
                            Ok(()) => {
                                options.fetch_add(input.options.len(), Ordering::Relaxed);
                                bytes.fetch_add(pdf.len(), Ordering::Relaxed);
                            }
                            Err(e) => fail(p, &e),
                        },
                        Err(e) => fail(p, &e),
                    }
                    bar.inc(1);
                });
            }
        });
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let failures = failures.into_inner().unwrap_or_default();
    let printed = positions.len() - failures.len();
    for f in &failures {
        eprintln!("not printed: {f}");
    }
    let target = if args.selection.merge {
        merged_path.display().to_string()
    } else {
        args.out.display().to_string()
    };
    println!(
        "printed {printed} notices ({} payment options, {:.1} MB) of {} positions in {elapsed:.2} s ({:.1} notices/s), {} failed -> {target}",
        options.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / 1e6,
        positions.len(),
        printed as f64 / elapsed,
        failures.len(),
    );
    if args.qr_baseline {
        let t = Instant::now();
        let mut codes = 0usize;
        let mut modules = 0usize;
        for p in &positions {
            let input = notice_input(org, p, None);
            if let Ok(m) = mpay_documents::qr_codes_only(&input) {
                modules += m;
                codes += input.options.len();
            }
        }
        let qr_elapsed = t.elapsed().as_secs_f64().max(1e-9);
        println!(
            "qr baseline: {codes} QR codes of the same {} notices ({modules} modules) in {qr_elapsed:.3} s ({:.1} notices/s)",
            positions.len(),
            positions.len() as f64 / qr_elapsed
        );
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("pdf.part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
