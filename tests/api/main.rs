//! One integration test binary (keeps link time down), one module per area.

mod audit;
mod crash;
#[allow(dead_code)] // helpers for the diagnosis tests, which come next
mod fake_llm;
mod gate;
mod helpers;
mod ingest;
mod memory;
mod process;
mod scripts;
mod sshd;
mod transport;
