//! Key layout of the ledger's indexes: which index entries a position implies, and the error of
//! a notice number or IUV claimed by another position. Shared by the positions, receipts,
//! archive and feed writers (no repository imports another for its keys).

use chrono::{DateTime, Utc};
use mpay_messages::domain::TimerKind;
use mpay_messages::position::DebtPosition;

use crate::error::LedgerError;

/// The secondary indexes of the `positions` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Index {
    /// `by_notice`: `org ++ nav` → iupd (unique).
    Notice,
    /// `by_iuv`: `org ++ iuv` → iupd (unique).
    Iuv,
    /// `by_debtor`: `debtorFiscalCode ++ 0x00 ++ org ++ iupd` → ∅.
    Debtor,
    /// `by_due`: `YYYYMMDD ++ org ++ iupd` → ∅.
    Due,
    /// `timers`: `millis(i64 BE) ++ kind ++ org ++ iupd` → ∅.
    Timer,
}

impl Index {
    /// Every index, in the order of the transaction arrays (`[positions, ...Index::ALL]`).
    pub const ALL: [Index; 5] = [
        Index::Notice,
        Index::Iuv,
        Index::Debtor,
        Index::Due,
        Index::Timer,
    ];

    /// The sled tree of the index.
    pub fn tree_name(self) -> &'static str {
        match self {
            Index::Notice => "by_notice",
            Index::Iuv => "by_iuv",
            Index::Debtor => "by_debtor",
            Index::Due => "by_due",
            Index::Timer => "timers",
        }
    }

    /// True for the indexes whose key may be held by one position only.
    pub fn is_unique(self) -> bool {
        matches!(self, Index::Notice | Index::Iuv)
    }

    /// Position of the index in [`Index::ALL`] (the numbering the feed writer still uses).
    pub fn number(self) -> usize {
        match self {
            Index::Notice => 0,
            Index::Iuv => 1,
            Index::Debtor => 2,
            Index::Due => 3,
            Index::Timer => 4,
        }
    }

    /// The index of a [`Index::number`].
    pub fn from_number(n: usize) -> Option<Index> {
        Index::ALL.get(n).copied()
    }
}

/// One index entry a position implies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// Which index.
    pub index: Index,
    /// Key.
    pub key: Vec<u8>,
    /// Value (the iupd for the unique indexes, empty otherwise).
    pub value: Vec<u8>,
    /// For the unique indexes, the notice number or IUV the key claims (for errors).
    pub code: String,
}

/// Marks the start and the end of an organization code in GPD's looser form in keys.
pub const GPD_ORG_MARK: u8 = b'#';

/// The organization's part of a key. A pagoPA organization fiscal code (11 digits) is written
/// as it is: fixed length, so nothing separates it from what follows (every store written
/// before GPD's identifiers reads unchanged). A code in GPD's looser form (1 to 30 digits, only
/// for organizations with `gpd_compat.free_identifiers`) is written `#code#`: self-delimiting,
/// and never starting with a digit, so no pagoPA organization's prefix scan reaches it and no
/// key of one organization can be read as another's.
pub fn org_segment(org: &str) -> Vec<u8> {
    if org.len() == 11 {
        return org.as_bytes().to_vec();
    }
    let mut k = Vec::with_capacity(org.len() + 2);
    k.push(GPD_ORG_MARK);
    k.extend_from_slice(org.as_bytes());
    k.push(GPD_ORG_MARK);
    k
}

/// Splits `org segment ++ rest` (the inverse of [`org_segment`]): the organization code and
/// the rest. `None` when the bytes do not start with an organization segment.
pub fn split_org(key: &[u8]) -> Option<(&str, &[u8])> {
    let (org, rest) = if key.first() == Some(&GPD_ORG_MARK) {
        let body = key.get(1..)?;
        let end = body.iter().position(|b| *b == GPD_ORG_MARK)?;
        (body.get(..end)?, body.get(end + 1..)?)
    } else {
        (key.get(..11)?, key.get(11..)?)
    };
    if org.is_empty() || !org.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(org).ok()?, rest))
}

/// Key of a position: `org ++ iupd` (see [`org_segment`] for the organization's part). The
/// unique indexes use the same layout with the notice number or IUV: `org ++ nav`.
pub fn position_key(org: &str, iupd: &str) -> Vec<u8> {
    let mut k = org_segment(org);
    k.extend_from_slice(iupd.as_bytes());
    k
}

/// The byte of a timer kind in `timers` keys.
pub fn timer_byte(kind: TimerKind) -> u8 {
    match kind {
        TimerKind::Validate => b'V',
        TimerKind::Expire => b'E',
    }
}

/// The timer kind of a `timers` key byte.
pub fn timer_from_byte(b: u8) -> Option<TimerKind> {
    match b {
        b'V' => Some(TimerKind::Validate),
        b'E' => Some(TimerKind::Expire),
        _ => None,
    }
}

/// The `timers` key of a position's timer.
pub fn timer_key(at: DateTime<Utc>, kind: TimerKind, org: &str, iupd: &str) -> Vec<u8> {
    let mut k = at.timestamp_millis().to_be_bytes().to_vec();
    k.push(timer_byte(kind));
    k.extend_from_slice(&position_key(org, iupd));
    k
}

/// All index entries a position implies.
pub fn index_entries(p: &DebtPosition) -> Vec<IndexEntry> {
    let org = p.organization_fiscal_code.as_str();
    let iupd = p.iupd.as_bytes();
    let entry = |index, key, value, code: &str| IndexEntry {
        index,
        key,
        value,
        code: code.to_string(),
    };
    let mut out = Vec::with_capacity(2 * p.payment_options.len() + 3);
    for o in &p.payment_options {
        out.push(entry(
            Index::Notice,
            position_key(org, o.nav.as_str()),
            iupd.to_vec(),
            o.nav.as_str(),
        ));
        out.push(entry(
            Index::Iuv,
            position_key(org, o.iuv.as_str()),
            iupd.to_vec(),
            o.iuv.as_str(),
        ));
    }
    let mut d = p.debtor.fiscal_code.to_string().into_bytes();
    d.push(0);
    d.extend_from_slice(&position_key(org, &p.iupd));
    out.push(entry(Index::Debtor, d, Vec::new(), ""));
    if let Some(day) = p.last_due_day() {
        let mut k = day.format("%Y%m%d").to_string().into_bytes();
        k.extend_from_slice(&position_key(org, &p.iupd));
        out.push(entry(Index::Due, k, Vec::new(), ""));
    }
    for (at, kind) in p.timers() {
        out.push(entry(
            Index::Timer,
            timer_key(at, kind, org, &p.iupd),
            Vec::new(),
            "",
        ));
    }
    out
}

/// The error of a unique index entry claimed by `holder` (another position's iupd).
pub fn conflict(index: Index, code: &str, holder: &[u8]) -> LedgerError {
    let code = code.to_string();
    let iupd = String::from_utf8_lossy(holder).into_owned();
    match index {
        Index::Notice => LedgerError::NoticeInUse { nav: code, iupd },
        _ => LedgerError::IuvInUse { iuv: code, iupd },
    }
}

/// The code (notice number or IUV) of a unique index key `org ++ code` ([`split_org`]); keys
/// not of that form are shown whole.
pub fn code_of_key(key: &[u8]) -> String {
    let code = split_org(key).map_or(key, |(_, rest)| rest);
    String::from_utf8_lossy(code).into_owned()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn pagopa_organizations_keep_their_keys() {
        assert_eq!(
            position_key("80001234568", "P-1"),
            b"80001234568P-1".to_vec()
        );
        assert_eq!(
            split_org(b"80001234568312202600000000171"),
            Some(("80001234568", &b"312202600000000171"[..]))
        );
        assert_eq!(
            code_of_key(b"80001234568312202600000000171"),
            "312202600000000171"
        );
    }

    #[test]
    fn gpd_organizations_are_delimited() {
        let nav = "1234567890123456789012345";
        let k = position_key("700123456789001", nav);
        assert_eq!(k, format!("#700123456789001#{nav}").into_bytes());
        assert_eq!(split_org(&k), Some(("700123456789001", nav.as_bytes())));
        assert_eq!(code_of_key(&k), nav);
        // no 11-digit organization's prefix reaches it (same leading digits)
        assert!(!k.starts_with(&org_segment("70012345678")));
        // nor does a GPD organization whose code is a prefix of another's
        assert!(!k.starts_with(&org_segment("7001234567890")));
        assert!(!position_key("7001", "2P").starts_with(&org_segment("70012")));
        assert!(!position_key("70012", "P").starts_with(&org_segment("7001")));
        // short and long GPD codes
        assert_eq!(split_org(b"#7#P"), Some(("7", &b"P"[..])));
        assert_eq!(split_org(b"##P"), None);
        assert_eq!(split_org(b"#70P"), None);
        assert_eq!(split_org(b"8000"), None);
        assert_eq!(code_of_key(b"#7a#P"), "#7a#P");
    }
}
