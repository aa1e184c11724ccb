//! The state of one load (`Ctx`), the planned writes of a batch, and the small helpers shared by its steps.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mpay_messages::feeds::{ErrorCode, FeedRecord, FeedRow, FeedVersion, IuvKind, RowIssue};
use mpay_messages::position::{DebtPosition, PaymentOption};
use mpay_messages::time::rome_local_to_utc;
use mpay_messages::{NoticeLayout, NoticeNumber};

use crate::ledger::{prepare, Abort, LedgerError, PreparedWrite};
use crate::Store;

use super::keys::*;
use super::seen::*;
use super::types::*;

pub(crate) fn open_source(source: &dyn FeedSource) -> Result<Box<dyn Read + '_>, FeedError> {
    source.open().map_err(|e| FeedError::Io(e.to_string()))
}

/// Business due instant: 23:59:59 Europe/Rome of the day.
pub(crate) fn due_instant(day: NaiveDate) -> DateTime<Utc> {
    rome_local_to_utc(day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)))
        .unwrap_or_else(Utc::now)
}

pub(crate) fn meta_get<'a>(o: &'a PaymentOption, key: &str) -> Option<&'a str> {
    o.metadata
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value.as_str())
}

pub(crate) fn cut140(s: &str) -> String {
    s.chars().take(140).collect()
}

/// Option without the origin marker, for "identical?" comparisons.
pub(crate) fn strip(o: &PaymentOption) -> PaymentOption {
    let mut o = o.clone();
    o.metadata.retain(|m| m.key != meta::FLOW);
    o
}

/// Whether every option of the position was written by a feed (FORMAT.md §5.6 FULL scope:
/// "positions whose origin is a bulk feed").
pub(crate) fn is_feed_position(p: &DebtPosition) -> bool {
    use mpay_messages::position::Origin;
    match p.origin {
        Origin::Feed { .. } => return true,
        Origin::Unrecorded => {}
        _ => return false, // REST, archive, PSP demand, portal: never a feed's to cancel
    }
    // recorded before origins were: every option carries a feed's IUD
    !p.payment_options.is_empty()
        && p.payment_options
            .iter()
            .all(|o| meta_get(o, meta::IUD).is_some())
}

/// The state shared by the steps of one load.
pub(crate) struct Ctx<'a> {
    pub(crate) store: &'a Store,
    pub(crate) org: &'a FeedOrg,
    pub(crate) opts: &'a LoadOptions,
    pub(crate) trees: Trees,
    pub(crate) key: Vec<u8>,
    pub(crate) rec: FeedLoadRecord,
    pub(crate) version: FeedVersion,
    pub(crate) dup_rows: HashSet<u64>,
    pub(crate) split_rows: HashSet<u64>,
    pub(crate) file_tipi: BTreeSet<String>,
    pub(crate) seen: SeenSet,
}

pub(crate) fn issue(code: ErrorCode, msg: impl Into<String>) -> RowIssue {
    RowIssue::new(None, code, msg)
}

/// One row being processed in a group.
pub(crate) struct Work<'r> {
    pub(crate) row: &'r FeedRow,
    pub(crate) issues: Vec<RowIssue>,
    pub(crate) performed: &'static str,
    pub(crate) kind: Option<IuvKind>,
    pub(crate) nav: Option<NoticeNumber>,
    pub(crate) due: Option<NaiveDate>,
}

impl<'r> Work<'r> {
    pub(crate) fn record(&self) -> Option<&'r FeedRecord> {
        self.row.record.as_ref().ok()
    }
}

/// A row group validated and planned, waiting for its batch's transaction.
pub(crate) struct GroupPlan<'r> {
    pub(crate) work: Vec<Work<'r>>,
    pub(crate) write: Option<PlannedWrite>,
}

/// A position to write in the batch's transaction.
pub(crate) struct PlannedWrite {
    /// State it replaces (index entries to drop); `None` = created.
    pub(crate) old: Option<DebtPosition>,
    pub(crate) new: DebtPosition,
    /// What the `positions` tree must hold at commit time (compare-and-swap).
    pub(crate) expect: Expect,
    /// The tree operations, prepared outside the transaction.
    pub(crate) prepared: PreparedWrite,
}

impl PlannedWrite {
    pub(crate) fn new(
        old: Option<DebtPosition>,
        new: DebtPosition,
        expect: Expect,
    ) -> Result<Self, FeedError> {
        let prepared = prepare(old.as_ref(), &new)?;
        Ok(Self {
            old,
            new,
            expect,
            prepared,
        })
    }
}

/// Most bytes one batch transaction adds to the store's log (about): sled pins its log while
/// a transaction commits, and one that outgrows an I/O buffer (a 512 KiB segment) slows the
/// whole store down. A batch stops growing at this size, whatever `batch_positions` says.
pub(crate) const TX_BYTES_BUDGET: usize = 256 * 1024;

/// Bytes of one row's stored outcome (about), for [`TX_BYTES_BUDGET`].
pub(crate) const OUTCOME_BYTES: usize = 600;

/// Compare-and-swap expectation of a planned write.
pub(crate) enum Expect {
    /// No position with that key.
    Absent,
    /// The stored bytes read when planning.
    Bytes(sled::IVec),
    /// Written earlier in the same transaction (nothing else can interleave).
    Batch,
}

/// What the groups planned earlier in a batch changed, so that later groups of the same batch
/// see it before it is committed.
#[derive(Default)]
pub(crate) struct BatchView {
    /// Positions planned in this batch: iupd → index of its plan.
    pub(crate) positions: HashMap<String, usize>,
    /// Index keys (0 notice number, 1 IUV) claimed (`Some(iupd)`) or released (`None`).
    pub(crate) claims: HashMap<(usize, Vec<u8>), Option<String>>,
    /// Sequence numbers checked against the store by one range scan.
    pub(crate) window: Option<NumberWindow>,
}

/// The index keys found in the store for the notice numbers (and IUVs) of the sequence numbers
/// `lo..hi` of the organization's layout: fixed-width digits, so they are contiguous in key
/// order and one range scan per index answers "taken?" for all of them.
pub(crate) struct NumberWindow {
    /// The layout the sequence numbers belong to (one window per layout: a batch may generate
    /// with several of the organization's codes).
    pub(crate) layout: NoticeLayout,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) taken: HashSet<(usize, Vec<u8>)>,
}

/// Sequence numbers covered by one [`NumberWindow`] scan.
pub(crate) const NUMBER_WINDOW: u64 = 1024;

impl BatchView {
    pub(crate) fn claimed(&self, tree: usize, key: &[u8]) -> bool {
        matches!(self.claims.get(&(tree, key.to_vec())), Some(Some(_)))
    }
}

/// Inside a transaction: the `positions` tree still holds what the plan expects; otherwise
/// the batch is planned again ([`LedgerError::Contended`]).
pub(crate) fn check_expected(
    positions: &sled::transaction::TransactionalTree,
    key: &[u8],
    expect: &Expect,
) -> Result<(), Abort> {
    let ok = match expect {
        Expect::Absent => positions.get(key)?.is_none(),
        Expect::Bytes(b) => positions.get(key)?.as_deref() == Some(b.as_ref()),
        Expect::Batch => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Abort::Abort(LedgerError::Contended))
    }
}

/// Transaction aborts that mean "someone else changed the ledger since the plan".
pub(crate) fn is_concurrent_change(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::Contended
            | LedgerError::NoticeInUse { .. }
            | LedgerError::IuvInUse { .. }
            | LedgerError::AlreadyExists(_)
    )
}

pub(crate) fn iuv_kind_of(o: &PaymentOption) -> Option<IuvKind> {
    match meta_get(o, meta::IUV_KIND) {
        Some("B") => Some(IuvKind::B),
        Some("A") => Some(IuvKind::A),
        _ => None,
    }
}

/// A syntactically valid notice number of the layout, replaced by the generated one before the
/// write (used only in memory).
/// What an IUV of the organization's layout looks like, in Italian (the outcome report is an
/// Ente-facing surface: one language per message).
pub(crate) fn iuv_layout_it(layout: &NoticeLayout) -> String {
    match layout {
        NoticeLayout::Aux3 { segregation_code } => format!(
            "lo IUV deve avere 17 cifre e iniziare con il codice di segregazione {segregation_code:02}"
        ),
        NoticeLayout::Aux0 { application_code } => format!(
            "lo IUV deve avere 15 cifre (codice applicazione {application_code:02} nel numero avviso)"
        ),
        NoticeLayout::Aux1 => "lo IUV deve avere 17 cifre".into(),
        NoticeLayout::Aux2 => "lo IUV deve avere 15 cifre".into(),
    }
}

pub(crate) fn placeholder_nav(layout: &NoticeLayout) -> Option<NoticeNumber> {
    layout
        .generate(0)
        .ok()
        .or_else(|| NoticeNumber::parse_unchecked("300000000000000000").ok())
}

/// Identical content, ignoring bookkeeping (revision, timestamps, origin markers).
pub(crate) fn same_position(a: &DebtPosition, b: &DebtPosition) -> bool {
    let norm = |p: &DebtPosition| {
        let mut p = p.clone();
        p.revision = 0;
        p.last_updated_date = DateTime::<Utc>::MIN_UTC;
        p.inserted_date = DateTime::<Utc>::MIN_UTC;
        p.publish_date = None;
        p.payment_options = p.payment_options.iter().map(strip).collect();
        p
    };
    norm(a) == norm(b)
}
