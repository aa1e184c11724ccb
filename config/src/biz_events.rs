//! `[biz_events]`: pagoPA's biz-events API (`biz_events.json`, `getOrganizationReceipt`), from
//! which receipts that never arrived through paSendRT are recovered (issue 14, "blindatura").
//! The API allows about ten calls an hour per subscription: the recovery queue spends them.

use secrecy::SecretString;
use serde::Deserialize;

/// `[biz_events]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BizEventsSettings {
    /// Base URL up to the version: `https://api.platform.pagopa.it/bizevents/service/v1`
    /// (UAT: `https://api.uat.platform.pagopa.it/bizevents/service/v1`). Empty = no recovery
    /// calls (the queue still fills and shows what waits).
    pub base_url: String,
    /// `Ocp-Apim-Subscription-Key` (a secret; set it through `MPAY__BIZ_EVENTS__SUBSCRIPTION_KEY`).
    pub subscription_key: Option<SecretString>,
    /// Calls allowed in any sliding hour (the API's quota per subscription: 10). 0 = none.
    pub calls_per_hour: u32,
    /// A payment in progress (paGetPayment answered) without a receipt after this many seconds
    /// is queued for recovery.
    pub delay_secs: u64,
    /// Calls per queued receipt before it ends NOT_FOUND (or FAILED).
    pub max_attempts: u32,
    /// Wait after the first unsuccessful call (seconds); doubles after each, at most a day.
    pub backoff_secs: u64,
    /// How often the worker looks at the queue (seconds).
    pub poll_secs: u64,
    /// Request timeout (milliseconds).
    pub timeout_ms: u64,
}

impl Default for BizEventsSettings {
    fn default() -> Self {
        BizEventsSettings {
            base_url: String::new(),
            subscription_key: None,
            calls_per_hour: 10,
            delay_secs: 3600,
            max_attempts: 4,
            backoff_secs: 3600,
            poll_secs: 60,
            timeout_ms: 30_000,
        }
    }
}

impl BizEventsSettings {
    /// Checks the values: `(key, reason)` of the first wrong one.
    ///
    /// # Errors
    /// A URL that is not http(s), zero attempts, a zero poll interval.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let url = self.base_url.trim();
        let http = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && !http {
            return Err(("biz_events.base_url", "must be an http(s) URL"));
        }
        if self.max_attempts == 0 {
            return Err(("biz_events.max_attempts", "must be at least 1"));
        }
        if self.poll_secs == 0 {
            return Err(("biz_events.poll_secs", "must be at least 1"));
        }
        Ok(())
    }
}
