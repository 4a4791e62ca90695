//! Redaction of evidence before it leaves the process (prompts, emails, API answers, the store).
//!
//! Each class is switchable: passwords in URLs, bearer/basic tokens and `key=value` secrets, private key
//! blocks, cloud and vendor access keys, JWTs, email addresses, IP addresses (loopback kept), plus the
//! operator's own regexes. Replacements name what was removed (`[REDACTED:jwt]`) so a reader knows.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    pub url_passwords: bool,
    pub tokens: bool,
    pub private_keys: bool,
    pub cloud_keys: bool,
    pub jwts: bool,
    pub emails: bool,
    /// IPv4 and IPv6 addresses; loopback (127.0.0.0/8, ::1) is kept.
    pub ip_addresses: bool,
    /// Extra regexes; every match becomes `[REDACTED]`.
    pub extra_patterns: Vec<String>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            url_passwords: true,
            tokens: true,
            private_keys: true,
            cloud_keys: true,
            jwts: true,
            emails: true,
            ip_addresses: true,
            extra_patterns: Vec::new(),
        }
    }
}

impl RedactConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Redactor::new(self).map(|_| ())
    }
}

struct Rule {
    re: Regex,
    replacement: &'static str,
}

/// Compiled redaction rules. Cheap to share behind an `Arc`.
pub struct Redactor {
    rules: Vec<Rule>,
    ip: Option<(Regex, Regex)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("rules", &self.rules.len()).finish()
    }
}

fn rule(pattern: &str, replacement: &'static str) -> Rule {
    Rule { re: Regex::new(pattern).expect("built-in redaction patterns compile"), replacement }
}

impl Redactor {
    pub fn new(config: &RedactConfig) -> Result<Self, ConfigError> {
        let mut rules = Vec::new();
        if config.private_keys {
            rules.push(rule(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
                "[REDACTED:private-key]",
            ));
        }
        if config.jwts {
            rules.push(rule(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", "[REDACTED:jwt]"));
        }
        if config.cloud_keys {
            for p in [
                r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
                r"\bAIza[0-9A-Za-z_-]{35}\b",
                r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
                r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
                r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
                r"\bsk-ant-[A-Za-z0-9_-]{20,}",
                r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}",
                r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b",
                r"\bglpat-[A-Za-z0-9_-]{20,}\b",
            ] {
                rules.push(rule(p, "[REDACTED:access-key]"));
            }
            rules.push(rule(
                r"(?i)(aws_secret_access_key|aws_session_token)(\s*[:=]\s*)\S+",
                "${1}${2}[REDACTED:access-key]",
            ));
        }
        if config.url_passwords {
            rules.push(rule(r"(?i)\b([a-z][a-z0-9+.-]{1,20}://[^\s:/@]*):[^\s@/]+@", "${1}:[REDACTED]@"));
        }
        if config.tokens {
            rules.push(rule(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/-]{8,}=*", "${1}${2}[REDACTED:token]"));
            rules.push(rule(
                r#"(?i)\b((?:[a-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|private[_-]?key|credentials?|session[_-]?id))["']?\s*[:=]\s*["']?)([^\s"'&,;}]{3,})"#,
                "${1}[REDACTED]",
            ));
        }
        if config.emails {
            rules.push(rule(
                r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
                "[REDACTED:email]",
            ));
        }
        for (i, pattern) in config.extra_patterns.iter().enumerate() {
            let re = Regex::new(pattern).map_err(|e| ConfigError::invalid(format!("redact.extra_patterns[{i}]"), e))?;
            rules.push(Rule { re, replacement: "[REDACTED]" });
        }
        let ip = config.ip_addresses.then(|| {
            (
                Regex::new(r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b")
                    .expect("ipv4 regex"),
                Regex::new(
                    r"(?i)\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b|(?i)\b(?:[0-9a-f]{1,4}:){1,6}:[0-9a-f]{1,4}\b",
                )
                .expect("ipv6 regex"),
            )
        });
        Ok(Self { rules, ip })
    }

    /// The text with every enabled class of secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for rule in &self.rules {
            if rule.re.is_match(&out) {
                out = rule.re.replace_all(&out, rule.replacement).into_owned();
            }
        }
        if let Some((v4, v6)) = &self.ip {
            out = v4
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    if c[0].starts_with("127.") { c[0].to_string() } else { "[REDACTED:ip]".to_string() }
                })
                .into_owned();
            out = v6.replace_all(&out, "[REDACTED:ip]").into_owned();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (log line, text that must be gone, text that must remain)
    const TABLE: &[(&str, &str, &str)] = &[
        ("Connecting to postgres://app:s3cr3tP4ss@db.internal:5432/shop", "s3cr3tP4ss", "postgres://app:[REDACTED]@"),
        ("redis error: redis://:hunter2hunter2@10.0.0.9:6379/0 refused", "hunter2hunter2", "redis://"),
        (
            "GET /api Authorization: Bearer abcdef1234567890abcdef upstream 502",
            "abcdef1234567890abcdef",
            "upstream 502",
        ),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA==' failed", "dXNlcjpwYXNzd29yZA", "failed"),
        ("app.env: DB_PASSWORD=correct-horse-battery", "correct-horse-battery", "DB_PASSWORD="),
        ("config: {\"api_key\": \"9f8e7d6c5b4a\"} loaded", "9f8e7d6c5b4a", "loaded"),
        ("stripe: using sk_live_51HxYzAbCdEfGhIjKlMn", "sk_live_51HxYzAbCdEfGhIjKlMn", "stripe"),
        ("aws: AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "denied"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "aws_secret_access_key"),
        (
            "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 rejected",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "rejected",
        ),
        ("slack xoxb-123456789012-abcdefghij failed", "xoxb-123456789012-abcdefghij", "failed"),
        ("anthropic key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "anthropic key"),
        (
            "jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U expired",
            "dozjgNryP4J3jVmNHl0w5N",
            "expired",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\nnext line",
            "b3BlbnNzaC1rZXktdjE",
            "next line",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA (cut off", "MIIEpAIBAAKCAQEA", "[REDACTED:private-key]"),
        ("user alice@example.com failed login from 203.0.113.7", "alice@example.com", "failed login"),
        ("upstream 10.1.2.3:8080 timed out while connecting", "10.1.2.3", "timed out"),
        ("connect ECONNREFUSED 127.0.0.1:9922", "[REDACTED:ip]", "127.0.0.1:9922"),
        ("listen on 2001:db8:85a3::8a2e:370:7334 failed", "2001:db8:85a3", "failed"),
        (
            "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)",
            "0.0.0.0",
            "Address already in use",
        ),
    ];

    #[test]
    fn realistic_log_lines_are_redacted() {
        let r = Redactor::new(&RedactConfig::default()).unwrap();
        for (line, gone, kept) in TABLE {
            let out = r.redact(line);
            assert!(!out.contains(gone), "{line:?} → {out:?} still contains {gone:?}");
            assert!(out.contains(kept), "{line:?} → {out:?} lost {kept:?}");
        }
    }

    #[test]
    fn timestamps_and_plain_text_survive() {
        let r = Redactor::new(&RedactConfig::default()).unwrap();
        let line = "2026-11-22T03:35:13.562Z nginx.service: Main process exited, code=exited, status=1/FAILURE";
        assert_eq!(r.redact(line), line);
        let line = "Nov 22 04:35:13 web1 kernel: Out of memory: Killed process 1234 (java) total-vm:4194304kB";
        assert_eq!(r.redact(line), line);
    }

    #[test]
    fn classes_can_be_switched_off_and_extra_patterns_added() {
        let config = RedactConfig {
            emails: false,
            ip_addresses: false,
            extra_patterns: vec![r"customer-\d+".into()],
            ..Default::default()
        };
        let r = Redactor::new(&config).unwrap();
        assert_eq!(
            r.redact("alice@example.com from 10.0.0.1 for customer-4711"),
            "alice@example.com from 10.0.0.1 for [REDACTED]"
        );
        let bad = RedactConfig { extra_patterns: vec!["(".into()], ..Default::default() };
        assert!(Redactor::new(&bad).unwrap_err().to_string().contains("redact.extra_patterns[0]"));
    }
}
