//! Level 2 through the Anthropic Messages API (reqwest): `POST /v1/messages` with `x-api-key` and
//! `anthropic-version`. 429 (rate limit) and 529 (overloaded) are retried honouring `Retry-After`; other
//! 4xx are a clear error naming Anthropic's own error type and message.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::provider::{Attempt, DiagnoseError, LlmProvider, LlmReply, LlmRequest, send_json, with_retries};
use crate::conf::Secret;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    http: reqwest::Client,
    url: String,
    key: Secret,
    model: String,
    timeout: Duration,
    max_retries: u32,
}

#[derive(Deserialize)]
struct MessagesReply {
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

impl AnthropicProvider {
    pub fn new(base_url: &url::Url, key: Secret, model: &str, timeout: Duration, max_retries: u32) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().expect("http client builds");
        let url = format!("{}/v1/messages", base_url.as_str().trim_end_matches('/'));
        Self { http, url, key, model: model.to_string(), timeout, max_retries }
    }

    async fn attempt(&self, request: &LlmRequest) -> Attempt {
        let body = json!({
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
        });
        let request = self
            .http
            .post(&self.url)
            .header("x-api-key", self.key.expose())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        let (status, after, text) = match send_json(request, self.timeout).await {
            Ok(reply) => reply,
            Err(attempt) => return attempt,
        };
        match status {
            200 => match serde_json::from_str::<MessagesReply>(&text) {
                Ok(reply) => {
                    let text: String =
                        reply.content.iter().filter(|b| b.kind == "text").map(|b| b.text.as_str()).collect();
                    Attempt::Done(LlmReply {
                        text,
                        tokens_in: reply.usage.input_tokens,
                        tokens_out: reply.usage.output_tokens,
                        attempts: 0,
                    })
                }
                Err(e) => Attempt::Fail(DiagnoseError::Unparseable(format!("not a Messages API reply: {e}"))),
            },
            429 | 529 => Attempt::Retry { error: DiagnoseError::Overloaded { status, attempts: 0 }, after },
            500..=599 => Attempt::Retry { error: DiagnoseError::Unavailable(format!("HTTP {status}")), after },
            _ => {
                let message = serde_json::from_str::<ErrorReply>(&text)
                    .map(|e| format!("{}: {}", e.error.kind, e.error.message))
                    .unwrap_or_else(|_| text.chars().take(300).collect());
                Attempt::Fail(DiagnoseError::Rejected { status, message })
            }
        }
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, DiagnoseError> {
        with_retries(self.max_retries, || self.attempt(request)).await
    }

    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }
}
