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

/// Copies a stopped medic's data dir (database and secrets) so each attack starts from the same state.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn sqlite(db: &std::path::Path, sql: &str) {
    let out = std::process::Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn audit_verify_detects_truncation_a_full_rechain_and_a_duplicated_key() {
    let (dir, config, mut medic) = medic_with_one_down().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    medic.child.kill().await.unwrap();
    medic.wait().await;
    let data = dir.path().join("data");
    let verify = |data: &std::path::Path| {
        let cfg = dir.path().join(format!("{}.toml", data.file_name().unwrap().to_string_lossy()));
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(&dir.path().join("data").display().to_string(), &data.display().to_string());
        std::fs::write(&cfg, text).unwrap();
        run_cli(&["--config", cfg.to_str().unwrap(), "audit", "verify"])
    };
    let (code, out, err) = verify(&data);
    assert_eq!(code, 0, "{out}{err}");

    // Delete the last rows (the trigger dropped first, as an attacker with the file would).
    let cut = dir.path().join("cut");
    copy_dir(&data, &cut);
    sqlite(
        &cut.join("medic.db"),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit);",
    );
    let (code, out, _) = verify(&cut);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rows were deleted from the end"), "{out}");

    // Delete every row.
    let empty = dir.path().join("empty");
    copy_dir(&data, &empty);
    sqlite(&empty.join("medic.db"), "DROP TRIGGER audit_no_delete; DELETE FROM audit;");
    let (code, out, _) = verify(&empty);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deleted from the end"), "{out}");

    // A duplicated key: the last one wins in the parser, so the hash still matches; the text does not.
    let dup = dir.path().join("dup");
    copy_dir(&data, &dup);
    sqlite(
        &dup.join("medic.db"),
        "DROP TRIGGER audit_no_update; UPDATE audit SET details = '{\"message\":\"forged\",' || substr(details, 2) WHERE seq = 1;",
    );
    let dup_text = {
        let conn = rusqlite::Connection::open(dup.join("medic.db")).unwrap();
        conn.query_row("SELECT details FROM audit WHERE seq = 1", [], |r| r.get::<_, String>(0)).unwrap()
    };
    assert!(
        dup_text.starts_with("{\"message\":\"forged\",") && dup_text.matches("\"message\"").count() == 2,
        "{dup_text}"
    );
    let (code, out, _) = verify(&dup);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 1") && out.contains("canonical"), "{out}");

    // Edit a row and recompute the whole chain, as someone without the audit key can.
    let rechained = dir.path().join("rechained");
    copy_dir(&data, &rechained);
    {
        let conn = rusqlite::Connection::open(rechained.join("medic.db")).unwrap();
        conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
        let rows: Vec<(i64, String, Option<String>, String, String, String)> = conn
            .prepare("SELECT seq, time, incident_id, actor, kind, details FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut prev = medic::audit::GENESIS_HASH.to_string();
        for (i, (seq, time, incident, actor, kind, details)) in rows.into_iter().enumerate() {
            let mut value: serde_json::Value = serde_json::from_str(&details).unwrap();
            if i == 0 {
                value["message"] = serde_json::json!("nothing happened here");
            }
            let hash = medic::audit::event_hash(seq, &time, incident.as_deref(), &actor, &kind, &value, &prev);
            conn.execute(
                "UPDATE audit SET details = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
                rusqlite::params![seq, medic::audit::canonical_json(&value), prev, hash],
            )
            .unwrap();
            prev = hash;
        }
    }
    let (code, out, _) = verify(&rechained);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("MAC does not match"), "{out}");

    // medic started on the truncated database records the mismatch in the chain itself.
    let cfg = dir.path().join("cut.toml");
    let mut medic = MedicProcess::start(&cfg).await;
    medic.child.kill().await.unwrap();
    medic.wait().await;
    let (code, out, _) = run_cli(&["--config", cfg.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not match its anchor"), "{out}");
}

#[tokio::test]
async fn the_debug_log_prints_no_token_no_approval_credential_and_no_link_signature() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let log = dir.path().join("medic.log");
    let mut medic = MedicProcess::start_logging(&config, "debug", Some(&log)).await;
    let base = format!("http://{}", medic.addr);
    let client = reqwest::Client::new();
    let body = std::fs::read_to_string(kuma("down_json.json")).unwrap();
    let r = client
        .post(format!("{base}/hooks/uptime-kuma?token={TOKEN}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let approval = "Zq8mXv3Lr0TkAPPROVALTOKENp2Yw9NcB4sJd7Hf1Ge6";
    let r = client.get(format!("{base}/approvals/{approval}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let sig = "5f3c9a0b1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    let id = uuid::Uuid::now_v7();
    let r = client.get(format!("{base}/incidents/{id}?exp=99999999999&sig={sig}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    medic.child.kill().await.unwrap();
    medic.wait().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/approvals/…"), "the request log ran at debug level:\n{text}");
    for secret in [TOKEN, approval, sig] {
        assert!(!text.contains(secret), "the log holds {secret:?}:\n{text}");
    }
}

#[tokio::test]
async fn the_data_dir_database_secrets_and_eml_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut medic = MedicProcess::start_after(&config, "umask 000").await;
    // An incident with no host mapping escalates by email: the .eml outbox gets a file.
    let body = std::fs::read_to_string(kuma("down_json.json")).unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{}/hooks/uptime-kuma", medic.addr))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let outbox = dir.path().join("data/outbox");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "no .eml file written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    medic.child.kill().await.unwrap();
    medic.wait().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("secrets")), 0o700, "secrets dir");
    assert_eq!(mode(&outbox), 0o700, "outbox dir");
    for file in std::fs::read_dir(&data)
        .unwrap()
        .chain(std::fs::read_dir(data.join("secrets")).unwrap())
        .chain(std::fs::read_dir(&outbox).unwrap())
    {
        let path = file.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}
