//! medic's own probes against the real test nginx: UP, DOWN opening an incident that the pipeline heals
//! over the real sshd, RECOVERY, SLOW through nginx's `limit_rate`, a TCP probe, the API and the console.

use std::time::Duration;

use medic::config::Settings;
use medic::probe::ProbeConfig;
use serde_json::Value;

use crate::helpers::TOKEN;
use crate::world::{Options, World};

/// The test nginx's port, read from the config next to its control script (a `tweak` is a plain fn).
fn nginx_port(control: &str) -> u16 {
    let dir = std::path::Path::new(control).parent().unwrap().parent().unwrap();
    let conf = std::fs::read_to_string(dir.join("nginx.conf")).unwrap();
    let at = conf.find("listen 127.0.0.1:").unwrap() + "listen 127.0.0.1:".len();
    conf[at..].split(';').next().unwrap().parse().unwrap()
}

fn probes(settings: &mut Settings, control: &str) {
    crate::console::with_operator(settings);
    let port = nginx_port(control);
    let ssh_port = settings.inventory.hosts[0].port;
    let http = |name: &str, host: &str, path: &str| ProbeConfig {
        name: name.into(),
        url: format!("http://{host}:{port}{path}"),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        ..ProbeConfig::default()
    };
    settings.probes = vec![
        ProbeConfig {
            service: "nginx".into(),
            host: "web1".into(),
            recover: 1,
            retries: 1,
            ..http("web", "127.0.0.1", "/health")
        },
        // Named by another host name, so no inventory host matches it: its own DOWN (when nginx stops
        // below) asks a human and changes nothing.
        ProbeConfig {
            slow: Duration::from_millis(400),
            retries: 0,
            severity: "low".into(),
            ..http("slowpage", "localhost", "/slow")
        },
        ProbeConfig {
            name: "ssh".into(),
            kind: "tcp".into(),
            address: format!("127.0.0.1:{ssh_port}"),
            interval: Duration::from_secs(1),
            ..ProbeConfig::default()
        },
    ];
}

async fn probe_views(world: &World) -> Vec<Value> {
    let r = world.app.client.get(world.app.url("/api/v1/probes")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn wait_probe(world: &World, name: &str, state: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let views = probe_views(world).await;
        let view = views.iter().find(|v| v["name"] == name).unwrap().clone();
        if view["state"] == state || std::time::Instant::now() > deadline {
            assert_eq!(view["state"], state, "{view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_sees_nginx_go_down_medic_heals_it_and_the_probe_sees_the_recovery() {
    let world = World::start(Options {
        l2: false,
        decisions: true,
        rules: Some(crate::model_front::RULES.to_string()),
        tweak: Some(probes),
        ..Options::default()
    })
    .await;
    world.nginx.start();
    wait_probe(&world, "web", "up", 10).await;
    wait_probe(&world, "ssh", "up", 10).await;

    // A body that trickles in at 100 bytes/s: SLOW (a warning), not DOWN, and no incident.
    let slow = wait_probe(&world, "slowpage", "slow", 15).await;
    assert!(slow["last_latency_ms"].as_f64().unwrap() > 400.0, "{slow}");

    // nginx stops: two failed checks in a row are DOWN; the incident comes from the probe and is healed.
    world.nginx.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let incident = loop {
        let list = world.app.incidents("").await;
        if let Some(i) = list.iter().find(|i| i["source"] == "probe" && i["monitor_id"] == "web") {
            break i.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no incident from the probe: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = incident["incident_id"].as_str().unwrap().to_string();
    assert!(incident["error_logs"].as_str().unwrap().contains("probe web DOWN"), "{incident}");
    world.wait_state(&id, "resolved", 40).await;
    assert!(world.nginx.is_up(), "medic restarted nginx through the gate");
    let view = wait_probe(&world, "web", "up", 15).await;
    let uptime = view["last_24h"]["uptime_percent"].as_f64().unwrap();
    assert!(uptime < 100.0 && uptime > 0.0, "the outage counts against uptime: {view}");
    assert_eq!(view["hourly_uptime"].as_array().unwrap().len(), 24);
    let doc: Value =
        world.app.client.get(world.app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    crate::openapi::assert_valid(&doc, "/api/v1/probes", "get", "200", &Value::Array(probe_views(&world).await));

    // The history shows DOWN and the RECOVERY sample; only one incident was opened for the outage.
    let states: Vec<String> = world
        .app
        .store
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT state FROM probe_samples WHERE probe = 'web' ORDER BY at")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    assert!(states.contains(&"down".to_string()) && states.contains(&"recovery".to_string()), "{states:?}");
    let incidents = world.app.incidents("").await;
    let count =
        |monitor: &str| incidents.iter().filter(|i| i["source"] == "probe" && i["monitor_id"] == monitor).count();
    assert_eq!(count("web"), 1, "one incident for one outage");
    assert_eq!(count("ssh"), 0, "the TCP probe stayed up");
    let events = world.app.store.audit_events(None, None).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "notice_recorded" && e.details.to_string().contains("slowpage SLOW")),
        "the SLOW warning was recorded"
    );
    // The console's probes page.
    let browser = crate::browser::Browser::start().await;
    crate::console_browser::log_in(&browser, &world.app.base, "/ui/probes").await;
    assert_eq!(browser.text("#probe-web td:nth-child(2)").await, "up");
    assert!(browser.source().await.contains("uptime per hour"), "the uptime bars are drawn");
    browser.screenshot("console-probes.png").await;
    world.app.stop().await;
}

#[tokio::test]
async fn probe_history_rolls_up_into_buckets_without_changing_uptime() {
    use chrono::{DurationRound, Utc};
    let app = crate::helpers::TestApp::spawn().await;
    let now = Utc::now().duration_trunc(chrono::Duration::minutes(10)).unwrap();
    // Ten days of a check every 10 minutes; one failing hour five days ago.
    let failing_from = now - chrono::Duration::days(5);
    let failing_to = failing_from + chrono::Duration::hours(1);
    app.store
        .write(move |ctx| {
            for k in 0..(10 * 24 * 6) {
                let at = now - chrono::Duration::minutes(10 * k);
                let ok = !(at >= failing_from && at < failing_to);
                ctx.conn().execute(
                    "INSERT INTO probe_samples (probe, at, ok, latency_ms, state, detail) VALUES ('p', ?1, ?2, ?3, 'up', '')",
                    medic::store::db::params![medic::audit::format_time(at), ok, 10.0 + (k % 7) as f64],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let week = now - chrono::Duration::days(7);
    let before = app.store.probe_uptime("p".into(), week).await.unwrap();
    // Seven days of checks, both ends included.
    assert_eq!(before.samples, 7 * 24 * 6 + 1);
    let expected = 100.0 * (7.0 * 24.0 * 6.0 + 1.0 - 6.0) / (7.0 * 24.0 * 6.0 + 1.0);
    assert!((before.uptime_percent.unwrap() - expected).abs() < 1e-9, "{before:?}");

    let settings = medic::probe::ProbeSettings::default();
    app.store.roll_up_probes_at(&settings, now).await.unwrap();
    let counts = app
        .store
        .read(|conn| {
            let n = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok((
                n("SELECT COUNT(*) FROM probe_samples")?,
                n("SELECT COUNT(*) FROM probe_rollups WHERE resolution = 300")?,
                n("SELECT COUNT(*) FROM probe_rollups WHERE resolution = 3600")?,
                n("SELECT COALESCE(SUM(samples), 0) FROM probe_rollups")?,
            ))
        })
        .await
        .unwrap();
    let (raw, five, hourly, in_buckets) = counts;
    assert!(raw <= 2 * 24 * 6 + 1, "raw samples kept for 2 days only: {raw}");
    assert!(five > 0 && hourly > 0, "{five} {hourly}");
    assert_eq!(raw + in_buckets, 10 * 24 * 6, "no sample lost or counted twice");
    let after = app.store.probe_uptime("p".into(), week).await.unwrap();
    assert_eq!(after.samples, before.samples, "{after:?}");
    assert!((after.uptime_percent.unwrap() - expected).abs() < 1e-9, "{after:?}");
    assert!(after.latency_p95_ms.unwrap() >= after.latency_p50_ms.unwrap());

    // Again at the same time: nothing changes (no double counting).
    app.store.roll_up_probes_at(&settings, now).await.unwrap();
    let again = app.store.probe_uptime("p".into(), week).await.unwrap();
    assert_eq!(again.samples, before.samples);
    // Past the hourly retention everything goes.
    app.store.roll_up_probes_at(&settings, now + chrono::Duration::days(200)).await.unwrap();
    let gone = app.store.probe_uptime("p".into(), week).await.unwrap();
    assert_eq!(gone.samples, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_probe_warns_once_when_the_certificate_expires_soon() {
    // A real nginx serving TLS with a certificate valid for 5 more days, signed by a test CA.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=medic-test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 5 -out cert.pem -extfile ext.cnf",
    ] {
        let made = std::process::Command::new("openssl").args(args.split(' ')).current_dir(d).output().unwrap();
        assert!(made.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let port = crate::sshd::free_port();
    std::fs::create_dir_all(d.join("logs")).unwrap();
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    let p = d.display();
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "daemon on; worker_processes 1; pid {p}/nginx.pid; error_log {p}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {p}/tmp;\n\
               server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {p}/cert.pem; ssl_certificate_key {p}/key.pem;\n\
                 location / {{ return 200 \"ok\\n\"; }} }} }}\n"
        ),
    )
    .unwrap();
    let started = std::process::Command::new("/usr/sbin/nginx")
        .arg("-e")
        .arg(d.join("logs/error.log"))
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));

    let ca = d.join("ca.pem").display().to_string();
    let app = crate::helpers::TestApp::spawn_with(move |s| {
        s.probes = vec![ProbeConfig {
            name: "tls".into(),
            url: format!("https://localhost:{port}/"),
            interval: Duration::from_secs(1),
            ca_file: ca,
            cert_expiry_days: 14,
            ..ProbeConfig::default()
        }];
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let warnings = loop {
        let events = app.store.audit_events(None, None).await.unwrap();
        let warnings: Vec<_> = events
            .into_iter()
            .filter(|e| e.kind == "notice_recorded" && e.details.to_string().contains("certificate"))
            .collect();
        let samples = app.store.last_probe_sample("tls".into()).await.unwrap();
        if (!warnings.is_empty() && samples.is_some()) || std::time::Instant::now() > deadline {
            break warnings;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let last = app.store.last_probe_sample("tls".into()).await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?} {last:?}");
    let text = warnings[0].details.to_string();
    assert!(text.contains("expires in 4 days") || text.contains("expires in 5 days"), "{text}");
    // It keeps checking (up: the certificate is valid) and does not warn again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last = app.store.last_probe_sample("tls".into()).await.unwrap().unwrap();
    assert!(last.1, "the check passes: {last:?}");
    let events = app.store.audit_events(None, None).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "notice_recorded" && e.details.to_string().contains("certificate")).count(),
        1
    );
    app.stop().await;
    let pid = std::fs::read_to_string(d.join("nginx.pid")).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}
