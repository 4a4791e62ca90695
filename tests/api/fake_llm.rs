//! Fake cloud/LLM APIs as real HTTP servers on 127.0.0.1, answering in the real wire formats (Ollama
//! `/api/chat` and `/api/embed`, Anthropic `/v1/messages`, OpenAI-compatible `/v1/chat/completions`).
//! Each records the requests it got; answers are queued per endpoint (the last one repeats).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body, delay: Duration::ZERO, headers: vec![] }
    }
    pub fn status(status: u16, body: Value) -> Self {
        Self { status, body, delay: Duration::ZERO, headers: vec![] }
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Default)]
struct Inner {
    queues: HashMap<&'static str, VecDeque<Reply>>,
    requests: Vec<(String, HeaderMap, Value)>,
}

#[derive(Clone, Default)]
pub struct FakeLlm {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

/// Ollama's reply to `/api/chat` with `content` as the assistant message.
pub fn ollama_chat(content: &str) -> Value {
    json!({
        "model": "qwen2.5:7b-instruct",
        "created_at": "2026-11-22T03:35:20.123456Z",
        "message": {"role": "assistant", "content": content},
        "done_reason": "stop",
        "done": true,
        "total_duration": 1_234_567_890u64,
        "load_duration": 12_345_678u64,
        "prompt_eval_count": 812,
        "prompt_eval_duration": 456_789_000u64,
        "eval_count": 64,
        "eval_duration": 765_432_000u64
    })
}

/// Anthropic's Messages API reply with `text` as the only content block.
pub fn anthropic_message(text: &str) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    })
}

/// OpenAI-compatible chat completion reply.
pub fn openai_completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_764_000_000u64,
        "model": "qwen2.5-7b-instruct",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 700, "completion_tokens": 50, "total_tokens": 750}
    })
}

/// Deterministic "semantic" embedding: one dimension per concept, so synonyms land together.
pub fn concept_embedding(text: &str) -> Vec<f32> {
    let concepts: [&[&str]; 5] = [
        &["disk", "storage", "space", "full", "volume", "exhausted", "capacity"],
        &["memory", "oom", "heap", "ram"],
        &["refused", "unreachable", "down", "stopped", "dead"],
        &["certificate", "tls", "ssl", "expired"],
        &["nginx", "web", "http"],
    ];
    let lower = text.to_lowercase();
    let mut v: Vec<f32> =
        concepts.iter().map(|words| words.iter().filter(|w| lower.contains(*w)).count() as f32).collect();
    v.push(0.05);
    v
}

async fn handle(state: FakeLlm, endpoint: &'static str, headers: HeaderMap, body: Value) -> Response {
    let reply = {
        let mut inner = state.inner.lock().unwrap();
        inner.requests.push((endpoint.to_string(), headers, body.clone()));
        let queue = inner.queues.entry(endpoint).or_default();
        if queue.len() > 1 { queue.pop_front() } else { queue.front().cloned() }
    };
    let Some(reply) = reply else {
        if endpoint == "ollama_embed" {
            let inputs: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                _ => vec![],
            };
            let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| concept_embedding(t)).collect();
            return Json(json!({"model": body["model"], "embeddings": embeddings})).into_response();
        }
        return (StatusCode::INTERNAL_SERVER_ERROR, "no scripted reply").into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), Json(reply.body)).into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    response
}

impl FakeLlm {
    pub async fn start() -> Self {
        let mut fake = FakeLlm::default();
        let state = fake.clone();
        let route = |endpoint: &'static str| {
            let state = state.clone();
            post(move |headers: HeaderMap, Json(body): Json<Value>| handle(state.clone(), endpoint, headers, body))
        };
        let app: Router = Router::new()
            .route("/api/chat", route("ollama_chat"))
            .route("/api/embed", route("ollama_embed"))
            // Ollama's model list, in its wire format (`medic doctor` reads it).
            .route(
                "/api/tags",
                axum::routing::get(|| async {
                    Json(serde_json::json!({"models": [{"name": "qwen2.5:7b-instruct", "model": "qwen2.5:7b-instruct",
                        "modified_at": "2026-11-01T10:00:00Z", "size": 4683087332u64, "digest": "845dbda0ea48",
                        "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}}]}))
                }),
            )
            .route("/v1/messages", route("anthropic"))
            .route("/v1/chat/completions", route("openai"))
            .with_state(());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Queues answers for an endpoint: "ollama_chat", "ollama_embed", "anthropic", "openai".
    pub fn script(&self, endpoint: &'static str, replies: Vec<Reply>) {
        self.inner.lock().unwrap().queues.insert(endpoint, replies.into());
    }

    fn recorded(&self, endpoint: &str) -> Vec<(HeaderMap, Value)> {
        let inner = self.inner.lock().unwrap();
        inner.requests.iter().filter(|(e, _, _)| e == endpoint).map(|(_, h, b)| (h.clone(), b.clone())).collect()
    }

    pub fn requests(&self, endpoint: &str) -> Vec<Value> {
        self.recorded(endpoint).into_iter().map(|(_, body)| body).collect()
    }

    pub fn request_headers(&self, endpoint: &str) -> Vec<HeaderMap> {
        self.recorded(endpoint).into_iter().map(|(headers, _)| headers).collect()
    }

    pub fn total_requests(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }
}
