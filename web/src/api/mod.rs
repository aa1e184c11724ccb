//! The REST API for Ente systems (`/api/v1`).

pub mod documents;
pub mod feeds;
pub mod gpd;
pub mod model;
pub mod notifications;
pub mod positions;
pub mod receipts;
pub mod reconciliation;
pub mod recovery;
pub mod v3;
pub mod warnings;
