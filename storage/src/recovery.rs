//! The receipt-recovery queue (issue 14, "blindatura"): what waits for a call to pagoPA's
//! biz-events API, and the calls made (the hourly quota). The rules are the domain's
//! (`mpay_messages::domain::recovery`); this file keeps them durable.
//!
//! Trees:
//! - `recovery`: `org ++ 0x00 ++ iuv` → [`RecoveryEntry`] JSON (schema 1); every change is a
//!   compare-and-swap on the bytes read, so a feeder and the worker never overwrite each other;
//! - `recovery_calls`: UTC millis (i64 BE) ++ a sequence (u64 BE) → ∅, the calls of the last
//!   hours (pruned as calls are recorded), what [`next_call_at`] counts.
//!
//! The feeders: [`SledRecovery::request`] (operators, with their re-arm), the reconciliation
//! rows `IUV_NO_RT` ([`queue_rows_without_receipt`]) and the payments in progress that got no
//! receipt ([`SledRecovery::stale_payments`]).

use chrono::{DateTime, Duration, Utc};
use mpay_messages::domain::recovery::{next_call_at, RecoveryEntry, RecoveryReason, RecoveryState};

use crate::codec::{decode, encode};
use crate::error::StorageError;
use crate::keys::{org_segment, split_org};

const ENTRIES: &str = "recovery";
const CALLS: &str = "recovery_calls";

/// The recovery queue of a store (`Store::recovery`). Cheap to open (sled caches its trees).
#[derive(Clone)]
pub struct SledRecovery {
    db: sled::Db,
    entries: sled::Tree,
    calls: sled::Tree,
    in_progress: sled::Tree,
    begun: sled::Tree,
    by_iuv: sled::Tree,
}

fn entry_key(org: &str, iuv: &str) -> Vec<u8> {
    let mut k = org_segment(org.trim());
    k.push(0);
    k.extend_from_slice(iuv.trim().as_bytes());
    k
}

fn org_prefix(org: &str) -> Vec<u8> {
    let mut k = org_segment(org.trim());
    k.push(0);
    k
}

impl SledRecovery {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(SledRecovery {
            db: db.clone(),
            entries: db.open_tree(ENTRIES)?,
            calls: db.open_tree(CALLS)?,
            in_progress: db.open_tree("payments_in_progress")?,
            begun: db.open_tree(crate::ledger::BEGUN_TREE)?,
            by_iuv: db.open_tree("by_iuv")?,
        })
    }

    /// Queues `request` (the domain's [`RecoveryEntry::merge`] with what is stored: a new entry,
    /// an ended one re-armed by an operator, a waiting one that learns its IUR) and returns the
    /// entry as stored now, with whether it changed.
    ///
    /// # Errors
    /// The tree cannot be read or written, a stored entry does not decode.
    pub fn request(
        &self,
        request: RecoveryEntry,
        now: DateTime<Utc>,
    ) -> Result<(RecoveryEntry, bool), StorageError> {
        let key = entry_key(&request.organization, &request.iuv);
        loop {
            let current = self.entries.get(&key)?;
            let existing: Option<RecoveryEntry> = match &current {
                Some(b) => Some(decode(ENTRIES, &key, b)?),
                None => None,
            };
            let Some(next) = RecoveryEntry::merge(existing.as_ref(), request.clone(), now) else {
                // merge answers None only when an entry exists
                return match existing {
                    Some(e) => Ok((e, false)),
                    None => Err(StorageError::Io(
                        "the recovery queue refused a new entry".into(),
                    )),
                };
            };
            let bytes = encode(&next)?;
            if self
                .entries
                .compare_and_swap(&key, current, Some(bytes))?
                .is_ok()
            {
                return Ok((next, true));
            }
        }
    }

    /// Replaces `old` by `new` if the stored entry is still `old`; `false` when it changed
    /// meanwhile (an operator re-armed it: the caller reads again).
    ///
    /// # Errors
    /// The tree cannot be read or written.
    pub fn replace(&self, old: &RecoveryEntry, new: &RecoveryEntry) -> Result<bool, StorageError> {
        let key = entry_key(&old.organization, &old.iuv);
        let Some(current) = self.entries.get(&key)? else {
            return Ok(false);
        };
        let stored: RecoveryEntry = decode(ENTRIES, &key, &current)?;
        if &stored != old {
            return Ok(false);
        }
        Ok(self
            .entries
            .compare_and_swap(&key, Some(current), Some(encode(new)?))?
            .is_ok())
    }

    /// One entry.
    ///
    /// # Errors
    /// The tree cannot be read, the entry does not decode.
    pub fn get(&self, org: &str, iuv: &str) -> Result<Option<RecoveryEntry>, StorageError> {
        let key = entry_key(org, iuv);
        match self.entries.get(&key)? {
            Some(b) => Ok(Some(decode(ENTRIES, &key, &b)?)),
            None => Ok(None),
        }
    }

    /// The entries of `org` (by IUV), only those in `state` when given.
    ///
    /// # Errors
    /// The tree cannot be read, an entry does not decode.
    pub fn list(
        &self,
        org: &str,
        state: Option<RecoveryState>,
    ) -> Result<Vec<RecoveryEntry>, StorageError> {
        let mut out = Vec::new();
        for item in self.entries.scan_prefix(org_prefix(org)) {
            let (k, v) = item?;
            let e: RecoveryEntry = decode(ENTRIES, &k, &v)?;
            if state.is_none_or(|s| s == e.state) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The WAITING entries whose call may be made at `now`, in the order they get the hour's calls
    /// ([`RecoveryEntry::work_order`]: operators, reported rows, then payments begun).
    ///
    /// # Errors
    /// The tree cannot be read, an entry does not decode.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<RecoveryEntry>, StorageError> {
        let mut out = Vec::new();
        for item in self.entries.iter() {
            let (k, v) = item?;
            let e: RecoveryEntry = decode(ENTRIES, &k, &v)?;
            if e.due(now) {
                out.push(e);
            }
        }
        out.sort_by_key(RecoveryEntry::work_order);
        Ok(out)
    }

    /// Records a call made at `at` (before it is made: a call whose answer is lost still
    /// counts) and forgets the calls older than two hours.
    ///
    /// # Errors
    /// The tree cannot be written.
    pub fn record_call(&self, at: DateTime<Utc>) -> Result<(), StorageError> {
        let mut key = at.timestamp_millis().to_be_bytes().to_vec();
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.calls.insert(key, &b""[..])?;
        let horizon = (at - Duration::hours(2)).timestamp_millis().to_be_bytes();
        for item in self.calls.range(..horizon.to_vec()) {
            let (k, _) = item?;
            self.calls.remove(k)?;
        }
        Ok(())
    }

    /// When the next call may be made under `calls_per_hour` (the domain's [`next_call_at`]
    /// over the calls recorded); `None` when the quota is 0.
    ///
    /// # Errors
    /// The tree cannot be read.
    pub fn next_call_at(
        &self,
        now: DateTime<Utc>,
        calls_per_hour: u32,
    ) -> Result<Option<DateTime<Utc>>, StorageError> {
        let from = (now - Duration::hours(1)).timestamp_millis().to_be_bytes();
        let mut recent = Vec::new();
        for item in self.calls.range(from.to_vec()..) {
            let (k, _) = item?;
            let millis = k
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes);
            if let Some(t) = millis.and_then(DateTime::<Utc>::from_timestamp_millis) {
                recent.push(t);
            }
        }
        Ok(next_call_at(&recent, now, calls_per_hour))
    }

    /// The position (iupd) holding IUV `iuv` of `org`, if any.
    ///
    /// # Errors
    /// The tree cannot be read.
    pub fn iupd_of_iuv(&self, org: &str, iuv: &str) -> Result<Option<String>, StorageError> {
        let key = crate::keys::position_key(org.trim(), iuv.trim());
        Ok(self
            .by_iuv
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The notices whose payment began (paGetPayment answered) between `since` and `until`:
    /// `(organization, notice number)`. The caller keeps those without a receipt.
    ///
    /// Reads the time index (`payments_begun_at`) over that range only. What began before
    /// `since` is pruned first — index entries and their expired `payments_in_progress`
    /// records (compare-and-swap: one a newer paGetPayment rewrote stays): the lookback only
    /// moves forward, and a record that ran out long ago blocks nothing
    /// (`DebtPosition::may_replace_with` compares it with the present).
    ///
    /// # Errors
    /// The tree cannot be read.
    pub fn payments_begun(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let window = mpay_messages::domain::position::payment_in_progress_window();
        let lo = (since + window).timestamp_millis().to_be_bytes();
        let hi = (until + window).timestamp_millis();
        // never a record still running, whatever `since` a caller passes
        let prune = (since + window)
            .min(Utc::now())
            .timestamp_millis()
            .to_be_bytes();
        for item in self.begun.range(..prune.to_vec()) {
            let (k, _) = item?;
            if let (Some(at), Some(notice)) = (k.get(..8), k.get(8..)) {
                let _ =
                    self.in_progress
                        .compare_and_swap(notice, Some(at), None as Option<&[u8]>)?;
            }
            self.begun.remove(&k)?;
        }
        let mut out = Vec::new();
        for item in self.begun.range(lo.to_vec()..) {
            let (k, _) = item?;
            let (Some(at), Some(notice)) = (k.get(..8), k.get(8..)) else {
                continue;
            };
            let millis = <[u8; 8]>::try_from(at)
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MAX);
            if millis > hi {
                break;
            }
            // superseded by a later paGetPayment (listed at its own instant)
            if self.in_progress.get(notice)?.as_deref() != Some(at) {
                continue;
            }
            if let Some((org, nav)) = split_org(notice) {
                if let Ok(nav) = std::str::from_utf8(nav) {
                    out.push((org.to_string(), nav.to_string()));
                }
            }
        }
        Ok(out)
    }
}

/// Queues the rows of a reconciliation report that a flow reports and no receipt explains
/// (`IUV_NO_RT`), with the IUR the flow names; ended entries stay ended (the domain's merge).
/// Returns how many entries were added or changed.
///
/// # Errors
/// The tree cannot be read or written.
pub fn queue_rows_without_receipt(
    store: &crate::Store,
    org: &str,
    rows: &[crate::reconciliation::RowLine],
    now: DateTime<Utc>,
) -> Result<usize, StorageError> {
    let q = store.recovery()?;
    let mut changed = 0;
    for row in rows {
        if row.iuv.trim().is_empty() {
            continue;
        }
        let iur = Some(row.iur.trim().to_string()).filter(|s| !s.is_empty());
        let entry = RecoveryEntry::new(org, &row.iuv, None, iur, RecoveryReason::IuvNoRt, now);
        if q.request(entry, now)?.1 {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mpay_messages::domain::recovery::{CallOutcome, RecoveryPolicy};

    fn open() -> (tempfile::TempDir, SledRecovery) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let q = SledRecovery::open(&db).unwrap();
        (dir, q)
    }

    #[test]
    fn entries_are_queued_once_and_listed_by_state() {
        let (_d, q) = open();
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        let e = RecoveryEntry::new(
            "80001234568",
            "IUV1",
            None,
            None,
            RecoveryReason::IuvNoRt,
            now,
        );
        assert!(q.request(e.clone(), now).unwrap().1);
        assert!(
            !q.request(e.clone(), now).unwrap().1,
            "the same request changes nothing"
        );
        let other = RecoveryEntry::new(
            "01987654322",
            "IUV1",
            None,
            None,
            RecoveryReason::Operator,
            now,
        );
        q.request(other, now).unwrap();
        assert_eq!(q.list("80001234568", None).unwrap().len(), 1);
        assert_eq!(q.due(now).unwrap().len(), 2);
        let policy = RecoveryPolicy {
            calls_per_hour: 10,
            max_attempts: 1,
            first_backoff: Duration::minutes(1),
        };
        let stored = q.get("80001234568", "IUV1").unwrap().unwrap();
        let ended = stored.after(CallOutcome::NotFound, now, &policy);
        assert!(q.replace(&stored, &ended).unwrap());
        assert!(
            !q.replace(&stored, &ended).unwrap(),
            "a stale entry is not written"
        );
        assert_eq!(
            q.list("80001234568", Some(RecoveryState::NotFound))
                .unwrap(),
            vec![ended]
        );
        assert!(q
            .list("80001234568", Some(RecoveryState::Waiting))
            .unwrap()
            .is_empty());
        assert_eq!(q.due(now).unwrap().len(), 1);
    }

    #[test]
    fn the_quota_counts_recorded_calls() {
        let (_d, q) = open();
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        assert_eq!(q.next_call_at(now, 2).unwrap(), Some(now));
        q.record_call(now - Duration::minutes(90)).unwrap();
        q.record_call(now - Duration::minutes(10)).unwrap();
        assert_eq!(q.next_call_at(now, 2).unwrap(), Some(now));
        q.record_call(now).unwrap();
        assert_eq!(
            q.next_call_at(now, 2).unwrap(),
            Some(now - Duration::minutes(10) + Duration::hours(1))
        );
        // old calls are forgotten
        q.record_call(now + Duration::hours(3)).unwrap();
        assert_eq!(q.calls.len(), 1);
    }
}
