//! `/ui/probes`: medic's own probes with their state, last check, uptime and latency, and a bar of
//! hourly uptime over the last 24 hours.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{Layout, Operator, charts, internal, render};
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
