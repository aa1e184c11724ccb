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
}

impl Default for FdrSettings {
    fn default() -> Self {
        FdrSettings {
            base_url: String::new(),
            subscription_key: None,
            page_size: 1000,
            timeout_ms: 30_000,
            sync_interval_secs: 3600,
        }
    }
}
