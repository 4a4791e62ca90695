//! Evidence signatures: the log lines that mattered, normalised so the same fault looks the same twice.
//! Numbers, ids, hashes, UUIDs, timestamps, IPs and ports are masked.

use std::sync::LazyLock;

use regex::Regex;

use crate::domain::EvidenceItem;

static MASKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<time>"),
        (r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2}\b", "<time>"),
        (r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
        (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
        (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<ip>"),
        (r"(?i)\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b", "<ip>"),
        (r"(?i)\b(?:0x)?[0-9a-f]{8,}\b", "<hex>"),
        (r"\b\d+(?:\.\d+)?\b", "<n>"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("signature masks compile"), r))
    .collect()
});

static INTERESTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)error|fail|fatal|panic|exception|denied|refused|unreachable|timed? ?out|oom|out of memory|killed|no space|disk full|cannot|can't|unable|emerg|crit|too many|exhaust|segfault|core dump|expired|certificate|restart|exited|dead|inactive",
    )
    .expect("interesting-line regex compiles")
});

/// Masks the volatile parts of one log line and trims it.
pub fn normalize_line(line: &str) -> String {
    let mut out = line.trim().to_string();
    for (re, mask) in MASKS.iter() {
        out = re.replace_all(&out, *mask).into_owned();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Up to `max` distinct normalised lines that look like they matter, from the alert message and the
/// output of the evidence commands that ran.
pub fn signature(message: &str, evidence: &[EvidenceItem], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |line: &str| {
        let n = normalize_line(line);
        if n.len() >= 8 && !out.contains(&n) && out.len() < max {
            out.push(n);
        }
    };
    push(message);
    // Only what the host said: a collection error (timeout, lost connection) describes medic's access to
    // the host, not the fault, and would make the same fault look different under load.
    for item in evidence.iter().filter(|i| i.error.is_none()) {
        for line in item.output.lines().rev().filter(|l| INTERESTING.is_match(l)).take(max) {
            push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_parts_are_masked() {
        let cases = [
            (
                "2026-11-22T03:35:13.562Z nginx[1234]: connect() failed (111: Connection refused) to 10.0.0.5:8080",
                "<time> nginx[<n>]: connect() failed (<n>: Connection refused) to <ip>",
            ),
            (
                "Nov 22 04:35:13 web1 kernel: Killed process 4711 (java)",
                "<time> web1 kernel: Killed process <n> (java)",
            ),
            ("request 3f2b6c1e-9a4d-4e1b-8c2f-0123456789ab failed", "request <uuid> failed"),
            ("commit deadbeefcafe1234 broke it", "commit <hex> broke it"),
        ];
        for (line, want) in cases {
            assert_eq!(normalize_line(line), want);
        }
    }

    #[test]
    fn the_same_fault_twice_gives_the_same_signature() {
        let a = EvidenceItem {
            command: "journalctl".into(),
            exit_code: Some(0),
            output:
                "Nov 22 04:35:13 web1 nginx[111]: bind() to 0.0.0.0:80 failed (98: Address already in use)\nok line"
                    .into(),
            error: None,
        };
        let b =
            EvidenceItem { output: a.output.replace("04:35:13", "09:01:02").replace("[111]", "[999]"), ..a.clone() };
        assert_eq!(signature("down", &[a], 10), signature("down", &[b], 10));
    }
}
