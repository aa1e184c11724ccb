//! Storage errors: [`StorageError`] (the store itself) and [`LedgerError`] (the debt-position
//! aggregates: rules, uniqueness, contention). Sources are kept (`#[source]`), so the chain of
//! causes reaches the log line.

use std::sync::Arc;

/// A storage-level failure (I/O, corrupt record).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A failure described in words only (kept for callers that build one from another error's
    /// text; the store itself reports [`StorageError::Sled`], [`StorageError::File`],
    /// [`StorageError::Encode`]).
    #[error("store I/O error: {0}")]
    Io(String),
    /// The embedded store failed (I/O, out of space, lock held by another process, ...).
    #[error("store I/O error")]
    Sled(#[source] sled::Error),
    /// A file or folder of the store could not be used.
    #[error("store I/O error: {context}")]
    File {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record could not be encoded.
    #[error("cannot encode a record of {tree}")]
    Encode {
        /// Tree name.
        tree: &'static str,
        /// The cause.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The blocking task that ran a store call did not finish (panicked or was cancelled).
    #[error("a store task did not finish")]
    Task(#[source] Arc<tokio::task::JoinError>),
    /// The store's files are damaged (sled found a bad checksum, an unreadable config or
    /// snapshot, or failed while reading them).
    #[error(
        "store corrupt at {dir}: {detail}\n\
         Restore it from a backup: stop the node, move {dir} aside (keep it for inspection), then run\n\
         \x20 mpay store import --config <your config> <backup file>\n\
         (a backup is what `mpay store export` writes; the node then starts on the restored store)"
    )]
    CorruptStore {
        /// The store folder.
        dir: String,
        /// What sled said.
        detail: String,
    },
    /// A record could not be decoded.
    #[error("corrupt record in {tree} at {key}: {reason}")]
    Corrupt {
        /// Tree name.
        tree: &'static str,
        /// Key (printable form).
        key: String,
        /// Why.
        reason: String,
    },
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Sled(e)
    }
}

impl From<tokio::task::JoinError> for StorageError {
    fn from(e: tokio::task::JoinError) -> Self {
        StorageError::Task(Arc::new(e))
    }
}

impl StorageError {
    /// The store in `dir` is damaged when `e` says its files are (checksum, format, a bug
    /// report from reading them); `e` unchanged otherwise.
    pub fn corrupt_store(dir: &std::path::Path, e: StorageError) -> StorageError {
        let detail = match &e {
            StorageError::Sled(sled::Error::Corruption { at, .. }) => match at {
                Some(at) => format!("a bad checksum at {at:?}"),
                None => "a bad checksum in its snapshot or log".to_string(),
            },
            StorageError::Sled(sled::Error::Unsupported(m)) => {
                format!("unreadable settings file ({m})")
            }
            StorageError::Sled(sled::Error::ReportableBug(m)) => {
                format!("the store failed while reading its files ({m})")
            }
            _ => return e,
        };
        StorageError::CorruptStore {
            dir: dir.display().to_string(),
            detail,
        }
    }

    /// A file-system failure while doing `context`.
    pub fn file(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::File {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// True when the store is locked by another process (a running `mpay serve`): sled lets one
    /// process open a store at a time, even for reading.
    pub fn is_locked(&self) -> bool {
        const LOCKED: &str = "could not acquire lock";
        match self {
            StorageError::Io(m) => m.contains(LOCKED),
            StorageError::Sled(sled::Error::Io(e)) => e.to_string().contains(LOCKED),
            StorageError::Sled(e) => e.to_string().contains(LOCKED),
            _ => false,
        }
    }
}

/// Why a ledger operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// No position with that key.
    #[error("debt position not found")]
    NotFound,
    /// The iupd is taken.
    #[error("a debt position with iupd {0:?} already exists")]
    AlreadyExists(String),
    /// The notice number belongs to another position.
    #[error("notice number {nav} is already used by debt position {iupd:?}")]
    NoticeInUse {
        /// The notice number.
        nav: String,
        /// Who holds it.
        iupd: String,
    },
    /// The IUV belongs to another position.
    #[error("IUV {iuv} is already used by debt position {iupd:?}")]
    IuvInUse {
        /// The IUV.
        iuv: String,
        /// Who holds it.
        iupd: String,
    },
    /// A rule of the domain refuses the change (status, origin).
    #[error(transparent)]
    Rule(#[from] mpay_messages::domain::PositionError),
    /// The organization's IUV sequence is exhausted for its layout.
    #[error("IUV sequence exhausted for organization {0}")]
    SequenceExhausted(String),
    /// Too many concurrent updates of the same position; try again.
    #[error("the debt position is being changed concurrently; retry")]
    Contended,
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sled::Error> for LedgerError {
    fn from(e: sled::Error) -> Self {
        LedgerError::Storage(e.into())
    }
}

impl From<tokio::task::JoinError> for LedgerError {
    fn from(e: tokio::task::JoinError) -> Self {
        LedgerError::Storage(e.into())
    }
}

/// True when `e` says the store is locked by another process (a running `mpay serve`): sled
/// lets one process open a store at a time, even for reading.
pub fn is_locked(e: &StorageError) -> bool {
    e.is_locked()
}
