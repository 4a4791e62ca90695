//! The loop decides right: evidence checks before any model, level 1 sampled with a derived confidence,
//! no model call when the policy refuses every automatic action, a policy-refused command offered for
//! approval, and incidents that follow what Uptime Kuma really sends (no UP after a maintenance, an UP
//! after medic's own fix). Real sshd, nginx and SMTP; the fake Ollama speaks the real wire format.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_llm::{Reply, ollama_chat};
use crate::world::{Options, World};

fn timeline(incident: &Value) -> String {
    incident["timeline"].as_array().unwrap().iter().map(|e| format!("{}: {}\n", e["kind"], e["message"])).collect()
}

fn l1_reply(problem: &str, command: &str) -> Reply {
    Reply::ok(ollama_chat(
        &json!({"problem": problem, "cause": "nginx stopped", "action_command": command, "confidence": 0.99,
            "rationale": "from the evidence"})
        .to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_check_that_vetoes_escalates_with_its_finding_and_asks_no_model() {
    let world = World::start(Options { l2: false, decisions: true, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.log_line("2026/11/22 03:35:12 [emerg] 20400#20400: bind() to 0.0.0.0:80 failed (98: Address already in use)");
    world.l1_says("nginx stopped", 0.99, Some(&world.start_command()));
    let id = world.down().await;
    let incident = world.wait_state(&id, "escalated", 40).await;
    let reason = incident["escalation_reason"].as_str().unwrap();
    assert!(reason.contains("evidence check") && reason.contains("already in use"), "{reason}");
    assert!(timeline(&incident).contains("\"checks\": \"[blocks automatic action]"), "{}", timeline(&incident));
    assert_eq!(incident["checks"]["findings"][0]["kind"], "port_in_use");
    assert!(world.llm.requests("ollama_chat").is_empty(), "no model is asked once a check vetoes");
    assert!(!world.nginx.is_up(), "nothing ran");
    let rows = world.app.store.audit_rows_blocking().unwrap();
    assert!(rows.iter().any(|r| r.kind == "evidence_checked"), "the checks are in the audit chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn level_1_samples_must_agree_and_its_own_confidence_does_not_count() {
    let world = World::start(Options { l2: false, decisions: true, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    // The first reply proposes the fix at confidence 0.99; the second says a restart does not help.
    world.llm.script(
        "ollama_chat",
        vec![
            l1_reply("service stopped or crashed", &world.start_command()),
            l1_reply("configuration error", &world.start_command()),
        ],
    );
    let id = world.down().await;
    let incident = world.wait_state(&id, "awaiting_approval", 40).await;
    let requests = world.llm.requests("ollama_chat");
    assert_eq!(requests.len(), 2, "sampling stops at the first reply that disagrees");
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r["options"]["seed"], i + 1, "seeds 1..k");
        assert!((r["options"]["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
        assert_eq!(r["format"]["required"][0], "problem", "the problem class is asked first");
    }
    let sampling = &incident["level_1_sampling"];
    assert_eq!(sampling["votes"], json!([world.start_command(), "none"]));
    assert_eq!(sampling["reported_confidence"], 0.99);
    let confidence = incident["level_1_diagnosis"]["confidence"].as_f64().unwrap();
    assert!(confidence < 0.7, "1 of 3 agree: {confidence}");
    assert!(!world.nginx.is_up(), "nothing ran automatically");
    // The proposal is not lost: a human is asked to approve it.
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    assert!(mail.text.contains(&world.start_command()), "{}", mail.text);
    // Same evidence, same prompt: the evidence marker is derived from the evidence, and the incident
    // id is not in the prompt.
    let user = |r: &Value| r["messages"][1]["content"].as_str().unwrap().to_string();
    assert_eq!(user(&requests[0]), user(&requests[1]));
    assert!(!user(&requests[0]).contains(&id), "the incident id is not in the prompt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_model_is_asked_when_the_policy_refuses_any_action_and_a_refused_fix_is_offered_for_approval() {
    let world = World::start(Options {
        l2: false,
        decisions: true,
        tweak: Some(|s, control| {
            s.diagnose.runbook = vec![medic::diagnose::l0::RunbookRule {
                pattern: "ECONNREFUSED".into(),
                service: String::new(),
                command: format!("{control} start"),
                cause: "the service is stopped".into(),
            }]
        }),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx stopped", 0.99, Some(&world.start_command()));
    // The monitor is in maintenance: nothing may run automatically.
    let mut body = world.down_body();
    body["monitor"]["maintenance"] = json!(true);
    let r = world.app.post_kuma_json(&body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["incident_id"].as_str().unwrap().to_string();
    let incident = world.wait_state(&id, "awaiting_approval", 40).await;
    let text = timeline(&incident);
    assert!(text.contains("policy: escalate: monitor is in maintenance"), "{text}");
    assert!(world.llm.requests("ollama_chat").is_empty(), "no model call: nothing could run automatically\n{text}");
    assert!(!world.nginx.is_up());
    // The runbook's command, allowed but refused by the policy for now, is offered to a human.
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    assert!(mail.text.contains(&world.start_command()), "{}", mail.text);
    assert!(mail.text.contains("maintenance"), "the email says why it did not run: {}", mail.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_important_down_after_silence_is_a_new_outage_not_a_silent_join() {
    let world = World::start(Options { l1: false, l2: false, ..Options::default() }).await;
    let first = world.down().await;
    world.app.wait_incident(&first, 40, |i| !i["waiting_for"].is_null()).await;
    // A DOWN soon after (a resend, or Kuma's own repeat) joins.
    let again: Value = world.app.post_kuma_json(&world.down_body()).await.json().await.unwrap();
    assert_eq!((again["action"].as_str(), again["incident_id"].as_str()), (Some("joined"), Some(first.as_str())));
    // Ten minutes of silence (a maintenance, a lost UP): Uptime Kuma 2.5.3 then sends DOWN with
    // important=true and no UP before it. The clock is moved by rewriting when the DOWNs arrived.
    let old = (chrono::Utc::now() - chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let first_id = first.clone();
    world
        .app
        .store
        .write(move |ctx| {
            ctx.conn().execute("UPDATE events SET received_at = ?1 WHERE incident_id = ?2", [old, first_id])?;
            Ok(())
        })
        .await
        .unwrap();
    let mut quiet = world.down_body();
    quiet["heartbeat"]["important"] = json!(false);
    let repeat: Value = world.app.post_kuma_json(&quiet).await.json().await.unwrap();
    assert_eq!(repeat["action"], "joined", "an unimportant repeat never starts a new outage");
    world
        .app
        .store
        .write({
            let (old, id) = (
                (chrono::Utc::now() - chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                first.clone(),
            );
            move |ctx| {
                ctx.conn().execute("UPDATE events SET received_at = ?1 WHERE incident_id = ?2", [old, id])?;
                Ok(())
            }
        })
        .await
        .unwrap();
    let new: Value = world.app.post_kuma_json(&world.down_body()).await.json().await.unwrap();
    assert_eq!(new["action"], "opened", "{new}");
    assert_ne!(new["incident_id"].as_str(), Some(first.as_str()));
    let old_incident = world.incident(&first).await;
    assert_eq!(old_incident["state"], "recovered_by_monitor");
    assert!(timeline(&old_incident).contains("a new outage"), "{}", timeline(&old_incident));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incident_waiting_for_a_human_is_closed_when_medics_reprobe_finds_it_healthy() {
    let world = World::start(Options {
        l1: false,
        l2: false,
        tweak: Some(|s, _| s.pipeline.reprobe_interval = Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    world.nginx.stop();
    let id = world.down().await;
    world.app.wait_incident(&id, 40, |i| !i["waiting_for"].is_null()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world.incident(&id).await["state"], "escalated", "still down: still waiting");
    world.nginx.start();
    let incident = world.wait_state(&id, "recovered_by_monitor", 20).await;
    assert!(timeline(&incident).contains("re-probe found the service healthy"), "{}", timeline(&incident));
    // The next DOWN is a new incident.
    let next: Value = world.app.post_kuma_json(&world.down_body()).await.json().await.unwrap();
    assert_eq!(next["action"], "opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_service_with_nothing_else_wrong_is_restarted_without_a_model() {
    // The host's allow-list has the service's control script (no systemd here): the checks read the
    // LSB status (exit 3: not running), find nothing that blocks a restart, and use the allowed restart.
    let world = World::start(Options {
        l2: false,
        decisions: true,
        rules: Some(crate::model_front::RULES.to_string()),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx stopped", 0.99, Some(&world.start_command()));
    let id = world.down().await;
    let incident = world.wait_state(&id, "resolved", 40).await;
    assert!(world.nginx.is_up());
    let text = timeline(&incident);
    assert!(text.contains("l0-checks: `") && text.contains(" restart`"), "{text}");
    assert_eq!(incident["checks"]["service_state"], "not_running");
    assert!(world.llm.requests("ollama_chat").is_empty(), "no model was asked");
}
