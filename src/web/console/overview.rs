//! `/ui/`: what is happening now and how medic has done lately.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{Duration, Utc};

use super::{Layout, Operator, internal, render};
use crate::charts;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    layout: Layout,
    open_total: u64,
    open_by_state: Vec<(String, u64)>,
    healed_auto_today: u64,
    healed_auto_7d: u64,
    healed_by_human_7d: u64,
    mttr: String,
    waiting: usize,
    cost_today: String,
    verdicts: Vec<(String, u64)>,
    errors: Vec<(String, String, String)>,
    per_hour_svg: String,
    mttr_svg: String,
    /// Active host alerts and probes down or slow: (level, text).
    alerts: Vec<(String, String)>,
}

/// "1h 02m", "3m 10s", "12.3s".
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s >= 3600.0 {
        format!("{}h {:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else if s >= 60.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

pub async fn page(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let o = match state.store.overview().await {
        Ok(o) => o,
        Err(e) => return internal(e),
    };
    let midnight = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let cost = state.store.spend_since(midnight).await.unwrap_or(0.0);
    let layout = Layout::new(&state, &operator, "overview").await;
    let now = Utc::now();
    let hours: Vec<String> = (0..24).rev().map(|h| (now - Duration::hours(h)).format("%H:00").to_string()).collect();
    let redact = |t: &str| state.notifier.redact(t);
    let mut alerts: Vec<(String, String)> =
        state.health_alerts.active().into_iter().map(|a| (a.level, redact(&a.message))).collect();
    for p in crate::web::probes::views(&state).await.unwrap_or_default() {
        if p.state == "down" || p.state == "slow" {
            let level = if p.state == "down" { "critical" } else { "warning" };
            alerts.push((
                level.into(),
                redact(&format!("probe {} is {}: {}", p.name, p.state, p.last_detail.unwrap_or_default())),
            ));
        }
    }
    let page = OverviewPage {
        open_total: o.open_by_state.iter().map(|(_, n)| n).sum(),
        waiting: layout.waiting,
        layout,
        open_by_state: o.open_by_state.clone(),
        healed_auto_today: o.healed_auto_today,
        healed_auto_7d: o.healed_auto_7d,
        healed_by_human_7d: o.healed_by_human_7d,
        mttr: o.mttr_7d.map(duration_text).unwrap_or_else(|| "none resolved".into()),
        cost_today: format!("${cost:.4}"),
        verdicts: o.verdicts_7d.clone(),
        errors: o
            .errors
            .iter()
            .map(|(t, what, detail)| {
                // Audit details are JSON; outbox and host rows are already a line.
                let line =
                    serde_json::from_str(detail).map(|v| super::incidents::details_line(&v)).unwrap_or(detail.clone());
                (super::session::short_time(t), what.clone(), redact(&line))
            })
            .collect(),
        per_hour_svg: charts::bars("Incidents opened per hour, last 24 hours", &o.per_hour, &hours),
        mttr_svg: charts::line("Mean time to recovery per day, last 14 days", &o.mttr_per_day),
        alerts,
    };
    render(&page)
}
