//! The whole world for end-to-end tests: a real sshd and nginx, fake Ollama and Anthropic speaking their
//! wire formats, a real SMTP server, and medic (in process, port 0) configured to use them.

use std::path::PathBuf;
use std::time::Duration;

use medic::config::{Secret, Settings};
use medic::diagnose::ProviderKind;
use medic::inventory::MonitorMapping;
use medic::notify::SmtpSecurity;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply, anthropic_message, ollama_chat};
use crate::helpers::{TOKEN, TestApp, kuma, test_settings};
use crate::smtp::TestSmtp;
use crate::sshd::{TestNginx, TestSshd};

pub struct Options {
    pub l1: bool,
    pub l2: bool,
    pub breaker_failures: u32,
    pub max_attempts: u32,
    pub verify_deadline: Duration,
    pub smtp: bool,
    /// Log in as this user instead of the current one (benchmarks use a plain-shell user).
    pub ssh_user: Option<String>,
    /// Automatic actions allowed per (host, service) per hour.
    pub max_actions_per_service: u32,
    /// Level 1 on a real model server instead of the fake Ollama.
    pub l1_backend: Option<L1Backend>,
    /// `diagnose.constrain_l1_commands`.
    pub constrain_l1: bool,
    /// Gate rules instead of [`rules`] (the text may use `{control}` and `{log}` for the test nginx).
    pub rules: Option<String>,
    /// medic's own decision rules (evidence checks, 3 level-1 samples, derived confidence). Off, level 1
    /// is one reply whose own confidence counts: the pipeline tests script that number.
    pub decisions: bool,
    /// Last changes to the settings before medic starts (given the test nginx's control script).
    pub tweak: Option<fn(&mut Settings, &str)>,
    /// Environment the test sshd gives every session (`NAME=value …`).
    pub ssh_env: &'static str,
}

/// Where level 1 goes when it is not the fake Ollama.
pub struct L1Backend {
    pub provider: ProviderKind,
    pub base: String,
    pub model: String,
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            l1: true,
            l2: true,
            breaker_failures: 3,
            max_attempts: 2,
            verify_deadline: Duration::from_secs(4),
            smtp: true,
            ssh_user: None,
            max_actions_per_service: 3,
            l1_backend: None,
            constrain_l1: true,
            rules: None,
            decisions: false,
            tweak: None,
            ssh_env: "",
        }
    }
}

pub struct World {
    pub sshd: TestSshd,
    pub nginx: TestNginx,
    pub llm: FakeLlm,
    pub smtp: Option<TestSmtp>,
    pub app: TestApp,
    pub rules: PathBuf,
    pub options_settings: Settings,
}

/// The gate rules for the test host: the nginx control script as fixes (auto), a slow variant, and
/// read-only diagnostics including the test nginx's error log.
pub fn rules(nginx: &TestNginx) -> String {
    let control = nginx.control();
    let log = nginx.dir.path().join("logs/error.log").display().to_string();
    format!(
        r#"{{
          "safe_commands": {{
            "nginx_control": {{ "mode": "auto", "allowed": ["{control} start", "{control} noop", "{control} slowstart"] }},
            "docker": {{ "mode": "auto", "allowed": ["docker restart {{container}}"] }},
            "scripts": {{ "mode": "approval", "allowed": ["/usr/local/lib/medic/clean_logs.sh {{service}}"] }},
            "blocked_patterns": ["rm -rf", "shutdown", "mkfs"]
          }},
          "placeholders": {{ "service": {{ "allowed": ["nginx"] }}, "lines": {{ "range": [1, 5000] }},
                            "container": {{ "pattern": "^[a-z][a-z0-9_.-]{{0,62}}$" }} }},
          "diagnostics": {{ "allowed": ["tail -n {{lines}} {log}", "uptime", "free -m", "df -h"] }}
        }}"#
    )
}

impl World {
    pub async fn start(options: Options) -> Self {
        let sshd =
            if options.ssh_env.is_empty() { TestSshd::start() } else { TestSshd::start_with_env(options.ssh_env) };
        let nginx = TestNginx::new();
        // A `slowstart` that takes a while, for the UP-during-fix scenario.
        let script = std::fs::read_to_string(nginx.control()).unwrap().replace(
            "noop) echo 'did nothing' ;;",
            &format!("noop) echo 'did nothing' ;;\n slowstart) sleep 2; exec {} start ;;", nginx.control()),
        );
        std::fs::write(nginx.control(), script).unwrap();
        let llm = FakeLlm::start().await;
        let smtp = options.smtp.then(TestSmtp::start);
        let dir = tempfile::tempdir().unwrap();
        let rules_path = dir.path().join("safe_commands.json");
        let rules_text = match &options.rules {
            Some(text) => text
                .replace("{control}", &nginx.control())
                .replace("{log}", &nginx.dir.path().join("logs/error.log").display().to_string()),
            None => rules(&nginx),
        };
        std::fs::write(&rules_path, rules_text).unwrap();
        let mut settings = test_settings(dir.path());
        settings.gate.safe_commands = Some(rules_path.clone());
        settings.gate.policy.breaker_failures = options.breaker_failures;
        let mut host = sshd.host("web1");
        if let Some(user) = &options.ssh_user {
            host.user = user.clone();
        }
        settings.inventory.hosts = vec![host];
        settings.gate.policy.max_actions_per_service = options.max_actions_per_service;
        settings.gate.policy.max_actions_per_host = options.max_actions_per_service.max(6);
        settings.inventory.monitors = vec![MonitorMapping {
            monitor_id: Some("1".into()),
            host: "web1".into(),
            service: Some("nginx".into()),
            ..Default::default()
        }];
        settings.transport.control_dir = PathBuf::from("/tmp");
        settings.collect.total_timeout = Duration::from_secs(8);
        settings.verify.deadline = options.verify_deadline;
        settings.verify.interval = Duration::from_millis(100);
        settings.verify.max_interval = Duration::from_millis(400);
        settings.verify.probe_timeout = Duration::from_secs(1);
        settings.verify.check_command = String::new();
        settings.diagnose.max_attempts = options.max_attempts;
        settings.diagnose.constrain_l1_commands = options.constrain_l1;
        if !options.decisions {
            settings.diagnose.evidence_checks = false;
            settings.diagnose.l1_samples = 1;
        }
        if let Some(tweak) = options.tweak {
            tweak(&mut settings, &nginx.control());
        }
        match (&options.l1_backend, options.l1) {
            (Some(backend), _) => {
                settings.diagnose.l1.provider = backend.provider;
                settings.diagnose.l1.url = Some(backend.base.parse().unwrap());
                settings.diagnose.l1.model = backend.model.clone();
                settings.diagnose.l1.timeout = backend.timeout;
                settings.diagnose.l1.max_retries = 0;
            }
            (None, true) => {
                settings.diagnose.l1.url = Some(format!("{}/", llm.base).parse().unwrap());
                settings.diagnose.l1.timeout = Duration::from_secs(3);
                settings.diagnose.l1.max_retries = 1;
            }
            (None, false) => {}
        }
        if options.l2 {
            settings.diagnose.l2.provider = ProviderKind::Anthropic;
            settings.diagnose.l2.url = Some(llm.base.parse().unwrap());
            settings.diagnose.l2.api_key = Some(Secret::new("sk-ant-test-key-not-real"));
            settings.diagnose.l2.timeout = Duration::from_secs(3);
            settings.diagnose.l2.max_retries = 2;
        } else {
            settings.diagnose.l2.url = None;
        }
        if let Some(smtp) = &smtp {
            settings.notify.email.smtp_host = "127.0.0.1".into();
            settings.notify.email.smtp_port = smtp.port;
            settings.notify.email.security = SmtpSecurity::None;
            settings.notify.email.to = vec!["ops@example.org".into()];
        }
        let app = TestApp::spawn_in(dir, settings.clone()).await;
        Self { sshd, nginx, llm, smtp, app, rules: rules_path, options_settings: settings }
    }

    pub fn smtp(&self) -> &TestSmtp {
        self.smtp.as_ref().expect("this world has an SMTP server")
    }

    /// The captured Uptime Kuma DOWN, its monitor URL pointed at the test nginx.
    pub fn down_body(&self) -> Value {
        let mut body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("down_json.json")).unwrap()).unwrap();
        body["monitor"]["url"] = json!(self.nginx.health_url());
        body["heartbeat"]["msg"] = json!(format!("connect ECONNREFUSED 127.0.0.1:{}", self.nginx.port));
        body["heartbeat"]["time"] = json!(chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        body
    }

    pub fn up_body(&self) -> Value {
        let mut body: Value = serde_json::from_str(&std::fs::read_to_string(kuma("up_json.json")).unwrap()).unwrap();
        body["monitor"]["url"] = json!(self.nginx.health_url());
        body["heartbeat"]["time"] = json!(chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        body
    }

    /// Sends the DOWN and returns the incident id.
    pub async fn down(&self) -> String {
        let r = self.app.post_kuma_json(&self.down_body()).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        v["incident_id"].as_str().unwrap().to_string()
    }

    pub async fn up(&self) -> Value {
        let r = self.app.post_kuma_json(&self.up_body()).await;
        assert_eq!(r.status(), 202);
        r.json().await.unwrap()
    }

    /// Writes a line into the nginx error log the evidence collector reads.
    pub fn log_line(&self, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.nginx.dir.path().join("logs/error.log"))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }

    /// Scripts level 1's answer (Ollama chat format).
    pub fn l1_says(&self, cause: &str, confidence: f64, command: Option<&str>) {
        let content = json!({"cause": cause, "confidence": confidence, "action_command": command, "rationale": "from the evidence"}).to_string();
        self.llm.script("ollama_chat", vec![Reply::ok(ollama_chat(&content))]);
    }

    /// Scripts level 2's answer (Anthropic Messages format).
    pub fn l2_says(&self, root_cause: &str, command: Option<&str>) {
        let text = json!({
            "root_cause": root_cause, "action_command": command, "rollback_command": null,
            "risk": "low", "confidence": 0.85, "requires_human_approval": true
        })
        .to_string();
        self.llm.script("anthropic", vec![Reply::ok(anthropic_message(&text))]);
    }

    /// Scripts level 2's answer with a rollback and a risk of its own choosing.
    pub fn l2_says_with_rollback(&self, root_cause: &str, command: Option<&str>, rollback: &str) {
        let text = json!({
            "root_cause": root_cause, "action_command": command, "rollback_command": rollback,
            "risk": "low", "confidence": 0.85, "requires_human_approval": true
        })
        .to_string();
        self.llm.script("anthropic", vec![Reply::ok(anthropic_message(&text))]);
    }

    pub fn start_command(&self) -> String {
        format!("{} start", self.nginx.control())
    }

    pub async fn incident(&self, id: &str) -> Value {
        self.app.incident(id).await
    }

    pub async fn wait_state(&self, id: &str, state: &str, secs: u64) -> Value {
        self.app.wait_incident(id, secs, |i| i["state"] == state).await
    }

    /// Restarts medic on the same data dir and config.
    pub async fn restart(self) -> Self {
        let World { sshd, nginx, llm, smtp, app, rules, options_settings } = self;
        let dir = app.stop().await;
        let app = TestApp::spawn_in(dir, options_settings.clone()).await;
        World { sshd, nginx, llm, smtp, app, rules, options_settings }
    }

    /// GETs an approval link's confirm page and returns its hidden form fields.
    pub async fn confirm_fields(&self, link: &str) -> std::collections::HashMap<String, String> {
        let page = self.app.client.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        form_fields(&page.text().await.unwrap())
    }

    /// An incident waiting for approval of the nginx start command (level 2 recommends it), and its email.
    pub async fn awaiting_approval(&self, root_cause: &str) -> (String, crate::smtp::Mail) {
        self.nginx.start();
        self.nginx.stop();
        self.l2_says(root_cause, Some(&self.start_command()));
        let id = self.down().await;
        self.wait_state(&id, "awaiting_approval", 40).await;
        let mail = self.smtp().wait_for("Approval needed", 15).await;
        (id, mail)
    }

    /// POSTs a form to a link; returns the status and the page.
    pub async fn post_form<K: serde::Serialize, V: serde::Serialize>(
        &self,
        link: &str,
        form: &[(K, V)],
    ) -> (u16, String) {
        let r = self.app.client.post(link).form(form).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The status a GET of a confirm link answers.
    pub async fn confirm_fields_status(&self, link: &str) -> u16 {
        self.app.client.get(link).send().await.unwrap().status().as_u16()
    }

    pub fn token(&self) -> &'static str {
        TOKEN
    }
}

/// Reads the confirm page's hidden fields.
pub fn form_fields(html: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = part.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
        let value = part.split("value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
        out.insert(name.to_string(), value.to_string());
    }
    out
}
