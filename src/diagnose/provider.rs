//! The LLM provider interface and what all providers share: requests, replies, errors, retries.
//! Three ship: Ollama (ollama-rs), Anthropic Messages API and OpenAI-compatible chat completions (reqwest).
//! Only `diagnose/` knows LLM wire formats.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::fault::Fault;

/// One model call.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub system: String,
    pub user: String,
    /// JSON schema of the expected reply (Ollama `format`, OpenAI `response_format`; in the prompt for all).
    pub schema: Value,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Sampling seed (Ollama `options.seed`, OpenAI `seed`), so that k samples are k different draws
    /// and a rerun of the same incident draws the same ones.
    pub seed: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmReply {
    pub text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// How many attempts it took (retries on 429/529/5xx/timeouts).
    pub attempts: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DiagnoseError {
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("provider timed out after {0:?}")]
    Timeout(Duration),
    #[error("provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("rate limited or overloaded ({status}) after {attempts} attempts")]
    Overloaded { status: u16, attempts: u32 },
    #[error("unparseable reply: {0}")]
    Unparseable(String),
    #[error("prompt: {0}")]
    Prompt(String),
    #[error("budget exhausted: {0}")]
    Budget(String),
}

impl DiagnoseError {
    pub fn fault(&self) -> Fault {
        match self {
            DiagnoseError::Unavailable(_) | DiagnoseError::Timeout(_) | DiagnoseError::Overloaded { .. } => {
                Fault::Transient
            }
            DiagnoseError::Rejected { .. } | DiagnoseError::Prompt(_) => Fault::Config,
            DiagnoseError::Unparseable(_) | DiagnoseError::Budget(_) => Fault::Refused,
        }
    }

    /// The escalation reason as the timeline and emails show it.
    pub fn escalation_reason(&self) -> String {
        match self {
            DiagnoseError::Unparseable(_) => "unparseable reply".into(),
            DiagnoseError::Unavailable(_) | DiagnoseError::Timeout(_) | DiagnoseError::Overloaded { .. } => {
                format!("provider unavailable: {self}")
            }
            other => other.to_string(),
        }
    }
}

#[async_trait]
pub trait LlmProvider: Send + Sync {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, DiagnoseError>;
    /// "ollama", "anthropic", "openai".
    fn name(&self) -> &'static str;
    fn model(&self) -> &str;
}

/// One HTTP attempt's outcome, for the shared retry loop.
pub(crate) enum Attempt {
    Done(LlmReply),
    /// Worth retrying; wait at least this long (Retry-After) if given.
    Retry {
        error: DiagnoseError,
        after: Option<Duration>,
    },
    Fail(DiagnoseError),
}

/// Retries transient failures with exponential backoff (honouring Retry-After), up to `max_retries`.
pub(crate) async fn with_retries<F, Fut>(max_retries: u32, mut attempt: F) -> Result<LlmReply, DiagnoseError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let mut backoff = Duration::from_millis(500);
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Attempt::Done(mut reply) => {
                reply.attempts = n;
                return Ok(reply);
            }
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry { error, after } => {
                if n > max_retries {
                    return Err(match error {
                        DiagnoseError::Overloaded { status, .. } => DiagnoseError::Overloaded { status, attempts: n },
                        other => other,
                    });
                }
                let wait = after.unwrap_or(backoff).min(Duration::from_secs(60));
                tracing::warn!(error = %error, attempt = n, ?wait, "Model call failed; retrying.");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(20));
            }
        }
    }
}

/// Maps a reqwest send error: timeouts and refused connections are transient.
pub(crate) fn send_error(e: reqwest::Error, timeout: Duration) -> Attempt {
    if e.is_timeout() {
        Attempt::Retry { error: DiagnoseError::Timeout(timeout), after: None }
    } else {
        Attempt::Retry { error: DiagnoseError::Unavailable(crate::transport::error_text(&e)), after: None }
    }
}

/// Sends a request and reads (status, Retry-After, body); a failure to send or read is an `Attempt` to
/// return (timeouts and refused connections are retried).
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, Option<Duration>, String), Attempt> {
    let response = request.send().await.map_err(|e| send_error(e, timeout))?;
    let status = response.status().as_u16();
    let after = retry_after(response.headers());
    let text = response.text().await.map_err(|e| send_error(e, timeout))?;
    Ok((status, after, text))
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok().map(Duration::from_secs_f64)
}
