//! Receipt recovery ("blindatura", issue 14): a payment pagoPA collected whose receipt never
//! reached us is fetched from the biz-events API (`getOrganizationReceipt`), which allows about
//! ten calls an hour per subscription. The rules of the recovery queue, pure:
//!
//! - an entry per (organization, IUV): WAITING → RECOVERED (the receipt is stored, or was
//!   already), NOT_FOUND (the API did not know it after the last attempt), FAILED (the API
//!   kept failing, or answered something that is not a receipt); never a loop: at most
//!   `max_attempts` calls, spaced by a doubling backoff;
//! - the automatic feeders (reconciliation rows `IUV_NO_RT`, payments in progress without a
//!   receipt) never re-arm an entry that ended; an operator's request does (attempts from 0);
//! - calls are spaced by [`next_call_at`]: at most `calls_per_hour` in any sliding hour.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryState {
    /// Waiting for its next call.
    Waiting,
    /// The receipt is stored.
    Recovered,
    /// The API did not know the receipt after the last attempt.
    NotFound,
    /// The API kept failing, or its answer is not a receipt.
    Failed,
}

impl RecoveryState {
    /// The wire name (`WAITING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Recovered => "RECOVERED",
            Self::NotFound => "NOT_FOUND",
            Self::Failed => "FAILED",
        }
    }

    /// Reads a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Waiting, Self::Recovered, Self::NotFound, Self::Failed]
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Why an entry was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryReason {
    /// A reporting flow reports the payment and no receipt is stored (`IUV_NO_RT`).
    IuvNoRt,
    /// paGetPayment was answered and no receipt came within the configured delay.
    PaymentInProgress,
    /// An operator asked (`POST …/receipts/recover`).
    Operator,
}

/// The queue's policy (`[biz_events]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Calls allowed in any sliding hour (the API's quota: 10).
    pub calls_per_hour: u32,
    /// Calls per entry before it ends NOT_FOUND / FAILED.
    pub max_attempts: u32,
    /// Wait after the first unsuccessful call; doubles after each, capped at a day.
    pub first_backoff: Duration,
}

/// What one call to the API gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The receipt is stored now (or was already).
    Stored {
        /// Its id.
        receipt_id: String,
    },
    /// 404: the API does not know it (yet).
    NotFound,
    /// A failure worth another call (timeout, 429, 5xx).
    Retryable(String),
    /// A failure no other call will change (the answer is not a receipt, 401/403).
    Permanent(String),
}

/// One entry of the recovery queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryEntry {
    /// Organization fiscal code.
    pub organization: String,
    /// IUV (`creditorReferenceId`): the key of the entry.
    pub iuv: String,
    /// Notice number, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_number: Option<String>,
    /// IUR (= receiptId / payment token) when known (a flow row names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iur: Option<String>,
    /// Why it was queued (the latest request).
    pub reason: RecoveryReason,
    /// State.
    pub state: RecoveryState,
    /// Calls made.
    pub attempts: u32,
    /// Not before (WAITING only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// First queued.
    pub queued_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The last call's failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The receipt stored (RECOVERED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

impl RecoveryEntry {
    /// A new WAITING entry, due now.
    pub fn new(
        organization: &str,
        iuv: &str,
        notice_number: Option<String>,
        iur: Option<String>,
        reason: RecoveryReason,
        now: DateTime<Utc>,
    ) -> Self {
        RecoveryEntry {
            organization: organization.trim().to_string(),
            iuv: iuv.trim().to_string(),
            notice_number,
            iur,
            reason,
            state: RecoveryState::Waiting,
            attempts: 0,
            next_attempt: Some(now),
            queued_at: now,
            updated_at: now,
            last_error: None,
            receipt_id: None,
        }
    }

    /// What to store when `request` (a new entry) meets `existing` (the stored one, if any);
    /// `None`: leave the stored entry as it is. An entry that ended is re-armed only by an
    /// operator (the feeders would otherwise loop on a receipt pagoPA does not have); a
    /// WAITING entry learns the notice number / IUR it lacked.
    pub fn merge(existing: Option<&Self>, request: Self, now: DateTime<Utc>) -> Option<Self> {
        let Some(old) = existing else {
            return Some(request);
        };
        match old.state {
            RecoveryState::Recovered => None,
            RecoveryState::Waiting => {
                let learns = (old.notice_number.is_none() && request.notice_number.is_some())
                    || (old.iur.is_none() && request.iur.is_some());
                learns.then(|| RecoveryEntry {
                    notice_number: old.notice_number.clone().or(request.notice_number),
                    iur: old.iur.clone().or(request.iur),
                    updated_at: now,
                    ..old.clone()
                })
            }
            RecoveryState::NotFound | RecoveryState::Failed => {
                (request.reason == RecoveryReason::Operator).then(|| RecoveryEntry {
                    notice_number: request.notice_number.or(old.notice_number.clone()),
                    iur: request.iur.or(old.iur.clone()),
                    reason: RecoveryReason::Operator,
                    state: RecoveryState::Waiting,
                    attempts: 0,
                    next_attempt: Some(now),
                    updated_at: now,
                    last_error: old.last_error.clone(),
                    ..old.clone()
                })
            }
        }
    }

    /// The order in which due entries get the hour's few calls: an operator's request first,
    /// then payments a flow reports without a receipt (money collected, the Ente's books wrong),
    /// then payments begun and not concluded (most are checkouts the citizen abandoned: no
    /// receipt exists); within a reason, the one due the longest (a retry whose backoff ran
    /// out before a new entry was queued goes first: new entries cannot starve retries).
    pub fn work_order(&self) -> (u8, DateTime<Utc>, DateTime<Utc>) {
        let rank = match self.reason {
            RecoveryReason::Operator => 0,
            RecoveryReason::IuvNoRt => 1,
            RecoveryReason::PaymentInProgress => 2,
        };
        (
            rank,
            self.next_attempt.unwrap_or(self.queued_at),
            self.queued_at,
        )
    }

    /// Whether its call may be made at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.state == RecoveryState::Waiting && self.next_attempt.is_none_or(|t| t <= now)
    }

    /// The entry after a call (or after finding the receipt already stored, with no call).
    pub fn after(&self, outcome: CallOutcome, now: DateTime<Utc>, policy: &RecoveryPolicy) -> Self {
        let attempts = self.attempts.saturating_add(1);
        let mut next = RecoveryEntry {
            attempts,
            updated_at: now,
            ..self.clone()
        };
        let last = attempts >= policy.max_attempts.max(1);
        match outcome {
            CallOutcome::Stored { receipt_id } => {
                next.state = RecoveryState::Recovered;
                next.receipt_id = Some(receipt_id);
                next.next_attempt = None;
                next.last_error = None;
            }
            CallOutcome::Permanent(why) => {
                next.state = RecoveryState::Failed;
                next.next_attempt = None;
                next.last_error = Some(why);
            }
            CallOutcome::NotFound | CallOutcome::Retryable(_) if last => {
                next.state = match outcome {
                    CallOutcome::NotFound => RecoveryState::NotFound,
                    _ => RecoveryState::Failed,
                };
                next.next_attempt = None;
                next.last_error = Some(describe(&outcome));
            }
            CallOutcome::NotFound | CallOutcome::Retryable(_) => {
                next.next_attempt = Some(now + backoff(attempts, policy));
                next.last_error = Some(describe(&outcome));
            }
        }
        next
    }

    /// The entry when a receipt of its notice is already stored (no call spent).
    pub fn already_stored(&self, receipt_id: &str, now: DateTime<Utc>) -> Self {
        RecoveryEntry {
            state: RecoveryState::Recovered,
            receipt_id: Some(receipt_id.to_string()),
            next_attempt: None,
            updated_at: now,
            ..self.clone()
        }
    }
}

fn describe(outcome: &CallOutcome) -> String {
    match outcome {
        CallOutcome::Stored { receipt_id } => format!("stored {receipt_id}"),
        CallOutcome::NotFound => "the receipt is not known to pagoPA (404)".to_string(),
        CallOutcome::Retryable(why) | CallOutcome::Permanent(why) => why.clone(),
    }
}

/// The wait after `attempts` unsuccessful calls: `first_backoff` doubled each time, capped at
/// one day.
pub fn backoff(attempts: u32, policy: &RecoveryPolicy) -> Duration {
    let cap = Duration::days(1);
    let factor = 1i32
        .checked_shl(attempts.saturating_sub(1).min(20))
        .unwrap_or(i32::MAX);
    policy
        .first_backoff
        .checked_mul(factor)
        .map_or(cap, |d| d.min(cap))
}

/// When the next call may be made, given the calls made (`recent`, any order) and the quota:
/// `now` when fewer than `calls_per_hour` were made in the last hour, else one hour after the
/// oldest of the last `calls_per_hour`. `None` when the quota is 0 (recovery switched off).
pub fn next_call_at(
    recent: &[DateTime<Utc>],
    now: DateTime<Utc>,
    calls_per_hour: u32,
) -> Option<DateTime<Utc>> {
    let limit = usize::try_from(calls_per_hour).ok().filter(|l| *l > 0)?;
    let hour = Duration::hours(1);
    let mut window: Vec<DateTime<Utc>> =
        recent.iter().copied().filter(|t| *t > now - hour).collect();
    if window.len() < limit {
        return Some(now);
    }
    window.sort_unstable();
    // the call that must leave the window before another fits
    let gate = window.get(window.len() - limit).copied()?;
    Some(gate + hour)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
    }

    fn policy() -> RecoveryPolicy {
        RecoveryPolicy {
            calls_per_hour: 10,
            max_attempts: 3,
            first_backoff: Duration::minutes(30),
        }
    }

    fn entry(reason: RecoveryReason) -> RecoveryEntry {
        RecoveryEntry::new("80001234568", "12000000000000042", None, None, reason, t0())
    }

    #[test]
    fn the_hours_calls_go_to_operators_then_reported_rows_then_abandoned_checkouts() {
        let mut abandoned = entry(RecoveryReason::PaymentInProgress);
        abandoned.queued_at = t0() - chrono::Duration::days(3);
        let reported = entry(RecoveryReason::IuvNoRt);
        let mut operator = entry(RecoveryReason::Operator);
        operator.queued_at = t0() + chrono::Duration::hours(1);
        let mut older_row = entry(RecoveryReason::IuvNoRt);
        older_row.queued_at = t0() - chrono::Duration::hours(1);
        // a row tried before, due again since 09:30 (new entries are due from their queueing,
        // 10:00 here): it goes before them
        let mut retried = entry(RecoveryReason::IuvNoRt);
        retried.queued_at = t0() - chrono::Duration::days(2);
        retried.attempts = 1;
        retried.next_attempt = Some(t0() - chrono::Duration::minutes(30));
        let mut all = [
            abandoned.clone(),
            reported.clone(),
            operator.clone(),
            older_row.clone(),
            retried.clone(),
        ];
        all.sort_by_key(RecoveryEntry::work_order);
        assert_eq!(all, [operator, retried, older_row, reported, abandoned]);
    }

    #[test]
    fn not_found_backs_off_then_ends_after_the_last_attempt() {
        let p = policy();
        let e = entry(RecoveryReason::IuvNoRt);
        assert!(e.due(t0()));
        let e1 = e.after(CallOutcome::NotFound, t0(), &p);
        assert_eq!(e1.state, RecoveryState::Waiting);
        assert_eq!(e1.next_attempt, Some(t0() + Duration::minutes(30)));
        assert!(!e1.due(t0() + Duration::minutes(29)));
        let e2 = e1.after(CallOutcome::NotFound, t0() + Duration::minutes(30), &p);
        assert_eq!(e2.next_attempt, Some(t0() + Duration::minutes(90)));
        let e3 = e2.after(CallOutcome::NotFound, t0() + Duration::minutes(90), &p);
        assert_eq!(e3.state, RecoveryState::NotFound);
        assert_eq!(e3.attempts, 3);
        assert_eq!(e3.next_attempt, None);
        assert!(!e3.due(t0() + Duration::days(365)), "never loops");
    }

    #[test]
    fn retryable_failures_end_failed_and_permanent_ones_at_once() {
        let p = policy();
        let e = entry(RecoveryReason::Operator);
        let f = e
            .after(CallOutcome::Retryable("HTTP 503".into()), t0(), &p)
            .after(CallOutcome::Retryable("HTTP 429".into()), t0(), &p)
            .after(CallOutcome::Retryable("timeout".into()), t0(), &p);
        assert_eq!(f.state, RecoveryState::Failed);
        assert_eq!(f.last_error.as_deref(), Some("timeout"));
        let g = e.after(CallOutcome::Permanent("not a receipt".into()), t0(), &p);
        assert_eq!((g.state, g.attempts), (RecoveryState::Failed, 1));
    }

    #[test]
    fn a_stored_receipt_recovers_the_entry() {
        let e = entry(RecoveryReason::PaymentInProgress).after(
            CallOutcome::Stored {
                receipt_id: "r1".into(),
            },
            t0(),
            &policy(),
        );
        assert_eq!(e.state, RecoveryState::Recovered);
        assert_eq!(e.receipt_id.as_deref(), Some("r1"));
        let s = entry(RecoveryReason::IuvNoRt).already_stored("r2", t0());
        assert_eq!((s.state, s.attempts), (RecoveryState::Recovered, 0));
    }

    #[test]
    fn feeders_never_rearm_an_ended_entry_operators_do() {
        let p = policy();
        let ended = entry(RecoveryReason::IuvNoRt)
            .after(CallOutcome::NotFound, t0(), &p)
            .after(CallOutcome::NotFound, t0(), &p)
            .after(CallOutcome::NotFound, t0(), &p);
        let later = t0() + Duration::days(1);
        let feeder = RecoveryEntry::new(
            "80001234568",
            "12000000000000042",
            None,
            None,
            RecoveryReason::IuvNoRt,
            later,
        );
        assert_eq!(RecoveryEntry::merge(Some(&ended), feeder, later), None);
        let op = RecoveryEntry::new(
            "80001234568",
            "12000000000000042",
            None,
            None,
            RecoveryReason::Operator,
            later,
        );
        let rearmed = RecoveryEntry::merge(Some(&ended), op, later).unwrap();
        assert_eq!(rearmed.state, RecoveryState::Waiting);
        assert_eq!(rearmed.attempts, 0);
        assert_eq!(rearmed.queued_at, t0());
        assert!(rearmed.due(later));
        // a recovered entry stays as it is, whoever asks
        let done = entry(RecoveryReason::IuvNoRt).already_stored("r", t0());
        let op = RecoveryEntry::new(
            "80001234568",
            "12000000000000042",
            None,
            None,
            RecoveryReason::Operator,
            later,
        );
        assert_eq!(RecoveryEntry::merge(Some(&done), op, later), None);
        // a waiting entry learns the IUR a flow row names, nothing else changes
        let waiting = entry(RecoveryReason::PaymentInProgress);
        let row = RecoveryEntry::new(
            "80001234568",
            "12000000000000042",
            None,
            Some("iur-1".into()),
            RecoveryReason::IuvNoRt,
            later,
        );
        let learnt = RecoveryEntry::merge(Some(&waiting), row.clone(), later).unwrap();
        assert_eq!(learnt.iur.as_deref(), Some("iur-1"));
        assert_eq!(learnt.reason, RecoveryReason::PaymentInProgress);
        assert_eq!(RecoveryEntry::merge(Some(&learnt), row, later), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        assert_eq!(backoff(1, &p), Duration::minutes(30));
        assert_eq!(backoff(2, &p), Duration::minutes(60));
        assert_eq!(backoff(4, &p), Duration::minutes(240));
        assert_eq!(backoff(40, &p), Duration::days(1));
    }

    #[test]
    fn the_quota_holds_over_a_sliding_hour() {
        let now = t0();
        assert_eq!(next_call_at(&[], now, 10), Some(now));
        let calls: Vec<_> = (0..10).map(|i| now - Duration::minutes(50 - i)).collect();
        // ten calls in the last hour: the next when the oldest leaves the window
        assert_eq!(
            next_call_at(&calls, now, 10),
            Some(now - Duration::minutes(50) + Duration::hours(1))
        );
        assert_eq!(next_call_at(&calls[1..], now, 10), Some(now));
        // calls older than an hour do not count
        let old = vec![now - Duration::minutes(61); 20];
        assert_eq!(next_call_at(&old, now, 10), Some(now));
        assert_eq!(next_call_at(&[now], now, 1), Some(now + Duration::hours(1)));
        assert_eq!(next_call_at(&[], now, 0), None);
    }

    #[test]
    fn states_have_wire_names() {
        for s in [
            RecoveryState::Waiting,
            RecoveryState::Recovered,
            RecoveryState::NotFound,
            RecoveryState::Failed,
        ] {
            assert_eq!(RecoveryState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(
            RecoveryState::parse("not_found"),
            Some(RecoveryState::NotFound)
        );
        assert_eq!(RecoveryState::parse("x"), None);
    }
}
