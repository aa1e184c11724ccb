//! Stored secrets (issue 9.5): how FTP passwords and API keys are kept in the configuration,
//! checked, and never printed.
//!
//! Forms of a stored entry (`[[ftp.accounts]] password_hash`, `[[organizations]]
//! api_key_hashes`, `[[broker.api_keys]] hash`):
//!
//! - `$argon2id$v=19$m=…,t=…,p=…$salt$hash` — a PHC string, slow and salted; what
//!   `mpay hash-secret --kind ftp-password` prints. FTP passwords only: a login names its user,
//!   so one verification per attempt.
//! - `hmac-sha256:<64 hex>` — HMAC-SHA256 keyed with the server secret `[auth] hash_secret`
//!   (set it through `MPAY__AUTH__HASH_SECRET`); what `mpay hash-secret --kind api-key` prints.
//!   API keys are checked on every REST request, so they need a digest that is fast and can be
//!   looked up by value; the server secret makes a leaked configuration useless for guessing.
//! - 64 hex digits — the former unsalted SHA-256, still accepted so that existing
//!   configurations keep working; the node warns at start-up naming the keys (never the
//!   values) to replace.
//!
//! [`SecretHash`] wraps an entry so that `Debug` never shows it (settings are printed in
//! spans and errors).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A stored digest of a secret, as written in the configuration; `Debug` shows its form only.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretHash(String);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self.form() {
            Ok(HashForm::Argon2) => "argon2",
            Ok(HashForm::Hmac) => "hmac-sha256",
            Ok(HashForm::LegacySha256) => "sha256",
            Err(_) => "invalid",
        };
        write!(f, "SecretHash({form}, redacted)")
    }
}

/// The form of a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashForm {
    /// `$argon2id$…` PHC string.
    Argon2,
    /// `hmac-sha256:<hex>`, keyed with `[auth] hash_secret`.
    Hmac,
    /// 64 hex digits: unsalted SHA-256 (accepted, deprecated).
    LegacySha256,
}

/// Prefix of the HMAC form.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl SecretHash {
    /// Wraps an entry (not checked: see [`SecretHash::form`]).
    pub fn new(s: impl Into<String>) -> Self {
        SecretHash(s.into())
    }

    /// The entry as written (to compare, never to print).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Which form the entry has, or why it is none.
    ///
    /// # Errors
    /// Not one of the three forms.
    pub fn form(&self) -> Result<HashForm, &'static str> {
        let s = self.0.trim();
        if s.starts_with("$argon2") {
            argon2::PasswordHash::new(s)
                .ok()
                .filter(|h| h.hash.is_some() && h.salt.is_some())
                .map(|_| HashForm::Argon2)
                .ok_or("an argon2 entry that is not a valid PHC string (salt and hash)")
        } else if let Some(hex) = s.strip_prefix(HMAC_PREFIX) {
            if is_hex64(hex) {
                Ok(HashForm::Hmac)
            } else {
                Err("hmac-sha256: must be followed by 64 hex digits")
            }
        } else if is_hex64(s) {
            Ok(HashForm::LegacySha256)
        } else {
            Err("must be an argon2id PHC string, hmac-sha256:<64 hex> or a (legacy) SHA-256 in hex; make one with `mpay hash-secret`")
        }
    }

    /// The lookup form of a fast entry (`hmac-sha256:<lower hex>` or `<lower hex>` for the
    /// legacy SHA-256); `None` for argon2.
    pub fn lookup_key(&self) -> Option<String> {
        match self.form() {
            Ok(HashForm::Hmac | HashForm::LegacySha256) => Some(self.0.trim().to_ascii_lowercase()),
            _ => None,
        }
    }

    /// Whether `secret` matches this entry (argon2 verification, or a constant-time comparison
    /// of the digest). An HMAC entry needs the server secret. Slow for argon2 (tens of ms):
    /// call it off the async executor.
    pub fn verify(&self, secret: &str, server_secret: Option<&[u8]>) -> bool {
        match self.form() {
            Ok(HashForm::Argon2) => verify_argon2(self.0.trim(), secret),
            Ok(HashForm::Hmac) => server_secret.is_some_and(|k| {
                constant_time_eq(&hmac_digest(k, secret), &self.0.trim().to_ascii_lowercase())
            }),
            Ok(HashForm::LegacySha256) => {
                constant_time_eq(&sha256_digest(secret), &self.0.trim().to_ascii_lowercase())
            }
            Err(_) => false,
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn verify_argon2(phc: &str, secret: &str) -> bool {
    use argon2::PasswordVerifier as _;
    argon2::PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

/// The legacy form: SHA-256 in lower-case hex.
pub fn sha256_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `hmac-sha256:<hex>` of `secret` keyed with the server secret.
pub fn hmac_digest(server_secret: &[u8], secret: &str) -> String {
    // HMAC accepts keys of any length
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(server_secret) else {
        return format!("{HMAC_PREFIX}unusable-server-secret");
    };
    mac.update(secret.as_bytes());
    format!("{HMAC_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// An argon2id PHC string of `secret` with a random salt (the argon2 crate's default
/// parameters: 19 MiB, 2 passes).
///
/// # Errors
/// The hasher failed (it does not with the default parameters).
pub fn argon2_hash(secret: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, SaltString};
    use argon2::PasswordHasher as _;
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A fixed argon2 entry verified for an unknown FTP user, so that the answer takes as long as
/// for a known one (no user enumeration by timing).
pub fn dummy_argon2() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| argon2_hash("mpay-dummy-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_three_forms_verify_and_debug_never_shows_them() {
        let argon = SecretHash::new(argon2_hash("pw").unwrap());
        assert_eq!(argon.form(), Ok(HashForm::Argon2));
        assert!(argon.verify("pw", None));
        assert!(!argon.verify("pw2", None));
        let hm = SecretHash::new(hmac_digest(b"server", "key"));
        assert_eq!(hm.form(), Ok(HashForm::Hmac));
        assert!(hm.verify("key", Some(b"server")));
        assert!(!hm.verify("key", Some(b"other")));
        assert!(!hm.verify("key", None));
        let legacy = SecretHash::new(sha256_digest("key").to_ascii_uppercase());
        assert_eq!(legacy.form(), Ok(HashForm::LegacySha256));
        assert!(legacy.verify("key", None));
        assert_eq!(legacy.lookup_key(), Some(sha256_digest("key")));
        for h in [&argon, &hm, &legacy] {
            let dbg = format!("{h:?}");
            assert!(!dbg.contains(h.expose().trim()), "{dbg}");
            assert!(dbg.contains("redacted"), "{dbg}");
        }
        assert!(SecretHash::new("x").form().is_err());
        assert!(SecretHash::new("hmac-sha256:12").form().is_err());
        assert!(SecretHash::new("$argon2id$junk").form().is_err());
    }
}
