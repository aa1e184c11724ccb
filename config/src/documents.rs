//! `[documents]`: payment notices and receipts as PDF (crate `mpay-documents`), and the public
//! verification page of a printed receipt. Per organization: `cbill` and `notice_language`
//! (`[[organizations]]`).

use secrecy::SecretString;
use serde::Deserialize;

/// `[documents]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsSettings {
    /// HMAC-SHA256 key of the receipts' verification ids (`/ricevute/verify/{id}`); a secret,
    /// prefer `MPAY__DOCUMENTS__VERIFY_SECRET`. Unset = a random key generated once and kept in
    /// `<data_dir>/documents/verify.key` (printed receipts stay verifiable across restarts; a
    /// cluster sets the same key on every node).
    pub verify_secret: Option<SecretString>,
}

/// The languages of an organization's notices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum NoticeLanguage {
    /// Italian.
    #[default]
    #[serde(rename = "it")]
    It,
    /// Italian and German (bilingual areas).
    #[serde(rename = "it-de")]
    ItDe,
}
