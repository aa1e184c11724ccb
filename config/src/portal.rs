//! `[portal]` and `[checkout]`: the citizen portal, its carts, and pagoPA Checkout (where carts
//! are paid, SPEC §3.3). `[[services]].fields` adds fields to a service's spontaneous form.

use secrecy::SecretString;
use serde::Deserialize;

/// `[portal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSettings {
    /// Serve the portal at `/` (and `extern.do`).
    pub enabled: bool,
    /// The portal's public origin as citizens' browsers reach it (`https://pagamenti.example.it`);
    /// Checkout's return URLs point there. Empty = the address the request came in on.
    pub public_url: String,
    /// An open cart untouched this long expires (minutes).
    pub cart_idle_minutes: u32,
    /// How long Checkout keeps a cart (minutes): its notices stay reserved, then the cart is
    /// payable again (pagoPA keeps carts about 10 minutes).
    pub checkout_window_minutes: u32,
    /// How often cart sessions apply their timers (seconds).
    pub cart_tick_secs: u64,
    /// The outcome page waits this long for receipts (refreshing itself) before saying
    /// "in lavorazione" (seconds).
    pub receipt_wait_secs: u64,
    /// Days until the due date of positions created by spontaneous payments.
    pub spontaneous_due_days: u32,
    /// Send `Strict-Transport-Security` (when served behind TLS).
    pub hsts: bool,
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            enabled: true,
            public_url: String::new(),
            cart_idle_minutes: 60,
            checkout_window_minutes: 10,
            cart_tick_secs: 30,
            receipt_wait_secs: 120,
            spontaneous_due_days: 30,
            hsts: false,
        }
    }
}

/// `[checkout]`: pagoPA Checkout `POST /carts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutSettings {
    /// Base URL up to the version: `https://api.platform.pagopa.it/checkout/ec/v2`
    /// (UAT: `https://api.uat.platform.pagopa.it/checkout/ec/v2`). With `serve --demo` and
    /// this left empty, the embedded simulator's URL.
    pub base_url: String,
    /// 1 or 2 (v2 adds `returnWaitingUrl`).
    pub api_version: u8,
    /// `Ocp-Apim-Subscription-Key` (a secret; prefer `MPAY__CHECKOUT__SUBSCRIPTION_KEY`).
    pub subscription_key: Option<SecretString>,
    /// Request timeout (milliseconds).
    pub timeout_ms: u64,
    /// Extra attempts when Checkout cannot be reached at all (the request did not leave).
    pub connect_retries: u32,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        CheckoutSettings {
            base_url: String::new(),
            api_version: 2,
            subscription_key: None,
            timeout_ms: 10_000,
            connect_retries: 2,
        }
    }
}

/// Type of an extra form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text.
    Text,
    /// Digits only.
    Number,
    /// A date (`YYYY-MM-DD`).
    Date,
}

/// `[[services.fields]]`: one extra field of a spontaneous-payment form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceField {
    /// Form key (letters, digits, `_`), e.g. `targa`; kept as the position's metadata.
    pub key: String,
    /// Label shown.
    pub label: String,
    /// Type.
    #[serde(default = "text")]
    pub kind: FieldKind,
    /// Maximum length.
    #[serde(default = "max_len")]
    pub max_length: usize,
    /// Must be filled.
    #[serde(default)]
    pub required: bool,
}

fn text() -> FieldKind {
    FieldKind::Text
}

fn max_len() -> usize {
    140
}
