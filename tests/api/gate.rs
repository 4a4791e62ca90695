//! The gate from outside: `medic gate check` (single and JSONL), `POST /api/v1/gate/check`, dry-run toggle.

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::helpers::{TOKEN, TestApp, fixture_path, test_settings};
use crate::process::{medic_bin, run_cli};

#[test]
fn gate_check_cli_prints_json_and_exits_by_verdict() {
    let cases = [
        ("systemctl restart nginx", 0, "allow"),
        ("/usr/local/lib/medic/clean_logs.sh nginx", 2, "approval"),
        ("systemctl restart nginx && reboot", 1, "deny"),
    ];
    for (command, code, verdict) in cases {
        let (got, out, err) = run_cli(&["gate", "check", "--", command]);
        assert_eq!(got, code, "{command}: {out}{err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["verdict"], verdict);
        assert!(v["reason"].is_string());
        assert!(v.get("template").is_some() && v["argv"].is_array());
    }
    let (code, out, _) = run_cli(&["gate", "check", "--human", "--", "/usr/local/lib/medic/clean_logs.sh nginx"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn gate_check_jsonl_answers_every_line_in_order() {
    let corpus = std::fs::read_to_string(fixture_path("gate/adversarial.jsonl")).unwrap();
    let mut input = String::new();
    let mut expected = Vec::new();
    for (i, line) in corpus.lines().enumerate() {
        let item: Value = serde_json::from_str(line).unwrap();
        input.push_str(&serde_json::to_string(&item["command"]).unwrap());
        input.push('\n');
        expected.push("deny");
        if i % 50 == 0 {
            input.push_str("\"systemctl restart nginx\"\n");
            expected.push("allow");
        }
    }
    let mut child = std::process::Command::new(medic_bin())
        .args(["gate", "check", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let verdicts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verdicts.len(), expected.len());
    for (i, (got, want)) in verdicts.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "line {i}");
    }
}

#[tokio::test]
async fn gate_check_over_http_is_audited() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/gate/check");
    let r =
        app.client.post(&url).bearer_auth(TOKEN).json(&json!({"command": "docker restart web"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["argv"], json!(["docker", "restart", "web"]));
    let r =
        app.client.post(&url).bearer_auth(TOKEN).json(&json!({"command": "docker restart `id`"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["verdict"], "deny");
    let r = app.client.post(&url).bearer_auth(TOKEN).json(&json!({"cmd": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app.client.post(&url).json(&json!({"command": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let events = app.store.audit_events(None, None).await.unwrap();
    let verdicts: Vec<_> =
        events.iter().filter(|e| e.kind == "gate_verdict").map(|e| e.details["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["allow", "deny"]);
    app.stop().await;
}

#[tokio::test]
async fn dry_run_toggle_is_persisted_across_restarts() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/dry-run");
    let state: Value = app.client.get(&url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["enabled"], false);
    let r = app.client.put(&url).bearer_auth(TOKEN).json(&json!({"enabled": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["api"], true);
    let settings = test_settings(app.dir.path());
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, settings).await;
    let state: Value =
        app.client.get(app.url("/api/v1/dry-run")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["enabled"], true, "{state}");
    let r = app
        .client
        .put(app.url("/api/v1/dry-run"))
        .bearer_auth(TOKEN)
        .json(&json!({"enabled": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[test]
fn a_bad_rules_file_stops_medic_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"{"safe_commands":{"web":{"allowed":["systemctl restart {srvice}"],"allowed_services":["nginx"]}}}"#,
    )
    .unwrap();
    let config = dir.path().join("medic.toml");
    std::fs::write(&config, format!("[gate]\nsafe_commands = \"{}\"\n", rules.display())).unwrap();
    let (code, _, err) = run_cli(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(err.contains("safe_commands.web.allowed[0]") && err.contains("{srvice}"), "{err}");
}
