//! Load records: read, list, interrupted loads, mark failed, record a file refused before reading.

use crate::codec::decode;
use crate::Store;
use chrono::Utc;
use mpay_messages::feeds::{ErrorCode, FeedFileError};
use mpay_messages::OrgFiscalCode;

use super::keys::*;
use super::types::*;

/// The persisted record of a load.
///
/// # Errors
/// Storage errors.
pub fn get_feed(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
) -> Result<Option<FeedLoadRecord>, FeedError> {
    let t = Trees::open(store)?;
    get_record(&t, &feed_key(org, flow_id))
}

/// Every load of an organization (or of all organizations).
///
/// # Errors
/// Storage errors.
pub fn list_feeds(
    store: &Store,
    org: Option<&OrgFiscalCode>,
) -> Result<Vec<FeedLoadRecord>, FeedError> {
    let t = Trees::open(store)?;
    let prefix = org
        .map(|o| o.as_str().as_bytes().to_vec())
        .unwrap_or_default();
    let mut out = Vec::new();
    for item in t.feeds.scan_prefix(prefix) {
        let (k, v) = item?;
        out.push(decode("feeds", &k, &v)?);
    }
    Ok(out)
}

/// Loads left RUNNING (a crash or a stop): at start-up the caller resumes them
/// ([`LoadOptions::resume`]) or marks them failed ([`mark_failed`]).
///
/// # Errors
/// Storage errors.
pub fn interrupted_feeds(store: &Store) -> Result<Vec<FeedLoadRecord>, FeedError> {
    Ok(list_feeds(store, None)?
        .into_iter()
        .filter(|r| r.status == FeedStatus::Running)
        .collect())
}

/// Marks a RUNNING / AWAITING_CONFIRMATION load FAILED with a reason. What it had committed
/// stays applied and reported (`rows_read`, the outcome lines); the report says where it
/// stopped.
///
/// # Errors
/// [`FeedError::NotFound`], [`FeedError::NotResumable`] for DONE / FAILED loads, storage errors.
pub fn mark_failed(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    reason: &str,
) -> Result<FeedLoadRecord, FeedError> {
    let t = Trees::open(store)?;
    let key = feed_key(org, flow_id);
    let mut r = get_record(&t, &key)?.ok_or(FeedError::NotFound)?;
    if !matches!(
        r.status,
        FeedStatus::Running | FeedStatus::AwaitingConfirmation
    ) {
        return Err(FeedError::NotResumable(flow_id.to_string()));
    }
    r.status = FeedStatus::Failed;
    r.error = Some(FeedFileError {
        code: ErrorCode::InternalError,
        message: format!(
            "caricamento interrotto dopo la riga {} ({} posizioni applicate): {reason}",
            r.last_committed_row, r.groups_committed
        ),
        row: Some(r.last_committed_row),
    });
    r.finished_at = Some(Utc::now());
    r.updated_at = Utc::now();
    put_record(&t, &key, &r)?;
    clear_prefix(&t.seen, &sub_prefix(&key))?;
    Ok(r)
}

/// Records a load that failed before its CSV could be read (a zip without a usable CSV, a
/// checksum mismatch — FORMAT.md §5.2 file-level codes found by the transport) as FAILED with
/// `error`, nothing applied, so that its status and report look like any other file-level
/// failure. The same duplicate rule as [`load_feed`] applies (a FAILED load with nothing
/// applied may be replaced).
///
/// # Errors
/// [`FeedError::Duplicate`], storage errors.
pub fn reject_file(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    opts: &LoadOptions,
    error: FeedFileError,
) -> Result<FeedLoadRecord, FeedError> {
    let t = Trees::open(store)?;
    let key = feed_key(org, flow_id);
    if let Some(r) = get_record(&t, &key)? {
        if !(r.status == FeedStatus::Failed && r.groups_committed == 0) {
            return Err(FeedError::Duplicate {
                flow_id: flow_id.to_string(),
                status: r.status,
                file_name: r.file_name,
            });
        }
    }
    clear_prefix(&t.outcomes, &sub_prefix(&key))?;
    let now = Utc::now();
    let rec = FeedLoadRecord {
        id: format!("{org}/{flow_id}"),
        organization: org.clone(),
        file_name: opts.file_name.clone(),
        flow_id: flow_id.to_string(),
        mode: opts.mode,
        version: None,
        status: FeedStatus::Failed,
        phase: FeedPhase::Rows,
        dry_run: opts.dry_run,
        rows_total: 0,
        rows_read: 0,
        rows_loaded: 0,
        rows_rejected: 0,
        rows_warned: 0,
        cancelled: 0,
        skipped_paid: 0,
        groups_committed: 0,
        last_committed_row: 0,
        last_committed_offset: 0,
        error: Some(error),
        warnings: Vec::new(),
        started_at: now,
        updated_at: now,
        finished_at: Some(now),
    };
    put_record(&t, &key, &rec)?;
    Ok(rec)
}
