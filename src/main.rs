//! `mpay`: the composition root. Wires configuration, storage, actors and the web layer, and
//! offers the operator commands (IUV tools, store verify/export/import, API key hashing).

use std::io::{BufReader, BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Supervisor};
use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use mpay_actors::{
    FlushJournal, HealthRegistry, JournalWriter, Scheduler, SchedulerConfig, Watchdog,
};
use mpay_config::{Settings, Sources};
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use mpay_storage::{JournalStore, PositionRepository, Store};
use mpay_web::AppState;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    Ok(settings)
}

fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let dir = settings.store_dir();
    Store::open(&dir).with_context(|| {
        format!(
            "cannot open the store in {} (is `mpay serve` running on it?)",
            dir.display()
        )
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
            system.block_on(serve(settings, config.demo))?;
        }
        Command::Iuv { command } => match command {
            IuvCommand::Next { org, config } => {
                let settings = load_settings(&config)?;
                let o = settings
                    .organization(&org)
                    .with_context(|| format!("organization {org} is not configured"))?;
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
        Command::Apikey { command } => match command {
            ApikeyCommand::Hash { key } => println!("{}", mpay_config::hash_api_key(&key)),
            ApikeyCommand::New => {
                let key = random_key();
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
        StoreCommand::StressWriter { dir, prefix } => {
            stress::run(&dir, &prefix)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn random_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The demo API key: `MPAY_DEMO_API_KEY`, else the one kept in the data directory, else a new
/// one (then kept).
fn demo_api_key(data_dir: &Path) -> anyhow::Result<String> {
    if let Ok(k) = std::env::var("MPAY_DEMO_API_KEY") {
        if !k.trim().is_empty() {
            return Ok(k.trim().to_string());
        }
    }
    let path = data_dir.join("demo-api-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        if !k.trim().is_empty() {
            return Ok(k.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let key = random_key();
    std::fs::write(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let store = open_store(&settings)?;
    let health = HealthRegistry::new();

    let mut extra_keys = Vec::new();
    let mut demo_info = None;
    if demo {
        if let Some(org) = settings.organizations.first() {
            let key = demo_api_key(&settings.node.data_dir)?;
            extra_keys.push((org.fiscal_code.clone(), mpay_config::hash_api_key(&key)));
            demo_info = Some((org.fiscal_code.clone(), org.name.clone(), key));
        }
    }

    let mut watchdog = Watchdog::new(
        health.clone(),
        Duration::from_millis(settings.watchdog.interval_ms),
    );
    let journal_store: Arc<dyn JournalStore> = store.journal.clone();
    let (js, reg, batch_max, interval) = (
        journal_store.clone(),
        health.clone(),
        settings.journal.batch_max,
        Duration::from_millis(settings.journal.batch_interval_ms),
    );
    let journal = watchdog.watch("JournalWriter", "main", move || {
        let (js, reg) = (js.clone(), reg.clone());
        Supervisor::start(move |_| JournalWriter::new(js, reg, batch_max, interval))
    });
    let ledger: Arc<dyn PositionRepository> = store.ledger.clone();
    let (reg, cfg) = (
        health.clone(),
        SchedulerConfig {
            tick: Duration::from_secs(settings.scheduler.tick_secs),
            journal_retention: chrono::Duration::days(i64::from(settings.journal.retention_days)),
        },
    );
    let _scheduler = watchdog.watch("Scheduler", "main", move || {
        let (l, j, r, c) = (
            ledger.clone(),
            journal_store.clone(),
            reg.clone(),
            cfg.clone(),
        );
        Supervisor::start(move |_| Scheduler::new(l, j, r, c))
    });
    let _watchdog = watchdog.start();

    let state = AppState::new(
        settings.clone(),
        store.clone(),
        health,
        Some(journal.clone()),
        &extra_keys,
    )?;
    if let Some((cf, _, _)) = &demo_info {
        let st = state.clone();
        let cf2 = cf.clone();
        let n = tokio::task::spawn_blocking(move || mpay_web::demo::seed(&st, &cf2)).await??;
        if n > 0 {
            tracing::info!(organization = %cf, positions = n, "demo positions created");
        }
    }

    let listener = TcpListener::bind(&settings.http.bind)
        .with_context(|| format!("cannot bind {}", settings.http.bind))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    println!("mpay {} listening on {base}", env!("CARGO_PKG_VERSION"));
    println!("  API docs:   {base}/api/docs/");
    println!("  OpenAPI:    {base}/api/openapi.json");
    println!("  health:     {base}/health/ready  {base}/health/actors  {base}/metrics");
    println!("  data dir:   {}", settings.node.data_dir.display());
    if let Some((cf, name, key)) = &demo_info {
        println!("  demo organization: {name} — fiscal code {cf}");
        println!("  demo API key (header Ocp-Apim-Subscription-Key): {key}");
        println!("  try: curl -H 'Ocp-Apim-Subscription-Key: {key}' {base}/api/v1/organizations/{cf}/debtpositions");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let server = mpay_web::server(state, listener)?;
    server.await?;

    tracing::info!("HTTP server stopped; flushing");
    if let Ok(Err(e)) = journal.addr().send(FlushJournal).await {
        tracing::warn!(error = %e, "journal flush failed");
    }
    let st = store.clone();
    tokio::task::spawn_blocking(move || st.flush_blocking()).await??;
    tracing::info!("stopped cleanly");
    actix::System::current().stop();
    Ok(())
}
