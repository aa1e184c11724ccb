//! The REST API for Ente systems (`/api/v1`).

pub mod feeds;
pub mod model;
pub mod positions;
pub mod receipts;
pub mod warnings;
