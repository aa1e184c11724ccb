//! `mpay feed ...`: load a feed file into the store from the command line (server stopped: the
//! store is opened directly), with a progress bar, writing `<basename>-ESITO.csv`,
//! `<basename>-IUV-EXCHANGE.csv`, the MyPay / PU compatibility copies and
//! `<basename>-RESULT.zip` next to the file (FORMAT.md §5.5, §5.7); the file's SHA-256 is stored
//! and a `<basename>.md5` / `.sha256` sidecar next to it is verified (and left in place); list /
//! status of loads; and two hidden helpers for `ops/bench/feeds` (synthetic file generator,
//! parse-only baseline).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use mpay_config::Settings;
use mpay_feeds::{FeedJob, Intent};
use mpay_messages::feeds::checksum::{sidecar_names, ExpectedChecksum, MAX_SIDECAR_BYTES};
use mpay_messages::feeds::{FeedFileName, FeedMode, FeedReader, ReadOptions};
use mpay_messages::OrgFiscalCode;
use mpay_storage::feeds::{
    get_feed, list_feeds, FeedLoadRecord, FeedProgress, FeedStatus, ProgressControl,
};
use mpay_storage::Store;

/// Options of `mpay feed load`.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    /// Organization fiscal code.
    pub org: String,
    /// The CSV or zip.
    pub file: PathBuf,
    /// `delta` / `full` (default: manifest, else delta).
    pub mode: Option<String>,
    /// Flow id (default from the file name).
    pub flow_id: Option<String>,
    /// Report path (default next to the file).
    pub report: Option<PathBuf>,
    /// Validate only.
    pub dry_run: bool,
    /// Resume a load interrupted by a crash (a load that had ended gets its reports written again).
    pub resume: bool,
    /// Confirm a FULL load held by the guard.
    pub confirm: bool,
    /// Hide the progress bar.
    pub quiet: bool,
}

fn print_record(r: &FeedLoadRecord) {
    println!(
        "feed {} ({}): {:?} — {} rows, {} loaded, {} rejected, {} with warnings{}",
        r.flow_id,
        r.file_name,
        r.status,
        r.rows_total,
        r.rows_loaded,
        r.rows_rejected,
        r.rows_warned,
        if r.mode == FeedMode::Full {
            format!(
                ", {} cancelled, {} paid left alone",
                r.cancelled, r.skipped_paid
            )
        } else {
            String::new()
        }
    );
    if let Some(e) = &r.error {
        println!("  {}: {}", e.code.as_str(), e.message);
    }
}

/// `mpay feed load`: the file goes through the node's one pipeline
/// ([`mpay_feeds::FeedService::submit`]: spooled, checksums, zip with the configured limits,
/// load, outputs next to the file). Exit code 0 when DONE, 1 when FAILED, 2 when held by the
/// FULL guard.
///
/// # Errors
/// Unknown organization, unreadable file, store errors, duplicate flow id.
pub fn load(settings: &Settings, store: &Store, args: &LoadArgs) -> anyhow::Result<u8> {
    settings
        .organization(&args.org)
        .with_context(|| format!("organization {} is not configured", args.org))?;
    let service = crate::feeds::feed_service(settings, store)?;
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .context("FILE must name a file")?;
    if !args.file.is_file() {
        bail!("cannot open {}", args.file.display());
    }
    let mut job = FeedJob::new(args.org.clone(), file_name);
    if let Some(flow) = &args.flow_id {
        job.flow_id = flow.clone();
    }
    job.mode = cli_mode(args.mode.as_deref())?;
    job.dry_run = args.dry_run;
    // integrity (FORMAT.md §5.2): the sidecars next to the file (read, left in place)
    job.checksums = read_sidecars(&args.file);
    let dir = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    match &args.report {
        Some(report) => {
            job.out_dir = Some(
                report
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
            );
            job.report_name = report.file_name().map(|n| n.to_string_lossy().to_string());
        }
        None => job.out_dir = Some(dir),
    }
    let intent = match (args.resume, args.confirm) {
        (true, _) => Intent::Resume,
        (false, true) => Intent::Confirm,
        (false, false) => Intent::Fresh,
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let result = service.submit(&job, &args.file, intent, &mut |p: &FeedProgress| {
        bar.set_length(p.rows_total);
        bar.set_position(p.rows_read);
        bar.set_message(format!(
            "{} loaded, {} rejected",
            p.rows_loaded, p.rows_rejected
        ));
        ProgressControl::Continue
    });
    bar.finish_and_clear();
    let (rec, written) = result?;
    print_record(&rec);
    for path in &written {
        println!("output: {}", path.display());
    }
    Ok(match rec.status {
        FeedStatus::Done => 0,
        FeedStatus::AwaitingConfirmation => 2,
        FeedStatus::Failed | FeedStatus::Running => 1,
    })
}

fn cli_mode(mode: Option<&str>) -> anyhow::Result<Option<FeedMode>> {
    match mode.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("delta") => Ok(Some(FeedMode::Delta)),
        Some("full") => Ok(Some(FeedMode::Full)),
        Some(m) => bail!("--mode must be delta or full, not {m}"),
    }
}

/// The checksum sidecars next to `file` (FORMAT.md §5.2), read but left in place.
fn read_sidecars(file: &Path) -> Vec<ExpectedChecksum> {
    use std::io::Read as _;
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Vec::new();
    };
    sidecar_names(&name.to_string_lossy())
        .into_iter()
        .filter_map(|(alg, sidecar)| {
            let mut content = Vec::new();
            std::fs::File::open(dir.join(&sidecar))
                .and_then(|f| f.take(MAX_SIDECAR_BYTES).read_to_end(&mut content))
                .ok()?;
            Some(ExpectedChecksum::from_sidecar(alg, &sidecar, &content))
        })
        .collect()
}

/// `mpay feed list`.
///
/// # Errors
/// Store errors.
pub fn list(store: &Store, org: Option<&str>) -> anyhow::Result<()> {
    let org = org.map(OrgFiscalCode::parse_unchecked).transpose()?;
    for r in list_feeds(store, org.as_ref())? {
        print!("{} ", r.organization);
        print_record(&r);
    }
    Ok(())
}

/// `mpay feed status`. Exit code 1 when not found.
///
/// # Errors
/// Store errors.
pub fn status(store: &Store, org: &str, flow_id: &str) -> anyhow::Result<u8> {
    let fc = OrgFiscalCode::parse_unchecked(org)?;
    match get_feed(store, &fc, flow_id)? {
        Some(r) => {
            print_record(&r);
            println!(
                "  phase {:?}, last committed row {}, started {}, updated {}",
                r.phase, r.last_committed_row, r.started_at, r.updated_at
            );
            Ok(0)
        }
        None => {
            println!("feed {flow_id} not found");
            Ok(1)
        }
    }
}

/// Hidden `mpay feed parse FILE`: reads every row without storing (benchmark baseline).
///
/// # Errors
/// Unreadable file, file-level errors.
pub fn parse_only(file: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let opts = ReadOptions {
        name_version: FeedFileName::parse(&name).ok().map(|n| n.version),
        ..ReadOptions::default()
    };
    let input = std::io::BufReader::new(std::fs::File::open(file)?);
    let reader = FeedReader::new(input, opts)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code.as_str(), e.message))?;
    let (mut rows, mut bad) = (0u64, 0u64);
    for row in reader {
        let row = row.map_err(|e| anyhow::anyhow!("{}: {}", e.code.as_str(), e.message))?;
        rows += 1;
        if row.record.is_err() {
            bad += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "parsed {rows} rows ({bad} with issues) in {secs:.2} s = {:.0} rows/s",
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[cfg(feature = "test-tools")]
/// Hidden `mpay feed gen` (feature `test-tools`: tests and `ops/bench/feeds`): a synthetic feed in our 2.0 format (FORMAT.md §5.8): Tipo B (no
/// IUV), ~10 % positions with two installments, ~5 % with a second beneficiary.
///
/// # Errors
/// I/O errors.
pub fn generate(out: &Path, rows: u64, tipo_dovuto: &str, iban2: &str) -> anyhow::Result<()> {
    use std::io::{BufWriter, Write};
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    write!(w, "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;descrizioneOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;datiSpecificiRiscossione;flgGeneraIuv;flagPagamentoPu;flagMultiBeneficiario;numeroBeneficiari;codiceFiscaleEnte_2;denominazioneEnte_2;ibanAccreditoEnte_2;causaleVersamentoEnte_2;importoVersamentoEnte_2;codiceTassonomiaEnte_2;azione\r\n")?;
    let (mut written, mut p) = (0u64, 0u64);
    let money = |c: u64| format!("{}.{:02}", c / 100, c % 100);
    while written < rows {
        p += 1;
        let iupd = format!("BENCH-{p:08}");
        let cents = 1000 + (p % 50_000);
        let multi = p % 20 == 0;
        let installments = p % 10 == 5 && written + 2 <= rows;
        let second = |amount: u64| {
            if multi {
                format!(
                    "true;2;80000000028;Ente Secondario;{iban2};Quota secondaria;{};9/0101101IM/",
                    money(amount / 4)
                )
            } else {
                "false;1;;;;;;".to_string()
            }
        };
        if installments {
            for (k, due) in [(1, "2030-06-30"), (2, "2030-09-30")] {
                write!(w, "{iupd};Posizione {p};1;INSTALLMENTS;In due rate;{iupd}-R{k};;F;TSTPRV80A01H501A;Persona Prova Uno;;{due};{};{tipo_dovuto};Rata {k}/2;9/0101101IM/;true;true;{};I\r\n", money(cents), second(cents))?;
            }
            written += 2;
        } else {
            write!(w, "{iupd};Posizione {p};1;SINGLE_INSTALLMENT;Rata unica;{iupd}-U;;F;TSTPRV80A01H501A;Persona Prova Uno;;2030-06-30;{};{tipo_dovuto};Rata unica;9/0101101IM/;true;true;{};I\r\n", money(cents), second(cents))?;
            written += 1;
        }
    }
    w.flush()?;
    Ok(())
}
