//! Approval links under attack, emails and escaping, and the outbox across a restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::smtp::{Mail, TestSmtp, approval_link, reject_link};
use crate::world::{Options, World, form_fields};

async fn awaiting(world: &World) -> (String, Mail) {
    world.awaiting_approval("nginx stopped").await
}

async fn post(world: &World, link: &str, form: &[(&str, &str)]) -> (u16, String) {
    world.post_form(link, form).await
}

async fn actions_for(world: &World, id: &str) -> i64 {
    let id = id.to_string();
    world
        .app
        .store
        .read(
            move |conn| Ok(conn.query_row("SELECT COUNT(*) FROM actions WHERE incident_id = ?1", [id], |r| r.get(0))?),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_resist_prefetch_tampering_missing_csrf_replay_and_other_incidents() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let f = world.confirm_fields(&link).await;
    let (csrf, incident, hash) = (f["csrf"].as_str(), f["incident_id"].as_str(), f["command_hash"].as_str());
    assert_eq!(incident, id);

    // GET and HEAD, as often as a scanner likes, change nothing.
    for _ in 0..3 {
        assert_eq!(world.app.client.get(&link).send().await.unwrap().status(), 200);
        assert_eq!(world.app.client.head(&link).send().await.unwrap().status(), 200);
    }
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");

    // A tampered token.
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(world.app.client.get(&tampered).send().await.unwrap().status(), 404);
    let (status, body) = post(
        &world,
        &tampered,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("Nothing was changed"));

    // No CSRF value, a wrong one, another incident's id, another command.
    let (status, _) =
        post(&world, &link, &[("decision", "approve"), ("incident_id", incident), ("command_hash", hash)]).await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &world,
        &link,
        &[("decision", "approve"), ("csrf", "forged"), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 403);
    let other = uuid::Uuid::now_v7().to_string();
    let (status, _) = post(
        &world,
        &link,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", &other), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &world,
        &link,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", incident), ("command_hash", "00ff")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &world,
        &link,
        &[("decision", "maybe"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval", "nothing changed so far");
    assert_eq!(actions_for(&world, &id).await, 0);

    // Another incident's token cannot decide this one: open a second incident awaiting approval.
    let mut second = world.down_body();
    second["monitor"]["id"] = json!(2);
    second["monitor"]["name"] = json!("Second nginx check");
    second["monitor"]["tags"] = json!([{"name": "host", "value": "web1"}, {"name": "service", "value": "nginx"}]);
    let r: Value = world.app.post_kuma_json(&second).await.json().await.unwrap();
    let second_id = r["incident_id"].as_str().unwrap().to_string();
    world.wait_state(&second_id, "awaiting_approval", 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second_mail = world
        .smtp()
        .mails()
        .into_iter()
        .filter(|m| m.subject.contains("Approval needed"))
        .nth(1)
        .expect("second approval email");
    let second_link = approval_link(&second_mail);
    assert_ne!(second_link, link);
    let (status, _) = post(
        &world,
        &second_link,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 403, "incident A's form on incident B's token");
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");
    assert_eq!(world.incident(&second_id).await["state"], "awaiting_approval");

    // The real decision, then replays.
    let (status, body) = post(
        &world,
        &link,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &world,
        &link,
        &[("decision", "approve"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 409, "replay");
    assert!(body.contains("already made"));
    let (status, _) = post(
        &world,
        &link,
        &[("decision", "reject"), ("csrf", csrf), ("incident_id", incident), ("command_hash", hash)],
    )
    .await;
    assert_eq!(status, 409, "reject after approve");
    assert_eq!(world.app.client.get(&link).send().await.unwrap().status(), 409, "the link is spent");
    world.wait_state(&id, "resolved", 30).await;
    assert_eq!(actions_for(&world, &id).await, 1);
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_approvals_run_the_command_exactly_once() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let f = world.confirm_fields(&link).await;
    let form: Vec<(String, String)> = vec![
        ("decision".into(), "approve".into()),
        ("csrf".into(), f["csrf"].clone()),
        ("incident_id".into(), f["incident_id"].clone()),
        ("command_hash".into(), f["command_hash"].clone()),
    ];
    let posts = (0..20).map(|_| {
        let (client, link, form) = (world.app.client.clone(), link.clone(), form.clone());
        async move { client.post(&link).form(&form).send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(posts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 19, "{statuses:?}");
    world.wait_state(&id, "resolved", 30).await;
    assert_eq!(actions_for(&world, &id).await, 1, "exactly one execution");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejection_closes_the_incident_and_memory_keeps_the_reason() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = awaiting(&world).await;
    let link = approval_link(&mail);
    let reject_link = reject_link(&mail);
    assert_ne!(link, reject_link, "approve and reject are separate credentials");
    let page = world.app.client.get(&reject_link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Reject this fix"));
    assert!(!page.contains("value=\"approve\""), "a reject page offers no approve button");
    let f = form_fields(&page);
    let form = [
        ("decision", "reject"),
        ("reason", "we are migrating this host tonight"),
        ("csrf", f["csrf"].as_str()),
        ("incident_id", f["incident_id"].as_str()),
        ("command_hash", f["command_hash"].as_str()),
    ];
    // The reject credential cannot be turned into an approval.
    let mut approve_with_reject_link = form;
    approve_with_reject_link[0] = ("decision", "approve");
    let (status, body) = post(&world, &reject_link, &approve_with_reject_link).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("can only reject"), "{body}");
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");
    let (status, _) = post(&world, &reject_link, &form).await;
    assert_eq!(status, 200);
    let incident = world.incident(&id).await;
    assert_eq!(incident["state"], "rejected");
    let a = world.confirm_fields_status(&link).await;
    assert_eq!(a, 409, "the approve link is closed after the rejection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!world.nginx.is_up(), "nothing ran");
    assert_eq!(actions_for(&world, &id).await, 0);
    // Memory keeps the negative, labelled, with the human's reason.
    let memory =
        medic::memory::Memory::open(&medic::memory::MemoryConfig::default(), world.app.dir.path()).await.unwrap();
    let filter = medic::memory::SearchFilter { service: Some("nginx".into()), include_negatives: true };
    let hits = memory.search("nginx connect ECONNREFUSED", &filter, 5).await.unwrap();
    let negative = hits.iter().find(|h| h.entry.outcome == medic::memory::Outcome::Rejected).expect("a rejected entry");
    assert_eq!(negative.entry.reason.as_deref(), Some("we are migrating this host tonight"));
    assert_eq!(negative.entry.command, world.start_command());
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_links_change_nothing_and_the_incident_asks_again_then_stops_asking() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let mut settings = world.options_settings.clone();
    settings.approval.ttl = Duration::from_secs(2);
    settings.approval.max_requests = 2;
    let world = World { options_settings: settings, ..world }.restart().await;
    let (id, mail) = awaiting(&world).await;
    assert!(mail.text.contains("State: awaiting your approval"), "{}", mail.text);
    let link = approval_link(&mail);
    let f = world.confirm_fields(&link).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = world.app.client.get(&link).send().await.unwrap().status();
    assert!(status == 410 || status == 409, "expired (or already superseded by a new request): {status}");
    let (status, _) = post(
        &world,
        &link,
        &[
            ("decision", "approve"),
            ("csrf", &f["csrf"]),
            ("incident_id", &f["incident_id"]),
            ("command_hash", &f["command_hash"]),
        ],
    )
    .await;
    assert!(status == 410 || status == 409, "{status}");
    assert_eq!(actions_for(&world, &id).await, 0, "nothing ran");

    // The incident is not stranded: new links go out, and the old ones stay dead.
    let second = world.smtp().wait_for_nth("Approval needed", 2, 20).await;
    assert_ne!(approval_link(&second), link);
    assert!(second.text.contains("approval links expired without a decision"), "{}", second.text);
    assert_ne!(world.app.client.get(&link).send().await.unwrap().status(), 200);

    // After approval.max_requests rounds nobody answered: parked, with an email that says so.
    let escalation = world.smtp().wait_for("Needs a human", 20).await;
    assert!(escalation.text.contains("no decision after 2 approval request(s)"), "{}", escalation.text);
    let incident = world.incident(&id).await;
    assert_eq!(incident["state"], "escalated", "{incident}");
    assert_eq!(actions_for(&world, &id).await, 0);
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_header_poisoning_does_not_change_links_and_model_text_stays_inert() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    world.nginx.start();
    world.nginx.stop();
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    world.l2_says(&format!("nginx stopped {hostile}"), Some(&world.start_command()));
    let r = world
        .app
        .client
        .post(world.app.url("/hooks/uptime-kuma"))
        .bearer_auth(world.token())
        .header("host", "evil.example.com")
        .header("x-forwarded-host", "evil.example.com")
        .json(&world.down_body())
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["incident_id"].as_str().unwrap().to_string();
    world.wait_state(&id, "awaiting_approval", 40).await;
    let mail = world.smtp().wait_for("Approval needed", 15).await;
    let link = approval_link(&mail);
    assert!(link.starts_with(&world.app.base), "{link}");
    assert!(!mail.html.contains("evil.example.com") && !mail.text.contains("evil.example.com"));
    assert!(!mail.html.contains("<script>") && !mail.html.contains("<img src=x"), "model text is escaped in the email");
    assert!(mail.html.contains("&lt;script&gt;") || mail.html.contains("&#60;script&#62;"), "{}", mail.html);
    let page =
        world.app.client.get(&link).header("host", "evil.example.com").send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("evil.example.com"));
    assert!(page.contains("<form method=\"post\">"), "the form posts back to the same URL, no absolute action");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_outbox_survives_a_restart_and_sends_each_email_exactly_once() {
    // SMTP is down at first: reserve a port with nothing listening on it.
    let port = crate::sshd::free_port();
    let world = World::start(Options { l1: false, l2: false, smtp: false, ..Options::default() }).await;
    let mut settings = world.options_settings.clone();
    settings.notify.email.smtp_host = "127.0.0.1".into();
    settings.notify.email.smtp_port = port;
    settings.notify.email.security = medic::notify::SmtpSecurity::None;
    settings.notify.email.to = vec!["ops@example.org".into()];
    let world = World { options_settings: settings, ..world }.restart().await;
    let id = world.down().await;
    world.app.wait_incident(&id, 40, |i| i["waiting_for"].is_string()).await;
    // The email failed at least once and is still queued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (attempts, sent): (i64, Option<String>) = world
            .app
            .store
            .read(|conn| {
                Ok(conn.query_row("SELECT attempts, sent_at FROM outbox WHERE event = 'escalation'", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?)
            })
            .await
            .unwrap();
        assert!(sent.is_none());
        if attempts >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivery was never attempted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let world = world.restart().await;
    let smtp = TestSmtp::start_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let mail = smtp.wait_for("Needs a human: nginx", 30).await;
    assert!(mail.text.contains("Incident:"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let escalations = smtp.mails().into_iter().filter(|m| m.subject.contains("Needs a human")).count();
    assert_eq!(escalations, 1, "sent exactly once");
    world.app.stop().await;
}
