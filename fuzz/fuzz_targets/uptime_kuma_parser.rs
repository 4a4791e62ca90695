//! Fuzzes the Uptime Kuma JSON parser: no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = medic::ingest::uptime_kuma::parse_json(text, chrono::Utc::now());
    }
});
