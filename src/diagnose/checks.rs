//! Level 0, evidence before opinion: deterministic checks over the collected evidence, run before any
//! model. They name what a reader of the evidence would see first (a configuration that fails its own
//! test, a port taken by another process, permission denied, a full disk, an expired certificate, a unit
//! that does not exist, memory still exhausted after an OOM kill, an upstream or DNS failure behind a
//! running service, a running service with a clean log) and **veto** an automatic action when a restart
//! cannot help. Without a veto, a stopped service or container has a known fix (restart it), proposed
//! like a runbook rule: it still passes the gate, the scope check and the action policy.
//!
//! Evidence is hostile text: a finding only ever blocks (a forged log line can make medic ask a human,
//! never act). The service's state is read only from `systemctl is-active`, the `Active:` line of
//! `systemctl status` and `docker container inspect`, never from log lines. Findings carry medic's own
//! words; the evidence line that triggered one travels separately and is shown quoted.

use std::sync::LazyLock;

use crate::domain::findings::{Assessment, Finding, Kind, RunState};
use crate::domain::{Diagnosis, EvidenceItem};
use regex::Regex;

impl Assessment {
    /// The fix the findings point to, as a level-0 proposal: the full disk's cleanup script (needs
    /// approval by the default allow-list) even under its own veto; else, without a veto, restarting a
    /// stopped container or service.
    pub fn known_fix(&self, service: &str, container: Option<&str>) -> Option<Diagnosis> {
        let proposal = |command: String, cause: &str, why: &str| Diagnosis {
            cause: cause.into(),
            confidence: 1.0,
            action_command: Some(command),
            rationale: why.into(),
            level: "l0-checks".into(),
        };
        if let Some(f) = self.veto() {
            return (f.kind == Kind::DiskFull).then(|| {
                proposal(
                    format!("/usr/local/lib/medic/clean_logs.sh {service}"),
                    &f.summary,
                    "evidence check: disk full; the cleanup script frees log space",
                )
            });
        }
        if let Some(c) = container.filter(|_| self.container_state == RunState::NotRunning) {
            return Some(proposal(
                format!("docker restart {c}"),
                &format!("container {c} is not running, and no check found a reason a restart would fail"),
                "evidence check: container not running, no blocking finding",
            ));
        }
        (self.service_state == RunState::NotRunning).then(|| {
            proposal(
                format!("systemctl restart {service}"),
                &format!("{service} is not running, and no check found a reason a restart would fail"),
                "evidence check: service not running, no blocking finding",
            )
        })
    }

    /// How far the evidence supports an action with this argv, from 0 (contradicts) to 1 (supports):
    /// restarting or starting the incident's own stopped service or container is supported; a running
    /// one with errors in its log is plausible (0.75); without state evidence, 0.5; anything else 0.5.
    pub fn support(&self, argv: &[String], service: &str, container: Option<&str>) -> f64 {
        if self.veto().is_some() {
            return 0.0;
        }
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (state, target_ok) = match words.as_slice() {
            ["systemctl", "restart" | "start", s] => (self.service_state, *s == service),
            ["service" | "rc-service", s, "restart" | "start"] => (self.service_state, *s == service),
            ["docker", "restart" | "start", c] => (self.container_state, Some(*c) == container),
            // A service's own control script (`/etc/init.d/nginx restart`): the allow-list binds it.
            [script, "restart" | "start"] if !["systemctl", "docker", "service"].contains(script) => {
                (self.service_state, true)
            }
            _ => return 0.5,
        };
        match (target_ok, state) {
            (false, _) => 0.0,
            (true, RunState::NotRunning) => 1.0,
            (true, RunState::Running) if self.error_lines > 0 => 0.75,
            (true, RunState::Running) => 0.0,
            (true, RunState::Unknown) => 0.5,
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

static PORT_IN_USE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)address already in use|could not bind to address|AH00072|EADDRINUSE|port is already allocated")
});
static BIND_PORT: LazyLock<Regex> = LazyLock::new(|| re(r":(\d{1,5})\D{0,20}(?:failed|Address already in use)"));
static CONFIG_INVALID: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)configuration file \S+ test failed|\[emerg\].*(?:unknown directive|unexpected|invalid|directive is not allowed|not terminated|no "\S+" is defined|cannot load certificate|in \S+:\d+)|AH00526|Syntax error on line \d+|Action 'configtest' failed|Bad configuration option|could not be parsed|Invalid command '|configuration error"#,
    )
});
static PERMISSION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)permission denied|\(13: |EACCES|search permissions are missing|AH00035"));
static NO_SPACE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)no space left on device|\(28: |ENOSPC|disk quota exceeded"));
static CERT_EXPIRED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)certificate has expired|certificate expired|CERT_HAS_EXPIRED|certificate is not yet valid|expired certificate",
    )
});
static UNIT_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)unit \S+ (?:could not be found|not found)|no such container|Failed to restart \S+: Unit \S+ not found")
});
static OOM: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)out of memory: kill|oom-kill|invoked oom-killer|"OOMKilled":\s*true"#));
static UPSTREAM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)while connecting to upstream|upstream timed out|no live upstreams|upstream prematurely closed|while reading response header from upstream|AH01114|AH00957|proxy: error reading status line",
    )
});
static UPSTREAM_ADDR: LazyLock<Regex> = LazyLock::new(|| re(r#"upstream: "([^"]{1,120})""#));
static DNS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)could not be resolved|temporary failure in name resolution|name or service not known|ENOTFOUND|EAI_AGAIN|host not found in upstream|no such host",
    )
});
static ERROR_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:error|emerg|crit|alert|fatal|panic|fail(?:ed|ure)?|segfault|exception|refused|timed? ?out|killed|abort(?:ed)?|unhealthy|not enough|exhausted|too many)\b",
    )
});
static ACTIVE_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*Active:\s+(\S+)"));
static MEM_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^Mem:\s+(\d+)(?:\s+\d+){4}\s+(\d+)\s*$"));
static DF_FULL: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\S+\s+\S+\s+\S+\s+\S+\s+(\d{1,3})%\s+(/\S*)\s*$"));

/// Which evidence an item is.
#[derive(PartialEq)]
enum Source {
    ServiceLog,
    KernelLog,
    Status,
    IsActive,
    LsbStatus,
    ConfigTest,
    Sockets,
    ContainerInspect,
    Memory,
    Disk,
    Other,
}

fn source_of(command: &str) -> Source {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["journalctl", "-k", ..] => Source::KernelLog,
        ["journalctl", ..] | ["docker", "logs", ..] => Source::ServiceLog,
        ["systemctl", "status", ..] => Source::Status,
        ["systemctl", "is-active", ..] => Source::IsActive,
        // An LSB status action (`/etc/init.d/nginx status`, `service nginx status`, a control script).
        [first, .., "status"] if *first != "docker" => Source::LsbStatus,
        ["nginx", "-t", ..] | ["apachectl" | "apache2ctl", "configtest" | "-t", ..] | ["sshd", "-t", ..] => {
            Source::ConfigTest
        }
        ["ss", ..] => Source::Sockets,
        ["docker", "container", "inspect", ..] | ["docker", "inspect", ..] => Source::ContainerInspect,
        ["free", ..] => Source::Memory,
        ["df", ..] => Source::Disk,
        _ => Source::Other,
    }
}

/// A line cut to something readable in an email.
fn shown(line: &str) -> String {
    let line = line.trim();
    let mut out: String = line.chars().take(240).collect();
    if line.chars().count() > 240 {
        out.push('…');
    }
    out
}

fn first_line<'a>(text: &'a str, pattern: &Regex) -> Option<&'a str> {
    text.lines().find(|l| pattern.is_match(l))
}

/// Runs every check over the evidence and the monitor's message.
pub fn assess(evidence: &[EvidenceItem], message: &str, service: &str, container: Option<&str>) -> Assessment {
    let usable = |source: Source| evidence.iter().filter(move |e| e.error.is_none() && source_of(&e.command) == source);
    let service_state = service_state(evidence);
    let container_state = container_state(evidence);
    // The text the log checks read: the service's logs and status, config tests, the monitor's message.
    let mut logs = String::new();
    for e in evidence.iter().filter(|e| e.error.is_none()) {
        if matches!(
            source_of(&e.command),
            Source::ServiceLog | Source::Status | Source::LsbStatus | Source::ConfigTest | Source::Other
        ) {
            logs.push_str(&e.output);
            logs.push('\n');
        }
    }
    logs.push_str(message);
    let error_lines =
        usable(Source::ServiceLog).flat_map(|e| e.output.lines()).filter(|l| ERROR_LINE.is_match(l)).count();
    let mut findings = Vec::new();
    let mut add = |kind, veto, summary: String, line: Option<&str>| {
        findings.push(Finding { kind, veto, summary, line: line.map(shown) })
    };

    // A configuration test that failed, or the service's own config error in its log.
    let failed_test = usable(Source::ConfigTest).find(|e| e.exit_code.is_some_and(|c| c != 0));
    if let Some(test) = failed_test {
        let line = test.output.lines().find(|l| !l.trim().is_empty() && !l.contains("syntax is ok"));
        add(
            Kind::ConfigInvalid,
            true,
            format!("the configuration fails its own test (`{}`): a restart would fail the same way", test.command),
            line,
        );
    } else if let Some(line) = first_line(&logs, &CONFIG_INVALID).filter(|l| !PORT_IN_USE.is_match(l)) {
        add(
            Kind::ConfigInvalid,
            true,
            format!("{service}'s log reports a configuration error: a restart would fail the same way"),
            Some(line),
        );
    }
    if let Some(line) = first_line(&logs, &PORT_IN_USE) {
        let owner = BIND_PORT
            .captures(line)
            .and_then(|c| c.get(1))
            .and_then(|port| port_owner(evidence, port.as_str()).map(|o| (port.as_str().to_string(), o)));
        let summary = match owner {
            Some((port, owner)) => format!(
                "port {port} is already taken by {owner}: restarting {service} would fail the same way until that process is stopped"
            ),
            None => format!(
                "the address {service} listens on is already in use by another process: restarting {service} would fail the same way"
            ),
        };
        add(Kind::PortInUse, true, summary, Some(line));
    }
    if let Some(line) = first_line(&logs, &PERMISSION) {
        add(
            Kind::PermissionDenied,
            true,
            format!(
                "{service} is denied access to a file or directory it needs: a restart does not change permissions"
            ),
            Some(line),
        );
    }
    let full_mount = usable(Source::Disk)
        .flat_map(|e| e.output.lines())
        .filter_map(|l| DF_FULL.captures(l).map(|c| (c[1].parse::<u32>().unwrap_or(0), c[2].to_string(), l)))
        .find(|(used, _, _)| *used >= 98);
    if let Some((used, mount, line)) = full_mount {
        add(
            Kind::DiskFull,
            true,
            format!("the filesystem on {mount} is {used}% full: a restart does not free space"),
            Some(line),
        );
    } else if let Some(line) = first_line(&logs, &NO_SPACE) {
        add(
            Kind::DiskFull,
            true,
            format!("{service} reports no space left on a device: a restart does not free space"),
            Some(line),
        );
    }
    if let Some(line) = first_line(&logs, &CERT_EXPIRED) {
        add(
            Kind::CertificateExpired,
            true,
            "a TLS certificate has expired: it must be renewed; a restart serves the same certificate".into(),
            Some(line),
        );
    }
    let is_active_unknown = usable(Source::IsActive).any(|e| e.output.trim() == "unknown");
    if let Some(line) = first_line(&logs, &UNIT_NOT_FOUND) {
        add(
            Kind::UnitNotFound,
            true,
            format!("{service} (or its container) does not exist on this host: check the monitor's host mapping"),
            Some(line),
        );
    } else if is_active_unknown {
        add(
            Kind::UnitNotFound,
            true,
            format!("systemd does not know a unit named {service} on this host: check the monitor's host mapping"),
            None,
        );
    }
    let oom = usable(Source::KernelLog)
        .chain(usable(Source::ContainerInspect))
        .flat_map(|e| e.output.lines())
        .find(|l| OOM.is_match(l));
    if let Some(line) = oom {
        match memory_available(evidence) {
            Some((available, total)) if available * 20 < total => add(
                Kind::MemoryExhausted,
                true,
                format!(
                    "the kernel killed a process for lack of memory and memory is still exhausted ({available} of {total} MiB available): a restarted process would be killed again"
                ),
                Some(line),
            ),
            _ => add(
                Kind::OomKilled,
                false,
                "the kernel killed a process for lack of memory; memory is available again".into(),
                Some(line),
            ),
        }
    }
    if service_state == RunState::Running
        && let Some(line) = first_line(&logs, &UPSTREAM)
    {
        let upstream = UPSTREAM_ADDR.captures(line).map(|c| c[1].to_string());
        add(
            Kind::UpstreamDown,
            true,
            match upstream {
                Some(u) => format!(
                    "{service} is running; the upstream it forwards to ({u}) is failing: restarting {service} does not fix the upstream"
                ),
                None => format!(
                    "{service} is running; the upstream it forwards to is failing: restarting {service} does not fix the upstream"
                ),
            },
            Some(line),
        );
    }
    if let Some(line) = first_line(&logs, &DNS) {
        add(
            Kind::DnsFailure,
            true,
            "a name does not resolve (DNS): a restart does not fix name resolution".into(),
            Some(line),
        );
    }
    if container_state == RunState::NotRunning {
        add(Kind::ContainerNotRunning, false, format!("container {} is not running", container.unwrap_or("?")), None);
    }
    if service_state == RunState::NotRunning {
        add(Kind::NotRunning, false, format!("{service} is not running"), None);
    }
    let container_fine = container.is_none() || container_state != RunState::NotRunning;
    let vetoed = findings.iter().any(|f| f.veto);
    let mut add = |kind, veto, summary: String, line: Option<&str>| {
        findings.push(Finding { kind, veto, summary, line: line.map(shown) })
    };
    if service_state == RunState::Running && container_fine && error_lines == 0 && !vetoed {
        add(
            Kind::Healthy,
            true,
            format!(
                "{service} is running and its recent log shows no error: a restart would not fix anything medic can see (the monitor may be flapping or measuring from elsewhere)"
            ),
            None,
        );
    }
    Assessment { service_state, container_state, error_lines, findings }
}

fn service_state(evidence: &[EvidenceItem]) -> RunState {
    let ok = |e: &&EvidenceItem| e.error.is_none();
    if let Some(e) = evidence.iter().filter(ok).find(|e| source_of(&e.command) == Source::IsActive) {
        return match e.output.trim() {
            "active" | "reloading" => RunState::Running,
            "inactive" | "failed" | "deactivating" => RunState::NotRunning,
            _ => RunState::Unknown,
        };
    }
    let status = evidence.iter().filter(ok).find(|e| source_of(&e.command) == Source::Status);
    match status.and_then(|e| ACTIVE_LINE.captures(&e.output)).map(|c| c[1].to_string()).as_deref() {
        Some("active") => return RunState::Running,
        Some("inactive" | "failed") => return RunState::NotRunning,
        _ => {}
    }
    // LSB exit codes: 0 running; 1, 2, 3 not running (dead with a pid file, a lock file, or stopped).
    match evidence.iter().filter(ok).find(|e| source_of(&e.command) == Source::LsbStatus).and_then(|e| e.exit_code) {
        Some(0) => RunState::Running,
        Some(1..=3) => RunState::NotRunning,
        _ => RunState::Unknown,
    }
}

fn container_state(evidence: &[EvidenceItem]) -> RunState {
    let Some(e) = evidence.iter().find(|e| e.error.is_none() && source_of(&e.command) == Source::ContainerInspect)
    else {
        return RunState::Unknown;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&e.output) else { return RunState::Unknown };
    let state = value.get(0).unwrap_or(&value).get("State");
    let health = state.and_then(|s| s.pointer("/Health/Status")).and_then(|h| h.as_str());
    match (state.and_then(|s| s.get("Running")).and_then(|r| r.as_bool()), health) {
        (Some(true), Some("unhealthy")) => RunState::NotRunning,
        (Some(true), _) => RunState::Running,
        (Some(false), _) => RunState::NotRunning,
        (None, _) => RunState::Unknown,
    }
}

/// (available, total) MiB from `free -m`.
fn memory_available(evidence: &[EvidenceItem]) -> Option<(u64, u64)> {
    let e = evidence.iter().find(|e| e.error.is_none() && source_of(&e.command) == Source::Memory)?;
    let c = MEM_LINE.captures(&e.output)?;
    Some((c[2].parse().ok()?, c[1].parse().ok()?))
}

/// The process listening on a port, from `ss -ltnp`: `users:(("apache2",pid=1234,fd=4))`.
fn port_owner(evidence: &[EvidenceItem], port: &str) -> Option<String> {
    static USERS: LazyLock<Regex> = LazyLock::new(|| re(r#"users:\(\("([^"]{1,64})",pid=(\d+)"#));
    let e = evidence.iter().find(|e| e.error.is_none() && source_of(&e.command) == Source::Sockets)?;
    e.output
        .lines()
        .filter(|l| l.split_whitespace().nth(3).is_some_and(|local| local.ends_with(&format!(":{port}"))))
        .find_map(|l| USERS.captures(l).map(|c| format!("{} (pid {})", &c[1], &c[2])))
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
