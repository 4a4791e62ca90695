//! Level 1 through a local Ollama (ollama-rs): `/api/chat` with the reply's JSON schema as `format`,
//! temperature 0, a timeout (ollama-rs has none of its own) and bounded retries.

use std::time::Duration;

use async_trait::async_trait;
use ollama_rs::Ollama;
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::parameters::{FormatType, JsonStructure};
use ollama_rs::models::ModelOptions;

use super::provider::{Attempt, DiagnoseError, LlmProvider, LlmReply, LlmRequest, with_retries};

pub struct OllamaProvider {
    client: Ollama,
    model: String,
    timeout: Duration,
    max_retries: u32,
}

impl OllamaProvider {
    pub fn new(base_url: &url::Url, model: &str, timeout: Duration, max_retries: u32) -> Self {
        // ollama-rs joins API paths onto the base URL: a path prefix needs a trailing slash.
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Self { client: Ollama::from_url(base), model: model.to_string(), timeout, max_retries }
    }
}

fn classify(error: ollama_rs::error::OllamaError) -> Attempt {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("connect") || lower.contains("refused") || lower.contains("dns") || lower.contains("reset") {
        return Attempt::Retry { error: DiagnoseError::Unavailable(text), after: None };
    }
    if lower.contains("503")
        || lower.contains("502")
        || lower.contains("500")
        || lower.contains("429")
        || lower.contains("overload")
    {
        return Attempt::Retry { error: DiagnoseError::Unavailable(text), after: None };
    }
    if lower.contains("decode") || lower.contains("json") || lower.contains("deserial") {
        return Attempt::Fail(DiagnoseError::Unparseable(format!("ollama reply is not the chat wire format: {text}")));
    }
    Attempt::Fail(DiagnoseError::Rejected { status: 0, message: text })
}

#[async_trait]
impl LlmProvider for OllamaProvider {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, DiagnoseError> {
        let schema = schemars::Schema::try_from(request.schema.clone())
            .map_err(|e| DiagnoseError::Prompt(format!("reply schema is not a JSON schema: {e}")))?;
        with_retries(self.max_retries, || async {
            let chat = ChatMessageRequest::new(
                self.model.clone(),
                vec![ChatMessage::system(request.system.clone()), ChatMessage::user(request.user.clone())],
            )
            .format(FormatType::StructuredJson(Box::new(JsonStructure::new_for_schema(schema.clone()))))
            .options({
                let options =
                    ModelOptions::default().temperature(request.temperature).num_predict(request.max_tokens as i32);
                match request.seed {
                    Some(seed) => options.seed(seed as i32),
                    None => options,
                }
            });
            match tokio::time::timeout(self.timeout, self.client.send_chat_messages(chat)).await {
                Err(_) => Attempt::Retry { error: DiagnoseError::Timeout(self.timeout), after: None },
                Ok(Err(e)) => classify(e),
                Ok(Ok(response)) => {
                    let (tokens_in, tokens_out) =
                        response.final_data.as_ref().map(|d| (d.prompt_eval_count, d.eval_count)).unwrap_or((0, 0));
                    Attempt::Done(LlmReply { text: response.message.content, tokens_in, tokens_out, attempts: 0 })
                }
            }
        })
        .await
    }

    fn name(&self) -> &'static str {
        "ollama"
    }

    fn model(&self) -> &str {
        &self.model
    }
}
