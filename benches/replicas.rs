//! Replicas benchmark: 1, 2 and 3 real `medic serve` processes (release build) sharing one PostgreSQL
//! database on loopback, the test sshd and nginx. For each count: the ingest rate and latency of DOWN
//! webhooks spread over the replicas (2,000 for 200 monitors, 32 clients), how fast the replicas drive
//! those incidents to humans (pipeline passes per second), and heals (webhook → verified fix, nginx over
//! SSH, level 1 on the zero-latency fake). Then the failover time after `kill -9` of the replica holding
//! an execution's lease. Run: cargo bench --bench replicas. Figures in BENCHMARKS.md.
//! This machine has 2 cores: more replicas cannot be faster here; the figures are the cost of sharing.

#![allow(dead_code)]

#[path = "../tests/api/fake_llm.rs"]
mod fake_llm;
#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/api/postgres.rs"]
mod postgres;
#[path = "../tests/api/process.rs"]
mod process;
#[path = "../tests/api/replicas.rs"]
#[allow(unused_imports)]
mod replicas;
#[path = "../tests/api/smtp.rs"]
mod smtp;
#[path = "../tests/api/sshd.rs"]
mod sshd;
#[path = "../tests/api/world.rs"]
mod world;

use std::time::{Duration, Instant};

use medic::store::db::Value as Sql;
use serde_json::{Value, json};

use replicas::{Replica, pg, post_kuma, replica_config, start_replica, text, wait_state};

const WEBHOOKS: usize = 2_000;
const MONITORS: usize = 200;
const CLIENTS: usize = 32;
const HEALS: usize = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn start(world: &world::World, n: usize, url: &str, dirs: &[tempfile::TempDir]) -> Vec<Replica> {
    let mut out = vec![start_replica(&replica_config(world, url, dirs[0].path()), dirs[0].path()).await];
    for dir in &dirs[1..n] {
        let secrets = dir.path().join("data/secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        for key in ["audit_key", "outbox_key", "link_key"] {
            std::fs::copy(dirs[0].path().join("data/secrets").join(key), secrets.join(key)).unwrap();
        }
        out.push(start_replica(&replica_config(world, url, dir.path()), dir.path()).await);
    }
    out
}

async fn storm(replicas: &[Replica], url: &str) -> (f64, Duration, Duration, f64) {
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(helpers::kuma("down_json.json")).unwrap()).unwrap();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (bases, template) = (bases.clone(), template.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (c..WEBHOOKS).step_by(CLIENTS) {
                let mut body = template.clone();
                body["monitor"]["id"] = json!(10_000 + i % MONITORS);
                body["monitor"]["url"] = json!("http://storm.invalid/health");
                body["heartbeat"]["msg"] = json!(format!("bench-{i}"));
                let t = Instant::now();
                let r = post_kuma(&bases[i % bases.len()], &body).await;
                assert_eq!(r.status(), 202);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap());
    }
    let ingest = started.elapsed();
    latencies.sort();
    // Every incident driven to humans (escalated, parked) by whichever replica claimed it.
    loop {
        let rows = pg(
            url,
            &format!("SELECT COUNT(*) FROM incidents WHERE {}", "parked_reason IS NULL AND state NOT IN ('resolved', 'rejected', 'recovered_by_monitor', 'failed', 'awaiting_approval')"),
            vec![],
        )
        .await;
        if text(&rows[0][0]) == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    (
        WEBHOOKS as f64 / ingest.as_secs_f64(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        MONITORS as f64 / drained.as_secs_f64(),
    )
}

async fn heals(world: &world::World, replicas: &[Replica], url: &str) -> Vec<Duration> {
    let control = world.nginx.control();
    let mut out = Vec::new();
    for i in 0..HEALS {
        world.nginx.stop();
        world.l1_says("nginx is stopped", 0.92, Some(&format!("{control} start")));
        let started = Instant::now();
        let v: Value = post_kuma(&replicas[i % replicas.len()].base, &world.down_body()).await.json().await.unwrap();
        let id = v["incident_id"].as_str().unwrap().to_string();
        let state = wait_state(url, &id, &["resolved", "escalated", "awaiting_approval"], 60).await;
        assert_eq!(state, "resolved");
        out.push(started.elapsed());
        post_kuma(&replicas[(i + 1) % replicas.len()].base, &world.up_body()).await;
    }
    out.sort();
    out
}

async fn failover(world: &world::World, replicas: &mut [Replica], url: &str) -> (Duration, usize) {
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&format!("{} slowstart", world.nginx.control())));
    let v: Value = post_kuma(&replicas[0].base, &replicas::slow_down_body(world)).await.json().await.unwrap();
    let id = v["incident_id"].as_str().unwrap().to_string();
    wait_state(url, &id, &["executing"], 30).await;
    let holder = pg(url, "SELECT owner FROM leases WHERE incident_id = ?1", vec![Sql::Text(id.clone())]).await;
    let holder = text(&holder[0][0]);
    let victim = replicas.iter().position(|r| r.name == holder).unwrap();
    let killed = Instant::now();
    replicas[victim].process.kill9();
    replicas[victim].process.wait().await;
    // Taken over: another replica moved it out of `executing` (to verification, then an end).
    wait_state(url, &id, &["verifying", "resolved", "escalated"], 60).await;
    (killed.elapsed(), victim)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let world = world::World::start(world::Options {
            l2: false,
            smtp: false,
            rules: Some(replicas::RULES.into()),
            max_actions_per_service: 10_000,
            ..world::Options::default()
        })
        .await;
        world.nginx.start();
        println!("| replicas | webhooks accepted/s | p50 | p99 | incidents to humans/s | heal median | heal p99 |");
        println!("|---|---|---|---|---|---|---|");
        for n in 1..=3 {
            let url = postgres::database();
            let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
            let mut replicas = start(&world, n, &url, &dirs).await;
            let (rate, p50, p99, drain) = storm(&replicas, &url).await;
            let heals = heals(&world, &replicas, &url).await;
            println!(
                "| {n} | {rate:.0} | {} | {} | {drain:.0} | {} | {} |",
                ms(p50),
                ms(p99),
                ms(percentile(&heals, 50.0)),
                ms(percentile(&heals, 99.0))
            );
            let mut killed = None;
            if n > 1 {
                let (took, victim) = failover(&world, &mut replicas, &url).await;
                killed = Some(victim);
                println!(
                    "|   | failover after kill -9 of the lease holder ({n} replicas, store.lease = 3s): {:.2} s |||||",
                    took.as_secs_f64()
                );
            }
            for (i, r) in replicas.iter_mut().enumerate() {
                if killed != Some(i) {
                    r.process.kill9();
                    r.process.wait().await;
                }
            }
        }
    });
}
