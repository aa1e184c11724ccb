//! Row outcomes as stored (packed chunks) and the two reports streamed from them (`-ESITO.csv`, `-IUV-EXCHANGE.csv`).

use crate::codec::decode;
use crate::Store;
use mpay_messages::OrgFiscalCode;
use std::io::Write;

use mpay_messages::feeds::{
    IuvExchangeLine, IuvExchangeWriter, IuvKind, OutcomeLine, OutcomeWriter, RowOutcome,
};
use serde::{Deserialize, Serialize};

use super::keys::*;
use super::records::*;
use super::types::*;

/// One stored outcome: the report line and, when the row got or confirmed an IUV, its IUV
/// exchange line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutcome {
    /// `-ESITO.csv` line.
    pub line: OutcomeLine,
    /// `-IUV-EXCHANGE.csv` line.
    pub iuv: Option<IuvExchangeLine>,
}

/// A row outcome as stored in a chunk of `feed_outcomes`: the report line as a JSON array (no
/// field names: about half the bytes of [`StoredOutcome`]'s JSON, and faster to read back),
/// and of its IUV exchange line only what the report line does not already say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Packed(
    Option<u64>,
    String,
    String,
    String,
    RowOutcome,
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
    /// IUV exchange line: `indiceOpzionePagamento`, `tipoIuv`, `codiceFiscaleEnte`; the rest
    /// equals the report line.
    Option<(u32, IuvKind, String)>,
    /// IUV exchange line that differs from the report line in some other field (in full).
    Option<IuvExchangeLine>,
);

impl Packed {
    pub(crate) fn pack(o: StoredOutcome) -> Self {
        let StoredOutcome { line: l, iuv } = o;
        let (short, full) = match iuv {
            Some(x)
                if Some(x.row) == l.row
                    && x.iupd == l.iupd
                    && x.iud == l.iud
                    && x.iuv == l.iuv
                    && x.nav == l.nav
                    && x.amount == l.amount
                    && x.due_date == l.due_date
                    && x.performed == l.performed =>
            {
                (Some((x.option_index, x.kind, x.org_fiscal_code)), None)
            }
            other => (None, other),
        };
        Packed(
            l.row,
            l.iupd,
            l.iud,
            l.requested,
            l.outcome,
            l.performed,
            l.iuv,
            l.nav,
            l.amount,
            l.due_date,
            l.codes,
            l.descriptions,
            short,
            full,
        )
    }

    pub(crate) fn unpack(self) -> StoredOutcome {
        let Packed(
            row,
            iupd,
            iud,
            requested,
            outcome,
            performed,
            iuv,
            nav,
            amount,
            due_date,
            codes,
            descriptions,
            short,
            full,
        ) = self;
        let xl = match (short, full) {
            (Some((option_index, kind, org_fiscal_code)), _) => Some(IuvExchangeLine {
                row: row.unwrap_or(0),
                iupd: iupd.clone(),
                iud: iud.clone(),
                option_index,
                kind,
                iuv: iuv.clone(),
                nav: nav.clone(),
                org_fiscal_code,
                amount: amount.clone(),
                due_date: due_date.clone(),
                performed: performed.clone(),
            }),
            (None, full) => full,
        };
        StoredOutcome {
            line: OutcomeLine {
                row,
                iupd,
                iud,
                requested,
                outcome,
                performed,
                iuv,
                nav,
                amount,
                due_date,
                codes,
                descriptions,
            },
            iuv: xl,
        }
    }
}

/// The stored outcomes of a load in report order (rows, then FULL-mode derived lines).
///
/// # Errors
/// Storage errors.
pub fn outcomes(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
) -> Result<impl Iterator<Item = Result<StoredOutcome, FeedError>>, FeedError> {
    let t = Trees::open(store)?;
    let prefix = sub_prefix(&feed_key(org, flow_id));
    // `prefix ++ 0x01 ++ row(8) ++ CHUNK_MARK`: a chunk of row outcomes
    let chunk_len = prefix.len() + 1 + 8 + 1;
    let tag_at = prefix.len();
    Ok(t.outcomes.scan_prefix(prefix).flat_map(move |item| {
        let one = |r: Result<StoredOutcome, FeedError>| vec![r];
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => return one(Err(e.into())),
        };
        if k.len() == chunk_len && k.get(tag_at) == Some(&1) && k.last() == Some(&CHUNK_MARK) {
            match decode::<Vec<Packed>>("feed_outcomes", &k, &v) {
                Ok(chunk) => chunk.into_iter().map(|p| Ok(p.unpack())).collect(),
                Err(e) => one(Err(e.into())),
            }
        } else {
            one(decode::<StoredOutcome>("feed_outcomes", &k, &v).map_err(Into::into))
        }
    }))
}

/// Writes `<basename>-ESITO.csv` (FORMAT.md §5.7), streaming; returns the lines written. A
/// file-level failure is written as one line with the file code.
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for write errors.
pub fn write_outcome_report(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let mut w = OutcomeWriter::new(out).map_err(io)?;
    let mut n = 0;
    if let Some(r) = get_feed(store, org, flow_id)? {
        if let Some(e) = r.error.as_ref().filter(|_| r.groups_committed == 0) {
            w.write(&OutcomeLine {
                row: e.row,
                iupd: String::new(),
                iud: String::new(),
                requested: String::new(),
                outcome: RowOutcome::Ko,
                performed: "SCARTATO".into(),
                iuv: String::new(),
                nav: String::new(),
                amount: String::new(),
                due_date: String::new(),
                codes: vec![e.code.as_str().into()],
                descriptions: vec![e.message.clone()],
            })
            .map_err(io)?;
            n += 1;
        }
    }
    for o in outcomes(store, org, flow_id)? {
        w.write(&o?.line).map_err(io)?;
        n += 1;
    }
    w.finish().map_err(io)?;
    Ok(n)
}

/// Writes `<basename>-IUV-EXCHANGE.csv` (FORMAT.md §5.5), streaming; returns the lines written
/// (0 = the file need not be delivered).
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for write errors.
pub fn write_iuv_exchange(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let mut w = IuvExchangeWriter::new(out).map_err(io)?;
    let mut n = 0;
    for o in outcomes(store, org, flow_id)? {
        if let Some(l) = o?.iuv {
            w.write(&l).map_err(io)?;
            n += 1;
        }
    }
    w.finish().map_err(io)?;
    Ok(n)
}
