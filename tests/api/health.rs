//! Host health over the real test sshd: /proc and df read through the gate's diagnostics, samples stored,
//! thresholds raising a warning (a notice) and a critical alert (an incident), and the API.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::TOKEN;
use crate::world::{Options, World};

const RULES: &str = r#"{
  "safe_commands": {
    "nginx_control": { "mode": "auto", "allowed": ["{control} start"] },
    "blocked_patterns": ["rm -rf"]
  },
  "placeholders": { "service": { "allowed": ["nginx"] }, "lines": { "range": [1, 5000] } },
  "diagnostics": { "allowed": ["uptime", "df -h", "cat /proc/stat", "cat /proc/meminfo", "cat /proc/loadavg",
                               "cat /proc/uptime", "df -P -k", "docker ps -a --no-trunc --format json",
                               "docker stats --no-stream --format json"] }
}"#;

async fn get(world: &World, path: &str) -> Value {
    let r = world.app.client.get(world.app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_health_is_read_over_ssh_and_thresholds_warn_and_open_an_incident() {
    let world = World::start(Options {
        l1: false,
        l2: false,
        rules: Some(RULES.to_string()),
        tweak: Some(|s, _| {
            crate::console::with_operator(s);
            s.health.interval = Duration::from_secs(1);
            s.health.for_ = Duration::ZERO;
            // Any memory use is a warning here; any used disk is critical.
            s.health.memory = medic::health::Levels { warning: 0.1, critical: 100.0 };
            s.health.disk = medic::health::Levels { warning: 0.1, critical: 0.1 };
        }),
        ..Options::default()
    })
    .await;

    // Two samples: the second has a CPU percentage (a difference of /proc/stat readings).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let host = loop {
        let hosts = get(&world, "/api/v1/hosts").await;
        let h = hosts.as_array().unwrap().iter().find(|h| h["name"] == "web1").unwrap().clone();
        if h["last_sample"]["cpu_percent"].is_number() || std::time::Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let sample = &host["last_sample"];
    assert_eq!(sample["reachable"], true, "{host}");
    let cpu = sample["cpu_percent"].as_f64().unwrap_or_else(|| panic!("{host}"));
    assert!((0.0..=100.0).contains(&cpu));
    assert!(sample["memory"]["total_kb"].as_u64().unwrap() > 0);
    assert!(sample["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(sample["load"].as_array().unwrap().len(), 3);
    let disks = sample["disks"].as_array().unwrap();
    assert!(disks.iter().any(|d| d["mount"] == "/"), "{disks:?}");
    assert_eq!(host["state"], "critical", "{host}");

    // The alerts: memory warning, disk critical.
    let alerts = get(&world, "/api/v1/alerts").await;
    let hosts = alerts["hosts"].as_array().unwrap();
    assert!(hosts.iter().any(|a| a["metric"] == "memory" && a["level"] == "warning"), "{alerts}");
    assert!(hosts.iter().any(|a| a["metric"] == "disk:/" && a["level"] == "critical"), "{alerts}");

    // The warning went out as a notice; the critical one opened an incident with the metric in it.
    let events = world.app.store.audit_events(None, None).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "notice_recorded" && e.details.to_string().contains("web1 memory is warning")),
        "a warning notice"
    );
    let incidents = world.app.incidents("").await;
    let disk = incidents.iter().find(|i| i["monitor_id"] == "host/web1/disk:/").expect("a disk incident");
    assert_eq!(disk["source"], "probe");
    assert!(disk["error_logs"].as_str().unwrap().contains("disk:/ is critical"), "{disk}");
    assert_eq!(
        incidents.iter().filter(|i| i["monitor_id"] == "host/web1/disk:/").count(),
        1,
        "one incident, not one per sample"
    );

    // History at two resolutions.
    let detail = get(&world, "/api/v1/hosts/web1?resolution=raw&hours=1").await;
    assert!(detail["history"].as_array().unwrap().len() >= 2, "{detail}");
    let hourly = get(&world, "/api/v1/hosts/web1?resolution=1h").await;
    assert_eq!(hourly["history"].as_array().unwrap().len(), 1, "one hour bucket: {hourly}");
    // Every answer matches the OpenAPI description.
    let doc = get(&world, "/api/openapi.json").await;
    crate::openapi::assert_valid(&doc, "/api/v1/hosts", "get", "200", &get(&world, "/api/v1/hosts").await);
    crate::openapi::assert_valid(&doc, "/api/v1/hosts/{name}", "get", "200", &detail);
    crate::openapi::assert_valid(&doc, "/api/v1/alerts", "get", "200", &alerts);
    // The console's host card, in a real browser.
    let browser = crate::browser::Browser::start().await;
    crate::console_browser::log_in(&browser, &world.app.base, "/ui/hosts").await;
    assert_eq!(browser.text("#host-web1 h2 .state").await, "critical");
    assert!(browser.source().await.contains("disk:/ is critical"));
    browser.screenshot("console-hosts-health.png").await;
    browser.goto(&format!("{}/ui/", world.app.base)).await;
    assert!(browser.text("#alerts").await.contains("disk:/ is critical"), "the overview lists active alerts");

    // The daily report, on request, through the real SMTP server: host trends with inline charts.
    let r = world.app.client.post(world.app.url("/api/v1/report")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let report: Value = r.json().await.unwrap();
    crate::openapi::assert_valid(&doc, "/api/v1/report", "post", "202", &report);
    let mail = world.smtp().wait_for("Daily digest", 15).await;
    assert!(mail.text.contains("Hosts, last 24 h") && mail.text.contains("web1: CPU"), "{}", mail.text);
    assert!(mail.html.contains("<svg") && mail.html.contains("web1"), "{}", mail.html);
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("daily-report.html");
    std::fs::write(&file, &mail.html).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    assert!(browser.text("#hosts").await.contains("web1"));
    browser.screenshot("daily-report.png").await;
    let bad = world
        .app
        .client
        .get(world.app.url("/api/v1/hosts/web1?resolution=2d"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = world.app.client.get(world.app.url("/api/v1/hosts/nope")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    world.app.stop().await;
}

/// The small filesystem of the disk scenario (a 2 MB tmpfs; this test only).
const DISK: &str = "/tmp/medic-disk-scenario";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_found_by_health_cleaned_by_the_approved_script_and_verified() {
    // The filesystem: 2 MB, nearly filled by an old rotated nginx log.
    let _ = std::process::Command::new("umount").arg(DISK).status();
    std::fs::create_dir_all(DISK).unwrap();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs", DISK]).output().unwrap();
    assert!(mounted.status.success(), "mount a tmpfs (root): {}", String::from_utf8_lossy(&mounted.stderr));
    std::fs::create_dir_all(format!("{DISK}/nginx")).unwrap();
    let archive = format!("{DISK}/nginx/access.log.1");
    std::fs::write(&archive, vec![b'x'; 2000 * 1024]).unwrap();
    let ten_days_ago = std::time::SystemTime::now() - Duration::from_secs(10 * 86400);
    std::fs::File::options().write(true).open(&archive).unwrap().set_modified(ten_days_ago).unwrap();
    // The host's scripts where the gate's templates name them.
    std::fs::create_dir_all("/usr/local/lib/medic").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/clean_logs.sh");
    std::fs::copy(&script, "/usr/local/lib/medic/clean_logs.sh").unwrap();

    let world = World::start(Options {
        l1: false,
        l2: false,
        decisions: true,
        ssh_env: "MEDIC_LOG_ROOT=/tmp/medic-disk-scenario",
        rules: Some(DISK_RULES.to_string()),
        tweak: Some(|s, _| {
            s.health.interval = Duration::from_secs(1);
            s.health.for_ = Duration::ZERO;
            s.health.cpu = medic::health::Levels { warning: 100.0, critical: 100.0 };
            s.health.memory = medic::health::Levels { warning: 100.0, critical: 100.0 };
            s.health.disk = medic::health::Levels { warning: 100.0, critical: 100.0 };
            s.health.overrides = vec![medic::health::Override {
                host: "web1".into(),
                metric: format!("disk:{DISK}"),
                warning: 50.0,
                critical: 80.0,
            }];
            s.verify.deadline = Duration::from_secs(20);
        }),
        ..Options::default()
    })
    .await;

    // Health finds the disk critical and opens an incident; the evidence checks see it full, veto any
    // restart and offer the cleanup script, which the allow-list puts behind a human.
    let monitor = format!("host/web1/disk:{DISK}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let id = loop {
        let incidents = world.app.incidents("").await;
        if let Some(i) = incidents.iter().find(|i| i["monitor_id"] == monitor.as_str()) {
            break i["incident_id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no disk incident: {incidents:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    world.wait_state(&id, "awaiting_approval", 30).await;
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    assert!(mail.text.contains("/usr/local/lib/medic/clean_logs.sh nginx"), "{}", mail.text);

    // A human approves; the script runs over SSH, frees the space; health sees the disk back to normal.
    let link = crate::smtp::approval_link(&mail);
    let fields = world.confirm_fields(&link).await;
    let form: Vec<(String, String)> =
        fields.into_iter().chain([("decision".to_string(), "approve".to_string())]).collect();
    let (status, page) = world.post_form(&link, &form).await;
    assert_eq!(status, 200, "{page}");
    let incident = world.wait_state(&id, "resolved", 40).await;
    assert!(!std::path::Path::new(&archive).exists(), "the old archive was removed");
    let text = incident.to_string();
    assert!(text.contains("clean_logs.sh nginx") && text.contains("removed 1 rotated file"), "{text}");
    world.app.stop().await;
    let _ = std::process::Command::new("umount").arg(DISK).status();
}

const DISK_RULES: &str = r#"{
  "safe_commands": {
    "maintenance_scripts": { "mode": "approval", "allowed": ["/usr/local/lib/medic/clean_logs.sh {service}"] },
    "blocked_patterns": ["rm -rf"]
  },
  "placeholders": { "service": { "allowed": ["nginx"] }, "lines": { "range": [1, 5000] } },
  "diagnostics": { "allowed": ["df -h", "uptime", "cat /proc/stat", "cat /proc/meminfo", "cat /proc/loadavg",
                               "cat /proc/uptime", "df -P -k"] }
}"#;

#[tokio::test]
async fn host_history_rolls_up_and_keeps_every_sample_counted() {
    use chrono::{DurationRound, Utc};
    let app = crate::helpers::TestApp::spawn().await;
    let now = Utc::now().duration_trunc(chrono::Duration::minutes(10)).unwrap();
    let n = 10 * 24 * 6;
    app.store
        .write(move |ctx| {
            for k in 0..n {
                let at = now - chrono::Duration::minutes(10 * k);
                ctx.conn().execute(
                    "INSERT INTO host_samples (host, at, reachable, cpu, memory, disk_max, load1, sample_json)
                     VALUES ('web1', ?1, 1, 50.0, 40.0, ?2, 1.0, '{}')",
                    medic::store::db::params![medic::audit::format_time(at), if k == 500 { 99.0 } else { 60.0 }],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let config = medic::health::HealthConfig::default();
    for _ in 0..2 {
        // Twice: the second pass changes nothing.
        app.store.roll_up_hosts(&config, now).await.unwrap();
    }
    let since = now - chrono::Duration::days(11);
    let raw = app.store.host_history("web1".into(), since, 0).await.unwrap();
    assert!(raw.len() <= 2 * 24 * 6 + 1, "raw kept 2 days: {}", raw.len());
    let hourly = app.store.host_history("web1".into(), since, 3600).await.unwrap();
    let counted: u64 = hourly.iter().map(|p| p.samples).sum();
    assert_eq!(counted, n as u64, "every sample is in exactly one point");
    assert!(hourly.iter().all(|p| (p.cpu_percent.unwrap() - 50.0).abs() < 1e-9), "averages survive the roll-up");
    assert_eq!(
        hourly.iter().filter(|p| p.disk_max_percent == Some(99.0)).count(),
        1,
        "a peak survives as the bucket's maximum"
    );
    let five = app.store.host_history("web1".into(), now - chrono::Duration::days(6), 300).await.unwrap();
    assert!(five.iter().all(|p| p.samples >= 1 && p.samples <= 2), "5-minute points hold one or two 10-minute samples");
    // Past the hourly retention nothing is left.
    app.store.roll_up_hosts(&config, now + chrono::Duration::days(200)).await.unwrap();
    assert!(app.store.host_history("web1".into(), since, 3600).await.unwrap().is_empty());
    app.stop().await;
}
