//! `[mail]` (issue 15): the SMTP server that sends each stored receipt to its payer/debtor,
//! and how a receipt e-mail is retried.

use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTls {
    /// Plain connection upgraded with STARTTLS, required (port 587).
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465).
    Tls,
    /// No TLS at all: only for a local relay or a test server.
    None,
}

impl MailTls {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Tls => "tls",
            Self::None => "none",
        }
    }
}

/// `[mail]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// Receipts are e-mailed (false = nothing is enqueued).
    pub enabled: bool,
    /// SMTP server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub tls: MailTls,
    /// Sender: `address` or `Name <address>`.
    pub from: String,
    /// SMTP AUTH user (optional).
    pub username: Option<String>,
    /// SMTP AUTH password: a secret; prefer `MPAY__MAIL__PASSWORD` or `password_file`.
    pub password: Option<SecretString>,
    /// File holding the SMTP AUTH password (first line; e.g. a container secret).
    pub password_file: Option<PathBuf>,
    /// PEM file of a further CA to trust for the SMTP server (a private CA).
    pub ca_cert: Option<PathBuf>,
    /// Name given in EHLO (empty = the node id).
    pub hello_name: String,
    /// Timeout of one SMTP exchange, ms.
    pub timeout_ms: u64,
    /// Delay after the first failure, ms (doubles at each failure; ± jitter).
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts, ms.
    pub backoff_max_ms: u64,
    /// An e-mail not accepted this long after its receipt (or a resend) is FAILED, seconds.
    pub horizon_secs: u64,
    /// Most e-mails sent per pass.
    pub batch: usize,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            enabled: false,
            host: String::new(),
            port: 587,
            tls: MailTls::Starttls,
            from: String::new(),
            username: None,
            password: None,
            password_file: None,
            ca_cert: None,
            hello_name: String::new(),
            timeout_ms: 30_000,
            backoff_base_ms: 30_000,
            backoff_max_ms: 3_600_000,
            horizon_secs: 3 * 24 * 3600,
            batch: 64,
        }
    }
}

impl MailSettings {
    /// Checks the settings; `Err` is (key, reason).
    pub fn check(&self) -> Result<(), (String, String)> {
        let e = |k: &str, r: &str| Err((format!("mail.{k}"), r.to_string()));
        if !self.enabled {
            return Ok(());
        }
        if self.host.trim().is_empty() {
            return e("host", "must be set when mail is enabled");
        }
        if self.port == 0 {
            return e("port", "must be 1..=65535");
        }
        let from = self.from.trim();
        let addr = from
            .rsplit_once('<')
            .map(|(_, a)| a.trim_end_matches('>'))
            .unwrap_or(from);
        if !mpay_messages::domain::cart::valid_email(addr.trim()) {
            return e(
                "from",
                "must be an e-mail address (`a@b.it` or `Name <a@b.it>`)",
            );
        }
        if self.password.is_some() && self.password_file.is_some() {
            return e("password_file", "give password or password_file, not both");
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return e("username", "a password needs username");
        }
        for (k, p) in [
            ("password_file", &self.password_file),
            ("ca_cert", &self.ca_cert),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    return e(k, &format!("{} is not a readable file", p.display()));
                }
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return e("timeout_ms", "must be 1..=600000");
        }
        if self.backoff_base_ms == 0 {
            return e("backoff_base_ms", "must be at least 1");
        }
        if self.backoff_max_ms < self.backoff_base_ms || self.backoff_max_ms > 30 * 86_400_000 {
            return e(
                "backoff_max_ms",
                "must be at least backoff_base_ms and at most 30 days",
            );
        }
        if self.horizon_secs == 0 || self.horizon_secs > 3650 * 86_400 {
            return e("horizon_secs", "must be 1..=315360000 (10 years)");
        }
        if self.batch == 0 {
            return e("batch", "must be at least 1");
        }
        Ok(())
    }

    /// The SMTP password: `password`, else the first line of `password_file`.
    /// Errors: the file cannot be read.
    pub fn password(&self) -> Result<Option<SecretString>, String> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("mail.password_file {}: {e}", path.display()))?;
                let line = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string();
                Ok(Some(SecretString::from(line)))
            }
            None => Ok(None),
        }
    }

    /// Is a password configured (for messages; never the value)?
    pub fn has_password(&self) -> bool {
        self.password
            .as_ref()
            .is_some_and(|p| !p.expose_secret().is_empty())
            || self.password_file.is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn on() -> MailSettings {
        MailSettings {
            enabled: true,
            host: "smtp.example.it".into(),
            from: "Comune <ricevute@example.it>".into(),
            ..MailSettings::default()
        }
    }

    #[test]
    fn checks_name_the_key() {
        assert!(
            MailSettings::default().check().is_ok(),
            "off: nothing needed"
        );
        assert!(on().check().is_ok());
        let bad = MailSettings {
            from: "nobody".into(),
            ..on()
        };
        assert_eq!(bad.check().unwrap_err().0, "mail.from");
        let bad = MailSettings {
            password: Some(SecretString::from("x")),
            ..on()
        };
        assert_eq!(bad.check().unwrap_err().0, "mail.username");
        let bad = MailSettings {
            host: " ".into(),
            ..on()
        };
        assert_eq!(bad.check().unwrap_err().0, "mail.host");
    }

    #[test]
    fn password_from_a_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cr3t-mail\nignored\n").unwrap();
        let s = MailSettings {
            username: Some("mpay".into()),
            password_file: Some(f),
            ..on()
        };
        assert!(s.check().is_ok());
        assert_eq!(
            s.password().unwrap().unwrap().expose_secret(),
            "s3cr3t-mail"
        );
        let with = MailSettings {
            username: Some("mpay".into()),
            password: Some(SecretString::from("s3cr3t-mail")),
            ..on()
        };
        assert!(with.has_password());
        assert!(!format!("{with:?}").contains("s3cr3t"));
    }
}
