//! The audit chain: intact after real traffic, and a row changed with the sqlite3 CLI is named.

use std::time::Duration;

use crate::helpers::{TOKEN, kuma};
use crate::process::{MedicProcess, run_cli, write_config};

/// Starts medic as a process in a fresh dir and sends it one captured DOWN.
async fn medic_with_one_down() -> (tempfile::TempDir, std::path::PathBuf, MedicProcess) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let medic = MedicProcess::start(&config).await;
    let body = std::fs::read_to_string(kuma("down_json.json")).unwrap();
    let url = format!("http://{}/hooks/uptime-kuma", medic.addr);
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    (dir, config, medic)
}

#[tokio::test]
async fn audit_verify_passes_then_names_a_tampered_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut medic = MedicProcess::start(&config).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/hooks/uptime-kuma", medic.addr);
    for name in ["down_json.json", "down_json.json", "up_json.json", "down_after_pending_json.json"] {
        let body = std::fs::read_to_string(kuma(name)).unwrap();
        let r = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    medic.child.kill().await.unwrap();
    medic.wait().await;

    let config = config.to_str().unwrap();
    let (code, out, err) = run_cli(&["--config", config, "audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit chain OK"), "{out}");

    let (code, out, _) = run_cli(&["--config", config, "audit", "export"]);
    assert_eq!(code, 0);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.len() >= 6, "{}", events.len());
    assert!(events.iter().any(|e| e["kind"] == "incident_opened"));
    assert!(events.iter().any(|e| e["kind"] == "monitor_recovered"));
    let incident = events.iter().find_map(|e| e["incident_id"].as_str()).unwrap().to_string();
    let (_, out, _) = run_cli(&["--config", config, "audit", "export", "--incident", &incident]);
    assert!(out.lines().all(|l| l.contains(&incident)));

    // The database itself refuses updates to audit rows...
    let db = dir.path().join("data/medic.db");
    let refused = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE audit SET details = '{}' WHERE seq = 3;")
        .output()
        .expect("sqlite3 is installed by scripts/test.sh");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("append-only"));

    // ...so an attacker with file access drops the trigger first; verify still catches the change.
    let tampered = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TRIGGER audit_no_update; UPDATE audit SET details = '{\"forged\":true}' WHERE seq = 3;")
        .output()
        .unwrap();
    assert!(tampered.status.success(), "{}", String::from_utf8_lossy(&tampered.stderr));
    let (code, out, _) = run_cli(&["--config", config, "audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 3"), "{out}");
}

#[tokio::test]
async fn check_config_masks_secrets_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, out, _) = run_cli(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 0);
    assert!(!out.contains(TOKEN), "{out}");
    assert!(out.contains("********"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nbind = \"127.0.0.1:0\"\nport = 9\n").unwrap();
    let (code, _, err) = run_cli(&["--config", bad.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 1);
    assert!(err.contains("port"), "{err}");
    let (code, _, err) = run_cli(&["--config", bad.to_str().unwrap(), "serve"]);
    assert_eq!(code, 1, "serve refuses a bad config too");
    assert!(err.contains("port"), "{err}");
}

#[tokio::test]
async fn hooks_replay_sends_a_capture_to_a_running_medic() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut medic = MedicProcess::start(&config).await;
    let url = format!("http://{}/hooks/uptime-kuma", medic.addr);
    let (code, out, err) =
        run_cli(&["hooks", "replay", kuma("down_form.http").to_str().unwrap(), "--url", &url, "--token", TOKEN]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("202"), "{out}");
    assert!(out.contains("opened"), "{out}");
    let (code, out, _) = run_cli(&[
        "hooks",
        "replay",
        kuma("up_json.json").to_str().unwrap(),
        "--url",
        &url,
        "--token",
        "wrong-token-here",
    ]);
    assert_eq!(code, 1);
    assert!(out.starts_with("401"), "{out}");
    medic.child.kill().await.unwrap();
}

#[tokio::test]
async fn check_config_warns_about_monitors_it_cannot_map() {
    let (_dir, config, mut medic) = medic_with_one_down().await;
    medic.child.kill().await.unwrap();
    medic.wait().await;
    let (code, out, _) = run_cli(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("# warning: monitor uptime_kuma:1 (\"Local Test API\") maps to no host"), "{out}");
    // Mapped by a [[inventory.monitors]] entry: no warning.
    let mapped = format!(
        "{}\n[[inventory.hosts]]\nname = \"web1\"\naddress = \"127.0.0.1\"\n\n[[inventory.monitors]]\nmonitor_id = \"1\"\nhost = \"web1\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, mapped).unwrap();
    let (code, out, err) = run_cli(&["--config", config.to_str().unwrap(), "check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("maps to no host"), "{out}");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_keeps_everything() {
    let (dir, config, mut medic) = medic_with_one_down().await;
    let pid = medic.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status =
        tokio::time::timeout(Duration::from_secs(30), medic.child.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    // The WAL was checkpointed: the database alone holds everything.
    assert!(std::fs::metadata(dir.path().join("data/medic.db-wal")).map(|m| m.len()).unwrap_or(0) == 0);
    let (code, out, _) = run_cli(&["--config", config.to_str().unwrap(), "incidents", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1);
    let (code, _, _) = run_cli(&["--config", config.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(code, 0);
}
