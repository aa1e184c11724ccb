//! The FdR side of `NodeChannel` (SPEC §9.3): downloads an organization's reporting flows from
//! pagoPA's FdR API for organizations (`fdr_organization.json`) and stores every revision it
//! does not have yet, through the same storage path as a file import.
//!
//! - list: `GET {base}/organizations/{org}/fdrs?page=&size=&publishedGt=<cursor>` (all pages);
//! - for each (flow, PSP, revision) not stored: the header
//!   `GET …/fdrs/{fdr}/revisions/{rev}/psps/{psp}` and every page of
//!   `GET …/psps/{psp}/payments?page=&size=`, decoded by `messages::fdr::rest` (amounts from
//!   the JSON text, odd rows flagged, never fatal);
//! - the organization's cursor (`published` of the last flow stored, in order) advances only
//!   past flows that were stored: a flow that failed is fetched again next time. One flow's
//!   failure never stops the others.

use std::time::Duration;

use chrono::Utc;
use mpay_messages::fdr::{rest, Flow};
use mpay_storage::reconciliation::{FlowImport, StoredFlow};
use mpay_storage::Store;
use serde::Serialize;

/// How to reach the FdR API.
#[derive(Clone)]
pub struct FdrApi {
    /// Base URL up to the version (`https://api.platform.pagopa.it/fdr-org/service/v1`).
    pub base_url: String,
    /// `Ocp-Apim-Subscription-Key` (a secret: never logged).
    pub subscription_key: Option<String>,
    /// Page size (≤ 1000).
    pub page_size: u32,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for FdrApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdrApi")
            .field("base_url", &self.base_url)
            .field(
                "subscription_key",
                &self.subscription_key.as_ref().map(|_| "***"),
            )
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// A flow that could not be fetched or stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncFailure {
    /// Flow id.
    pub fdr: String,
    /// PSP.
    pub psp_id: String,
    /// Revision.
    pub revision: u32,
    /// Why.
    pub error: String,
}

/// What a synchronisation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Flows listed by the API after the cursor.
    pub listed: usize,
    /// Flows (revisions) fetched and stored now.
    pub stored: usize,
    /// Of which higher revisions of flows already known.
    pub revisions: usize,
    /// Listed but already stored.
    pub already_known: usize,
    /// Flows that failed (fetched again next time).
    pub failed: Vec<SyncFailure>,
    /// Of the stored, flows addressed to another organization (stored with the flag
    /// `OtherReceiver`, not reconciled).
    pub flagged: usize,
    /// The cursor after this run (`publishedGt` of the next).
    pub cursor: Option<String>,
    /// The flow ids stored now (the caller publishes `FdrAcquired` for each, once durable).
    pub acquired: Vec<String>,
}

/// Why a synchronisation could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The list call failed.
    #[error("the FdR API could not be listed: {0}")]
    List(String),
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] mpay_storage::StorageError),
}

fn join(e: tokio::task::JoinError) -> SyncError {
    SyncError::Storage(e.into())
}

impl FdrApi {
    fn client(&self) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| e.to_string())
    }

    async fn get(
        &self,
        http: &reqwest::Client,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, String> {
        let mut req = http
            .get(url)
            .query(query)
            .header("Accept", "application/json");
        if let Some(k) = &self.subscription_key {
            req = req.header("Ocp-Apim-Subscription-Key", k);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                format!("unreachable: {e}")
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let snippet: String = text.chars().take(300).collect();
            return Err(format!("HTTP {}: {snippet}", status.as_u16()));
        }
        Ok(body.to_vec())
    }

    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    async fn fetch_flow(
        &self,
        http: &reqwest::Client,
        org: &str,
        fdr: &str,
        revision: u32,
        psp: &str,
    ) -> Result<Flow, String> {
        let flow_url = format!(
            "{}/organizations/{org}/fdrs/{fdr}/revisions/{revision}/psps/{psp}",
            self.base()
        );
        let header = self.get(http, &flow_url, &[]).await?;
        let mut pages = Vec::new();
        let mut page = 1u32;
        loop {
            let body = self
                .get(
                    http,
                    &format!("{flow_url}/payments"),
                    &[
                        ("page", page.to_string()),
                        ("size", self.page_size.to_string()),
                    ],
                )
                .await?;
            let (_, info) = rest::decode_payments(&body, 1).map_err(|e| e.to_string())?;
            pages.push(body);
            if page >= info.tot_page || page >= 100_000 {
                break;
            }
            page += 1;
        }
        rest::decode_flow(&header, pages.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
    }

    /// Downloads and stores the flows of `org` published after its cursor.
    ///
    /// # Errors
    /// [`SyncError`] when the list cannot be read or the store fails; a single flow's failure
    /// is in the report instead.
    pub async fn sync(&self, store: &Store, org: &str) -> Result<SyncReport, SyncError> {
        let http = self.client().map_err(SyncError::List)?;
        let cursor = {
            let (s, o) = (store.clone(), org.to_string());
            tokio::task::spawn_blocking(move || s.reconciliation.cursor(&o))
                .await
                .map_err(join)??
        };
        // every page of the list
        let mut entries = Vec::new();
        let mut page = 1u32;
        loop {
            let url = format!("{}/organizations/{org}/fdrs", self.base());
            let mut query = vec![
                ("page", page.to_string()),
                ("size", self.page_size.to_string()),
            ];
            if let Some(c) = &cursor {
                query.push(("publishedGt", c.clone()));
            }
            let body = self
                .get(&http, &url, &query)
                .await
                .map_err(SyncError::List)?;
            let list = rest::decode_list(&body).map_err(|e| SyncError::List(e.to_string()))?;
            entries.extend(list.data);
            if page >= list.metadata.tot_page || page >= 100_000 {
                break;
            }
            page += 1;
        }
        entries.sort_by(|a, b| a.published.cmp(&b.published));
        let mut report = SyncReport {
            listed: entries.len(),
            cursor: cursor.clone(),
            ..SyncReport::default()
        };
        let mut blocked = false;
        for e in entries {
            let known = {
                let (s, o, f, p, r) = (
                    store.clone(),
                    org.to_string(),
                    e.fdr.clone(),
                    e.psp_id.clone(),
                    e.revision,
                );
                tokio::task::spawn_blocking(move || s.reconciliation.has_flow(&o, &f, &p, r))
                    .await
                    .map_err(join)??
            };
            let outcome = if known {
                report.already_known += 1;
                Ok(())
            } else {
                match self
                    .fetch_flow(&http, org, &e.fdr, e.revision, &e.psp_id)
                    .await
                {
                    Ok(mut flow) => {
                        let receiver = flow.header.receiver_id.trim().to_string();
                        if receiver != org {
                            // stored and flagged: it never blocks the cursor or the others
                            tracing::warn!(org, fdr = %e.fdr, %receiver, "FdR flow addressed to another organization: kept, flagged, not reconciled");
                            flow.flags
                                .push(mpay_messages::fdr::FlowFlag::OtherReceiver { receiver });
                            report.flagged += 1;
                        }
                        let stored = StoredFlow {
                            organization: org.to_string(),
                            flow,
                            source: "fdr-api".to_string(),
                            acquired_at: Utc::now(),
                        };
                        let (s, o) = (store.clone(), org.to_string());
                        let put = tokio::task::spawn_blocking(move || {
                            s.reconciliation.put_flow(&o, &stored)
                        })
                        .await
                        .map_err(join)??;
                        report.stored += 1;
                        report.acquired.push(e.fdr.clone());
                        if put == FlowImport::Revision {
                            report.revisions += 1;
                        }
                        Ok(())
                    }
                    Err(why) => Err(why),
                }
            };
            match outcome {
                Ok(()) if !blocked => report.cursor = Some(e.published.clone()),
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(org, fdr = %e.fdr, psp = %e.psp_id, %error, "FdR flow not acquired; retried at the next sync");
                    blocked = true;
                    report.failed.push(SyncFailure {
                        fdr: e.fdr,
                        psp_id: e.psp_id,
                        revision: e.revision,
                        error,
                    });
                }
            }
        }
        if report.cursor != cursor {
            if let Some(c) = report.cursor.clone() {
                let (s, o) = (store.clone(), org.to_string());
                tokio::task::spawn_blocking(move || s.reconciliation.set_cursor(&o, &c))
                    .await
                    .map_err(join)??;
            }
        }
        metrics::counter!("mpay_fdr_flows_acquired_total").increment(report.stored as u64);
        metrics::counter!("mpay_fdr_flows_failed_total").increment(report.failed.len() as u64);
        Ok(report)
    }
}
