//! `/metrics` after a scripted incident, parsed by a Prometheus text-format parser: the counters match
//! what happened to the incident.

use crate::helpers::TOKEN;
use crate::world::{Options, World};

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_what_happened_to_an_incident() {
    let world = World::start(Options { l2: false, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&world.start_command()));
    let id = world.down().await;
    world.wait_state(&id, "resolved", 40).await;

    let url = world.app.url("/metrics");
    let anonymous = world.app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "token-protected");
    let r = world.app.client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let lines = text.lines().filter(|l| *l != "# EOF").map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    let v = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    assert_eq!(v("medic_incidents", &[("state", "resolved")]), Some(1.0), "{text}");
    assert_eq!(v("medic_incidents_resolved", &[("level", "l1")]), Some(1.0), "{text}");
    assert_eq!(v("medic_incidents_opened_total", &[("source", "uptime_kuma")]), Some(1.0), "{text}");
    assert_eq!(v("medic_commands_executed_total", &[("dry_run", "false")]), Some(1.0), "{text}");
    assert_eq!(v("medic_verifications_total", &[("verified", "true")]), Some(1.0), "{text}");
    assert_eq!(v("medic_gate_verdicts_total", &[("verdict", "allow")]), Some(1.0), "{text}");
    assert_eq!(
        v("medic_model_calls_total", &[("level", "l1"), ("provider", "ollama"), ("outcome", "replied")]),
        Some(1.0),
        "{text}"
    );
    let tokens_in = v("medic_model_tokens_in_total", &[("level", "l1")]).unwrap();
    assert!(tokens_in > 0.0, "{text}");
    assert_eq!(v("medic_pipeline_runnable", &[]), Some(0.0), "{text}");
    assert_eq!(v("medic_waiting_for_human", &[]), Some(0.0), "{text}");
    assert_eq!(v("medic_alerts_stored", &[("source", "uptime_kuma"), ("status", "down")]), Some(1.0), "{text}");
    // Latency histograms: one observation each for this incident's command, verification and model call.
    for line in [
        "medic_command_duration_seconds_count{automatic=\"true\"} 1",
        "medic_verification_seconds_count{verified=\"true\"} 1",
        "medic_model_call_seconds_count{level=\"l1\",provider=\"ollama\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}
