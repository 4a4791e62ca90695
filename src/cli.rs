//! The `medic` command line (clap): serve, check-config, incidents, audit, hooks replay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigSource, Settings};
use crate::domain::{IncidentId, IncidentState};
use crate::store::{IncidentFilter, Store};
use crate::web::api::IncidentView;

#[derive(Debug, Parser)]
#[command(name = "medic", version, about = "Self-healing incident pipeline: alerts in, verified fixes out, safely.")]
pub struct Cli {
    /// Config file (TOML). Default: ./config/medic.toml if present, else the embedded defaults.
    #[arg(long, global = true, env = "MEDIC_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server and the pipeline workers.
    Serve(ServeArgs),
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Inspect incidents in the store.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Verify or export the hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Send captured webhook requests to a running medic.
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// Ask the safety gate about commands.
    #[command(subcommand)]
    Gate(GateCommand),
    /// Search, import, export the validated-fix memory.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Check the inventory's hosts before an incident does.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Console operators.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Copy an installation between stores (SQLite → PostgreSQL for replicas).
    #[command(subcommand)]
    Store(crate::store::migrate::StoreCommand),
    /// Check what medic depends on (data dir, database, hosts, models, SMTP, Qdrant, chat webhooks),
    /// changing and sending nothing. Exit 0 all ok, 1 warnings, 2 a failure.
    Doctor,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Hash a password for a console operator (argon2id) and print the config lines to add. The password
    /// is asked twice on a terminal, or read as the first line of standard input.
    Add { name: String },
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Run each host's evidence plan once (read-only diagnostics, through the gate) and report what fails
    /// and whether the login shell prints. Exit 0 all good, 1 something to fix, 2 a host unreachable.
    Check {
        /// Only this host (inventory name).
        #[arg(long)]
        host: Option<String>,
        /// The service to fill `{service}` with; default: each host's first listed service.
        #[arg(long)]
        service: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Search past fixes, best first.
    Search {
        query: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// Include failed and rejected fixes (labelled).
        #[arg(long)]
        all: bool,
    },
    /// Import known fixes: JSON lines (the export format) or a markdown runbook.
    Import { file: PathBuf },
    /// Write every entry as JSON lines.
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Counts by outcome and service.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Print the verdict as JSON; exit 0 allow, 2 needs approval, 1 deny.
    Check {
        /// Evaluate with this host's overrides.
        #[arg(long)]
        host: Option<String>,
        /// Evaluate as a human-approved command (approval-mode categories pass; blocked patterns still deny).
        #[arg(long)]
        human: bool,
        /// Read one JSON string per line on stdin; write one verdict per line, in order.
        #[arg(long)]
        jsonl: bool,
        /// The command (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Override server.bind (e.g. 127.0.0.1:0 for a free port).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Run everything except the commands themselves, which are recorded as "would run".
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident with its timeline (JSON).
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 naming the first broken row.
    Verify,
    /// Write audit events as JSONL.
    Export {
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events of this incident.
        #[arg(long)]
        incident: Option<String>,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Send a captured `.http` request (headers and body as captured) or a `.json` body.
    Replay {
        file: PathBuf,
        /// Full target URL, e.g. http://127.0.0.1:8080/hooks/uptime-kuma
        #[arg(long)]
        url: String,
        /// Bearer token to send (replaces any captured Authorization header).
        #[arg(long)]
        token: Option<String>,
    },
}

/// Loads the config or explains why not (naming the key).
pub fn load_settings(path: Option<&Path>) -> anyhow::Result<(Settings, ConfigSource)> {
    Settings::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let (mut settings, source) = load_settings(cli.config.as_deref())?;
            if let Some(bind) = args.bind {
                settings.server.bind = bind;
            }
            crate::init_logging(&settings.log);
            match &source {
                ConfigSource::File(p) => tracing::info!(config = %p.display(), "Configuration loaded."),
                ConfigSource::EmbeddedDefaults => {
                    tracing::info!(data_dir = %settings.store.data_dir.display(), "No config file: running on embedded defaults.")
                }
            }
            let options = crate::startup::RunOptions { dry_run: args.dry_run };
            let app = crate::startup::Application::build_with(settings, options).await?;
            // Machine-readable line for scripts and tests that start medic on port 0.
            println!("medic listening on http://{}", app.local_addr());
            let _ = std::io::stdout().flush();
            app.run_until(crate::startup::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let (settings, source) = match load_settings(cli.config.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            };
            match source {
                ConfigSource::File(p) => println!("# config: {} (valid)", p.display()),
                ConfigSource::EmbeddedDefaults => println!("# config: embedded defaults (valid)"),
            }
            for warning in settings.warnings() {
                println!("# warning: {warning}");
            }
            // Monitors medic has seen that the inventory cannot map to a host.
            if settings.db_path().exists()
                && let Ok(store) = Store::open(&settings.store)
                && let Ok(monitors) = store.known_monitors_blocking()
            {
                let inventory = crate::inventory::Inventory::new(settings.inventory.clone());
                for (key, monitor) in monitors {
                    if inventory.resolve(&key, &monitor).is_none() {
                        println!(
                            "# warning: monitor {key} ({:?}) maps to no host in [inventory]; its incidents escalate as \"no host mapping\"",
                            monitor.name
                        );
                    }
                }
                store.close().await;
            }
            print!("{}", settings.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents(cmd) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            let store = open_existing_store(&settings)?;
            incidents(cmd, &store).await
        }
        Command::Audit(AuditCommand::Verify) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            audit_verify(&settings.store)
        }
        Command::Audit(AuditCommand::Export { since, incident, output }) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            let store = open_existing_store(&settings)?;
            audit_export(&store, since.as_deref(), incident.as_deref(), output).await
        }
        Command::Hooks(HooksCommand::Replay { file, url, token }) => replay(&file, &url, token.as_deref()).await,
        Command::Users(UsersCommand::Add { name }) => users_add(&name),
        Command::Store(cmd) => crate::store::migrate::run(cmd),
        Command::Doctor => {
            let (settings, source) = load_settings(cli.config.as_deref())?;
            Ok(ExitCode::from(match crate::doctor::run(&settings, &source).await {
                crate::doctor::Verdict::Ok => 0,
                crate::doctor::Verdict::Warn => 1,
                crate::doctor::Verdict::Fail => 2,
            }))
        }
        Command::Memory(cmd) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            let memory = crate::memory::Memory::open(&settings.memory, &settings.store.data_dir)
                .await
                .context("cannot open the memory")?;
            memory_command(cmd, &memory).await
        }
        Command::Hosts(HostsCommand::Check { host, service }) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            hosts_check(&settings, host.as_deref(), service.as_deref()).await
        }
        Command::Gate(GateCommand::Check { host, human, jsonl, command }) => {
            let (settings, _) = load_settings(cli.config.as_deref())?;
            let gate = crate::gate::Gate::from_config(&settings.gate).map_err(|e| anyhow::anyhow!("{e}"))?;
            let authority = if human { crate::gate::Authority::Human } else { crate::gate::Authority::Automatic };
            if jsonl {
                gate_check_jsonl(&gate, host.as_deref(), authority)?;
                return Ok(ExitCode::SUCCESS);
            }
            if command.is_empty() {
                bail!("give the command after `--`, e.g. medic gate check -- \"systemctl restart nginx\"");
            }
            let verdict = gate.check(&command.join(" "), host.as_deref(), authority);
            println!("{}", verdict.to_json());
            Ok(ExitCode::from(match verdict.kind() {
                "allow" => 0,
                "approval" => 2,
                _ => 1,
            }))
        }
    }
}

fn users_add(name: &str) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if !crate::web::console::valid_name(name) {
        bail!("operator names are 1-64 characters of letters, digits, '.', '_', '@', '-'");
    }
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < 12 {
        bail!("use a password of at least 12 characters");
    }
    let hash = crate::web::console::session::hash_password(&password);
    println!("# Add to medic.toml (or set MEDIC_CONSOLE__USERS as TOML):");
    println!("[[console.users]]\nname = {name:?}\npassword_hash = {hash:?}");
    Ok(ExitCode::SUCCESS)
}

async fn hosts_check(settings: &Settings, only: Option<&str>, service: Option<&str>) -> anyhow::Result<ExitCode> {
    use crate::collect::check::check_host;
    let gate = crate::gate::Gate::from_config(&settings.gate).map_err(|e| anyhow::anyhow!("{e}"))?;
    let redactor = std::sync::Arc::new(
        crate::collect::redact::Redactor::new(&settings.redact).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let collector = crate::collect::Collector::new(gate, redactor, settings.collect.clone());
    let transports =
        crate::transport::Transports::for_installation(settings.transport.clone(), &settings.store.data_dir);
    let hosts: Vec<_> = settings.inventory.hosts.iter().filter(|h| only.is_none_or(|n| h.name == n)).collect();
    if hosts.is_empty() {
        match only {
            Some(name) => bail!("no host named {name:?} in [inventory]"),
            None => bail!("[inventory] lists no hosts: nothing to check"),
        }
    }
    let mut worst = 0u8;
    for host in hosts {
        let Some(service) = service.map(str::to_string).or_else(|| host.services.first().cloned()) else {
            println!("{}: no services listed; pass --service to check it\n", host.name);
            worst = worst.max(1);
            continue;
        };
        let target = crate::inventory::Target { host: host.clone(), service, container: None };
        let report = check_host(&collector, &target, transports.for_host(host).as_ref()).await;
        println!("{}", report.render());
        worst = worst.max(if report.unreachable() {
            2
        } else if report.failures() > 0 || !report.shell_noise.is_empty() {
            1
        } else {
            0
        });
    }
    Ok(ExitCode::from(worst))
}

async fn memory_command(cmd: MemoryCommand, memory: &crate::memory::Memory) -> anyhow::Result<ExitCode> {
    match cmd {
        MemoryCommand::Search { query, service, k, all } => {
            let filter = crate::memory::SearchFilter { service, include_negatives: all };
            for hit in memory.search(&query, &filter, k).await? {
                let e = &hit.entry;
                println!("{:.3}  [{}] {}  `{}`", hit.score, e.outcome.as_str(), e.service, e.command);
                println!("       symptom: {}", e.symptom);
                println!("       cause:   {}", e.root_cause);
                if let Some(reason) = &e.reason {
                    println!("       reason:  {reason}");
                }
                println!("       id:      {}", e.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let n = memory.import(&text).await?;
            println!("imported {n} entries from {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Export { output } => {
            let text = memory.export_jsonl().await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Stats => {
            println!("{}", serde_json::to_string_pretty(&memory.stats().await?)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn gate_check_jsonl(
    gate: &crate::gate::Gate,
    host: Option<&str>,
    authority: crate::gate::Authority,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<String>(&line) {
            Ok(command) => gate.check(&command, host, authority).to_json(),
            Err(e) => {
                serde_json::json!({"verdict": "deny", "reason": format!("input line is not a JSON string: {e}"), "template": null, "argv": []})
            }
        };
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn open_existing_store(settings: &Settings) -> anyhow::Result<Store> {
    let path = settings.db_path();
    if !path.exists() {
        bail!("no medic database at {} (store.data_dir)", path.display());
    }
    Store::open(&settings.store).context("cannot open the store")
}

async fn incidents(cmd: IncidentsCommand, store: &Store) -> anyhow::Result<ExitCode> {
    match cmd {
        IncidentsCommand::List { state, service, limit, json } => {
            let state =
                state.as_deref().map(str::parse::<IncidentState>).transpose().map_err(|e| anyhow::anyhow!(e))?;
            let list = store.list(IncidentFilter { state, service, limit }).await?;
            if json {
                let views: Vec<_> = list.into_iter().map(|i| IncidentView::new(i, None)).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("{:<36}  {:<20}  {:<20}  {:>5}  {:<24}  SERVICE", "ID", "STATE", "OPENED", "DOWNS", "MONITOR");
                for i in list {
                    println!(
                        "{:<36}  {:<20}  {:<20}  {:>5}  {:<24}  {}",
                        i.id,
                        i.state,
                        i.opened_at.format("%Y-%m-%d %H:%M:%S"),
                        i.down_count,
                        truncate(&i.monitor.name, 24),
                        i.service_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id } => {
            let id: IncidentId = id.parse().with_context(|| format!("{id:?} is not an incident id"))?;
            let Some(incident) = store.incident(id).await? else {
                eprintln!("incident {id} not found");
                return Ok(ExitCode::from(1));
            };
            let timeline = store.timeline(id).await?;
            println!("{}", serde_json::to_string_pretty(&IncidentView::new(incident, Some(timeline)))?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `medic audit verify`: the chain, each row's MAC and the head outside the database, read without
/// opening the store for writing (start-up would record a mismatch and move the head on).
fn audit_verify(store: &crate::store::StoreConfig) -> anyhow::Result<ExitCode> {
    let data_dir = &store.data_dir;
    let rows = crate::store::audit_rows_read_only(store)?;
    let secrets = crate::secrets::SecretsDir::open(data_dir).context("cannot open <data_dir>/secrets")?;
    let anchor = crate::audit::anchor::AuditAnchor::open(&secrets).context("cannot read the audit key")?;
    let mismatches: Vec<_> = rows.iter().filter(|r| r.kind == "audit_anchor_mismatch").map(|r| r.seq).collect();
    match crate::audit::verify_anchored(rows, Some(&anchor)) {
        Ok(n) if mismatches.is_empty() => {
            println!("audit chain OK: {n} events verified, MACs and the head outside the database match");
            Ok(ExitCode::SUCCESS)
        }
        Ok(n) => {
            println!(
                "audit chain verifies ({n} events), but it records that the database did not match its anchor \
                 at start-up (rows lost, replaced or an older backup restored before that point): see seq {mismatches:?}"
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            println!("audit chain BROKEN at seq {}: {e}", e.seq());
            Ok(ExitCode::from(1))
        }
    }
}

/// `medic audit export`: the events as JSONL, with their hashes and MACs.
async fn audit_export(
    store: &Store,
    since: Option<&str>,
    incident: Option<&str>,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let since = since
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)))
        .transpose()
        .context("--since must be an RFC 3339 time, e.g. 2026-11-22T00:00:00Z")?;
    let incident = incident.map(str::parse::<IncidentId>).transpose().context("--incident must be an incident id")?;
    let events = store.audit_events(since, incident).await?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => {
            Box::new(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    for event in events {
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A captured request: the headers worth resending and the body.
#[derive(Debug)]
pub struct CapturedRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses a `.http` capture (request line, headers, blank line, body) or wraps a `.json` body.
pub fn parse_capture(path: &Path) -> anyhow::Result<CapturedRequest> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().and_then(|e| e.to_str()) != Some("http") {
        return Ok(CapturedRequest { headers: vec![("Content-Type".into(), "application/json".into())], body: bytes });
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .context("capture has no blank line between headers and body")?;
    let head = String::from_utf8_lossy(&bytes[..split.0]).into_owned();
    let body = bytes[split.0 + split.1..].to_vec();
    let mut lines = head.lines();
    let request_line = lines.next().context("capture is empty")?;
    if !request_line.contains("HTTP/") {
        bail!("first line {request_line:?} is not an HTTP request line");
    }
    // Framing headers are recomputed by the client; Host comes from --url.
    let skip = ["host", "content-length", "transfer-encoding", "connection"];
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !skip.contains(&k.to_ascii_lowercase().as_str()))
        .collect();
    Ok(CapturedRequest { headers, body })
}

async fn replay(file: &Path, url: &str, token: Option<&str>) -> anyhow::Result<ExitCode> {
    let capture = parse_capture(file)?;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut request = client.post(url);
    for (k, v) in &capture.headers {
        if token.is_some() && k.eq_ignore_ascii_case("authorization") {
            continue;
        }
        request = request.header(k, v);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.body(capture.body).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{} {}", status.as_u16(), text);
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { text.chars().take(max - 1).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_drop_framing_headers_and_keep_the_rest() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uptime-kuma/v2.5.3/down_form.http"));
        let capture = parse_capture(path).unwrap();
        let names: Vec<_> = capture.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        assert!(names.contains(&"content-type".to_string()));
        assert!(names.contains(&"user-agent".to_string()));
        assert!(!names.contains(&"transfer-encoding".to_string()));
        assert!(!names.contains(&"host".to_string()));
        assert!(capture.body.starts_with(b"----------------------------"));
    }
}
