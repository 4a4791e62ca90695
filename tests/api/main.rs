//! One integration test binary (keeps link time down), one module per area.

mod alertmanager;
mod approval;
mod approval_attacks;
mod audit;
mod browser;
mod crash;
mod decisions;
mod diagnose;
mod e2e;
mod edge;
mod fake_llm;
mod gate;
mod helpers;
mod hosts;
mod ingest;
mod memory;
mod metrics;
mod model_front;
mod notify;
mod process;
mod real_model;
mod scripts;
mod smtp;
mod sshd;
mod transport;
mod world;
