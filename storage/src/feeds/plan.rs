//! Planning one row group (one position): stored state, uniqueness of IUVs and notice numbers, IUV generation (Tipo B).

use chrono::Utc;
use mpay_messages::{NoticeLayout, NoticeNumber};
use std::collections::{BTreeMap, HashSet};

use mpay_messages::feeds::{ErrorCode, FeedRow, IuvKind, NoticeRequest, RowAction};
use mpay_messages::position::{DebtPosition, PositionStatus};

use crate::ledger::{
    claim_conflict, position_key, unique_claims, unique_releases, LedgerError, SledLedger,
};

use super::engine::*;
use super::types::*;

impl Ctx<'_> {
    /// The stored (or, earlier in this batch, planned) state of a position.
    pub(crate) fn lookup(
        &self,
        iupd: &str,
        earlier: &[GroupPlan<'_>],
        view: &BatchView,
    ) -> Result<(Option<DebtPosition>, Expect), FeedError> {
        if let Some(w) = view
            .positions
            .get(iupd)
            .and_then(|i| earlier.get(*i))
            .and_then(|p| p.write.as_ref())
        {
            return Ok((Some(w.new.clone()), Expect::Batch));
        }
        let key = position_key(self.org.fiscal_code.as_str(), iupd);
        match self.store.ledger.positions.get(&key)? {
            Some(bytes) => Ok((
                Some(SledLedger::decode_position(&key, &bytes)?),
                Expect::Bytes(bytes),
            )),
            None => Ok((None, Expect::Absent)),
        }
    }

    /// Who holds an index key (0 notice number, 1 IUV): a position planned earlier in this
    /// batch, else the store.
    pub(crate) fn holder(
        &self,
        tree: usize,
        key: &[u8],
        view: &BatchView,
    ) -> Result<Option<Vec<u8>>, FeedError> {
        if let Some(h) = view.claims.get(&(tree, key.to_vec())) {
            return Ok(h.as_ref().map(|s| s.as_bytes().to_vec()));
        }
        let t = if tree == 0 {
            &self.store.ledger.by_notice
        } else {
            &self.store.ledger.by_iuv
        };
        Ok(t.get(key)?.map(|v| v.to_vec()))
    }

    /// Whether a generated number (sequence `seq`) is free: not claimed in this batch and not in
    /// the store (as of the last window scan; the transaction checks again).
    pub(crate) fn number_free(
        &self,
        seq: u64,
        n: &NoticeNumber,
        layout: &NoticeLayout,
        view: &mut BatchView,
    ) -> Result<bool, FeedError> {
        let org = self.org.fiscal_code.as_str();
        let nav_key = position_key(org, n.as_str());
        let iuv_key = position_key(org, n.iuv().as_str());
        if view.claimed(0, &nav_key) || view.claimed(1, &iuv_key) {
            return Ok(false);
        }
        let covered = view
            .window
            .as_ref()
            .is_some_and(|w| w.layout == *layout && w.lo <= seq && seq < w.hi);
        if !covered {
            let hi = seq.saturating_add(NUMBER_WINDOW);
            let Ok(end) = layout.generate(hi) else {
                // the end of the sequence: look the number up
                return Ok(self.holder(0, &nav_key, view)?.is_none()
                    && self.holder(1, &iuv_key, view)?.is_none());
            };
            let l = &*self.store.ledger;
            let mut taken = HashSet::new();
            for (t, tree, from, to) in [
                (0, &l.by_notice, &nav_key, position_key(org, end.as_str())),
                (
                    1,
                    &l.by_iuv,
                    &iuv_key,
                    position_key(org, end.iuv().as_str()),
                ),
            ] {
                for item in tree.range(from.clone()..to) {
                    taken.insert((t, item?.0.to_vec()));
                }
            }
            view.window = Some(NumberWindow {
                layout: *layout,
                lo: seq,
                hi,
                taken,
            });
        }
        Ok(view
            .window
            .as_ref()
            .is_none_or(|w| !w.taken.contains(&(0, nav_key)) && !w.taken.contains(&(1, iuv_key))))
    }

    /// Validates one row group against the store (and the groups planned before it in the
    /// batch) and plans its write; nothing is written here except IUV sequence blocks.
    pub(crate) fn plan_group<'r>(
        &self,
        rows: &'r [FeedRow],
        earlier: &[GroupPlan<'_>],
        view: &mut BatchView,
    ) -> Result<GroupPlan<'r>, FeedError> {
        let mut work: Vec<Work<'r>> = rows
            .iter()
            .map(|row| Work {
                issues: Vec::new(),
                performed: "SCARTATO",
                kind: None,
                nav: None,
                due: None,
                row,
            })
            .collect();
        for w in &mut work {
            self.org_checks(w);
        }
        let iupd = work
            .iter()
            .find_map(|w| w.record().map(|r| r.iupd.clone()))
            .or_else(|| work.first().map(|w| w.row.echo.iupd.clone()))
            .unwrap_or_default();
        let (existing, expect) = if iupd.is_empty() {
            (None, Expect::Absent)
        } else {
            self.lookup(&iupd, earlier, view)?
        };
        for w in &mut work {
            let mut pre = self.ledger_checks(w, existing.as_ref());
            pre.append(&mut w.issues);
            w.issues = pre;
        }
        let rejected = |work| GroupPlan { work, write: None };
        // build the new state
        let mut new_pos: Option<DebtPosition> = None;
        if work
            .iter()
            .all(|w| w.issues.is_empty() && w.record().is_some())
        {
            new_pos = self.build_group(&mut work, existing.as_ref());
        }
        let all_ok = work
            .iter()
            .all(|w| w.issues.is_empty() && w.row.record.is_ok());
        if !all_ok {
            let any_bad = work
                .iter()
                .any(|w| !w.issues.is_empty() || w.row.record.is_err());
            for w in &mut work {
                if w.issues.is_empty() && w.row.record.is_ok() && any_bad {
                    w.issues.push(issue(
                        ErrorCode::RowPositionRejected,
                        format!("posizione {iupd} scartata per errori su altre righe"),
                    ));
                }
            }
            return Ok(rejected(work));
        }
        let mut pos = match new_pos {
            Some(p) => p,
            None => return Ok(rejected(work)),
        };
        let needs_write = existing.as_ref().is_none_or(|e| !same_position(e, &pos));
        if self.opts.dry_run {
            return Ok(rejected(work));
        }
        // generate IUVs (Tipo B); numbers are never handed out twice (durable blocks)
        let org = self.org.fiscal_code.as_str();
        let mut generation_error = None;
        // index keys of the numbers generated here: free in the store (checked by
        // `next_notice`) and in this batch (checked below)
        let mut fresh: Vec<(usize, Vec<u8>)> = Vec::new();
        for w in &mut work {
            if w.kind == Some(IuvKind::B) && w.nav.is_none() {
                // the code of the row's service (its back-office), else the organization's
                let layout = w
                    .record()
                    .and_then(|r| self.service(&r.tipo_dovuto))
                    .and_then(|s| s.layout.as_ref())
                    .unwrap_or(&self.org.layout);
                // numbers held in the store or claimed earlier in this batch are skipped
                let generated = loop {
                    match self
                        .store
                        .ledger
                        .next_notice_candidate(&self.org.fiscal_code, layout)
                    {
                        Ok((seq, n)) => {
                            if self.number_free(seq, &n, layout, view)? {
                                break Ok(n);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                match generated {
                    Ok(n) => {
                        fresh.push((0, position_key(org, n.as_str())));
                        fresh.push((1, position_key(org, n.iuv().as_str())));
                        let iud = w.record().map(|r| r.iud.as_str()).unwrap_or_default();
                        if let Some(o) = pos
                            .payment_options
                            .iter_mut()
                            .find(|o| meta_get(o, meta::IUD) == Some(iud))
                        {
                            o.nav = n.clone();
                            o.iuv = n.iuv();
                        }
                        w.nav = Some(n);
                    }
                    Err(LedgerError::Storage(e)) => return Err(e.into()),
                    Err(e) => {
                        generation_error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(e) = generation_error {
            for w in &mut work {
                w.issues.push(issue(
                    ErrorCode::IuvGenerationFailed,
                    format!("generazione IUV non riuscita: {e}"),
                ));
            }
            return Ok(rejected(work));
        }
        if !needs_write {
            return Ok(rejected(work));
        }
        // a notice being paid (paGetPayment answered, token not expired) keeps its number and
        // amounts and is not cancelled, whatever way the change arrives (issue 9.13)
        if let Some(old) = &existing {
            if let Err(e) = self.payment_guard(old, &pos)? {
                for w in &mut work {
                    w.issues.push(issue(ErrorCode::RowInvalidStatus, e.clone()));
                    w.performed = "SCARTATO";
                }
                return Ok(rejected(work));
            }
        }
        // the ledger's bookkeeping, as `create_many` / `modify` would do it
        match &existing {
            None => pos.revision = 1,
            Some(e) => {
                pos.organization_fiscal_code = e.organization_fiscal_code.clone();
                pos.iupd = e.iupd.clone();
                pos.inserted_date = e.inserted_date;
                pos.revision = e.revision.saturating_add(1);
                pos.last_updated_date = Utc::now();
            }
        }
        // IUV / notice number uniqueness per organization (store and this batch)
        let claims = unique_claims(existing.as_ref(), &pos);
        for (t, k) in &claims {
            let holder = if fresh.iter().any(|(ft, fk)| ft == t && fk == k) {
                None
            } else {
                self.holder(*t, k, view)?
            };
            if let Some(h) = holder {
                if h != pos.iupd.as_bytes() {
                    let e = claim_conflict(*t, k, &h);
                    for w in &mut work {
                        w.issues
                            .push(issue(ErrorCode::RowIuvDuplicate, e.to_string()));
                        w.performed = "SCARTATO";
                    }
                    return Ok(rejected(work));
                }
            }
        }
        for (t, k) in unique_releases(existing.as_ref(), &pos) {
            view.claims.insert((t, k), None);
        }
        for (t, k) in claims {
            view.claims.insert((t, k), Some(pos.iupd.clone()));
        }
        Ok(GroupPlan {
            work,
            write: Some(PlannedWrite::new(existing, pos, expect)?),
        })
    }

    /// The domain's rule on payments in progress (`DebtPosition::may_replace_with`) for a row
    /// group that turns `old` into `new` (a cancellation counts as a removal of its notices):
    /// `Ok(Err(message))` with the Italian reason when refused.
    pub(crate) fn payment_guard(
        &self,
        old: &DebtPosition,
        new: &DebtPosition,
    ) -> Result<Result<(), String>, FeedError> {
        let now = Utc::now();
        let until = self.store.ledger.payments_in_progress(old, now)?;
        if until.is_empty() {
            return Ok(Ok(()));
        }
        let target = (new.status != PositionStatus::Invalid).then_some(new);
        Ok(old
            .may_replace_with(target, &|nav| until.get(nav).copied(), now)
            .map_err(|e| payment_in_progress_it(&e)))
    }

    /// Applies the rows of a group to the stored position in memory; records issues
    /// (immutable fields, option consistency) in `work`.
    pub(crate) fn build_group(
        &self,
        work: &mut [Work],
        existing: Option<&DebtPosition>,
    ) -> Option<DebtPosition> {
        let live = existing
            .filter(|p| p.status != PositionStatus::Invalid)
            .cloned();
        let first = work
            .iter()
            .find_map(|w| w.record().filter(|r| r.action != Some(RowAction::Annul)));
        let mut pos = match (&live, first) {
            (Some(p), _) => p.clone(),
            (None, Some(r)) => {
                let mut p = self.new_position(r);
                if let Some(e) = existing {
                    p.inserted_date = e.inserted_date;
                }
                p
            }
            (None, None) => existing.cloned()?, // only annulments of a cancelled position
        };
        let mut annulled: Vec<String> = Vec::new();
        let mut option_types: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        for w in work.iter_mut() {
            let Some(r) = w.record() else {
                continue;
            };
            w.due = r.due_date;
            let idx = pos
                .payment_options
                .iter()
                .position(|o| meta_get(o, meta::IUD) == Some(r.iud.as_str()));
            if r.action == Some(RowAction::Annul) {
                match (existing.map(|p| p.status), idx) {
                    (Some(PositionStatus::Invalid), _) | (_, None) => {
                        w.performed = "INVARIATO";
                        if let Some(o) = existing.and_then(|p| {
                            p.payment_options
                                .iter()
                                .find(|o| meta_get(o, meta::IUD) == Some(r.iud.as_str()))
                        }) {
                            w.nav = Some(o.nav.clone());
                            w.kind = iuv_kind_of(o);
                        }
                    }
                    (_, Some(i)) => {
                        if let Some(o) = pos.payment_options.get(i) {
                            w.nav = Some(o.nav.clone());
                            w.kind = iuv_kind_of(o);
                        }
                        annulled.push(r.iud.clone());
                        w.performed = "ANNULLATO";
                    }
                }
                continue;
            }
            let entry = option_types
                .entry(r.option_index)
                .or_insert((r.option_type.as_str().to_string(), 0));
            entry.1 += 1;
            if entry.0 != r.option_type.as_str()
                || (!r.option_type.is_installments() && entry.1 > 1)
            {
                w.issues.push(issue(
                    ErrorCode::RowOptionInconsistent,
                    format!(
                        "opzione {} della posizione {} incoerente (tipo o numero di rate)",
                        r.option_index, r.iupd
                    ),
                ));
            }
            if pos.debtor.fiscal_code != r.debtor.fiscal_code {
                let code = if idx.is_some() || live.is_some() {
                    ErrorCode::RowImmutableField
                } else {
                    ErrorCode::RowOptionInconsistent
                };
                w.issues.push(issue(
                    code,
                    "debitore diverso da quello della posizione (coobbligati non supportati)",
                ));
            }
            if pos.service_code.as_deref() != Some(r.tipo_dovuto.as_str()) {
                w.issues.push(issue(
                    if live.is_some() {
                        ErrorCode::RowImmutableField
                    } else {
                        ErrorCode::RowOptionInconsistent
                    },
                    "tipoDovuto diverso da quello della posizione",
                ));
            }
            match idx.and_then(|i| pos.payment_options.get(i).cloned().map(|o| (i, o))) {
                None => {
                    // new installment
                    let (kind, nav) = match (&r.notice, &w.nav) {
                        (NoticeRequest::Supplied { .. }, Some(n)) => (IuvKind::A, Some(n.clone())),
                        _ => (IuvKind::B, placeholder_nav(&self.org.layout)),
                    };
                    w.kind = Some(kind);
                    match nav.and_then(|nav| self.build_option(r, &nav, kind)) {
                        Some(opt) => pos.payment_options.push(opt),
                        None => w.issues.push(issue(
                            ErrorCode::RowBadBeneficiary,
                            "nessun IBAN configurato per il tipoDovuto",
                        )),
                    }
                    w.performed = "INSERITO";
                }
                Some((i, old)) => {
                    let kind = iuv_kind_of(&old).unwrap_or(IuvKind::A);
                    if let (NoticeRequest::Supplied { .. }, Some(n)) = (&r.notice, &w.nav) {
                        if *n != old.nav {
                            w.issues.push(issue(
                                ErrorCode::RowImmutableField,
                                "codIuv diverso da quello assegnato: non modificabile",
                            ));
                        }
                    }
                    let Some(mut opt) = self.build_option(r, &old.nav, kind) else {
                        w.issues.push(issue(
                            ErrorCode::RowBadBeneficiary,
                            "nessun IBAN configurato per il tipoDovuto",
                        ));
                        continue;
                    };
                    opt.status = old.status;
                    opt.payment_date = old.payment_date;
                    if opt.transfers.len() != old.transfers.len() {
                        w.issues.push(issue(
                            ErrorCode::RowImmutableField,
                            "numero di beneficiari non modificabile",
                        ));
                    }
                    for k in [meta::DATI_RISCOSSIONE, meta::GENERATE_IUV] {
                        if meta_get(&old, k).is_some() && meta_get(&old, k) != meta_get(&opt, k) {
                            w.issues.push(issue(
                                ErrorCode::RowImmutableField,
                                format!("{k} non modificabile"),
                            ));
                        }
                    }
                    w.kind = Some(kind);
                    w.nav = Some(old.nav.clone());
                    let ours = meta_get(&old, meta::FLOW) == Some(self.rec.flow_id.as_str());
                    if strip(&opt) == strip(&old) && pos.debtor == r.debtor {
                        w.performed = match (ours, r.action) {
                            (true, Some(RowAction::Insert)) => "INSERITO",
                            (true, _) if self.opts.resume => "MODIFICATO",
                            _ => "INVARIATO",
                        };
                    } else {
                        if let Some(slot) = pos.payment_options.get_mut(i) {
                            *slot = opt;
                        }
                        w.performed = "MODIFICATO";
                    }
                }
            }
            pos.debtor = r.debtor.clone();
        }
        if !annulled.is_empty() {
            let remaining = pos
                .payment_options
                .iter()
                .filter(|o| meta_get(o, meta::IUD).is_none_or(|i| !annulled.iter().any(|a| a == i)))
                .count();
            if remaining == 0 {
                pos.status = PositionStatus::Invalid;
            } else {
                pos.payment_options.retain(|o| {
                    meta_get(o, meta::IUD).is_none_or(|i| !annulled.iter().any(|a| a == i))
                });
            }
        }
        if pos.payment_options.len() > 100 {
            for w in work.iter_mut() {
                w.issues.push(issue(
                    ErrorCode::RowOptionInconsistent,
                    "troppe rate nella posizione (massimo 100)",
                ));
            }
        }
        Some(pos)
    }
}

/// The Italian reason a feed row gets when its position has a payment in progress.
pub(crate) fn payment_in_progress_it(e: &mpay_messages::domain::position::PositionError) -> String {
    match e {
        mpay_messages::domain::position::PositionError::PaymentInProgress { nav, until } => {
            format!(
                "pagamento in corso sull'avviso {nav} fino alle {}: numero avviso e importi non \
                 possono cambiare e la posizione non puo' essere annullata prima di allora",
                mpay_messages::time::rome_datetime(*until).format("%H:%M del %d/%m/%Y")
            )
        }
        other => other.to_string(),
    }
}
