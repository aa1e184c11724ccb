//! Ente notifications (issue 13): `[organizations.notification]`, where and how one Ente
//! learns of its payments, and `[notifications]`, the delivery policy of every Ente.

use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// The dialect of an Ente's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Signed JSON webhook (`X-Mpay-Signature`, `X-Mpay-Timestamp`, `Idempotency-Key`).
    Webhook,
    /// MPay's legacy SOAP `notificaPagamento` (INTERFACES.md §6.1).
    Soap,
}

/// `[organizations.notification]`: the Ente's notification endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// `webhook` or `soap`.
    pub kind: EndpointKind,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Webhook HMAC-SHA256 key (required for `webhook`; a secret: prefer the environment,
    /// `MPAY__ORGANIZATIONS__<n>__NOTIFICATION__SECRET` is not available for arrays, so keep
    /// the file readable by the service user only).
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// HTTP Basic user (optional).
    #[serde(default)]
    pub basic_user: Option<String>,
    /// HTTP Basic password (with `basic_user`).
    #[serde(default)]
    pub basic_password: Option<SecretString>,
    /// mTLS: PEM file with the client certificate (chain) and its private key, or the
    /// certificate only with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// mTLS: PEM file with the private key, when not in `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// PEM file of a further CA to trust for this endpoint (an Ente with a private CA).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Timeout of one call, milliseconds (default 10 000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Forward the Ente's reporting flows (FdR) too, through the same outbox (default off):
    /// `soap` → MPay's `inviaFlussoRend` (INTERFACES.md §6.3), `webhook` → a signed
    /// `REPORTING_FLOW` JSON body.
    #[serde(default)]
    pub flows: bool,
    /// Where flows go, when not to `url` (MPay configured its RendicontazioneEnte service
    /// apart: `urlWebServiceEnte`). Same dialect, credentials and TLS settings.
    #[serde(default)]
    pub flows_url: Option<String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl NotificationSettings {
    /// The URL reporting flows go to (`None`: flows are not forwarded).
    pub fn flows_target(&self) -> Option<String> {
        self.flows.then(|| {
            self.flows_url
                .as_deref()
                .unwrap_or(&self.url)
                .trim()
                .to_string()
        })
    }

    /// Checks the settings; `Err` is the reason (the caller adds the key).
    pub fn check(&self) -> Result<(), (String, String)> {
        let e = |k: &str, r: &str| Err((k.to_string(), r.to_string()));
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return e("url", "must be an http:// or https:// URL");
        }
        if let Some(u) = &self.flows_url {
            let u = u.trim();
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
                return e("flows_url", "must be an http:// or https:// URL");
            }
            if !self.flows {
                return e("flows_url", "flows_url needs flows = true");
            }
        }
        if self.kind == EndpointKind::Webhook
            && self
                .secret
                .as_ref()
                .is_none_or(|s| s.expose_secret().trim().len() < 16)
        {
            return e(
                "secret",
                "a webhook needs a signing secret of at least 16 characters",
            );
        }
        if self.basic_password.is_some() && self.basic_user.is_none() {
            return e("basic_user", "basic_password needs basic_user");
        }
        if self.client_key.is_some() && self.client_cert.is_none() {
            return e("client_cert", "client_key needs client_cert");
        }
        for (k, p) in [
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
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
        Ok(())
    }
}

/// `[notifications]`: how notifications are retried (every Ente).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationPolicySettings {
    /// Delay after the first failure, ms (doubles at each failure; ± jitter).
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts, ms.
    pub backoff_max_ms: u64,
    /// A notification not acknowledged this long after it was enqueued (or resent) is FAILED,
    /// seconds (default 1 209 600 = 14 days).
    pub horizon_secs: u64,
    /// Consecutive failures of an endpoint that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one probe call, ms.
    pub breaker_open_ms: u64,
    /// Notifications a connector holds at once: read and not yet durably recorded (also the
    /// most a crash can have delivered again).
    pub batch: usize,
    /// Calls a connector has in flight at once, each for a different position (one position's
    /// notifications still go one after the other, in order).
    pub concurrency: usize,
}

impl Default for NotificationPolicySettings {
    fn default() -> Self {
        NotificationPolicySettings {
            backoff_base_ms: 10_000,
            backoff_max_ms: 3_600_000,
            horizon_secs: 14 * 24 * 3600,
            breaker_failures: 5,
            breaker_open_ms: 60_000,
            batch: 256,
            concurrency: 8,
        }
    }
}

impl NotificationPolicySettings {
    /// Checks the settings; `Err` is (key, reason).
    pub fn check(&self) -> Result<(), (String, String)> {
        let e = |k: &str, r: &str| Err((format!("notifications.{k}"), r.to_string()));
        if self.backoff_base_ms == 0 {
            return e("backoff_base_ms", "must be at least 1");
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return e("backoff_max_ms", "must be at least backoff_base_ms");
        }
        if self.horizon_secs == 0 || self.horizon_secs > 3650 * 86_400 {
            return e("horizon_secs", "must be 1..=315360000 (10 years)");
        }
        if self.backoff_max_ms > 30 * 86_400_000 {
            return e("backoff_max_ms", "must be at most 30 days");
        }
        if self.breaker_open_ms > 86_400_000 {
            return e("breaker_open_ms", "must be at most one day");
        }
        if self.breaker_failures == 0 {
            return e("breaker_failures", "must be at least 1");
        }
        if self.batch == 0 {
            return e("batch", "must be at least 1");
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return e("concurrency", "must be 1..=256");
        }
        Ok(())
    }
}
