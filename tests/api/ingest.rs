//! Uptime Kuma ingest and the JSON API, black-box against the real server on port 0.

use serde_json::{Value, json};

use crate::helpers::{Capture, TOKEN, TestApp, kuma, send_raw};

fn state(incident: &Value) -> &str {
    incident["state"].as_str().unwrap()
}

#[tokio::test]
async fn every_captured_down_then_up_ends_recovered_with_its_duration() {
    for (down, up) in [
        ("down_json.http", "up_json.http"),
        ("down_json_headers.http", "up_json_headers.http"),
        ("down_form.http", "up_form.http"),
        ("down_custom.http", "up_custom.http"),
        ("down_get.http", "up_get.http"),
    ] {
        let app = TestApp::spawn().await;
        let r = app.send_capture(&kuma(down)).await;
        assert_eq!(r.status, 202, "{down}: {}", r.body);
        let answer = r.json();
        assert_eq!(answer["action"], "opened", "{down}");
        let id = answer["incident_id"].as_str().unwrap().to_string();
        let incident = app.incident(&id).await;
        assert_eq!(incident["monitor_id"], "1", "{down}");
        assert_eq!(incident["monitor_name"], "Local Test API", "{down}");
        assert_eq!(incident["monitor_url"], "http://127.0.0.1:9922/health", "{down}");
        assert_eq!(incident["status"], "down");
        assert!(incident["error_logs"].as_str().unwrap().contains("ECONNREFUSED"), "{down}");

        let r = app.send_capture(&kuma(up)).await;
        assert_eq!(r.status, 202, "{up}: {}", r.body);
        assert_eq!(r.json()["action"], "recovered", "{up}");
        let incident = app.incident(&id).await;
        assert_eq!(state(&incident), "recovered_by_monitor", "{up}");
        // 03:35:13.562 DOWN → 03:35:21.563 UP, from the heartbeat times.
        assert!((incident["outage_seconds"].as_f64().unwrap() - 8.001).abs() < 1e-6, "{up}: {incident}");
        assert!(incident["closed_at"].is_string());
        app.stop().await;
    }
}

#[tokio::test]
async fn test_button_captures_are_accepted_and_open_nothing() {
    let app = TestApp::spawn().await;
    for name in ["test_json.http", "test_json_headers.http", "test_form.http", "test_custom.http", "test_get.http"] {
        let r = app.send_capture(&kuma(name)).await;
        assert_eq!(r.status, 202, "{name}: {}", r.body);
        assert_eq!(r.json()["action"], "notice", "{name}");
    }
    assert!(app.incidents("").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn down_after_pending_opens_an_incident_for_its_monitor() {
    let app = TestApp::spawn().await;
    let r = app.send_capture(&kuma("down_after_pending_json.http")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["incident_id"].as_str().unwrap().to_string();
    let incident = app.incident(&id).await;
    assert_eq!(incident["monitor_id"], "2");
    assert_eq!(incident["monitor_name"], "Flaky Service");
    app.stop().await;
}

#[tokio::test]
async fn fifty_repeated_downs_join_one_incident() {
    let app = TestApp::spawn().await;
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    let mut ids = std::collections::HashSet::new();
    for i in 0..50 {
        // Resends carry important=false; they must still join, never open a second incident.
        body["heartbeat"]["important"] = json!(i == 0);
        let r = app.post_kuma_json(&body).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["action"], if i == 0 { "opened" } else { "joined" });
        ids.insert(v["incident_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    let list = app.incidents("").await;
    assert_eq!(list.len(), 1);
    let id = ids.into_iter().next().unwrap();
    let incident = app.incident(&id).await;
    assert_eq!(incident["down_count"], 50);
    let repeats = incident["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "alert_repeat").count();
    assert_eq!(repeats, 49);
    app.stop().await;
}

#[tokio::test]
async fn up_without_an_open_incident_is_only_recorded() {
    let app = TestApp::spawn().await;
    let body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("up_json.json")).unwrap()).unwrap();
    let r = app.post_kuma_json(&body).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"], "recorded");
    assert!(v["incident_id"].is_null());
    assert!(app.incidents("").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn pending_and_maintenance_are_recorded_and_maintenance_is_remembered() {
    let app = TestApp::spawn().await;
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    for status in [2, 3] {
        body["heartbeat"]["status"] = json!(status);
        let r = app.post_kuma_json(&body).await;
        assert_eq!(r.status(), 202);
        assert_eq!(r.json::<Value>().await.unwrap()["action"], "recorded");
    }
    assert!(app.incidents("").await.is_empty());
    let key = medic::domain::MonitorKey::new(medic::domain::Source::UptimeKuma, "1");
    assert!(app.store.monitor_in_maintenance(key.clone()).await.unwrap());
    body["heartbeat"]["status"] = json!(0);
    app.post_kuma_json(&body).await;
    assert!(!app.store.monitor_in_maintenance(key).await.unwrap(), "a DOWN ends the maintenance window");
    app.stop().await;
}

#[tokio::test]
async fn expiry_warning_is_accepted_as_a_notice_without_an_incident() {
    let app = TestApp::spawn().await;
    let body = json!({"heartbeat": null, "monitor": null,
        "msg": "[Blog][https://blog.example] Certificate for blog.example will expire in 7 days"});
    let r = app.post_kuma_json(&body).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["action"], "notice");
    assert!(app.incidents("").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let app = TestApp::spawn().await;
    let body = std::fs::read_to_string(kuma("down_json.json")).unwrap();
    let url = app.url("/hooks/uptime-kuma");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no token"),
        (Some("Bearer wrong-token-xyz".into()), "wrong bearer"),
        (Some("Bearer test-token-12".into()), "prefix of the token"),
        (Some(format!("Basic {TOKEN}")), "wrong scheme"),
    ];
    for (header, why) in cases {
        let mut req = app.client.post(&url).header("content-type", "application/json").body(body.clone());
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("token"), "{why}");
    }
    let r = app
        .client
        .post(format!("{url}?token=nope-nope-nope"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong query token");
    let r = app
        .client
        .post(format!("{url}?token={TOKEN}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "query token");
    let r = app.client.get(app.url("/api/v1/incidents")).send().await.unwrap();
    assert_eq!(r.status(), 401, "API needs the token too");
    assert!(app.incidents("").await.len() == 1, "rejected requests stored nothing");
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_4xx_naming_the_problem_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let url = format!("{}?token={TOKEN}", app.url("/hooks/uptime-kuma"));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/json", b"\x00\xffgarbage".to_vec(), 400, "UTF-8"),
        ("application/json", b"{not json".to_vec(), 400, "not valid JSON"),
        ("application/json", br#"{"heartbeat":{"status":"x"},"monitor":{"id":1}}"#.to_vec(), 400, "heartbeat.status"),
        ("text/html", b"<html></html>".to_vec(), 415, "Content-Type"),
        ("application/xml", b"<a/>".to_vec(), 415, "Content-Type"),
        ("application/json", vec![b'{'; 2 * 1024 * 1024], 413, "larger than"),
    ];
    for (ct, body, status, needle) in cases {
        let r = app.client.post(&url).header("content-type", ct).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{ct} {needle}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{needle}: {v}");
    }
    // No content type at all.
    let r = app.client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);

    // A truncated multipart body (the closing boundary never arrives).
    let capture = Capture::read(&kuma("down_form.http"));
    let cut = capture.body.len() / 2;
    let truncated = Capture {
        method_line: capture.method_line.clone(),
        headers: capture.headers.clone(),
        body: capture.body[..cut].to_vec(),
    };
    let r = send_raw(app.addr, &truncated.to_request(&format!("/hooks/uptime-kuma?token={TOKEN}"), app.addr)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("multipart"), "{}", r.body);

    // A multipart body with no `data` field.
    let ct = "multipart/form-data; boundary=XYZ";
    let body = "--XYZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n{}\r\n--XYZ--\r\n";
    let r = app.client.post(&url).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`data` field"));

    // A 2 MiB chunked body is refused too, though it announces no length.
    let mut big = Capture::read(&kuma("down_form.http"));
    big.body = vec![b'x'; 2 * 1024 * 1024];
    let r = send_raw(app.addr, &big.to_request(&format!("/hooks/uptime-kuma?token={TOKEN}"), app.addr)).await;
    assert_eq!(r.status, 413, "{}", r.body);

    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still serving");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still ready");
    assert!(app.incidents("").await.is_empty(), "nothing stored from bad input");
    app.stop().await;
}

#[tokio::test]
async fn json_api_opens_lists_filters_and_shows_incidents() {
    let app = TestApp::spawn().await;
    let post = |body: Value| {
        let client = app.client.clone();
        let url = app.url("/api/v1/incidents");
        async move { client.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap() }
    };
    let r = post(json!({"service_name": "nginx", "host": "web1", "error_logs": "502 Bad Gateway"})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["incident_id"].as_str().unwrap().to_string();
    let r = post(json!({"service_name": "postgres", "monitor_name": "db", "severity": "warning"})).await;
    assert_eq!(r.status(), 202);
    let r = post(json!({"service_name": "nginx", "host": "web1"})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["action"], "joined");

    let r = post(json!({"service_name": "nginx", "stauts": "down"})).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("stauts"));

    let incident = app.incident(&id).await;
    for key in [
        "incident_id",
        "timestamp",
        "service_name",
        "monitor_name",
        "status",
        "error_logs",
        "attempt_count",
        "level_1_diagnosis",
        "level_1_success",
        "level_2_recommendation",
        "cost_estimation",
        "source",
        "host",
        "monitor_id",
        "monitor_url",
        "severity",
        "state",
        "timeline",
    ] {
        assert!(incident.get(key).is_some(), "incident JSON lacks {key}: {incident}");
    }
    assert_eq!(incident["service_name"], "nginx");
    assert_eq!(incident["host"], "web1");
    assert_eq!(incident["source"], "api");
    assert_eq!(incident["down_count"], 2);
    assert_eq!(incident["cost_estimation"], json!({"ai_cost": 0.0, "tokens_used": 0}));
    assert!(chrono::DateTime::parse_from_rfc3339(incident["timestamp"].as_str().unwrap()).is_ok());

    assert_eq!(app.incidents("service=nginx").await.len(), 1);
    assert_eq!(app.incidents("service=postgres").await.len(), 1);
    assert_eq!(app.incidents("limit=1").await.len(), 1);
    assert_eq!(app.incidents("state=resolved").await.len(), 0);
    let r = app.client.get(app.url("/api/v1/incidents?state=bogus")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app.client.get(app.url("/api/v1/incidents/not-a-uuid")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(app.url(&format!("/api/v1/incidents/{}", uuid::Uuid::now_v7())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn with_nothing_configured_an_incident_is_escalated_and_humans_get_an_email_file() {
    let app = TestApp::spawn().await;
    let r = app.send_capture(&kuma("down_json.http")).await;
    let id = r.json()["incident_id"].as_str().unwrap().to_string();
    let incident = app.wait_incident(&id, 10, |i| i["waiting_for"].is_string()).await;
    assert_eq!(state(&incident), "escalated");
    assert!(incident["escalation_reason"].as_str().unwrap().starts_with("no host mapping"), "{incident}");
    let timeline = incident["timeline"].as_array().unwrap();
    let skipped: Vec<_> =
        timeline.iter().filter(|e| e["kind"] == "stage_skipped").map(|e| e["message"].as_str().unwrap()).collect();
    assert!(skipped.iter().any(|m| m.starts_with("stage not configured: collect")), "{skipped:?}");
    assert!(skipped.iter().any(|m| m.starts_with("stage not configured: level 2")), "{skipped:?}");
    let states: Vec<_> =
        timeline.iter().filter(|e| e["kind"] == "state").map(|e| e["data"]["to"].as_str().unwrap()).collect();
    assert_eq!(states, ["escalated"]);
    // No SMTP configured: the escalation email is written as an .eml file in the data dir.
    let outbox = app.dir.path().join("outbox");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let eml = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|mut d| d.next()).and_then(|e| e.ok()).map(|e| e.path());
        if let Some(path) = found {
            break path;
        }
        assert!(tokio::time::Instant::now() < deadline, "no .eml written to {}", outbox.display());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(eml).unwrap();
    assert!(text.contains("Needs a human: Local Test API"), "{text}");
    assert!(text.contains("multipart/alternative"));
    // The UP still closes it.
    let r = app.send_capture(&kuma("up_json.http")).await;
    assert_eq!(r.json()["action"], "recovered");
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    assert_eq!((&ready["store"], &ready["workers"]), (&json!("ok"), &json!("ok")), "{ready}");
    assert!(ready["replica"].as_str().is_some_and(|r| r.len() > 36), "which replica answered: {ready}");
    app.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_incidents_and_joins_new_downs_to_them() {
    let app = TestApp::spawn().await;
    let r = app.send_capture(&kuma("down_json.http")).await;
    let id = r.json()["incident_id"].as_str().unwrap().to_string();
    let settings = crate::helpers::test_settings(app.dir.path());
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, settings).await;
    let r = app.send_capture(&kuma("down_form.http")).await;
    assert_eq!(r.json()["action"], "joined");
    assert_eq!(r.json()["incident_id"], id.as_str());
    app.stop().await;
}

/// POSTs JSON with the token; returns the status and the body as JSON.
async fn post_json(app: &TestApp, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn times_no_store_can_read_back_are_refused_and_the_store_stays_readable() {
    let app = TestApp::spawn().await;
    let kuma_with = |time: &str| {
        json!({"heartbeat": {"status": 0, "time": time, "msg": "down"}, "monitor": {"id": "x", "name": "x"}})
            .to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("/hooks/uptime-kuma", kuma_with("-0001-01-01 00:00:00"), "heartbeat.time"),
        ("/hooks/uptime-kuma", kuma_with("9999-12-31T23:59:59-23:59"), "heartbeat.time"),
        ("/hooks/uptime-kuma", kuma_with("+12345-01-01 00:00:00"), "heartbeat.time"),
        (
            "/hooks/uptime-kuma",
            json!({"hb_status": 0, "hb_time": "-0001-01-01 00:00:00", "monitor_id": 7, "msg": "x"}).to_string(),
            "hb_time",
        ),
        (
            "/api/v1/incidents",
            json!({"service_name": "db", "timestamp": "9999-12-31T23:59:59-23:59"}).to_string(),
            "timestamp",
        ),
        (
            "/hooks/alertmanager",
            json!({"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"},
                "startsAt": "+12345-01-01T00:00:00Z"}]})
            .to_string(),
            "startsAt",
        ),
    ];
    for (path, body, field) in &cases {
        let (status, answer) = post_json(&app, path, "application/json", body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(field), "{answer}");
    }
    // Nothing poisoned: the list and an UP for the same monitor still work.
    assert!(app.incidents("").await.is_empty());
    let (status, _) =
        post_json(&app, "/hooks/uptime-kuma", "application/json", &kuma_with("2026-11-22 03:35:13")).await;
    assert_eq!(status, 202);
    assert_eq!(app.incidents("").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn long_monitor_ids_are_kept_whole_or_refused_never_cut_into_one() {
    let app = TestApp::spawn().await;
    let down =
        |id: &str| json!({"heartbeat": {"status": 0, "msg": "down"}, "monitor": {"id": id, "name": "m"}}).to_string();
    let up =
        |id: &str| json!({"heartbeat": {"status": 1, "msg": "up"}, "monitor": {"id": id, "name": "m"}}).to_string();
    let a = format!("{}a", "m".repeat(70));
    let b = format!("{}b", "m".repeat(70));
    let (s, first) = post_json(&app, "/hooks/uptime-kuma", "application/json", &down(&a)).await;
    assert_eq!(s, 202);
    let (s, second) = post_json(&app, "/hooks/uptime-kuma", "application/json", &down(&b)).await;
    assert_eq!(s, 202);
    assert_ne!(first["incident_id"], second["incident_id"], "two monitors, two incidents");
    let (s, _) = post_json(&app, "/hooks/uptime-kuma", "application/json", &up(&a)).await;
    assert_eq!(s, 202);
    let still = app.incident(second["incident_id"].as_str().unwrap()).await;
    assert_ne!(still["state"], "recovered_by_monitor", "an UP of one monitor does not close the other");
    assert_eq!(still["monitor_id"], b);
    let (s, answer) = post_json(&app, "/hooks/uptime-kuma", "application/json", &down(&"z".repeat(201))).await;
    assert_eq!(s, 400);
    assert!(answer["error"].as_str().unwrap().contains("monitor.id"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn json_endpoints_refuse_other_content_types_and_every_4xx_is_json() {
    let app = TestApp::spawn().await;
    let am =
        json!({"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]})
            .to_string();
    let api = json!({"service_name": "db"}).to_string();
    for (path, body) in [("/hooks/alertmanager", &am), ("/api/v1/incidents", &api)] {
        for content_type in ["text/plain", "application/xml", "application/x-www-form-urlencoded"] {
            let (status, answer) = post_json(&app, path, content_type, body).await;
            assert_eq!(status, 415, "{path} {content_type}");
            assert!(answer["error"].as_str().unwrap().contains("application/json"), "{answer}");
        }
        let (status, _) = post_json(&app, path, "application/json; charset=utf-8", body).await;
        assert_eq!(status, 202, "{path}");
    }
    for (method, path, status) in
        [("GET", "/no/such/thing", 404), ("GET", "/hooks/uptime-kuma", 400), ("DELETE", "/api/v1/incidents", 405)]
    {
        let r = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    let r = app.client.get(app.url("/healthz")).header("x-big", "y".repeat(40 * 1024)).send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn generated_webhooks_that_get_a_2xx_always_read_back() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let app = TestApp::spawn().await;
    let time = prop_oneof![
        Just(None),
        (-5000i32..=99_999, 1u32..=12, 1u32..=28, 0u32..=23)
            .prop_map(|(y, mo, d, h)| Some(format!("{y:04}-{mo:02}-{d:02} {h:02}:00:00"))),
        (1900i32..=2200, 0i32..=23, prop::bool::ANY)
            .prop_map(|(y, off, neg)| Some(format!("{y:04}-06-15T12:00:00{}{off:02}:59", if neg { '-' } else { '+' }))),
        "[ -~]{0,30}".prop_map(Some),
    ];
    let id = prop_oneof!["[a-z0-9]{1,10}", "[a-z]{190,210}", "[ -~]{1,40}"];
    let status = prop_oneof![Just(0), Just(1), Just(2), Just(3)];
    let strategy = (time, id, status, "[ -~]{0,100}");
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..150 {
        let (time, id, status, msg) = strategy.new_tree(&mut runner).unwrap().current();
        let mut heartbeat = json!({"status": status, "msg": msg});
        if let Some(t) = &time {
            heartbeat["time"] = json!(t);
        }
        let body = json!({"heartbeat": heartbeat, "monitor": {"id": id, "name": "generated"}}).to_string();
        let (code, answer) = post_json(&app, "/hooks/uptime-kuma", "application/json", &body).await;
        match code {
            202 => {
                accepted += 1;
                if let Some(incident) = answer["incident_id"].as_str() {
                    let r = app
                        .client
                        .get(app.url(&format!("/api/v1/incidents/{incident}")))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{body} was accepted but does not read back");
                }
            }
            400 => {
                refused += 1;
                assert!(answer["error"].is_string(), "{body}: {answer}");
            }
            other => panic!("{body}: {other} {answer}"),
        }
        let r = app.client.get(app.url("/api/v1/incidents?limit=500")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "the list broke after {body}");
    }
    assert!(accepted > 20 && refused > 20, "both kinds were generated: {accepted} accepted, {refused} refused");
    app.stop().await;
}

/// The README's custom template, rendered by LiquidJS over the real captures (tests/fixtures/
/// uptime-kuma/rendered): a monitor name with quotes and a backslash stays JSON, tags arrive, and the
/// message reads as in JSON mode, so memory matches the same fault in either mode.
#[tokio::test]
async fn the_readme_custom_template_survives_any_name_carries_tags_and_reads_like_json_mode() {
    let rendered = |name: &str| {
        std::fs::read_to_string(crate::helpers::fixture_path(&format!("uptime-kuma/rendered/{name}"))).unwrap()
    };
    let app = TestApp::spawn().await;
    let form = "application/x-www-form-urlencoded";
    let (status, answer) = post_json(&app, "/hooks/uptime-kuma", form, &rendered("custom_test.txt")).await;
    assert_eq!((status, answer["action"].as_str()), (202, Some("notice")), "{answer}");
    let (status, answer) = post_json(&app, "/hooks/uptime-kuma", form, &rendered("custom_down.txt")).await;
    assert_eq!((status, answer["action"].as_str()), (202, Some("opened")), "{answer}");
    let custom = app.incident(answer["incident_id"].as_str().unwrap()).await;
    assert_eq!(custom["monitor_name"], r#"Shop "main" \ API"#);
    assert_eq!(custom["service_name"], "nginx", "the service= tag arrived: {custom}");
    let (status, answer) = post_json(&app, "/hooks/uptime-kuma", form, &rendered("custom_up.txt")).await;
    assert_eq!((status, answer["action"].as_str()), (202, Some("recovered")), "{answer}");
    app.stop().await;

    // The same DOWN in JSON mode and in the old decorated custom mode: the same message.
    let app = TestApp::spawn().await;
    let json_mode = app.send_capture(&kuma("down_json.http")).await.json();
    let json_incident = app.incident(json_mode["incident_id"].as_str().unwrap()).await;
    app.stop().await;
    let app = TestApp::spawn().await;
    let decorated = app.send_capture(&kuma("down_custom.http")).await.json();
    let decorated_incident = app.incident(decorated["incident_id"].as_str().unwrap()).await;
    app.stop().await;
    assert_eq!(json_incident["error_logs"], "connect ECONNREFUSED 127.0.0.1:9922");
    assert_eq!(decorated_incident["error_logs"], json_incident["error_logs"], "Kuma's `[name] [🔴 Down]` is removed");
    assert_eq!(custom["error_logs"], json_incident["error_logs"]);
}
