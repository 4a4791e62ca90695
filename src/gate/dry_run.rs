//! The dry-run switch: on when the config says so, when `medic serve --dry-run` was given, or when an
//! operator turned it on through the API (that last one is persisted, so a restart keeps it on).
//! While on, everything runs except execution, which records "would run".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Store key for the API toggle.
pub const STATE_KEY: &str = "dry_run_api";

#[derive(Debug, Clone)]
pub struct DryRun {
    config: bool,
    cli: bool,
    api: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DryRunState {
    pub enabled: bool,
    pub config: bool,
    pub cli: bool,
    pub api: bool,
}

impl DryRun {
    pub fn new(config: bool, cli: bool, api: bool) -> Self {
        Self { config, cli, api: Arc::new(AtomicBool::new(api)) }
    }

    pub fn is_on(&self) -> bool {
        self.config || self.cli || self.api.load(Ordering::SeqCst)
    }

    pub fn set_api(&self, on: bool) {
        self.api.store(on, Ordering::SeqCst);
    }

    pub fn state(&self) -> DryRunState {
        DryRunState { enabled: self.is_on(), config: self.config, cli: self.cli, api: self.api.load(Ordering::SeqCst) }
    }
}
