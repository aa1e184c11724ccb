//! The outputs of a load written into its job's output folder (FORMAT.md §5.5, §5.7), each
//! through a temporary file renamed at the end: `<basename>-ESITO.csv` (always),
//! `-IUV-EXCHANGE.csv`, the compatibility copies (`_SCARTI.csv` or `ERROR-….csv`; `_IUV.csv`
//! or `_iuv.csv`) when they have lines, and `<basename>-RESULT.zip` with all of them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mpay_messages::OrgFiscalCode;
use mpay_storage::feeds::{
    write_iuv_exchange, write_outcome_report, FeedError, FeedSource, FileSource,
};
use mpay_storage::feeds_output::{
    output_plan, write_iuv_copy, write_rejects_copy, write_result_zip,
};
use mpay_storage::Store;

use crate::spool::FeedJob;

/// Writes `dir/name` through a temporary file; `write` returns the lines written and the file
/// is kept only if `keep(lines)`. Returns the path when kept.
fn write_atomically(
    dir: &Path,
    name: &str,
    keep: impl Fn(u64) -> bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<u64, FeedError>,
) -> std::io::Result<Option<PathBuf>> {
    let target = dir.join(name);
    let part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)?;
    let mut w = std::io::BufWriter::new(part);
    let n = write(&mut w).map_err(|e| std::io::Error::other(e.to_string()))?;
    w.flush()?;
    let part = w.into_inner().map_err(|e| e.into_error())?;
    if keep(n) {
        part.persist(&target).map_err(|e| e.error)?;
        Ok(Some(target))
    } else {
        Ok(None)
    }
}

/// Writes the outputs of `job` into its `out_dir` (nothing when it has none); `csv` is the
/// stored CSV (for the compatibility copies). Returns the files written.
///
/// # Errors
/// File-system and storage errors.
pub fn write_outputs(
    store: &Store,
    org: &OrgFiscalCode,
    job: &FeedJob,
    csv: Option<PathBuf>,
) -> std::io::Result<Vec<PathBuf>> {
    let Some(out) = &job.out_dir else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(out)?;
    let flow = job.flow_id.as_str();
    let csv = csv.map(FileSource);
    let src = csv.as_ref().map(|c| c as &dyn FeedSource);
    let plan = output_plan(store, org, flow, &job.file_name, src)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut written = Vec::new();
    let report = job.report_name.as_deref().unwrap_or(&plan.outcome);
    written.extend(write_atomically(
        out,
        report,
        |_| true,
        |w| write_outcome_report(store, org, flow, w),
    )?);
    if let Some(name) = &plan.iuv_exchange {
        written.extend(write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_iuv_exchange(store, org, flow, w),
        )?);
    }
    if let Some(name) = &plan.rejects {
        written.extend(write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_rejects_copy(store, org, flow, plan.flavour, src, w),
        )?);
    }
    if let (Some(name), Some(src)) = (&plan.iuv_copy, src) {
        written.extend(write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_iuv_copy(store, org, flow, src, w),
        )?);
    }
    written.extend(write_atomically(
        out,
        &plan.result_zip,
        |_| true,
        |w| {
            write_result_zip(store, org, flow, &job.file_name, src, w)
                .map(|(_, entries)| entries.len() as u64)
        },
    )?);
    Ok(written)
}
