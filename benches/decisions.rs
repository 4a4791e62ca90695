//! Level-1 decisions on the project's corpus (`tests/fixtures/decisions/corpus.json`: 35 scenarios, 14
//! fixable by an allowed command, 21 where none helps) with a real model (Qwen2.5-Coder-0.5B by default,
//! the 1.5B with MEDIC_BENCH_MODEL=1.5b; CPU, behind scripts/llm/ollama-front.mjs).
//!
//! Three configurations, each through medic's real pieces (built-in gate rules, evidence checks,
//! prompts, Ollama provider, reply parsing, the sampled level 1):
//! - `before`: the previous prompt and schema (benches/l1_baseline/), one reply, the model's own
//!   confidence, no checks: what medic did until this change;
//! - `model-only`: the new prompt and schema, 3 samples, agreement as confidence, no checks;
//! - `medic`: the default: checks first (veto, known fix), then level 1 sampled with the checks' support.
//!
//! The order of the steps mirrors `pipeline/decide.rs` without the store, memory and action policy
//! (no history here). Scored per scenario: right on fixable (the expected command ran automatically,
//! or was offered for approval when its template needs a human), right "none" (nothing ran
//! automatically), wrong automatic (something ran that should not have), latency and model calls.
//!
//! Run: scripts/bench-l1.sh (fetches the model, then `cargo bench --bench decisions`).
//! Threads: MEDIC_TEST_MODEL_THREADS (default 1). Figures in BENCHMARKS.md.

#![allow(dead_code)]

#[path = "../tests/api/model_front.rs"]
mod model_front;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use medic::diagnose::compact::compact;
use medic::diagnose::parse::diagnosis_schema;
use medic::diagnose::prompt::{AllowedCommand, IncidentFacts, PromptContext, evidence_nonce};
use medic::diagnose::{DiagnoseConfig, Diagnoser, checks, l1};
use medic::domain::EvidenceItem;
use medic::domain::evidence::render;
use medic::gate::{Authority, Gate, Verdict};

#[derive(serde::Deserialize)]
struct Scenario {
    name: String,
    class: String,
    service: String,
    container: Option<String>,
    message: String,
    evidence: Vec<EvidenceItem>,
    expected: String,
    mode: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Ran without a human.
    Automatic(String),
    /// Escalated; the command a human would be asked to approve, if any.
    Offered(Option<String>),
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Before,
    ModelOnly,
    Medic,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Before => "before",
            Config::ModelOnly => "model-only",
            Config::Medic => "medic",
        }
    }
}

/// The allowed commands within the incident's scope, spelled out as the pipeline does.
fn choices(gate: &Gate, s: &Scenario) -> Vec<AllowedCommand> {
    let mut out = Vec::new();
    let mut templates = gate.action_templates(None);
    templates.sort_by_key(|(_, mode)| format!("{mode:?}") == "Approval");
    for (template, mode) in templates {
        let mut filled = template.clone();
        if filled.contains("{service}") {
            if !gate.placeholder_accepts_action("service", &s.service, None) {
                continue;
            }
            filled = filled.replace("{service}", &s.service);
        }
        if filled.contains("{container}") {
            let Some(c) = &s.container else { continue };
            filled = filled.replace("{container}", c);
        }
        let mode = format!("{mode:?}").to_lowercase();
        if let Some(name) = filled.find('{').map(|i| &filled[i + 1..filled[i..].find('}').unwrap() + i]) {
            for value in gate.allowed_values(name, None).unwrap_or_default() {
                let marker = format!("{{{name}}}");
                out.push(AllowedCommand { template: filled.replace(&marker, &value), mode: mode.clone() });
            }
            continue;
        }
        out.push(AllowedCommand { template: filled, mode });
    }
    out
}

fn context(gate: &Gate, s: &Scenario, config: Config, findings: String) -> PromptContext {
    let command_choices = choices(gate, s);
    let names: Vec<String> = command_choices.iter().map(|c| c.template.clone()).collect();
    let mut schema = diagnosis_schema(&names);
    if config == Config::Before {
        // The schema as it was: no problem class.
        schema["properties"].as_object_mut().unwrap().remove("problem");
        schema["required"] = serde_json::json!(["cause", "confidence", "action_command", "rationale"]);
    }
    let evidence = render(&compact(&s.evidence, 40), 12_000);
    PromptContext {
        incident: IncidentFacts {
            id: uuid::Uuid::now_v7().to_string(),
            service: s.service.clone(),
            host: "web1".into(),
            monitor_name: format!("{} health", s.service),
            monitor_url: "https://shop.example.org/health".into(),
            message: s.message.clone(),
            since: "2026-11-22T03:35:13+00:00".into(),
            down_count: 1,
        },
        nonce: if config == Config::Before { medic::random_token(9) } else { evidence_nonce(&evidence) },
        evidence,
        findings,
        allowed_commands: Vec::new(),
        allowed_values: BTreeMap::new(),
        command_choices,
        schema: serde_json::to_string(&schema).unwrap(),
        reply_schema: schema,
        min_confidence: 0.7,
        ..Default::default()
    }
}

/// The gate's verdict as the pipeline uses it: automatic only when allowed and in scope.
fn automatic_or_offer(gate: &Gate, s: &Scenario, command: &str) -> Outcome {
    match gate.check(command, None, Authority::Automatic) {
        Verdict::Allow(cmd)
            if medic::gate::out_of_scope(cmd.bindings(), &s.service, s.container.as_deref()).is_none() =>
        {
            Outcome::Automatic(cmd.argv().join(" "))
        }
        Verdict::Allow(cmd) => Outcome::Offered(Some(cmd.argv().join(" "))),
        Verdict::NeedsApproval(p) => Outcome::Offered(Some(p.argv.join(" "))),
        Verdict::Deny { .. } => Outcome::Offered(None),
    }
}

fn offer(gate: &Gate, command: Option<&str>) -> Outcome {
    let argv = command.map(|c| gate.check(c, None, Authority::Automatic)).and_then(|v| match v {
        Verdict::Allow(cmd) => Some(cmd.argv().join(" ")),
        Verdict::NeedsApproval(p) => Some(p.argv.join(" ")),
        Verdict::Deny { .. } => None,
    });
    Outcome::Offered(argv)
}

/// (outcome, model calls, level 1's confidence when it proposed a command).
async fn decide(diagnoser: &Diagnoser, gate: &Gate, s: &Scenario, config: Config) -> (Outcome, usize, Option<f64>) {
    let min = diagnoser.config().min_confidence;
    let assessment =
        (config == Config::Medic).then(|| checks::assess(&s.evidence, &s.message, &s.service, s.container.as_deref()));
    if let Some(a) = &assessment {
        let fix = a.known_fix(&s.service, s.container.as_deref());
        if a.veto().is_some() {
            return (offer(gate, fix.as_ref().and_then(|f| f.action_command.as_deref())), 0, None);
        }
        if let Some(fix) = fix {
            return (automatic_or_offer(gate, s, fix.action_command.as_deref().unwrap()), 0, None);
        }
    }
    let findings = assessment.as_ref().map(|a| a.summary()).unwrap_or_default();
    let ctx = context(gate, s, config, findings);
    let support = assessment
        .as_ref()
        .map(|a| move |command: &str| l1::support_of(a, gate, command, None, &s.service, s.container.as_deref()));
    let (result, records) = diagnoser.level1_sampled(&ctx, support).await;
    let calls = records.len();
    let Ok((d, _)) = result else { return (Outcome::Offered(None), calls, None) };
    let Some(command) = d.action_command.as_deref() else { return (Outcome::Offered(None), calls, None) };
    if d.confidence < min {
        return (offer(gate, Some(command)), calls, Some(d.confidence));
    }
    (automatic_or_offer(gate, s, command), calls, Some(d.confidence))
}

struct Tally {
    right_fixable: usize,
    fixable: usize,
    right_none: usize,
    none: usize,
    wrong_auto: Vec<String>,
    lost_fixes: Vec<String>,
    latencies: Vec<Duration>,
    calls: usize,
    /// Level 1's proposals that the gate would let run automatically: (confidence, right command).
    scored: Vec<(f64, bool)>,
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: compile only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let corpus: Vec<Scenario> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/decisions/corpus.json")).unwrap(),
    )
    .unwrap();
    let which = std::env::var("MEDIC_BENCH_MODEL").unwrap_or_else(|_| "0.5b".into());
    let (file, name) = match which.as_str() {
        "1.5b" => ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "qwen2.5-coder:1.5b"),
        _ => ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", model_front::MODEL),
    };
    let front = model_front::ModelFront::start_with(file, name);
    let gate = Gate::from_config(&Default::default()).unwrap();
    let configs: Vec<Config> = match std::env::var("MEDIC_BENCH_CONFIGS") {
        Ok(list) => [Config::Before, Config::ModelOnly, Config::Medic]
            .into_iter()
            .filter(|c| list.split(',').any(|n| n == c.name()))
            .collect(),
        Err(_) => vec![Config::Before, Config::ModelOnly, Config::Medic],
    };
    println!("model {name}, {} scenarios", corpus.len());
    for config in configs {
        let mut dc = DiagnoseConfig::default();
        dc.l1.url = Some(front.base.parse().unwrap());
        dc.l1.model = name.into();
        dc.l1.timeout = Duration::from_secs(120);
        dc.l1.max_retries = 0;
        match config {
            Config::Before => {
                dc.prompts_dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/l1_baseline").into());
                dc.l1_samples = 1;
                dc.evidence_checks = false;
            }
            Config::ModelOnly => dc.evidence_checks = false,
            Config::Medic => {}
        }
        let diagnoser = Diagnoser::new(dc).unwrap();
        let mut t = Tally {
            right_fixable: 0,
            fixable: 0,
            right_none: 0,
            none: 0,
            wrong_auto: vec![],
            lost_fixes: vec![],
            latencies: vec![],
            calls: 0,
            scored: vec![],
        };
        for s in &corpus {
            let started = Instant::now();
            let (outcome, calls, confidence) = decide(&diagnoser, &gate, s, config).await;
            t.latencies.push(started.elapsed());
            t.calls += calls;
            let expected = s.expected.as_str();
            if expected == "none" {
                t.none += 1;
            } else {
                t.fixable += 1;
            }
            let right = match (&outcome, expected, s.mode.as_str()) {
                (Outcome::Automatic(_), "none", _) => false,
                (_, "none", _) => true,
                (Outcome::Automatic(c), e, "auto") => c == e,
                (Outcome::Offered(Some(c)), e, "approval") => c == e,
                _ => false,
            };
            match (right, expected) {
                (true, "none") => t.right_none += 1,
                (true, _) => t.right_fixable += 1,
                (false, _) => {}
            }
            if let Some(c) = confidence {
                // Would this proposal run with the threshold lowered to 0? Score it for calibration.
                let runnable = matches!(
                    automatic_or_offer(
                        &gate,
                        s,
                        match &outcome {
                            Outcome::Automatic(c) | Outcome::Offered(Some(c)) => c,
                            Outcome::Offered(None) => "",
                        }
                    ),
                    Outcome::Automatic(_)
                );
                if runnable {
                    let command_right = match &outcome {
                        Outcome::Automatic(x) | Outcome::Offered(Some(x)) => x == expected && s.mode == "auto",
                        Outcome::Offered(None) => false,
                    };
                    t.scored.push((c, command_right));
                }
            }
            if let Outcome::Automatic(c) = &outcome
                && !right
            {
                t.wrong_auto.push(format!("{}: ran `{c}`", s.name));
            }
            if !right && expected != "none" {
                t.lost_fixes.push(format!("{} ({}): {:?}", s.name, s.class, outcome));
            }
            println!(
                "  [{}] {:32} expected {:42} -> {:?} ({} call(s), {:.1} s)",
                config.name(),
                s.name,
                expected,
                outcome,
                calls,
                started.elapsed().as_secs_f64()
            );
        }
        t.latencies.sort();
        let p50 = t.latencies[t.latencies.len() / 2];
        let max = *t.latencies.last().unwrap();
        println!(
            "{:10} right on fixable {}/{}  right none {}/{}  wrong automatic {}  model calls {}  latency p50 {:.1} s max {:.1} s",
            config.name(),
            t.right_fixable,
            t.fixable,
            t.right_none,
            t.none,
            t.wrong_auto.len(),
            t.calls,
            p50.as_secs_f64(),
            max.as_secs_f64()
        );
        // Calibration: at each threshold, how many of level 1's runnable proposals would run, right/wrong.
        let mut thresholds: Vec<f64> = t.scored.iter().map(|(c, _)| *c).collect();
        thresholds.extend([0.5, 0.7, 0.9]);
        thresholds.sort_by(|a, b| a.partial_cmp(b).unwrap());
        thresholds.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let line: Vec<String> = thresholds
            .iter()
            .map(|th| {
                let right = t.scored.iter().filter(|(c, ok)| *c >= *th && *ok).count();
                let wrong = t.scored.iter().filter(|(c, ok)| *c >= *th && !*ok).count();
                format!("≥{th:.2}: {right} right / {wrong} wrong")
            })
            .collect();
        println!("    level-1 calibration ({} runnable proposals): {}", t.scored.len(), line.join(", "));
        for w in &t.wrong_auto {
            println!("    wrong automatic: {w}");
        }
        for l in &t.lost_fixes {
            println!("    not fixed: {l}");
        }
    }
}
