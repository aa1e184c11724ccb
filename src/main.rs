//! `mpay`: the composition root. Wires configuration, storage, actors and the web layer, and
//! offers the operator commands (IUV tools, store verify/export/import, API key hashing).

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use mpay_config::{Settings, Sources};
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use mpay_storage::{PositionRepository, Store};

/// mimalloc instead of glibc malloc: allocation was 28 % (station verify) to 40–50 % (feed loads)
/// of the profiles with glibc; see `ops/bench/README.md` for the measured effect.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod dev;
#[cfg(feature = "test-tools")]
mod stress;

/// mpay — regional pagoPA payments platform.
#[derive(Parser)]
#[command(name = "mpay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// Configuration file (TOML), layered over the embedded defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Use the demo organization and ./data as data directory.
    #[arg(long)]
    demo: bool,
    /// Data directory (store, feeds, demo API key); overrides the configuration's
    /// `node.data_dir` (default `./data`, relative to the current directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the platform (HTTP server and actors) until SIGTERM/SIGINT.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Bind address (default from configuration: 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// IUV and notice-number tools.
    Iuv {
        #[command(subcommand)]
        command: IuvCommand,
    },
    /// Store maintenance (run them while the server is stopped).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// API key tools.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Bulk debt-position feeds (run while the server is stopped).
    Feed {
        #[command(subcommand)]
        command: FeedCommand,
    },
    /// Reporting flows (FdR) of an organization (run while the server is stopped; the REST API
    /// `…/fdrs` otherwise).
    Fdr {
        #[command(subcommand)]
        command: FdrCommand,
    },
    /// Bank and treasury statements (run while the server is stopped).
    Bank {
        #[command(subcommand)]
        command: BankCommand,
    },
    /// Reconciliation of receipts, flows and credits (run while the server is stopped).
    Recon {
        #[command(subcommand)]
        command: ReconCommand,
    },
    /// Payment notices as PDF (run while the server is stopped; the REST job
    /// `…/notices/print-jobs` otherwise).
    Notices {
        #[command(subcommand)]
        command: NoticesCommand,
    },
    /// Development helpers.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand)]
enum NoticesCommand {
    /// Prints the notices of an organization's positions chosen by feed, status or due dates:
    /// one PDF per position named by its notice number, or one merged `notices.pdf`.
    Print {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        /// The positions created by this feed (flow id).
        #[arg(long, value_name = "FLOW_ID", group = "which")]
        feed: Option<String>,
        /// The positions in this status (e.g. VALID).
        #[arg(long, group = "which")]
        status: Option<String>,
        /// Positions with an option due on or after this day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY")]
        due_from: Option<chrono::NaiveDate>,
        /// Positions with an option due on or before this day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY")]
        due_to: Option<chrono::NaiveDate>,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// One merged PDF instead of one per position.
        #[arg(long)]
        merge: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Also time the QR codes alone for the same notices (ops/bench/notices).
        #[arg(long, hide = true)]
        qr_baseline: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum FdrCommand {
    /// Imports FlussoRiversamento files (XML 1.0.4/1.0.5, base64 of it, or the old
    /// nodoChiediFlussoRendicontazione answer); a file that is not a flow is kept for inspection.
    Import {
        /// The receiving organization's fiscal code.
        #[arg(long)]
        org: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Lists the organization's flows (latest revisions) with their settlement.
    List {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum BankCommand {
    /// Imports statements: camt.053/054 (001.02-001.08, CBI envelopes) or OPI giornale di cassa.
    Import {
        /// The organization whose account they are.
        #[arg(long)]
        org: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum ReconCommand {
    /// Reconciles an organization and prints the totals per label and what needs a look.
    Run {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        /// Every line as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Plays an Ente's system: prints every payment notification it receives (signed JSON
    /// webhook, or SOAP notificaPagamento answered retcode 00). The demo Ente
    /// (`serve --demo`) notifies http://127.0.0.1:9090/mpay/notifications.
    EnteReceiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: String,
        /// The webhook secret, to check `X-Mpay-Signature` (the demo's is in config/demo.toml).
        #[arg(long, env = "MPAY_ENTE_SECRET")]
        secret: Option<String>,
    },
}

#[derive(Subcommand)]
enum FeedCommand {
    /// Loads a feed file (CSV or zip) with a progress bar; writes the report next to it.
    Load {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        /// The feed file.
        file: PathBuf,
        /// delta or full (default: the zip's manifest, else delta).
        #[arg(long)]
        mode: Option<String>,
        /// Flow id (default: from the file name).
        #[arg(long)]
        flow_id: Option<String>,
        /// Where to write the outcome report (default `<basename>-ESITO.csv` next to FILE).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Validate and report only.
        #[arg(long)]
        dry_run: bool,
        /// Resume a load interrupted by a crash.
        #[arg(long)]
        resume: bool,
        /// Confirm a FULL load held by the cancellation guard.
        #[arg(long)]
        confirm: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Lists the loads.
    List {
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Status of one load.
    Status {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        /// Flow id.
        flow_id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Benchmark helper: parses a feed without storing it.
    #[command(hide = true)]
    Parse {
        /// The CSV.
        file: PathBuf,
    },
    /// Benchmark and test helper: writes a synthetic Tipo B feed (feature `test-tools`).
    #[cfg(feature = "test-tools")]
    #[command(hide = true)]
    Gen {
        /// Output CSV.
        #[arg(long)]
        out: PathBuf,
        /// Data rows.
        #[arg(long)]
        rows: u64,
        /// tipoDovuto of the rows.
        #[arg(long, default_value = "AOC")]
        tipo_dovuto: String,
        /// IBAN of the second beneficiary.
        #[arg(long, default_value = "IT60X0542811101000000123456")]
        iban2: String,
    },
}

#[derive(Subcommand)]
enum IuvCommand {
    /// Hands out the next notice number of an organization (durably: never again).
    Next {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Checks a notice number (18 digits): layout, IUV and check digit.
    Check {
        /// The notice number.
        notice: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Checks every index against the ledger; exit code 1 when they disagree.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Writes positions and counters as JSON lines (to a file or stdout).
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Loads a JSON lines export into an empty store (indexes are rebuilt).
    Import {
        #[command(flatten)]
        config: ConfigArgs,
        /// The export file.
        file: PathBuf,
    },
    /// Test helper: writes positions into DIR and prints `ACK <iupd>` after each durable write.
    #[cfg(feature = "test-tools")]
    #[command(hide = true)]
    StressWriter {
        /// Store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Prefix of the iupds written.
        #[arg(long, default_value = "S")]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Prints the SHA-256 to put in `api_key_hashes`.
    Hash {
        /// The key.
        key: String,
    },
    /// Generates a new random key and prints it with its hash.
    New,
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MPAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,sled=warn"));
    use std::io::IsTerminal as _;
    // colours only on a terminal: a log sent to a file or a pipe stays plain text
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("MPAY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_settings(args: &ConfigArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(&Sources {
        demo: args.demo,
        file: args.config.clone(),
        env: true,
    })?;
    if args.demo && args.config.is_none() && std::env::var_os("MPAY__NODE__DATA_DIR").is_none() {
        settings.node.data_dir = PathBuf::from("./data");
    }
    if let Some(dir) = &args.data_dir {
        settings.node.data_dir = dir.clone();
    }
    Ok(settings)
}

fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let dir = settings.store_dir();
    match Store::open_with_cache(&dir, settings.node.cache_mb.saturating_mul(1024 * 1024)) {
        Ok(s) => Ok(s),
        Err(e) if mpay_storage::is_locked(&e) => bail!("{}", store_in_use(&dir)),
        Err(e) => Err(e).with_context(|| format!("cannot open the store in {}", dir.display())),
    }
}

/// What an operator can do when the store is held by a running `mpay serve` (sled lets one
/// process open a store, even for reading).
fn store_in_use(dir: &std::path::Path) -> String {
    format!(
        "the store in {} is in use by a running `mpay serve` (one process at a time can open it).\n\
         While it runs, read through its API instead:\n\
         \x20 positions:   GET /api/v1/organizations/<fiscal code>/debtpositions   (filters: see /api/docs/)\n\
         \x20 feed loads:  GET /api/v1/organizations/<fiscal code>/feeds[/<flowId>]\n\
         \x20 a notice:    POST /api/v1/organizations/<fiscal code>/debtpositions (creates and numbers it)\n\
         \x20 health:      GET /health/ready, /health/actors, /metrics\n\
         For `store verify|export|import`, `feed load` and `iuv next`, stop the server first (Ctrl-C or SIGTERM: it stops cleanly) and run the command again.",
        dir.display()
    )
}

/// The organization `org` of the settings, or an error saying how to configure it.
fn configured_org<'a>(
    settings: &'a Settings,
    args: &ConfigArgs,
    org: &str,
) -> anyhow::Result<&'a mpay_config::OrganizationSettings> {
    settings.organization(org).with_context(|| {
        if args.demo || args.config.is_some() {
            format!("organization {org} is not configured")
        } else {
            format!(
                "organization {org} is not configured: add --demo for the demo organization (80001234568) or --config FILE"
            )
        }
    })
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve { config, bind } => {
            let mut settings = load_settings(&config)?;
            if let Some(b) = bind {
                settings.http.bind = b;
            }
            let system = actix_rt::System::new();
            system.block_on(async move {
                let app = mpay::app::Application::build(settings, config.demo).await?;
                app.print_banner();
                app.run_until_stopped().await
            })?;
        }
        Command::Iuv { command } => match command {
            IuvCommand::Next { org, config } => {
                let settings = load_settings(&config)?;
                let o = configured_org(&settings, &config, &org)?;
                let layout = o.layout().map_err(anyhow::Error::msg)?;
                let cf = OrgFiscalCode::parse_unchecked(&org)?;
                let store = open_store(&settings)?;
                let nav = store.ledger.next_notice(&cf, &layout)?;
                store.flush_blocking()?;
                println!("{nav}");
            }
            IuvCommand::Check { notice } => {
                return Ok(iuv_check(&notice));
            }
        },
        Command::Store { command } => return store_command(command),
        Command::Feed { command } => return feed_command(command),
        Command::Fdr { command } => {
            use mpay::recon_cli::{import, list, Kind};
            let (org, config) = match &command {
                FdrCommand::Import { org, config, .. } | FdrCommand::List { org, config } => {
                    (org.clone(), config.clone())
                }
            };
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            let store = open_store(&settings)?;
            return match command {
                FdrCommand::Import { files, .. } => import(&store, &org, Kind::Flow, &files),
                FdrCommand::List { .. } => list(&store, &org),
            };
        }
        Command::Bank {
            command: BankCommand::Import { org, files, config },
        } => {
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            let store = open_store(&settings)?;
            return mpay::recon_cli::import(&store, &org, mpay::recon_cli::Kind::Statement, &files);
        }
        Command::Recon {
            command: ReconCommand::Run { org, json, config },
        } => {
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            return mpay::recon_cli::run(&open_store(&settings)?, &org, json);
        }
        Command::Notices {
            command:
                NoticesCommand::Print {
                    org,
                    feed,
                    status,
                    due_from,
                    due_to,
                    out,
                    merge,
                    quiet,
                    qr_baseline,
                    config,
                },
        } => {
            if (feed.is_some() || status.is_some()) && (due_from.is_some() || due_to.is_some()) {
                bail!("choose one of --feed, --status, or --due-from/--due-to");
            }
            let settings = load_settings(&config)?;
            let org = configured_org(&settings, &config, &org)?;
            let store = open_store(&settings)?;
            let args = mpay::notices_cli::PrintArgs {
                selection: mpay_web::api::documents::PrintSelection {
                    feed,
                    status,
                    due_from,
                    due_to,
                    merge,
                },
                out,
                quiet,
                qr_baseline,
            };
            return mpay::notices_cli::print(&store, org, &args);
        }
        Command::Dev { command } => match command {
            DevCommand::EnteReceiver { bind, secret } => dev::ente_receiver(&bind, secret)?,
        },
        Command::Apikey { command } => match command {
            ApikeyCommand::Hash { key } => println!("{}", mpay_config::hash_api_key(&key)),
            ApikeyCommand::New => {
                let key = mpay::app::random_key();
                println!("key:  {key}\nhash: {}", mpay_config::hash_api_key(&key));
            }
        },
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn iuv_check(notice: &str) -> std::process::ExitCode {
    let nav = match NoticeNumber::parse_unchecked(notice.trim()) {
        Ok(n) => n,
        Err(e) => {
            println!("INVALID {notice}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let check = nav.check();
    println!("notice number: {nav}");
    println!("layout:        {}", nav.layout());
    println!("IUV:           {}", nav.iuv());
    match check.check_digit {
        Some((found, expected)) if found == expected => {
            println!("check digit:   {found:02} (mod 93) OK");
            println!("OK");
            std::process::ExitCode::SUCCESS
        }
        Some((found, expected)) => {
            println!("check digit:   {found:02}, expected {expected:02} (mod 93) WRONG");
            println!("INVALID");
            std::process::ExitCode::FAILURE
        }
        None => {
            println!("check digit:   none in this layout (aux digit 1)");
            println!("OK");
            std::process::ExitCode::SUCCESS
        }
    }
}

fn store_command(command: StoreCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        StoreCommand::Verify { config } => {
            let settings = load_settings(&config)?;
            let store = open_store(&settings)?;
            let report = store.ledger.verify()?;
            println!(
                "store {}: {} positions, {} index entries",
                settings.store_dir().display(),
                report.positions,
                report.index_entries
            );
            for m in report.missing.iter().take(20) {
                println!("missing index entry: {m}");
            }
            for d in report.dangling.iter().take(20) {
                println!("dangling index entry: {d}");
            }
            for c in report.corrupt.iter().take(20) {
                println!("corrupt record: {c}");
            }
            if report.is_consistent() {
                println!("consistent: indexes agree with the ledger");
                Ok(std::process::ExitCode::SUCCESS)
            } else {
                println!(
                    "INCONSISTENT: {} missing, {} dangling, {} corrupt",
                    report.missing.len(),
                    report.dangling.len(),
                    report.corrupt.len()
                );
                Ok(std::process::ExitCode::FAILURE)
            }
        }
        StoreCommand::Export { config, out } => {
            let settings = load_settings(&config)?;
            let store = open_store(&settings)?;
            let n = match out {
                Some(path) => {
                    let f = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = BufWriter::new(f);
                    let n = store.ledger.export(&mut w)?;
                    w.flush()?;
                    n
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = BufWriter::new(stdout.lock());
                    store.ledger.export(&mut w)?
                }
            };
            eprintln!("exported {n} records");
            Ok(std::process::ExitCode::SUCCESS)
        }
        StoreCommand::Import { config, file } => {
            let settings = load_settings(&config)?;
            let store = open_store(&settings)?;
            if store.ledger.count() > 0 {
                bail!(
                    "the store in {} is not empty ({} positions): import only into an empty store",
                    settings.store_dir().display(),
                    store.ledger.count()
                );
            }
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let n = store.ledger.import(&mut BufReader::new(f))?;
            store.flush_blocking()?;
            println!("imported {n} records");
            Ok(std::process::ExitCode::SUCCESS)
        }
        #[cfg(feature = "test-tools")]
        StoreCommand::StressWriter { dir, prefix } => {
            stress::run(&dir, &prefix)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn feed_command(command: FeedCommand) -> anyhow::Result<std::process::ExitCode> {
    use mpay::feeds_cli;
    let code = match command {
        FeedCommand::Load {
            org,
            file,
            mode,
            flow_id,
            report,
            dry_run,
            resume,
            confirm,
            quiet,
            config,
        } => {
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            let store = open_store(&settings)?;
            let args = feeds_cli::LoadArgs {
                org,
                file,
                mode,
                flow_id,
                report,
                dry_run,
                resume,
                confirm,
                quiet,
            };
            feeds_cli::load(&settings, &store, &args)?
        }
        FeedCommand::List { org, config } => {
            let settings = load_settings(&config)?;
            feeds_cli::list(&open_store(&settings)?, org.as_deref())?;
            0
        }
        FeedCommand::Status {
            org,
            flow_id,
            config,
        } => {
            let settings = load_settings(&config)?;
            feeds_cli::status(&open_store(&settings)?, &org, &flow_id)?
        }
        FeedCommand::Parse { file } => {
            feeds_cli::parse_only(&file)?;
            0
        }
        #[cfg(feature = "test-tools")]
        FeedCommand::Gen {
            out,
            rows,
            tipo_dovuto,
            iban2,
        } => {
            feeds_cli::generate(&out, rows, &tipo_dovuto, &iban2)?;
            0
        }
    };
    Ok(std::process::ExitCode::from(code))
}
