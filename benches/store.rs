//! Store benchmarks (issue: edge and store):
//! 1. `GET /api/v1/incidents?limit=50` as the store answers it, with 1,000,000 incidents stored
//!    (p50/p99 over 1,000 lists, and filtered by state).
//! 2. A backlog: 100,000 distinct DOWN webhooks to a real medic process (no inventory: each incident is
//!    escalated and parked with an email), medic's peak RSS, and the time until every incident is parked.
//!
//! 3. A `/metrics` scrape over the million incidents and their audit rows.
//!
//! Run: cargo bench --bench store (MEDIC_BENCH_ONLY=list: 1 and 3 only). Figures in BENCHMARKS.md.

#![allow(dead_code)]

#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/api/postgres.rs"]
mod postgres;
#[path = "../tests/api/process.rs"]
mod process;
#[path = "../tests/api/sshd.rs"]
mod sshd;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use medic::domain::IncidentState;
use medic::store::{IncidentFilter, Store};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn list_at_a_million() {
    let dir = tempfile::tempdir().unwrap();
    let config = medic::config::StoreConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let store = Store::open(&config).unwrap();
    let n_total = 1_000_000usize;
    let started = Instant::now();
    let now = chrono::Utc::now();
    for chunk in 0..(n_total / 2000) {
        let alerts: Vec<(medic::domain::Alert, String)> = (0..2000)
            .map(|i| {
                let n = chunk * 2000 + i;
                let body = format!(
                    r#"{{"heartbeat":{{"status":0,"msg":"down {n}"}},"monitor":{{"id":"m{n}","name":"bench {n}"}}}}"#
                );
                (medic::ingest::uptime_kuma::parse_json(&body, now).unwrap(), body)
            })
            .collect();
        store.ingest_all(alerts).await.unwrap();
    }
    println!("stored {n_total} incidents in {:.0} s", started.elapsed().as_secs_f64());
    for (what, filter) in [
        ("limit=50", IncidentFilter { limit: 50, ..Default::default() }),
        ("state=open&limit=50", IncidentFilter { limit: 50, state: Some(IncidentState::Open), ..Default::default() }),
    ] {
        let mut times = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let t = Instant::now();
            let rows = store.list(filter.clone()).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(rows.len(), 50);
        }
        times.sort();
        println!(
            "RESULT | list incidents ({what}) with 1,000,000 stored | p50 {} p99 {} | p99 <= 5 ms",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    // A `/metrics` scrape reads the audit log (here 1,000,000 `incident_opened` rows) and the tables.
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let text = medic::web::metrics::render(&store.read(medic::web::metrics::snapshot).await.unwrap());
        times.push(t.elapsed());
        assert!(text.contains("medic_incidents_opened_total"));
    }
    times.sort();
    println!(
        "RESULT | /metrics scrape with 1,000,000 incidents and audit rows | p50 {} max {}",
        ms(percentile(&times, 0.5)),
        ms(*times.last().unwrap())
    );
    store.close().await;
}

fn rss_peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn runnable(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM incidents WHERE state NOT IN ('resolved','rejected','recovered_by_monitor','failed','awaiting_approval') AND parked_reason IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap_or(-1)
}

async fn backlog() {
    let n_total = 100_000usize;
    let dir = tempfile::tempdir().unwrap();
    let config = process::write_config(dir.path(), "[log]\nlevel = \"warn\"\n");
    let medic = process::MedicProcess::start(&config).await;
    let pid = medic.child.id().unwrap();
    let url = format!("http://{}/hooks/uptime-kuma", medic.addr);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= n_total {
                        return;
                    }
                    let body = format!(
                        r#"{{"heartbeat":{{"status":0,"msg":"down {n}"}},"monitor":{{"id":"b{n}","name":"backlog {n}"}}}}"#
                    );
                    let r = client
                        .post(&url)
                        .bearer_auth(helpers::TOKEN)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let sent = started.elapsed();
    let db = dir.path().join("data/medic.db");
    let left = runnable(&db);
    let rss_after_load = rss_peak_kib(pid);
    while runnable(&db) != 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = started.elapsed();
    let peak = rss_peak_kib(pid);
    println!(
        "{n_total} distinct DOWNs acknowledged in {:.1} s ({:.0}/s); {left} incidents still runnable then; all parked after {:.1} s",
        sent.as_secs_f64(),
        n_total as f64 / sent.as_secs_f64(),
        drained.as_secs_f64()
    );
    println!(
        "RESULT | backlog of {n_total} distinct DOWNs, medic peak RSS | {} MiB (after load {} MiB) | <= 64 MiB",
        peak / 1024,
        rss_after_load / 1024
    );
    println!(
        "RESULT | pipeline drain rate (incidents parked per second, whole run) | {:.0}/s |",
        n_total as f64 / drained.as_secs_f64()
    );
    drop(medic);
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: compile only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    list_at_a_million().await;
    // MEDIC_BENCH_ONLY=list: the listing and the scrape only.
    if std::env::var("MEDIC_BENCH_ONLY").as_deref() != Ok("list") {
        backlog().await;
    }
}
