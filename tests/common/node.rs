//! The `mpay` binary as a child process (`mpay serve --bind 127.0.0.1:0`), for the tests that
//! kill it (SIGKILL) or run it as an operator would.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mpay");

/// A running `mpay serve`; killed when dropped.
pub struct Node {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, from its "listening on" banner.
    pub base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mpay serve --config cfg --bind 127.0.0.1:0 <extra…>` (log level error) and waits up
/// to 60 s for its banner.
pub fn start(cfg: &Path, extra: &[&str]) -> Node {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(cfg)
        .args(["--bind", "127.0.0.1:0"])
        .args(extra)
        .env("MPAY_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut base = None;
    while base.is_none() && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        base = line
            .split("listening on ")
            .nth(1)
            .map(|rest| rest.trim().to_string());
    }
    let Some(base) = base else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no banner from mpay serve {extra:?}");
    };
    Node { child, base }
}

/// Waits up to 60 s for `/health/ready` to answer 200.
pub async fn ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "not ready");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
