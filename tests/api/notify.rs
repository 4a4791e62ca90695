//! Chat channels against local HTTP endpoints checking the real request shapes, and the daily digest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::OriginalUri;
use axum::routing::post;
use medic::config::Secret;
use medic::notify::{ChannelConfig, ChannelKind, NotifyEvent};
use serde_json::{Value, json};

use crate::helpers::{TestApp, kuma, test_settings};

type Captured = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP server that records every POST (path, JSON body) and answers 200.
async fn capture_server() -> (String, Captured) {
    let seen: Captured = Arc::default();
    let sink = seen.clone();
    let app = Router::new().fallback(post(move |uri: OriginalUri, body: Bytes| {
        let sink = sink.clone();
        async move {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            sink.lock().unwrap().push((uri.path().to_string(), value));
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

fn channels(base: &str) -> Vec<ChannelConfig> {
    let channel = |name: &str, kind: ChannelKind, url: Option<String>| ChannelConfig {
        name: name.into(),
        kind,
        url: url.map(Secret::new),
        bot_token: None,
        chat_id: String::new(),
        api_url: "https://api.telegram.org".into(),
        events: vec![NotifyEvent::Alert, NotifyEvent::Escalation, NotifyEvent::Recovery, NotifyEvent::Digest],
        secret: None,
    };
    vec![
        channel("discord", ChannelKind::Discord, Some(format!("{base}/discord/hook"))),
        ChannelConfig {
            bot_token: Some(Secret::new("123456:ABC-test")),
            chat_id: "-10042".into(),
            api_url: base.to_string(),
            ..channel("telegram", ChannelKind::Telegram, None)
        },
        channel("slack", ChannelKind::Slack, Some(format!("{base}/slack/hook"))),
        channel("n8n", ChannelKind::Webhook, Some(format!("{base}/n8n/hook"))),
    ]
}

async fn wait_for(seen: &Captured, pred: impl Fn(&(String, Value)) -> bool, what: &str) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(hit) = seen.lock().unwrap().iter().find(|x| pred(x)).cloned() {
            return hit;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {what}; got {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discord_telegram_slack_and_webhook_get_their_real_shapes_escaped_and_without_tokens() {
    let (base, seen) = capture_server().await;
    let app = TestApp::spawn_with(|s| s.notify.channels = channels(&base)).await;
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    body["heartbeat"]["msg"] = json!("<b>bold</b> & <script>x</script>");
    let r = app.post_kuma_json(&body).await;
    let id = r.json::<Value>().await.unwrap()["incident_id"].as_str().unwrap().to_string();

    let (_, discord) = wait_for(
        &seen,
        |(p, b)| p == "/discord/hook" && b["embeds"][0]["title"].as_str().unwrap_or("").starts_with("Down"),
        "discord alert",
    )
    .await;
    let embed = &discord["embeds"][0];
    assert_eq!(embed["color"], 0xE53935, "critical is red");
    assert_eq!(embed["description"], "<b>bold</b> & <script>x</script>", "Discord embeds render no HTML");
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}), "no @everyone from log text");
    let link = embed["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("{}/incidents/{id}?exp=", app.base)), "{link}");
    check_incident_page(&app, &link, &id).await;

    let (path, telegram) = wait_for(&seen, |(p, _)| p.contains("/sendMessage"), "telegram").await;
    assert_eq!(path, "/bot123456:ABC-test/sendMessage");
    assert_eq!(telegram["chat_id"], "-10042");
    assert_eq!(telegram["parse_mode"], "HTML");
    let text = telegram["text"].as_str().unwrap();
    assert!(text.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;"), "{text}");
    assert!(!text.contains("<script>"));

    let (_, slack) = wait_for(&seen, |(p, _)| p == "/slack/hook", "slack").await;
    assert!(slack["text"].as_str().unwrap().contains("&lt;script&gt;"));
    let (_, hook) = wait_for(&seen, |(p, _)| p == "/n8n/hook", "webhook").await;
    assert_eq!(hook["incident_id"], id.as_str());
    assert!(hook["event"].is_string() && hook["service_name"].is_string());

    // The escalation follows; no chat message ever carries an approval link.
    wait_for(
        &seen,
        |(p, b)| p == "/discord/hook" && b["embeds"][0]["title"].as_str().unwrap_or("").starts_with("Needs a human"),
        "escalation",
    )
    .await;
    assert!(seen.lock().unwrap().iter().all(|(_, b)| !b.to_string().contains("/approvals/")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_digest_goes_out_once_a_day_even_across_restarts() {
    let (base, seen) = capture_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.notify.channels = channels(&base);
    settings.notify.digest.enabled = true;
    settings.notify.digest.time = "00:00".into();
    let app = TestApp::spawn_in(dir, settings.clone()).await;
    let (_, digest) = wait_for(
        &seen,
        |(p, b)| p == "/discord/hook" && b["embeds"][0]["title"].as_str().unwrap_or("").contains("digest"),
        "digest",
    )
    .await;
    assert!(digest["embeds"][0]["description"].as_str().unwrap().contains("opened"));
    // The email digest went to the outbox too (as an .eml, no SMTP here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<_> =
            std::fs::read_dir(app.dir.path().join("outbox")).map(|d| d.flatten().collect()).unwrap_or_default();
        if files.iter().any(|f| std::fs::read_to_string(f.path()).unwrap_or_default().contains("Daily digest")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no digest email");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, settings).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let digests =
        seen.lock().unwrap().iter().filter(|(p, b)| p == "/discord/hook" && b.to_string().contains("digest")).count();
    assert_eq!(digests, 1, "not repeated after a restart on the same day");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiry_warning_reaches_the_channels_that_take_warnings_and_the_test_button_does_not() {
    let (base, seen) = capture_server().await;
    let app = TestApp::spawn_with(|s| {
        let mut all = channels(&base);
        for c in &mut all {
            c.events = if c.name == "slack" { vec![NotifyEvent::Alert] } else { vec![NotifyEvent::Warning] };
        }
        s.notify.channels = all;
        s.notify.email.events.push(NotifyEvent::Warning);
    })
    .await;
    // The Test button first: accepted, forwarded nowhere.
    let r = app.send_capture(&kuma("test_json.http")).await;
    assert_eq!(r.json()["action"], "notice");
    let msg = "[Blog][https://blog.example] Certificate for blog.example will expire in 7 days <@everyone>";
    let r = app.post_kuma_json(&json!({"heartbeat": null, "monitor": null, "msg": msg})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["action"], "notice");

    let (_, discord) = wait_for(&seen, |(p, _)| p == "/discord/hook", "discord warning").await;
    assert_eq!(discord["embeds"][0]["title"], "Warning: expiry warning from uptime_kuma");
    assert_eq!(discord["embeds"][0]["description"], msg);
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    let (_, telegram) = wait_for(&seen, |(p, _)| p.contains("/sendMessage"), "telegram warning").await;
    assert!(telegram["text"].as_str().unwrap().contains("will expire in 7 days &lt;@everyone&gt;"), "{telegram}");
    let (_, hook) = wait_for(&seen, |(p, _)| p == "/n8n/hook", "webhook warning").await;
    assert_eq!(hook["event"], "warning");
    assert_eq!(hook["kind"], "expiry_warning");
    assert_eq!(hook["message"], msg);
    // Email is on for warnings here: an .eml lands in the outbox (no SMTP server configured).
    let outbox = app.dir.path().join("outbox");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let eml = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|t| t.contains("expiry warning"))
        });
        if let Some(text) = found {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no warning email in {}", outbox.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(eml.contains("Subject: [medic] Warning: expiry warning from uptime_kuma"), "{eml}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "one message per warning channel, none for the Test button: {got:?}");
    assert!(got.iter().all(|(p, _)| p != "/slack/hook"), "slack does not take warnings");
    app.stop().await;
}

/// The signed link from a chat message opens the incident's read-only page, with no token; anything else
/// about the link gets nothing.
async fn check_incident_page(app: &TestApp, link: &str, id: &str) {
    let page = app.client.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains(id) && html.contains("Timeline") && html.contains("opened"), "{html}");
    assert!(html.contains("&#60;script&#62;x&#60;/script&#62;") && !html.contains("<script>"), "escaped: {html}");

    let (base, query) = link.split_once('?').unwrap();
    let other = uuid::Uuid::now_v7();
    let bad = [
        base.to_string(),
        format!("{base}?{}", query.replace("sig=", "sig=00")),
        format!("{}/incidents/{other}?{query}", app.base),
        format!("{}/incidents/not-an-id?{query}", app.base),
    ];
    for url in bad {
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url}");
        assert!(!r.text().await.unwrap().contains(id), "{url}");
    }
    // A link signed with this deployment's key but past its expiry.
    let key = std::fs::read_to_string(app.dir.path().join("secrets/link_key")).unwrap();
    let links = medic::approval::links::IncidentLinks::new(key.trim().as_bytes(), Duration::from_secs(60));
    let stale = links.query_at(id.parse().unwrap(), chrono::Utc::now() - chrono::Duration::hours(1));
    let r = app.client.get(format!("{base}?{stale}")).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let fresh = links.query_at(id.parse().unwrap(), chrono::Utc::now());
    assert_eq!(app.client.get(format!("{base}?{fresh}")).send().await.unwrap().status(), 200, "the key is the one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_events_are_signed_and_a_replay_or_a_changed_body_is_detected() {
    use medic::notify::signature::{ReplayGuard, SignatureError, verify};
    type Received = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = Router::new().fallback(post(move |headers: axum::http::HeaderMap, body: Bytes| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push((headers, String::from_utf8_lossy(&body).into_owned()));
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let secret = "orchestrator-secret-123";
    let medic = TestApp::spawn_with(|s| {
        s.notify.channels = vec![ChannelConfig {
            name: "n8n".into(),
            kind: ChannelKind::Webhook,
            url: Some(Secret::new(format!("{base}/webhook/medic"))),
            bot_token: None,
            chat_id: String::new(),
            api_url: String::new(),
            events: vec![NotifyEvent::Alert],
            secret: Some(Secret::new(secret)),
        }];
    })
    .await;
    let r = medic
        .client
        .post(medic.url("/api/v1/incidents"))
        .bearer_auth(crate::helpers::TOKEN)
        .json(&serde_json::json!({"service_name": "nginx", "error_logs": "502"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (headers, body) = loop {
        if let Some(first) = received.lock().unwrap().first().cloned() {
            break first;
        }
        assert!(tokio::time::Instant::now() < deadline, "no signed delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let h = |name: &str| headers.get(name).unwrap_or_else(|| panic!("{name} header")).to_str().unwrap().to_string();
    let (ts, delivery, signature) =
        (h("x-medic-timestamp").parse::<i64>().unwrap(), h("x-medic-delivery"), h("x-medic-signature"));
    assert_eq!(h("x-medic-event"), "incident.opened");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "incident.opened");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(verify(secret, ts, &delivery, &body, &signature, now, 300), Ok(()), "the receiver accepts it");
    let tampered = body.replace("nginx", "mysql");
    assert_eq!(verify(secret, ts, &delivery, &tampered, &signature, now, 300), Err(SignatureError::Bad));
    assert_eq!(verify("a-guess", ts, &delivery, &body, &signature, now, 300), Err(SignatureError::Bad));
    assert!(matches!(verify(secret, ts, &delivery, &body, &signature, now + 3600, 300), Err(SignatureError::Stale(_))));
    let mut guard = ReplayGuard::default();
    assert!(guard.check(&delivery, now, 300).is_ok());
    assert_eq!(
        guard.check(&delivery, now + 5, 300),
        Err(SignatureError::Replayed(delivery.clone())),
        "a replay is detected"
    );
    medic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diagnosis_reaches_the_orchestrators_channel_as_incident_diagnosed() {
    let (base, seen) = capture_server().await;
    let local = medic::config::Settings::from_toml_str(
        "[[inventory.hosts]]\nname = \"local\"\ntransport = \"local\"\nservices = [\"nginx\"]\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(move |s| {
        s.inventory.hosts = local.inventory.hosts.clone();
        s.pipeline.external_sources = vec![medic::domain::Source::Api];
        s.notify.channels = vec![ChannelConfig {
            name: "n8n".into(),
            kind: ChannelKind::Webhook,
            url: Some(Secret::new(format!("{base}/n8n/events"))),
            bot_token: None,
            chat_id: String::new(),
            api_url: String::new(),
            events: vec![NotifyEvent::Diagnosed],
            secret: None,
        }];
    })
    .await;
    let post = |path: String, body: Value| {
        let r = app.client.post(app.url(&path)).bearer_auth(crate::helpers::TOKEN).json(&body);
        async move { r.send().await.unwrap() }
    };
    let created: Value = post(
        "/api/v1/incidents".into(),
        serde_json::json!({"service_name": "nginx", "host": "local", "error_logs": "502"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["incident_id"].as_str().unwrap().to_string();
    assert_eq!(post(format!("/api/v1/incidents/{id}/collect"), serde_json::json!({})).await.status(), 200);
    assert_eq!(post(format!("/api/v1/incidents/{id}/diagnose"), serde_json::json!({"level": 0})).await.status(), 200);
    let (_, event) = wait_for(&seen, |(p, _)| p == "/n8n/events", "diagnosed event").await;
    assert_eq!(event["type"], "incident.diagnosed", "{event}");
    assert_eq!(event["incident_id"], id.as_str());
    // Only the channels that list it get it: nothing else was sent there.
    assert!(seen.lock().unwrap().iter().all(|(p, b)| p != "/n8n/events" || b["type"] == "incident.diagnosed"));
    app.stop().await;
}
