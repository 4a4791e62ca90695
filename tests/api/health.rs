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
