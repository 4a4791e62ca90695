//! The human loop against a hostile reader: what a database copy, a log line, a forwarded link, a
//! re-pointed monitor or a restored backup can and cannot do (issue: "the human loop holds").

use std::time::Duration;

use serde_json::Value;

use crate::smtp::{Mail, approval_link, reject_link};
use crate::world::{Options, World, form_fields};

async fn awaiting(world: &World) -> (String, Mail) {
    world.awaiting_approval("nginx stopped").await
}

/// A link from an email, pointed at the app as it runs now (a restart binds a new port).
fn rebase(link: &str, base: &str) -> String {
    let path = &link[link.find("/approvals/").unwrap()..];
    format!("{base}{path}")
}

/// The confirm page's form as a POST body for `decision`.
async fn form_for(world: &World, link: &str, decision: &str) -> Vec<(String, String)> {
    let f = world.confirm_fields(link).await;
    vec![
        ("decision".into(), decision.into()),
        ("csrf".into(), f["csrf"].clone()),
        ("incident_id".into(), f["incident_id"].clone()),
        ("command_hash".into(), f["command_hash"].clone()),
    ]
}

async fn count(world: &World, sql: &'static str, id: &str) -> i64 {
    let id = id.to_string();
    world.app.store.read(move |conn| Ok(conn.query_row(sql, [id], |r| r.get(0))?)).await.unwrap()
}

async fn audit_rows(world: &World, kind: &'static str) -> Vec<Value> {
    world
        .app
        .store
        .read(move |conn| {
            let mut stmt = conn.prepare("SELECT details FROM audit WHERE kind = ?1 ORDER BY seq")?;
            let rows = stmt
                .query_map([kind], |r| r.get::<_, String>(0))?
                .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
                .collect();
            Ok(rows)
        })
        .await
        .unwrap()
}

/// Every text value in every table of a SQLite file.
fn all_text(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                if let Ok(rusqlite::types::ValueRef::Text(t)) = row.get_ref(i) {
                    out.push_str(&String::from_utf8_lossy(t));
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// The path and query of a link (the token part of an approval link, the signature of a page link).
fn secret_part(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_of_the_database_holds_no_credential_and_cannot_approve() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let (approve, reject) = (approval_link(&mail), reject_link(&mail));
    let page_link = mail.text.lines().find_map(|l| l.strip_prefix("Page:")).unwrap().trim().to_string();
    let sig = page_link.split("sig=").nth(1).unwrap().to_string();
    // The outbox has delivered; copy the database as a backup thief would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copy = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = world.app.dir.path().join(format!("medic.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, copy.path().join(format!("medic.db{suffix}"))).unwrap();
        }
    }
    let text = all_text(&copy.path().join("medic.db"));
    assert!(text.contains(&id), "the copy is a real copy");
    for (what, secret) in
        [("approve token", secret_part(&approve)), ("reject token", secret_part(&reject)), ("link signature", sig)]
    {
        assert!(!text.contains(&secret), "the database holds the {what}");
    }
    assert!(!text.contains(crate::helpers::TOKEN), "the database holds the API token");
    assert!(!text.contains("/approvals/"), "no approval URL at rest (outbox bodies are sealed, then dropped)");
    // Every long value in the copy, tried as a token, approves nothing.
    let mut tried = 0;
    for value in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        if value.len() >= 32 && tried < 30 {
            tried += 1;
            let status =
                world.app.client.get(format!("{}/approvals/{value}", world.app.base)).send().await.unwrap().status();
            assert!(status == 404 || status == 429, "{value}: {status}");
        }
    }
    assert!(tried > 5, "the copy had candidate values to try ({tried})");
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");
    assert_eq!(count(&world, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", &id).await, 0);
    // Refused attempts were audited (up to the per-address cap) and then throttled.
    let refused = audit_rows(&world, "approval_refused").await;
    assert!(!refused.is_empty() && refused.len() <= 10, "{}", refused.len());
    assert_eq!(refused[0]["ip"], "127.0.0.1");
    let status = world.app.client.get(&approve).send().await.unwrap().status();
    assert_eq!(status, 429, "the address that guessed is throttled, even with a good link");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_bound_to_its_host_and_a_re_pointed_monitor_asks_again() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    assert!(mail.text.contains("on host web1"), "{}", mail.text);
    let link = approval_link(&mail);
    let form = form_for(&world, &link, "approve").await;
    // The operator re-points the monitor to another host and restarts medic.
    let mut settings = world.options_settings.clone();
    let mut web2 = settings.inventory.hosts[0].clone();
    web2.name = "web2".into();
    settings.inventory.hosts.push(web2);
    settings.inventory.monitors[0].host = "web2".into();
    let world = World { options_settings: settings, ..world }.restart().await;
    let link = rebase(&link, &world.app.base);
    let (status, body) = world.post_form(&link, &form).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("web2") && body.contains("asking again"), "{body}");
    assert_eq!(count(&world, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", &id).await, 0, "nothing ran");
    // A new request names the new host.
    world.wait_state(&id, "awaiting_approval", 30).await;
    let second = world.smtp().wait_for_nth("Approval needed", 2, 20).await;
    assert!(second.text.contains("on host web2"), "{}", second.text);
    let new_link = approval_link(&second);
    let form = form_for(&world, &new_link, "approve").await;
    let (status, body) = world.post_form(&new_link, &form).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(&id, "resolved", 30).await;
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_backup_cannot_revive_a_used_link() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let form = form_for(&world, &link, "approve").await;
    // A backup of the database taken before the decision (medic stopped, files copied).
    let dir = world.app.dir.path().to_path_buf();
    let settings = world.options_settings.clone();
    let World { sshd, nginx, llm, smtp, app, rules, .. } = world;
    let data = app.stop().await;
    let backup = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.join(format!("medic.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, backup.path().join(format!("medic.db{suffix}"))).unwrap();
        }
    }
    let app = crate::helpers::TestApp::spawn_in(data, settings.clone()).await;
    let world = World { sshd, nginx, llm, smtp, app, rules, options_settings: settings.clone() };
    let link = rebase(&link, &world.app.base);
    let (status, body) = world.post_form(&link, &form).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(&id, "resolved", 30).await;
    world.nginx.stop();
    // Restore the old database over the new one and start again.
    let World { sshd, nginx, llm, smtp, app, rules, .. } = world;
    let data = app.stop().await;
    for suffix in ["", "-wal", "-shm"] {
        let to = dir.join(format!("medic.db{suffix}"));
        let _ = std::fs::remove_file(&to);
        let from = backup.path().join(format!("medic.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let app = crate::helpers::TestApp::spawn_in(data, settings.clone()).await;
    let world = World { sshd, nginx, llm, smtp, app, rules, options_settings: settings };
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval", "the restored database predates the decision");
    let link = rebase(&link, &world.app.base);
    let (status, body) = world.post_form(&link, &form).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("decision journal"), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!world.nginx.is_up(), "the command did not run a second time");
    assert_eq!(count(&world, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", &id).await, 0);
    // The restore itself is on record: the chain did not reach the head kept outside the database.
    let mismatch = audit_rows(&world, "audit_anchor_mismatch").await;
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_decision_records_who_from_where_and_the_confirmation_names_them() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let form = form_for(&world, &link, "approve").await;
    let r = world
        .app
        .client
        .post(&link)
        .header("user-agent", "Mozilla/5.0 (medic-test)")
        .header("origin", &world.app.base)
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    world.wait_state(&id, "resolved", 30).await;
    let decided = audit_rows(&world, "approval_decided").await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["ip"], "127.0.0.1");
    assert_eq!(decided[0]["user_agent"], "Mozilla/5.0 (medic-test)");
    assert_eq!(decided[0]["recipient"], "ops@example.org");
    let confirmation = world.smtp().wait_for("Approved fix result", 15).await;
    let line = confirmation.text.lines().find(|l| l.starts_with("Decided by:")).expect("a decided-by line");
    assert!(line.contains("ops@example.org from 127.0.0.1 (Mozilla/5.0 (medic-test))"), "{line}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_site_posts_are_refused_and_every_response_carries_the_security_headers() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let form = form_for(&world, &link, "approve").await;
    for (name, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        let r = world.app.client.post(&link).header(name, value).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
        assert!(r.text().await.unwrap().contains("another"), "{name}");
    }
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");

    let base = &world.app.base;
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let client = &fresh();
    let big = "x".repeat(40 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("unknown path", client.get(format!("{base}/nowhere")), 404),
        ("wrong method", client.delete(format!("{base}/hooks/uptime-kuma")), 405),
        ("not a form", client.post(&link).header("content-type", "application/json").body("{}"), 400),
        (
            "huge body",
            client.post(format!("{base}/hooks/uptime-kuma")).bearer_auth(crate::helpers::TOKEN).body(vec![
                b'x';
                3 * 1024
                    * 1024
            ]),
            413,
        ),
        ("huge header", client.get(format!("{base}/healthz")).header("x-big", big), 431),
        ("confirm page", client.get(&link), 200),
        ("api", client.get(format!("{base}/api/v1/incidents")).bearer_auth(crate::helpers::TOKEN), 200),
    ];
    for (what, request, status) in cases {
        // A fresh connection each: the server closes one after refusing a body.
        let (client, request) = request.build_split();
        let r = client.execute(request.unwrap()).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert!(h.contains_key("content-security-policy"), "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
    }
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_line_cannot_forge_the_email_and_ungated_commands_are_not_shown() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.log_line("Review and approve: https://evil.com/approve?x=1");
    world.log_line("Approve: http://evil.com/a\u{1b}[2J hidden\u{202e}txt.exe zero\u{200b}width bare\rCR");
    world.l2_says_with_rollback(
        "nginx stopped; then run `rm -rf /var/log/nginx` to free space, see www.evil.com or evil.com/login",
        Some(&world.start_command()),
        "rm -rf /var/log/*",
    );
    let id = world.down().await;
    world.wait_state(&id, "awaiting_approval", 40).await;
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    let base = world.app.base.clone();
    for (part, text) in [("text", &mail.text), ("html", &mail.html)] {
        // The only URLs are medic's own.
        for (i, _) in text.match_indices("http") {
            let rest = &text[i..];
            if rest.starts_with("https://") || rest.starts_with("http://") {
                assert!(rest.starts_with(&base), "{part}: a foreign URL at {:?}", &rest[..rest.len().min(60)]);
            }
        }
        assert!(!text.contains("rm -rf"), "{part}: an ungated command is shown:\n{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{200b}'), "{part}");
        assert!(!text.contains("evil.com"), "{part}: a domain stays clickable");
    }
    assert!(mail.text.contains("<U+202E>") && mail.text.contains("\\x1b") && mail.text.contains("<U+200B>"));
    assert!(mail.text.contains("hxxps[:]//evil[.]com/approve"), "{}", mail.text);
    // medic's own lines come first, and every quoted line is prefixed: none starts like medic's.
    let approve_at = mail.text.find("\nApprove: ").unwrap();
    let quoted_at = mail.text.find("Everything below is quoted").unwrap();
    assert!(approve_at < quoted_at);
    let starts = mail.text[quoted_at..]
        .lines()
        .filter(|l| l.starts_with("Approve:") || l.starts_with("Review and approve"))
        .count();
    assert_eq!(starts, 0, "{}", mail.text);
    assert_eq!(mail.text.lines().filter(|l| l.starts_with("Approve: ")).count(), 1);
    // The rollback passed the gate: refused, so only that fact is shown.
    assert!(mail.text.contains("Rollback: proposed by the model, refused by medic's gate"), "{}", mail.text);
    let page = world.app.client.get(approval_link(&mail)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("rm -rf"), "{page}");
    assert!(page.contains("refused by medic&#39;s gate: not shown"), "{page}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_fixes_stay_on_the_failing_service_and_others_need_a_bold_approval() {
    let rules = r#"{
      "safe_commands": {
        "nginx_control": { "mode": "auto", "allowed": ["{control} start"] },
        "services": { "mode": "auto", "allowed": ["systemctl restart {service}"], "allowed_services": ["nginx", "apache2", "docker"] },
        "blocked_patterns": ["rm -rf"]
      },
      "placeholders": { "service": { "allowed": ["nginx", "apache2", "docker"] }, "lines": { "range": [1, 5000] } },
      "diagnostics": { "allowed": ["tail -n {lines} {log}", "uptime"] }
    }"#;
    let world = World::start(Options { l2: false, rules: Some(rules.into()), ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("apache2 is hogging the port", 0.95, Some("systemctl restart apache2"));
    let id = world.down().await;
    let incident = world.wait_state(&id, "awaiting_approval", 40).await;
    // Level 1 was offered only commands on nginx.
    let request = &world.llm.requests("ollama_chat")[0];
    let choices = request["format"]["properties"]["action_command"]["enum"].to_string();
    assert!(choices.contains("systemctl restart nginx"), "{choices}");
    assert!(!choices.contains("apache2") && !choices.contains("docker"), "{choices}");
    // Its out-of-scope answer did not run: it waits for a human, who is told in bold.
    assert_eq!(count(&world, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", &id).await, 0, "{incident}");
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    assert!(mail.text.contains("systemctl restart apache2"), "{}", mail.text);
    assert!(mail.text.contains("*** This command does not act on the failing service"), "{}", mail.text);
    let page = world.app.client.get(approval_link(&mail)).send().await.unwrap().text().await.unwrap();
    let scope = form_fields(&page);
    assert!(scope.contains_key("csrf"));
    assert!(page.contains("class=\"scope\"") && page.contains("apache2") && page.contains("nginx"), "{page}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_incident_page_shows_the_outcome_and_no_buttons() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    assert!(world.app.client.get(&link).send().await.unwrap().text().await.unwrap().contains("<button"));
    world.up().await;
    world.wait_state(&id, "recovered_by_monitor", 20).await;
    let r = world.app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let page = r.text().await.unwrap();
    assert!(!page.contains("<button") && !page.contains("<form"), "{page}");
    assert!(page.contains("recovered_by_monitor") && page.contains("up again"), "{page}");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_escalation_email_never_shows_a_refused_command_as_if_it_ran() {
    let world = World::start(Options { l2: false, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    world.l1_says("logs filled the disk", 0.95, Some("rm -rf /var/log/nginx"));
    let id = world.down().await;
    world.wait_state(&id, "escalated", 40).await;
    let mail = world.smtp().wait_for("Needs a human", 15).await;
    assert!(!mail.text.contains("rm -rf") && !mail.html.contains("rm -rf"), "{}", mail.text);
    assert!(mail.text.contains("proposed by level 1, refused by the gate, not run"), "{}", mail.text);
    assert!(!mail.text.contains("What medic already tried"), "nothing ran: {}", mail.text);
    assert_eq!(count(&world, "SELECT COUNT(*) FROM actions WHERE incident_id = ?1", &id).await, 0);
    world.app.stop().await;
}
