//! `pagopa-sim`: the pagoPA Node and PSP simulator (DESIGN §8).
//!
//! Its PSP (`psp`) and replay (`replay`) modes drive the station's SOAP endpoint and come with
//! the station itself; until then the binary says so instead of pretending to run.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            println!("pagopa-sim {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "pagopa-sim: the PSP and replay modes arrive with the pagoPA station (paForNode); \
                 this build has no station to drive yet"
            );
            std::process::ExitCode::from(2)
        }
    }
}
