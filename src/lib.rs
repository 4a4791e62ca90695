//! medic: turns monitoring alerts into verified fixes, safely.
//!
//! The module tree mirrors the pipeline; see ARCHITECTURE.md for the map and the invariants.

pub mod approval;
pub mod audit;
pub mod charts;
pub mod cli;
pub mod collect;
pub mod conf;
pub mod config;
pub mod diagnose;
pub mod doctor;
pub mod domain;
pub mod execute;
pub mod fault;
pub mod gate;
pub mod health;
pub mod ingest;
pub mod inventory;
pub mod memory;
pub mod notify;
pub mod pipeline;
pub mod probe;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod transport;
pub mod web;

use rand::RngCore;
use tracing_subscriber::EnvFilter;

/// A random URL-safe token with `n_bytes` of entropy.
pub fn random_token(n_bytes: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n_bytes];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Installs the global tracing subscriber (`RUST_LOG` overrides `log.level`). Safe to call twice.
pub fn init_logging(config: &config::LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Pretty => builder.try_init(),
    };
}
