//! The REST API for Ente systems (`/api/v1`).

pub mod model;
pub mod positions;
