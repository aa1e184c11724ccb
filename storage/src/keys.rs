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

/// Key of a position: `org ++ iupd` (organization fiscal codes are 11 digits).
pub fn position_key(org: &str, iupd: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + iupd.len());
    k.extend_from_slice(org.as_bytes());
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

/// The code (notice number or IUV) of a unique index key `org ++ code`, without assuming the
/// organization's length: an organization fiscal code is 11 digits, so the code starts after
/// the leading run of 11 ASCII digits; keys not of that form are shown whole.
pub fn code_of_key(key: &[u8]) -> String {
    const ORG_LEN: usize = 11;
    let code = match key.get(..ORG_LEN) {
        Some(org) if org.iter().all(u8::is_ascii_digit) => key.get(ORG_LEN..).unwrap_or(key),
        _ => key,
    };
    String::from_utf8_lossy(code).into_owned()
}
