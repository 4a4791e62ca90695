//! Three medic replicas (real `medic serve` processes on loopback ports) sharing one real PostgreSQL
//! database, the test sshd and nginx: a storm spread over them opens one incident per monitor, an
//! incident is healed once, an approval link issued by one replica is decided on another, a replica
//! killed (-9) while it holds an execution's lease is taken over at verification without running the
//! command again, and the shared audit chain verifies. Also: `medic store migrate` from SQLite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic::store::db::{Connection, Value as Sql};
use serde_json::{Value, json};

use crate::helpers::{TOKEN, kuma};
use crate::process::{MedicProcess, medic_bin};
use crate::smtp::approval_link;
use crate::world::{Options, World, form_fields};

/// Rules for the replicas: `start` and `slowstart` run by themselves, `restart` needs a human.
pub const RULES: &str = r#"{
  "safe_commands": {
    "nginx_control": { "mode": "auto", "allowed": ["{control} start", "{control} slowstart"] },
    "nginx_restart": { "mode": "approval", "allowed": ["{control} restart"] },
    "blocked_patterns": ["rm -rf", "shutdown", "mkfs"]
  },
  "placeholders": { "lines": { "range": [1, 5000] } },
  "diagnostics": { "allowed": ["tail -n {lines} {log}", "uptime"] }
}"#;

pub struct Replica {
    pub process: MedicProcess,
    pub name: String,
    pub base: String,
}

/// Runs a query on the shared database from a blocking thread.
pub async fn pg(url: &str, sql: &str, params: Vec<Sql>) -> Vec<Vec<Sql>> {
    let (url, sql) = (url.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open_postgres(&url).unwrap();
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows =
            stmt.query_map(medic::store::db::params_from_iter(params.iter()), |r| Ok(r.values().to_vec())).unwrap();
        rows.map(Result::unwrap).collect()
    })
    .await
    .unwrap()
}

pub fn text(v: &Sql) -> String {
    match v {
        Sql::Text(s) => s.clone(),
        Sql::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The World's settings as a config file for a replica: the shared database, its own data dir.
pub fn replica_config(world: &World, url: &str, dir: &Path) -> PathBuf {
    let mut settings = world.options_settings.clone();
    settings.store.url = url.to_string();
    settings.store.data_dir = dir.join("data");
    settings.store.lease = Duration::from_secs(3);
    settings.server.bind = "127.0.0.1:0".parse().unwrap();
    settings.approval.public_url = None;
    // Monitors 2 and 3: the same nginx as other services, so a fix remembered for monitor 1 does not
    // heal them from memory (the approval and kill -9 scenarios need level 1's commands).
    for (id, service) in [("2", "edge-nginx"), ("3", "admin-nginx")] {
        settings.inventory.monitors.push(medic::inventory::MonitorMapping {
            monitor_id: Some(id.into()),
            host: "web1".into(),
            service: Some(service.into()),
            ..Default::default()
        });
    }
    let text = toml::to_string(&settings).unwrap().replace("\"********\"", &format!("\"{TOKEN}\""));
    let path = dir.join("medic.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub async fn start_replica(config: &Path, dir: &Path) -> Replica {
    let log = dir.join("medic.log");
    let process = MedicProcess::start_logging(config, "info", Some(&log)).await;
    let base = format!("http://{}", process.addr);
    let ready: Value = reqwest::get(format!("{base}/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["store"], "ok", "{ready}");
    Replica { process, name: ready["replica"].as_str().unwrap().to_string(), base }
}

pub async fn post_kuma(base: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(format!("{base}/hooks/uptime-kuma")).bearer_auth(TOKEN).json(body).send().await.unwrap()
}

pub async fn state_of(url: &str, id: &str) -> String {
    let rows = pg(url, "SELECT state FROM incidents WHERE id = ?1", vec![Sql::Text(id.into())]).await;
    text(&rows[0][0])
}

pub async fn wait_state(url: &str, id: &str, states: &[&str], secs: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let state = state_of(url, id).await;
        if states.contains(&state.as_str()) {
            return state;
        }
        if tokio::time::Instant::now() > deadline {
            let rows = pg(
                url,
                "SELECT kind, message FROM timeline WHERE incident_id = ?1 ORDER BY id",
                vec![Sql::Text(id.into())],
            )
            .await;
            let lines: Vec<String> = rows.iter().map(|r| format!("{}: {}", text(&r[0]), text(&r[1]))).collect();
            let actions =
                pg(url, "SELECT at, host, service, automatic, outcome, incident_id FROM actions", vec![]).await;
            panic!(
                "incident {id} is {state}, not one of {states:?}; timeline:\n{}\nactions: {actions:?}",
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The DOWN of monitor 2 (see [`replica_config`]).
pub fn slow_down_body(world: &World) -> Value {
    down_of(world, 2)
}

fn down_of(world: &World, monitor: u32) -> Value {
    let mut body = world.down_body();
    body["monitor"]["id"] = json!(monitor);
    body
}

/// Lines the nginx control script logged (one per call: what it was asked to do).
pub fn calls(world: &World) -> Vec<String> {
    std::fs::read_to_string(world.nginx.dir.path().join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_work_heal_once_take_over_a_killed_lease_and_keep_one_audit_chain() {
    let world = World::start(Options { l2: false, rules: Some(RULES.into()), ..Options::default() }).await;
    // The control script records every call, so "ran once" is read on the host itself.
    let control = world.nginx.control();
    let script = std::fs::read_to_string(&control).unwrap().replacen(
        "set -eu\n",
        &format!("set -eu\necho \"$1\" >> {}/calls.log\n", world.nginx.dir.path().display()),
        1,
    );
    std::fs::write(&control, script).unwrap();

    let url = crate::postgres::database();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start_replica(&replica_config(&world, &url, dirs[0].path()), dirs[0].path()).await;
    // The replicas share the first one's keys (links, sealed outbox bodies, audit MACs).
    for dir in &dirs[1..] {
        let secrets = dir.path().join("data/secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        for key in ["audit_key", "outbox_key", "link_key"] {
            std::fs::copy(dirs[0].path().join("data/secrets").join(key), secrets.join(key)).unwrap();
        }
    }
    let mut replicas = vec![first];
    for dir in &dirs[1..] {
        replicas.push(start_replica(&replica_config(&world, &url, dir.path()), dir.path()).await);
    }
    let names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{names:?}");

    // A replica started with other keys refuses to start, naming the file.
    let stray = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(medic_bin())
        .arg("--config")
        .arg(replica_config(&world, &url, stray.path()))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut stray_medic = tokio::process::Command::new(medic_bin())
        .arg("--config")
        .arg(stray.path().join("medic.toml"))
        .arg("serve")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), stray_medic.wait()).await.unwrap().unwrap();
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stray_medic.stderr.take().unwrap(), &mut err).await.unwrap();
    assert!(!status.success() && err.contains("secrets/audit_key"), "{err}");

    // 1. A storm: 20 monitors × 10 DOWNs, each DOWN to a replica in turn, all at once.
    let template: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    let mut sends = Vec::new();
    for i in 0..200usize {
        let base = replicas[i % 3].base.clone();
        let mut body = template.clone();
        body["monitor"]["id"] = json!(7000 + i % 20);
        // Not the test host's address: these incidents map to no host and go to humans.
        body["monitor"]["url"] = json!("http://storm.invalid/health");
        body["heartbeat"]["msg"] = json!(format!("storm-{i}"));
        sends.push(tokio::spawn(async move { post_kuma(&base, &body).await.status().as_u16() }));
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), 202);
    }
    let per_monitor = pg(
        &url,
        "SELECT monitor_id, COUNT(*), SUM(down_count) FROM incidents WHERE monitor_id LIKE '70%' GROUP BY monitor_id",
        vec![],
    )
    .await;
    assert_eq!(per_monitor.len(), 20, "{per_monitor:?}");
    for row in &per_monitor {
        assert_eq!((text(&row[1]), text(&row[2])), ("1".into(), "10".into()), "one incident per monitor: {row:?}");
    }
    let events = pg(&url, "SELECT COUNT(*) FROM events WHERE message LIKE 'storm-%'", vec![]).await;
    assert_eq!(text(&events[0][0]), "200", "every acknowledged DOWN is stored");

    // 2. Healed once: the same DOWN to all three replicas; one incident, one command on the host.
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&format!("{control} start")));
    let seen = calls(&world).len();
    let down = world.down_body();
    let mut ids = Vec::new();
    for r in &replicas {
        let v: Value = post_kuma(&r.base, &down).await.json().await.unwrap();
        ids.push(v["incident_id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "one incident: {ids:?}");
    let id = ids[0].clone();
    assert_eq!(wait_state(&url, &id, &["resolved"], 40).await, "resolved");
    assert!(world.nginx.is_up());
    assert_eq!(calls(&world)[seen..], ["start"], "medic ran it once");
    let actions = pg(&url, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", vec![Sql::Text(id.clone())]).await;
    assert_eq!(text(&actions[0][0]), "1");
    assert_eq!(world.llm.requests("ollama_chat").len(), 1, "level 1 was asked once");
    world.up().await;
    post_kuma(&replicas[1].base, &world.up_body()).await;

    // 3. An approval link from the replica that asked, decided on another replica.
    world.nginx.stop();
    world.l1_says("nginx needs a restart", 0.92, Some(&format!("{control} restart")));
    let seen = calls(&world).len();
    let v: Value = post_kuma(&replicas[2].base, &down_of(&world, 3)).await.json().await.unwrap();
    let id = v["incident_id"].as_str().unwrap().to_string();
    wait_state(&url, &id, &["awaiting_approval"], 30).await;
    let mail = world.smtp().wait_for("Approval needed: admin-nginx", 20).await;
    let link = approval_link(&mail);
    let issuer = replicas.iter().position(|r| link.starts_with(&r.base)).expect("the link names a replica");
    let other = &replicas[(issuer + 1) % 3];
    let moved = format!("{}{}", other.base, &link[replicas[issuer].base.len()..]);
    let client = reqwest::Client::new();
    let page = client.get(&moved).send().await.unwrap();
    assert_eq!(page.status(), 200, "{moved}");
    let fields = form_fields(&page.text().await.unwrap());
    let mut form = vec![("decision", "approve".to_string()), ("reason", "on another replica".to_string())];
    for key in ["csrf", "incident_id", "command_hash"] {
        form.push((key, fields.get(key).cloned().unwrap_or_default()));
    }
    let decided = client.post(&moved).form(&form).send().await.unwrap();
    assert!(decided.status().is_success(), "{}", decided.text().await.unwrap());
    assert_eq!(wait_state(&url, &id, &["resolved"], 40).await, "resolved");
    // `restart` calls the script again for `stop` and `start`.
    assert_eq!(calls(&world)[seen..], ["restart", "stop", "start"], "the approved fix ran once");
    post_kuma(&replicas[0].base, &world.up_body()).await;

    // 4. kill -9 of the replica holding an execution's lease: another one resumes it at verification.
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&format!("{control} slowstart")));
    let seen = calls(&world).len();
    let v: Value = post_kuma(&replicas[0].base, &slow_down_body(&world)).await.json().await.unwrap();
    let id = v["incident_id"].as_str().unwrap().to_string();
    wait_state(&url, &id, &["executing"], 30).await;
    let holder = pg(&url, "SELECT owner FROM leases WHERE incident_id = ?1", vec![Sql::Text(id.clone())]).await;
    let holder = text(&holder[0][0]);
    let victim = replicas.iter().position(|r| r.name == holder).expect("a replica holds the lease");
    let killed_at = tokio::time::Instant::now();
    replicas[victim].process.kill9();
    replicas[victim].process.wait().await;
    let end = wait_state(&url, &id, &["resolved", "escalated"], 40).await;
    let failover = killed_at.elapsed();
    let timeline =
        pg(&url, "SELECT message FROM timeline WHERE incident_id = ?1 ORDER BY id", vec![Sql::Text(id.clone())]).await;
    let timeline: Vec<String> = timeline.iter().map(|r| text(&r[0])).collect();
    assert!(timeline.iter().any(|m| m.contains("resumed after restart")), "resumed at verification: {timeline:?}");
    let ran: Vec<String> = calls(&world)[seen..].to_vec();
    assert_eq!(ran.iter().filter(|c| *c == "slowstart").count(), 1, "ran once: {ran:?}");
    let actions = pg(&url, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", vec![Sql::Text(id.clone())]).await;
    assert_eq!(text(&actions[0][0]), "1", "one execution recorded ({end})");
    let resumed_by = pg(
        &url,
        "SELECT COUNT(*) FROM leases WHERE incident_id = ?1 AND owner = ?2",
        vec![Sql::Text(id.clone()), Sql::Text(holder.clone())],
    )
    .await;
    assert_eq!(text(&resumed_by[0][0]), "0", "the dead replica's lease was taken over or released");
    eprintln!("failover after kill -9: {failover:?} (lease 3s), ended {end}");

    // The outbox sent each message once across the three replicas (claims before delivery): one FYI
    // for the automatic fix, one approval request, one confirmation, however many replicas ran senders.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects: Vec<String> = world.smtp().mails().iter().map(|m| m.subject.clone()).collect();
    for needle in ["Fixed automatically: nginx", "Approval needed: admin-nginx", "Approved fix result: admin-nginx"] {
        assert_eq!(subjects.iter().filter(|s| s.contains(needle)).count(), 1, "{needle}: {subjects:?}");
    }

    // 5. One audit chain, verified by `medic audit verify` from any replica's config.
    let survivor = (victim + 1) % 3;
    let out = std::process::Command::new(medic_bin())
        .arg("--config")
        .arg(dirs[survivor].path().join("medic.toml"))
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("audit chain OK"), "{said}");
    let writers = pg(&url, "SELECT COUNT(*) FROM audit", vec![]).await;
    assert!(text(&writers[0][0]).parse::<u64>().unwrap() > 50);
    for (i, r) in replicas.iter_mut().enumerate() {
        if i != victim {
            r.process.kill9();
            r.process.wait().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_copies_a_sqlite_installation_into_postgres_with_its_audit_chain() {
    // A SQLite installation with incidents, events and audit rows.
    let app = crate::helpers::TestApp::spawn_with(|s| s.store.url = String::new()).await;
    let fixture = |name: &str| serde_json::from_str::<Value>(&std::fs::read_to_string(kuma(name)).unwrap()).unwrap();
    let opened: Value = app.post_kuma_json(&fixture("down_json.json")).await.json().await.unwrap();
    let id = opened["incident_id"].as_str().unwrap().to_string();
    app.wait_incident(&id, 10, |i| i["state"] == "escalated").await;
    assert_eq!(app.post_kuma_json(&fixture("up_json.json")).await.status(), 202);
    let rows = app.store.audit_rows_blocking().unwrap().len();
    let dir = app.stop().await;
    let data = dir.path().to_path_buf();

    let url = crate::postgres::database();
    let run = |from: String, to: String| {
        std::process::Command::new(medic_bin())
            .args(["store", "migrate", "--from", &from, "--to", &to])
            .output()
            .unwrap()
    };
    let out = run(format!("sqlite:{}", data.join("medic.db").display()), url.clone());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("{rows} events")) && said.contains("MACs"), "{said}");
    // Into a database that holds data already: refused, nothing changes.
    let again = run(format!("sqlite:{}", data.join("medic.db").display()), url.clone());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));

    // medic on PostgreSQL, with the installation's secrets, reads the copy and carries the chain on.
    let mut settings = crate::helpers::test_settings(&data);
    settings.store.url = url.clone();
    let app = crate::helpers::TestApp::spawn_in(dir, settings).await;
    let incident = app.incident(&id).await;
    assert_eq!(incident["state"], "recovered_by_monitor", "{incident}");
    assert!(app.store.audit_rows_blocking().unwrap().len() >= rows);
    assert!(medic::audit::verify(app.store.audit_rows_blocking().unwrap()).is_ok());
    let reopened: Value = app.post_kuma_json(&fixture("down_json.json")).await.json().await.unwrap();
    assert_ne!(reopened["incident_id"].as_str().unwrap(), id, "a new incident: ids continue after the copy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_cold_memory_index_rebuilds_it_from_the_shared_database() {
    use medic::memory::{Memory, MemoryConfig, SearchFilter, mirror};
    let url = crate::postgres::database();
    let open = |dir: &Path| {
        let config = medic::store::StoreConfig { url: url.clone(), data_dir: dir.to_path_buf(), ..Default::default() };
        medic::store::Store::open(&config).unwrap()
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_store, b_store) = (open(a_dir.path()), open(b_dir.path()));
    // Replica A remembers 32 fixes (its embedded index, and the shared table).
    let a = Memory::open(&MemoryConfig::default(), a_dir.path()).await.unwrap().mirrored(a_store.clone());
    let fixes = std::fs::read_to_string(crate::helpers::fixture_path("memory/past_incidents.jsonl")).unwrap();
    assert_eq!(a.import(&fixes).await.unwrap(), 32);
    // Replica B starts with an empty index and catches up from the database.
    let b = Memory::open(&MemoryConfig::default(), b_dir.path()).await.unwrap().mirrored(b_store.clone());
    assert_eq!(b.count().await.unwrap(), 0);
    let (changed, since) = mirror::sync(&b, &b_store, None).await.unwrap();
    assert_eq!((changed, b.count().await.unwrap()), (32, 32));
    let filter = SearchFilter { service: Some("docker".into()), include_negatives: false };
    let hits = b.search("Cannot connect to the Docker daemon", &filter, 1).await.unwrap();
    assert_eq!(hits[0].entry.command, "systemctl restart docker");
    // A forgets one and demotes another: B follows.
    let all = a.all().await.unwrap();
    assert!(a.delete(all[0].id).await.unwrap());
    assert!(a.demote(all[1].id, "failed verification").await.unwrap());
    let (changed, _) = mirror::sync(&b, &b_store, since).await.unwrap();
    assert_eq!(changed, 2);
    assert_eq!(b.count().await.unwrap(), 31);
    assert_eq!(b.get(all[1].id).await.unwrap().unwrap().outcome, medic::memory::Outcome::Failed);
    a_store.close().await;
    b_store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_costs_503s_while_it_is_down_and_medic_carries_on_after() {
    let mut cluster = crate::postgres::OwnCluster::start();
    let url = cluster.url();
    let app = crate::helpers::TestApp::spawn_with(|s| s.store.url = url.clone()).await;
    let template: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    let send = |monitor: u32| {
        let mut body = template.clone();
        body["monitor"]["id"] = json!(monitor);
        body["monitor"]["url"] = json!("http://nowhere.invalid/");
        let (client, url) = (app.client.clone(), app.url("/hooks/uptime-kuma"));
        async move { client.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap() }
    };
    assert_eq!(send(1).await.status(), 202);

    cluster.stop();
    let refused = send(2).await;
    assert_eq!(refused.status(), 503, "nothing stored, the sender retries");
    assert!(refused.headers().contains_key("retry-after"));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    cluster.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = send(2).await;
        if r.status() == 202 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(tokio::time::Instant::now() < deadline, "medic never wrote to the restarted database");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let monitors = pg(&url, "SELECT monitor_id FROM incidents ORDER BY opened_at", vec![]).await;
    let monitors: Vec<String> = monitors.iter().map(|r| text(&r[0])).collect();
    assert_eq!(monitors, ["1", "2"]);
    assert!(medic::audit::verify(app.store.audit_rows_blocking().unwrap()).is_ok());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_when_incidents_race_for_it() {
    // One automatic action per service and hour; two monitors of the same nginx go down at once.
    let world = World::start(Options { l2: false, max_actions_per_service: 1, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("nginx is stopped", 0.92, Some(&world.start_command()));
    world.l1_says("nginx is stopped", 0.92, Some(&world.start_command()));
    let mut second = world.down_body();
    second["monitor"]["id"] = json!(2);
    second["monitor"]["name"] = json!("nginx");
    let first = world.down_body();
    let (a, b) = tokio::join!(world.app.post_kuma_json(&first), world.app.post_kuma_json(&second));
    let mut ids = Vec::new();
    for r in [a, b] {
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["incident_id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    let mut ends = Vec::new();
    for id in &ids {
        let i = world
            .app
            .wait_incident(id, 40, |i| {
                ["resolved", "awaiting_approval", "escalated"].contains(&i["state"].as_str().unwrap())
            })
            .await;
        ends.push(i["state"].as_str().unwrap().to_string());
    }
    let history =
        world.app.store.action_history("web1".into(), chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    let automatic = history.iter().filter(|a| a.automatic).count();
    assert_eq!(automatic, 1, "one automatic action within the limit: {history:?} (ends {ends:?})");
    assert!(ends.contains(&"resolved".to_string()), "{ends:?}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_checks_the_servers_certificate_against_store_ca_file() {
    // PostgreSQL with TLS on, its certificate (for 127.0.0.1) signed by a test CA.
    let cluster = crate::postgres::OwnCluster::start_with(|d| {
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=medic-test-ca -keyout ca.key -out ca.pem",
            "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr",
            "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out cert.pem -extfile ext.cnf",
        ] {
            let made = std::process::Command::new("openssl").args(args.split(' ')).current_dir(d).output().unwrap();
            assert!(made.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&made.stderr));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
        [
            "ssl=on".to_string(),
            format!("ssl_cert_file={}/cert.pem", d.display()),
            format!("ssl_key_file={}/key.pem", d.display()),
        ]
        .into_iter()
        .flat_map(|s| ["-c".to_string(), s])
        .collect()
    });
    let url = format!("{}?sslmode=require", cluster.url());
    let ca = cluster.dir.join("ca.pem");
    let (u, c) = (url.clone(), ca.clone());
    let (refused, over_tls) = tokio::task::spawn_blocking(move || {
        // The public roots alone do not know the test CA: refused, saying why.
        let refused = Connection::open_postgres(&u).err().expect("an unknown issuer is refused").to_string();
        let conn = Connection::open_postgres_with(&u, Some(&c)).unwrap();
        let ssl: bool =
            conn.query_row("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", [], |r| r.get(0)).unwrap();
        (refused, ssl)
    })
    .await
    .unwrap();
    assert!(refused.to_lowercase().contains("certificate") || refused.contains("UnknownIssuer"), "{refused}");
    assert!(over_tls, "the session is encrypted");
    // medic itself, with store.ca_file.
    let app = crate::helpers::TestApp::spawn_with(|s| {
        s.store.url = url.clone();
        s.store.ca_file = Some(ca.clone());
    })
    .await;
    let body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
    assert_eq!(app.post_kuma_json(&body).await.status(), 202);
    app.stop().await;
}
