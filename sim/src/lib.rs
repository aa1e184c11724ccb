//! `pagopa-sim`: the pagoPA Node and PSP simulator (DESIGN §8).
//!
//! It plays the pagoPA Node (and the PSPs behind it) against the station's paForNode SOAP
//! endpoint: verify → getPayment(V2) → sendRT(V2) flows with retries, duplicate and Stand-In
//! receipts and unknown notices (`psp`), and replays of request files (`replay`). Every answer is
//! validated against the official XSDs with libxml2. `fdr` plays the PSPs' reporting side: the
//! flows of the payments it made, served on the FdR REST API, and the bank credits settling them
//! (`bank`: camt.053, OPI giornale di cassa).
//!
//! The simulator is independent of the platform's codecs on purpose: it depends on no `mpay-*`
//! crate, writes its XML from its own templates and reads answers with its own small parser, so a
//! codec bug in the station cannot hide behind itself.

pub mod amount;
pub mod bank;
pub mod biz_events;
pub mod build;
pub mod checkout;
#[cfg(feature = "xsd")]
pub mod client;
pub mod config;
pub mod fdr;
pub mod fdr_cli;
pub mod model;
pub mod nav;
#[cfg(feature = "xsd")]
pub mod psp;
#[cfg(feature = "xsd")]
pub mod replay;
pub mod rest;
pub mod stats;
#[cfg(feature = "xsd")]
pub mod validate;
pub mod xml;
