//! The daily report at `notify.digest.time` (UTC): incidents opened, fixed automatically, recovered,
//! escalated, approved and rejected in the last 24 h, mean time to recovery, most failing services and
//! AI cost; 24-hour trends per host (CPU, memory, fullest disk: min/avg/max, with hourly charts drawn as
//! inline SVG), uptime and latency per probe, and the containers using the most CPU. To email (HTML and
//! text) and to chat channels subscribed to `digest`. The last sent day is persisted, so a restart
//! neither skips nor repeats a report.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use chrono::{NaiveTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Notifier, NotifyError, NotifyEvent, OutboxRow};
use crate::store::health::{ContainerUse, HostTrend};
use crate::store::{DigestStats, Store};

/// Everything the report says beyond the incident figures.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub hosts: Vec<HostTrend>,
    /// (probe, uptime %, p95 latency ms) over the period.
    pub probes: Vec<(String, Option<f64>, Option<f64>)>,
    pub containers: Vec<ContainerUse>,
}

/// One host's lines in the email.
pub struct HostLines {
    pub host: String,
    pub cpu: String,
    pub memory: String,
    pub disk: String,
    pub cpu_chart: String,
    pub memory_chart: String,
}

fn min_avg_max(v: Option<(f64, f64, f64)>) -> String {
    v.map(|(a, b, c)| format!("{a:.0} / {b:.0} / {c:.0} %")).unwrap_or_else(|| "no data".into())
}

const LAST_SENT_KEY: &str = "digest_last_sent";

#[derive(Template)]
#[template(path = "email/digest.html")]
pub struct DigestEmail {
    pub subject: String,
    pub period: String,
    pub opened: u64,
    pub auto_fixed: u64,
    pub recovered: u64,
    pub escalated: u64,
    pub approved: u64,
    pub rejected: u64,
    pub mttr: String,
    pub cost: String,
    pub top_services: Vec<(String, u64)>,
    pub hosts: Vec<HostLines>,
    pub probes: Vec<(String, String, String)>,
    pub containers: Vec<ContainerUse>,
}

#[derive(Template)]
#[template(path = "email/digest.txt", escape = "none")]
pub struct DigestText<'a> {
    pub d: &'a DigestEmail,
}

pub fn mttr_text(seconds: Option<f64>) -> String {
    match seconds {
        None => "no recoveries".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The digest's outbox rows for every subscribed destination.
pub fn rows(
    notifier: &Notifier,
    stats: &DigestStats,
    watch: &Watch,
    period: &str,
) -> Result<Vec<OutboxRow>, NotifyError> {
    let email = DigestEmail {
        hosts: watch
            .hosts
            .iter()
            .map(|h| HostLines {
                host: h.host.clone(),
                cpu: min_avg_max(h.cpu),
                memory: min_avg_max(h.memory),
                disk: min_avg_max(h.disk),
                cpu_chart: crate::charts::sparkline(&h.hourly_cpu),
                memory_chart: crate::charts::sparkline(&h.hourly_memory),
            })
            .collect(),
        probes: watch
            .probes
            .iter()
            .map(|(name, up, p95)| {
                (
                    name.clone(),
                    up.map(|u| format!("{u:.2} %")).unwrap_or_else(|| "no checks".into()),
                    p95.map(|p| format!("{p:.0} ms")).unwrap_or_else(|| "-".into()),
                )
            })
            .collect(),
        containers: watch.containers.clone(),
        subject: format!("[medic] Daily digest: {} incidents, {} fixed automatically", stats.opened, stats.auto_fixed),
        period: period.to_string(),
        opened: stats.opened,
        auto_fixed: stats.auto_fixed,
        recovered: stats.recovered,
        escalated: stats.escalated,
        approved: stats.approved,
        rejected: stats.rejected,
        mttr: mttr_text(stats.mttr_seconds),
        cost: format!("${:.4}", stats.cost),
        top_services: stats.top_services.clone(),
    };
    let mut rows = Vec::new();
    if notifier.config().email.events.contains(&NotifyEvent::Digest) {
        let html = email.render().map_err(|e| NotifyError::Template(e.to_string()))?;
        let text = DigestText { d: &email }.render().map_err(|e| NotifyError::Template(e.to_string()))?;
        rows.extend(notifier.plain_email_rows(NotifyEvent::Digest, &email.subject, &text, &html)?);
    }
    for channel in notifier.config().channels.iter().filter(|c| c.events.contains(&NotifyEvent::Digest)) {
        let mut summary = format!(
            "{} opened, {} fixed automatically, {} recovered, {} escalated, {}/{} approved/rejected, MTTR {}, AI cost {}",
            email.opened,
            email.auto_fixed,
            email.recovered,
            email.escalated,
            email.approved,
            email.rejected,
            email.mttr,
            email.cost
        );
        for h in &email.hosts {
            summary
                .push_str(&format!("\n{}: CPU {}, memory {}, disk {} (min/avg/max)", h.host, h.cpu, h.memory, h.disk));
        }
        for (name, up, p95) in &email.probes {
            summary.push_str(&format!("\nprobe {name}: up {up}, p95 {p95}"));
        }
        let body = super::chat::simple_payload(
            channel,
            &format!("medic daily digest: {period}"),
            &summary,
            0x546E7A,
            json!({"event": "digest", "period": period, "stats": stats}),
        );
        rows.push(OutboxRow {
            channel: "chat".into(),
            destination: channel.name.clone(),
            subject: "digest".into(),
            body: notifier.sealer().seal(&body.to_string()),
            incident_id: None,
            event: NotifyEvent::Digest,
        });
    }
    Ok(rows)
}

/// The report's outbox rows for the 24 hours before now.
async fn build(store: &Store, notifier: &Notifier) -> Result<Vec<OutboxRow>, String> {
    let now = Utc::now();
    let since = now - chrono::Duration::hours(24);
    let stats = store.digest(since).await.map_err(|e| e.to_string())?;
    let watch = watch(store, since).await.map_err(|e| e.to_string())?;
    let period = format!("{} – {} UTC", since.format("%Y-%m-%d %H:%M"), now.format("%Y-%m-%d %H:%M"));
    rows(notifier, &stats, &watch, &period).map_err(|e| e.to_string())
}

/// Builds and queues the report now, on request: the day's scheduled report still goes out. Returns
/// how many messages were queued.
pub async fn queue_now(store: &Store, notifier: &Notifier) -> Result<usize, String> {
    let rows = build(store, notifier).await?;
    let n = rows.len();
    store
        .write(move |ctx| rows.iter().try_for_each(|row| super::outbox::enqueue(ctx, row)))
        .await
        .map_err(|e| e.to_string())?;
    notifier.kick();
    Ok(n)
}

/// Builds and queues the day's report and records the day as sent, in one transaction.
pub async fn send_now(store: &Store, notifier: &Notifier) -> Result<usize, String> {
    let rows = build(store, notifier).await?;
    let n = rows.len();
    let day = Utc::now().format("%Y-%m-%d").to_string();
    store
        .write(move |ctx| {
            for row in &rows {
                super::outbox::enqueue(ctx, row)?;
            }
            ctx.set_state_value(LAST_SENT_KEY, &day)
        })
        .await
        .map_err(|e| e.to_string())?;
    notifier.kick();
    Ok(n)
}

/// Hosts, probes and containers over the period.
pub async fn watch(store: &Store, since: chrono::DateTime<Utc>) -> Result<Watch, crate::store::StoreError> {
    let mut probes = Vec::new();
    for name in store.probes_seen_since(since).await? {
        let u = store.probe_uptime(name.clone(), since).await?;
        probes.push((name, u.uptime_percent, u.latency_p95_ms));
    }
    Ok(Watch { hosts: store.host_trends(since).await?, probes, containers: store.top_containers(since, 5).await? })
}

/// Queues today's report unless it was queued already: the check and the queueing are one write, so
/// replicas sharing a database send it once.
async fn send_once_today(store: &Store, notifier: &Notifier) -> Result<usize, String> {
    let rows = build(store, notifier).await?;
    let day = Utc::now().format("%Y-%m-%d").to_string();
    let n = store
        .write(move |ctx| {
            use crate::store::db::OptionalExtension;
            let last: Option<String> = ctx
                .conn()
                .query_row("SELECT value FROM settings_state WHERE key = ?1", [LAST_SENT_KEY], |r| r.get(0))
                .optional()?;
            if last.as_deref() == Some(day.as_str()) {
                return Ok(0);
            }
            for row in &rows {
                super::outbox::enqueue(ctx, row)?;
            }
            ctx.set_state_value(LAST_SENT_KEY, &day)?;
            Ok(rows.len())
        })
        .await
        .map_err(|e| e.to_string())?;
    notifier.kick();
    Ok(n)
}

/// Checks every 30 s whether today's digest is due.
pub async fn run(store: Store, notifier: Arc<Notifier>, shutdown: CancellationToken) {
    let Ok(at) = NaiveTime::parse_from_str(&notifier.config().digest.time, "%H:%M") else { return };
    loop {
        let now = Utc::now();
        let today = now.format("%Y-%m-%d").to_string();
        let last = store.state_value(LAST_SENT_KEY).await.ok().flatten();
        if now.time() >= at
            && last.as_deref() != Some(today.as_str())
            && let Err(e) = send_once_today(&store, &notifier).await
        {
            warn!(error = %e, "Daily digest failed; will retry.");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {},
        }
    }
}
