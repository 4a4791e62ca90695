//! The validated-fix memory: embedded store across restarts, retrieval quality on 31 past incidents,
//! filters, negatives, import/export, demotion, hybrid search with a fake Ollama embedder, and Qdrant
//! (only when MEDIC_TEST_QDRANT_URL points at a server).

use std::sync::Arc;

use medic::memory::embed::{Embedder, OllamaEmbedder};
use medic::memory::embedded::EmbeddedStore;
use medic::memory::{Memory, MemoryConfig, MemoryEntry, Outcome, SearchFilter};
use serde_json::Value;

use crate::fake_llm::FakeLlm;
use crate::helpers::fixture_path;

async fn memory_in(dir: &std::path::Path) -> Memory {
    Memory::open(&MemoryConfig::default(), dir).await.unwrap()
}

async fn loaded(dir: &std::path::Path) -> Memory {
    let memory = memory_in(dir).await;
    let text = std::fs::read_to_string(fixture_path("memory/past_incidents.jsonl")).unwrap();
    assert_eq!(memory.import(&text).await.unwrap(), 32);
    memory
}

fn verified_only(service: Option<&str>) -> SearchFilter {
    SearchFilter { service: service.map(str::to_string), include_negatives: false }
}

#[tokio::test]
async fn new_evidence_ranks_the_right_past_fix_first() {
    let dir = tempfile::tempdir().unwrap();
    let memory = loaded(dir.path()).await;
    let queries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture_path("memory/queries.json")).unwrap()).unwrap();
    assert!(queries.len() >= 10);
    for q in queries {
        let filter = verified_only(q["service"].as_str());
        let hits = memory.search(q["evidence"].as_str().unwrap(), &filter, 3).await.unwrap();
        let top = hits.first().unwrap_or_else(|| panic!("no hit for {q}"));
        assert_eq!(
            top.entry.monitor,
            q["expect_monitor"].as_str().unwrap(),
            "query {q}: got {:#?}",
            hits.iter().map(|h| (&h.entry.monitor, h.score)).collect::<Vec<_>>()
        );
        assert!(top.score > 0.2 && top.score <= 1.0, "{}", top.score);
    }
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let memory = loaded(dir.path()).await;
        assert_eq!(memory.count().await.unwrap(), 32);
    }
    let memory = memory_in(dir.path()).await;
    assert_eq!(memory.count().await.unwrap(), 32);
    let hits = memory.search("Cannot connect to the Docker daemon", &verified_only(None), 1).await.unwrap();
    assert_eq!(hits[0].entry.command, "systemctl restart docker");
}

#[tokio::test]
async fn search_filters_by_service_and_labels_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let memory = loaded(dir.path()).await;
    let query = "nginx.service: Main process exited, code=exited, status=1/FAILURE connect ECONNREFUSED";
    let hits = memory.search(query, &verified_only(Some("postgresql")), 5).await.unwrap();
    assert!(hits.iter().all(|h| h.entry.service == "postgresql"), "service filter");
    let hits = memory.search(query, &verified_only(Some("nginx")), 10).await.unwrap();
    assert!(hits.iter().all(|h| h.entry.outcome == Outcome::Verified), "no negatives unless asked");
    let with_negatives = memory
        .search(query, &SearchFilter { service: Some("nginx".into()), include_negatives: true }, 10)
        .await
        .unwrap();
    let rejected =
        with_negatives.iter().find(|h| h.entry.outcome == Outcome::Rejected).expect("the rejected fix is returned");
    assert_eq!(rejected.entry.reason.as_deref(), Some("logs were not the problem; a plain restart is enough"));
    assert!(memory.search(query, &verified_only(Some("no-such-service")), 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn export_then_import_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let memory = loaded(dir.path()).await;
    let exported = memory.export_jsonl().await.unwrap();
    assert_eq!(exported.lines().count(), 32);
    let other = tempfile::tempdir().unwrap();
    let copy = memory_in(other.path()).await;
    assert_eq!(copy.import(&exported).await.unwrap(), 32);
    assert_eq!(copy.export_jsonl().await.unwrap(), exported);
    // A broken line imports nothing and names the line.
    let broken = format!("{}{{\"service\": \"x\"}}\n", exported);
    let third = tempfile::tempdir().unwrap();
    let empty = memory_in(third.path()).await;
    let e = empty.import(&broken).await.unwrap_err().to_string();
    assert!(e.contains("line 33"), "{e}");
    assert_eq!(empty.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_markdown_runbook_imports() {
    let dir = tempfile::tempdir().unwrap();
    let memory = memory_in(dir.path()).await;
    let text = "## nginx stopped\n- service: nginx\n- cause: bad reload\n- command: systemctl restart nginx\n- signature: nginx.service: Failed with result 'exit-code'\n";
    assert_eq!(memory.import(text).await.unwrap(), 1);
    let hits =
        memory.search("nginx.service: Failed with result 'exit-code'", &verified_only(Some("nginx")), 1).await.unwrap();
    assert_eq!(hits[0].entry.command, "systemctl restart nginx");
}

#[tokio::test]
async fn a_demoted_fix_is_no_longer_offered_for_l0() {
    let dir = tempfile::tempdir().unwrap();
    let memory = loaded(dir.path()).await;
    let query = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock";
    let top = memory.search(query, &verified_only(None), 1).await.unwrap().remove(0);
    assert!(memory.demote(top.entry.id, "verification failed on incident X").await.unwrap());
    let hits = memory.search(query, &verified_only(None), 5).await.unwrap();
    assert!(hits.iter().all(|h| h.entry.id != top.entry.id), "demoted entry excluded");
    let all = memory.search(query, &SearchFilter { service: None, include_negatives: true }, 5).await.unwrap();
    let demoted = all.iter().find(|h| h.entry.id == top.entry.id).expect("still visible to L2, labelled");
    assert_eq!(demoted.entry.outcome, Outcome::Failed);
    drop(memory);
    let reopened = memory_in(dir.path()).await;
    assert_eq!(reopened.get(top.entry.id).await.unwrap().unwrap().outcome, Outcome::Failed, "demotion persists");
    assert!(reopened.delete(top.entry.id).await.unwrap());
    assert!(reopened.get(top.entry.id).await.unwrap().is_none());
}

#[tokio::test]
async fn hybrid_search_uses_dense_embeddings_from_ollama() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("memory.db")).unwrap());
    let url = url::Url::parse(&format!("{}/", fake.base)).unwrap();
    let embedder =
        Embedder::new(Some(OllamaEmbedder::new(&url, "nomic-embed-text", std::time::Duration::from_secs(5)).unwrap()));
    let memory = Memory::with_store(store, embedder, 0.7);
    let entry = |service: &str, symptom: &str, command: &str| MemoryEntry {
        id: uuid::Uuid::now_v7(),
        service: service.into(),
        monitor: String::new(),
        symptom: symptom.into(),
        signature: vec![],
        root_cause: symptom.into(),
        command: command.into(),
        outcome: Outcome::Verified,
        approved_by: None,
        approved_at: None,
        incident_id: None,
        reason: None,
        created_at: chrono::Utc::now(),
    };
    memory
        .store(&entry("minio", "storage volume exhausted", "/usr/local/lib/medic/clean_logs.sh minio"))
        .await
        .unwrap();
    memory.store(&entry("minio", "certificate expired", "systemctl restart minio")).await.unwrap();
    // No word in common with the first entry: only the dense side can find it.
    let hits = memory.search("disk full", &verified_only(None), 2).await.unwrap();
    assert_eq!(hits[0].entry.symptom, "storage volume exhausted");
    let requests = fake.requests("ollama_embed");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2]["model"], "nomic-embed-text");
    assert_eq!(requests[2]["input"], "disk full");
}

/// A Qdrant configuration on `url` with a fresh collection name.
fn qdrant_config(url: &str) -> MemoryConfig {
    MemoryConfig {
        qdrant_url: Some(url.parse().unwrap()),
        collection: format!("medic_test_{}", uuid::Uuid::now_v7().simple()),
        timeout: std::time::Duration::from_secs(2),
        ..MemoryConfig::default()
    }
}

/// Deletes the test's collection when the test ends, passed or failed.
struct DropCollection(Option<MemoryConfig>);

impl Drop for DropCollection {
    fn drop(&mut self) {
        let Some(config) = self.0.take() else { return };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let store = medic::memory::qdrant::QdrantStore::connect(
                    config.qdrant_url.as_ref().unwrap(),
                    None,
                    &config.collection,
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap();
                store.drop_collection().await.unwrap();
            });
        })
        .join()
        .unwrap();
    }
}

#[tokio::test]
async fn a_qdrant_url_at_a_port_that_speaks_http1_is_refused_naming_the_key_and_the_grpc_port() {
    // Any HTTP/1.1 server (here the fake model server) stands where gRPC was expected.
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e = Memory::open(&qdrant_config(&format!("{}/", fake.base)), dir.path()).await.err().expect("refused");
    let text = e.to_string();
    assert!(matches!(e, medic::memory::MemoryError::Config(_)), "{e:?}");
    assert!(text.contains("memory.qdrant_url") && text.contains("6334") && text.contains("HTTP/1.1"), "{text}");
}

#[tokio::test]
async fn qdrant_down_at_start_leaves_memory_unavailable_and_says_so_on_readyz_and_the_timeline() {
    // Nothing listens on this port: medic starts, memory is unavailable and keeps trying.
    let port = crate::sshd::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::open(&qdrant_config(&url), dir.path()).await.unwrap();
    assert!(!memory.available());
    let e = memory.search("nginx down", &verified_only(None), 1).await.unwrap_err();
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert_eq!(e.fault(), medic::fault::Fault::Transient);

    // In the pipeline: port 1 on loopback refuses connections (nothing listens there).
    let world = crate::world::World::start(crate::world::Options {
        l2: false,
        tweak: Some(|s, _| {
            s.memory.qdrant_url = Some("http://127.0.0.1:1".parse().unwrap());
            s.memory.timeout = std::time::Duration::from_millis(500);
        }),
        ..crate::world::Options::default()
    })
    .await;
    let ready: Value = world.app.client.get(world.app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["memory"], "unavailable", "{ready}");
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&world.start_command()));
    let id = world.down().await;
    let incident = world.wait_state(&id, "resolved", 40).await;
    let notes: Vec<&str> =
        incident["timeline"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        notes.iter().any(|m| m.contains("memory search failed") && m.contains("unavailable")),
        "the timeline says memory was not consulted: {notes:?}"
    );
    world.app.stop().await;
}

/// Runs against a real Qdrant server when MEDIC_TEST_QDRANT_URL is set (e.g. http://127.0.0.1:6334);
/// this machine cannot run one, so without it the test only checks that the variable is absent.
#[tokio::test]
async fn qdrant_backend_round_trip_when_a_server_is_configured() {
    let Ok(url) = std::env::var("MEDIC_TEST_QDRANT_URL") else {
        eprintln!("MEDIC_TEST_QDRANT_URL not set: Qdrant integration not exercised");
        return;
    };
    let config = qdrant_config(&url);
    let _cleanup = DropCollection(Some(config.clone()));
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::open(&config, dir.path()).await.unwrap();
    assert!(memory.available());
    let text = std::fs::read_to_string(fixture_path("memory/past_incidents.jsonl")).unwrap();
    assert_eq!(memory.import(&text).await.unwrap(), 32);
    assert_eq!(memory.count().await.unwrap(), 32);
    let hits = memory.search("Cannot connect to the Docker daemon", &verified_only(Some("docker")), 1).await.unwrap();
    assert_eq!(hits[0].entry.command, "systemctl restart docker");
    assert_eq!(memory.export_jsonl().await.unwrap().lines().count(), 32);

    // The same query scores the same as on the embedded store (one l0_min_similarity).
    let local = loaded(dir.path()).await;
    for query in [
        "Cannot connect to the Docker daemon",
        "502 Bad Gateway upstream connection refused",
        "No space left on device",
    ] {
        let a = local.search(query, &verified_only(None), 3).await.unwrap();
        let b = memory.search(query, &verified_only(None), 3).await.unwrap();
        assert_eq!(a[0].entry.id, b[0].entry.id, "{query}");
        assert!((a[0].score - b[0].score).abs() < 1e-3, "{query}: embedded {} vs qdrant {}", a[0].score, b[0].score);
    }

    // Setting embed_url on this collection (made without embeddings) is refused at start, naming the keys.
    let fake = FakeLlm::start().await;
    let with_dense = MemoryConfig { embed_url: Some(format!("{}/", fake.base).parse().unwrap()), ..config.clone() };
    let e = Memory::open(&with_dense, dir.path()).await.err().expect("layout refused");
    assert!(matches!(e, medic::memory::MemoryError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("memory.embed_url"), "{e}");

    // Qdrant's REST port, when given, is named as such.
    if let Ok(rest) = std::env::var("MEDIC_TEST_QDRANT_REST_URL") {
        let e = Memory::open(&qdrant_config(&rest), dir.path()).await.err().expect("REST port refused");
        assert!(e.to_string().contains("REST port"), "{e}");
    }
}

/// medic started while Qdrant is unreachable (a TCP relay to the real server, not listening yet)
/// connects once it is reachable, without a restart.
#[tokio::test]
async fn memory_reconnects_when_qdrant_comes_up_after_start() {
    let Ok(url) = std::env::var("MEDIC_TEST_QDRANT_URL") else {
        eprintln!("MEDIC_TEST_QDRANT_URL not set: Qdrant integration not exercised");
        return;
    };
    let target = url::Url::parse(&url).unwrap();
    let target = format!("{}:{}", target.host_str().unwrap(), target.port().unwrap());
    let port = crate::sshd::free_port();
    let config = qdrant_config(&format!("http://127.0.0.1:{port}"));
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::open(&config, dir.path()).await.unwrap();
    assert!(!memory.available());
    assert!(memory.search("nginx", &verified_only(None), 1).await.is_err());
    // Qdrant "comes up": a relay starts listening on the configured port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let _cleanup = DropCollection(Some(MemoryConfig { qdrant_url: Some(url.parse().unwrap()), ..config.clone() }));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while memory.search("nginx", &verified_only(None), 1).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "memory never reconnected");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(memory.available());
}
