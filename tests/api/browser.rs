//! The confirm page in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver) from the tests with plain HTTP. A person's view: what the page offers, what a click
//! does, and what a cross-site page that posts the form for them gets.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::smtp::{approval_link, reject_link};
use crate::sshd::free_port;
use crate::world::{Options, World};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by scripts/test-deps.sh");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,1100", format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Self { driver, base, session, http, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json::<Value>().await.unwrap()["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The element's id, or None when the page has no such element.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let Some(id) = self.find(css).await else { return String::new() };
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits until the page's title contains `text`.
    pub async fn wait_title(&self, text: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let title = self.title().await;
            if title.contains(text) || std::time::Instant::now() > deadline {
                return title;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A page on another loopback port that posts the approval form to medic as soon as it loads: what a
/// link forwarder or a malicious page could try with a known link.
async fn attacker_page(link: &str, fields: &std::collections::HashMap<String, String>) -> String {
    let inputs: String = ["csrf", "incident_id", "command_hash"]
        .iter()
        .map(|k| format!("<input type=hidden name={k} value=\"{}\">", fields[*k]))
        .collect();
    let html = format!(
        "<!doctype html><title>cute cats</title><form id=f method=post action=\"{link}\">{inputs}\
         <input type=hidden name=decision value=approve></form><script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_chromium_each_link_does_one_thing_a_cross_site_post_is_refused_and_approve_runs_the_fix() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let (id, mail) = world.awaiting_approval("nginx stopped after a config reload").await;
    let (approve, reject) = (approval_link(&mail), reject_link(&mail));
    let browser = Browser::start().await;

    // The email as a mail client would show its HTML part: medic's command and buttons come first.
    let html = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("approval-email.html");
    std::fs::write(&html, &mail.html).unwrap();
    browser.goto(&format!("file://{}", html.display())).await;
    let shown = browser.source().await;
    let (command_at, quoted_at) =
        (shown.find(&world.start_command()).unwrap(), shown.find("The monitor said").unwrap());
    assert!(command_at < quoted_at, "the command comes before quoted text");
    browser.screenshot("approval-email.png").await;

    // The reject link offers only a reject button.
    browser.goto(&reject).await;
    assert!(browser.title().await.contains("reject"), "{}", browser.source().await);
    assert!(browser.find("#reject").await.is_some());
    assert!(browser.find("#approve").await.is_none(), "a reject link cannot approve");
    browser.screenshot("reject-page.png").await;

    // A page elsewhere that submits the approve form on load is refused: Origin is not medic's.
    let fields = world.confirm_fields(&approve).await;
    let evil = attacker_page(&approve, &fields).await;
    browser.goto(&evil).await;
    let title = browser.wait_title("Cross-site", 10).await;
    assert!(title.contains("Cross-site form refused"), "{title}: {}", browser.source().await);
    assert_eq!(world.incident(&id).await["state"], "awaiting_approval");

    // The approve link, as a person sees it: the exact command, the host, one button.
    browser.goto(&approve).await;
    let source = browser.source().await;
    assert!(source.contains(&world.start_command()), "{source}");
    assert!(source.contains("web1"));
    assert!(browser.find("#reject").await.is_none(), "an approve link cannot reject");
    let shot = browser.screenshot("approve-page.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real rendering");
    let button = browser.find("#approve").await.expect("an approve button");
    browser.click(&button).await;
    let title = browser.wait_title("Approved", 10).await;
    assert!(title.contains("Approved"), "{title}: {}", browser.source().await);
    world.wait_state(&id, "resolved", 30).await;
    assert!(world.nginx.is_up());
    world.app.stop().await;
}
