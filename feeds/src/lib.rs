//! Bulk debt-position feeds as one capability (FORMAT.md §5; DESIGN §5 `FeedLoader`).
//!
//! Every transport — the `mpay feed load` CLI, the FTP server, the drop folder, the REST upload
//! and the `FeedLoader` actor — hands a file to the one [`FeedService`], which runs the one
//! pipeline:
//!
//! 1. **spool** ([`spool`]): the upload is kept in `<data_dir>/feeds/<org>/<flowId>/` with the
//!    job that describes it (`job.json`), so a crash leaves all that a resume needs;
//! 2. **integrity and container** ([`pipeline`]): our SHA-256 stored, declared checksums
//!    verified, a zip extracted with the configured limits (`[feeds] zip_*`) — a failure is a
//!    FAILED load record with the file-level code, whatever the transport;
//! 3. **parse → plan → write** (`mpay_storage::feeds::load_feed`: rows streamed, each position
//!    planned against the store and written in batches with its outcomes and checkpoint; FULL
//!    mode cancels the absent installments after the rows);
//! 4. **outputs** ([`outputs`]): `-ESITO.csv`, `-IUV-EXCHANGE.csv`, the MyPay / PU copies and
//!    `-RESULT.zip` into the job's output folder.
//!
//! The row formats and the pure row rules live in `mpay_messages::feeds`; the feed store (load
//! records, outcomes, the batched ledger writes) in `mpay_storage::feeds`.

pub mod org;
pub mod outputs;
pub mod pipeline;
pub mod service;
pub mod spool;

pub use org::{feed_org, feed_orgs, zip_limits};
pub use service::{FeedService, SubmitError};
pub use spool::{flow_id_for, output_basename, FeedJob, Intent};
