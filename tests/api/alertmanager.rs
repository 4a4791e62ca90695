//! Alertmanager's webhook, black-box against the real server on port 0.

use serde_json::{Value, json};

use crate::helpers::{TOKEN, TestApp, fixture_path};

fn body(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path(&format!("alertmanager/{name}"))).unwrap()).unwrap()
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let r = app.client.post(app.url("/hooks/alertmanager")).bearer_auth(TOKEN).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_group_opens_one_incident_per_alert_and_resolved_recovers_it() {
    let app = TestApp::spawn().await;
    let (status, answer) = post(&app, &body("firing_two.json")).await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["alerts"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["action"] == "opened"), "{answer}");
    assert_eq!(results[0]["monitor_id"], "a1b2c3d4e5f60718");

    let nginx = app.incident(results[0]["incident_id"].as_str().unwrap()).await;
    assert_eq!(nginx["source"], "alertmanager");
    assert_eq!(nginx["monitor_name"], "SystemdUnitDown");
    assert_eq!(nginx["service_name"], "nginx", "from name=\"nginx.service\"");
    assert_eq!(nginx["host"], "web1", "from instance=\"web1:9100\"");
    assert_eq!(nginx["monitor_url"], Value::Null, "an exporter address is never probed");
    assert_eq!(nginx["severity"], "critical");
    assert!(nginx["error_logs"].as_str().unwrap().starts_with("nginx.service is not active on web1: "));
    let probe = app.incident(results[1]["incident_id"].as_str().unwrap()).await;
    assert_eq!(probe["monitor_url"], "https://shop.example.org/health");
    assert_eq!(probe["severity"], "warning");
    assert_ne!(probe["incident_id"], nginx["incident_id"]);

    let (status, answer) = post(&app, &body("resolved_nginx.json")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["alerts"][0]["action"], "recovered");
    let nginx = app.incident(nginx["incident_id"].as_str().unwrap()).await;
    assert_eq!(nginx["state"], "recovered_by_monitor");
    // startsAt 03:35:13.562 → endsAt 03:40:13.562.
    assert!((nginx["outage_seconds"].as_f64().unwrap() - 300.0).abs() < 1e-6, "{nginx}");
    app.stop().await;
}

#[tokio::test]
async fn a_repeat_of_a_closed_outage_is_recorded_and_a_new_outage_opens() {
    let app = TestApp::spawn().await;
    let (_, first) = post(&app, &body("firing_two.json")).await;
    post(&app, &body("resolved_nginx.json")).await;

    // Alertmanager sends the group again (repeat_interval, or the other alert changed): the nginx alert
    // still carries the startsAt of the outage that is closed.
    let (status, again) = post(&app, &body("firing_two.json")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["alerts"][0]["action"], "recorded", "{again}");
    assert_eq!(again["alerts"][0]["incident_id"], Value::Null);
    assert_eq!(again["alerts"][1]["action"], "joined", "the probe's outage is still open: {again}");
    assert_eq!(again["alerts"][1]["incident_id"], first["alerts"][1]["incident_id"]);
    assert_eq!(app.incidents("").await.len(), 2, "nothing reopened");

    // The same alert firing again later is a new outage.
    let mut later = body("firing_two.json");
    later["alerts"][0]["startsAt"] = json!("2026-11-22T04:10:00Z");
    let (_, answer) = post(&app, &later).await;
    assert_eq!(answer["alerts"][0]["action"], "opened", "{answer}");
    assert_ne!(answer["alerts"][0]["incident_id"], first["alerts"][0]["incident_id"]);
    assert_eq!(app.incidents("").await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_alert_refuses_the_whole_notification_and_names_it() {
    let app = TestApp::spawn().await;
    let mut bad = body("firing_two.json");
    bad["alerts"][1]["status"] = json!("sideways");
    let (status, answer) = post(&app, &bad).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("alerts[1].status"), "{answer}");
    let mut bad = body("firing_two.json");
    bad["version"] = json!("3");
    let (status, answer) = post(&app, &bad).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("version"), "{answer}");
    assert!(app.incidents("").await.is_empty(), "the good alert of a bad notification is not taken either");

    let r = app.client.post(app.url("/hooks/alertmanager")).json(&body("firing_two.json")).send().await.unwrap();
    assert_eq!(r.status(), 401, "Alertmanager sends the token with http_config.authorization");
    assert!(app.incidents("").await.is_empty());
    app.stop().await;
}
