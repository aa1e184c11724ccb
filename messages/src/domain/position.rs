//! Debt-position behaviour (SPEC §6, GPD lifecycle): transitions, change rules, timers and
//! payability. Pure; `now` is always a parameter (the caller's clock).
//!
//! Status machine: `DRAFT → PUBLISHED → VALID → (PARTIALLY_PAID) → PAID → REPORTED`;
//! `INVALID` (cancelled), `EXPIRED` (after the last due day with `switchToExpired`).

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

use crate::position::{DebtPosition, OptionStatus, Origin, PaymentOption, PositionStatus};
use crate::time::{rome_date, rome_local_to_utc};

/// What an Ente or an operator asks of a stored position (REST, back-office).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replace its content (PUT).
    Update,
    /// Remove it: mpay's rule, DRAFT only (withdraw a published one with `Invalidate`).
    Delete,
    /// Remove it under GPD's rule: any position on which no money was collected (DRAFT,
    /// PUBLISHED, VALID, EXPIRED, INVALID). Per organization (`gpd_compat.delete_unpaid`).
    DeleteUnpaid,
    /// DRAFT → PUBLISHED/VALID.
    Publish,
    /// Cancel it (→ INVALID).
    Invalidate,
}

impl Action {
    /// The verb, as used in messages (`"update"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Delete | Self::DeleteUnpaid => "delete",
            Self::Publish => "publish",
            Self::Invalidate => "invalidate",
        }
    }
}

/// Why an [`Action`] is refused. Mapped once per surface (REST: 409 problem JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// The action is not allowed in the position's current status.
    #[error("cannot {} a debt position in status {}: {}", .action.as_str(), .status.as_str(), state_hint(*.action, *.status))]
    InvalidState {
        /// What was attempted.
        action: Action,
        /// Current status.
        status: PositionStatus,
    },
    /// The position is an MPay Archivio Carichi document: it changes only through that interface
    /// (its document is rebuilt from the archive's own record).
    #[error("this debt position is an MPay Archivio Carichi document: change it with variazioneEC, cancellazioneEC or discaricoEC")]
    ManagedByArchive,
    /// A notice of the position has a payment in progress (pagoPA asked for its payment data
    /// with paGetPayment and its receipt has not come yet): its notice number and amounts may
    /// not change, or the receipt would find no notice and the citizen could pay twice.
    #[error("notice {nav} has a payment in progress (pagoPA asked for its payment data; its receipt is awaited until {until}): its notice number and amounts cannot change or go until the receipt arrives or that time passes")]
    PaymentInProgress {
        /// The notice being paid.
        nav: String,
        /// When the payment stops counting as in progress (token expiry).
        until: DateTime<Utc>,
    },
}

/// How long a payment counts as in progress after pagoPA asked for the notice's payment data
/// (paGetPayment): the longest validity of a payment token pagoPA issues (30 minutes,
/// `activatePaymentNotice` `expirationTime` at most 1 800 000 ms).
pub fn payment_in_progress_window() -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(30)
}

/// The sentence after "cannot X a debt position in status Y:" — what the Ente can do instead.
fn state_hint(action: Action, status: PositionStatus) -> &'static str {
    use PositionStatus as S;
    match (action, status) {
        (_, S::PartiallyPaid | S::Paid | S::Reported) => "money has been collected on it",
        (Action::Delete, S::Published | S::Valid | S::Expired) => {
            "only DRAFT positions can be deleted; withdraw a published one with POST …/{iupd}/invalidate"
        }
        (Action::Delete, S::Invalid) => {
            "it was already invalidated (cancelled) and is kept for the record; it needs nothing more"
        }
        (Action::Delete, _) => "only DRAFT positions can be deleted",
        (Action::Publish, _) => "only DRAFT positions can be published",
        (Action::Invalidate, S::Invalid) => "it is already cancelled",
        (Action::Invalidate, _) => {
            "only PUBLISHED, VALID or EXPIRED positions can be invalidated; delete a DRAFT instead"
        }
        (Action::Update, S::Invalid) => "it is cancelled",
        (Action::Update, _) => "it cannot change any more",
        (Action::DeleteUnpaid, _) => "money has been collected on it",
    }
}

/// Kinds of timed transitions (stored by the ledger's `timers` index, applied by the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// PUBLISHED → VALID at the validity date.
    Validate,
    /// → EXPIRED after the last due day (switchToExpired).
    Expire,
}

/// Why a notice cannot be paid now (SPEC §5.7 reference mapping, §6 rules 5–6). The station
/// answers the `PAA_*` fault of [`crate::wire::faults::FaultCode::from`]; the portal shows its
/// Italian text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotPayable {
    /// No option with that notice number.
    UnknownNotice,
    /// Still a DRAFT.
    NotPublished,
    /// Published with a future validity date.
    NotYetValid,
    /// Cancelled (INVALID).
    Cancelled,
    /// The position EXPIRED.
    Expired,
    /// This option's due day has passed and the position has `switchToExpired`.
    PastDueDate,
    /// The position is paid (PAID, REPORTED).
    PositionPaid,
    /// An installment is paid: the single solution is no longer payable.
    InstallmentPaid,
    /// This option is already paid.
    NoticePaid,
}

impl NotPayable {
    /// A short English description (fault descriptions, logs).
    pub fn description(self) -> &'static str {
        match self {
            Self::UnknownNotice => "notice not found",
            Self::NotPublished => "position not published",
            Self::NotYetValid => "position not yet valid",
            Self::Cancelled => "position cancelled",
            Self::Expired => "position expired",
            Self::PastDueDate => "past its due date",
            Self::PositionPaid => "position already paid",
            Self::InstallmentPaid => {
                "an installment is paid: the single solution is no longer payable"
            }
            Self::NoticePaid => "notice already paid",
        }
    }

    /// The message a citizen reads (portal, Italian).
    pub fn message_it(self) -> &'static str {
        match self {
            Self::UnknownNotice | Self::NotPublished | Self::NotYetValid => {
                "Avviso non trovato: controlla il numero dell'avviso e l'ente creditore."
            }
            Self::Cancelled => "L'avviso è stato annullato dall'ente creditore.",
            Self::Expired | Self::PastDueDate => "L'avviso è scaduto e non può più essere pagato.",
            Self::PositionPaid | Self::NoticePaid => "L'avviso risulta già pagato.",
            Self::InstallmentPaid => {
                "È già stata pagata una rata: la soluzione unica non è più pagabile."
            }
        }
    }
}

/// The status of one notice as the organization's side shows it (GPD payment-options API
/// `POI_*`/`PO_*`), from [`DebtPosition::notice_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeStatus {
    /// Payable.
    Unpaid,
    /// Paid.
    Paid,
    /// Past its due day and no longer payable (`switchToExpired`, or the position EXPIRED).
    ExpiredNotPayable,
    /// Past its due day and still payable.
    ExpiredUnpaid,
    /// Cancelled, or another option/plan was paid instead.
    Invalid,
}

/// What is known of a payment beyond its amount (a receipt, or what an organization declares
/// of a payment made outside pagoPA). Empty fields are left as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFacts {
    /// When the citizen paid (receipt `paymentDateTime`); `None` = when it was processed.
    pub payment_date: Option<DateTime<Utc>>,
    /// Payment method.
    pub payment_method: Option<String>,
    /// PSP name.
    pub psp_company: Option<String>,
    /// Receipt id.
    pub id_receipt: Option<String>,
    /// Fee paid by the citizen, cents.
    pub fee: Option<crate::Amount>,
}

impl PaymentFacts {
    /// The facts a pagoPA receipt carries: `paymentDateTime` (an xs:dateTime, read in
    /// Europe/Rome when it has no offset; unreadable = unknown, the receipt is still applied),
    /// `paymentMethod`, `PSPCompanyName`, `receiptId`, `fee`.
    pub fn of_receipt(r: &crate::wire::pafornode::Receipt) -> Self {
        PaymentFacts {
            payment_date: r
                .payment_date_time
                .as_deref()
                .and_then(|t| crate::time::parse_api_datetime(t).ok()),
            payment_method: r.payment_method.clone(),
            psp_company: Some(r.psp_company_name.clone()).filter(|s| !s.trim().is_empty()),
            id_receipt: Some(r.receipt_id.trim().to_string()),
            fee: r.fee,
        }
    }
}

/// Why an option cannot be marked paid outside pagoPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaidOutsideError {
    /// No option with that notice number.
    #[error("no payment option with this notice number")]
    UnknownNotice,
    /// The option (or the position) is already paid.
    #[error("the payment option is already paid")]
    AlreadyPaid,
    /// Cancelled, or another option or plan was paid.
    #[error("the payment option cannot be paid (position {}): cancelled, or another option or plan was paid", .0.as_str())]
    NotPayable(PositionStatus),
}

/// Why a transfer cannot be marked reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// No option with that IUV or notice number.
    #[error("no payment option with this IUV")]
    UnknownNotice,
    /// No transfer with that id.
    #[error("the payment option has no transfer with this idTransfer")]
    UnknownTransfer,
    /// The option is not paid.
    #[error("the payment option is not paid: only a paid transfer can be reported")]
    NotPaid,
}

/// Why a notification fee cannot be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// No option with that IUV or notice number.
    #[error("no payment option with this IUV")]
    UnknownNotice,
    /// Paid or cancelled.
    #[error("the notification fee cannot change: the option or its position (status {}) is paid or cancelled", .0.as_str())]
    NotChangeable(PositionStatus),
    /// No transfer to the organization itself to carry the fee.
    #[error("the payment option has no transfer to the organization itself to carry the fee")]
    NoOwnTransfer,
    /// The amount would overflow or go negative.
    #[error("the notification fee makes an amount out of range")]
    Amount,
}

/// The first instant after the business day `day` (00:00 of the next day, Europe/Rome): a
/// notice due today is payable all day (SPEC §6 rule 6, trap list). `None` past year 262143.
pub fn expiry_instant(day: NaiveDate) -> Option<DateTime<Utc>> {
    let next = day.checked_add_days(Days::new(1))?;
    rome_local_to_utc(next.and_time(NaiveTime::MIN))
}

/// Whether the business day `day` is over at `now` (Europe/Rome).
pub fn day_is_over(day: NaiveDate, now: DateTime<Utc>) -> bool {
    day < rome_date(now)
}

impl DebtPosition {
    /// Whether this position may become `new` (`None`: deleted) given the payments in progress
    /// on its notices: `in_progress(nav)` answers until when a payment of notice `nav` counts as
    /// in progress (recorded when paGetPayment answered), `None` if none. A notice whose payment
    /// is in progress at `now` must still be in `new` with the same amount, notification fee
    /// and transfer amounts: the receipt will report that notice and that money.
    ///
    /// # Errors
    /// [`PositionError::PaymentInProgress`] naming the first such notice that would change.
    pub fn may_replace_with(
        &self,
        new: Option<&DebtPosition>,
        in_progress: &dyn Fn(&crate::NoticeNumber) -> Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), PositionError> {
        let amounts = |o: &PaymentOption| {
            (
                o.amount,
                o.notification_fee,
                o.transfers
                    .iter()
                    .map(|t| (t.id_transfer, t.amount))
                    .collect::<Vec<_>>(),
            )
        };
        for o in &self.payment_options {
            let Some(until) = in_progress(&o.nav).filter(|until| *until > now) else {
                continue;
            };
            let kept = new
                .and_then(|n| n.payment_options.iter().find(|x| x.nav == o.nav))
                .is_some_and(|x| amounts(x) == amounts(o));
            if !kept {
                return Err(PositionError::PaymentInProgress {
                    nav: o.nav.to_string(),
                    until,
                });
            }
        }
        Ok(())
    }

    /// Whether `action` is allowed now, by status and by origin. REST and back-office call
    /// this before any change; the Archivio Carichi interface changes its own documents through
    /// its own rules and does not.
    ///
    /// Errors: [`PositionError::ManagedByArchive`] for an Archivio Carichi document that is not
    /// cancelled; [`PositionError::InvalidState`] when the status forbids it.
    pub fn may(&self, action: Action) -> Result<(), PositionError> {
        use PositionStatus as S;
        if self.origin == Origin::ArchivioCarichi && self.status != S::Invalid {
            return Err(PositionError::ManagedByArchive);
        }
        let allowed = match action {
            Action::Update => !(self.status.has_payments() || self.status == S::Invalid),
            Action::Delete | Action::Publish => self.status == S::Draft,
            Action::DeleteUnpaid => !self.status.has_payments(),
            Action::Invalidate => matches!(self.status, S::Published | S::Valid | S::Expired),
        };
        if allowed {
            Ok(())
        } else {
            Err(PositionError::InvalidState {
                action,
                status: self.status,
            })
        }
    }

    /// DRAFT → VALID, or PUBLISHED until a future `validity_date`. Sets `publish_date`.
    /// Errors: see [`Self::may`].
    pub fn publish(&mut self, now: DateTime<Utc>) -> Result<(), PositionError> {
        self.may(Action::Publish)?;
        self.mark_published(now);
        Ok(())
    }

    /// Sets the publication state without the DRAFT check (a position being created with
    /// `toPublish`, a feed row, a PSP demand): VALID, or PUBLISHED until `validity_date`.
    pub fn mark_published(&mut self, now: DateTime<Utc>) {
        self.publish_date = Some(now);
        self.status = match self.validity_date {
            Some(v) if v > now => PositionStatus::Published,
            _ => PositionStatus::Valid,
        };
        self.last_updated_date = now;
    }

    /// PUBLISHED/VALID/EXPIRED → INVALID (the Node then gets `PAA_PAGAMENTO_ANNULLATO`).
    /// Errors: see [`Self::may`].
    pub fn invalidate(&mut self, now: DateTime<Utc>) -> Result<(), PositionError> {
        self.may(Action::Invalidate)?;
        self.status = PositionStatus::Invalid;
        self.last_updated_date = now;
        Ok(())
    }

    /// When the position must change by itself: the validity date of a PUBLISHED position, and
    /// the expiry instant (after the last due day, Europe/Rome) of a VALID or PUBLISHED one with
    /// `switchToExpired`. The ledger indexes these; [`Self::apply_timers`] applies them.
    pub fn timers(&self) -> Vec<(DateTime<Utc>, TimerKind)> {
        let mut t = Vec::new();
        if self.status == PositionStatus::Published {
            if let Some(v) = self.validity_date {
                t.push((v, TimerKind::Validate));
            }
        }
        if self.switch_to_expired
            && matches!(
                self.status,
                PositionStatus::Valid | PositionStatus::Published
            )
        {
            if let Some(at) = self.expiry() {
                t.push((at, TimerKind::Expire));
            }
        }
        t
    }

    /// The instant the position expires (`switchToExpired`): the first instant after its last
    /// due day. `None` without options or `switchToExpired`.
    pub fn expiry(&self) -> Option<DateTime<Utc>> {
        if !self.switch_to_expired {
            return None;
        }
        self.last_due_day().and_then(expiry_instant)
    }

    /// Applies the timed transitions due at `now`: PUBLISHED → VALID from the validity date;
    /// VALID or PUBLISHED → EXPIRED from [`Self::expiry`]. Answers whether the status changed.
    pub fn apply_timers(&mut self, now: DateTime<Utc>) -> bool {
        let before = self.status;
        if self.status == PositionStatus::Published && self.validity_date.is_none_or(|v| v <= now) {
            self.status = PositionStatus::Valid;
        }
        if matches!(
            self.status,
            PositionStatus::Valid | PositionStatus::Published
        ) && self.expiry().is_some_and(|at| at <= now)
        {
            self.status = PositionStatus::Expired;
        }
        if self.status != before {
            self.last_updated_date = now;
            true
        } else {
            false
        }
    }

    /// The option with notice number `nav` if it can be paid at `now`, or why not. A position
    /// PUBLISHED with a validity date already reached is payable even before the scheduler
    /// marks it VALID; an option past its due day (Europe/Rome; payable all day) is refused only
    /// with `switchToExpired` — overdue debts stay payable otherwise (DESIGN §3).
    pub fn payable(&self, nav: &str, now: DateTime<Utc>) -> Result<&PaymentOption, NotPayable> {
        use PositionStatus as S;
        let o = self
            .payment_options
            .iter()
            .find(|o| o.nav.as_str() == nav)
            .ok_or(NotPayable::UnknownNotice)?;
        match self.status {
            S::Draft => return Err(NotPayable::NotPublished),
            S::Published if self.validity_date.is_some_and(|v| v > now) => {
                return Err(NotPayable::NotYetValid)
            }
            S::Invalid => return Err(NotPayable::Cancelled),
            S::Expired => return Err(NotPayable::Expired),
            S::Paid | S::Reported => return Err(NotPayable::PositionPaid),
            S::PartiallyPaid if !o.is_partial_payment => return Err(NotPayable::InstallmentPaid),
            S::PartiallyPaid if self.other_plan_paid(o) => return Err(NotPayable::InstallmentPaid),
            S::Published | S::Valid | S::PartiallyPaid => {}
        }
        if o.status != OptionStatus::PoUnpaid {
            return Err(NotPayable::NoticePaid);
        }
        if self.switch_to_expired && day_is_over(o.due_day(), now) {
            return Err(NotPayable::PastDueDate);
        }
        Ok(o)
    }

    /// Whether an installment of a plan other than `o`'s has been paid (the debtor chose that
    /// plan: `o` is no longer payable).
    pub fn other_plan_paid(&self, o: &PaymentOption) -> bool {
        let own = o.plan_key();
        self.payment_options.iter().any(|x| {
            x.is_partial_payment && x.status != OptionStatus::PoUnpaid && x.plan_key() != own
        })
    }

    /// Whether option `o` was set aside because the debtor paid another option or plan: the
    /// single solution once an installment is paid (position PARTIALLY_PAID), or an installment
    /// of a plan other than the one paid ([`Self::other_plan_paid`]). GPD answers 404 for it.
    pub fn superseded(&self, o: &PaymentOption) -> bool {
        (self.status == PositionStatus::PartiallyPaid && !o.is_partial_payment)
            || self.other_plan_paid(o)
    }

    /// The status of notice `nav` as the organization's side shows it (GPD payment-options API,
    /// REST): derived from [`Self::payable`], the station's rule, so that the two always agree.
    /// `None` when no option has that notice number or the position is still a DRAFT (not
    /// visible outside the organization).
    pub fn notice_status(&self, nav: &str, now: DateTime<Utc>) -> Option<NoticeStatus> {
        let o = self
            .payment_options
            .iter()
            .find(|o| o.nav.as_str() == nav)?;
        if o.status != OptionStatus::PoUnpaid {
            return Some(NoticeStatus::Paid);
        }
        Some(match self.payable(nav, now) {
            Ok(_) if day_is_over(o.due_day(), now) => NoticeStatus::ExpiredUnpaid,
            Ok(_) | Err(NotPayable::NotYetValid) => NoticeStatus::Unpaid,
            Err(NotPayable::NotPublished | NotPayable::UnknownNotice) => return None,
            Err(NotPayable::Expired | NotPayable::PastDueDate) => NoticeStatus::ExpiredNotPayable,
            Err(NotPayable::NoticePaid) => NoticeStatus::Paid,
            Err(NotPayable::Cancelled | NotPayable::PositionPaid | NotPayable::InstallmentPaid) => {
                NoticeStatus::Invalid
            }
        })
    }

    /// [`Self::notice_status`], except that a DRAFT position's options are shown as they will
    /// be once published (unpaid, or expired by their due day), as GPD's payment-options API
    /// shows drafts. Per organization (`gpd_compat.draft_payment_options`); the station never
    /// serves a DRAFT either way.
    pub fn notice_status_with_drafts(&self, nav: &str, now: DateTime<Utc>) -> Option<NoticeStatus> {
        if self.status != PositionStatus::Draft {
            return self.notice_status(nav, now);
        }
        let mut published = self.clone();
        published.status = PositionStatus::Published;
        published.validity_date = None;
        published.notice_status(nav, now)
    }

    /// Whether the position can be reached only through the REST API: its organization's code,
    /// or a notice number or IUV of one of its options, is in GPD's looser form (organizations
    /// with `gpd_compat.free_identifiers`, see [`crate::ids::gpd`]). Such a position is never a
    /// pagoPA notice: the station answers the Node that the notice is unknown.
    pub fn rest_only(&self) -> bool {
        !self.organization_fiscal_code.is_pagopa()
            || self
                .payment_options
                .iter()
                .any(|o| !o.nav.is_pagopa() || !o.iuv.is_pagopa())
            || self.payment_options.iter().any(|o| {
                o.transfers.iter().any(|t| {
                    t.organization_fiscal_code
                        .as_ref()
                        .is_some_and(|c| !c.is_pagopa())
                })
            })
    }

    /// Marks option `nav` paid outside pagoPA (declared by the organization: a payment at its
    /// counter, MPay's "discarico"), with what the organization says of it. The position becomes
    /// PAID or PARTIALLY_PAID as with a receipt ([`Self::apply_payment_with`]).
    ///
    /// Errors: [`PaidOutsideError::UnknownNotice`]; [`PaidOutsideError::AlreadyPaid`] when the
    /// option or the position is already settled; [`PaidOutsideError::NotPayable`] when the
    /// position is cancelled or another plan was chosen.
    pub fn pay_outside(
        &mut self,
        nav: &str,
        payment: PaymentFacts,
        now: DateTime<Utc>,
    ) -> Result<(), PaidOutsideError> {
        let o = self
            .payment_options
            .iter()
            .find(|o| o.nav.as_str() == nav)
            .ok_or(PaidOutsideError::UnknownNotice)?;
        if o.status != OptionStatus::PoUnpaid
            || matches!(self.status, PositionStatus::Paid | PositionStatus::Reported)
        {
            return Err(PaidOutsideError::AlreadyPaid);
        }
        let superseded = (self.status == PositionStatus::PartiallyPaid && !o.is_partial_payment)
            || self.other_plan_paid(o);
        if self.status == PositionStatus::Invalid || superseded {
            return Err(PaidOutsideError::NotPayable(self.status));
        }
        let amount = o.amount;
        let effect = self
            .apply_payment_with(nav, amount, &payment, now)
            .ok_or(PaidOutsideError::UnknownNotice)?;
        if let Some(mut p) = effect.position {
            if let Some(o) = p.payment_options.iter_mut().find(|o| o.nav.as_str() == nav) {
                o.details.paid_outside = true;
            }
            p.revision = self.revision;
            *self = p;
        }
        Ok(())
    }

    /// Marks transfer `id_transfer` of the option with IUV or notice number `iuv_or_nav` as
    /// reported (found in a reporting flow); when every transfer of a paid option is reported
    /// the option becomes `PO_REPORTED`, and when every paid option is, the position `REPORTED`.
    ///
    /// Errors: [`ReportError::UnknownNotice`], [`ReportError::UnknownTransfer`],
    /// [`ReportError::NotPaid`] (only a paid option can be reported).
    pub fn report_transfer(
        &mut self,
        iuv_or_nav: &str,
        id_transfer: u8,
        flow: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), ReportError> {
        let o = self
            .payment_options
            .iter_mut()
            .find(|o| o.iuv.as_str() == iuv_or_nav || o.nav.as_str() == iuv_or_nav)
            .ok_or(ReportError::UnknownNotice)?;
        if !o.transfers.iter().any(|t| t.id_transfer == id_transfer) {
            return Err(ReportError::UnknownTransfer);
        }
        if o.status == OptionStatus::PoUnpaid {
            return Err(ReportError::NotPaid);
        }
        if !o.details.reported_transfers.contains(&id_transfer) {
            o.details.reported_transfers.push(id_transfer);
        }
        o.details.reporting_date = Some(now);
        o.details.last_updated_date = Some(now);
        if let Some(f) = flow {
            o.details.id_flow_reporting = Some(f.to_string());
        }
        let all = o
            .transfers
            .iter()
            .all(|t| o.details.reported_transfers.contains(&t.id_transfer));
        o.status = if all {
            OptionStatus::PoReported
        } else {
            OptionStatus::PoPartiallyReported
        };
        let every_paid_reported = self
            .payment_options
            .iter()
            .filter(|o| o.status != OptionStatus::PoUnpaid)
            .all(|o| o.status == OptionStatus::PoReported);
        if self.status == PositionStatus::Paid && every_paid_reported {
            self.status = PositionStatus::Reported;
        }
        self.last_updated_date = now;
        Ok(())
    }

    /// Sets the notification fee of option `iuv_or_nav` (GPD `PUT …/notificationfee`): the fee
    /// is added to the option's amount and to its first transfer to the organization itself.
    /// Only an unpaid option of a position without payments can change.
    ///
    /// Errors: [`FeeError::UnknownNotice`], [`FeeError::NotChangeable`] (paid, cancelled),
    /// [`FeeError::NoOwnTransfer`], [`FeeError::Amount`] (negative or overflowing).
    pub fn set_notification_fee(
        &mut self,
        iuv_or_nav: &str,
        fee: crate::Amount,
        now: DateTime<Utc>,
    ) -> Result<(), FeeError> {
        if self.status.has_payments() || self.status == PositionStatus::Invalid {
            return Err(FeeError::NotChangeable(self.status));
        }
        let o = self
            .payment_options
            .iter_mut()
            .find(|o| o.iuv.as_str() == iuv_or_nav || o.nav.as_str() == iuv_or_nav)
            .ok_or(FeeError::UnknownNotice)?;
        if o.status != OptionStatus::PoUnpaid {
            return Err(FeeError::NotChangeable(self.status));
        }
        let old = o.notification_fee;
        let t = o
            .transfers
            .iter_mut()
            .find(|t| t.organization_fiscal_code.is_none())
            .ok_or(FeeError::NoOwnTransfer)?;
        let shift = |a: crate::Amount| {
            a.checked_sub(old)
                .and_then(|b| b.checked_add(fee))
                .ok_or(FeeError::Amount)
        };
        t.amount = shift(t.amount)?;
        o.amount = shift(o.amount)?;
        o.notification_fee = fee;
        o.details.notification_fee_date = Some(now);
        o.details.last_updated_date = Some(now);
        self.last_updated_date = now;
        Ok(())
    }

    /// Replaces `old` by `new` as the bank IBAN of every transfer to the organization itself
    /// in options not yet paid, if the position can still change; answers how many transfers
    /// changed (GPD `PATCH …/debtpositions/transfers?oldIban=`).
    pub fn replace_iban(
        &mut self,
        old: &crate::Iban,
        new: &crate::Iban,
        now: DateTime<Utc>,
    ) -> usize {
        if self.may(Action::Update).is_err() {
            return 0;
        }
        let mut changed = 0;
        for o in self
            .payment_options
            .iter_mut()
            .filter(|o| o.status == OptionStatus::PoUnpaid)
        {
            for t in o
                .transfers
                .iter_mut()
                .filter(|t| t.organization_fiscal_code.is_none())
            {
                if let crate::position::Destination::Iban { iban, .. } = &mut t.destination {
                    if iban == old {
                        *iban = new.clone();
                        changed += 1;
                        o.details.last_updated_date = Some(now);
                    }
                }
            }
        }
        if changed > 0 {
            self.last_updated_date = now;
        }
        changed
    }

    /// The metadata of an option that may be sent to the Node (paGetPayment): the Ente's own.
    /// Bookkeeping that the platform keeps in the metadata of positions written by a feed
    /// (IUD, flow id, IUV kind, option index/type, IUV generation flag: [`FEED_BOOKKEEPING_KEYS`])
    /// stays ours.
    pub fn node_metadata<'a>(&self, o: &'a PaymentOption) -> Vec<(&'a str, &'a str)> {
        let feed = match &self.origin {
            Origin::Feed { .. } => true,
            Origin::Unrecorded => o.metadata.iter().any(|m| m.key == FEED_FLOW_KEY),
            _ => false,
        };
        o.metadata
            .iter()
            .filter(|m| !(feed && FEED_BOOKKEEPING_KEYS.contains(&m.key.as_str())))
            .map(|m| (m.key.as_str(), m.value.as_str()))
            .collect()
    }

    /// Where the position came from: the recorded [`Origin`], or for records written before
    /// origins were recorded, what their content shows (feed metadata; a PSP demand's iupd).
    /// An Archivio Carichi document of that era is recognised only by the archive's own record,
    /// which the storage layer checks.
    pub fn origin_or_derived(&self) -> Origin {
        if self.origin != Origin::Unrecorded {
            return self.origin.clone();
        }
        let flow = self.payment_options.iter().find_map(|o| {
            o.metadata
                .iter()
                .find(|m| m.key == FEED_FLOW_KEY)
                .map(|m| m.value.clone())
        });
        if let Some(flow_id) = flow {
            return Origin::Feed { flow_id };
        }
        Origin::Unrecorded
    }
}

/// Option metadata key of the flow that last wrote a feed option.
pub const FEED_FLOW_KEY: &str = "flusso";

/// Option metadata keys that feeds write for their own bookkeeping (FORMAT.md §5.1): never sent
/// to the Node.
pub const FEED_BOOKKEEPING_KEYS: [&str; 6] = [
    "IUD",
    FEED_FLOW_KEY,
    "tipoIuv",
    "indiceOpzionePagamento",
    "tipoOpzionePagamento",
    "flgGeneraIuv",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{Debtor, MapEntry};
    use crate::time::parse_api_datetime;
    use crate::{Amount, FiscalCode, NoticeNumber, OrgFiscalCode};
    use chrono::Duration;

    const NAV: &str = "312202600000000171";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn position(due: &str, switch_to_expired: bool) -> DebtPosition {
        let now = at("2026-01-01T00:00:00Z");
        let nav = NoticeNumber::parse(NAV).unwrap();
        let mut p = DebtPosition::new(
            OrgFiscalCode::parse("80001234568").unwrap(),
            "P",
            Debtor::new(FiscalCode::Anonymous, "x"),
            "C",
            Origin::Rest,
            now,
        );
        p.switch_to_expired = switch_to_expired;
        p.payment_options.push(PaymentOption::new(
            nav,
            Amount::from_cents(100).unwrap(),
            "d",
            parse_api_datetime(due).unwrap(),
        ));
        p.mark_published(now);
        p
    }

    #[test]
    fn a_payment_in_progress_keeps_its_notice_and_amounts() {
        let now = at("2026-03-01T10:00:00Z");
        let until = now + payment_in_progress_window();
        let p = position("2030-01-01", false);
        let nav = NoticeNumber::parse(NAV).unwrap();
        let paying = |n: &NoticeNumber| (*n == nav).then_some(until);
        // another notice number: refused, naming the notice and the time
        let mut other = p.clone();
        other.payment_options[0].nav = NoticeNumber::parse("312202600000000272").unwrap();
        let e = p.may_replace_with(Some(&other), &paying, now).unwrap_err();
        assert_eq!(
            e,
            PositionError::PaymentInProgress {
                nav: NAV.into(),
                until
            }
        );
        assert!(e.to_string().contains("payment in progress"), "{e}");
        // another amount, or deleted: refused
        let mut dearer = p.clone();
        dearer.payment_options[0].amount = Amount::from_cents(200).unwrap();
        assert!(p.may_replace_with(Some(&dearer), &paying, now).is_err());
        assert!(p.may_replace_with(None, &paying, now).is_err());
        // the same notice and amount with another description: allowed
        let mut reworded = p.clone();
        reworded.payment_options[0].description = "nuova".into();
        assert_eq!(p.may_replace_with(Some(&reworded), &paying, now), Ok(()));
        // once the token expired, or with no payment in progress: anything goes
        assert_eq!(p.may_replace_with(Some(&other), &paying, until), Ok(()));
        assert_eq!(p.may_replace_with(Some(&other), &|_| None, now), Ok(()));
    }

    #[test]
    fn rest_only_positions_hold_gpd_identifiers() {
        let p = position("2030-01-01", false);
        assert!(!p.rest_only());
        // a GPD notice number (25 digits) in an 11-digit organization
        let mut q = p.clone();
        q.payment_options[0].nav = NoticeNumber::parse_gpd("1234567890123456789012345").unwrap();
        assert!(q.rest_only());
        // a GPD IUV beside a pagoPA notice number
        let mut q = p.clone();
        q.payment_options[0].iuv = crate::Iuv::parse_gpd("123").unwrap();
        assert!(q.rest_only());
        // an organization code in GPD's form
        let mut q = p.clone();
        q.organization_fiscal_code = OrgFiscalCode::parse_gpd("700123456789001").unwrap();
        assert!(q.rest_only());
        // a transfer to an organization in GPD's form
        let mut q = p;
        q.payment_options[0]
            .transfers
            .push(crate::position::Transfer {
                id_transfer: 1,
                amount: Amount::from_cents(100).unwrap(),
                organization_fiscal_code: Some(
                    OrgFiscalCode::parse_gpd("700123456789001").unwrap(),
                ),
                remittance_information: "r".into(),
                category: "9/0101108TS/".into(),
                destination: crate::position::Destination::PostalIban {
                    postal_iban: crate::Iban::parse_unchecked("IT60X0542811101000000123456")
                        .unwrap(),
                },
                company_name: None,
                metadata: Vec::new(),
            });
        assert!(q.rest_only());
    }

    #[test]
    fn drafts_shown_as_once_published() {
        let now = at("2026-06-01T00:00:00Z");
        let mut p = position("2030-01-01", false);
        p.status = PositionStatus::Draft;
        p.validity_date = Some(at("2029-01-01T00:00:00Z"));
        assert_eq!(p.notice_status(NAV, now), None);
        assert_eq!(
            p.notice_status_with_drafts(NAV, now),
            Some(NoticeStatus::Unpaid)
        );
        let mut late = position("2026-01-15", true);
        late.status = PositionStatus::Draft;
        assert_eq!(
            late.notice_status_with_drafts(NAV, now),
            Some(NoticeStatus::ExpiredNotPayable)
        );
        let mut late = position("2026-01-15", false);
        late.status = PositionStatus::Draft;
        assert_eq!(
            late.notice_status_with_drafts(NAV, now),
            Some(NoticeStatus::ExpiredUnpaid)
        );
        // a published position: the same as notice_status
        let published = position("2030-01-01", false);
        assert_eq!(
            published.notice_status_with_drafts(NAV, now),
            published.notice_status(NAV, now)
        );
        assert_eq!(p.notice_status_with_drafts("999", now), None);
    }

    fn installments() -> DebtPosition {
        let mut p = position("2030-01-01", false);
        p.payment_options[0].is_partial_payment = false;
        for (i, nav) in ["312202600000000272", "312202600000000373"]
            .iter()
            .enumerate()
        {
            let mut o = PaymentOption::new(
                NoticeNumber::parse(nav).unwrap(),
                Amount::from_cents(50).unwrap(),
                format!("rata {}", i + 1),
                parse_api_datetime("2030-01-01").unwrap(),
            );
            o.is_partial_payment = true;
            p.payment_options.push(o);
        }
        p
    }

    #[test]
    fn due_date_is_a_europe_rome_business_day() {
        let p = position("2026-12-31", true);
        // 00:30 in Rome on the due date (23:30 UTC the day before): payable
        assert!(p.payable(NAV, at("2026-12-30T23:30:00Z")).is_ok());
        // late evening of the due date in Rome: payable
        assert!(p.payable(NAV, at("2026-12-31T22:59:00Z")).is_ok());
        // 00:30 in Rome the day after (23:30 UTC on the due date): expired
        assert_eq!(
            p.payable(NAV, at("2026-12-31T23:30:00Z")).unwrap_err(),
            NotPayable::PastDueDate
        );
        // summer time: due 2026-07-01, 00:30 Rome = 22:30 UTC on 30 June
        let s = position("2026-07-01", true);
        assert!(s.payable(NAV, at("2026-06-30T22:30:00Z")).is_ok());
        assert!(s.payable(NAV, at("2026-07-01T21:59:59Z")).is_ok());
        assert_eq!(
            s.payable(NAV, at("2026-07-01T22:00:00Z")).unwrap_err(),
            NotPayable::PastDueDate
        );
        // without switchToExpired an overdue notice stays payable
        let q = position("2020-01-01", false);
        assert!(q.payable(NAV, at("2026-12-31T12:00:00Z")).is_ok());
    }

    #[test]
    fn status_table() {
        use PositionStatus as S;
        let now = at("2026-06-01T10:00:00Z");
        let cases = [
            (S::Draft, Err(NotPayable::NotPublished)),
            (S::Invalid, Err(NotPayable::Cancelled)),
            (S::Expired, Err(NotPayable::Expired)),
            (S::Paid, Err(NotPayable::PositionPaid)),
            (S::Reported, Err(NotPayable::PositionPaid)),
            (S::PartiallyPaid, Err(NotPayable::InstallmentPaid)),
            (S::Valid, Ok(())),
            (S::Published, Ok(())),
        ];
        for (status, expected) in cases {
            let mut p = position("2030-01-01", false);
            p.status = status;
            assert_eq!(p.payable(NAV, now).map(|_| ()), expected, "{status:?}");
        }
        let p = position("2030-01-01", false);
        assert_eq!(
            p.payable("312202600000000272", now).unwrap_err(),
            NotPayable::UnknownNotice
        );
    }

    #[test]
    fn validity_date_gates_payment_before_the_scheduler_runs() {
        let now = at("2026-06-01T10:00:00Z");
        let mut p = position("2030-01-01", false);
        p.validity_date = Some(now + Duration::days(1));
        p.status = PositionStatus::Draft;
        p.publish(now).unwrap();
        assert_eq!(p.status, PositionStatus::Published);
        assert_eq!(p.payable(NAV, now).unwrap_err(), NotPayable::NotYetValid);
        let later = now + Duration::days(1);
        assert!(
            p.payable(NAV, later).is_ok(),
            "payable from its validity date"
        );
        assert_eq!(p.timers(), vec![(later, TimerKind::Validate)]);
        assert!(!p.apply_timers(now));
        assert!(p.apply_timers(later));
        assert_eq!(p.status, PositionStatus::Valid);
        assert!(p.timers().is_empty());
    }

    #[test]
    fn installments_and_single_solution() {
        let now = at("2026-06-01T10:00:00Z");
        let mut p = installments();
        p.status = PositionStatus::PartiallyPaid;
        p.payment_options[1].status = OptionStatus::PoPaid;
        assert_eq!(
            p.payable(NAV, now).unwrap_err(),
            NotPayable::InstallmentPaid
        );
        assert_eq!(
            p.payable("312202600000000272", now).unwrap_err(),
            NotPayable::NoticePaid
        );
        assert!(p.payable("312202600000000373", now).is_ok());
    }

    #[test]
    fn an_installment_paid_supersedes_the_single_solution_and_other_plans() {
        let mut p = installments();
        assert!(p.payment_options.iter().all(|o| !p.superseded(o)));
        // a third installment in another plan
        let mut other = p.payment_options[2].clone();
        other.nav = NoticeNumber::parse("312202600000000474").unwrap();
        other.details.plan = Some("B".into());
        p.payment_options.push(other);
        p.status = PositionStatus::PartiallyPaid;
        p.payment_options[1].status = OptionStatus::PoPaid;
        assert!(p.superseded(&p.payment_options[0]), "the single solution");
        assert!(
            !p.superseded(&p.payment_options[2]),
            "same plan: still payable"
        );
        assert!(p.superseded(&p.payment_options[3]), "another plan");
    }

    #[test]
    fn expiry_timer_is_the_instant_after_the_last_due_day() {
        // winter: 00:00 of 1 January in Rome = 23:00 UTC on 31 December
        let mut p = position("2026-12-31", true);
        assert_eq!(
            p.timers(),
            vec![(at("2026-12-31T23:00:00Z"), TimerKind::Expire)]
        );
        assert!(!p.apply_timers(at("2026-12-31T22:59:59Z")));
        assert!(p.apply_timers(at("2026-12-31T23:00:00Z")));
        assert_eq!(p.status, PositionStatus::Expired);
        // the station and the scheduler agree at every instant around the boundary
        for t in [
            "2026-12-31T22:59:59Z",
            "2026-12-31T23:00:00Z",
            "2026-12-31T23:00:01Z",
        ] {
            let mut p = position("2026-12-31", true);
            let payable = p.payable(NAV, at(t)).is_ok();
            p.apply_timers(at(t));
            assert_eq!(payable, p.status == PositionStatus::Valid, "{t}");
        }
        // without switchToExpired nothing expires
        let mut q = position("2020-01-01", false);
        assert!(q.timers().is_empty());
        assert!(!q.apply_timers(at("2030-01-01T00:00:00Z")));
        // a PUBLISHED position that never became valid expires as well
        let mut r = position("2026-03-01", true);
        r.status = PositionStatus::Published;
        r.validity_date = Some(at("2026-12-01T00:00:00Z"));
        assert!(r.apply_timers(at("2026-03-02T00:00:00Z")));
        assert_eq!(r.status, PositionStatus::Expired);
    }

    #[test]
    fn change_rules_by_status() {
        use PositionStatus as S;
        let now = at("2026-06-01T10:00:00Z");
        let all = [
            S::Draft,
            S::Published,
            S::Valid,
            S::Invalid,
            S::Expired,
            S::PartiallyPaid,
            S::Paid,
            S::Reported,
        ];
        for status in all {
            let mut p = position("2030-01-01", false);
            p.status = status;
            let ok = |a| p.may(a).is_ok();
            assert_eq!(
                ok(Action::Update),
                !matches!(
                    status,
                    S::Invalid | S::PartiallyPaid | S::Paid | S::Reported
                ),
                "update {status:?}"
            );
            assert_eq!(ok(Action::Delete), status == S::Draft, "delete {status:?}");
            assert_eq!(
                ok(Action::Publish),
                status == S::Draft,
                "publish {status:?}"
            );
            assert_eq!(
                ok(Action::Invalidate),
                matches!(status, S::Published | S::Valid | S::Expired),
                "invalidate {status:?}"
            );
            let mut q = p.clone();
            match q.invalidate(now) {
                Ok(()) => assert_eq!(q.status, S::Invalid),
                Err(e) => assert_eq!(q, p, "unchanged after {e}"),
            }
        }
        let mut p = position("2030-01-01", false);
        p.status = S::Invalid;
        let msg = p.may(Action::Delete).unwrap_err().to_string();
        assert!(!msg.contains("invalidate it"), "{msg}");
        assert!(msg.contains("already invalidated"), "{msg}");
        p.status = S::Valid;
        let msg = p.may(Action::Delete).unwrap_err().to_string();
        assert!(msg.contains("/invalidate"), "{msg}");
    }

    #[test]
    fn archive_documents_change_only_through_the_archive() {
        let mut p = position("2030-01-01", false);
        p.origin = Origin::ArchivioCarichi;
        for a in [
            Action::Update,
            Action::Delete,
            Action::Publish,
            Action::Invalidate,
        ] {
            assert_eq!(p.may(a), Err(PositionError::ManagedByArchive));
        }
        // once cancelled by the archive, the usual status rules speak
        p.status = PositionStatus::Invalid;
        assert!(matches!(
            p.may(Action::Update),
            Err(PositionError::InvalidState { .. })
        ));
    }

    #[test]
    fn feed_bookkeeping_is_not_sent_to_the_node() {
        let mut p = position("2030-01-01", false);
        let entry = |k: &str, v: &str| MapEntry {
            key: k.into(),
            value: v.into(),
        };
        p.payment_options[0].metadata = vec![
            entry("IUD", "IUD-1"),
            entry("flusso", "TARI2025"),
            entry("tipoIuv", "B"),
            entry("datiSpecificiRiscossione", "9/0101100IM"),
        ];
        let o = p.payment_options[0].clone();
        // a REST position keeps every key it was given
        assert_eq!(p.node_metadata(&o).len(), 4);
        // a feed position (recorded, or recognised by its flow key) keeps the Ente's own only
        p.origin = Origin::Feed {
            flow_id: "TARI2025".into(),
        };
        assert_eq!(
            p.node_metadata(&o),
            vec![("datiSpecificiRiscossione", "9/0101100IM")]
        );
        p.origin = Origin::Unrecorded;
        assert_eq!(p.node_metadata(&o).len(), 1);
        assert_eq!(
            p.origin_or_derived(),
            Origin::Feed {
                flow_id: "TARI2025".into()
            }
        );
    }
}
