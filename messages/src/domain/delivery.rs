//! Delivery of notifications to an Ente (the `EnteConnector`'s rules), pure: every function
//! that depends on time takes `now`, and the random part of a backoff (the jitter) is given by
//! the caller, in per mille (0..=1000; integer arithmetic only in this crate).
//!
//! - [`NotificationState`]: PENDING → (RETRYING)* → DELIVERED | FAILED; a resend puts a
//!   notification back to PENDING.
//! - [`DeliveryPolicy::after_failure`]: exponential backoff with jitter until the horizon
//!   (default 14 days from the start of the delivery window), then FAILED.
//! - [`Breaker`]: the circuit breaker of one endpoint (closed → open after N consecutive
//!   failures → half-open after a cool-down: one probe; its success closes, its failure opens
//!   again).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationState {
    /// Enqueued, not tried yet (or put back by a resend).
    Pending,
    /// Tried and failed at least once; the next attempt is due at `next_attempt_at`.
    Retrying,
    /// Acknowledged by the Ente (HTTP 2xx / `retcode 00`): never delivered again by itself.
    Delivered,
    /// Not acknowledged within the horizon: stays visible, delivered again only on a resend.
    Failed,
}

impl NotificationState {
    /// Still to be delivered (PENDING or RETRYING).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Retrying => "RETRYING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the API name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "RETRYING" => Some(Self::Retrying),
            "DELIVERED" => Some(Self::Delivered),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationKind {
    /// The outcome and receipt of a payment (paSendRT / paSendRTV2).
    PaymentReceipt,
    /// A payment already notified was revoked (a reporting flow lists it with outcome 3,
    /// REVOKED): MPay's `notificaRevocaPagamento`, or the webhook's `PAYMENT_REVOKED`.
    PaymentRevocation,
    /// A reporting flow (FdR) of the Ente, a new flow or a higher revision: MPay's
    /// `inviaFlussoRend` (INTERFACES.md §6.3), or the webhook's `REPORTING_FLOW`. Its
    /// [`Notification::flow_ref`] names the flow revision.
    ReportingFlow,
}

/// The flow revision a [`NotificationKind::ReportingFlow`] notification forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRef {
    /// `identificativoFlusso` / `fdr`.
    pub flow_id: String,
    /// The PSP that sent it (its pagoPA id, else the sender's identifier).
    pub sender: String,
    /// Revision (0 for an XML file).
    pub revision: u32,
}

/// Of the notifications of one receipt, the payment notification a revocation must follow:
/// None when the Ente was never told of the payment (nothing to revoke) or a revocation is
/// already queued (one per receipt).
pub fn revocation_target(of_receipt: &[Notification]) -> Option<&Notification> {
    if of_receipt
        .iter()
        .any(|n| n.kind == NotificationKind::PaymentRevocation)
    {
        return None;
    }
    of_receipt
        .iter()
        .find(|n| n.kind == NotificationKind::PaymentReceipt)
}

/// One notification of an Ente's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Id, unique in the store; increasing in the order notifications were enqueued.
    pub id: u64,
    /// The Ente (organization fiscal code).
    pub organization: String,
    /// What it carries.
    pub kind: NotificationKind,
    /// The receipt it notifies.
    pub receipt_id: String,
    /// Notice number of the receipt.
    pub notice_number: String,
    /// Ordering key: notifications of one position are delivered in id order (the iupd, or
    /// the notice number for a receipt without a position).
    pub position: String,
    /// State.
    pub state: NotificationState,
    /// Attempts made (successful one included).
    pub attempts: u32,
    /// Enqueued (UTC).
    pub created_at: DateTime<Utc>,
    /// Start of the current delivery window (enqueued, or the last resend): the horizon
    /// counts from here.
    pub window_start: DateTime<Utc>,
    /// When it may be tried next (open states).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt (UTC).
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the Ente acknowledged it.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// A new PENDING notification of a stored receipt, due now.
    pub fn of_receipt(
        id: u64,
        organization: &str,
        receipt_id: &str,
        notice_number: &str,
        position: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Notification {
            id,
            organization: organization.to_string(),
            kind: NotificationKind::PaymentReceipt,
            receipt_id: receipt_id.to_string(),
            notice_number: notice_number.to_string(),
            position: position.to_string(),
            state: NotificationState::Pending,
            attempts: 0,
            created_at: now,
            window_start: now,
            next_attempt_at: Some(now),
            last_attempt_at: None,
            last_error: None,
            delivered_at: None,
        }
    }

    /// A new PENDING revocation of the payment notified by `payment`, due now: same Ente,
    /// receipt and ordering key, so it leaves after the payment's own notification.
    pub fn revocation_of(payment: &Notification, id: u64, now: DateTime<Utc>) -> Self {
        Notification {
            kind: NotificationKind::PaymentRevocation,
            ..Notification::of_receipt(
                id,
                &payment.organization,
                &payment.receipt_id,
                &payment.notice_number,
                &payment.position,
                now,
            )
        }
    }

    /// A new PENDING notification of a stored reporting flow revision, due now. Stored in the
    /// outbox's compact record without a new field: `receipt_id` holds the flow id,
    /// `notice_number` holds `revision:sender`, and the ordering key is `fdr:` + the flow id
    /// (the revisions of one flow leave in order).
    pub fn of_flow(id: u64, organization: &str, flow: &FlowRef, now: DateTime<Utc>) -> Self {
        Notification {
            kind: NotificationKind::ReportingFlow,
            ..Notification::of_receipt(
                id,
                organization,
                &flow.flow_id,
                &format!("{}:{}", flow.revision, flow.sender),
                &format!("fdr:{}", flow.flow_id),
                now,
            )
        }
    }

    /// The flow revision a [`NotificationKind::ReportingFlow`] notification forwards (`None`
    /// for the other kinds or a record that does not name one).
    pub fn flow_ref(&self) -> Option<FlowRef> {
        if self.kind != NotificationKind::ReportingFlow {
            return None;
        }
        let (revision, sender) = self.notice_number.split_once(':')?;
        Some(FlowRef {
            flow_id: self.receipt_id.clone(),
            sender: sender.to_string(),
            revision: revision.parse().ok()?,
        })
    }

    /// Is an attempt due at `now`?
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state.is_open() && self.next_attempt_at.is_none_or(|t| t <= now)
    }

    /// The Ente acknowledged it at `now`.
    pub fn delivered(&self, now: DateTime<Utc>) -> Self {
        Notification {
            state: NotificationState::Delivered,
            attempts: self.attempts.saturating_add(1),
            last_attempt_at: Some(now),
            next_attempt_at: None,
            delivered_at: Some(now),
            ..self.clone()
        }
    }

    /// An attempt at `now` failed with `error`: RETRYING at the policy's next time, or FAILED
    /// past the horizon. `jitter` in per mille (0..=1000).
    pub fn failed(
        &self,
        policy: &DeliveryPolicy,
        error: &str,
        now: DateTime<Utc>,
        jitter: u32,
    ) -> Self {
        let attempts = self.attempts.saturating_add(1);
        let (state, next) = match policy.after_failure(attempts, self.window_start, now, jitter) {
            Retry::At(t) => (NotificationState::Retrying, Some(t)),
            Retry::GiveUp => (NotificationState::Failed, None),
        };
        Notification {
            state,
            attempts,
            last_attempt_at: Some(now),
            next_attempt_at: next,
            last_error: Some(error.to_string()),
            ..self.clone()
        }
    }

    /// An operator asked for it again at `now`: PENDING, due now, a new delivery window.
    /// A notification already open is only made due now.
    pub fn resent(&self, now: DateTime<Utc>) -> Self {
        Notification {
            state: NotificationState::Pending,
            window_start: now,
            next_attempt_at: Some(now),
            delivered_at: None,
            ..self.clone()
        }
    }
}

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// At this instant.
    At(DateTime<Utc>),
    /// Never: the horizon is passed.
    GiveUp,
}

/// Backoff, horizon and breaker settings of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Delay after the first failure.
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    pub backoff_max: Duration,
    /// After this long since the delivery window started, a failure is final (FAILED).
    pub horizon: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses before letting one probe through.
    pub breaker_open: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            backoff_base: Duration::seconds(10),
            backoff_max: Duration::hours(1),
            horizon: Duration::days(14),
            breaker_failures: 5,
            breaker_open: Duration::seconds(60),
        }
    }
}

impl DeliveryPolicy {
    /// The delay after the `attempts`-th consecutive failure (1 = the first):
    /// `d = min(base · 2^(attempts-1), max)`, then "equal jitter": `d/2 + jitter · d/2` with
    /// `jitter` in per mille (clamped to 0..=1000), so that Enti coming back are not hit by
    /// every retry at once and the delay never drops below half the exponential step.
    pub fn backoff(&self, attempts: u32, jitter: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(40);
        let base_ms = self.backoff_base.num_milliseconds().max(1);
        let max_ms = self.backoff_max.num_milliseconds().max(base_ms);
        let d = base_ms.saturating_mul(1i64 << exp).min(max_ms);
        let half = d / 2;
        let extra = (d - half).saturating_mul(i64::from(jitter.min(1000))) / 1000;
        Duration::milliseconds(half + extra)
    }

    /// After the `attempts`-th failure at `now` of a delivery window started at
    /// `window_start`: the next attempt, or [`Retry::GiveUp`] when it would fall after the
    /// horizon.
    pub fn after_failure(
        &self,
        attempts: u32,
        window_start: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: u32,
    ) -> Retry {
        // an instant past the calendar's end is "never"
        let deadline = window_start.checked_add_signed(self.horizon);
        if deadline.is_some_and(|d| now >= d) {
            return Retry::GiveUp;
        }
        let next = now
            .checked_add_signed(self.backoff(attempts, jitter))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // the last attempt happens at the horizon, not never
        Retry::At(deadline.map_or(next, |d| next.min(d)))
    }
}

/// A breaker's state as reported (metrics: 0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is allowed; its outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// Gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// The circuit breaker of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
    probing: bool,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    /// A closed breaker that opens after `policy.breaker_failures` consecutive failures.
    pub fn new(policy: &DeliveryPolicy) -> Self {
        Breaker {
            failures: 0,
            open_until: None,
            probing: false,
            threshold: policy.breaker_failures.max(1),
            cool_down: policy.breaker_open,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a call be made at `now`? In half-open state only one (the probe) until its outcome
    /// is recorded.
    pub fn admit(&mut self, now: DateTime<Utc>) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                if self.probing {
                    false
                } else {
                    self.probing = true;
                    true
                }
            }
        }
    }

    /// When an open breaker lets the next probe through (`None` when closed).
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        self.open_until
    }

    /// The endpoint answered (whatever the business outcome): closes the breaker.
    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.probing = false;
    }

    /// The endpoint could not be reached or failed (connection, timeout, 5xx) at `now`:
    /// counts; opens after the threshold; a failed probe opens it again.
    pub fn failure(&mut self, now: DateTime<Utc>) {
        self.failures = self.failures.saturating_add(1);
        let was_probe = self.probing;
        self.probing = false;
        if was_probe || self.failures >= self.threshold {
            self.open_until = Some(
                now.checked_add_signed(self.cool_down)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            );
        }
    }
}

/// The ordering rule: of the open notifications of an Ente, in id order, those that may be
/// tried at `now` — the first open one of each position, when it is due (a later notification
/// of a position waits for the earlier one to be delivered or to fail).
pub fn deliverable(open: &[Notification], now: DateTime<Utc>) -> Vec<&Notification> {
    let mut seen = std::collections::HashSet::new();
    let mut sorted: Vec<&Notification> = open.iter().filter(|n| n.state.is_open()).collect();
    sorted.sort_by_key(|n| n.id);
    sorted
        .into_iter()
        .filter(|n| seen.insert(n.position.as_str()))
        .filter(|n| n.is_due(now))
        .collect()
}

/// The earliest instant at which one of `open` becomes due (for the connector's timer).
pub fn next_due(open: &[Notification]) -> Option<DateTime<Utc>> {
    open.iter()
        .filter(|n| n.state.is_open())
        .filter_map(|n| n.next_attempt_at)
        .min()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_flow_notification_names_its_revision_and_orders_by_flow() {
        let f = FlowRef {
            flow_id: "2026-07-04PSP:X-1".into(),
            sender: "PSPXITXXXXX".into(),
            revision: 3,
        };
        let n = Notification::of_flow(7, "80001234568", &f, t0());
        assert_eq!(n.kind, NotificationKind::ReportingFlow);
        assert_eq!(n.position, "fdr:2026-07-04PSP:X-1");
        assert_eq!(n.flow_ref(), Some(f));
        assert!(n.is_due(t0()));
        let r = Notification::of_receipt(8, "80001234568", "r", "n", "p", t0());
        assert_eq!(r.flow_ref(), None, "a receipt names no flow");
    }

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            backoff_base: Duration::seconds(10),
            backoff_max: Duration::minutes(10),
            horizon: Duration::days(14),
            breaker_failures: 3,
            breaker_open: Duration::seconds(30),
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitter_stays_in_the_upper_half() {
        let p = policy();
        assert_eq!(p.backoff(1, 0), Duration::seconds(5));
        assert_eq!(p.backoff(1, 1000), Duration::seconds(10));
        assert_eq!(p.backoff(2, 1000), Duration::seconds(20));
        assert_eq!(p.backoff(3, 500), Duration::seconds(30)); // 40 s: 20 + 10
        assert_eq!(p.backoff(20, 1000), Duration::minutes(10));
        assert_eq!(p.backoff(u32::MAX, 1000), Duration::minutes(10));
        for a in 1..30 {
            assert!(p.backoff(a + 1, 1000) >= p.backoff(a, 1000));
        }
        // an out-of-range jitter is clamped, not trusted
        assert_eq!(p.backoff(1, 7000), Duration::seconds(10));
        assert_eq!(p.backoff(1, 1), Duration::milliseconds(5005));
    }

    #[test]
    fn a_failure_past_the_horizon_is_final_and_the_last_retry_lands_on_it() {
        let p = policy();
        let start = t0();
        assert_eq!(
            p.after_failure(1, start, start, 0),
            Retry::At(start + Duration::seconds(5))
        );
        let near = start + Duration::days(14) - Duration::seconds(1);
        assert_eq!(
            p.after_failure(30, start, near, 1000),
            Retry::At(start + Duration::days(14))
        );
        assert_eq!(
            p.after_failure(31, start, start + Duration::days(14), 300),
            Retry::GiveUp
        );
    }

    #[test]
    fn a_notification_goes_pending_retrying_failed_and_back_on_resend() {
        let p = policy();
        let n = Notification::of_receipt(7, "80001234568", "r1", "312000000000000001", "P1", t0());
        assert!(n.is_due(t0()));
        let f = n.failed(&p, "HTTP 503", t0(), 0);
        assert_eq!(f.state, NotificationState::Retrying);
        assert_eq!(f.attempts, 1);
        assert_eq!(f.last_error.as_deref(), Some("HTTP 503"));
        assert!(!f.is_due(t0()));
        assert!(f.is_due(t0() + Duration::seconds(5)));
        let dead = f.failed(&p, "HTTP 503", t0() + Duration::days(15), 0);
        assert_eq!(dead.state, NotificationState::Failed);
        assert!(!dead.is_due(t0() + Duration::days(30)));
        let again = dead.resent(t0() + Duration::days(20));
        assert_eq!(again.state, NotificationState::Pending);
        assert_eq!(again.window_start, t0() + Duration::days(20));
        assert_eq!(again.attempts, 2, "attempts are history, kept");
        // a failure right after the resend is not final: the window is new
        let r = again.failed(&p, "x", t0() + Duration::days(20), 0);
        assert_eq!(r.state, NotificationState::Retrying);
        let ok = r.delivered(t0() + Duration::days(21));
        assert_eq!(ok.state, NotificationState::Delivered);
        assert_eq!(ok.attempts, 4);
        assert!(!ok.is_due(t0() + Duration::days(30)));
    }

    #[test]
    fn breaker_opens_after_the_threshold_probes_once_and_closes_on_success() {
        let p = policy();
        let mut b = Breaker::new(&p);
        let now = t0();
        assert_eq!(b.state(now), BreakerState::Closed);
        b.failure(now);
        b.failure(now);
        assert!(b.admit(now), "below the threshold");
        b.failure(now);
        assert_eq!(b.state(now), BreakerState::Open);
        assert!(!b.admit(now + Duration::seconds(29)));
        let later = now + Duration::seconds(30);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.admit(later), "one probe");
        assert!(!b.admit(later), "only one probe at a time");
        b.failure(later);
        assert_eq!(
            b.state(later),
            BreakerState::Open,
            "a failed probe opens it again"
        );
        let probe = later + Duration::seconds(30);
        assert!(b.admit(probe));
        b.success();
        assert_eq!(b.state(probe), BreakerState::Closed);
        assert!(b.admit(probe) && b.admit(probe));
        assert_eq!(BreakerState::HalfOpen.gauge(), 2.0);
    }

    #[test]
    fn one_position_at_a_time_in_id_order_and_only_when_due() {
        let p = policy();
        let now = t0();
        let mk =
            |id, pos: &str| Notification::of_receipt(id, "o", &format!("r{id}"), "n", pos, now);
        let waiting = mk(1, "A").failed(&p, "down", now, 0); // due in 5 s
        let open = vec![mk(4, "B"), mk(2, "A"), waiting, mk(3, "B"), mk(5, "C")];
        let ids: Vec<u64> = deliverable(&open, now).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![3, 5], "A waits for 1; B starts with 3; C is free");
        let ids: Vec<u64> = deliverable(&open, now + Duration::seconds(6))
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, vec![1, 3, 5]);
        assert_eq!(next_due(&open), Some(now));
        assert_eq!(next_due(&open[2..3]), Some(now + Duration::seconds(5)));
    }

    #[test]
    fn a_revocation_follows_a_notified_payment_once() {
        let pay = Notification::of_receipt(7, "80001234568", "r-1", "3120", "IUPD-1", t0());
        assert_eq!(
            revocation_target(&[]),
            None,
            "never notified: nothing to revoke"
        );
        assert_eq!(revocation_target(std::slice::from_ref(&pay)), Some(&pay));
        let rev = Notification::revocation_of(&pay, 9, t0());
        assert_eq!(rev.kind, NotificationKind::PaymentRevocation);
        assert_eq!(
            (rev.receipt_id.as_str(), rev.position.as_str(), rev.state),
            ("r-1", "IUPD-1", NotificationState::Pending),
            "same receipt and ordering key: it leaves after the payment"
        );
        assert!(rev.id > pay.id);
        assert_eq!(
            revocation_target(&[pay, rev]),
            None,
            "one revocation per receipt"
        );
    }
}
