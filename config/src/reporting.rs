//! `[fdr]`: pagoPA's FdR REST API for organizations (`fdr_organization.json`, SPEC §9.3), from
//! which `NodeChannel` downloads the reporting flows of every organization served.

use secrecy::SecretString;
use serde::Deserialize;

/// `[fdr]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FdrSettings {
    /// Base URL up to the version: `https://api.platform.pagopa.it/fdr-org/service/v1`
    /// (UAT: `https://api.uat.platform.pagopa.it/fdr-org/service/v1`). Empty = flows are only
    /// imported from files.
    pub base_url: String,
    /// `Ocp-Apim-Subscription-Key` (a secret; prefer `MPAY__FDR__SUBSCRIPTION_KEY`).
    pub subscription_key: Option<SecretString>,
    /// Page size of the list and payment calls (the API's maximum is 1000).
    pub page_size: u32,
    /// Request timeout (milliseconds).
    pub timeout_ms: u64,
    /// How often the `ReconciliationWorker` syncs every organization from the API (seconds;
    /// 0 = only on demand, `POST …/fdrs/sync`). Reconciliation itself runs on events.
    pub sync_interval_secs: u64,
    /// The hour (0-23, Europe/Rome) from which the daily batch produces and delivers the
    /// previous day's exports of every organization with `[organizations.exports]`.
    pub daily_export_hour: u32,
}

impl Default for FdrSettings {
    fn default() -> Self {
        FdrSettings {
            base_url: String::new(),
            subscription_key: None,
            page_size: 1000,
            timeout_ms: 30_000,
            sync_interval_secs: 3600,
            daily_export_hour: 6,
        }
    }
}

/// `[organizations.exports]`: the reconciliation exports the daily batch delivers for the
/// organization (the previous business day, Europe/Rome), by e-mail (the `[mail]` SMTP server)
/// and / or FTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgExportSettings {
    /// Recipients of the e-mail carrying the files as attachments (none = no e-mail).
    pub email_to: Vec<String>,
    /// `ftp://user@host:port/folder` or `ftps://…` (explicit TLS, `AUTH TLS`); empty = no upload.
    pub ftp_url: String,
    /// The FTP password (a secret: prefer `ftp_password_env`).
    pub ftp_password: Option<SecretString>,
    /// The environment variable holding the FTP password.
    pub ftp_password_env: Option<String>,
    /// `payments`, `flows`, `reconciliation` (default: all three).
    pub kinds: Vec<String>,
    /// `csv`, `xlsx` (default: `csv`).
    pub formats: Vec<String>,
}

impl Default for OrgExportSettings {
    fn default() -> Self {
        OrgExportSettings {
            email_to: Vec::new(),
            ftp_url: String::new(),
            ftp_password: None,
            ftp_password_env: None,
            kinds: vec!["payments".into(), "flows".into(), "reconciliation".into()],
            formats: vec!["csv".into()],
        }
    }
}

impl OrgExportSettings {
    /// Checks the lists and addresses; the error names the key under `exports.`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let e = |k: &str, r: String| Err((format!("exports.{k}"), r));
        for (i, k) in self.kinds.iter().enumerate() {
            if !matches!(k.trim(), "payments" | "flows" | "reconciliation") {
                return e(
                    &format!("kinds[{i}]"),
                    format!("{k:?}: must be payments, flows or reconciliation"),
                );
            }
        }
        for (i, f) in self.formats.iter().enumerate() {
            if !matches!(f.trim(), "csv" | "xlsx") {
                return e(
                    &format!("formats[{i}]"),
                    format!("{f:?}: must be csv or xlsx"),
                );
            }
        }
        for (i, a) in self.email_to.iter().enumerate() {
            if !mpay_messages::domain::cart::valid_email(a.trim()) {
                return e(
                    &format!("email_to[{i}]"),
                    format!("{a:?} is not an e-mail address"),
                );
            }
        }
        let url = self.ftp_url.trim();
        if !(url.is_empty() || url.starts_with("ftp://") || url.starts_with("ftps://")) {
            return e("ftp_url", "must start with ftp:// or ftps://".into());
        }
        if self.ftp_password.is_some() && self.ftp_password_env.is_some() {
            return e(
                "ftp_password_env",
                "give ftp_password or ftp_password_env, not both".into(),
            );
        }
        Ok(())
    }

    /// The FTP password: `ftp_password`, else the variable `ftp_password_env` names.
    pub fn ftp_password(&self) -> Result<Option<SecretString>, String> {
        if let Some(p) = &self.ftp_password {
            return Ok(Some(p.clone()));
        }
        match &self.ftp_password_env {
            Some(var) => std::env::var(var)
                .map(|v| Some(SecretString::from(v)))
                .map_err(|_| format!("exports.ftp_password_env: {var} is not set")),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_settings_name_the_bad_key() {
        assert_eq!(OrgExportSettings::default().check(), Ok(()));
        let bad = |edit: fn(&mut OrgExportSettings)| {
            let mut s = OrgExportSettings::default();
            edit(&mut s);
            s.check().err().map(|(k, _)| k)
        };
        assert_eq!(
            bad(|s| s.kinds = vec!["flows".into(), "receipts".into()]),
            Some("exports.kinds[1]".into())
        );
        assert_eq!(
            bad(|s| s.formats = vec!["pdf".into()]),
            Some("exports.formats[0]".into())
        );
        assert_eq!(
            bad(|s| s.email_to = vec!["not an address".into()]),
            Some("exports.email_to[0]".into())
        );
        assert_eq!(
            bad(|s| s.ftp_url = "sftp://a@b/".into()),
            Some("exports.ftp_url".into())
        );
        assert_eq!(
            bad(|s| {
                s.ftp_password = Some(SecretString::from("x"));
                s.ftp_password_env = Some("X".into());
            }),
            Some("exports.ftp_password_env".into())
        );
    }
}
