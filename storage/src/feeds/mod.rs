//! The feed store and load engine (FORMAT.md §5.5–§5.7): load records, row outcomes, the
//! pre-scan work set, and the parse → plan → write engine that batches positions, indexes,
//! outcomes and the checkpoint into one sled transaction. Files by concern: `types` (what
//! callers see), `keys` (trees and key layout), `records`, `outcomes` (and the two reports),
//! `seen` (pre-scan work set), `engine` (state of a load), `rows` (row rules against the
//! organization and the stored position), `plan`, `commit`, `cancel` (FULL mode), `load`
//! (`load_feed`), `output` (compatibility copies, RESULT.zip, received-file record). The
//! transports and the pipeline around it are in the `mpay-feeds` crate.
//!
//! Applying bulk debt-position feeds to the ledger (FORMAT.md §5.5–§5.7; DESIGN §5 `FeedLoader`).
//!
//! [`load_feed`] reads a feed twice, streaming: a **pre-scan** (file-level errors such as
//! `FILE_ENCODING` reject the whole file before anything is applied; in-file duplicate IUDs and
//! non-contiguous positions are found; FULL-mode guards are evaluated), then the **apply** pass
//! by row groups (= one position, all its rows, FORMAT.md §5.6 "Atomicity"), each validated and
//! applied all-or-nothing. Groups are committed in **batches**
//! ([`LoadOptions::batch_positions`], default [`DEFAULT_BATCH_POSITIONS`]): the positions with
//! their index entries, the per-row outcomes and the feed record checkpoint of a whole batch go
//! in **one** sled transaction. A crash therefore leaves the ledger exactly at a committed
//! checkpoint — no half-applied position, nothing applied beyond the checkpoint — and the load
//! resumes after it ([`LoadOptions::resume`]) or is marked failed ([`mark_failed`]). Positions
//! written by a feed also carry the flow id in their option metadata (re-applying a group of a
//! load interrupted by an older version, which checkpointed separately, stays idempotent).
//!
//! Each group is planned against the store and the groups planned before it in the same batch
//! (IUV / notice-number uniqueness, existing positions); the transaction then only re-checks
//! that nothing changed concurrently (compare-and-swap on the stored bytes, index holders) and,
//! if something did, the batch is split and planned again.
//!
//! Memory stays bounded whatever the file: rows are streamed; a batch holds at most 4096 rows;
//! outcomes go to the store with their batch; the pre-scan's work set (the file's IUDs and
//! IUPDs) is kept in memory up to 96 MiB, then in the `feed_seen` tree; FULL mode streams the
//! organization's positions instead of listing them.
//!
//! Trees (own, opened from the store's `sled::Db`):
//! - `feeds`: `org ++ flowId` → [`FeedLoadRecord`]
//! - `feed_outcomes`: `org ++ flowId ++ 0x00 ++ 0x01 ++ firstRow(u64 BE) ++ '+'` → up to 12
//!   consecutive row outcomes (packed: JSON arrays, not objects); `... ++ 0x01 ++
//!   row(u64 BE)` → one row outcome (written by earlier versions); `... ++ 0x02 ++ IUD` (FULL-mode
//!   derived lines) → [`StoredOutcome`]
//! - `feed_seen`: `org ++ flowId ++ 0x00 ++ 'I' ++ IUD` / `'P' ++ IUPD` → ∅ (work set of the
//!   pre-scan when it outgrew memory), `'C'` → key of the last position handled by the FULL-mode
//!   cancellations (resume point); removed when the load ends

mod cancel;
mod commit;
mod engine;
mod keys;
mod load;
mod outcomes;
pub mod output;
mod plan;
mod records;
mod rows;
mod seen;
#[cfg(test)]
mod tests;
mod types;

pub use load::load_feed;
pub use outcomes::{outcomes, write_iuv_exchange, write_outcome_report, StoredOutcome};
pub use records::{get_feed, interrupted_feeds, list_feeds, mark_failed, reject_file};
pub use types::*;
