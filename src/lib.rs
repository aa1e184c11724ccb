//! The `mpay` composition root as a library, so that the binary and the end-to-end tests start
//! the platform the same way.

pub mod app;
pub mod feeds;
pub mod feeds_cli;
pub mod notices_cli;
pub mod recon_cli;
pub mod smtp;
