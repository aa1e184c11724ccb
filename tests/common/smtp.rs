//! A real SMTP server for the receipt e-mail tests: `tests/smtp_sink.py` (Python `aiosmtpd`,
//! installed by `ops/test`) writes every message it accepts to a folder as JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// `tests/smtp_sink.py` on `port`, writing messages to `out`; killed on drop.
pub struct SmtpSink {
    child: Child,
}

impl SmtpSink {
    pub fn start(port: u16, out: &Path) -> SmtpSink {
        Self::start_with(port, out, &[])
    }

    /// With `args` after the port and folder: `CERT_PEM KEY_PEM` (STARTTLS required), then
    /// `USER PASSWORD` (AUTH required).
    pub fn start_with(port: u16, out: &Path, args: &[&std::ffi::OsStr]) -> SmtpSink {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for the SMTP server of this test (ops/test installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink did not start: is aiosmtpd installed? (`python3 -m pip install aiosmtpd`, done by ops/test)"
        );
        SmtpSink { child }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages the sink accepted so far.
pub fn messages(out: &Path) -> Vec<Value> {
    let Ok(rd) = std::fs::read_dir(out) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// Messages carrying the receipt `receipt_id` (by the XML attachment's name).
pub fn messages_of(out: &Path, receipt_id: &str) -> Vec<Value> {
    let name = format!("ricevuta-{receipt_id}.xml");
    messages(out)
        .into_iter()
        .filter(|m| {
            m["attachments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["filename"] == name.as_str())
        })
        .collect()
}
