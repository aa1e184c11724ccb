//! Outputs of a feed load beyond the outcome report and the IUV exchange file (FORMAT.md §5.2,
//! §5.5, §5.7): the MyPay / PU compatibility copies, `<basename>-RESULT.zip`, and the record of
//! what was received (our SHA-256, the checksum the Ente declared and whether it matched).
//!
//! The copies join the stored outcomes (in row order, streaming from [`outcomes`]) with a
//! second reading of the stored upload ([`FeedSource`]): rejected rows are copied verbatim from
//! the file, accepted rows are re-serialised from it, so nothing grows with the file.
//!
//! Tree (own): `feed_files`: `org ++ flowId` → [`FeedFileInfo`].

use std::io::{BufReader, Write};

use chrono::{DateTime, Utc};
use mpay_messages::feeds::checksum::{ExpectedChecksum, FileDigests};
use mpay_messages::feeds::compat::{
    canonical_header, iuv_exchange_file_name, outcome_file_name, result_zip_name, CompatFlavour,
    IuvCopyLayout, IuvCopyWriter, RawRows, RejectsWriter, ResultZip,
};
use mpay_messages::feeds::{
    FeedFileName, FeedMode, FeedReader, FeedVersion, ReadOptions, RowOutcome,
};
use mpay_messages::OrgFiscalCode;
use serde::{Deserialize, Serialize};

use super::outcomes::{outcomes, write_iuv_exchange, write_outcome_report};
use super::records::get_feed;
use super::types::{FeedError, FeedLoadRecord, FeedSource};
use crate::codec::{decode, encode};
use crate::Store;

/// One declared checksum and what was found (FORMAT.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChecksumCheck {
    /// What the Ente declared, and where.
    pub expected: ExpectedChecksum,
    /// What we computed with the same algorithm.
    pub actual: Option<String>,
    /// Equal.
    pub matched: bool,
}

/// What was received for a load (tree `feed_files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedFileInfo {
    /// File name as uploaded.
    pub file_name: String,
    /// Our digests of the bytes as received (the zip or the CSV).
    pub digests: FileDigests,
    /// The declared checksums (sidecars, `checksum` parameter) and their result.
    pub checks: Vec<ChecksumCheck>,
    /// When the digests were computed.
    pub received_at: DateTime<Utc>,
}

impl FeedFileInfo {
    /// Checks `expected` against `digests`.
    pub fn new(file_name: &str, digests: FileDigests, expected: &[ExpectedChecksum]) -> Self {
        let checks = expected
            .iter()
            .map(|e| ChecksumCheck {
                expected: e.clone(),
                actual: e.actual(&digests).map(str::to_string),
                matched: e.matches(&digests),
            })
            .collect();
        Self {
            file_name: file_name.to_string(),
            digests,
            checks,
            received_at: Utc::now(),
        }
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &ChecksumCheck> {
        self.checks.iter().filter(|c| !c.matched)
    }
}

fn files_tree(store: &Store) -> Result<sled::Tree, FeedError> {
    Ok(store.db.open_tree("feed_files")?)
}

fn file_key(org: &OrgFiscalCode, flow_id: &str) -> Vec<u8> {
    let mut k = org.as_str().as_bytes().to_vec();
    k.extend_from_slice(flow_id.as_bytes());
    k
}

/// Stores what was received for a load (replacing an earlier one of the same flow id).
///
/// # Errors
/// Storage errors.
pub fn put_file_info(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    info: &FeedFileInfo,
) -> Result<(), FeedError> {
    files_tree(store)?.insert(file_key(org, flow_id), encode(info)?)?;
    Ok(())
}

/// What was received for a load, if recorded.
///
/// # Errors
/// Storage errors.
pub fn get_file_info(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
) -> Result<Option<FeedFileInfo>, FeedError> {
    let key = file_key(org, flow_id);
    match files_tree(store)?.get(&key)? {
        Some(b) => Ok(Some(decode("feed_files", &key, &b)?)),
        None => Ok(None),
    }
}

fn io(e: std::io::Error) -> FeedError {
    FeedError::Io(e.to_string())
}

/// The version of a load: detected, else the file-name token, else the CSV's header.
fn version_of(
    rec: Option<&FeedLoadRecord>,
    file_name: &str,
    csv: Option<&dyn FeedSource>,
) -> Option<FeedVersion> {
    if let Some(v) = rec.and_then(|r| r.version) {
        return Some(v);
    }
    if let Ok(n) = FeedFileName::parse(file_name) {
        return Some(n.version);
    }
    let input = csv?.open().ok()?;
    let opts = ReadOptions {
        mode: FeedMode::Full,
        ..ReadOptions::default()
    };
    FeedReader::new(input, opts).ok().map(|r| r.version())
}

/// The outputs of a finished (or failed, or held) load and their names (FORMAT.md §5.5, §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// `<basename>`.
    pub basename: String,
    /// MyPay (1.x input) or PU (2.0 input; also when the version is unknown).
    pub flavour: CompatFlavour,
    /// `<basename>-ESITO.csv` (always).
    pub outcome: String,
    /// `<basename>-IUV-EXCHANGE.csv`, when at least one row got or confirmed an IUV.
    pub iuv_exchange: Option<String>,
    /// `<basename>_SCARTI.csv` / `ERROR-<basename>.csv`, when a row (or the file) was rejected.
    pub rejects: Option<String>,
    /// `<basename>_IUV.csv` / `<basename>_iuv.csv`, when at least one row was accepted.
    pub iuv_copy: Option<String>,
    /// `<basename>-RESULT.zip`.
    pub result_zip: String,
}

/// `name.csv` / `name.zip` → `name`.
pub fn basename_of(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let lower = base.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".zip") {
        base.get(..base.len() - 4).unwrap_or(base).to_string()
    } else {
        base.to_string()
    }
}

/// Which outputs a load has: one scan of its stored outcomes.
///
/// # Errors
/// Storage errors.
pub fn output_plan(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    file_name: &str,
    csv: Option<&dyn FeedSource>,
) -> Result<OutputPlan, FeedError> {
    let rec = get_feed(store, org, flow_id)?;
    let flavour = version_of(rec.as_ref(), file_name, csv)
        .map(CompatFlavour::for_version)
        .unwrap_or(CompatFlavour::Pu);
    let mut rejected = rec
        .as_ref()
        .is_some_and(|r| r.error.is_some() && r.groups_committed == 0);
    let (mut accepted, mut exchange) = (false, false);
    for o in outcomes(store, org, flow_id)? {
        let o = o?;
        exchange |= o.iuv.is_some();
        if o.line.row.is_some() {
            match o.line.outcome {
                RowOutcome::Ko => rejected = true,
                RowOutcome::Ok | RowOutcome::Warn => accepted = true,
            }
        }
        if exchange && rejected && accepted {
            break;
        }
    }
    let basename = basename_of(file_name);
    Ok(OutputPlan {
        flavour,
        outcome: outcome_file_name(&basename),
        iuv_exchange: exchange.then(|| iuv_exchange_file_name(&basename)),
        rejects: rejected.then(|| flavour.rejects_file_name(&basename)),
        iuv_copy: (accepted && csv.is_some()).then(|| flavour.iuv_file_name(&basename)),
        result_zip: result_zip_name(&basename),
        basename,
    })
}

/// Writes the rejects copy (FORMAT.md §5.7): `<basename>_SCARTI.csv` for 1.x input (MyPay
/// codes), `ERROR-<basename>.csv` for 2.0 input (PU codes). The original header +
/// `;cod_rifiuto;de_rifiuto`; each rejected data row copied verbatim from `csv` +
/// `;<code>;<description>`; a file-level failure is one line with empty data columns (the
/// canonical 1.x header stands in when the CSV cannot be read). Returns the lines written
/// after the header (0 = the file need not be delivered).
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for read / write errors.
pub fn write_rejects_copy(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    flavour: CompatFlavour,
    csv: Option<&dyn FeedSource>,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let rec = get_feed(store, org, flow_id)?;
    let mut raw = match csv {
        Some(s) => Some(RawRows::new(BufReader::new(s.open().map_err(io)?)).map_err(io)?),
        None => None,
    };
    let recorded_name = rec.as_ref().map(|r| r.file_name.as_str()).unwrap_or("");
    let canonical = version_of(rec.as_ref(), recorded_name, None).and_then(canonical_header);
    let (header, data_columns): (Option<Vec<u8>>, usize) = match raw
        .as_ref()
        .and_then(|r| r.header().map(|h| (h, r.header_fields())))
    {
        Some((h, n)) => (Some(h.to_vec()), n),
        None => match &canonical {
            Some(c) => (Some(c.clone().into_bytes()), c.split(';').count()),
            None => (None, 0),
        },
    };
    let mut w = RejectsWriter::new(out, header.as_deref()).map_err(io)?;
    let mut n = 0u64;
    if let Some(e) = rec
        .as_ref()
        .and_then(|r| r.error.as_ref().filter(|_| r.groups_committed == 0))
    {
        let (code, desc) = flavour.reject_fields(
            &[e.code.as_str().to_string()],
            std::slice::from_ref(&e.message),
        );
        w.write_empty_row(data_columns, &code, &desc).map_err(io)?;
        n += 1;
    }
    for o in outcomes(store, org, flow_id)? {
        let line = o?.line;
        let Some(row) = line.row.filter(|_| line.outcome == RowOutcome::Ko) else {
            continue;
        };
        let (code, desc) = flavour.reject_fields(&line.codes, &line.descriptions);
        let mut written = false;
        if let Some(r) = raw.as_mut() {
            loop {
                match r.next_row().map_err(io)? {
                    Some((number, bytes)) if number == row => {
                        w.write_row(bytes, &code, &desc).map_err(io)?;
                        written = true;
                        break;
                    }
                    Some((number, _)) if number < row => continue,
                    _ => break,
                }
            }
        }
        if !written {
            w.write_empty_row(data_columns, &code, &desc).map_err(io)?;
        }
        n += 1;
    }
    w.finish().map_err(io)?;
    Ok(n)
}

/// Writes the IUV copy (FORMAT.md §5.5): 1.x input → MyPay `<basename>_IUV.csv` (the original
/// header; every accepted row re-serialised at full width with `codIuv` filled and amounts
/// `0.00`); 2.0 input → PU `<basename>_iuv.csv` (the §2.2 layout). Returns the lines written
/// after the header.
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for read / write errors (also a CSV that no longer reads).
pub fn write_iuv_copy(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    csv: &dyn FeedSource,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let rec = get_feed(store, org, flow_id)?.ok_or(FeedError::NotFound)?;
    let opts = ReadOptions {
        mode: rec.mode,
        ..ReadOptions::default()
    };
    let mut reader =
        FeedReader::new(csv.open().map_err(io)?, opts).map_err(|e| FeedError::Io(e.to_string()))?;
    let layout = IuvCopyLayout::new(reader.version(), &|c| reader.column_index(c));
    let header = match layout.flavour() {
        CompatFlavour::Pu => IuvCopyLayout::pu_header().into_bytes(),
        CompatFlavour::Mypay => RawRows::new(BufReader::new(csv.open().map_err(io)?))
            .map_err(io)?
            .header()
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
    };
    let mut w = IuvCopyWriter::new(out, &header).map_err(io)?;
    let mut n = 0u64;
    for o in outcomes(store, org, flow_id)? {
        let line = o?.line;
        let Some(row) = line.row.filter(|_| line.outcome != RowOutcome::Ko) else {
            continue;
        };
        for r in reader.by_ref() {
            let r = r.map_err(|e| FeedError::Io(e.to_string()))?;
            if r.number < row {
                continue;
            }
            if r.number == row {
                w.write(&layout.row(&r.raw, &line.iuv, &line.performed))
                    .map_err(io)?;
                n += 1;
            }
            break;
        }
    }
    w.finish().map_err(io)?;
    Ok(n)
}

/// Writes `<basename>-RESULT.zip` (FORMAT.md §5.7) to `out`, streaming (no seek): the outcome
/// report, the IUV exchange file and the compatibility copies that the load has (see
/// [`OutputPlan`]). `csv` is the stored CSV of the upload (`None` when there is none, e.g. a
/// zip without a CSV). Returns the output and the entry names.
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for read / write errors.
pub fn write_result_zip<W: Write>(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    file_name: &str,
    csv: Option<&dyn FeedSource>,
    out: W,
) -> Result<(W, Vec<String>), FeedError> {
    let plan = output_plan(store, org, flow_id, file_name, csv)?;
    let mut z = ResultZip::new(out, Utc::now());
    write_outcome_report(store, org, flow_id, z.entry(&plan.outcome).map_err(io)?)?;
    if let Some(name) = &plan.iuv_exchange {
        write_iuv_exchange(store, org, flow_id, z.entry(name).map_err(io)?)?;
    }
    if let Some(name) = &plan.rejects {
        write_rejects_copy(
            store,
            org,
            flow_id,
            plan.flavour,
            csv,
            z.entry(name).map_err(io)?,
        )?;
    }
    if let (Some(name), Some(csv)) = (&plan.iuv_copy, csv) {
        write_iuv_copy(store, org, flow_id, csv, z.entry(name).map_err(io)?)?;
    }
    z.finish().map_err(io)
}
