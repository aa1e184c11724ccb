//! `pagopa-sim`: the pagoPA Node / PSP simulator (DESIGN §8). See the crate docs of `pagopa_sim`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use pagopa_sim::config::PspConfig;
use pagopa_sim::psp::{plan, plan_json, run_jobs, Runner};
use pagopa_sim::replay::{self, ReplayArgs};
use pagopa_sim::rest::{create_notices, discover, CreateRequest, Notice};
use pagopa_sim::validate::{check_schemas_dir, resolve_schemas_dir, Validator, ValidatorPool};

/// mimalloc, as `mpay`'s binary: the simulator is the load generator of the benches and shares
/// their cores, so its allocator time is taken from the server measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for unexpected outcomes / XSD failures.
const EXIT_FAILED: u8 = 1;
/// Exit code for usage, configuration or environment errors (schemas missing, ...).
const EXIT_SETUP: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "pagopa-sim",
    version,
    about = "pagoPA Node / PSP simulator: drives the station's paForNode SOAP endpoint and checks every answer against the official XSDs"
)]
struct Cli {
    /// Folder of the official pagoPA schemas (default: ../shared/pagopa/schemas from the current dir).
    #[arg(long, global = true, env = "PAGOPA_SCHEMAS")]
    schemas: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run N PSP payments (verify → getPayment → sendRT) against the station.
    Psp {
        /// Station SOAP URL, e.g. http://127.0.0.1:8080/pagopa/paForNode
        #[arg(long)]
        station: String,
        /// TOML configuration (see sim/examples/psp.toml).
        #[arg(long)]
        config: PathBuf,
        /// REST base URL for discovery and --create (default: `[notices.discover] rest`, else
        /// the origin of --station).
        #[arg(long, value_name = "URL")]
        rest: Option<String>,
        /// The organization's API key for the REST calls (default: `[notices.discover] api_key`).
        #[arg(long, value_name = "KEY", env = "PAGOPA_SIM_API_KEY")]
        key: Option<String>,
        /// Create N fresh notices through the REST API (`[notices.create]`) and pay those instead
        /// of discovering unpaid ones: the run can be repeated at will.
        #[arg(long, value_name = "N")]
        create: Option<usize>,
        /// Number of payments (default: one per payable notice).
        #[arg(long)]
        payments: Option<usize>,
        /// Concurrent workers.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Threads validating XML (libxml2).
        #[arg(long, default_value_t = 2)]
        validator_threads: usize,
        /// Append one JSON line per payment the station acknowledged (input of `fdr build`).
        #[arg(long, value_name = "FILE")]
        payments_out: Option<PathBuf>,
        /// Date the payments over the N days before today (default: now).
        #[arg(long, value_name = "N", default_value_t = 0)]
        payment_days: u32,
    },
    /// The PSPs' reporting side: flows of the recorded payments, the FdR REST API, bank credits.
    Fdr {
        #[command(subcommand)]
        cmd: pagopa_sim::fdr_cli::FdrCommand,
    },
    /// Post every *_req*.xml of DIR (sorted) and compare answers with the expectations.
    Replay {
        /// Station SOAP URL.
        #[arg(long)]
        station: String,
        /// Folder with request files (e.g. ../shared/pagopa/examples).
        dir: PathBuf,
        /// Expectations TOML (default: from sibling `<op>_res_OK` / `<op>_res_KO_<CODE>` names).
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Per-request timeout in milliseconds.
        #[arg(long, default_value_t = 15000)]
        timeout_ms: u64,
        /// Send `SOAPAction: "op"` (quoted) instead of the bare operation name.
        #[arg(long)]
        soap_action_quoted: bool,
    },
    /// Serve pagoPA's biz-events receipts (`getOrganizationReceipt`) from a JSON lines file of
    /// `CtReceiptModelResponse` objects and/or `--receipt JSON` (see `pagopa_sim::biz_events`).
    BizEvents {
        /// Address to listen on (`127.0.0.1:0` picks a port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        /// JSON lines file: one receipt per line, as the API answers it.
        #[arg(long, value_name = "FILE")]
        receipts: Option<PathBuf>,
        /// One receipt (JSON); repeatable.
        #[arg(long = "receipt", value_name = "JSON")]
        receipt: Vec<String>,
        /// Require this `Ocp-Apim-Subscription-Key`.
        #[arg(long, env = "PAGOPA_SIM_BIZ_EVENTS_KEY")]
        subscription_key: Option<String>,
        /// Answer 429 past this many calls in an hour (the real quota is 10).
        #[arg(long)]
        calls_per_hour: Option<usize>,
        /// Path prefix of the API.
        #[arg(long, default_value = "/bizevents/service/v1")]
        prefix: String,
    },
    /// Validate XML files (SOAP envelopes or standalone documents) against the schemas.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn schemas_or_die(cli: Option<&Path>) -> Result<PathBuf, ExitCode> {
    let dir = resolve_schemas_dir(cli);
    if let Err(e) = check_schemas_dir(&dir) {
        eprintln!("pagopa-sim: ERROR: {e}");
        eprintln!(
            "pagopa-sim: ERROR: without the official XSDs nothing can be checked; refusing to run"
        );
        return Err(ExitCode::from(EXIT_SETUP));
    }
    Ok(dir)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Fdr { cmd } = cli.command {
        // no XML validation on this side: no schemas needed
        return pagopa_sim::fdr_cli::main(cmd);
    }
    let dir = match schemas_or_die(cli.schemas.as_deref()) {
        Ok(d) => d,
        Err(c) => return c,
    };
    match cli.command {
        Command::Validate { files } => validate_files(&dir, &files),
        Command::Fdr { cmd } => pagopa_sim::fdr_cli::main(cmd),
        Command::BizEvents {
            bind,
            receipts,
            receipt,
            subscription_key,
            calls_per_hour,
            prefix,
        } => pagopa_sim::biz_events::run(pagopa_sim::biz_events::Options {
            bind,
            receipts,
            receipt,
            subscription_key,
            calls_per_hour,
            prefix,
        }),
        Command::Psp {
            station,
            config,
            rest,
            key,
            create,
            payments,
            concurrency,
            validator_threads,
            payments_out,
            payment_days,
        } => with_runtime(psp_main(
            dir,
            PspArgs {
                station,
                config,
                rest,
                key,
                create,
                payments,
                concurrency,
                validator_threads,
                payments_out,
                payment_days,
            },
        )),
        Command::Replay {
            station,
            dir: req_dir,
            expect,
            timeout_ms,
            soap_action_quoted,
        } => with_runtime(replay_main(
            dir,
            ReplayArgs {
                station,
                dir: req_dir,
                expect,
                timeout: Duration::from_millis(timeout_ms),
                soap_action_quoted,
            },
        )),
    }
}

fn with_runtime(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("pagopa-sim: cannot start the runtime: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn validate_files(dir: &Path, files: &[PathBuf]) -> ExitCode {
    let mut v = match Validator::load(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let mut failed = 0;
    for f in files {
        let res = std::fs::read(f)
            .map_err(|e| vec![e.to_string()])
            .and_then(|b| {
                let text = String::from_utf8_lossy(&b);
                if pagopa_sim::xml::extract_body_child(&text).is_ok() {
                    v.validate_soap(&b).map(|_| ())
                } else {
                    v.validate_standalone(&text)
                }
            });
        match res {
            Ok(()) => println!("OK   {}", f.display()),
            Err(errs) => {
                failed += 1;
                println!("FAIL {}", f.display());
                for e in errs {
                    println!("       {e}");
                }
            }
        }
    }
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

async fn replay_main(schemas: PathBuf, args: ReplayArgs) -> ExitCode {
    let pool = match ValidatorPool::start(&schemas, 1) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    match replay::run(&args, &pool).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// The `psp` command line.
struct PspArgs {
    station: String,
    config: PathBuf,
    rest: Option<String>,
    key: Option<String>,
    create: Option<usize>,
    payments: Option<usize>,
    concurrency: usize,
    validator_threads: usize,
    payments_out: Option<PathBuf>,
    payment_days: u32,
}

async fn psp_main(schemas: PathBuf, args: PspArgs) -> ExitCode {
    let PspArgs {
        station,
        config,
        rest,
        key,
        create,
        payments,
        concurrency,
        validator_threads,
        payments_out,
        payment_days,
    } = args;
    let payments_out = match payments_out
        .as_deref()
        .map(pagopa_sim::fdr::PaymentLog::open)
    {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!("pagopa-sim: ERROR: --payments-out {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let cfg = match PspConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let pool = match ValidatorPool::start(&schemas, validator_threads) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: HTTP client: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let mut notices: Vec<Notice> = cfg
        .notices
        .list
        .iter()
        .map(|n| Notice {
            qr: pagopa_sim::build::QrCode {
                fiscal_code: n.fiscal_code.clone(),
                notice_number: n.notice_number.clone(),
            },
            amount: n.amount_cents.map(pagopa_sim::amount::Cents),
            description: None,
            company_name: None,
            expect: n.expect.clone(),
        })
        .collect();
    let discover_cfg = cfg.notices.discover.as_ref();
    let rest = rest
        .or_else(|| discover_cfg.and_then(|d| d.rest.clone()))
        .or_else(|| pagopa_sim::rest::origin_of(&station));
    let key = key.or_else(|| discover_cfg.and_then(|d| d.api_key.clone()));
    if let Some(n) = create {
        let (Some(c), Some(rest)) = (&cfg.notices.create, &rest) else {
            eprintln!(
                "pagopa-sim: ERROR: --create needs a [notices.create] section (iban) in {} and a REST URL (--rest)",
                config.display()
            );
            return ExitCode::from(EXIT_SETUP);
        };
        let Some(organization) = c
            .organization
            .clone()
            .or_else(|| discover_cfg.and_then(|d| d.organizations.first().cloned()))
        else {
            eprintln!("pagopa-sim: ERROR: --create needs [notices.create] organization");
            return ExitCode::from(EXIT_SETUP);
        };
        let req = CreateRequest {
            rest: rest.clone(),
            api_key: key.clone(),
            organization,
            count: n,
            amount_cents: c.amount_cents,
            iban: c.iban.clone(),
            category: c.category.clone(),
        };
        match create_notices(&client, &req).await {
            Ok(created) => {
                eprintln!(
                    "pagopa-sim: created {} fresh notice(s) through {rest}",
                    created.len()
                );
                notices.extend(created);
            }
            Err(e) => {
                eprintln!("pagopa-sim: ERROR: creating notices failed: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
        }
    } else if let Some(d) = discover_cfg {
        let Some(rest) = &rest else {
            eprintln!("pagopa-sim: ERROR: discovery needs a REST URL (--rest)");
            return ExitCode::from(EXIT_SETUP);
        };
        match discover(&client, d, rest, key.as_deref()).await {
            Ok(found) => {
                eprintln!(
                    "pagopa-sim: discovered {} unpaid notice(s) through {rest}",
                    found.len()
                );
                notices.extend(found);
            }
            Err(e) => {
                eprintln!("pagopa-sim: ERROR: discovery failed: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
        }
    }
    let payable = notices.iter().filter(|n| n.expect.is_none()).count();
    if payable == 0 && create.is_none() {
        eprintln!(
            "pagopa-sim: ERROR: no unpaid notice to pay (the listed and discovered ones are all paid or none exist); run with --create N to create N fresh notices through the REST API first"
        );
        return ExitCode::from(EXIT_SETUP);
    }
    let n = payments.unwrap_or(payable);
    if n > payable {
        eprintln!(
            "pagopa-sim: WARNING: {n} payments asked, only {payable} payable notice(s) known: running {payable}"
        );
    }
    let unknown_fc = cfg
        .notices
        .unknown_fiscal_code
        .clone()
        .or_else(|| notices.first().map(|x| x.qr.fiscal_code.clone()));
    let unknown_seg = cfg.notices.unknown_segregation_code.clone().or_else(|| {
        notices
            .iter()
            .find_map(|x| pagopa_sim::nav::segregation_of(&x.qr.notice_number).map(str::to_string))
    });
    let jobs = match plan(
        &cfg,
        &notices,
        n,
        unknown_fc.as_deref(),
        unknown_seg.as_deref(),
    ) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    if jobs.is_empty() {
        eprintln!("pagopa-sim: ERROR: nothing to do (no notices)");
        return ExitCode::from(EXIT_SETUP);
    }
    let plan_desc = plan_json(&jobs);
    eprintln!(
        "pagopa-sim: {} job(s) against {station} with {concurrency} worker(s): {plan_desc}",
        jobs.len()
    );
    let runner = Arc::new(Runner {
        cfg,
        station: station.clone(),
        client,
        pool,
        stats: Default::default(),
        payments_out,
        payment_days,
    });
    let elapsed = run_jobs(Arc::clone(&runner), jobs, concurrency).await;
    runner.stats.print_human(elapsed);
    let summary = runner.stats.summary_json(
        elapsed,
        json!({
            "mode": "psp",
            "station": station,
            "concurrency": concurrency,
            "plan": plan_desc,
        }),
    );
    println!("SUMMARY {summary}");
    if runner.stats.unexpected_count() == 0 && runner.stats.xsd_failure_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}
