//! Embedded memory: retrieval latency (p50/p99) at 10,000 and 100,000 entries, insert throughput and
//! memory use, with the built-in lexical embedding. Run: cargo bench --bench memory. Figures in BENCHMARKS.md.

use std::time::{Duration, Instant};

use medic::memory::embedded::EmbeddedStore;
use medic::memory::{Memory, MemoryEntry, Outcome, SearchFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "connection",
    "refused",
    "timeout",
    "upstream",
    "failed",
    "error",
    "disk",
    "space",
    "memory",
    "killed",
    "oom",
    "process",
    "exited",
    "status",
    "service",
    "socket",
    "permission",
    "denied",
    "certificate",
    "expired",
    "handshake",
    "database",
    "locked",
    "queue",
    "worker",
    "crash",
    "segfault",
    "restart",
    "reload",
    "config",
    "invalid",
    "port",
    "bind",
    "address",
    "already",
    "use",
    "heap",
    "java",
    "python",
    "node",
    "module",
    "missing",
    "file",
    "directory",
    "journal",
    "rotate",
    "inode",
    "volume",
    "mount",
    "readonly",
    "network",
    "unreachable",
    "dns",
    "resolve",
    "host",
    "gateway",
    "bad",
    "502",
    "503",
    "504",
    "slow",
    "latency",
    "spike",
    "load",
    "cpu",
    "swap",
    "thrash",
    "pool",
    "exhausted",
    "clients",
    "limit",
    "reached",
    "max",
    "connections",
    "replica",
    "lag",
    "primary",
    "election",
    "lock",
];

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn sentence(rng: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

fn entry(rng: &mut StdRng, i: usize) -> MemoryEntry {
    MemoryEntry {
        id: uuid::Uuid::from_u128(i as u128 + 1),
        service: format!("service-{}", rng.gen_range(0..50)),
        monitor: format!("monitor-{}", i % 500),
        symptom: sentence(rng, 8),
        signature: (0..3).map(|_| sentence(rng, 10)).collect(),
        root_cause: sentence(rng, 6),
        command: format!("systemctl restart service-{}", i % 50),
        outcome: if i % 10 == 0 { Outcome::Rejected } else { Outcome::Verified },
        approved_by: None,
        approved_at: None,
        incident_id: None,
        reason: None,
        created_at: chrono::Utc::now(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: compile only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "| entries | insert (bulk, entries/s) | search p50 | search p99 | search p50, service filter | search p99, service filter | RSS after load |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [10_000usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(EmbeddedStore::open(&dir.path().join("memory.db")).unwrap());
        let mut rng = StdRng::seed_from_u64(7);
        let entries: Vec<_> = (0..n).map(|i| (entry(&mut rng, i), None)).collect();
        let started = Instant::now();
        for chunk in entries.chunks(5_000) {
            store.bulk_insert(chunk.to_vec()).unwrap();
        }
        let insert_rate = n as f64 / started.elapsed().as_secs_f64();
        let memory = Memory::with_store(store.clone(), Default::default(), 0.5);
        let mut plain = Vec::new();
        let mut filtered = Vec::new();
        for _ in 0..1_000 {
            let query = sentence(&mut rng, 20);
            let started = Instant::now();
            memory.search(&query, &SearchFilter { service: None, include_negatives: true }, 5).await.unwrap();
            plain.push(started.elapsed());
            let filter =
                SearchFilter { service: Some(format!("service-{}", rng.gen_range(0..50))), include_negatives: false };
            let started = Instant::now();
            memory.search(&query, &filter, 5).await.unwrap();
            filtered.push(started.elapsed());
        }
        plain.sort();
        filtered.sort();
        println!(
            "| {n} | {insert_rate:.0} | {} | {} | {} | {} | {:.0} MiB |",
            ms(percentile(&plain, 0.5)),
            ms(percentile(&plain, 0.99)),
            ms(percentile(&filtered, 0.5)),
            ms(percentile(&filtered, 0.99)),
            rss_mib()
        );
        if n == 100_000 {
            println!("RESULT | memory search p99 at 100,000 entries | {} | < 10 ms", ms(percentile(&plain, 0.99)));
        }
        // One-at-a-time inserts (what approvals do): each is its own durable transaction.
        if n == 10_000 {
            let started = Instant::now();
            for i in 0..200 {
                let e = entry(&mut rng, n + i);
                memory.store(&e).await.unwrap();
            }
            eprintln!("single durable inserts: {:.0} entries/s", 200.0 / started.elapsed().as_secs_f64());
        }
    }
}
