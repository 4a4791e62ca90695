//! OpenAI-compatible chat completions (vLLM, llama.cpp server, LM Studio, …), usable for L1 or L2:
//! `POST /v1/chat/completions` with `response_format: json_schema`, optional bearer key.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::provider::{Attempt, DiagnoseError, LlmProvider, LlmReply, LlmRequest, send_json, with_retries};
use crate::conf::Secret;

pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
    timeout: Duration,
    max_retries: u32,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiProvider {
    pub fn new(base_url: &url::Url, key: Option<Secret>, model: &str, timeout: Duration, max_retries: u32) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().expect("http client builds");
        let base = base_url.as_str().trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        };
        Self { http, url, key, model: model.to_string(), timeout, max_retries }
    }

    async fn attempt(&self, request: &LlmRequest) -> Attempt {
        let mut body = json!({
            "model": self.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "medic_reply", "strict": true, "schema": request.schema}},
        });
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        let mut call = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            call = call.bearer_auth(key.expose());
        }
        let (status, after, text) = match send_json(call, self.timeout).await {
            Ok(reply) => reply,
            Err(attempt) => return attempt,
        };
        match status {
            200 => match serde_json::from_str::<Completion>(&text) {
                Ok(c) => {
                    let content = c.choices.into_iter().next().and_then(|ch| ch.message.content).unwrap_or_default();
                    let (tokens_in, tokens_out) =
                        c.usage.map(|u| (u.prompt_tokens, u.completion_tokens)).unwrap_or((0, 0));
                    Attempt::Done(LlmReply { text: content, tokens_in, tokens_out, attempts: 0 })
                }
                Err(e) => Attempt::Fail(DiagnoseError::Unparseable(format!("not a chat completion: {e}"))),
            },
            429 | 503 | 529 => Attempt::Retry { error: DiagnoseError::Overloaded { status, attempts: 0 }, after },
            500..=599 => Attempt::Retry { error: DiagnoseError::Unavailable(format!("HTTP {status}")), after },
            _ => Attempt::Fail(DiagnoseError::Rejected { status, message: text.chars().take(300).collect() }),
        }
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, DiagnoseError> {
        with_retries(self.max_retries, || self.attempt(request)).await
    }

    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }
}
