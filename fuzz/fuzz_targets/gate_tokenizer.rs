//! Fuzzes the gate's tokenizer and checker: no input panics, and anything allowed is made only of safe
//! words and renders back to the same words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::gate::tokenize::{fold_for_blocklist, is_safe_word, tokenize};
use medic::gate::{Authority, Gate, GateConfig, Verdict};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = fold_for_blocklist(text);
    if let Ok(words) = tokenize(text) {
        assert!(words.iter().all(|w| is_safe_word(w)));
    }
    thread_local! {
        static GATE: Gate = Gate::from_config(&GateConfig::default()).unwrap();
    }
    GATE.with(|gate| {
        for authority in [Authority::Automatic, Authority::Human] {
            if let Verdict::Allow(cmd) = gate.check(text, None, authority) {
                let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
                assert_eq!(cmd.argv(), words.as_slice());
            }
        }
    });
});
