//! `/ui/probes`: medic's own probes with their state, last check, uptime and latency, and a bar of
//! hourly uptime over the last 24 hours. `/ui/hosts`: a card per inventory host with its health (gauges
//! for CPU, memory and the fullest disk, a 24-hour CPU sparkline, containers, active alerts) and its last
//! `check now` report.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::session::short_time;
use super::{Layout, Operator, internal, render};
use crate::charts;
use crate::health::{ActiveAlert, HostSample};
use crate::web::AppState;
use crate::web::probes::{ProbeView, views};

#[derive(Template)]
#[template(path = "console/probes.html")]
struct ProbesPage {
    layout: Layout,
    probes: Vec<(ProbeView, String)>,
}

fn percent(v: Option<f64>) -> String {
    v.map(|p| format!("{p:.2} %")).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|p| format!("{p:.0} ms")).unwrap_or_else(|| "-".into())
}

pub async fn probes(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let views = match views(&state).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let probes = views
        .into_iter()
        .map(|mut v| {
            let bars = charts::uptime_bars(&v.hourly_uptime);
            v.last_detail = v.last_detail.map(|d| state.notifier.redact(&d));
            v.last_checked = v.last_checked.map(|t| super::session::short_time(&t));
            (v, bars)
        })
        .collect();
    render(&ProbesPage { layout: Layout::new(&state, &operator, "probes").await, probes })
}

/// Formatting helpers the template calls.
impl ProbesPage {
    fn percent(&self, v: &Option<f64>) -> String {
        percent(*v)
    }
    fn ms(&self, v: &Option<f64>) -> String {
        ms(*v)
    }
}

pub struct HostCard {
    name: String,
    transport: String,
    address: String,
    services: String,
    state: String,
    sample: Option<HostSample>,
    sampled: String,
    alerts: Vec<ActiveAlert>,
    cpu_gauge: String,
    memory_gauge: String,
    disk_gauge: String,
    cpu_spark: String,
    checked: String,
    outcome: String,
    report: String,
}

#[derive(Template)]
#[template(path = "console/hosts.html")]
struct HostsPage {
    layout: Layout,
    hosts: Vec<HostCard>,
}

impl HostsPage {
    fn percent(&self, v: &Option<f64>) -> String {
        percent(*v)
    }
}

pub async fn hosts(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let (checks, views) = match (state.store.host_checks().await, crate::web::hosts::host_views(&state).await) {
        (Ok(c), Ok(v)) => (c, v),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let h = &state.health_config;
    let mut cards = Vec::new();
    for (host, view) in state.inventory.hosts().iter().zip(views) {
        let last = checks.iter().find(|c| c.0 == host.name);
        let since = chrono::Utc::now() - chrono::Duration::hours(24);
        let history = state.store.host_history(host.name.clone(), since, 300).await.unwrap_or_default();
        let cpu: Vec<Option<f64>> = history.iter().map(|p| p.cpu_percent).collect();
        let s = view.last_sample.as_ref();
        cards.push(HostCard {
            name: host.name.clone(),
            transport: format!("{:?}", host.transport).to_lowercase(),
            address: if host.address.is_empty() {
                "-".into()
            } else {
                format!("{}@{}:{}", host.user, host.address, host.port)
            },
            services: host.services.join(", "),
            state: view.state.clone(),
            sampled: s.map(|s| s.at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "never".into()),
            cpu_gauge: charts::gauge(s.and_then(|s| s.cpu_percent), h.cpu.warning, h.cpu.critical),
            memory_gauge: charts::gauge(
                s.and_then(|s| s.memory.map(|m| m.used_percent)),
                h.memory.warning,
                h.memory.critical,
            ),
            disk_gauge: charts::gauge(s.and_then(HostSample::disk_max), h.disk.warning, h.disk.critical),
            cpu_spark: charts::sparkline(&cpu),
            sample: view.last_sample.clone(),
            alerts: view.alerts.clone(),
            checked: last.map(|c| short_time(&c.1)).unwrap_or_else(|| "never".into()),
            outcome: last.map(|c| c.2.clone()).unwrap_or_default(),
            report: last.map(|c| state.notifier.redact(&c.3)).unwrap_or_default(),
        });
    }
    render(&HostsPage { layout: Layout::new(&state, &operator, "hosts").await, hosts: cards })
}
