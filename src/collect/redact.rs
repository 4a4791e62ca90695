//! Redaction of evidence before it leaves the process (prompts, emails, API answers, the store).
//!
//! Each class is switchable: passwords in URLs, bearer/basic tokens and `key=value` secrets, private key
//! blocks, cloud and vendor access keys, JWTs, email addresses, IP addresses (loopback kept), plus the
//! operator's own regexes. Replacements name what was removed (`[REDACTED:jwt]`) so a reader knows.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::conf::ConfigError;

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
    /// A match this says is harmless is left as it is (a look-alike, such as `-p8080:80`).
    keep: Option<fn(&str) -> bool>,
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
    Rule { re: Regex::new(pattern).expect("built-in redaction patterns compile"), replacement, keep: None }
}

/// `-p` followed by digits, dots and colons is a port or a number, not a password.
fn port_like(matched: &str) -> bool {
    let value = matched.trim_start().trim_start_matches("-p");
    value.chars().all(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | '/' | ','))
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
            // Secrets in URL query strings (`?token=`, `&sig=`, `&X-Amz-Signature=`).
            rules.push(rule(
                r"(?i)([?&](?:token|access_token|api_key|apikey|key|sig|signature|x-amz-signature|x-amz-credential|auth|password|secret)=)[^\s&#]{3,}",
                "${1}[REDACTED]",
            ));
        }
        if config.tokens {
            rules.push(rule(
                r"(?i)\b(bearer|basic|token|digest|negotiate)(\s+)[A-Za-z0-9._~+/-]{8,}=*",
                "${1}${2}[REDACTED:token]",
            ));
            // `Authorization:` / `Proxy-Authorization:` / `X-Api-Key:` style headers, whatever the scheme.
            rules.push(rule(
                r"(?i)\b((?:proxy-)?authorization|x-[a-z-]*(?:token|key|secret|auth)[a-z-]*|cookie|set-cookie)(\s*[:=]\s*)(?:[A-Za-z]+\s+)?[^\s,;]+",
                "${1}${2}[REDACTED:header]",
            ));
            // MySQL-style `-p<password>` glued to the flag, and `--password <value>`.
            rules.push(Rule {
                keep: Some(port_like),
                ..rule(r#"(^|\s)(-p)([^\s"'-][^\s"']{4,})"#, "${1}${2}[REDACTED]")
            });
            rules.push(rule(
                r#"(?i)(--(?:password|passwd|pass|secret|token|api-key|apikey|auth-token|access-token|client-secret)(?:\s+|=))([^\s"']{3,})"#,
                "${1}[REDACTED]",
            ));
            rules.push(rule(
                r#"(?i)\b((?:[a-z0-9_.-]*(?:password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|private[_-]?key|client[_-]?secret|credentials?|session[_-]?id|sessid|signature|sig)(?:[_-]?(?:key|id|value|b64|base64))?)["']?\s*[:=]\s*["']?)([^\s"'&,;}]{3,})"#,
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
            rules.push(Rule { re, replacement: "[REDACTED]", keep: None });
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
            if !rule.re.is_match(&out) {
                continue;
            }
            out = match rule.keep {
                None => rule.re.replace_all(&out, rule.replacement).into_owned(),
                Some(keep) => rule
                    .re
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        if keep(&c[0]) {
                            c[0].to_string()
                        } else {
                            let mut expanded = String::new();
                            c.expand(rule.replacement, &mut expanded);
                            expanded
                        }
                    })
                    .into_owned(),
            };
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

    /// (secret shape, line, the secret that must be gone)
    const SECRETS: &[(&str, &str, &str)] = &[
        ("mysql -p", "mysql -uroot -pS3cretPw! -h db", "S3cretPw!"),
        ("mysqldump -p", "mysqldump --user=app -phunter22 shop", "hunter22"),
        ("pass=", "login pass=opensesame42 ok", "opensesame42"),
        ("pwd=", "conn pwd=Tr0ub4dor&3 done", "Tr0ub4dor"),
        ("passwd:", "passwd: letmein2026", "letmein2026"),
        ("password=", "db.password=correcthorse", "correcthorse"),
        ("PASSWORD env", "MYSQL_ROOT_PASSWORD=rootpw123", "rootpw123"),
        ("PGPASSWORD", "PGPASSWORD=pgsecret99 psql -h db", "pgsecret99"),
        ("secret=", "client secret=abcdEFGH1234", "abcdEFGH1234"),
        ("client_secret", "client_secret: 7f6e5d4c3b2a", "7f6e5d4c3b2a"),
        ("--password=", "redis-cli --password=rpw12345 ping", "rpw12345"),
        ("--password value", "app --password sup3rs3cret run", "sup3rs3cret"),
        ("--token", "cli --token tkn_abcdef123456 sync", "tkn_abcdef123456"),
        ("Authorization Bearer", "Authorization: Bearer abc.def.ghi123456", "abc.def.ghi123456"),
        ("Authorization Basic", "Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("Authorization other", "Authorization: ApiKey k-9988776655", "k-9988776655"),
        ("Proxy-Authorization", "Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc"),
        ("X-Api-Key header", "X-Api-Key: 0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"),
        ("X-Auth-Token header", "X-Auth-Token: zzTopSecret77", "zzTopSecret77"),
        ("Cookie", "Cookie: session=abc123def456; theme=dark", "abc123def456"),
        ("Set-Cookie", "Set-Cookie: sid=s%3Aq1w2e3r4t5; HttpOnly", "q1w2e3r4t5"),
        ("api_key=", "GET /v1?x=1 api_key=live_8f7e6d5c", "live_8f7e6d5c"),
        ("apikey:", "apikey: 1234abcd5678efgh", "1234abcd5678efgh"),
        ("access_key", "access_key=AKIAXXXXEXAMPLE0", "AKIAXXXXEXAMPLE0"),
        ("query token", "GET /hook?token=qwertyuiop123 200", "qwertyuiop123"),
        ("query sig", "GET /incidents/1?exp=9&sig=0badc0ffee0badc0ffee 200", "0badc0ffee0badc0ffee"),
        ("S3 signature", "?X-Amz-Signature=abcdef0123456789&X-Amz-Date=1", "abcdef0123456789"),
        ("mysql URL", "mysql://app:myS3cret@db:3306/shop", "myS3cret"),
        ("postgres URL", "postgresql://u:pgPw-77@10.0.0.1/db", "pgPw-77"),
        ("redis URL", "redis://default:rediSpw9@cache:6379", "rediSpw9"),
        ("amqp URL", "amqp://guest:guestpw1@mq:5672/", "guestpw1"),
        ("mongodb URL", "mongodb+srv://admin:m0ng0pw@cluster0.example.net/db", "m0ng0pw"),
        ("https userinfo", "https://deploy:ghpw123456@git.example.com/repo", "ghpw123456"),
        ("bearer token", "sent bearer eyJabc.def.ghijk12345 upstream", "eyJabc.def.ghijk12345"),
        ("JWT", "id=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz", "c2lnbmF0dXJlMTIz"),
        (
            "private key",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIExample\n-----END EC PRIVATE KEY-----",
            "MHcCAQEEIExample",
        ),
        ("AWS access key", "key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS secret", "aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCY", "wJalrXUtnFEMIK7MDENGbPxRfiCY"),
        ("GitHub token", "ghp_0123456789abcdefghijABCDEFGHIJ012345 denied", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
        ("GitLab token", "glpat-abcdefghij0123456789 bad", "glpat-abcdefghij0123456789"),
        ("Slack token", "xoxp-1234567890-abcdefghijk", "xoxp-1234567890-abcdefghijk"),
        ("OpenAI key", "sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
        ("Anthropic key", "sk-ant-api03-abcdefghijklmnopqrst", "sk-ant-api03-abcdefghijklmnopqrst"),
        ("Stripe key", "rk_live_abcdefghijklmnop1234", "rk_live_abcdefghijklmnop1234"),
        ("Google API key", "AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
        ("JSON password", r#"{"password": "jsonPw1234"}"#, "jsonPw1234"),
        ("YAML secret", "  secret_key: yamlSecret55", "yamlSecret55"),
        ("passphrase", "ssh passphrase=CorrectBattery9 ok", "CorrectBattery9"),
        ("session id", "session_id=0f9e8d7c6b5a", "0f9e8d7c6b5a"),
        ("email address", "reset mail to bob@example.org", "bob@example.org"),
    ];

    /// (look-alike that must survive unchanged, why)
    const LOOK_ALIKES: &[(&str, &str)] = &[
        ("docker run -p 8080:80 nginx", "a port mapping with a space"),
        ("nginx -p8080:80", "a port glued to -p"),
        ("ps -p 1234 -o pid", "a pid"),
        ("mkdir -p /var/run/nginx", "mkdir -p"),
        ("cp -pr src dst", "short flag bundles"),
        ("Tests passed: 45 failed: 0", "passed is not pass"),
        ("password authentication failed for user \"app\"", "the word password without a value"),
        ("token expired", "the word token with a short word"),
        ("nginx.service: Main process exited, code=exited, status=1/FAILURE", "systemd line"),
        ("2026-11-22T03:35:13.562Z GET /health 200 1.2ms", "access log line"),
        ("upstream timed out (110: Connection timed out) while reading response header", "nginx error"),
        ("Out of memory: Killed process 1234 (java) total-vm:4194304kB", "OOM line"),
        ("signal: SIGTERM received", "signal is not sig="),
        ("keepalive_timeout 65;", "nginx directive"),
        ("ssl_certificate /etc/ssl/certs/site.pem;", "certificate path"),
        ("journalctl -u nginx -n 50 --no-pager", "a diagnostic command"),
        ("disk /dev/sda1 94% used", "disk usage"),
        ("http://127.0.0.1:8080/health returned 502", "loopback URL"),
        ("monkey=banana color=blue", "plain key=value"),
        ("sha256:4f3a2b1c0d9e8f7a6b5c", "an image digest"),
        ("load average: 0.52, 0.58, 0.59", "uptime"),
        ("Mem: 7972 6211 312 201 1448 1302", "free -m"),
    ];

    #[test]
    fn the_secret_corpus_is_redacted_and_look_alikes_survive() {
        assert!(SECRETS.len() >= 40 && LOOK_ALIKES.len() >= 20);
        let r = Redactor::new(&RedactConfig::default()).unwrap();
        let mut failures = Vec::new();
        for (shape, line, secret) in SECRETS {
            let out = r.redact(line);
            if out.contains(secret) {
                failures.push(format!("{shape}: {line:?} → {out:?} still holds {secret:?}"));
            }
        }
        for (line, why) in LOOK_ALIKES {
            let out = r.redact(line);
            if out != *line {
                failures.push(format!("look-alike ({why}) changed: {line:?} → {out:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
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
