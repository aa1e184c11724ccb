//! MPay Archivio Carichi documents (legacy SOAP `IntegraEcDifferitoService`, INTERFACES.md §5.1).
//!
//! A document is a debt position of the ledger (`iupd` = `numeroDocumento`) plus the MPay view
//! kept alongside it ([`ArchivedDocument`]: the request as received with the generated numbers,
//! discharges, flow ids). Both are written in ONE sled transaction with the position's indexes,
//! with compare-and-swap on what the caller read, so a document and its position never diverge
//! and concurrent calls on the same document cannot lose an update.
//!
//! Trees:
//! - `archive_documents`: `org ++ 0x00 ++ numeroDocumento` → [`ArchivedDocument`] (schema byte + JSON)
//! - `archive_flows`: `org ++ 0x00 ++ identificativoFlusso` → [`FlowRecord`]: a flow id is
//!   accepted once per organization.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mpay_messages::archivio::ArchivedDocument;
use mpay_messages::position::DebtPosition;
use mpay_messages::OrgFiscalCode;
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::IVec;

use crate::codec::{decode, encode};
use crate::error::LedgerError;
use crate::error::StorageError;
use crate::keys::position_key;
use crate::ledger::SledLedger;
use crate::tx::{transact, write_position, LedgerTx};

const DOCUMENTS: &str = "archive_documents";
const FLOWS: &str = "archive_flows";

/// Where a flow id was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    /// The operation (`inserimentoEC`, `variazioneEC`).
    pub operation: String,
    /// The document.
    pub numero_documento: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
}

/// Why an archive write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// The flow id was already used by this organization.
    #[error("identificativo flusso {0} già presente")]
    FlowDuplicate(String),
    /// A position with this `iupd` exists and is not an (active) archive document.
    #[error("documento {0} già presente")]
    DocumentExists(String),
    /// What the caller read changed meanwhile: read again and retry.
    #[error("document changed concurrently")]
    Contended,
    /// A ledger rule failed (notice number or IUV in use, ...).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StorageError> for ArchiveError {
    fn from(e: StorageError) -> Self {
        ArchiveError::Ledger(e.into())
    }
}

impl From<tokio::task::JoinError> for ArchiveError {
    fn from(e: tokio::task::JoinError) -> Self {
        ArchiveError::Ledger(e.into())
    }
}

impl From<sled::Error> for ArchiveError {
    fn from(e: sled::Error) -> Self {
        ArchiveError::Ledger(e.into())
    }
}

/// A document as read, with the bytes the compare-and-swap of [`write`] checks.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The archived document; `None` when only a position with this `iupd` exists (created by
    /// the REST API or a feed).
    pub document: Option<ArchivedDocument>,
    /// The ledger position; `None` when absent.
    pub position: Option<DebtPosition>,
    doc_bytes: Option<IVec>,
    pos_bytes: Option<IVec>,
}

impl Snapshot {
    /// Nothing stored under this document number.
    pub fn is_empty(&self) -> bool {
        self.document.is_none() && self.position.is_none()
    }
}

fn doc_key(org: &OrgFiscalCode, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.as_str().len() + 1 + id.len());
    k.extend_from_slice(org.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The Archivio Carichi aggregate: documents with their positions, flow ids. Blocking calls
/// (the async forms are on [`Store`]).
pub trait ArchiveRepository: Send + Sync {
    /// Reads a document and the position with the same `iupd`.
    fn read(&self, org: &OrgFiscalCode, numero_documento: &str) -> Result<Snapshot, ArchiveError>;
    /// Writes a document and its position in one unit of work (see [`write`]).
    fn write(
        &self,
        base: &Snapshot,
        flow: Option<(&str, &FlowRecord)>,
        document: &ArchivedDocument,
        position: &DebtPosition,
    ) -> Result<(), ArchiveError>;
    /// Whether a flow id was already used by the organization.
    fn flow_exists(&self, org: &OrgFiscalCode, id: &str) -> Result<bool, ArchiveError>;
}

/// The sled implementation of [`ArchiveRepository`]: owns `archive_documents` and
/// `archive_flows`, writes positions through the ledger's unit of work.
pub struct SledArchive {
    ledger: Arc<SledLedger>,
    documents: sled::Tree,
    flows: sled::Tree,
}

impl SledArchive {
    pub(crate) fn open(db: &sled::Db, ledger: Arc<SledLedger>) -> Result<Self, StorageError> {
        Ok(SledArchive {
            ledger,
            documents: db.open_tree(DOCUMENTS)?,
            flows: db.open_tree(FLOWS)?,
        })
    }
}

/// Reads a document and the position with the same `iupd`. Blocking (sled).
///
/// Errors: [`ArchiveError::Ledger`] on I/O or a corrupt record.
pub fn read<S: AsRef<SledArchive>>(
    store: &S,
    org: &OrgFiscalCode,
    numero_documento: &str,
) -> Result<Snapshot, ArchiveError> {
    store.as_ref().read(org, numero_documento)
}

/// Writes `document` and `position` (same organization, `position.iupd` = the document number)
/// in one transaction, provided nothing changed since `base` was read, and records `flow`
/// (id, record) when given. The position's notice numbers and IUVs must be free or its own.
/// Blocking; durable after [`crate::Durability::commit`].
///
/// Errors: [`ArchiveError::Contended`] (re-read and retry), [`ArchiveError::FlowDuplicate`],
/// [`ArchiveError::Ledger`] with `NoticeInUse` / `IuvInUse` / storage errors.
pub fn write<S: AsRef<SledArchive>>(
    store: &S,
    base: &Snapshot,
    flow: Option<(&str, &FlowRecord)>,
    document: &ArchivedDocument,
    position: &DebtPosition,
) -> Result<(), ArchiveError> {
    store.as_ref().write(base, flow, document, position)
}

/// Whether a flow id was already used by the organization.
///
/// Errors: storage.
pub fn flow_exists<S: AsRef<SledArchive>>(
    store: &S,
    org: &OrgFiscalCode,
    id: &str,
) -> Result<bool, ArchiveError> {
    store.as_ref().flow_exists(org, id)
}

impl ArchiveRepository for SledArchive {
    fn read(&self, org: &OrgFiscalCode, numero_documento: &str) -> Result<Snapshot, ArchiveError> {
        let t = self;
        let dk = doc_key(org, numero_documento);
        let doc_bytes = t.documents.get(&dk)?;
        let document = doc_bytes
            .as_ref()
            .map(|b| decode::<ArchivedDocument>(DOCUMENTS, &dk, b))
            .transpose()?;
        let pk = position_key(org.as_str(), numero_documento);
        let pos_bytes = self.ledger.positions.get(&pk)?;
        let position = pos_bytes
            .as_ref()
            .map(|b| SledLedger::decode_position(&pk, b))
            .transpose()?;
        Ok(Snapshot {
            document,
            position,
            doc_bytes,
            pos_bytes,
        })
    }

    fn write(
        &self,
        base: &Snapshot,
        flow: Option<(&str, &FlowRecord)>,
        document: &ArchivedDocument,
        position: &DebtPosition,
    ) -> Result<(), ArchiveError> {
        let org = &position.organization_fiscal_code;
        let dk = doc_key(org, &position.iupd);
        let pk = position_key(org.as_str(), &position.iupd);
        let doc_bytes = encode(document)?;
        let flow_entry = match flow {
            Some((id, rec)) => Some((doc_key(org, id), id.to_string(), encode(rec)?)),
            None => None,
        };
        let abort = ConflictableTransactionError::Abort;
        transact(
            self.ledger.ledger_trees(),
            &[&self.documents, &self.flows, &self.ledger.in_progress],
            |tx: &LedgerTx<'_>, extra| {
                let [docs, flows, paying] = extra else {
                    return Err(ConflictableTransactionError::Storage(
                        sled::Error::ReportableBug("an archive unit of work lost its trees".into()),
                    ));
                };
                if docs.get(&dk)?.as_ref() != base.doc_bytes.as_ref()
                    || tx.positions.get(&pk)?.as_ref() != base.pos_bytes.as_ref()
                {
                    return Err(abort(ArchiveError::Contended));
                }
                if let Some(old) = base.position.as_ref() {
                    crate::ledger::guard_payments(paying, old, Some(position), Utc::now())
                        .map_err(|e| match e {
                            ConflictableTransactionError::Abort(l) => {
                                abort(ArchiveError::Ledger(l))
                            }
                            ConflictableTransactionError::Conflict => {
                                ConflictableTransactionError::Conflict
                            }
                            ConflictableTransactionError::Storage(s) => {
                                ConflictableTransactionError::Storage(s)
                            }
                        })?;
                }
                if let Some((k, id, v)) = &flow_entry {
                    if flows.get(k.as_slice())?.is_some() {
                        return Err(abort(ArchiveError::FlowDuplicate(id.clone())));
                    }
                    flows.insert(k.as_slice(), v.as_slice())?;
                }
                write_position(tx, base.position.as_ref(), Some(position)).map_err(
                    |e| match e {
                        ConflictableTransactionError::Abort(l) => abort(ArchiveError::Ledger(l)),
                        ConflictableTransactionError::Conflict => {
                            ConflictableTransactionError::Conflict
                        }
                        ConflictableTransactionError::Storage(s) => {
                            ConflictableTransactionError::Storage(s)
                        }
                    },
                )?;
                docs.insert(dk.as_slice(), doc_bytes.as_slice())?;
                Ok(())
            },
        )?;
        if base.position.is_none() {
            self.ledger.note_created(1);
        }
        Ok(())
    }

    fn flow_exists(&self, org: &OrgFiscalCode, id: &str) -> Result<bool, ArchiveError> {
        Ok(self.flows.contains_key(doc_key(org, id))?)
    }
}
