//! Diagnosis levels against fake Ollama, Anthropic and OpenAI-compatible servers in their wire formats.

use std::time::Duration;

use medic::config::Secret;
use medic::diagnose::prompt::PromptContext;
use medic::diagnose::{DiagnoseConfig, DiagnoseError, Diagnoser, ProviderKind};
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply, anthropic_message, ollama_chat, openai_completion};
use crate::world::{Options, World};

fn config(fake: &FakeLlm) -> DiagnoseConfig {
    let mut c = DiagnoseConfig::default();
    c.l1.url = Some(format!("{}/", fake.base).parse().unwrap());
    c.l1.timeout = Duration::from_millis(800);
    c.l1.max_retries = 1;
    c.l2.url = Some(fake.base.parse().unwrap());
    c.l2.api_key = Some(Secret::new("sk-ant-test"));
    c.l2.timeout = Duration::from_secs(2);
    c.l2.max_retries = 2;
    c
}

fn context() -> PromptContext {
    PromptContext {
        evidence: "nginx.service: Failed".into(),
        nonce: "abc".into(),
        schema: "{}".into(),
        ..Default::default()
    }
}

fn l1_reply(content: &str) -> Reply {
    Reply::ok(ollama_chat(content))
}

#[tokio::test]
async fn level_1_replies_that_are_not_the_schema_escalate_as_unparseable() {
    let fake = FakeLlm::start().await;
    let diagnoser = Diagnoser::new(config(&fake)).unwrap();
    let cases = [
        ("", "empty reply"),
        ("nginx is down, restart it", "prose"),
        (
            "Sure! {\"cause\":\"x\",\"confidence\":0.9,\"action_command\":\"systemctl restart nginx\",\"rationale\":\"\"}",
            "prose around JSON",
        ),
        ("{\"cause\": \"x\", \"confidence\": 0.9", "malformed JSON"),
        ("{\"cause\":\"x\",\"confidence\":0.9,\"rationale\":\"\",\"run_now\":true}", "missing action_command"),
    ];
    for (content, why) in cases {
        fake.script("ollama_chat", vec![l1_reply(content)]);
        let (result, record) = diagnoser.level1(&context()).await;
        let error = result.expect_err(why);
        assert!(matches!(error, DiagnoseError::Unparseable(_)), "{why}: {error:?}");
        assert_eq!(error.escalation_reason(), "unparseable reply", "{why}");
        assert!(record.unwrap().outcome.starts_with("unparseable reply"), "{why}");
    }
    // A server that does not enforce the schema may add fields: ignored (and logged), not an escalation.
    fake.script(
        "ollama_chat",
        vec![l1_reply(
            "{\"cause\":\"x\",\"confidence\":0.9,\"action_command\":\"none\",\"rationale\":\"\",\"run_now\":true,\"command\":\"rm -rf /\"}",
        )],
    );
    let (result, record) = diagnoser.level1(&context()).await;
    assert_eq!(result.expect("extra fields are ignored").action_command, None);
    assert_eq!(record.unwrap().outcome, "replied");
    // A fenced JSON object is the other leniency; the command inside stays a plain string for the gate.
    fake.script("ollama_chat", vec![l1_reply("```json\n{\"cause\":\"x\",\"confidence\":0.9,\"action_command\":\"`systemctl restart nginx`\",\"rationale\":\"\"}\n```")]);
    let (result, _) = diagnoser.level1(&context()).await;
    let d = result.unwrap();
    assert_eq!(d.action_command.as_deref(), Some("`systemctl restart nginx`"));
    let gate = medic::gate::Gate::from_config(&Default::default()).unwrap();
    assert_eq!(
        gate.check(d.action_command.as_deref().unwrap(), None, medic::gate::Authority::Automatic).kind(),
        "deny"
    );
}

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_retried_then_reported_unavailable() {
    let fake = FakeLlm::start().await;
    let diagnoser = Diagnoser::new(config(&fake)).unwrap();
    fake.script("ollama_chat", vec![Reply::ok(ollama_chat("{}")).delayed(Duration::from_secs(3))]);
    let started = std::time::Instant::now();
    let (result, _) = diagnoser.level1(&context()).await;
    let error = result.unwrap_err();
    assert!(matches!(error, DiagnoseError::Timeout(_)), "{error:?}");
    assert!(error.escalation_reason().starts_with("provider unavailable"));
    assert_eq!(fake.requests("ollama_chat").len(), 2, "one retry");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn level_2_honours_429_retry_after_then_succeeds_and_gives_up_on_529() {
    let fake = FakeLlm::start().await;
    let diagnoser = Diagnoser::new(config(&fake)).unwrap();
    let good = json!({"root_cause": "r", "action_command": "systemctl restart nginx", "rollback_command": null,
        "risk": "low", "confidence": 0.8, "requires_human_approval": false})
    .to_string();
    fake.script(
        "anthropic",
        vec![
            Reply::status(429, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}))
                .header("retry-after", "1"),
            Reply::ok(anthropic_message(&good)),
        ],
    );
    let started = std::time::Instant::now();
    let (result, record) = diagnoser.level2(&context()).await;
    let rec = result.unwrap();
    assert!(rec.requires_human_approval, "policy forces a human for L2");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for Retry-After");
    let record = record.unwrap();
    assert_eq!(record.attempts, 2);
    assert_eq!((record.tokens_in, record.tokens_out), (2095, 503));
    assert!((record.cost - 0.013830).abs() < 1e-9, "{}", record.cost);

    fake.script(
        "anthropic",
        vec![Reply::status(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )],
    );
    let (result, _) = diagnoser.level2(&context()).await;
    assert!(matches!(result.unwrap_err(), DiagnoseError::Overloaded { status: 529, attempts: 3 }));

    fake.script(
        "anthropic",
        vec![Reply::status(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        )],
    );
    let (result, _) = diagnoser.level2(&context()).await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("authentication_error: invalid x-api-key"), "{e}");
}

#[tokio::test]
async fn an_openai_compatible_server_can_serve_either_level() {
    let fake = FakeLlm::start().await;
    let mut c = config(&fake);
    c.l1.provider = ProviderKind::Openai;
    c.l1.url = Some(format!("{}/v1", fake.base).parse().unwrap());
    c.l1.api_key = Some(Secret::new("local-key"));
    c.l1.model = "qwen2.5-7b-instruct".into();
    let diagnoser = Diagnoser::new(c).unwrap();
    let content =
        json!({"cause": "stopped", "confidence": 0.9, "action_command": "systemctl restart nginx", "rationale": "r"})
            .to_string();
    fake.script("openai", vec![Reply::ok(openai_completion(&content))]);
    let (result, record) = diagnoser.level1(&context()).await;
    assert_eq!(result.unwrap().action_command.as_deref(), Some("systemctl restart nginx"));
    let record = record.unwrap();
    assert_eq!((record.provider.as_str(), record.tokens_in, record.tokens_out, record.cost), ("openai", 700, 50, 0.0));
    let request = &fake.requests("openai")[0];
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert_eq!(request["response_format"]["json_schema"]["schema"]["required"][0], "problem");
    assert_eq!(request["messages"][0]["role"], "system");
    assert_eq!(fake.request_headers("openai")[0]["authorization"], "Bearer local-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn low_confidence_goes_to_level_2_with_redacted_evidence_retrieved_fixes_and_costs_that_add_up() {
    let world = World::start(Options::default()).await;
    // History for retrieval: a validated fix and a rejected one for nginx.
    let memory =
        medic::memory::Memory::open(&medic::memory::MemoryConfig::default(), world.app.dir.path()).await.unwrap();
    let text = std::fs::read_to_string(crate::helpers::fixture_path("memory/past_incidents.jsonl")).unwrap();
    memory.import(&text).await.unwrap();
    drop(memory);
    let world = world.restart().await;
    world.nginx.start();
    world.nginx.stop();
    world.log_line(
        "2026/11/22 upstream auth failed for postgres://app:hunter2secret@db:5432/shop token=abcdef0123456789",
    );
    world.l1_says("not sure", 0.4, Some(&world.start_command()));
    world.l2_says("nginx stopped", None);
    let id = world.down().await;
    // Level 2 proposes nothing; level 1's low-confidence proposal is what a human is asked to approve.
    let incident = world.wait_state(&id, "awaiting_approval", 40).await;
    assert!(incident["escalation_reason"].as_str().unwrap().contains("confidence 0.40 is below 0.70"), "{incident}");
    let body = world.llm.requests("anthropic")[0].to_string();
    assert!(
        !body.contains("hunter2secret") && !body.contains("abcdef0123456789"),
        "no unredacted secret reaches the cloud"
    );
    assert!(body.contains("[REDACTED"), "redaction markers are there");
    assert!(
        body.contains("Validated fixes for similar incidents") && body.contains("systemctl restart nginx"),
        "retrieved fixes"
    );
    assert!(body.contains("rejected because logs were not the problem"), "negatives are labelled");
    assert!(!world.llm.requests("ollama_chat")[0].to_string().contains("hunter2secret"));
    // Costs: L1 is local (free), L2 priced; tokens from both.
    let cost = incident["cost_estimation"]["ai_cost"].as_f64().unwrap();
    assert!((cost - 0.013830).abs() < 1e-9, "{cost}");
    assert_eq!(incident["cost_estimation"]["tokens_used"], 812 + 64 + 2095 + 503);
    assert_eq!(world.app.store.spend_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap(), cost);
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_budget_stops_cloud_calls_and_says_so() {
    let world = World::start(Options { l1: false, ..Options::default() }).await;
    let mut settings = world.options_settings.clone();
    settings.diagnose.budget.per_day_usd = 0.01;
    let world = World { options_settings: settings, ..world }.restart().await;
    world.l2_says("nginx stopped", None);
    let first = world.down().await;
    world.app.wait_incident(&first, 40, |i| i["waiting_for"].is_string()).await;
    assert_eq!(world.llm.requests("anthropic").len(), 1);
    world.up().await;
    let second = world.down().await;
    let incident = world.app.wait_incident(&second, 40, |i| i["waiting_for"].is_string()).await;
    assert_eq!(world.llm.requests("anthropic").len(), 1, "no cloud call past the budget");
    let timeline: Vec<Value> = incident["timeline"].as_array().unwrap().clone();
    assert!(
        timeline.iter().any(|e| e["kind"] == "budget" && e["message"].as_str().unwrap().contains("budget exhausted")),
        "{timeline:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mail = loop {
        if let Some(m) =
            world.smtp().mails().into_iter().find(|m| m.subject.contains("Needs a human") && m.text.contains(&second))
        {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no escalation email for the second incident");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(mail.text.contains("budget exhausted"), "humans are emailed anyway: {}", mail.text);
    world.app.stop().await;
}
