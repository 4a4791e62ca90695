//! A real n8n (npm's n8n 2.8.4, installed outside the clone by scripts/test-n8n.sh) running the
//! workflows under `workflows/` against medic: Uptime Kuma's DOWN goes to n8n, n8n calls medic's
//! stages, medic heals nginx over the real sshd; a retried delivery acts once; a command the gate
//! denies, sent through n8n, runs nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TOKEN;
use crate::sshd::free_port;
use crate::world::{Options, World};

pub struct N8n {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

fn n8n_bin() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::path::Path::new(&home).join(".cache/medic-n8n/node_modules/.bin/n8n")
}

/// n8n's port, chosen before medic starts (medic's settings name n8n's event webhook).
static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

impl N8n {
    pub async fn start(medic_base: &str, notify_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = *PORT.get_or_init(free_port);
        let env = |cmd: &mut Command| {
            cmd.env("N8N_USER_FOLDER", dir.path())
                .env("N8N_ENCRYPTION_KEY", "medic-test-n8n-encryption-key")
                .env("N8N_PORT", port.to_string())
                .env("N8N_LISTEN_ADDRESS", "127.0.0.1")
                .env("N8N_DIAGNOSTICS_ENABLED", "false")
                .env("N8N_VERSION_NOTIFICATIONS_ENABLED", "false")
                .env("N8N_BLOCK_ENV_ACCESS_IN_NODE", "false")
                .env("N8N_SECURE_COOKIE", "false")
                .env("MEDIC_URL", medic_base)
                .env("NOTIFY_URL", notify_url);
        };
        let credentials = dir.path().join("credentials.json");
        std::fs::write(
            &credentials,
            json!([{"id": "medicApiToken1", "name": "medic API token", "type": "httpHeaderAuth",
                    "data": {"name": "Authorization", "value": format!("Bearer {TOKEN}")}}])
            .to_string(),
        )
        .unwrap();
        let workflows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let cli = |args: &[&str]| {
            let mut cmd = Command::new(n8n_bin());
            cmd.args(args);
            env(&mut cmd);
            let out = cmd.output().expect("n8n is installed by scripts/test-n8n.sh");
            assert!(
                out.status.success(),
                "n8n {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        cli(&["import:credentials", &format!("--input={}", credentials.display())]);
        cli(&["import:workflow", "--separate", &format!("--input={}", workflows.display())]);
        cli(&["publish:workflow", "--id=medicMainSupervisor"]);
        cli(&["publish:workflow", "--id=medicActionExecutor"]);
        cli(&["publish:workflow", "--id=medicNotificationManager"]);
        let log = dir.path().join("n8n.log");
        let mut cmd = Command::new(n8n_bin());
        cmd.arg("start").stdout(std::fs::File::create(&log).unwrap()).stderr(Stdio::null());
        env(&mut cmd);
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // Ready when both workflows are active (their webhooks registered).
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if ["medicMainSupervisor", "medicActionExecutor", "medicNotificationManager"]
                .iter()
                .all(|id| text.contains(&format!("(ID: {id})")))
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "n8n did not activate the workflows:\n{text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { child, base, _dir: dir }
    }
}

impl Drop for N8n {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn actions(world: &World) -> i64 {
    world.app.store.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM actions", [], |r| r.get(0))?)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n8n_drives_medics_stages_heals_nginx_acts_once_and_cannot_run_a_denied_command() {
    let world = World::start(Options {
        l2: false,
        decisions: true,
        rules: Some(crate::model_front::RULES.to_string()),
        tweak: Some(|s, _| {
            s.pipeline.external_sources = vec![medic::domain::Source::UptimeKuma, medic::domain::Source::Api];
            // medic's events go to n8n's Notification_Manager.
            let port = *PORT.get_or_init(free_port);
            s.notify.channels = vec![medic::notify::ChannelConfig {
                name: "n8n".into(),
                kind: medic::notify::ChannelKind::Webhook,
                url: Some(medic::config::Secret::new(format!("http://127.0.0.1:{port}/webhook/medic-events"))),
                bot_token: None,
                chat_id: String::new(),
                api_url: String::new(),
                events: vec![medic::notify::NotifyEvent::AutoFixed, medic::notify::NotifyEvent::NeedsApproval],
                secret: Some(medic::config::Secret::new("n8n-events-secret")),
            }];
        }),
        ..Options::default()
    })
    .await;
    // Where n8n's Notification_Manager posts what it tells people.
    let told: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let sink = told.clone();
    let receiver = axum::Router::new().fallback(axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(body);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/chat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let n8n = N8n::start(&world.app.base, &notify_url).await;
    world.nginx.start();
    world.nginx.stop();

    // Uptime Kuma's DOWN goes to n8n's webhook; n8n drives medic.
    let client = reqwest::Client::new();
    let r = client.post(format!("{}/webhook/medic-kuma", n8n.base)).json(&world.down_body()).send().await.unwrap();
    assert!(r.status().is_success(), "n8n took the webhook: {}", r.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let list = world.app.incidents("").await;
        if let Some(i) = list.iter().find(|i| i["state"] == "resolved") {
            break i["incident_id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "n8n did not get nginx healed: {list:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(world.nginx.is_up());
    let events = world.app.store.audit_events(None, None).await.unwrap();
    let stages: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "orchestrator_call")
        .map(|e| e.details["stage"].as_str().unwrap_or("").to_string())
        .collect();
    for stage in ["collect", "diagnose", "execute"] {
        assert!(stages.iter().any(|s| s == stage), "the {stage} call came from n8n: {stages:?}");
    }
    assert_eq!(actions(&world).await, 1);
    // medic's signed `incident.fixed` event reached n8n's Notification_Manager, which told the chat.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = told.lock().unwrap().clone();
        if let Some(m) = seen.iter().find(|m| m["text"].as_str().is_some_and(|t| t.starts_with("Fixed: "))) {
            assert_eq!(m["incident_id"], id.as_str(), "{m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Notification_Manager said nothing: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // n8n retries a stage call (same Idempotency-Key as its workflow uses): medic answers as before and
    // acts once.
    let retry = world
        .app
        .client
        .post(world.app.url(&format!("/api/v1/incidents/{id}/execute")))
        .bearer_auth(TOKEN)
        .header("idempotency-key", format!("execute-{id}"))
        .json(&json!({"command": "anything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 202);
    assert!(retry.headers().contains_key("idempotent-replayed"));
    assert_eq!(actions(&world).await, 1, "a retried call acts once");

    // Through n8n's Action_Executor, a command the gate denies runs nothing; medic's refusal comes back.
    let waiting = world
        .app
        .client
        .post(world.app.url("/api/v1/incidents"))
        .bearer_auth(TOKEN)
        .json(&json!({"service_name": "nginx", "host": "web1", "error_logs": "502", "monitor_id": "other"}))
        .send()
        .await
        .unwrap();
    let waiting: Value = waiting.json().await.unwrap();
    let r = client
        .post(format!("{}/webhook/medic-execute", n8n.base))
        .json(&json!({"incident_id": waiting["incident_id"], "command": "rm -rf /"}))
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    let text = answer.to_string();
    assert!(text.contains("refused") && text.contains("rm -rf"), "{answer}");
    assert_eq!(actions(&world).await, 1, "nothing ran");
    world.app.stop().await;
}
