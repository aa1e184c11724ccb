//! Journal entries: one per exchange (REST call, SOAP call) kept for audit (DESIGN §4).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One journalled exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// When the request arrived (UTC).
    pub at: DateTime<Utc>,
    /// Channel: `rest`, `soap`, `cli`.
    pub channel: String,
    /// Operation: route pattern or SOAP operation (e.g. `POST /api/v1/organizations/{organizationfiscalcode}/debtpositions`).
    pub operation: String,
    /// Organization fiscal code, when known.
    pub organization: Option<String>,
    /// Business key (iupd, notice number), when known.
    pub key: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Outcome code (e.g. `OK`, `PAA_PAGAMENTO_SCONOSCIUTO`, problem title).
    pub outcome: String,
    /// Latency in microseconds.
    pub latency_us: u64,
    /// Request id (`X-Request-Id` or generated).
    pub request_id: String,
    /// A warning worth keeping (e.g. a receipt accepted on another of our stations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The request payload (SOAP exchanges), kept for audit; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}
