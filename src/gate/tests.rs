//! Gate tests: a table where each rule has a command that hits it and a near miss, the adversarial corpus,
//! and property tests.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

/// Test rules: the shipped shape plus host overrides.
const RULES: &str = r#"{
  "safe_commands": {
    "service_management": {
      "mode": "auto",
      "allowed": ["systemctl restart {service}", "systemctl start {service}"],
      "allowed_services": ["nginx", "apache2", "docker"]
    },
    "docker": { "mode": "auto", "allowed": ["docker restart {container}"] },
    "scripts": { "mode": "approval", "allowed": ["/usr/local/lib/medic/clean_logs.sh {service}", "journalctl --vacuum-size={size}"] },
    "blocked_patterns": ["rm -rf", "shutdown", "mkfs", "killall"]
  },
  "placeholders": {
    "service": { "allowed": ["nginx", "apache2", "docker"] },
    "container": { "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$" },
    "lines": { "range": [1, 5000] },
    "size": { "allowed": ["200M", "1G"] }
  },
  "diagnostics": { "allowed": ["journalctl -u {service} -n {lines} --no-pager", "df -h", "docker logs --tail {lines} {container}"] },
  "hosts": {
    "db1": { "placeholders": { "service": { "allowed": ["postgresql"] } }, "disabled": ["docker"], "modes": { "service_management": "approval" } }
  }
}"#;

fn gate() -> Gate {
    Gate::from_rules_text(RULES).unwrap()
}

fn verdict(command: &str) -> Verdict {
    gate().check(command, None, Authority::Automatic)
}

#[track_caller]
fn expect(command: &str, host: Option<&str>, authority: Authority, kind: &str, reason_has: &str) {
    let v = gate().check(command, host, authority);
    assert_eq!(v.kind(), kind, "{command:?} on {host:?}: {}", v.reason());
    assert!(v.reason().contains(reason_has), "{command:?}: reason {:?} lacks {reason_has:?}", v.reason());
}

use Authority::{Automatic as Auto, Human};

#[test]
fn each_rule_has_a_hit_and_a_near_miss() {
    // (command, host, authority, verdict, the reason contains, why)
    type Case<'a> = (&'a str, Option<&'a str>, Authority, &'a str, &'a str, &'a str);
    let table: &[Case] = &[
        // (command, host, authority, verdict, reason contains, why)
        ("systemctl restart nginx", None, Auto, "allow", "systemctl restart {service}", "exact template"),
        ("systemctl restart nginx2", None, Auto, "deny", "not an allowed {service}", "near miss: value off the list"),
        (
            "   systemctl   restart   nginx  ",
            None,
            Auto,
            "allow",
            "service_management",
            "runs of plain spaces are harmless",
        ),
        ("systemctl restart nginx --host=x", None, Auto, "deny", "wrong number of words", "extra flag after the unit"),
        ("systemctl --host=x restart nginx", None, Auto, "deny", "wrong number of words", "extra flag before the verb"),
        ("systemctl --now nginx", None, Auto, "deny", "expected `restart`", "a flag in place of the verb"),
        ("systemctl restart --now", None, Auto, "deny", "option injection", "an option where a value belongs"),
        ("systemctl stop nginx", None, Auto, "deny", "expected", "verb not in any template"),
        ("sudo systemctl restart nginx", None, Auto, "deny", "`sudo` prefix", "sudo prefix"),
        ("env systemctl restart nginx", None, Auto, "deny", "`env` prefix", "env prefix"),
        ("exec systemctl restart nginx", None, Auto, "deny", "`exec` prefix", "exec prefix"),
        ("command systemctl restart nginx", None, Auto, "deny", "`command` prefix", "command prefix"),
        ("FOO=1 systemctl restart nginx", None, Auto, "deny", "environment assignment", "VAR=value prefix"),
        ("/bin/systemctl restart nginx", None, Auto, "deny", "path `/bin/systemctl`", "absolute path"),
        (
            "/usr/local/lib/medic/clean_logs.sh nginx",
            None,
            Auto,
            "approval",
            "needs human approval",
            "path in the template itself",
        ),
        (
            "/usr/local/lib/medic/clean_logs.sh nginx",
            None,
            Human,
            "allow",
            "scripts",
            "a human approves the approval category",
        ),
        ("docker restart web-1", None, Auto, "allow", "docker restart {container}", "pattern placeholder"),
        ("docker restart -web", None, Auto, "deny", "option injection", "value starting with -"),
        ("docker restart a=b", None, Auto, "deny", "contains `=`", "= where the template has none"),
        ("journalctl --vacuum-size=200M", None, Auto, "approval", "needs human approval", "= in the template literal"),
        ("journalctl --vacuum-size=1K", None, Auto, "deny", "not an allowed {size}", "near miss on the = template"),
        ("docker restart killall", None, Human, "deny", "blocked pattern `killall`", "blocked even for a human"),
        ("docker restart killer", None, Human, "allow", "docker", "near miss of the blocked pattern"),
        ("rm -rf /tmp/x", None, Human, "deny", "blocked pattern `rm -rf`", "blocked pattern"),
        ("RM   -RF /", None, Auto, "deny", "blocked pattern `rm -rf`", "blocked pattern, case and spaces folded"),
        ("rm\t-rf /", None, Auto, "deny", "blocked pattern", "blocked pattern with a tab"),
        ("systemctl restart nginx; id", None, Auto, "deny", "command chaining", "metacharacter"),
        ("systemctl restart ngіnx", None, Auto, "deny", "non-ASCII", "cyrillic look-alike"),
        ("df -h", None, Auto, "deny", "no allowed command starts with `df`", "a diagnostic is not an action"),
        (
            "systemctl restart postgresql",
            Some("db1"),
            Human,
            "allow",
            "service_management",
            "host override adds a service",
        ),
        ("systemctl restart postgresql", None, Human, "deny", "not an allowed {service}", "not on other hosts"),
        (
            "systemctl restart postgresql",
            Some("db1"),
            Auto,
            "approval",
            "needs human approval",
            "host override of the mode",
        ),
        (
            "systemctl restart nginx",
            Some("db1"),
            Human,
            "deny",
            "not an allowed {service}",
            "host list replaces the global one",
        ),
        ("docker restart web", Some("db1"), Auto, "deny", "disabled on host `db1`", "category disabled on a host"),
        ("docker restart web", Some("web9"), Auto, "allow", "docker", "unknown hosts use the global rules"),
    ];
    for (command, host, authority, kind, reason, why) in table {
        let v = gate().check(command, *host, *authority);
        assert_eq!(v.kind(), *kind, "{why}: {command:?} → {}", v.reason());
        assert!(v.reason().contains(reason), "{why}: {command:?}: {:?} lacks {reason:?}", v.reason());
    }
    expect("systemctl start docker", None, Auto, "allow", "systemctl start {service}");
}

#[test]
fn allow_returns_the_canonical_argv() {
    let Verdict::Allow(cmd) = verdict("  systemctl    restart nginx ") else { panic!() };
    assert_eq!(cmd.argv(), ["systemctl", "restart", "nginx"]);
    assert_eq!(cmd.template(), "systemctl restart {service}");
    assert_eq!(cmd.display(), "systemctl restart nginx");
    assert_eq!(
        verdict("systemctl restart nginx").to_json(),
        serde_json::json!({
            "verdict": "allow",
            "reason": "matches template `systemctl restart {service}` (service_management, automatic)",
            "template": "systemctl restart {service}",
            "argv": ["systemctl", "restart", "nginx"]
        })
    );
}

#[test]
fn diagnostics_use_their_own_list() {
    let g = gate();
    let d = g.check_diagnostic("journalctl -u nginx -n 200 --no-pager", None).unwrap();
    assert_eq!(d.argv(), ["journalctl", "-u", "nginx", "-n", "200", "--no-pager"]);
    assert!(g.check_diagnostic("journalctl -u nginx -n 200", None).unwrap_err().contains("wrong number of words"));
    assert!(g.check_diagnostic("journalctl -u nginx -n 99999 --no-pager", None).unwrap_err().contains("{lines}"));
    assert!(g.check_diagnostic("systemctl restart nginx", None).is_err(), "an action is not a diagnostic");
    assert!(g.check_diagnostic("docker logs --tail 50 web;id", None).is_err());
}

#[test]
fn adversarial_corpus_never_allows() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gate/adversarial.jsonl")).unwrap();
    let shipped = Gate::from_config(&GateConfig::default()).unwrap();
    let test_gate = gate();
    let mut n = 0;
    let mut categories = HashSet::new();
    for line in text.lines() {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        let command = item["command"].as_str().unwrap();
        categories.insert(item["category"].as_str().unwrap().to_string());
        for g in [&shipped, &test_gate] {
            for authority in [Auto, Human] {
                let v = g.check(command, None, authority);
                assert_ne!(v.kind(), "allow", "{command:?} was allowed ({authority:?}): {}", v.reason());
                assert!(!v.reason().is_empty());
            }
            assert!(g.check_diagnostic(command, None).is_err(), "{command:?} passed as a diagnostic");
        }
        n += 1;
    }
    assert!(n >= 300, "corpus has {n} commands");
    assert!(categories.len() >= 10, "{categories:?}");
}

/// Every command the test rules allow for an automatic authority, one per line (placeholders enumerated).
fn all_auto_renderings() -> HashSet<String> {
    let mut out = HashSet::new();
    for s in ["nginx", "apache2", "docker"] {
        out.insert(format!("systemctl restart {s}"));
        out.insert(format!("systemctl start {s}"));
    }
    out
}

/// A gate whose placeholders are all enumerable, so "allowed" can be checked against every rendering.
fn enumerable_gate() -> Gate {
    Gate::from_rules_text(
        r#"{"safe_commands": {"svc": {"allowed": ["systemctl restart {service}", "systemctl start {service}"],
            "allowed_services": ["nginx", "apache2", "docker"]}, "blocked_patterns": ["rm -rf"]}}"#,
    )
    .unwrap()
}

fn normalise(command: &str) -> String {
    command.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

fn mutate(base: &str, ops: &[(u8, usize, char)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for (op, pos, c) in ops {
        let at = if chars.is_empty() { 0 } else { pos % (chars.len() + 1) };
        match op % 5 {
            0 => chars.insert(at, *c),
            1 if !chars.is_empty() => {
                chars.remove(at.min(chars.len() - 1));
            }
            2 if !chars.is_empty() => {
                let i = at.min(chars.len() - 1);
                chars[i] = *c;
            }
            3 => {
                let word: Vec<char> = format!(" {c}x").chars().collect();
                chars.splice(at..at, word);
            }
            _ => chars.insert(at, ' '),
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_are_allowed_only_when_they_render_a_template(s in "\\PC{0,60}") {
        let g = enumerable_gate();
        if let Verdict::Allow(cmd) = g.check(&s, None, Auto) {
            prop_assert!(all_auto_renderings().contains(&normalise(&s)), "{:?} allowed as {:?}", s, cmd.argv());
        }
    }

    #[test]
    fn random_ascii_is_allowed_only_when_it_renders_a_template(s in "[ -~\\t\\n]{0,40}") {
        let g = enumerable_gate();
        if let Verdict::Allow(_) = g.check(&s, None, Human) {
            prop_assert!(all_auto_renderings().contains(&normalise(&s)), "{:?}", s);
        }
    }

    #[test]
    fn mutations_of_allowed_commands_never_allow_anything_else(
        base in proptest::sample::select(all_auto_renderings().into_iter().collect::<Vec<_>>()),
        ops in proptest::collection::vec((0u8..5, 0usize..64, proptest::char::any()), 1..4),
    ) {
        let g = enumerable_gate();
        let mutated = mutate(&base, &ops);
        if let Verdict::Allow(cmd) = g.check(&mutated, None, Auto) {
            let normal = normalise(&mutated);
            prop_assert!(all_auto_renderings().contains(&normal), "{:?} allowed", mutated);
            prop_assert_eq!(cmd.display(), normal);
        }
    }

    #[test]
    fn tokenizer_never_panics(s in "\\PC*") {
        let _ = tokenize::tokenize(&s);
        let _ = tokenize::fold_for_blocklist(&s);
    }
}
