//! The ledger of debt positions (DESIGN §4): the `positions` tree and its indexes, kept in
//! agreement by writing them in one sled transaction; optimistic concurrency (compare-and-swap on
//! the stored bytes) for updates; IUV sequences handed out from durable blocks.
//!
//! Key layout (`org` = [`crate::keys::org_segment`]: a pagoPA organization's 11 digits as they
//! are, GPD's looser codes of `gpd_compat.free_identifiers` organizations as `#code#`):
//! - `positions`: `org ++ iupd` → versioned [`DebtPosition`]
//! - `by_notice`: `org ++ nav` → iupd
//! - `by_iuv`: `org ++ iuv` → iupd
//! - `by_debtor`: `debtorFiscalCode ++ 0x00 ++ org ++ iupd` → ∅
//! - `by_due`: `YYYYMMDD(last due day, Europe/Rome) ++ org ++ iupd` → ∅
//! - `timers`: `millis(i64 BE) ++ kind ++ org ++ iupd` → ∅ (validity start, expiry)
//! - `counters`: `iuv/<org>/<layout>` → u64 BE, the reserved high-water mark of the IUV sequence

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::codec::decode_record;
use crate::error::StorageError;
use crate::keys::{index_entries, org_segment, split_org, timer_from_byte, Index, IndexEntry};
use crate::trees::ReceiptTrees;
use crate::tx::{transact, write_position, LedgerTx, POSITIONS};
use chrono::{DateTime, NaiveDate, Utc};
use mpay_messages::position::{DebtPosition, PositionStatus};
use mpay_messages::{NoticeLayout, NoticeNumber, OrgFiscalCode};
use serde::{Deserialize, Serialize};

pub use crate::error::LedgerError;
pub use crate::keys::position_key;
pub use crate::tx::{
    apply, apply_prepared, claim_conflict, prepare, unique_claims, unique_releases, Abort,
    PreparedWrite,
};

/// Compare-and-swap attempts before [`LedgerError::Contended`].
const MAX_CAS_ATTEMPTS: u32 = 1000;

/// IUV sequence numbers reserved (and flushed) at a time.
pub const IUV_BLOCK: u64 = 1000;

/// Filters of the list endpoint (GPD `GET .../debtpositions` query parameters).
#[derive(Debug, Clone, Default)]
pub struct PositionFilter {
    /// Only this status.
    pub status: Option<PositionStatus>,
    /// Some option due on or after this business day.
    pub due_from: Option<NaiveDate>,
    /// Some option due on or before this business day.
    pub due_to: Option<NaiveDate>,
    /// Paid on or after this instant.
    pub paid_from: Option<DateTime<Utc>>,
    /// Paid on or before this instant.
    pub paid_to: Option<DateTime<Utc>>,
    /// Only positions of this debtor (fiscal code as stored; served from the debtor index).
    pub debtor_fiscal_code: Option<String>,
    /// Only the position holding this notice number (served from the notice index).
    pub notice_number: Option<String>,
    /// Only the position holding this IUV (served from the IUV index).
    pub iuv: Option<String>,
    /// Only positions whose iupd starts with this (a range of the ledger's own key order).
    pub iupd_prefix: Option<String>,
    /// Only positions of this catalogue service.
    pub service_code: Option<String>,
}

/// Sort order of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Newest first (GPD default `INSERTED_DATE DESC`).
    #[default]
    InsertedDesc,
    /// Oldest first.
    InsertedAsc,
    /// By iupd ascending.
    IupdAsc,
    /// By iupd descending.
    IupdDesc,
}

/// One page of a list. `page` is 0-based.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Page number (0-based).
    pub page: usize,
    /// Page size asked.
    pub limit: usize,
    /// Items matching the filter in all pages.
    pub total_items: usize,
}

pub use mpay_messages::domain::TimerKind;

/// Result of [`PositionRepository::verify`]: the indexes checked against the ledger.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Positions read.
    pub positions: u64,
    /// Index entries read.
    pub index_entries: u64,
    /// Index entries the ledger implies but the index lacks (or with a wrong value).
    pub missing: Vec<String>,
    /// Index entries with no position behind them.
    pub dangling: Vec<String>,
    /// Records that could not be decoded.
    pub corrupt: Vec<String>,
}

impl VerifyReport {
    /// True when indexes and ledger agree and every record decodes.
    pub fn is_consistent(&self) -> bool {
        self.missing.is_empty() && self.dangling.is_empty() && self.corrupt.is_empty()
    }
}

/// The debt-position aggregate. Blocking calls: run them off async threads
/// (`spawn_blocking` / `web::block`).
pub trait PositionRepository: Send + Sync {
    /// Stores a new position (revision 1) with its indexes. Errors: `AlreadyExists`,
    /// `NoticeInUse`, `IuvInUse`, `Storage`.
    fn create(&self, position: DebtPosition) -> Result<DebtPosition, LedgerError>;
    /// Stores many new positions all-or-nothing (one transaction). Same errors as `create`.
    fn create_many(&self, positions: Vec<DebtPosition>) -> Result<Vec<DebtPosition>, LedgerError>;
    /// Reads one position.
    fn get(&self, org: &OrgFiscalCode, iupd: &str) -> Result<Option<DebtPosition>, LedgerError>;
    /// Reads the position holding a notice number.
    fn find_by_notice(
        &self,
        org: &OrgFiscalCode,
        nav: &NoticeNumber,
    ) -> Result<Option<DebtPosition>, LedgerError>;
    /// Read-modify-write with compare-and-swap: `change` sees the current position and either
    /// edits it or refuses; it may run more than once under contention. Bumps the revision and
    /// `lastUpdatedDate`, rewrites the indexes. Errors: `NotFound`, whatever `change` returns,
    /// uniqueness errors, `Storage`.
    fn modify(
        &self,
        org: &OrgFiscalCode,
        iupd: &str,
        change: &mut dyn FnMut(&mut DebtPosition) -> Result<(), LedgerError>,
    ) -> Result<DebtPosition, LedgerError>;
    /// Deletes a position after `check` accepts its current state (compare-and-swap).
    fn delete(
        &self,
        org: &OrgFiscalCode,
        iupd: &str,
        check: &dyn Fn(&DebtPosition) -> Result<(), LedgerError>,
    ) -> Result<DebtPosition, LedgerError>;
    /// Changes several positions of `org` as ONE unit of work, all or nothing: for each iupd in
    /// order, `change` sees the position as the unit of work has it (earlier changes included)
    /// and answers `Some(new)` to replace it (organization, iupd kept; revision bumped,
    /// `lastUpdatedDate` set) or `None` to delete it; an error from `change`, a missing iupd
    /// (`NotFound`) or a notice number / IUV held by another position aborts the whole unit:
    /// no position is changed. `change` may run more than once (retries on conflict). Answers,
    /// per iupd, the position written (`None`: deleted).
    fn change_many(
        &self,
        org: &OrgFiscalCode,
        iupds: &[String],
        change: &(dyn Fn(&DebtPosition) -> Result<Option<DebtPosition>, LedgerError> + Sync),
    ) -> Result<Vec<Option<DebtPosition>>, LedgerError>;
    /// Lists an organization's positions.
    fn list(
        &self,
        org: &OrgFiscalCode,
        filter: &PositionFilter,
        order: ListOrder,
        page: usize,
        limit: usize,
    ) -> Result<Page<DebtPosition>, LedgerError>;
    /// Every position of a debtor (any organization), for the account statement.
    fn by_debtor(&self, debtor_fiscal_code: &str) -> Result<Vec<DebtPosition>, LedgerError>;
    /// Timers due at or before `now`, oldest first, at most `max`.
    fn due_timers(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<(TimerKind, OrgFiscalCode, String)>, LedgerError>;
    /// Hands out the next notice number of an organization's layout. Never returns a number
    /// twice (blocks of [`IUV_BLOCK`] are reserved and flushed before use) and skips numbers
    /// already present in the ledger. Errors: `SequenceExhausted`, `Storage`.
    fn next_notice(
        &self,
        org: &OrgFiscalCode,
        layout: &NoticeLayout,
    ) -> Result<NoticeNumber, LedgerError>;
    /// Number of positions.
    fn count(&self) -> u64;
    /// Checks every index against the ledger.
    fn verify(&self) -> Result<VerifyReport, LedgerError>;
    /// Writes positions and counters as JSON lines; returns lines written.
    fn export(&self, out: &mut dyn Write) -> Result<u64, LedgerError>;
    /// Reads JSON lines written by `export` (indexes are rebuilt); returns records read.
    fn import(&self, input: &mut dyn BufRead) -> Result<u64, LedgerError>;
}

/// One line of an export file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum ExportLine {
    Position { position: Box<DebtPosition> },
    Counter { key: String, value: u64 },
}

/// The sled implementation of [`PositionRepository`].
pub struct SledLedger {
    pub(crate) db: sled::Db,
    pub(crate) positions: sled::Tree,
    pub(crate) by_notice: sled::Tree,
    pub(crate) by_iuv: sled::Tree,
    pub(crate) by_debtor: sled::Tree,
    pub(crate) by_due: sled::Tree,
    pub(crate) timers: sled::Tree,
    /// `payments_in_progress`: `org ++ nav` → until when (UTC millis, i64 BE) a payment of that
    /// notice counts as in progress (written when paGetPayment answers; see
    /// [`SledLedger::begin_payment`]).
    pub(crate) in_progress: sled::Tree,
    /// `payments_begun_at`: the same records by time — `until` (UTC millis, i64 BE) ++ `org ++
    /// nav` → () — written with them, so the receipt recovery reads a time range instead of the
    /// whole tree and prunes what its lookback left behind ([`crate::recovery`]).
    pub(crate) begun: sled::Tree,
    counters: sled::Tree,
    count: AtomicU64,
    blocks: Mutex<HashMap<String, (u64, u64)>>,
    pub(crate) receipts: ReceiptTrees,
}

pub use mpay_messages::domain::position::expiry_instant;

/// The domain's rule on payments in progress (`DebtPosition::may_replace_with`) inside a unit of
/// work, with the `payments_in_progress` records of `old`'s notices.
pub(crate) fn guard_payments(
    paying: &sled::transaction::TransactionalTree,
    old: &DebtPosition,
    new: Option<&DebtPosition>,
    now: DateTime<Utc>,
) -> Result<(), Abort> {
    let mut until = HashMap::new();
    for o in &old.payment_options {
        if let Some(v) = paying.get(position_key(
            old.organization_fiscal_code.as_str(),
            o.nav.as_str(),
        ))? {
            if let Some(t) = in_progress_until(&v) {
                until.insert(o.nav.clone(), t);
            }
        }
    }
    if until.is_empty() {
        return Ok(());
    }
    old.may_replace_with(new, &|nav| until.get(nav).copied(), now)
        .map_err(|e| Abort::Abort(LedgerError::Rule(e)))
}

/// The tree of [`SledLedger`]'s `begun` index.
pub(crate) const BEGUN_TREE: &str = "payments_begun_at";

/// Builds, once per store, the time index of the payments in progress a store of the previous
/// build lacks.
pub(crate) fn upgrade(db: &sled::Db, l: &SledLedger) -> Result<(), StorageError> {
    crate::trees::upgrade_once(db, BEGUN_TREE, || {
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for item in l.in_progress.iter() {
            let (k, v) = item?;
            let mut key = v.to_vec();
            key.extend_from_slice(&k);
            batch.insert(key, &[][..]);
            n += 1;
        }
        l.begun.apply_batch(batch)?;
        Ok(n)
    })
}

/// The instant a `payments_in_progress` value holds (UTC millis, i64 BE).
fn in_progress_until(v: &[u8]) -> Option<DateTime<Utc>> {
    let millis = <[u8; 8]>::try_from(v).map(i64::from_be_bytes).ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis)
}

/// [`SledLedger`]'s count before it was first needed.
const COUNT_UNKNOWN: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SledLedger {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let positions = db.open_tree(POSITIONS)?;
        Ok(SledLedger {
            db: db.clone(),
            positions,
            by_notice: db.open_tree("by_notice")?,
            by_iuv: db.open_tree("by_iuv")?,
            by_debtor: db.open_tree("by_debtor")?,
            by_due: db.open_tree("by_due")?,
            timers: db.open_tree("timers")?,
            in_progress: db.open_tree("payments_in_progress")?,
            begun: db.open_tree(BEGUN_TREE)?,
            counters: db.open_tree("counters")?,
            // counted on first use: `Tree::len` reads every record (seconds on a large store),
            // which made start-up wait for it
            count: AtomicU64::new(COUNT_UNKNOWN),
            blocks: Mutex::new(HashMap::new()),
            receipts: ReceiptTrees::open(db)?,
        })
    }

    /// The ledger's six trees in unit-of-work order (see [`crate::tx::transact`]).
    pub(crate) fn ledger_trees(&self) -> [&sled::Tree; 6] {
        [
            &self.positions,
            &self.by_notice,
            &self.by_iuv,
            &self.by_debtor,
            &self.by_due,
            &self.timers,
        ]
    }

    /// The tree of an index.
    pub(crate) fn index_tree(&self, i: Index) -> &sled::Tree {
        match i {
            Index::Notice => &self.by_notice,
            Index::Iuv => &self.by_iuv,
            Index::Debtor => &self.by_debtor,
            Index::Due => &self.by_due,
            Index::Timer => &self.timers,
        }
    }

    /// The positions of `org` a list must look at: the most selective index the filter allows
    /// (notice number, IUV, debtor, iupd prefix), else every position of the organization.
    fn candidates(
        &self,
        org: &OrgFiscalCode,
        f: &PositionFilter,
    ) -> Result<Vec<DebtPosition>, LedgerError> {
        let org_s = org.as_str();
        let by_key = |tree: &sled::Tree, key: &str| -> Result<Vec<DebtPosition>, LedgerError> {
            let Some(iupd) = tree.get(position_key(org_s, key))? else {
                return Ok(Vec::new());
            };
            let pk = position_key(org_s, &String::from_utf8_lossy(&iupd));
            match self.positions.get(&pk)? {
                Some(bytes) => Ok(vec![Self::decode_position(&pk, &bytes)?]),
                None => Ok(Vec::new()),
            }
        };
        if let Some(nav) = &f.notice_number {
            return by_key(&self.by_notice, nav);
        }
        if let Some(iuv) = &f.iuv {
            return by_key(&self.by_iuv, iuv);
        }
        let mut out = Vec::new();
        if let Some(debtor) = &f.debtor_fiscal_code {
            let mut prefix = debtor.as_bytes().to_vec();
            prefix.push(0);
            prefix.extend_from_slice(&org_segment(org_s));
            let skip = debtor.len() + 1;
            for item in self.by_debtor.scan_prefix(&prefix) {
                let (k, _) = item?;
                let pk = k.get(skip..).unwrap_or_default();
                if let Some(bytes) = self.positions.get(pk)? {
                    out.push(Self::decode_position(pk, &bytes)?);
                }
            }
            return Ok(out);
        }
        let prefix = position_key(org_s, f.iupd_prefix.as_deref().unwrap_or(""));
        for item in self.positions.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push(Self::decode_position(&k, &v)?);
        }
        Ok(out)
    }

    pub(crate) fn decode_position(key: &[u8], bytes: &[u8]) -> Result<DebtPosition, LedgerError> {
        Ok(decode_record(POSITIONS, key, bytes)?)
    }

    /// Accounts for positions a bulk writer (feeds, archive) created inside its own transaction with
    /// [`apply`] (the count is kept in memory, see [`PositionRepository::count`]).
    pub(crate) fn note_created(&self, n: u64) {
        self.adjust_count(|c| c.saturating_add(n));
    }

    /// Applies a change to the in-memory count once it is known (before that, the first
    /// [`PositionRepository::count`] reads the tree, which includes the change).
    fn adjust_count(&self, f: impl Fn(u64) -> u64) {
        let _ = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c != COUNT_UNKNOWN).then(|| f(c))
            });
    }

    /// The next number of an organization's IUV sequence and its notice number, **not**
    /// checked against the ledger: for a bulk writer (feeds) that checks the numbers it hands
    /// out itself (one range scan for many numbers) and again inside its transaction. The same
    /// durable blocks as [`PositionRepository::next_notice`]: a number is never returned twice.
    pub(crate) fn next_notice_candidate(
        &self,
        org: &OrgFiscalCode,
        layout: &NoticeLayout,
    ) -> Result<(u64, NoticeNumber), LedgerError> {
        let key = format!("iuv/{}/{}", org.as_str(), layout_key(layout));
        let seq = self.next_sequence(&key)?;
        let nav = layout
            .generate(seq)
            .map_err(|_| LedgerError::SequenceExhausted(org.to_string()))?;
        Ok((seq, nav))
    }

    fn next_sequence(&self, key: &str) -> Result<u64, LedgerError> {
        let mut blocks = lock(&self.blocks);
        let entry = blocks.entry(key.to_string()).or_insert((0, 0));
        if entry.0 >= entry.1 {
            let reserved = self.counters.update_and_fetch(key.as_bytes(), |old| {
                let v = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some(v.saturating_add(IUV_BLOCK).to_be_bytes().to_vec())
            })?;
            let hi = reserved
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(IUV_BLOCK);
            // The block is durable before any number of it is handed out.
            self.db.flush()?;
            metrics::counter!("mpay_iuv_blocks_reserved_total").increment(1);
            *entry = (hi.saturating_sub(IUV_BLOCK), hi);
        }
        entry.0 += 1;
        Ok(entry.0)
    }
}

fn layout_key(layout: &NoticeLayout) -> String {
    match layout {
        NoticeLayout::Aux0 { application_code } => format!("0-{application_code:02}"),
        NoticeLayout::Aux1 => "1".into(),
        NoticeLayout::Aux2 => "2".into(),
        NoticeLayout::Aux3 { segregation_code } => format!("3-{segregation_code:02}"),
    }
}

fn matches(p: &DebtPosition, f: &PositionFilter) -> bool {
    if let Some(d) = &f.debtor_fiscal_code {
        if p.debtor.fiscal_code.as_str() != d {
            return false;
        }
    }
    if let Some(n) = &f.notice_number {
        if !p.payment_options.iter().any(|o| o.nav.as_str() == n) {
            return false;
        }
    }
    if let Some(i) = &f.iuv {
        if !p.payment_options.iter().any(|o| o.iuv.as_str() == i) {
            return false;
        }
    }
    if let Some(prefix) = &f.iupd_prefix {
        if !p.iupd.starts_with(prefix.as_str()) {
            return false;
        }
    }
    if let Some(code) = &f.service_code {
        if p.service_code.as_deref() != Some(code.as_str()) {
            return false;
        }
    }
    if let Some(s) = f.status {
        if p.status != s {
            return false;
        }
    }
    if f.due_from.is_some() || f.due_to.is_some() {
        let hit = p.payment_options.iter().any(|o| {
            let d = o.due_day();
            f.due_from.is_none_or(|from| d >= from) && f.due_to.is_none_or(|to| d <= to)
        });
        if !hit {
            return false;
        }
    }
    if f.paid_from.is_some() || f.paid_to.is_some() {
        let Some(paid) = p.payment_date else {
            return false;
        };
        if f.paid_from.is_some_and(|from| paid < from) || f.paid_to.is_some_and(|to| paid > to) {
            return false;
        }
    }
    true
}

impl PositionRepository for SledLedger {
    fn create(&self, position: DebtPosition) -> Result<DebtPosition, LedgerError> {
        let mut v = self.create_many(vec![position])?;
        v.pop().ok_or(LedgerError::NotFound)
    }

    fn create_many(
        &self,
        mut positions: Vec<DebtPosition>,
    ) -> Result<Vec<DebtPosition>, LedgerError> {
        for p in &mut positions {
            p.revision = 1;
        }
        self.insert_new(&positions)?;
        Ok(positions)
    }

    fn get(&self, org: &OrgFiscalCode, iupd: &str) -> Result<Option<DebtPosition>, LedgerError> {
        let key = position_key(org.as_str(), iupd);
        match self.positions.get(&key)? {
            Some(bytes) => Ok(Some(Self::decode_position(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    fn find_by_notice(
        &self,
        org: &OrgFiscalCode,
        nav: &NoticeNumber,
    ) -> Result<Option<DebtPosition>, LedgerError> {
        let Some(iupd) = self
            .by_notice
            .get(position_key(org.as_str(), nav.as_str()))?
        else {
            return Ok(None);
        };
        self.get(org, &String::from_utf8_lossy(&iupd))
    }

    fn modify(
        &self,
        org: &OrgFiscalCode,
        iupd: &str,
        change: &mut dyn FnMut(&mut DebtPosition) -> Result<(), LedgerError>,
    ) -> Result<DebtPosition, LedgerError> {
        let key = position_key(org.as_str(), iupd);
        for attempt in 1.. {
            let old_bytes = self.positions.get(&key)?.ok_or(LedgerError::NotFound)?;
            let old = Self::decode_position(&key, &old_bytes)?;
            let mut new = old.clone();
            change(&mut new)?;
            new.organization_fiscal_code = old.organization_fiscal_code.clone();
            new.iupd = old.iupd.clone();
            new.revision = old.revision.saturating_add(1);
            new.last_updated_date = Utc::now();
            let result = self.swap(&key, &old_bytes, Some(&old), Some(&new));
            match result {
                Ok(()) => return Ok(new),
                Err(LedgerError::Contended) if attempt < MAX_CAS_ATTEMPTS => {
                    metrics::counter!("mpay_ledger_cas_retries_total").increment(1);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(LedgerError::Contended)
    }

    fn delete(
        &self,
        org: &OrgFiscalCode,
        iupd: &str,
        check: &dyn Fn(&DebtPosition) -> Result<(), LedgerError>,
    ) -> Result<DebtPosition, LedgerError> {
        let key = position_key(org.as_str(), iupd);
        for attempt in 1.. {
            let old_bytes = self.positions.get(&key)?.ok_or(LedgerError::NotFound)?;
            let old = Self::decode_position(&key, &old_bytes)?;
            check(&old)?;
            let result = self.swap(&key, &old_bytes, Some(&old), None);
            match result {
                Ok(()) => {
                    self.adjust_count(|c| c.saturating_sub(1));
                    return Ok(old);
                }
                Err(LedgerError::Contended) if attempt < MAX_CAS_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
        Err(LedgerError::Contended)
    }

    fn change_many(
        &self,
        org: &OrgFiscalCode,
        iupds: &[String],
        change: &(dyn Fn(&DebtPosition) -> Result<Option<DebtPosition>, LedgerError> + Sync),
    ) -> Result<Vec<Option<DebtPosition>>, LedgerError> {
        let now = Utc::now();
        let written = transact(
            self.ledger_trees(),
            &[&self.in_progress],
            |tx: &LedgerTx<'_>, extra| {
                let mut out = Vec::with_capacity(iupds.len());
                for iupd in iupds {
                    let key = position_key(org.as_str(), iupd);
                    let bytes = tx
                        .positions
                        .get(&key)?
                        .ok_or(Abort::Abort(LedgerError::NotFound))?;
                    let old = Self::decode_position(&key, &bytes).map_err(Abort::Abort)?;
                    let new = change(&old).map_err(Abort::Abort)?.map(|mut new| {
                        new.organization_fiscal_code = old.organization_fiscal_code.clone();
                        new.iupd = old.iupd.clone();
                        new.revision = old.revision.saturating_add(1);
                        new.last_updated_date = now;
                        new
                    });
                    if let Some(paying) = extra.first() {
                        guard_payments(paying, &old, new.as_ref(), now)?;
                    }
                    write_position(tx, Some(&old), new.as_ref())?;
                    out.push(new);
                }
                Ok(out)
            },
        )?;
        let deleted = written.iter().filter(|p| p.is_none()).count() as u64;
        if deleted > 0 {
            self.adjust_count(|c| c.saturating_sub(deleted));
        }
        Ok(written)
    }

    fn list(
        &self,
        org: &OrgFiscalCode,
        filter: &PositionFilter,
        order: ListOrder,
        page: usize,
        limit: usize,
    ) -> Result<Page<DebtPosition>, LedgerError> {
        let mut all = Vec::new();
        for p in self.candidates(org, filter)? {
            if matches(&p, filter) {
                all.push(p);
            }
        }
        match order {
            ListOrder::InsertedDesc => all.sort_by(|a, b| {
                b.inserted_date
                    .cmp(&a.inserted_date)
                    .then_with(|| a.iupd.cmp(&b.iupd))
            }),
            ListOrder::InsertedAsc => all.sort_by(|a, b| {
                a.inserted_date
                    .cmp(&b.inserted_date)
                    .then_with(|| a.iupd.cmp(&b.iupd))
            }),
            ListOrder::IupdAsc => all.sort_by(|a, b| a.iupd.cmp(&b.iupd)),
            ListOrder::IupdDesc => all.sort_by(|a, b| b.iupd.cmp(&a.iupd)),
        }
        let total_items = all.len();
        let items = all
            .into_iter()
            .skip(page.saturating_mul(limit))
            .take(limit)
            .collect();
        Ok(Page {
            items,
            page,
            limit,
            total_items,
        })
    }

    fn by_debtor(&self, debtor_fiscal_code: &str) -> Result<Vec<DebtPosition>, LedgerError> {
        let mut prefix = debtor_fiscal_code.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_debtor.scan_prefix(&prefix) {
            let (k, _) = item?;
            let pk = k.get(prefix.len()..).unwrap_or_default();
            if let Some(bytes) = self.positions.get(pk)? {
                out.push(Self::decode_position(pk, &bytes)?);
            }
        }
        Ok(out)
    }

    fn due_timers(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<(TimerKind, OrgFiscalCode, String)>, LedgerError> {
        let end = now.timestamp_millis().saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.timers.range(..end.to_vec()).take(max) {
            let (k, _) = item?;
            let kind = k.get(8).copied().and_then(timer_from_byte);
            let split = k.get(9..).and_then(split_org);
            if let (Some(kind), Some((org, iupd))) = (kind, split) {
                if let Ok(org) = OrgFiscalCode::parse_gpd(org) {
                    out.push((kind, org, String::from_utf8_lossy(iupd).into_owned()));
                }
            }
        }
        Ok(out)
    }

    fn next_notice(
        &self,
        org: &OrgFiscalCode,
        layout: &NoticeLayout,
    ) -> Result<NoticeNumber, LedgerError> {
        let key = format!("iuv/{}/{}", org.as_str(), layout_key(layout));
        loop {
            let seq = self.next_sequence(&key)?;
            let nav = layout
                .generate(seq)
                .map_err(|_| LedgerError::SequenceExhausted(org.to_string()))?;
            let taken = self
                .by_notice
                .contains_key(position_key(org.as_str(), nav.as_str()))?
                || self
                    .by_iuv
                    .contains_key(position_key(org.as_str(), nav.iuv().as_str()))?;
            if !taken {
                return Ok(nav);
            }
        }
    }

    fn count(&self) -> u64 {
        let c = self.count.load(Ordering::SeqCst);
        if c != COUNT_UNKNOWN {
            return c;
        }
        let counted = self.positions.len() as u64;
        match self.count.compare_exchange(
            COUNT_UNKNOWN,
            counted,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => counted,
            Err(current) => current,
        }
    }

    fn verify(&self) -> Result<VerifyReport, LedgerError> {
        let mut report = VerifyReport::default();
        let mut expected: BTreeSet<(Index, Vec<u8>, Vec<u8>)> = BTreeSet::new();
        for item in self.positions.iter() {
            let (k, v) = item?;
            report.positions += 1;
            match Self::decode_position(&k, &v) {
                Ok(p) => {
                    if position_key(p.organization_fiscal_code.as_str(), &p.iupd) != k.as_ref() {
                        report.corrupt.push(format!(
                            "positions/{}: key does not match record",
                            String::from_utf8_lossy(&k)
                        ));
                    }
                    expected.extend(
                        index_entries(&p)
                            .into_iter()
                            .map(|e: IndexEntry| (e.index, e.key, e.value)),
                    );
                }
                Err(e) => report.corrupt.push(e.to_string()),
            }
        }
        for (index, k, v) in &expected {
            let found = self.index_tree(*index).get(k)?;
            if found.as_deref() != Some(v.as_slice()) {
                report.missing.push(format!(
                    "{}/{}",
                    index.tree_name(),
                    String::from_utf8_lossy(k).escape_debug()
                ));
            }
        }
        for index in Index::ALL {
            for item in self.index_tree(index).iter() {
                let (k, v) = item?;
                report.index_entries += 1;
                if !expected.contains(&(index, k.to_vec(), v.to_vec())) {
                    report.dangling.push(format!(
                        "{}/{}",
                        index.tree_name(),
                        String::from_utf8_lossy(&k).escape_debug()
                    ));
                }
            }
        }
        Ok(report)
    }

    fn export(&self, out: &mut dyn Write) -> Result<u64, LedgerError> {
        let io =
            |e: std::io::Error| LedgerError::Storage(StorageError::file("writing the export", e));
        let json = |e: serde_json::Error| {
            LedgerError::Storage(StorageError::Encode {
                tree: "export",
                source: std::sync::Arc::new(e),
            })
        };
        let mut n = 0;
        for item in self.counters.iter() {
            let (k, v) = item?;
            let value = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let line = ExportLine::Counter {
                key: String::from_utf8_lossy(&k).into_owned(),
                value,
            };
            serde_json::to_writer(&mut *out, &line).map_err(json)?;
            out.write_all(b"\n").map_err(io)?;
            n += 1;
        }
        for item in self.positions.iter() {
            let (k, v) = item?;
            let position = Box::new(Self::decode_position(&k, &v)?);
            serde_json::to_writer(&mut *out, &ExportLine::Position { position }).map_err(json)?;
            out.write_all(b"\n").map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    fn import(&self, input: &mut dyn BufRead) -> Result<u64, LedgerError> {
        let mut n = 0;
        let mut batch = Vec::new();
        for (lineno, line) in input.lines().enumerate() {
            let line = line
                .map_err(|e| LedgerError::Storage(StorageError::file("reading the import", e)))?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: ExportLine = serde_json::from_str(&line).map_err(|e| {
                LedgerError::Storage(StorageError::Corrupt {
                    tree: "import",
                    key: format!("line {}", lineno + 1),
                    reason: e.to_string(),
                })
            })?;
            match rec {
                ExportLine::Counter { key, value } => {
                    self.counters.fetch_and_update(key.as_bytes(), |old| {
                        let cur = old
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_be_bytes)
                            .unwrap_or(0);
                        Some(cur.max(value).to_be_bytes().to_vec())
                    })?;
                }
                ExportLine::Position { position } => {
                    let revision = position.revision;
                    let mut p = *position;
                    p.revision = revision;
                    batch.push(p);
                    if batch.len() >= 256 {
                        self.insert_new(&std::mem::take(&mut batch))?;
                    }
                }
            }
            n += 1;
        }
        self.insert_new(&batch)?;
        self.db.flush()?;
        Ok(n)
    }
}

impl SledLedger {
    /// Writes `new` over `old` (`None`: deleted) provided the stored record still has the bytes
    /// `old` was read from (compare-and-swap). Errors: `Contended` when it changed meanwhile,
    /// uniqueness errors, `Storage`.
    fn swap(
        &self,
        key: &[u8],
        old_bytes: &[u8],
        old: Option<&DebtPosition>,
        new: Option<&DebtPosition>,
    ) -> Result<(), LedgerError> {
        let now = Utc::now();
        transact(
            self.ledger_trees(),
            &[&self.in_progress],
            |tx: &LedgerTx<'_>, extra| {
                if tx.positions.get(key)?.as_deref() != Some(old_bytes) {
                    return Err(Abort::Abort(LedgerError::Contended));
                }
                if let (Some(old), Some(paying)) = (old, extra.first()) {
                    guard_payments(paying, old, new, now)?;
                }
                write_position(tx, old, new)
            },
        )
    }

    /// Until when the payments in progress on `position`'s notices (paGetPayment, not yet
    /// settled) run, for those still running at `now`: what `DebtPosition::may_replace_with`
    /// needs, read outside a unit of work (a feed plans its writes before its transaction and
    /// checks again inside it).
    ///
    /// # Errors
    /// The tree cannot be read.
    pub(crate) fn payments_in_progress(
        &self,
        position: &DebtPosition,
        now: DateTime<Utc>,
    ) -> Result<HashMap<NoticeNumber, DateTime<Utc>>, sled::Error> {
        let mut until = HashMap::new();
        for o in &position.payment_options {
            let key = position_key(position.organization_fiscal_code.as_str(), o.nav.as_str());
            if let Some(t) = self
                .in_progress
                .get(key)?
                .and_then(|v| in_progress_until(&v))
                .filter(|t| *t > now)
            {
                until.insert(o.nav.clone(), t);
            }
        }
        Ok(until)
    }

    /// Records that pagoPA asked for the payment data of notice `nav` of the position `iupd`
    /// as it was at `revision` (paGetPayment): until `until`, the position may not change that
    /// notice's number or amounts (`DebtPosition::may_replace_with`). In one unit of work with
    /// a read of the position, so a change committed since the station read it is seen:
    /// `Contended` then (the station answers a system error and the Node asks again).
    ///
    /// # Errors
    /// `NotFound`, `Contended`, `Storage`.
    pub fn begin_payment(
        &self,
        org: &OrgFiscalCode,
        iupd: &str,
        nav: &NoticeNumber,
        revision: u64,
        until: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let key = position_key(org.as_str(), iupd);
        let paying_key = position_key(org.as_str(), nav.as_str());
        let until_bytes = until.timestamp_millis().to_be_bytes();
        let mut begun_key = until_bytes.to_vec();
        begun_key.extend_from_slice(&paying_key);
        transact(
            self.ledger_trees(),
            &[&self.in_progress, &self.begun],
            |tx: &LedgerTx<'_>, extra| {
                let bytes = tx
                    .positions
                    .get(&key)?
                    .ok_or(Abort::Abort(LedgerError::NotFound))?;
                let current = Self::decode_position(&key, &bytes).map_err(Abort::Abort)?;
                if current.revision != revision {
                    return Err(Abort::Abort(LedgerError::Contended));
                }
                if let (Some(paying), Some(begun)) = (extra.first(), extra.get(1)) {
                    // the time index follows the record: the previous instant's entry goes
                    if let Some(previous) = paying.get(paying_key.as_slice())? {
                        let mut k = previous.to_vec();
                        k.extend_from_slice(&paying_key);
                        begun.remove(k)?;
                    }
                    paying.insert(paying_key.as_slice(), &until_bytes)?;
                    begun.insert(begun_key.as_slice(), &[][..])?;
                }
                Ok(())
            },
        )
    }

    /// Inserts positions that must not exist yet, with their indexes, in one transaction.
    fn insert_new(&self, positions: &[DebtPosition]) -> Result<(), LedgerError> {
        if positions.is_empty() {
            return Ok(());
        }
        transact(self.ledger_trees(), &[], |tx: &LedgerTx<'_>, _| {
            for pos in positions {
                let key = position_key(pos.organization_fiscal_code.as_str(), &pos.iupd);
                if tx.positions.get(&key)?.is_some() {
                    return Err(Abort::Abort(LedgerError::AlreadyExists(pos.iupd.clone())));
                }
                write_position(tx, None, Some(pos))?;
            }
            Ok(())
        })?;
        self.note_created(positions.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpay_messages::position::*;
    use mpay_messages::{Amount, FiscalCode, Iban};

    fn sample(ledger: &SledLedger) -> DebtPosition {
        let org = OrgFiscalCode::parse("80001234568").unwrap();
        let nav = ledger
            .next_notice(
                &org,
                &NoticeLayout::Aux3 {
                    segregation_code: 12,
                },
            )
            .unwrap();
        let now = Utc::now();
        let t = Transfer {
            id_transfer: 1,
            amount: Amount::from_cents(100).unwrap(),
            organization_fiscal_code: None,
            remittance_information: "x".into(),
            category: "9/0101108TS/".into(),
            destination: Destination::Iban {
                iban: Iban::parse("IT47D0103002600000061234567").unwrap(),
                postal_iban: None,
            },
            company_name: None,
            metadata: vec![],
        };
        DebtPosition {
            organization_fiscal_code: org,
            iupd: "P1".into(),
            debtor: Debtor {
                kind: DebtorType::F,
                fiscal_code: FiscalCode::parse("RSSMRA80A01H501U").unwrap(),
                full_name: "Mario Rossi".into(),
                street_name: None,
                civic_number: None,
                postal_code: None,
                city: None,
                province: None,
                region: None,
                country: None,
                email: None,
                phone: None,
            },
            switch_to_expired: true,
            pay_stand_in: true,
            company_name: "Comune".into(),
            office_name: None,
            service_code: None,
            validity_date: None,
            status: PositionStatus::Valid,
            inserted_date: now,
            publish_date: Some(now),
            last_updated_date: now,
            payment_date: None,
            payment_options: vec![PaymentOption {
                iuv: nav.iuv(),
                nav,
                amount: Amount::from_cents(100).unwrap(),
                description: "x".into(),
                is_partial_payment: false,
                due_date: now,
                retention_date: None,
                fee: Amount::ZERO,
                notification_fee: Amount::ZERO,
                status: OptionStatus::PoUnpaid,
                payment_date: None,
                transfers: vec![t],
                metadata: vec![],
                details: Default::default(),
            }],
            revision: 0,
            origin: mpay_messages::position::Origin::Rest,
        }
    }

    /// A position record as the previous build wrote it (schema byte 1, JSON without `origin`)
    /// is read, found through its indexes, verified and updated by this build.
    #[test]
    fn records_of_the_previous_build_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = SledLedger::open(&db).unwrap();
        let p = ledger.create(sample(&ledger)).unwrap();
        let key = position_key("80001234568", &p.iupd);
        let stored = ledger.positions.get(&key).unwrap().unwrap();
        assert_eq!(stored[0], 2, "new records are compact (schema 2)");
        let mut json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["origin"], "REST");
        json.as_object_mut().unwrap().remove("origin");
        let mut old = vec![1u8];
        old.extend(serde_json::to_vec(&json).unwrap());
        ledger.positions.insert(&key, old).unwrap();

        let org = OrgFiscalCode::parse("80001234568").unwrap();
        let read = ledger.get(&org, &p.iupd).unwrap().unwrap();
        assert_eq!(read.origin, mpay_messages::position::Origin::Unrecorded);
        let mut expected = p.clone();
        expected.origin = mpay_messages::position::Origin::Unrecorded;
        assert_eq!(read, expected);
        let nav = &p.payment_options[0].nav;
        assert_eq!(ledger.find_by_notice(&org, nav).unwrap(), Some(expected));
        assert!(ledger.verify().unwrap().is_consistent());
        let changed = ledger
            .modify(&org, &p.iupd, &mut |p| {
                p.company_name = "Comune nuovo".into();
                Ok(())
            })
            .unwrap();
        assert_eq!(changed.company_name, "Comune nuovo");
        assert_eq!(changed.origin, mpay_messages::position::Origin::Unrecorded);
    }

    /// The compact record (schema 2) reads back equal, and is much smaller than the JSON the
    /// previous build wrote.
    #[test]
    fn compact_records_round_trip_and_are_small() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = SledLedger::open(&db).unwrap();
        let mut p = sample(&ledger);
        p.payment_options[0].metadata = vec![MapEntry {
            key: "k".into(),
            value: "v".into(),
        }];
        p.origin = Origin::Feed {
            flow_id: "F1".into(),
        };
        let p = ledger.create(p).unwrap();
        let key = position_key("80001234568", &p.iupd);
        let compact = ledger.positions.get(&key).unwrap().unwrap();
        let json = crate::codec::encode(&p).unwrap();
        assert_eq!(SledLedger::decode_position(&key, &compact).unwrap(), p);
        assert_eq!(SledLedger::decode_position(&key, &json).unwrap(), p);
        println!(
            "position record: JSON {} bytes, compact {} bytes",
            json.len(),
            compact.len()
        );
        assert!(
            compact.len() * 2 < json.len(),
            "{} vs {}",
            compact.len(),
            json.len()
        );
    }

    #[test]
    fn verify_reports_missing_dangling_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = SledLedger::open(&db).unwrap();
        let p = ledger.create(sample(&ledger)).unwrap();
        let r = ledger.verify().unwrap();
        assert!(r.is_consistent(), "{r:?}");
        assert_eq!(r.positions, 1);
        assert_eq!(r.index_entries, 5, "notice, iuv, debtor, due, expiry timer");

        // an index entry lost
        let nav_key = position_key("80001234568", p.payment_options[0].nav.as_str());
        ledger.by_notice.remove(&nav_key).unwrap();
        let r = ledger.verify().unwrap();
        assert_eq!(r.missing.len(), 1, "{r:?}");
        // an index entry pointing nowhere
        ledger.by_notice.insert(&nav_key, &b"P1"[..]).unwrap();
        ledger
            .by_iuv
            .insert(position_key("80001234568", "99"), &b"GHOST"[..])
            .unwrap();
        let r = ledger.verify().unwrap();
        assert_eq!((r.missing.len(), r.dangling.len()), (0, 1), "{r:?}");
        // an undecodable record
        ledger
            .positions
            .insert(position_key("80001234568", "BAD"), &b"\x09garbage"[..])
            .unwrap();
        let r = ledger.verify().unwrap();
        assert_eq!(r.corrupt.len(), 1, "{r:?}");
        assert!(!r.is_consistent());
    }

    #[test]
    fn records_of_an_unknown_schema_version_are_refused_clearly() {
        let err =
            crate::codec::decode::<DebtPosition>("positions", b"k", &[9, b'{', b'}']).unwrap_err();
        assert!(err.to_string().contains("schema version 9"), "{err}");
    }
}
