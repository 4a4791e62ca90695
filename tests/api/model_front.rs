//! A real local model for level 1: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) on CPU behind
//! `scripts/llm/ollama-front.mjs`, which speaks Ollama's `/api/chat` and OpenAI's
//! `/v1/chat/completions`. `scripts/test-model.sh` (run by `scripts/test.sh`) fetches, verifies and
//! caches the model and the runtime; this starts one front per test on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ModelFront {
    child: Child,
    pub base: String,
}

/// The model's name as the front reports it (medic sends whatever its config says).
pub const MODEL: &str = "qwen2.5-coder:0.5b";

/// Gate rules a small host would have, for real-model runs (tests and `benches/l1.rs`): the service's
/// control script as automatic fixes, a maintenance script behind a human, read-only diagnostics.
/// `{control}` and `{log}` are the test nginx's (see `world::Options::rules`).
pub const RULES: &str = r#"{
  "safe_commands": {
    "service_control": { "mode": "auto", "allowed": ["{control} start", "{control} restart"] },
    "maintenance_scripts": { "mode": "approval", "allowed": ["/usr/local/lib/medic/clean_logs.sh {service}"] },
    "blocked_patterns": ["rm -rf", "rm -r", "shutdown", "reboot", "mkfs", "curl ", "wget ", "| sh", "chmod", "touch"]
  },
  "placeholders": { "service": { "allowed": ["nginx"] }, "lines": { "range": [1, 5000] } },
  "diagnostics": { "allowed": ["{control} status", "tail -n {lines} {log}", "uptime", "free -m", "df -h"] }
}"#;

/// An incident the pipeline has taken as far as it goes without a human.
pub fn is_settled(incident: &serde_json::Value) -> bool {
    ["resolved", "escalated", "awaiting_approval", "failed"].contains(&incident["state"].as_str().unwrap_or(""))
}

fn cache() -> PathBuf {
    match std::env::var_os("MEDIC_LLM_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/medic/llm"),
    }
}

impl ModelFront {
    /// Starts the front and waits until the model is loaded. Threads: `MEDIC_TEST_MODEL_THREADS`, else 1
    /// (the test suite shares the cores).
    pub fn start() -> Self {
        Self::start_with("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", MODEL)
    }

    /// Starts the front on another GGUF file of the cache (`scripts/bench-l1.sh --model 1.5b` fetches one).
    pub fn start_with(file: &str, name: &str) -> Self {
        let cache = cache();
        let model = cache.join(file);
        let runtime = cache.join("runtime");
        assert!(
            model.is_file() && runtime.join("node_modules/node-llama-cpp").is_dir(),
            "the real-model tests need {} and {}: run scripts/test-model.sh (scripts/test.sh does)",
            model.display(),
            runtime.display()
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/llm/ollama-front.mjs");
        let threads = std::env::var("MEDIC_TEST_MODEL_THREADS").unwrap_or_else(|_| "1".into());
        let mut child = Command::new("node")
            .arg(script)
            .arg("--model")
            .arg(&model)
            .arg("--runtime")
            .arg(&runtime)
            .args(["--port", "0", "--threads", &threads, "--name", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the model front");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let started = Instant::now();
        let base = rx.recv_timeout(Duration::from_secs(90)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the model front did not load the model in {:?}", started.elapsed())
        });
        Self { child, base }
    }
}

impl Drop for ModelFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
