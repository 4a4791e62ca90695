//! The operator console over real HTTP: login, sessions, CSRF, escaping, and `approval.require_login`.
//! (The browser walk-through is in `console_browser.rs`.)

use std::time::Duration;

use medic::config::{Secret, Settings};
use medic::web::console::ConsoleUser;
use serde_json::{Value, json};

use crate::helpers::{TOKEN, TestApp};
use crate::smtp::approval_link;
use crate::world::{Options, World, form_fields};

pub const OPERATOR: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn with_operator(settings: &mut Settings) {
    settings.console.users = vec![ConsoleUser {
        name: OPERATOR.into(),
        password_hash: Some(Secret::new(medic::web::console::session::hash_password(PASSWORD))),
    }];
}

/// A browser-like client that does not follow redirects and keeps one session cookie by hand.
pub struct Console {
    pub base: String,
    http: reqwest::Client,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Console {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { base: base.to_string(), http, cookie: None }
    }

    async fn page(r: reqwest::Response) -> Page {
        let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let set_cookies =
            r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
        Page { status: r.status().as_u16(), location, set_cookies, body: r.text().await.unwrap() }
    }

    fn with_cookie(&self, mut request: reqwest::RequestBuilder, extra: Option<&str>) -> reqwest::RequestBuilder {
        let cookies: Vec<String> = self.cookie.iter().cloned().chain(extra.map(str::to_string)).collect();
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        request
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.with_cookie(self.http.get(format!("{}{path}", self.base)), None).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[]).await
    }

    pub async fn post_with(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self.with_cookie(self.http.post(format!("{}{path}", self.base)), None).form(form);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::page(request.send().await.unwrap()).await
    }

    /// Logs in through the form (its own CSRF cookie); returns the POST's answer.
    pub async fn login_as(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let login_cookie = form.set_cookies.iter().find(|c| c.starts_with("medic_login=")).expect("a login cookie");
        let pair = login_cookie.split(';').next().unwrap().to_string();
        let csrf = form_fields(&form.body)["csrf"].clone();
        let r = self
            .http
            .post(format!("{}/ui/login", self.base))
            .header("cookie", &pair)
            .form(&[("name", name), ("password", password), ("csrf", &csrf), ("next", "/ui/")])
            .send()
            .await
            .unwrap();
        let page = Self::page(r).await;
        if let Some(c) =
            page.set_cookies.iter().find(|c| c.starts_with("medic_session=") && !c.starts_with("medic_session=;"))
        {
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        page
    }

    pub async fn login(&mut self) -> Page {
        self.login_as(OPERATOR, PASSWORD).await
    }

    /// The CSRF value the console's forms carry for this session.
    pub async fn csrf(&self) -> String {
        let page = self.get("/ui/sessions").await;
        assert_eq!(page.status, 200);
        form_fields(&page.body)["csrf"].clone()
    }
}

async fn dry_run_on(app: &TestApp) -> bool {
    let v: Value =
        app.client.get(app.url("/api/v1/dry-run")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    v["api"].as_bool().unwrap_or_else(|| panic!("{v}"))
}

async fn audit_kinds(app: &TestApp) -> Vec<Value> {
    let events = app.store.audit_events(None, None).await.unwrap();
    events.into_iter().map(|e| json!({"kind": e.kind, "details": e.details})).collect()
}

#[tokio::test]
async fn pages_need_a_session_logins_are_checked_and_throttled_and_sessions_end() {
    let app = TestApp::spawn_with(with_operator).await;
    let mut console = Console::new(&app.base);

    // No session: every page redirects to the login, naming where to come back.
    for path in
        ["/ui/", "/ui/incidents", "/ui/audit", "/ui/approvals", "/ui/memory", "/ui/gate", "/ui/hosts", "/ui/sessions"]
    {
        let page = console.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        assert!(page.location.starts_with("/ui/login?next="), "{path}: {}", page.location);
    }
    let page = console.post("/ui/gate/dry-run", &[("enabled", "true")]).await;
    assert_eq!(page.status, 303, "a POST without a session changes nothing");
    assert!(!dry_run_on(&app).await);

    // A wrong password is refused and audited; no session cookie.
    let page = console.login_as(OPERATOR, "not the password").await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("Wrong operator name or password"));
    assert!(console.cookie.is_none());
    let page = console.login_as("mallory", PASSWORD).await;
    assert_eq!(page.status, 401, "an unknown name gets the same answer");

    // The right one: a session cookie with the right attributes, and the overview.
    let page = console.login().await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, "/ui/");
    let cookie = page.set_cookies.iter().find(|c| c.starts_with("medic_session=")).unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: no Secure flag ({cookie})");
    let overview = console.get("/ui/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("open incidents") && overview.body.contains("<svg"), "{}", overview.body);
    let kinds = audit_kinds(&app).await;
    assert!(
        kinds
            .iter()
            .any(|e| e["kind"] == "operator_login" && e["details"]["outcome"].as_str().unwrap().starts_with("ok"))
    );
    assert!(
        kinds
            .iter()
            .any(|e| e["kind"] == "operator_login" && e["details"]["outcome"].as_str().unwrap().starts_with("refused"))
    );

    // A login form posted without its own CSRF cookie is refused.
    let r = Console::new(&app.base)
        .post("/ui/login", &[("name", OPERATOR), ("password", PASSWORD), ("csrf", "guess")])
        .await;
    assert_eq!(r.status, 403);

    // Sessions are listed and revocable; a revoked session is logged out.
    let mut second = Console::new(&app.base);
    second.login().await;
    assert_eq!(second.get("/ui/").await.status, 200);
    let sessions = console.get("/ui/sessions").await.body;
    let ids: Vec<String> =
        sessions.split("name=\"id\" value=\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2, "two live sessions: {sessions}");
    let csrf = console.csrf().await;
    let own = sessions.contains("this session");
    assert!(own);
    // Revoke the one that is not ours (the first listed is the newest: the second login).
    let r = console.post("/ui/sessions/revoke", &[("csrf", &csrf), ("id", &ids[0])]).await;
    assert_eq!(r.status, 303);
    assert_eq!(second.get("/ui/").await.status, 303, "the revoked session is logged out");
    assert_eq!(console.get("/ui/").await.status, 200, "ours still works");

    // Logging out ends the session for good, even if the cookie is replayed.
    let r = console.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(console.get("/ui/").await.status, 303);

    // Throttling: past ten refused logins from one address, 429 even for the right password.
    let mut guesser = Console::new(&app.base);
    for _ in 0..10 {
        guesser.login_as(OPERATOR, "wrong").await;
    }
    let page = guesser.login().await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(guesser.cookie.is_none());
    app.stop().await;
}

#[tokio::test]
async fn forms_without_this_sessions_csrf_or_from_another_site_are_refused_and_a_cookie_from_another_medic_fails() {
    let app = TestApp::spawn_with(with_operator).await;
    let mut console = Console::new(&app.base);
    console.login().await;
    let csrf = console.csrf().await;

    let missing = console.post("/ui/gate/dry-run", &[("enabled", "true")]).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    let wrong = console.post("/ui/gate/dry-run", &[("enabled", "true"), ("csrf", "x".repeat(32).as_str())]).await;
    assert_eq!(wrong.status, 403);
    let cross = console
        .post_with("/ui/gate/dry-run", &[("enabled", "true"), ("csrf", &csrf)], &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(cross.status, 403);
    assert!(!dry_run_on(&app).await, "nothing changed");

    // Another operator's session has another CSRF value.
    let mut other = Console::new(&app.base);
    other.login().await;
    let theirs = other.csrf().await;
    assert_ne!(theirs, csrf);
    assert_eq!(console.post("/ui/gate/dry-run", &[("enabled", "true"), ("csrf", &theirs)]).await.status, 403);

    let ok = console.post("/ui/gate/dry-run", &[("enabled", "true"), ("csrf", &csrf)]).await;
    assert_eq!(ok.status, 303);
    assert!(dry_run_on(&app).await);
    let kinds = audit_kinds(&app).await;
    assert!(
        kinds.iter().any(|e| e["kind"] == "operator_action"
            && e["details"]["operator"] == OPERATOR
            && e["details"]["action"] == "dry_run"),
        "{kinds:?}"
    );

    // "Try a command": a dry verdict, audited.
    let tried = console.post("/ui/gate", &[("csrf", &csrf), ("command", "rm -rf /"), ("host", "")]).await;
    assert_eq!(tried.status, 200);
    assert!(tried.body.contains("id=\"verdict\"") && tried.body.contains("deny"), "{}", tried.body);

    // The same cookie at another medic (same operator name and password, another database) is nothing.
    let elsewhere = TestApp::spawn_with(with_operator).await;
    let mut stranger = Console::new(&elsewhere.base);
    stranger.cookie = console.cookie.clone();
    let page = stranger.get("/ui/").await;
    assert_eq!(page.status, 303, "a session from another instance must not work");
    elsewhere.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn alert_and_log_text_is_shown_as_text_on_every_console_page() {
    let app = TestApp::spawn_with(with_operator).await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let r = app
        .client
        .post(app.url("/api/v1/incidents"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"service_name": "web", "monitor_name": "web <b>x</b>", "error_logs": hostile, "monitor_id": "m1"}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    let id = v["incident_id"].as_str().unwrap().to_string();
    let mut console = Console::new(&app.base);
    console.login().await;
    for path in [
        "/ui/".to_string(),
        "/ui/incidents".into(),
        format!("/ui/incidents/{id}"),
        "/ui/audit".into(),
        "/ui/approvals".into(),
    ] {
        let page = console.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("<script"), "{path} carries a live script tag");
        assert!(!page.body.contains("<img"), "{path} carries a live img tag");
        assert!(!page.body.contains("<b>x"), "{path}");
    }
    let incident = console.get(&format!("/ui/incidents/{id}")).await.body;
    assert!(incident.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "shown as text: {incident}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_require_login_a_forwarded_link_alone_cannot_decide_and_the_audit_names_the_operator() {
    let world = World::start(Options {
        l1: false,
        tweak: Some(|s, _| {
            with_operator(s);
            s.approval.require_login = true;
        }),
        ..Options::default()
    })
    .await;
    let (id, mail) = world.awaiting_approval("nginx stopped after a config reload").await;
    let link = approval_link(&mail);
    let path = link.trim_start_matches(&world.app.base).to_string();

    // Without a session the link shows a "log in" page and no form.
    let mut console = Console::new(&world.app.base);
    let page = console.get(&path).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Log in to decide") && !page.body.contains("csrf"), "{}", page.body);
    // A POST with the form's fields, as a link forwarder could send, is refused.
    console.login().await;
    let fields = form_fields(&console.get(&path).await.body);
    assert!(fields.contains_key("csrf"), "logged in, the confirm page shows its form");
    let anonymous = Console::new(&world.app.base);
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = anonymous.post(&path, &form).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");

    // The logged-in operator decides; the audit and the incident name them.
    let decided = console.post(&path, &form).await;
    assert_eq!(decided.status, 200, "{}", decided.body);
    world.wait_state(&id, "resolved", 30).await;
    let events = world.app.store.audit_events(None, None).await.unwrap();
    let decision = events.iter().find(|e| e.kind == "approval_decided").expect("a decision");
    assert_eq!(decision.details["operator"], OPERATOR);
    let incident = world.incident(&id).await;
    assert!(incident.to_string().contains("operator alice"), "{incident}");
    // The decision's latency is on /metrics.
    let metrics = world.app.client.get(world.app.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.lines().any(|l| l == "medic_approval_latency_seconds_count{decision=\"approved\"} 1"), "{text}");
    world.app.stop().await;
}

#[tokio::test]
async fn medic_users_add_prints_config_lines_that_log_in() {
    use std::io::Write;
    let run = |name: &str, password: &str| {
        let mut child = std::process::Command::new(crate::process::medic_bin())
            .args(["users", "add", name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run("bob", "short");
    assert!(!ok && err.contains("at least 12"), "{err}");
    let (ok, _, err) = run("bob smith", "a long enough password");
    assert!(!ok && err.contains("operator names"), "{err}");

    let (ok, printed, err) = run("bob", "a long enough password");
    assert!(ok, "{err}");
    assert!(!printed.contains("a long enough password"), "the password is never printed");
    let settings = Settings::from_toml_str(&printed).expect("the printed lines are valid configuration");
    assert_eq!(settings.console.users[0].name, "bob");
    let app = TestApp::spawn_with(move |s| s.console.users = settings.console.users.clone()).await;
    let mut console = Console::new(&app.base);
    assert_eq!(console.login_as("bob", "a long enough password").await.status, 303);
    assert_eq!(console.get("/ui/").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_proxy_header_logs_in_only_from_a_trusted_proxy() {
    let app = TestApp::spawn_with(|s| {
        s.console.proxy_header = "X-Forwarded-User".into();
        s.console.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let console = Console::new(&app.base);
    let page = console.post_with("/ui/login", &[], &[]).await;
    assert_ne!(page.status, 303, "no header, no login");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/ui/login?next=/ui/audit"))
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/audit");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let get = |user: &'static str| {
        let cookie = cookie.clone();
        let url = app.url("/ui/");
        async move {
            let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            client.get(url).header("cookie", cookie).header("x-forwarded-user", user).send().await.unwrap().status()
        }
    };
    assert_eq!(get("carol").await, 200);
    assert_eq!(get("mallory").await, 303, "the session belongs to the proxy's user, not to whoever holds the cookie");
    app.stop().await;

    // From an address that is not the proxy, the header is nobody.
    let app = TestApp::spawn_with(|s| {
        s.console.proxy_header = "X-Forwarded-User".into();
        s.console.trusted_proxies = vec!["192.0.2.10".parse().unwrap()];
    })
    .await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/ui/login"))
        .header("x-forwarded-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the login form, not a session");
    app.stop().await;
}

#[tokio::test]
async fn the_incident_list_filters_and_pages_and_the_audit_export_carries_verifiable_proofs() {
    let app = TestApp::spawn_with(with_operator).await;
    for (service, host) in [("nginx", "web1"), ("nginx", "web2"), ("postgres", "db1")] {
        let r = app
            .client
            .post(app.url("/api/v1/incidents"))
            .bearer_auth(TOKEN)
            .json(&json!({"service_name": service, "host": host, "error_logs": format!("{service} down on {host}")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let mut console = Console::new(&app.base);
    console.login().await;
    let rows = |body: &str| body.matches("<a href=\"/ui/incidents/").count();
    let all = console.get("/ui/incidents").await.body;
    assert_eq!(rows(&all), 3, "{all}");
    let nginx = console.get("/ui/incidents?service=nginx").await.body;
    assert_eq!(rows(&nginx), 2);
    assert!(!nginx.contains("postgres down"));
    assert_eq!(rows(&console.get("/ui/incidents?service=nginx&host=web2").await.body), 1);
    assert_eq!(rows(&console.get("/ui/incidents?from=2999-01-01").await.body), 0, "a time range");
    let bad = console.get("/ui/incidents?from=yesterday").await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("is not a time"), "a bad filter is named, not ignored silently");

    // The export: the filtered rows as JSON lines, each a verifiable link of the chain.
    let export = console.get("/ui/audit/export?kind=incident_opened").await;
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{}", export.body);
    for e in &lines {
        assert_eq!(e["kind"], "incident_opened");
        let hash = medic::audit::event_hash(
            e["seq"].as_i64().unwrap(),
            e["time"].as_str().unwrap(),
            e["incident_id"].as_str(),
            e["actor"].as_str().unwrap(),
            e["kind"].as_str().unwrap(),
            &e["details"],
            e["prev_hash"].as_str().unwrap(),
        );
        assert_eq!(e["hash"].as_str().unwrap(), hash, "each exported row proves itself");
        assert!(e["mac"].is_string(), "and carries its MAC");
    }
    let review = console.get("/ui/audit").await.body;
    assert!(review.contains("Chain verified through seq"), "{review}");

    // Someone with file access rewrites a row: the review's banner names it.
    let db = app.dir.path().join("medic.db");
    let tampered = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TRIGGER audit_no_update; UPDATE audit SET details = '{\"forged\":true}' WHERE seq = 2;")
        .output()
        .expect("sqlite3 is installed by scripts/test.sh");
    assert!(tampered.status.success(), "{}", String::from_utf8_lossy(&tampered.stderr));
    let review = console.get("/ui/audit").await.body;
    assert!(review.contains("Chain BROKEN at seq 2"), "{review}");
    app.stop().await;
}
