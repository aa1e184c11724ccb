//! Async forms of the repositories' blocking calls: each does the hop to tokio's blocking pool
//! itself, so handlers and actors call `store.x(..).await` instead of wrapping every call.
//! The verify/getPayment read path stays a direct call (one index read and one record read
//! from the page cache cost less than the hop).

use chrono::{DateTime, Utc};
use mpay_messages::archivio::ArchivedDocument;
use mpay_messages::domain::delivery::{Notification, NotificationState};
use mpay_messages::journal::JournalEntry;
use mpay_messages::position::DebtPosition;
use mpay_messages::OrgFiscalCode;

use crate::archive::{ArchiveError, ArchiveRepository, FlowRecord, Snapshot};
use crate::error::{LedgerError, StorageError};
use crate::journal::JournalStore;
use crate::ledger::{Page, PositionRepository};
use crate::receipt_queries::{AnomalyRecord, AnomalyState, ReceiptFilter};
use crate::receipts::{ReceiptDisposition, ReceiptRepository, StoredReceipt};
use crate::store::Store;

impl Store {
    /// Runs a blocking store call on the blocking pool and awaits it. The error of a task
    /// that did not finish (panic) is `E::from(JoinError)`.
    pub async fn blocking<R, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<tokio::task::JoinError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }

    /// [`ReceiptRepository::apply_receipt`].
    pub async fn apply_receipt(
        &self,
        receipt: StoredReceipt,
    ) -> Result<ReceiptDisposition, LedgerError> {
        self.blocking(move |s| s.ledger.apply_receipt(receipt))
            .await
    }

    /// [`crate::SledLedger::list_receipts`].
    pub async fn list_receipts(
        &self,
        org: String,
        filter: ReceiptFilter,
        page: usize,
        limit: usize,
    ) -> Result<Page<StoredReceipt>, LedgerError> {
        self.blocking(move |s| s.ledger.list_receipts(&org, &filter, page, limit))
            .await
    }

    /// [`crate::SledLedger::organization_receipt`].
    pub async fn organization_receipt(
        &self,
        org: String,
        receipt_id: String,
    ) -> Result<Option<StoredReceipt>, LedgerError> {
        self.blocking(move |s| s.ledger.organization_receipt(&org, &receipt_id))
            .await
    }

    /// [`crate::SledLedger::list_anomalies`].
    pub async fn list_anomalies(
        &self,
        org: String,
        state: Option<AnomalyState>,
        page: usize,
        limit: usize,
    ) -> Result<Page<AnomalyRecord>, LedgerError> {
        self.blocking(move |s| s.ledger.list_anomalies(&org, state, page, limit))
            .await
    }

    /// [`crate::SledLedger::acknowledge_anomaly`].
    pub async fn acknowledge_anomaly(
        &self,
        org: String,
        id: u64,
        note: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Option<AnomalyRecord>, LedgerError> {
        self.blocking(move |s| s.ledger.acknowledge_anomaly(&org, id, note, at))
            .await
    }

    /// [`crate::SledLedger::list_notifications`].
    pub async fn list_notifications(
        &self,
        org: String,
        state: Option<NotificationState>,
        page: usize,
        limit: usize,
    ) -> Result<Page<Notification>, LedgerError> {
        self.blocking(move |s| s.ledger.list_notifications(&org, state, page, limit))
            .await
    }

    /// [`crate::SledLedger::resend_notification`].
    pub async fn resend_notification(
        &self,
        org: String,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, LedgerError> {
        self.blocking(move |s| s.ledger.resend_notification(&org, id, now))
            .await
    }

    /// [`PositionRepository::create`].
    pub async fn create_position(
        &self,
        position: DebtPosition,
    ) -> Result<DebtPosition, LedgerError> {
        self.blocking(move |s| s.ledger.create(position)).await
    }

    /// [`ArchiveRepository::read`].
    pub async fn archive_read(
        &self,
        org: OrgFiscalCode,
        numero_documento: String,
    ) -> Result<Snapshot, ArchiveError> {
        self.blocking(move |s| s.archive.read(&org, &numero_documento))
            .await
    }

    /// [`ArchiveRepository::write`].
    pub async fn archive_write(
        &self,
        base: Snapshot,
        flow: Option<(String, FlowRecord)>,
        document: ArchivedDocument,
        position: DebtPosition,
    ) -> Result<(), ArchiveError> {
        self.blocking(move |s| {
            let flow = flow.as_ref().map(|(id, rec)| (id.as_str(), rec));
            s.archive.write(&base, flow, &document, &position)
        })
        .await
    }

    /// [`JournalStore::append`].
    pub async fn journal_append(&self, entries: Vec<JournalEntry>) -> Result<(), StorageError> {
        self.blocking(move |s| s.journal.append(&entries)).await
    }
}
