//! `ReceiptRecovery` (issue 14, "blindatura"): the part of our channel to pagoPA that fetches
//! receipts that never came through paSendRT from the biz-events API
//! (`biz_events.json`: `GET /organizations/{cf}/receipts/{iur}[/paymentoptions/{iuv}]`, header
//! `Ocp-Apim-Subscription-Key`), throttled by pagoPA to about ten calls an hour.
//!
//! Every `[biz_events] poll_secs` one pass:
//! 1. **feeds** the queue (`storage::recovery`) with the payments in progress (paGetPayment
//!    answered) that got no receipt within `delay_secs` (the reconciliation worker feeds the
//!    flow rows `IUV_NO_RT`; operators feed one notice through `POST …/receipts/recover`);
//! 2. **works** the due WAITING entries, the longest waiting first: an entry whose notice
//!    already has a receipt is RECOVERED without a call; otherwise, while the sliding-hour quota
//!    (`calls_per_hour`, calls recorded durably before they are made) allows, it calls the API
//!    and records the outcome with the domain's rule (`RecoveryEntry::after`: backoff, bounded
//!    attempts, NOT_FOUND / FAILED at the end — never a loop).
//!
//! A receipt found is read by `messages::wire::biz_events::decode_receipt` and stored through
//! the paSendRT path's storage function (`Store::apply_receipt`: same idempotency on
//! `receiptId`, same position update, anomalies, Ente outbox notification and e-mail in one unit
//! of work), flushed, then `receipt.stored` is published as the station does. It is flagged
//! `recovered`, its raw document the API's JSON byte-exact.
//!
//! Health: `/health/actors` kind `ReceiptRecovery`, backlog = WAITING entries due. Metrics:
//! `mpay_receipt_recovery_calls_total{outcome}`, `mpay_receipt_recovery_waiting`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use mpay_messages::domain::recovery::{CallOutcome, RecoveryEntry, RecoveryPolicy, RecoveryReason};
use mpay_messages::domain::ReceiptDisposition;
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use mpay_storage::{DurabilityPoint, PositionRepository, ReceiptRepository, Store, StoredReceipt};

use crate::bus::{Bus, Event};
use crate::health::{ActorState, HealthRegistry};
use crate::watchdog::{ActorHandle, Watchdog};

/// Actor kind in `/health/actors`.
pub const KIND: &str = "ReceiptRecovery";

/// The `operation` of a recovered receipt.
pub const OPERATION: &str = "getOrganizationReceipt";

/// How far back the payments in progress are looked at (older ones were never queued: they
/// predate the feature or were abandoned long ago).
const LOOKBACK_DAYS: i64 = 7;

/// How to reach the biz-events API.
#[derive(Clone)]
pub struct BizEventsApi {
    /// Base URL up to the version (`https://api.platform.pagopa.it/bizevents/service/v1`).
    pub base_url: String,
    /// `Ocp-Apim-Subscription-Key` (a secret: never logged).
    pub subscription_key: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for BizEventsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BizEventsApi")
            .field("base_url", &self.base_url)
            .field(
                "subscription_key",
                &self.subscription_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// What one call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 200: the body, byte-exact.
    Receipt(Vec<u8>),
    /// 404.
    NotFound,
    /// Timeout, connection failure, 429, 5xx.
    Retryable(String),
    /// 401, 403, 422 and other answers another call will not change.
    Permanent(String),
}

impl BizEventsApi {
    /// The URL of the receipt of `iuv` of `org`: with the IUR (a flow row names it, = the
    /// payment token) `…/receipts/{iur}/paymentoptions/{iuv}`; without it `…/receipts/{iuv}`
    /// (the token of a payment whose receipt never came is not known to us).
    ///
    /// # Errors
    /// The base URL does not parse or cannot take path segments.
    pub fn receipt_url(&self, org: &str, iuv: &str, iur: Option<&str>) -> Result<String, String> {
        let base = self.base_url.trim().trim_end_matches('/');
        let mut url =
            reqwest::Url::parse(base).map_err(|e| format!("[biz_events] base_url: {e}"))?;
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| "[biz_events] base_url cannot take a path".to_string())?;
            segs.extend(["organizations", org.trim(), "receipts"]);
            match iur {
                Some(iur) => {
                    segs.extend([iur.trim(), "paymentoptions", iuv.trim()]);
                }
                None => {
                    segs.push(iuv.trim());
                }
            }
        }
        Ok(url.to_string())
    }

    /// Calls `getOrganizationReceipt` once.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        org: &str,
        iuv: &str,
        iur: Option<&str>,
    ) -> Fetched {
        let url = match self.receipt_url(org, iuv, iur) {
            Ok(u) => u,
            Err(e) => return Fetched::Permanent(e),
        };
        let mut req = client
            .get(url)
            .timeout(self.timeout)
            .header("Accept", "application/json");
        if let Some(k) = &self.subscription_key {
            req = req.header("Ocp-Apim-Subscription-Key", k);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => return Fetched::Retryable(format!("biz-events unreachable: {e}")),
        };
        let status = res.status();
        match status.as_u16() {
            200 => match res.bytes().await {
                Ok(b) => Fetched::Receipt(b.to_vec()),
                Err(e) => Fetched::Retryable(format!("biz-events answer cut: {e}")),
            },
            404 => Fetched::NotFound,
            429 | 500..=599 => Fetched::Retryable(format!("biz-events answered HTTP {status}")),
            _ => Fetched::Permanent(format!("biz-events answered HTTP {status}")),
        }
    }
}

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// The API (`None`: nothing is called; the queue still fills).
    pub api: Option<BizEventsApi>,
    /// Quota, attempts, backoff.
    pub policy: RecoveryPolicy,
    /// A payment in progress without a receipt after this is queued.
    pub delay: chrono::Duration,
    /// How often a pass runs.
    pub poll: Duration,
}

/// The receipt a biz-events answer carries, as paSendRT's path stores it: flagged `recovered`,
/// the JSON kept byte-exact as its raw document.
///
/// # Errors
/// The body is not a receipt, or a receipt of another payment than the entry's.
pub fn recovered_receipt(
    entry: &RecoveryEntry,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<StoredReceipt, String> {
    let receipt =
        mpay_messages::wire::biz_events::decode_receipt(body).map_err(|e| e.to_string())?;
    if receipt.fiscal_code.trim() != entry.organization
        || receipt.creditor_reference_id.trim() != entry.iuv
    {
        return Err(format!(
            "biz-events answered the receipt of {} / {}, not of {} / {}",
            receipt.fiscal_code, receipt.creditor_reference_id, entry.organization, entry.iuv
        ));
    }
    Ok(StoredReceipt {
        receipt_id: receipt.receipt_id.clone(),
        organization: receipt.fiscal_code.clone(),
        id_pa: receipt.fiscal_code.clone(),
        id_station: String::new(),
        notice_number: receipt.notice_number.clone(),
        iupd: None,
        operation: OPERATION.to_string(),
        received_at: now,
        disposition: ReceiptDisposition::Applied,
        raw_xml: String::from_utf8_lossy(body).into_owned(),
        receipt,
        flags: Vec::new(),
        contact_email: None,
        recovered: true,
    })
}

/// The actor.
pub struct ReceiptRecoveryActor {
    inner: Arc<Inner>,
    running: bool,
}

struct Inner {
    store: Store,
    settings: RecoverySettings,
    health: HealthRegistry,
    bus: OnceLock<Arc<dyn Bus>>,
    client: reqwest::Client,
}

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct Pass;

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct PassDone;

impl Actor for ReceiptRecoveryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let h = &self.inner.health;
        h.register(KIND, "main", false);
        h.set_state(KIND, "main", ActorState::Running);
        h.heartbeat(KIND, "main", 0);
        ctx.notify(Pass);
        ctx.run_interval(self.inner.settings.poll, |_, ctx| ctx.notify(Pass));
    }
}

impl Supervised for ReceiptRecoveryActor {}

impl Handler<Pass> for ReceiptRecoveryActor {
    type Result = ();

    fn handle(&mut self, _: Pass, ctx: &mut Self::Context) {
        if self.running {
            return;
        }
        self.running = true;
        let inner = self.inner.clone();
        let me = ctx.address();
        actix::spawn(async move {
            match inner.pass(Utc::now()).await {
                Ok(waiting) => inner.health.heartbeat(KIND, "main", waiting),
                Err(e) => {
                    tracing::warn!(error = %e, "receipt recovery pass failed; again at the next one");
                    inner.health.error(KIND, "main", &e);
                }
            }
            me.do_send(PassDone);
        });
    }
}

impl Handler<PassDone> for ReceiptRecoveryActor {
    type Result = ();

    fn handle(&mut self, _: PassDone, _: &mut Self::Context) {
        self.running = false;
    }
}

impl Inner {
    /// One pass: feed, then work what the quota allows. Returns the WAITING entries still due.
    async fn pass(&self, now: DateTime<Utc>) -> Result<u64, String> {
        let delay = self.settings.delay;
        self.store
            .blocking(move |s| feed_stale_payments(s, now, delay))
            .await
            .map_err(|e| e.to_string())?;
        let due = self
            .store
            .blocking(move |s| s.recovery().and_then(|q| q.due(now)))
            .await
            .map_err(|e: mpay_storage::StorageError| e.to_string())?;
        let Some(api) = self.settings.api.clone() else {
            metrics::gauge!("mpay_receipt_recovery_waiting").set(due.len() as f64);
            return Ok(due.len() as u64);
        };
        let mut left = due.len() as u64;
        for entry in due {
            if !self.work(&api, &entry).await? {
                break;
            }
            left = left.saturating_sub(1);
        }
        metrics::gauge!("mpay_receipt_recovery_waiting").set(left as f64);
        Ok(left)
    }

    /// Works one entry; `false` when the quota stops the pass.
    async fn work(&self, api: &BizEventsApi, entry: &RecoveryEntry) -> Result<bool, String> {
        let now = Utc::now();
        // a receipt of its notice already stored (paSendRT came late): no call spent
        if let Some(id) = self.stored_receipt_of(entry).await? {
            let e = entry.clone();
            self.store
                .blocking(move |s| s.recovery()?.replace(&e, &e.already_stored(&id, now)))
                .await
                .map_err(|e: mpay_storage::StorageError| e.to_string())?;
            return Ok(true);
        }
        let per_hour = self.settings.policy.calls_per_hour;
        let gate = self
            .store
            .blocking(move |s| {
                let q = s.recovery()?;
                let at = q.next_call_at(now, per_hour)?;
                // recorded before the call: a call whose answer is lost still counts
                if at.is_some_and(|t| t <= now) {
                    q.record_call(now)?;
                    s.flush_blocking()?;
                }
                Ok::<_, mpay_storage::StorageError>(at)
            })
            .await
            .map_err(|e| e.to_string())?;
        // `None`: the quota is 0 (no calls at all); a later instant: the quota is spent
        if gate.is_none_or(|t| t > now) {
            return Ok(false);
        }
        let fetched = api
            .fetch(
                &self.client,
                &entry.organization,
                &entry.iuv,
                entry.iur.as_deref(),
            )
            .await;
        let outcome = match fetched {
            Fetched::Receipt(body) => match recovered_receipt(entry, &body, now) {
                Ok(stored) => self.store_receipt(stored).await,
                Err(why) => CallOutcome::Permanent(why),
            },
            Fetched::NotFound => CallOutcome::NotFound,
            Fetched::Retryable(why) => CallOutcome::Retryable(why),
            Fetched::Permanent(why) => CallOutcome::Permanent(why),
        };
        let label = match &outcome {
            CallOutcome::Stored { .. } => "recovered",
            CallOutcome::NotFound => "not_found",
            CallOutcome::Retryable(_) => "retry",
            CallOutcome::Permanent(_) => "failed",
        };
        metrics::counter!("mpay_receipt_recovery_calls_total", "outcome" => label).increment(1);
        tracing::info!(organization = %entry.organization, iuv = %entry.iuv, outcome = label, "receipt recovery call");
        let (old, policy) = (entry.clone(), self.settings.policy);
        let next = entry.after(outcome, Utc::now(), &policy);
        self.store
            .blocking(move |s| {
                s.recovery()?.replace(&old, &next)?;
                s.flush_blocking()
            })
            .await
            .map_err(|e: mpay_storage::StorageError| e.to_string())?;
        Ok(true)
    }

    /// The id of a receipt already stored for the entry's notice (or IUV), if any.
    async fn stored_receipt_of(&self, entry: &RecoveryEntry) -> Result<Option<String>, String> {
        let e = entry.clone();
        self.store
            .blocking(move |s| {
                let Ok(org) = OrgFiscalCode::parse(&e.organization) else {
                    return Ok(None);
                };
                let iupd = s
                    .recovery()
                    .and_then(|q| q.iupd_of_iuv(&e.organization, &e.iuv))
                    .map_err(mpay_storage::LedgerError::Storage)?;
                let nav = match (&e.notice_number, iupd) {
                    (Some(n), _) => n.clone(),
                    (None, Some(iupd)) => match s.ledger.get(&org, &iupd)? {
                        Some(p) => match p.payment_options.iter().find(|o| o.iuv.as_str() == e.iuv)
                        {
                            Some(o) => o.nav.as_str().to_string(),
                            None => return Ok(None),
                        },
                        None => return Ok(None),
                    },
                    (None, None) => return Ok(None),
                };
                let Ok(nav) = NoticeNumber::parse_unchecked(&nav) else {
                    return Ok(None);
                };
                Ok(s.ledger
                    .receipts_for_notice(&org, &nav)?
                    .into_iter()
                    .next()
                    .map(|r| r.receipt_id))
            })
            .await
            .map_err(|e: mpay_storage::LedgerError| e.to_string())
    }

    /// Stores a recovered receipt through the paSendRT path's storage function, flushes, tells.
    async fn store_receipt(&self, stored: StoredReceipt) -> CallOutcome {
        let (org, receipt_id) = (stored.organization.clone(), stored.receipt_id.clone());
        let disposition = match self.store.apply_receipt(stored).await {
            Ok(d) => d,
            Err(e) => return CallOutcome::Retryable(format!("receipt not stored: {e}")),
        };
        if let Err(e) = self.store.durability.commit(DurabilityPoint::Receipt).await {
            return CallOutcome::Retryable(format!("receipt flush failed: {e}"));
        }
        if let (Some(bus), false) = (self.bus.get(), disposition == ReceiptDisposition::Duplicate) {
            bus.publish(Event::ReceiptStored {
                organization: org,
                receipt_id: receipt_id.clone(),
            });
        }
        CallOutcome::Stored { receipt_id }
    }
}

/// Queues the payments whose paGetPayment was answered between `LOOKBACK_DAYS` and `delay` ago
/// and whose notice has no receipt. Returns how many entries were added.
fn feed_stale_payments(
    s: &Store,
    now: DateTime<Utc>,
    delay: chrono::Duration,
) -> Result<usize, mpay_storage::LedgerError> {
    let q = s.recovery().map_err(mpay_storage::LedgerError::Storage)?;
    let until = now - delay;
    let since = until - chrono::Duration::days(LOOKBACK_DAYS);
    let mut added = 0;
    let storage = mpay_storage::LedgerError::Storage;
    for (org, nav) in q.payments_begun(since, until).map_err(storage)? {
        let (Ok(o), Ok(n)) = (
            OrgFiscalCode::parse(&org),
            NoticeNumber::parse_unchecked(&nav),
        ) else {
            continue;
        };
        if !s.ledger.receipts_for_notice(&o, &n)?.is_empty() {
            continue;
        }
        if q.get(&org, n.iuv().as_str()).map_err(storage)?.is_some() {
            continue;
        }
        let entry = RecoveryEntry::new(
            &org,
            n.iuv().as_str(),
            Some(nav.clone()),
            None,
            RecoveryReason::PaymentInProgress,
            now,
        );
        if q.request(entry, now).map_err(storage)?.1 {
            added += 1;
        }
    }
    Ok(added)
}

/// The worker of a node: started under the watchdog. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptRecovery {
    inner: Arc<Inner>,
    handle: ActorHandle<ReceiptRecoveryActor>,
}

impl std::fmt::Debug for ReceiptRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptRecovery")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl ReceiptRecovery {
    /// Starts the worker under the watchdog (call before the watchdog starts).
    pub fn start(
        watchdog: &mut Watchdog,
        settings: RecoverySettings,
        store: &Store,
        health: &HealthRegistry,
    ) -> Self {
        let inner = Arc::new(Inner {
            store: store.clone(),
            settings,
            health: health.clone(),
            bus: OnceLock::new(),
            client: reqwest::Client::new(),
        });
        let i = inner.clone();
        let handle = watchdog.watch(KIND, "main", move || {
            let inner = i.clone();
            Supervisor::start(move |_| ReceiptRecoveryActor {
                inner,
                running: false,
            })
        });
        ReceiptRecovery { inner, handle }
    }

    /// Publishes `receipt.stored` on `bus` for every receipt recovered from now on.
    pub fn with_bus(self, bus: Arc<dyn Bus>) -> Self {
        let _ = self.inner.bus.set(bus);
        self
    }

    /// Asks for a pass now (an operator queued a notice).
    pub fn wake(&self) {
        let _ = self.handle.addr().try_send(Pass);
    }
}
