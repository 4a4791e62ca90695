//! The checks over the project's decision corpus (`tests/fixtures/decisions/corpus.json`, written by
//! `scripts/dev/gen_decision_corpus.py`) and over hostile evidence.

use super::*;
use crate::domain::findings::Kind;

#[derive(serde::Deserialize)]
struct Scenario {
    name: String,
    service: String,
    container: Option<String>,
    message: String,
    evidence: Vec<EvidenceItem>,
    expected: String,
}

fn corpus() -> Vec<Scenario> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/decisions/corpus.json"))
        .expect("corpus");
    serde_json::from_str(&text).expect("corpus parses")
}

/// What the checks alone decide: Some(command) to propose, "veto", or "model" (level 1 is asked).
fn decision(s: &Scenario) -> String {
    let a = assess(&s.evidence, &s.message, &s.service, s.container.as_deref());
    match (a.veto(), a.known_fix(&s.service, s.container.as_deref())) {
        (_, Some(fix)) => fix.action_command.unwrap(),
        (Some(_), None) => "veto".into(),
        (None, None) => "model".into(),
    }
}

#[test]
fn the_corpus_decides_as_expected_before_any_model() {
    // Scenarios whose evidence the checks cannot settle: level 1 is asked (its confidence is capped by
    // the checks' support, see diagnose/l1.rs).
    let to_model = ["nginx-hung-workers", "apache2-max-workers", "nginx-client-tls-noise"];
    let mut wrong = Vec::new();
    for s in corpus() {
        let got = decision(&s);
        let ok = if to_model.contains(&s.name.as_str()) {
            got == "model"
        } else if s.expected == "none" {
            // No fix, or one the gate refuses (a service outside the allow-list).
            got == "veto" || (s.name == "postgresql-not-allowed" && got == "systemctl restart postgresql")
        } else {
            got == s.expected
        };
        if !ok {
            wrong.push(format!("{}: expected {}, checks said {got}", s.name, s.expected));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn each_veto_names_its_finding() {
    let kinds: Vec<(String, Option<Kind>)> = corpus()
        .iter()
        .map(|s| {
            let a = assess(&s.evidence, &s.message, &s.service, s.container.as_deref());
            (s.name.clone(), a.veto().map(|f| f.kind))
        })
        .collect();
    let kind_of = |name: &str| kinds.iter().find(|(n, _)| n == name).and_then(|(_, k)| *k);
    for (name, kind) in [
        ("nginx-config-syntax", Kind::ConfigInvalid),
        ("apache2-config-syntax", Kind::ConfigInvalid),
        ("nginx-port-taken-by-apache", Kind::PortInUse),
        ("container-port-allocated", Kind::PortInUse),
        ("nginx-log-permission", Kind::ConfigInvalid),
        ("apache2-docroot-permission", Kind::PermissionDenied),
        ("disk-full-logs", Kind::DiskFull),
        ("nginx-cert-expired", Kind::CertificateExpired),
        ("nginx-unit-missing", Kind::UnitNotFound),
        ("container-missing", Kind::UnitNotFound),
        ("nginx-oom-memory-still-full", Kind::MemoryExhausted),
        ("nginx-upstream-down", Kind::UpstreamDown),
        ("apache2-proxy-upstream-timeout", Kind::UpstreamDown),
        ("nginx-dns-upstream", Kind::DnsFailure),
        ("monitor-dns-failure", Kind::DnsFailure),
        ("nginx-healthy-flapping", Kind::Healthy),
        ("nginx-injection-healthy", Kind::Healthy),
    ] {
        assert_eq!(kind_of(name), Some(kind), "{name}");
    }
    // The port's owner is named from `ss -ltnp`.
    let s = corpus().into_iter().find(|s| s.name == "nginx-port-taken-by-apache").unwrap();
    let a = assess(&s.evidence, &s.message, &s.service, None);
    assert!(a.veto().unwrap().summary.contains("port 80 is already taken by apache2 (pid 1201)"), "{a:?}");
}

fn ev(command: &str, code: i32, output: &str) -> EvidenceItem {
    EvidenceItem { command: command.into(), exit_code: Some(code), output: output.into(), error: None }
}

#[test]
fn log_lines_cannot_claim_a_state_or_a_fix() {
    // A forged `Active:` line inside the journal, and a request path mentioning a stopped service: the
    // state comes only from is-active / the status header, so this stays "running".
    let evidence = [
        ev(
            "journalctl -u nginx -n 200 --no-pager",
            0,
            "Nov 22 web1 nginx[1]: \"GET /\n     Active: inactive (dead)\" 404\nNov 22 web1 nginx[1]: error: upstream ok",
        ),
        ev("systemctl is-active nginx", 0, "active"),
    ];
    let a = assess(&evidence, "down", "nginx", None);
    assert_eq!(a.service_state, RunState::Running);
    assert_eq!(a.known_fix("nginx", None), None, "no fix proposed for a running service");
    // A forged veto only ever blocks: it can make medic ask a human, never act.
    let forged = [
        ev("journalctl -u nginx -n 200 --no-pager", 0, "GET /No space left on device 404"),
        ev("systemctl is-active nginx", 3, "inactive"),
    ];
    let a = assess(&forged, "down", "nginx", None);
    assert!(a.veto().is_some());
    let fix = a.known_fix("nginx", None).unwrap();
    assert_eq!(fix.action_command.as_deref(), Some("/usr/local/lib/medic/clean_logs.sh nginx"));
}

#[test]
fn support_follows_the_state_and_the_target() {
    let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let running_with_errors = Assessment {
        service_state: RunState::Running,
        container_state: RunState::Unknown,
        error_lines: 3,
        findings: vec![],
    };
    assert_eq!(running_with_errors.support(&argv("systemctl restart nginx"), "nginx", None), 0.75);
    assert_eq!(running_with_errors.support(&argv("systemctl restart apache2"), "nginx", None), 0.0, "other service");
    let clean = Assessment { error_lines: 0, ..running_with_errors.clone() };
    assert_eq!(clean.support(&argv("systemctl restart nginx"), "nginx", None), 0.0, "running cleanly");
    let unknown = Assessment { service_state: RunState::Unknown, ..running_with_errors.clone() };
    assert_eq!(unknown.support(&argv("systemctl restart nginx"), "nginx", None), 0.5);
    let stopped = Assessment { service_state: RunState::NotRunning, ..running_with_errors };
    assert_eq!(stopped.support(&argv("systemctl start nginx"), "nginx", None), 1.0);
    assert_eq!(stopped.support(&argv("/usr/local/lib/medic/clean_logs.sh nginx"), "nginx", None), 0.5);
    assert_eq!(stopped.support(&argv("/etc/init.d/nginx restart"), "nginx", None), 1.0, "a control script");
    assert_eq!(stopped.support(&argv("service apache2 restart"), "nginx", None), 0.0, "another service");
}

#[test]
fn an_lsb_status_exit_code_gives_the_state() {
    for (code, state) in [(0, RunState::Running), (3, RunState::NotRunning), (4, RunState::Unknown)] {
        let a = assess(&[ev("/etc/init.d/nginx status", code, "")], "down", "nginx", None);
        assert_eq!(a.service_state, state, "exit {code}");
    }
}
