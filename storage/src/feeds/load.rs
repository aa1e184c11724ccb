//! `load_feed`: the two passes (pre-scan, apply) of a load, FULL guards, and its record from start to end.

use crate::ledger::SledLedger;
use crate::Store;
use chrono::Utc;
use std::collections::{BTreeSet, HashSet};
use std::ops::{Bound, Range};

use mpay_messages::feeds::{
    ErrorCode, FeedFileError, FeedFileName, FeedMode, FeedReader, FeedRow, FeedVersion, ReadOptions,
};
use mpay_messages::position::{DebtPosition, OptionStatus, PositionStatus};

use super::engine::*;
use super::keys::*;
use super::seen::*;
use super::types::*;

/// Loads a feed (FORMAT.md §5): see the module documentation. Blocking: run it on a blocking
/// thread. `progress` is called after every committed group; returning
/// [`ProgressControl::Stop`] leaves the load RUNNING (resume with `opts.resume`).
///
/// # Errors
/// [`FeedError::Duplicate`] (same flow id already loaded), [`FeedError::NotResumable`],
/// [`FeedError::Io`] / [`FeedError::Ledger`] (the load stays RUNNING and can be resumed or
/// [`mark_failed`]). File-level problems are not errors: the outcome has status FAILED and
/// `record.error` set.
pub fn load_feed(
    store: &Store,
    org: &FeedOrg,
    source: &dyn FeedSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
) -> Result<FeedOutcome, FeedError> {
    let trees = Trees::open(store)?;
    let parsed_name = FeedFileName::parse(&opts.file_name);
    let flow_id = match (&opts.flow_id, &parsed_name) {
        (Some(f), _) => f.clone(),
        (None, Ok(n)) => n.flow_id.clone(),
        (None, Err(_)) => {
            let base = opts
                .file_name
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(&opts.file_name);
            base.rsplit_once('.')
                .map(|(s, _)| s)
                .unwrap_or(base)
                .to_string()
        }
    };
    let key = feed_key(&org.fiscal_code, &flow_id);
    let now = Utc::now();
    let existing = get_record(&trees, &key)?;
    let resuming = match &existing {
        None => false,
        Some(r) if r.status == FeedStatus::Running && opts.resume => true,
        Some(r) if r.status == FeedStatus::AwaitingConfirmation && opts.confirm_guard => false,
        Some(r) if r.status == FeedStatus::Failed && r.groups_committed == 0 && !opts.resume => {
            false
        }
        Some(r) => {
            if opts.resume || opts.confirm_guard {
                return Err(FeedError::NotResumable(flow_id));
            }
            return Err(FeedError::Duplicate {
                flow_id,
                status: r.status,
                file_name: r.file_name.clone(),
            });
        }
    };
    if existing.is_none() && (opts.resume || opts.confirm_guard) {
        return Err(FeedError::NotResumable(flow_id));
    }
    let rec = match (&existing, resuming) {
        (Some(r), true) => r.clone(),
        _ => {
            clear_prefix(&trees.outcomes, &sub_prefix(&key))?;
            clear_prefix(&trees.seen, &sub_prefix(&key))?;
            FeedLoadRecord {
                id: format!("{}/{}", org.fiscal_code, flow_id),
                organization: org.fiscal_code.clone(),
                file_name: opts.file_name.clone(),
                flow_id: flow_id.clone(),
                mode: opts.mode,
                version: None,
                status: FeedStatus::Running,
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
                error: None,
                warnings: Vec::new(),
                started_at: now,
                updated_at: now,
                finished_at: None,
            }
        }
    };
    put_record(&trees, &key, &rec)?;
    let seen = SeenSet::new(trees.seen.clone(), &key);
    let mut ctx = Ctx {
        store,
        org,
        opts,
        trees,
        key,
        rec,
        version: FeedVersion::V2_0,
        dup_rows: HashSet::new(),
        split_rows: HashSet::new(),
        file_tipi: BTreeSet::new(),
        seen,
    };

    // file name checks
    if let Ok(n) = &parsed_name {
        if let Some(ipa) = &org.ipa_code {
            if !n.ipa_code.eq_ignore_ascii_case(ipa) {
                return ctx.fail(FeedFileError::new(
                    ErrorCode::FileEnteMismatch,
                    format!(
                        "il nome del file indica l'ente {} ma il flusso è dell'ente {ipa}",
                        n.ipa_code
                    ),
                ));
            }
        }
    } else if let Err(e) = &parsed_name {
        if opts.require_standard_name {
            return ctx.fail(e.clone());
        }
    }
    let name_version = parsed_name.as_ref().ok().map(|n| n.version);

    // pass 1: pre-scan
    if let Err(e) = ctx.prescan(source, name_version)? {
        return ctx.fail(e);
    }

    // FULL guards (before anything is applied)
    if opts.mode == FeedMode::Full
        && ctx.rec.phase == FeedPhase::Rows
        && ctx.rec.groups_committed == 0
        && !opts.confirm_guard
        && !opts.dry_run
    {
        if let Some(guard) = ctx.full_guard()? {
            ctx.rec.status = FeedStatus::AwaitingConfirmation;
            ctx.rec.error = Some(guard);
            ctx.rec.updated_at = Utc::now();
            put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
            return Ok(FeedOutcome { record: ctx.rec });
        }
    }

    // pass 2: apply
    if ctx.rec.phase == FeedPhase::Rows {
        match ctx.apply_rows(source, name_version, progress)? {
            ProgressControl::Stop => return Ok(FeedOutcome { record: ctx.rec }),
            ProgressControl::Continue => {}
        }
        ctx.rec.phase = if opts.mode == FeedMode::Full {
            FeedPhase::Cancellations
        } else {
            FeedPhase::Finished
        };
        ctx.rec.updated_at = Utc::now();
        put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
    }
    if ctx.rec.phase == FeedPhase::Cancellations {
        ctx.cancel_absent()?;
        ctx.rec.phase = FeedPhase::Finished;
    }
    ctx.rec.status = FeedStatus::Done;
    ctx.rec.finished_at = Some(Utc::now());
    ctx.rec.updated_at = Utc::now();
    put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
    clear_prefix(&ctx.trees.seen, &sub_prefix(&ctx.key))?;
    store.flush_blocking()?;
    Ok(FeedOutcome { record: ctx.rec })
}

impl Ctx<'_> {
    pub(crate) fn read_options(&self, name_version: Option<FeedVersion>) -> ReadOptions {
        ReadOptions {
            mode: self.opts.mode,
            mb14_amount_mode: self.org.mb14_amount_mode,
            name_version,
        }
    }

    /// Records a file-level failure (nothing applied) and returns the outcome.
    pub(crate) fn fail(mut self, e: FeedFileError) -> Result<FeedOutcome, FeedError> {
        self.rec.status = FeedStatus::Failed;
        self.rec.error = Some(e);
        self.rec.finished_at = Some(Utc::now());
        self.rec.updated_at = Utc::now();
        put_record(&self.trees, &self.key, &self.rec)?;
        clear_prefix(&self.trees.seen, &sub_prefix(&self.key))?;
        Ok(FeedOutcome { record: self.rec })
    }

    /// Pass 1 (FORMAT.md §5.2/§5.3): file-level errors, row count, in-file duplicate IUDs,
    /// non-contiguous positions, the IUD set for FULL mode.
    pub(crate) fn prescan(
        &mut self,
        source: &dyn FeedSource,
        name_version: Option<FeedVersion>,
    ) -> Result<Result<(), FeedFileError>, FeedError> {
        // the work set of this pass ('I' and 'P' keys; a FULL-mode cancellation cursor 'C'
        // survives: it belongs to a resumed load's cancellation phase)
        self.seen.clear()?;
        let input = open_source(source)?;
        let reader = match FeedReader::new(input, self.read_options(name_version)) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        self.version = reader.version();
        self.rec.version = Some(reader.version());
        self.rec.warnings = reader.file_warnings().to_vec();
        let positional = reader.version().is_positional();
        let mut rows = 0u64;
        let mut prev_iupd = String::new();
        for row in reader {
            let row = match row {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            rows += 1;
            let (iud, iupd, tipo) = match &row.record {
                Ok(r) => (
                    r.iud.as_str(),
                    r.iupd.as_str(),
                    Some(r.tipo_dovuto.as_str()),
                ),
                Err(_) => (row.echo.iud.as_str(), row.echo.iupd.as_str(), None),
            };
            if let Some(t) = tipo {
                if self.file_tipi.len() < 1000 && !self.file_tipi.contains(t) {
                    self.file_tipi.insert(t.to_string());
                }
            }
            if !iud.is_empty() && !self.seen.insert(b'I', iud)? {
                self.dup_rows.insert(row.number);
            }
            if !positional && !iupd.is_empty() && iupd != prev_iupd {
                if !self.seen.insert(b'P', iupd)? {
                    self.split_rows.insert(row.number);
                }
                prev_iupd.clear();
                prev_iupd.push_str(iupd);
            }
        }
        self.seen.flush()?;
        self.rec.rows_total = rows;
        put_record(&self.trees, &self.key, &self.rec)?;
        Ok(Ok(()))
    }

    pub(crate) fn in_scope(&self, service: Option<&str>) -> bool {
        let Some(s) = service else { return false };
        match &self.opts.scope_tipi_dovuto {
            Some(list) => list.iter().any(|t| t == s),
            None => self.file_tipi.contains(s),
        }
    }

    pub(crate) fn seen_iud(&self, iud: &str) -> Result<bool, FeedError> {
        self.seen.contains(b'I', iud)
    }

    /// Streams the organization's positions in FULL scope (not cancelled, written by feeds, of a
    /// `tipoDovuto` in scope), in key (= iupd) order, starting after the position key `after`:
    /// (key, stored bytes, position). Nothing is collected: memory stays bounded whatever the
    /// organization's size.
    pub(crate) fn scope_scan(
        &self,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec, DebtPosition), FeedError>> + '_ {
        let prefix = self.org.fiscal_code.as_str().as_bytes().to_vec();
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix.clone()),
        };
        self.store
            .ledger
            .positions
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |item| {
                item.as_ref()
                    .map_or(true, |(k, _)| k.starts_with(prefix.as_slice()))
            })
            .filter_map(move |item| {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(e.into())),
                };
                match SledLedger::decode_position(&k, &v) {
                    Ok(p) => (p.status != PositionStatus::Invalid
                        && is_feed_position(&p)
                        && self.in_scope(p.service_code.as_deref()))
                    .then_some(Ok((k, v, p))),
                    Err(e) => Some(Err(e.into())),
                }
            })
    }

    /// FULL guards (FORMAT.md §5.6): empty file, cancel ratio. The ratio's denominator is the
    /// number of in-scope installments after the load (existing ∪ new rows).
    pub(crate) fn full_guard(&self) -> Result<Option<FeedFileError>, FeedError> {
        if self.rec.rows_total == 0 && !self.opts.allow_empty {
            return Ok(Some(FeedFileError::new(
                ErrorCode::FullFeedGuard,
                "flusso completo senza righe: conferma dell'operatore richiesta (allowEmpty=false)",
            )));
        }
        let mut existing = 0u64;
        let mut matched = 0u64;
        let mut cancels = 0u64;
        for item in self.scope_scan(None) {
            let (_, _, p) = item?;
            for o in &p.payment_options {
                let Some(iud) = meta_get(o, meta::IUD) else {
                    continue;
                };
                existing += 1;
                if self.seen_iud(iud)? {
                    matched += 1;
                } else if !p.status.has_payments() && o.status == OptionStatus::PoUnpaid {
                    cancels += 1;
                }
            }
        }
        let file_iuds = self
            .rec
            .rows_total
            .saturating_sub(self.dup_rows.len() as u64);
        let denominator = existing + file_iuds.saturating_sub(matched);
        if cancels.saturating_mul(1000)
            > u64::from(self.opts.max_cancel_permille).saturating_mul(denominator)
        {
            return Ok(Some(FeedFileError::new(
                ErrorCode::FullFeedGuard,
                format!(
                    "il flusso completo annullerebbe {cancels} rate su {denominator} (oltre il \
                     {}‰ ammesso): conferma dell'operatore richiesta",
                    self.opts.max_cancel_permille
                ),
            )));
        }
        Ok(None)
    }

    /// Pass 2: groups rows by position (row group) and applies the groups in batches of
    /// [`LoadOptions::batch_positions`], one transaction per batch.
    pub(crate) fn apply_rows(
        &mut self,
        source: &dyn FeedSource,
        name_version: Option<FeedVersion>,
        progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
    ) -> Result<ProgressControl, FeedError> {
        let input = open_source(source)?;
        let reader = FeedReader::new(input, self.read_options(name_version))
            .map_err(|e| FeedError::Io(e.to_string()))?;
        let positional = reader.version().is_positional();
        let skip_to = self.rec.last_committed_row;
        let limit = self.opts.batch_positions.max(1);
        // the rows of the batch, and its groups as ranges of them (no allocation per group;
        // the vectors are reused from batch to batch)
        let mut rows: Vec<FeedRow> = Vec::new();
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut start = 0usize;
        let mut group_key = String::new();
        for row in reader {
            let row = row.map_err(|e| FeedError::Io(e.to_string()))?;
            if row.number <= skip_to {
                continue;
            }
            let open = rows.len() > start;
            let same_group = !positional
                && open
                && match &row.record {
                    Ok(r) => r.iupd == group_key,
                    Err(_) => row.echo.iupd == group_key,
                };
            if open && !same_group {
                groups.push(start..rows.len());
                start = rows.len();
                if groups.len() >= limit || rows.len() >= MAX_BATCH_ROWS {
                    if self.process_batch(&rows, &groups, progress)? == ProgressControl::Stop {
                        return Ok(ProgressControl::Stop);
                    }
                    rows.clear();
                    groups.clear();
                    start = 0;
                }
            }
            if !same_group && !positional {
                group_key.clear();
                group_key.push_str(match &row.record {
                    Ok(r) => &r.iupd,
                    Err(_) => &row.echo.iupd,
                });
            }
            rows.push(row);
        }
        if rows.len() > start {
            groups.push(start..rows.len());
        }
        if !groups.is_empty()
            && self.process_batch(&rows, &groups, progress)? == ProgressControl::Stop
        {
            return Ok(ProgressControl::Stop);
        }
        Ok(ProgressControl::Continue)
    }
}
