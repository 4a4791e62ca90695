//! `medic doctor`: checks what medic depends on, one line each, without changing anything or sending
//! anything: the configuration (already validated when loaded), the data directory, the database, every
//! inventory host (one allow-listed read-only command over its transport), the model endpoints (their
//! model lists), SMTP (a connection and EHLO, no mail), Qdrant (its health endpoint) and the chat
//! webhooks (a TCP connection to their host, no request). Exit 0: all ok; 1: warnings; 2: a failure.

use std::time::Duration;

use crate::config::{ConfigSource, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

pub struct Line {
    pub verdict: Verdict,
    pub what: String,
    pub detail: String,
}

fn line(verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) -> Line {
    Line { verdict, what: what.into(), detail: detail.into() }
}

/// Runs every check; prints the lines; returns the worst verdict.
pub async fn run(settings: &Settings, source: &ConfigSource) -> Verdict {
    let mut lines = vec![line(Verdict::Ok, "config", format!("{source:?}, every key valid"))];
    lines.extend(data_dir(settings));
    lines.extend(hosts(settings).await);
    lines.extend(models(settings).await);
    lines.push(smtp(settings).await);
    if let Some(url) = &settings.memory.qdrant_url {
        lines.push(http_get("qdrant", &format!("{}/healthz", url.as_str().trim_end_matches('/')), &[]).await);
    }
    for c in &settings.notify.channels {
        let url = c.url.as_ref().map(|u| u.expose().to_string()).unwrap_or_else(|| c.api_url.clone());
        lines.push(reachable(&format!("chat {}", c.name), Some(&url)).await);
    }
    let worst = lines.iter().map(|l| l.verdict).max().unwrap_or(Verdict::Ok);
    for l in &lines {
        println!("{}  {:<22} {}", l.verdict.label(), l.what, l.detail);
    }
    println!(
        "\n{}",
        match worst {
            Verdict::Ok => "All checks passed.",
            Verdict::Warn => "Usable, with warnings above.",
            Verdict::Fail => "Something medic needs does not work (FAIL above).",
        }
    );
    worst
}

fn data_dir(settings: &Settings) -> Vec<Line> {
    let dir = &settings.store.data_dir;
    let mut out = Vec::new();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return vec![line(Verdict::Fail, "data dir", format!("{}: cannot create: {e}", dir.display()))];
    }
    let probe = dir.join(".medic-doctor");
    match std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => out.push(line(Verdict::Ok, "data dir", format!("{} is writable", dir.display()))),
        Err(e) => out.push(line(Verdict::Fail, "data dir", format!("{}: not writable: {e}", dir.display()))),
    }
    let secrets = dir.join("secrets");
    if let Ok(meta) = std::fs::metadata(&secrets) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        out.push(if mode & 0o077 == 0 {
            line(Verdict::Ok, "secrets", format!("{} is private ({mode:o})", secrets.display()))
        } else {
            line(
                Verdict::Fail,
                "secrets",
                format!("{} is readable by others ({mode:o}); chmod 700 it", secrets.display()),
            )
        });
    }
    let db = dir.join("medic.db");
    if settings.store.is_postgres() {
        out.push(postgres(&settings.store.url, settings.store.ca_file.as_deref()));
    } else if db.exists() {
        let checked = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)));
        out.push(match checked {
            Ok(s) if s == "ok" => line(Verdict::Ok, "database", format!("{} passes quick_check", db.display())),
            Ok(s) => line(Verdict::Fail, "database", format!("{}: {s}", db.display())),
            Err(e) => line(Verdict::Fail, "database", format!("{}: {e}", db.display())),
        });
    } else {
        out.push(line(Verdict::Ok, "database", "none yet (created at first start)"));
    }
    out
}

/// The shared database: reachable, and its schema version (replicas).
fn postgres(url: &str, ca_file: Option<&std::path::Path>) -> Line {
    let shown = crate::store::migrate::redact(url);
    let checked = crate::store::db::Connection::open_postgres_with(url, ca_file).and_then(|c| {
        c.query_row("SELECT (SELECT MAX(version) FROM medic_schema), (SELECT COUNT(*) FROM incidents)", [], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?))
        })
    });
    match checked {
        Ok((Some(v), n)) => line(Verdict::Ok, "database", format!("PostgreSQL {shown}: schema v{v}, {n} incidents")),
        Ok((None, _)) => line(Verdict::Warn, "database", format!("PostgreSQL {shown}: no schema version recorded")),
        Err(e) if e.to_string().contains("42P01") => {
            line(Verdict::Ok, "database", format!("PostgreSQL {shown}: reachable, empty (tables made at first start)"))
        }
        Err(e) => line(Verdict::Fail, "database", format!("PostgreSQL {shown}: {e}")),
    }
}

async fn hosts(settings: &Settings) -> Vec<Line> {
    let Ok(gate) = crate::gate::Gate::from_config(&settings.gate) else {
        return vec![line(Verdict::Fail, "gate", "the allow-list does not load")];
    };
    if settings.inventory.hosts.is_empty() {
        return vec![line(Verdict::Warn, "hosts", "the inventory lists no hosts: medic can diagnose and fix nothing")];
    }
    let transports =
        crate::transport::Transports::for_installation(settings.transport.clone(), &settings.store.data_dir);
    let mut out = Vec::new();
    for host in &settings.inventory.hosts {
        let what = format!("host {}", host.name);
        let Some(cmd) = ["uptime", "cat /proc/uptime", "df -h"]
            .iter()
            .find_map(|c| gate.check_diagnostic(c, Some(&host.name)).ok())
        else {
            out.push(line(Verdict::Warn, what, "no read-only command to try is allowed for it (uptime, df -h)"));
            continue;
        };
        let transport = transports.for_host(host);
        let started = std::time::Instant::now();
        out.push(match transport.run(&cmd, Duration::from_secs(15)).await {
            Ok(o) if o.exit_code == 0 => line(
                Verdict::Ok,
                what,
                format!(
                    "{} answered `{}` in {} ms",
                    transport.describe(),
                    cmd.display(),
                    started.elapsed().as_millis()
                ),
            ),
            Ok(o) => line(Verdict::Warn, what, format!("`{}` exited {}", cmd.display(), o.exit_code)),
            Err(e) => line(Verdict::Fail, what, format!("{}: {e}", transport.describe())),
        });
    }
    out
}

async fn models(settings: &Settings) -> Vec<Line> {
    use crate::diagnose::ProviderKind;
    let d = &settings.diagnose;
    let mut out = Vec::new();
    for (name, p) in [("level 1 model", &d.l1), ("level 2 model", &d.l2)] {
        let Some(url) = &p.url else {
            out.push(line(Verdict::Ok, name, "not configured"));
            continue;
        };
        let base = url.as_str().trim_end_matches('/');
        let key = p.api_key.as_ref().map(|k| k.expose().to_string()).unwrap_or_default();
        let (path, headers): (&str, Vec<(&str, String)>) = match p.provider {
            ProviderKind::Ollama => ("/api/tags", vec![]),
            ProviderKind::Openai => ("/v1/models", vec![("authorization", format!("Bearer {key}"))]),
            ProviderKind::Anthropic => {
                if key.is_empty() {
                    out.push(line(Verdict::Ok, name, "not configured (no API key)"));
                    continue;
                }
                ("/v1/models", vec![("x-api-key", key.clone()), ("anthropic-version", "2023-06-01".into())])
            }
        };
        let mut l = http_get(name, &format!("{base}{path}"), &headers).await;
        if l.verdict == Verdict::Ok {
            let listed = l.detail.contains(&format!("\"{}\"", p.model));
            l.detail = if listed {
                format!("{base} lists {}", p.model)
            } else {
                l.verdict = Verdict::Warn;
                format!("{base} answers but does not list {} (pull it, or fix diagnose.*.model)", p.model)
            };
        }
        out.push(l);
    }
    out
}

/// GET `url`; Ok with the body (for callers to inspect) when 2xx.
async fn http_get(what: &str, url: &str, headers: &[(&str, String)]) -> Line {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => return line(Verdict::Fail, what, e.to_string()),
    };
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => line(Verdict::Ok, what, r.text().await.unwrap_or_default()),
        Ok(r) => line(Verdict::Fail, what, format!("{url}: HTTP {}", r.status())),
        Err(e) => line(Verdict::Fail, what, format!("{url}: {e}")),
    }
}

async fn smtp(settings: &Settings) -> Line {
    let email = &settings.notify.email;
    let host = &email.smtp_host;
    match crate::notify::outbox::test_smtp(email).await {
        Ok(false) => line(
            Verdict::Ok,
            "smtp",
            format!("not configured: emails are written to {}/outbox/", settings.store.data_dir.display()),
        ),
        Ok(true) => line(Verdict::Ok, "smtp", format!("{host}:{} accepted a connection and EHLO", email.smtp_port)),
        Err(e) => line(Verdict::Fail, "smtp", format!("{host}:{}: {e}", email.smtp_port)),
    }
}

/// A TCP connection to the URL's host and port, nothing sent.
async fn reachable(what: &str, url: Option<&str>) -> Line {
    let Some(url) = url.and_then(|u| url::Url::parse(u).ok()) else {
        return line(Verdict::Warn, what, "no URL to check");
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return line(Verdict::Warn, what, "the URL names no host");
    };
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => line(Verdict::Ok, what, format!("{host}:{port} accepts connections (nothing sent)")),
        Ok(Err(e)) => line(Verdict::Fail, what, format!("{host}:{port}: {e}")),
        Err(_) => line(Verdict::Fail, what, format!("{host}:{port}: no answer within 5 s")),
    }
}
