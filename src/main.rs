//! `mpay`: the composition root. Wires configuration, storage, actors and the web layer, and
//! offers the operator commands (IUV tools, store verify/export/import, API key hashing).

use std::io::{BufRead as _, BufReader, BufWriter, Write};
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
        /// Message bus over this NATS server (JetStream), e.g. nats://127.0.0.1:4222; without
        /// it (and without `[bus] nats_url`) the bus is in-process.
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
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
    /// Prints the stored form of a secret for the configuration: an FTP password as argon2id
    /// (`[[ftp.accounts]] password_hash`), an API key as `hmac-sha256:…` with the server secret
    /// `[auth] hash_secret` (`api_key_hashes`, `[[broker.api_keys]] hash`). The secret is read
    /// from standard input (one line) when not given.
    HashSecret {
        /// What the secret is.
        #[arg(long, value_enum)]
        kind: SecretKind,
        /// The secret (omit it to read it from standard input, out of the shell history).
        secret: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
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
    /// Downloads the organization's new flows from the FdR API (`[fdr] base_url`), as
    /// `POST …/fdrs/sync` does on a running node.
    Sync {
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
        /// The business day (YYYY-MM-DD, Europe/Rome) judged for the receipts no flow reports
        /// after their D+2 deadline (default today).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Writes an export of the organization for a period (as `GET …/reconciliation/exports/{kind}`).
    Export {
        /// Organization fiscal code.
        #[arg(long)]
        org: String,
        /// First day, YYYY-MM-DD (Europe/Rome).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD, included.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// payments, flows or reconciliation.
        #[arg(long)]
        kind: String,
        /// csv or xlsx.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Output file (default: the export's name in the current folder).
        #[arg(long)]
        out: Option<PathBuf>,
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
        /// Resume a load interrupted by a crash (a load that had ended gets its reports written again).
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
    /// Backs up the whole store (every tree, receipts with their raw XML; the journal with
    /// `--journal`) to a file or stdout. Works while `mpay serve` runs: the running node writes
    /// the backup into its `<data_dir>/backups/` folder and this command copies it to `--out`.
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Include the journal of exchanges (large).
        #[arg(long)]
        journal: bool,
        /// Write only positions and counters as editable JSON lines (the indexes are rebuilt
        /// on import) instead of a whole-store backup; the store must not be in use.
        #[arg(long, conflicts_with = "journal")]
        positions: bool,
    },
    /// Restores a backup (`store export`) into an empty store and verifies it; also reads the
    /// positions-only JSON lines of `store export --positions`.
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum SecretKind {
    /// An FTP account's password (argon2id).
    FtpPassword,
    /// A REST API key (HMAC-SHA256 with `[auth] hash_secret`).
    ApiKey,
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Prints the legacy unsalted SHA-256 of a key (still accepted in `api_key_hashes`; prefer
    /// `mpay hash-secret --kind api-key`).
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
        Err(e) if e.downcast_ref::<mpay::app::StoreUnwritable>().is_some() => {
            eprintln!("error: {e:#}");
            // EX_TEMPFAIL: a supervisor restarts the node; the store opens again when it can
            std::process::ExitCode::from(75)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MPAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,sled=warn,libunftp=warn"));
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
         For `store verify|import`, `feed load` and `iuv next`, stop the server first (`store export` works while it runs) (Ctrl-C or SIGTERM: it stops cleanly) and run the command again.",
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
        Command::Serve { config, bind, nats } => {
            let mut settings = load_settings(&config)?;
            if let Some(b) = bind {
                settings.http.bind = b;
            }
            if let Some(url) = nats {
                settings.bus.nats_url = url;
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
                FdrCommand::Import { org, config, .. }
                | FdrCommand::List { org, config }
                | FdrCommand::Sync { org, config } => (org.clone(), config.clone()),
            };
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            let store = open_store(&settings)?;
            // revocations are queued for the Enti with an endpoint, as by a running node
            store.ledger.set_notified_organizations(
                settings
                    .organizations
                    .iter()
                    .filter(|o| o.notification.is_some())
                    .map(|o| o.fiscal_code.clone()),
            );
            // and the flows of the Enti that forward them, with the flow itself
            store.reconciliation.set_flow_forwarding(
                settings
                    .organizations
                    .iter()
                    .filter(|o| o.notification.as_ref().is_some_and(|n| n.flows))
                    .map(|o| o.fiscal_code.clone()),
            );
            return match command {
                FdrCommand::Import { files, .. } => import(&store, &org, Kind::Flow, &files),
                FdrCommand::List { .. } => list(&store, &org),
                FdrCommand::Sync { .. } => mpay::recon_cli::sync(&settings, &store, &org),
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
            command:
                ReconCommand::Run {
                    org,
                    json,
                    date,
                    config,
                },
        } => {
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            return mpay::recon_cli::run(&open_store(&settings)?, &org, json, date);
        }
        Command::Recon {
            command:
                ReconCommand::Export {
                    org,
                    from,
                    to,
                    kind,
                    format,
                    out,
                    config,
                },
        } => {
            let settings = load_settings(&config)?;
            configured_org(&settings, &config, &org)?;
            return mpay::recon_cli::export(
                &open_store(&settings)?,
                &org,
                &kind,
                &format,
                from,
                to,
                out,
            );
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
        Command::HashSecret {
            kind,
            secret,
            config,
        } => {
            let secret = match secret {
                Some(s) => s,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            anyhow::ensure!(!secret.is_empty(), "an empty secret");
            match kind {
                SecretKind::FtpPassword => println!(
                    "{}",
                    mpay_config::secrets::argon2_hash(&secret).map_err(anyhow::Error::msg)?
                ),
                SecretKind::ApiKey => {
                    let settings = load_settings(&config)?;
                    let server = settings.auth.server_secret().ok_or_else(|| {
                        anyhow::anyhow!(
                            "auth.hash_secret is not set: set MPAY__AUTH__HASH_SECRET (at least 32 characters) as the server will have it"
                        )
                    })?;
                    println!("{}", mpay_config::secrets::hmac_digest(server, &secret));
                }
            }
        }
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
            let report = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.ledger.verify()
            })) {
                Ok(report) => report?,
                Err(_) => bail!(
                    "{}",
                    mpay_storage::StorageError::CorruptStore {
                        dir: settings.store_dir().display().to_string(),
                        detail: "the store failed while reading its records".into(),
                    }
                ),
            };
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
        StoreCommand::Export {
            config,
            out,
            journal,
            positions,
        } => {
            let settings = load_settings(&config)?;
            let dir = settings.store_dir();
            let store = match Store::open_with_cache(
                &dir,
                settings.node.cache_mb.saturating_mul(1024 * 1024),
            ) {
                Ok(store) => store,
                Err(e) if mpay_storage::is_locked(&e) && !positions => {
                    return online_backup(&settings, out.as_deref(), journal);
                }
                Err(e) if mpay_storage::is_locked(&e) => bail!("{}", store_in_use(&dir)),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot open the store in {}", dir.display()))
                }
            };
            let mut w: Box<dyn Write> = match &out {
                Some(path) => Box::new(BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(BufWriter::new(std::io::stdout().lock())),
            };
            if positions {
                let n = store.ledger.export(&mut w)?;
                w.flush()?;
                eprintln!("exported {n} records (positions and counters)");
            } else {
                let summary = store.backup(&mut w, journal)?;
                w.flush()?;
                eprintln!("{}", backup_summary_line(&summary));
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        StoreCommand::Import { config, file } => {
            let settings = load_settings(&config)?;
            let dir = settings.store_dir();
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let mut input = BufReader::new(f);
            let whole = {
                let head = input.fill_buf()?;
                let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
                String::from_utf8_lossy(first).contains(mpay_storage::backup::FORMAT)
            };
            if whole {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let summary = match mpay_storage::backup::restore(&dir, &mut input) {
                    Ok(s) => s,
                    Err(e) if mpay_storage::is_locked(&e) => bail!("{}", store_in_use(&dir)),
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot restore {} into {}", file.display(), dir.display())
                        })
                    }
                };
                println!("restored {}", backup_summary_line(&summary));
                let store = open_store(&settings)?;
                let report = store.ledger.verify()?;
                if !report.is_consistent() {
                    bail!(
                        "restored, but `store verify` finds {} missing, {} dangling, {} corrupt index entries",
                        report.missing.len(),
                        report.dangling.len(),
                        report.corrupt.len()
                    );
                }
                println!(
                    "verified: {} positions, indexes agree with the ledger",
                    report.positions
                );
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let store = open_store(&settings)?;
            if store.ledger.count() > 0 {
                bail!(
                    "the store in {} is not empty ({} positions): import only into an empty store",
                    dir.display(),
                    store.ledger.count()
                );
            }
            let n = store.ledger.import(&mut input)?;
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

/// `N records in T trees, sha256 …`.
fn backup_summary_line(s: &mpay_storage::backup::BackupSummary) -> String {
    format!(
        "{} records in {} trees, sha256 {}",
        s.records,
        s.trees.len(),
        s.sha256
    )
}

/// `store export` while `mpay serve` holds the store: the node writes the backup (its own
/// loopback-only endpoint), this copies it to `out` (or stdout).
fn online_backup(
    settings: &Settings,
    out: Option<&std::path::Path>,
    journal: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let ops_path = settings.ops_file_path();
    let ops: mpay_web::ops::OpsFile = std::fs::read(&ops_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .with_context(|| {
            format!(
                "cannot read {} (written by the running node at start-up)",
                ops_path.display()
            )
        })?;
    let url = format!("{}/ops/backup?journal={journal}", ops.url);
    eprintln!("the store is in use by a running node: asking it for an online backup ({url})");
    #[derive(serde::Deserialize)]
    struct Answer {
        file: PathBuf,
        records: u64,
        trees: std::collections::BTreeMap<String, u64>,
        sha256: String,
    }
    let answer: Answer = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()?
        .post(&url)
        .header(mpay_web::ops::OPS_TOKEN_HEADER, &ops.token)
        .send()
        .with_context(|| format!("the node at {url} did not answer"))?
        .error_for_status()
        .with_context(|| format!("the node at {url} refused the backup"))?
        .json()?;
    let path = &answer.file;
    match out {
        Some(out) => {
            std::fs::copy(path, out)
                .with_context(|| format!("cannot copy {} to {}", path.display(), out.display()))?;
            eprintln!(
                "{} records in {} trees, sha256 {} -> {} (the node keeps {})",
                answer.records,
                answer.trees.len(),
                answer.sha256,
                out.display(),
                path.display()
            );
        }
        None => {
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            std::io::copy(&mut f, &mut std::io::stdout().lock())?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
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
