//! Level 1 on a real model (Qwen2.5-Coder-0.5B, Q4_K_M, CPU, behind scripts/llm/ollama-front.mjs):
//! 1. prompt size in real tokens (the model's own tokenizer) for each evidence fixture, with and without
//!    compaction, and the latency of one L1 call through medic's Ollama provider for each;
//! 2. end to end: nginx stopped → Uptime Kuma webhook → evidence over SSH → the real model → gate →
//!    executed → verified, three runs.
//!
//! Needs scripts/test-model.sh first. Run: cargo bench --bench l1 (threads: MEDIC_TEST_MODEL_THREADS,
//! default 1 here as in the tests; set 2 on an idle machine). Figures in BENCHMARKS.md.

#![allow(dead_code)]

#[path = "../tests/api/fake_llm.rs"]
mod fake_llm;
#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/api/model_front.rs"]
mod model_front;
#[path = "../tests/api/postgres.rs"]
mod postgres;
#[path = "../tests/api/process.rs"]
mod process;
#[path = "../tests/api/smtp.rs"]
mod smtp;
#[path = "../tests/api/sshd.rs"]
mod sshd;
#[path = "../tests/api/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use medic::diagnose::LlmProvider;
use medic::diagnose::compact::compact;
use medic::diagnose::ollama::OllamaProvider;
use medic::diagnose::parse::diagnosis_schema;
use medic::diagnose::prompt::{AllowedCommand, IncidentFacts, PromptContext, PromptKind, Prompts};
use medic::diagnose::{LlmRequest, ProviderKind};
use medic::domain::EvidenceItem;
use medic::domain::evidence::render;
use serde_json::{Value, json};

const FIXTURES: [&str; 5] =
    ["nginx_stopped", "nginx_port_conflict", "disk_full", "oom_killed", "upstream_down_injection"];

fn context(evidence: String) -> PromptContext {
    let choices = ["systemctl restart nginx", "systemctl start nginx", "docker restart cart-api"];
    let command_choices: Vec<AllowedCommand> =
        choices.iter().map(|c| AllowedCommand { template: c.to_string(), mode: "auto".into() }).collect();
    let schema = diagnosis_schema(&choices.map(String::from));
    PromptContext {
        incident: IncidentFacts {
            id: "01a20243-df87-77cd-932a-aa4f29e82557".into(),
            service: "nginx".into(),
            host: "web1".into(),
            monitor_name: "shop".into(),
            monitor_url: "https://shop.example.org/health".into(),
            message: "connect ECONNREFUSED".into(),
            since: "2026-11-22T03:35:13+00:00".into(),
            down_count: 1,
        },
        evidence,
        nonce: "q6fID_iYxsqv".into(),
        allowed_commands: command_choices.clone(),
        allowed_values: BTreeMap::new(),
        command_choices,
        schema: schema.to_string(),
        reply_schema: schema,
        min_confidence: 0.7,
        ..Default::default()
    }
}

async fn tokens(client: &reqwest::Client, base: &str, text: &str) -> usize {
    let reply: Value = client
        .post(format!("{base}/tokenize"))
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["tokens"].as_array().unwrap().len()
}

async fn prompts_and_calls(front: &model_front::ModelFront) {
    let client = reqwest::Client::new();
    let prompts = Prompts::new(None);
    let provider = OllamaProvider::new(
        &format!("{}/", front.base).parse().unwrap(),
        model_front::MODEL,
        Duration::from_secs(600),
        0,
    );
    println!(
        "| fixture | evidence chars raw → compact | prompt tokens raw → compact | L1 call raw → compact | answer (compact) |"
    );
    println!("|---|---|---|---|---|");
    let (mut sum_raw, mut sum_compact) = (0usize, 0usize);
    let mut calls: Vec<f64> = Vec::new();
    for name in FIXTURES {
        let path = format!("{}/tests/fixtures/evidence/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let items: Vec<EvidenceItem> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut row = Vec::new();
        let mut answer = String::new();
        for evidence in [render(&items, 12_000), render(&compact(&items, 40), 12_000)] {
            let chars = evidence.chars().count();
            let ctx = context(evidence);
            let (system, user) = prompts.render(PromptKind::L1, &ctx).unwrap();
            let count = tokens(&client, &front.base, &system).await + tokens(&client, &front.base, &user).await;
            let request = LlmRequest {
                system,
                user,
                schema: ctx.reply_schema.clone(),
                max_tokens: 512,
                temperature: 0.0,
                seed: None,
            };
            let started = Instant::now();
            let reply = provider.complete(&request).await.expect("the model answers");
            let took = started.elapsed();
            let parsed: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
            answer = format!("{} ({})", parsed["action_command"], parsed["confidence"]);
            row.push((chars, count, took, reply.tokens_in));
        }
        sum_raw += row[0].1;
        sum_compact += row[1].1;
        calls.push(row[1].2.as_secs_f64());
        println!(
            "| {name} | {} → {} | {} → {} ({:.0}%) | {:.1} s → {:.1} s | {answer} |",
            row[0].0,
            row[1].0,
            row[0].1,
            row[1].1,
            100.0 * (1.0 - row[1].1 as f64 / row[0].1 as f64),
            row[0].2.as_secs_f64(),
            row[1].2.as_secs_f64(),
        );
    }
    let fewer = 100.0 * (1.0 - sum_compact as f64 / sum_raw as f64);
    println!("all fixtures: {sum_raw} → {sum_compact} prompt tokens ({fewer:.0}% fewer)\n");
    println!(
        "RESULT | L1 prompt tokens, 5 evidence fixtures, raw → compact | {sum_raw} → {sum_compact} ({fewer:.0}% fewer) | (none)"
    );
    println!("RESULT | L1 call, real 0.5B model on CPU, compact prompt, median | {:.1} s | (none)", median(&mut calls));
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn end_to_end(front: &model_front::ModelFront) {
    let mut totals: Vec<f64> = Vec::new();
    println!("| run | webhook → resolved | of which the L1 call | outcome |");
    println!("|---|---|---|---|");
    for run in 1..=3 {
        let world = world::World::start(world::Options {
            l2: false,
            rules: Some(model_front::RULES.into()),
            verify_deadline: Duration::from_secs(8),
            l1_backend: Some(world::L1Backend {
                provider: ProviderKind::Ollama,
                base: format!("{}/", front.base),
                model: model_front::MODEL.into(),
                timeout: Duration::from_secs(600),
            }),
            // The model's one reply runs if the gate allows it (as in tests/api/real_model.rs): this
            // measures the loop's latency, not the model's judgement (benches/decisions.rs does that).
            tweak: Some(|s, _| s.diagnose.min_confidence = 0.0),
            ..world::Options::default()
        })
        .await;
        world.nginx.start();
        world.nginx.stop();
        let started = Instant::now();
        let id = world.down().await;
        let incident = world.app.wait_incident(&id, 600, model_front::is_settled).await;
        let total = started.elapsed();
        totals.push(total.as_secs_f64());
        let call = incident["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "model_call")
            .map(|e| e["data"]["duration_ms"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        println!(
            "| {run} | {:.1} s | {:.1} s | {} |",
            total.as_secs_f64(),
            call as f64 / 1000.0,
            incident["state"].as_str().unwrap()
        );
        world.app.stop().await;
    }
    println!(
        "RESULT | real model end to end, webhook → verified fix, median of 3 | {:.1} s | (none)",
        median(&mut totals)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: compile only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let front = model_front::ModelFront::start();
    println!("threads: {}\n", std::env::var("MEDIC_TEST_MODEL_THREADS").unwrap_or_else(|_| "1".into()));
    prompts_and_calls(&front).await;
    end_to_end(&front).await;
}
