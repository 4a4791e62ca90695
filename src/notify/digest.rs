//! The daily digest at `notify.digest.time` (UTC): incidents opened, fixed automatically, recovered,
//! escalated, approved and rejected in the last 24 h, mean time to recovery, most failing services and
//! AI cost; to email and to chat channels subscribed to `digest`. The last sent day is persisted, so a
//! restart neither skips nor repeats a digest.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use chrono::{NaiveTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Notifier, NotifyError, NotifyEvent, OutboxRow};
use crate::store::{DigestStats, Store};

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
pub fn rows(notifier: &Notifier, stats: &DigestStats, period: &str) -> Result<Vec<OutboxRow>, NotifyError> {
    let email = DigestEmail {
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
        let summary = format!(
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

/// Builds and queues the digest for the 24 hours before now. Returns how many messages were queued.
pub async fn send_now(store: &Store, notifier: &Notifier) -> Result<usize, String> {
    let now = Utc::now();
    let since = now - chrono::Duration::hours(24);
    let stats = store.digest(since).await.map_err(|e| e.to_string())?;
    let period = format!("{} – {} UTC", since.format("%Y-%m-%d %H:%M"), now.format("%Y-%m-%d %H:%M"));
    let rows = rows(notifier, &stats, &period).map_err(|e| e.to_string())?;
    let n = rows.len();
    let day = now.format("%Y-%m-%d").to_string();
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

/// Checks every 30 s whether today's digest is due.
pub async fn run(store: Store, notifier: Arc<Notifier>, shutdown: CancellationToken) {
    let Ok(at) = NaiveTime::parse_from_str(&notifier.config().digest.time, "%H:%M") else { return };
    loop {
        let now = Utc::now();
        let today = now.format("%Y-%m-%d").to_string();
        let last = store.state_value(LAST_SENT_KEY).await.ok().flatten();
        if now.time() >= at
            && last.as_deref() != Some(today.as_str())
            && let Err(e) = send_now(&store, &notifier).await
        {
            warn!(error = %e, "Daily digest failed; will retry.");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {},
        }
    }
}
