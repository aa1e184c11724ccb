//! `pagopa-sim fdr …`: the command line of the simulator's FdR side — `build`, `serve`,
//! `bank`, `summary` — over [`crate::fdr`] (flows and the FdR REST API) and [`crate::bank`]
//! (the bank credits).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use crate::fdr::*;

/// `pagopa-sim fdr …`.
#[derive(clap::Subcommand, Debug)]
pub enum FdrCommand {
    /// Build the reporting flows of the payments recorded by `psp --payments-out`.
    Build {
        /// The payments file (JSON lines).
        #[arg(long)]
        payments: PathBuf,
        /// Where to write the flows (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Fault to inject, `KIND[@N]` (N = the flow's ordinal, default 1): revised,
        /// duplicate-rows, code9, unknown-code, header-mismatch, iur-differs. Repeatable.
        #[arg(long = "fault", value_name = "KIND[@N]")]
        faults: Vec<Fault>,
        /// Also write each flow as FlussoRiversamento XML into this folder.
        #[arg(long, value_name = "DIR")]
        xml_dir: Option<PathBuf>,
    },
    /// Serve the flows on the FdR REST API for organizations; prints `LISTENING <url>`.
    /// `POST /_sim/reload` reads the file again, `POST /_sim/publish` publishes held revisions.
    Serve {
        /// The flows file written by `fdr build` (may not exist yet: reload it later).
        #[arg(long)]
        flows: PathBuf,
        /// Address to bind (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
        /// The `Ocp-Apim-Subscription-Key` the clients must send (default: not checked).
        #[arg(long, env = "PAGOPA_SIM_FDR_KEY")]
        subscription_key: Option<String>,
        /// Base path before `/organizations` (pagoPA's is `/fdr-org/service/v1`).
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Write the bank credits of the flows as a camt.053 or an OPI giornale di cassa.
    Bank(crate::bank::BankArgs),
    /// Print the flows per payment day: flows, rows, declared and credited totals.
    Summary {
        /// The flows file.
        #[arg(long)]
        flows: PathBuf,
    },
}

/// Runs an `fdr` command.
pub fn main(cmd: FdrCommand) -> ExitCode {
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagopa-sim: ERROR: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: FdrCommand) -> Result<(), String> {
    match cmd {
        FdrCommand::Build {
            payments,
            out,
            faults,
            xml_dir,
        } => {
            let p = read_payments(&payments)?;
            let flows = build_flows(&p, &faults, Utc::now())?;
            flows.save(&out)?;
            if let Some(dir) = xml_dir {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                for f in &flows.flows {
                    let path = dir.join(format!("{}_r{}.xml", f.fdr, f.revision));
                    std::fs::write(&path, flow_xml(f))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            for f in &flows.flows {
                println!(
                    "FLOW {} rev {}{} org {} psp {} day {} rows {} total {} money {}{}",
                    f.fdr,
                    f.revision,
                    if f.held { " (held)" } else { "" },
                    f.organization,
                    f.psp_id,
                    f.payment_day,
                    f.rows.len(),
                    crate::amount::Cents(f.declared_cents),
                    crate::amount::Cents(f.money_cents),
                    if f.faults.is_empty() {
                        String::new()
                    } else {
                        format!(" faults {}", f.faults.join(","))
                    }
                );
            }
            println!(
                "pagopa-sim: {} payment(s) -> {} flow revision(s) in {}",
                p.len(),
                flows.flows.len(),
                out.display()
            );
            Ok(())
        }
        FdrCommand::Serve {
            flows,
            bind,
            subscription_key,
            prefix,
        } => {
            // a missing file is an empty API until `POST /_sim/reload`
            let file = if flows.exists() {
                FlowsFile::load(&flows)?
            } else {
                FlowsFile::default()
            };
            let listener =
                std::net::TcpListener::bind(&bind).map_err(|e| format!("bind {bind}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let state = Arc::new(ServeState {
                flows: Mutex::new(file),
                path: Some(flows),
                subscription_key,
                calls: Mutex::new(BTreeMap::new()),
            });
            let prefix = prefix.trim_end_matches('/').to_string();
            actix_web::rt::System::new().block_on(async move {
                let server = serve(state, prefix.clone(), listener).map_err(|e| e.to_string())?;
                println!("LISTENING http://{addr}{prefix}");
                let _ = std::io::stdout().flush();
                server.await.map_err(|e| e.to_string())
            })
        }
        FdrCommand::Bank(args) => crate::bank::run(&args),
        FdrCommand::Summary { flows } => {
            let file = FlowsFile::load(&flows)?;
            print!("{}", summary(&file));
            Ok(())
        }
    }
}
