//! One integration test binary (keeps link time down), one module per area.

mod audit;
mod crash;
mod gate;
mod helpers;
mod ingest;
mod process;
mod scripts;
mod sshd;
mod transport;
