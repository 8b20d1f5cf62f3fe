//! relaywatch's library: everything the sidecar binary runs, public so integration tests can use it.

pub mod catalog;
pub mod classify;
pub mod cli;
pub mod exporter;
pub mod exposition;
pub mod http;
pub mod leak_guard;
pub mod log;
pub mod sockdiag;
pub mod sources;
pub mod traffic;
pub mod verify;
