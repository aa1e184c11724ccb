//! The README's replay walkthrough as a test: the shipped `config/examples-replay.toml` (the
//! examples' broker 99999999999, station 99999999999_01 and organizations), the positions of
//! `examples/replay/positions.json`, then `pagopa-sim replay` of `../shared/pagopa/examples`
//! with `examples/replay/expect.toml`: every example answered as the spec expects, every answer
//! XSD-valid (checked by the simulator with libxml2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mpay::app::Application;
use mpay_config::{Settings, Sources};
use mpay_storage::ReceiptRepository;

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("PAGOPA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pagopa"));
    if dir.join("schemas").is_dir() {
        Some(dir)
    } else {
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!(
                "reference material missing at {} and MPAY_REQUIRE_SHARED=1",
                dir.display()
            );
        }
        eprintln!(
            "SKIPPED: pagoPA spec pack not found at {} (set PAGOPA_SHARED)",
            dir.display()
        );
        None
    }
}

fn sim_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("pagopa-sim");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "pagopa-sim", "--bin", "pagopa-sim"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build pagopa-sim");
    }
    bin
}

#[actix_web::test]
async fn the_shipped_examples_configuration_answers_every_example() {
    let Some(shared) = shared() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings::load(&Sources {
        demo: false,
        file: Some(root.join("config/examples-replay.toml")),
        env: false,
    })
    .expect("config/examples-replay.toml loads");
    // the walkthrough's file as shipped, on a temp store and a free port
    let dir = tempfile::tempdir().unwrap();
    settings.node.data_dir = dir.path().join("data");
    settings.http.bind = "127.0.0.1:0".into();
    let app = Application::build(settings, false).await.unwrap();
    let base = format!("http://{}", app.addr);
    let store = app.store.clone();
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });

    let positions = std::fs::read(root.join("examples/replay/positions.json")).unwrap();
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/api/v1/organizations/77777777777/debtpositions/bulk?toPublish=true"
        ))
        .header("Ocp-Apim-Subscription-Key", "examples-replay-key")
        .header("content-type", "application/json")
        .body(positions)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let station = format!("{base}/pagopa/paForNode");
    let expect = root.join("examples/replay/expect.toml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(sim_binary())
            .arg("--schemas")
            .arg(shared.join("schemas"))
            .args(["replay", "--station", &station])
            .arg(shared.join("examples"))
            .arg("--expect")
            .arg(expect)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "replay failed:\n{text}");
    // both example receipts stored (plus none refused)
    assert_eq!(store.ledger.receipt_count(), 2, "{text}");
    for id in [
        "0c2a5f1e8b7d4e39a6f0b1c2d3e4f5a6",
        "7d41c0e2a9b84f5c8e3a2b1c0d9e8f7a",
    ] {
        let r = store.ledger.receipt(id).unwrap().expect("receipt stored");
        assert!(r.flags.is_empty(), "{id} flagged: {:?}", r.flags);
    }
}
