//! Fuzzes the Alertmanager webhook parser: no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = medic::ingest::alertmanager::parse(data, chrono::Utc::now());
});
