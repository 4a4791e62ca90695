//! Crash safety: SIGKILL during a burst loses no acknowledged webhook, and unfinished incidents resume.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TOKEN, kuma};
use crate::process::{MedicProcess, write_config};

const CLIENTS: usize = 16;
const PER_CLIENT: usize = 125; // 2,000 in all
const KILL_AFTER_ACKS: usize = 700;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_loses_no_acknowledged_webhook() {
    let dir = tempfile::tempdir().unwrap();
    // One slow worker so incidents are still unfinished when the process dies.
    let config = write_config(dir.path(), "[pipeline]\nmax_concurrent = 1\n");
    let mut medic = MedicProcess::start(&config).await;
    let url = format!("http://{}/hooks/uptime-kuma", medic.addr);
    let template: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let n_acked = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, template, acked, n_acked) = (url.clone(), template.clone(), acked.clone(), n_acked.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            for i in 0..PER_CLIENT {
                let marker = format!("burst-{c}-{i}");
                let mut body = template.clone();
                // 10 monitors per client; DOWN mostly, with some UPs to close and reopen incidents.
                body["monitor"]["id"] = json!(1000 + c * 10 + i % 10);
                body["heartbeat"]["status"] = json!(if i % 7 == 6 { 1 } else { 0 });
                body["heartbeat"]["msg"] = json!(marker);
                match client.post(&url).bearer_auth(TOKEN).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().await.push(marker);
                        n_acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }));
    }
    while n_acked.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    medic.kill9();
    medic.wait().await;
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(acked.len() < CLIENTS * PER_CLIENT, "the kill happened during the burst");

    // Every acknowledged webhook is in the store after the crash.
    let db = dir.path().join("data/medic.db");
    let (stored, unfinished_before) = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn.prepare("SELECT message FROM events").unwrap();
        let stored: HashSet<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        let unfinished: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM incidents WHERE state IN ('open','collecting','diagnosing') AND parked_reason IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (stored, unfinished)
    };
    let lost: Vec<_> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(lost.is_empty(), "{} acknowledged webhooks lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(unfinished_before > 0, "the crash left incidents mid-pipeline (else resume is not tested)");

    // After restart every unfinished incident resumes and moves on.
    let mut medic = MedicProcess::start(&config).await;
    let client = reqwest::Client::new();
    let ready = client.get(format!("http://{}/readyz", medic.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let stuck: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM incidents WHERE state IN ('open','collecting','diagnosing') AND parked_reason IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if stuck == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stuck} incidents never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    medic.kill9();
    medic.wait().await;
}

#[tokio::test]
async fn an_incident_committed_without_its_answer_is_processed_without_a_restart() {
    // As when a client hangs up after the commit and before the 202: the incident is in the store and
    // nobody told the runner. It must be driven all the same.
    let app = crate::helpers::TestApp::spawn().await;
    let body = std::fs::read_to_string(crate::helpers::kuma("down_json.json")).unwrap();
    let alert = medic::ingest::uptime_kuma::parse_json(&body, chrono::Utc::now()).unwrap();
    let outcome = app.store.ingest(alert, body).await.unwrap();
    let id = outcome.incident_id.unwrap().to_string();
    let incident = app.wait_incident(&id, 10, |i| i["state"] != "open").await;
    // No inventory in this app: the pipeline moves it on to humans.
    assert_eq!(incident["state"], "escalated", "{incident}");
    app.stop().await;
}

#[tokio::test]
async fn retention_deletes_old_closed_incidents_and_files_but_never_the_audit_log() {
    let app = crate::helpers::TestApp::spawn().await;
    let fixture = |name: &str| serde_json::from_str::<Value>(&std::fs::read_to_string(kuma(name)).unwrap()).unwrap();
    let closed: Value = app.post_kuma_json(&fixture("down_json.json")).await.json().await.unwrap();
    let closed = closed["incident_id"].as_str().unwrap().to_string();
    assert_eq!(app.post_kuma_json(&fixture("up_json.json")).await.status(), 202);
    let open = app
        .client
        .post(app.url("/api/v1/incidents"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"service_name": "db", "monitor_id": "still-open"}).to_string())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    let eml_dir = app.dir.path().join("outbox");
    std::fs::create_dir_all(&eml_dir).unwrap();
    std::fs::write(eml_dir.join("000001.eml"), "old mail").unwrap();
    let audit_before = app.store.audit_rows_blocking().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pruned = app.store.prune(chrono::Utc::now() + chrono::Duration::seconds(1), &eml_dir).await.unwrap();
    assert_eq!(pruned.incidents, 1, "{pruned:?}");
    // The planted old file goes (the escalation email of the open incident may be written meanwhile
    // and go with it: both are older than the cut-off).
    assert!(pruned.eml_files >= 1, "{pruned:?}");
    assert!(!eml_dir.join("000001.eml").exists());
    let r = app.client.get(app.url(&format!("/api/v1/incidents/{closed}"))).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404, "the closed incident is gone");
    let still = app.incident(&open).await;
    assert_ne!(still["state"], "recovered_by_monitor", "the open incident stays");
    let rows = app.store.audit_rows_blocking().unwrap();
    assert!(rows.len() >= audit_before, "the audit log is never pruned");
    assert!(medic::audit::verify(rows).is_ok());
    app.stop().await;
}
