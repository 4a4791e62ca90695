//! All wiring: builds the store, the pipeline and its workers, the router; runs until a shutdown signal.
//!
//! The server is built from a bound listener and a shutdown future, so tests start the real app on port 0
//! and stop it when they like.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::approval::Approvals;
use crate::approval::journal::DecisionJournal;
use crate::approval::links::IncidentLinks;
use crate::collect::Collector;
use crate::collect::redact::Redactor;
use crate::config::Settings;
use crate::diagnose::Diagnoser;
use crate::execute::{Executor, Verifier};
use crate::gate::{ActionPolicy, DryRun, Gate};
use crate::inventory::Inventory;
use crate::memory::Memory;
use crate::notify::outbox::OutboxSender;
use crate::notify::seal::Sealer;
use crate::notify::{Notifier, NotifierParts};
use crate::pipeline::{Pipeline, Runner, Stages};
use crate::secrets::SecretsDir;
use crate::store::Store;
use crate::transport::Transports;
use crate::web::{self, ApiAuth, AppState};

/// A built, bound, not yet serving medic.
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    store: Store,
    runner_handle: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    grace: Duration,
    limits: web::serve::Limits,
}

/// Start-up choices that are not configuration (command-line flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `medic serve --dry-run`.
    pub dry_run: bool,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, RunOptions::default()).await
    }

    pub async fn build_with(settings: Settings, options: RunOptions) -> anyhow::Result<Self> {
        let auth = resolve_auth(&settings)?;
        let gate = Gate::from_config(&settings.gate).map_err(|e| anyhow::anyhow!("{e}"))?;
        let redactor = Arc::new(Redactor::new(&settings.redact).map_err(|e| anyhow::anyhow!("{e}"))?);
        let diagnoser = Diagnoser::new(settings.diagnose.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Store::open(&settings.store).context("cannot open the store")?;
        let api_dry_run = store.state_value(crate::gate::dry_run::STATE_KEY).await?.as_deref() == Some("true");
        let dry_run = DryRun::new(settings.gate.dry_run, options.dry_run, api_dry_run);
        if dry_run.is_on() {
            warn!(state = ?dry_run.state(), "Dry-run is on: commands are recorded as \"would run\", never executed.");
        }
        let memory = match Memory::open(&settings.memory, &settings.store.data_dir).await {
            // Replicas: entries also go to the shared database, and each index catches up from there.
            Ok(m) if settings.store.is_postgres() => Some(m.mirrored(store.clone())),
            Ok(m) => Some(m),
            // A wrong port or a collection made for another layout: refuse to start, naming the keys.
            Err(e @ crate::memory::MemoryError::Config(_)) => return Err(anyhow::anyhow!("{e}")),
            Err(e) if settings.memory.qdrant_url.is_some() => {
                warn!(error = %e, "Qdrant memory unavailable at start-up: running without L0 memory and retrieval.");
                None
            }
            Err(e) => return Err(anyhow::anyhow!("cannot open the memory: {e}")),
        };
        if !diagnoser.l1_configured() {
            info!(
                "Level 1 is not configured (diagnose.l1.url): incidents go to level 0 rules and memory, then humans."
            );
        }
        if !diagnoser.l2_configured() {
            info!("Level 2 is not configured (no diagnose.l2 key): escalations go straight to humans.");
        }

        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("cannot bind {} (server.bind)", settings.server.bind))?;
        let addr = listener.local_addr()?;
        let public_url = match &settings.approval.public_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{addr}")).context("public URL")?,
        };

        let shutdown = CancellationToken::new();
        let secrets = SecretsDir::open(&settings.store.data_dir)
            .with_context(|| format!("cannot create {}/secrets", settings.store.data_dir.display()))?;
        let journal = DecisionJournal::open(&secrets)
            .context("cannot read or create the decision journal in <data_dir>/secrets/decisions.log")?;
        let approvals = Approvals::new(store.clone(), &settings.approval, journal);
        let links = IncidentLinks::open(&secrets, settings.approval.incident_link_ttl)
            .context("cannot read or create the incident link key in <data_dir>/secrets/link_key")?;
        let sealer =
            Sealer::new(&secrets.key("outbox_key").context("cannot read or create <data_dir>/secrets/outbox_key")?);
        if settings.store.is_postgres() {
            // Replicas share one database: links, sealed outbox bodies and the audit chain need the same keys.
            for name in ["audit_key", "outbox_key", "link_key"] {
                let key = secrets.key(name).with_context(|| format!("cannot read <data_dir>/secrets/{name}"))?;
                store.check_shared_key(name, &key).await?;
            }
            if settings.memory.qdrant_url.is_none() {
                warn!(
                    "store.url is PostgreSQL but memory is the embedded file: each replica remembers its own fixes. \
                     Set memory.qdrant_url to share them (README, \"Several replicas\")."
                );
            }
        }
        let notifier = Arc::new(Notifier::new(
            settings.notify.clone(),
            NotifierParts {
                approvals: approvals.clone(),
                public_url,
                redactor: redactor.clone(),
                links: links.clone(),
                sealer: sealer.clone(),
                gate: gate.clone(),
            },
        ));
        let outbox = OutboxSender::new(
            store.clone(),
            settings.notify.clone(),
            settings.store.data_dir.clone(),
            notifier.wake_handle(),
            sealer,
        )
        .map_err(|e| anyhow::anyhow!("notify.email: {e}"))?;
        let mut background = vec![tokio::spawn(outbox.run(shutdown.clone()))];
        if let (true, Some(m)) = (settings.store.is_postgres(), &memory) {
            background.push(tokio::spawn(crate::memory::mirror::run(m.clone(), store.clone(), shutdown.clone())));
        }
        if settings.notify.digest.enabled {
            background.push(tokio::spawn(crate::notify::digest::run(
                store.clone(),
                notifier.clone(),
                shutdown.clone(),
            )));
        }

        let inventory = Inventory::new(settings.inventory.clone());
        let transports = Arc::new(Transports::for_installation(settings.transport.clone(), &settings.store.data_dir));
        let console = web::console::Console {
            sessions: web::console::Sessions::new(
                store.clone(),
                &settings.console.user_hashes(),
                settings.console.session_ttl,
                settings.console.idle_timeout,
                notifier.public_url().scheme() == "https",
            ),
            proxy_header: (!settings.console.proxy_header.is_empty())
                .then(|| axum::http::HeaderName::from_bytes(settings.console.proxy_header.as_bytes()).ok())
                .flatten(),
            trusted_proxies: settings.console.trusted_proxies.clone(),
            require_login: settings.approval.require_login,
            collector: Collector::new(gate.clone(), redactor.clone(), settings.collect.clone()),
            transports: transports.clone(),
        };
        let console_transports = transports.clone();
        let stages = Stages {
            inventory: inventory.clone(),
            transports,
            collector: Collector::new(gate.clone(), redactor.clone(), settings.collect.clone()),
            gate: gate.clone(),
            policy: ActionPolicy::new(settings.gate.policy.clone()),
            executor: Executor::new(settings.execute.clone()),
            verifier: Verifier::new(settings.verify.clone()),
            diagnoser,
            memory: memory.clone(),
            notifier: notifier.clone(),
            approvals: approvals.clone(),
            dry_run: dry_run.clone(),
            redactor,
        };
        let pipeline = Pipeline::new(store.clone(), settings.pipeline.clone(), shutdown.clone(), stages);
        background.push(tokio::spawn(crate::pipeline::reprobe::run(
            pipeline.clone(),
            settings.pipeline.reprobe_interval,
            shutdown.clone(),
        )));
        let orchestrated = pipeline.clone();
        let (runner, runner_handle) = Runner::start(
            pipeline,
            store.clone(),
            settings.pipeline.max_concurrent,
            settings.store.lease,
            shutdown.clone(),
        );

        // Resume every incident that still has work: nothing acknowledged is ever dropped.
        let pending = store.count_runnable().await.context("cannot count unfinished incidents")?;
        if pending > 0 {
            info!(n_incidents = pending, "Resuming unfinished incidents.");
        }
        runner.wake();
        notifier.kick();
        background.push(tokio::spawn(crate::store::retention::run(
            store.clone(),
            settings.store.retention,
            settings.store.data_dir.clone(),
            shutdown.clone(),
        )));
        background.push(tokio::spawn(crate::pipeline::lifecycle::run(
            store.clone(),
            approvals.clone(),
            runner.clone(),
            shutdown.clone(),
        )));

        let intake = crate::pipeline::intake::Intake::new(
            store.clone(),
            runner.clone(),
            notifier.clone(),
            settings.pipeline.external_sources.clone(),
        );
        let health_alerts = crate::health::Alerts::default();
        let probes = crate::probe::specs(&settings.probes).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Replicas sharing a database take turns: one at a time probes and checks hosts.
        let watching = if (settings.health.enabled && !inventory.is_empty()) || !probes.is_empty() {
            store.leader("watch", settings.store.lease, shutdown.clone()).await
        } else {
            crate::store::Leader::alone()
        };
        if settings.health.enabled && !inventory.is_empty() {
            let watcher = crate::health::Watcher {
                config: settings.health.clone(),
                inventory: inventory.clone(),
                gate: gate.clone(),
                transports: console_transports.clone(),
                store: store.clone(),
                intake: intake.clone(),
                alerts: health_alerts.clone(),
                leader: watching.clone(),
            };
            background.push(tokio::spawn(watcher.run(shutdown.clone())));
        }
        if !probes.is_empty() {
            info!(n_probes = probes.len(), "Starting probes.");
            let prober = crate::probe::Prober {
                specs: probes.clone(),
                settings: settings.probe.clone(),
                store: store.clone(),
                intake: intake.clone(),
                leader: watching.clone(),
            };
            background.push(tokio::spawn(prober.run(shutdown.clone())));
        }
        let state = Arc::new(AppState {
            store: store.clone(),
            intake: intake.clone(),
            pipeline: orchestrated,
            runner,
            auth,
            gate,
            dry_run,
            approvals,
            notifier,
            memory,
            links,
            inventory,
            throttle: Default::default(),
            console,
            console_enabled: settings.console.enabled,
            probes,
            health_alerts,
            health_config: settings.health.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            request_timeout: settings.server.request_timeout,
        });
        let limits = web::serve::Limits {
            header_timeout: settings.server.header_timeout,
            max_connections: web::serve::connection_cap(settings.server.max_connections),
            shutdown_grace: settings.server.shutdown_grace,
        };
        Ok(Self {
            listener,
            state,
            store,
            runner_handle,
            background,
            shutdown,
            grace: settings.server.shutdown_grace,
            limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Serves until `signal` resolves, then: stop accepting, finish in-flight requests, let workers
    /// finish their current step (bounded by `server.shutdown_grace`), flush and close the store.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let addr = self.local_addr();
        info!(%addr, "medic listening on http://{addr}");
        let router = web::router(self.state.clone());
        let shutdown = self.shutdown.clone();
        // Everything after the signal shares one deadline: `server.shutdown_grace` in all.
        let fired = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
        let fired_at = fired.clone();
        info!(max_connections = self.limits.max_connections, "Connection limits set.");
        web::serve::serve(self.listener, router, self.limits, async move {
            signal.await;
            *fired_at.lock().expect("shutdown clock") = Some(tokio::time::Instant::now());
            info!("Shutdown requested: no new requests; finishing in-flight work.");
            shutdown.cancel();
        })
        .await;
        self.shutdown.cancel();
        let started = fired.lock().expect("shutdown clock").unwrap_or_else(tokio::time::Instant::now);
        let deadline = started + self.grace;
        if tokio::time::timeout_at(deadline, self.runner_handle).await.is_err() {
            warn!(grace = ?self.grace, "Workers did not stop in time; their incidents resume at next start.");
        }
        for task in self.background {
            let _ =
                tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + Duration::from_millis(500)), task)
                    .await;
        }
        self.store.close().await;
        info!("medic stopped.");
        Ok(())
    }
}

/// Resolves once SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The API token: configured, read from a file, explicitly off, or generated once into the data dir.
fn resolve_auth(settings: &Settings) -> anyhow::Result<ApiAuth> {
    if let Some(token) = &settings.auth.token {
        return Ok(ApiAuth::token(token.expose()));
    }
    if let Some(path) = &settings.auth.token_file {
        return Ok(ApiAuth::token(&read_token_file(path).context("auth.token_file")?));
    }
    if settings.auth.allow_unauthenticated {
        warn!("auth.allow_unauthenticated = true: webhooks and the API accept requests with no token.");
        return Ok(ApiAuth::Open);
    }
    let path = settings.store.data_dir.join("secrets").join("api_token");
    if !path.exists() {
        let dir = path.parent().expect("path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let token = crate::random_token(32);
        write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
        info!(path = %path.display(), "Generated an API token for webhooks (Authorization: Bearer <token>); read it from this file.");
    } else {
        info!(path = %path.display(), "Using the generated API token in this file.");
    }
    Ok(ApiAuth::token(&read_token_file(&path)?))
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(token.len() >= 12, "token in {} is shorter than 12 characters", path.display());
    Ok(token)
}

/// Writes a file only the owner can read.
pub use crate::secrets::write_private;
