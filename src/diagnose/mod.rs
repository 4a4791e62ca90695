//! Diagnosis: level 0 (runbook rules here, memory hits via `memory/`), level 1 (a local model), level 2
//! (Claude, or any provider, with retrieved context). Prompts, strict reply parsing, providers, costs.
//!
//! Input: a [`prompt::PromptContext`] built by the pipeline (redacted evidence, allowed commands,
//! retrieved fixes). Output: a [`Diagnosis`] (L0/L1) or a [`Recommendation`] (L2), plus a [`CallRecord`]
//! for the cost ledger. Failure: a [`DiagnoseError`]; an unparseable reply, a timeout or an unavailable
//! provider becomes an escalation in the pipeline, never a crash and never an execution. The order of the
//! levels and the escalation policy live in `pipeline/`.

pub mod anthropic;
pub mod checks;
pub mod compact;
pub mod cost;
pub mod l0;
pub mod l1;
pub mod ollama;
pub mod openai;
pub mod parse;
pub mod prompt;
pub mod provider;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::conf::{ConfigError, Secret, empty_none};
use crate::domain::{Diagnosis, Recommendation};
use cost::{CallRecord, PriceTable};
use prompt::{PromptContext, PromptKind, Prompts};

pub use provider::{DiagnoseError, LlmProvider, LlmReply, LlmRequest};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Ollama,
    Anthropic,
    /// Any OpenAI-compatible server: vLLM, llama.cpp server, LM Studio, …
    Openai,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub provider: ProviderKind,
    /// Base URL; empty: this level is not configured.
    #[serde(with = "empty_none")]
    pub url: Option<url::Url>,
    pub model: String,
    /// API key (Anthropic, OpenAI-compatible). Also from `api_key_file`, or ANTHROPIC_API_KEY /
    /// OPENAI_API_KEY in the environment.
    #[serde(with = "empty_none")]
    pub api_key: Option<Secret>,
    #[serde(with = "empty_none")]
    pub api_key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_tokens: u32,
    pub temperature: f32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Cloud spend allowed per incident (US dollars); past it, no more cloud calls for that incident.
    pub per_incident_usd: f64,
    /// Cloud spend allowed per UTC day across all incidents.
    pub per_day_usd: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { per_incident_usd: 0.5, per_day_usd: 5.0 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnoseConfig {
    /// Directory with qwen_n1_analyst.md and claude_n2_expert.md; empty: the built-in copies.
    #[serde(with = "empty_none")]
    pub prompts_dir: Option<PathBuf>,
    /// Below this L1 confidence, escalate instead of acting.
    pub min_confidence: f64,
    /// Fix attempts per incident before escalating (each failed verification counts one).
    pub max_attempts: u32,
    /// A verified fix in memory for the same service at or above this similarity is used without a model.
    pub l0_min_similarity: f64,
    /// Past fixes (and rejected ones) given to L2.
    pub retrieval_k: usize,
    /// Characters of evidence put into a prompt.
    pub evidence_max_chars: usize,
    /// Compact the evidence in prompts (timestamps, ids and client fields stripped, repeats folded, the
    /// lines that matter kept); emails and the API keep the full evidence.
    pub compact_evidence: bool,
    /// With compaction, lines kept per diagnostic command.
    pub compact_max_lines: usize,
    /// Deterministic checks over the evidence before any model (`diagnose/checks.rs`): a finding such
    /// as a failing config test or a port taken by another process vetoes automatic action.
    pub evidence_checks: bool,
    /// Level-1 replies sampled per diagnosis; confidence = agreement × the checks' support
    /// (`diagnose/l1.rs`). 1: one reply at `l1.temperature`, agreement 1.
    pub l1_samples: u32,
    /// Temperature of the samples when `l1_samples` > 1 (seeds 1..k, so reruns draw the same).
    pub l1_sample_temperature: f64,
    /// Level 1 chooses its command from the allowed commands spelled out (an enum in the reply schema,
    /// enforced by Ollama and OpenAI-compatible servers) when there are at most 64 of them.
    pub constrain_l1_commands: bool,
    /// L2 recommendations always need a human unless this is false (they still pass the gate and policy).
    pub l2_requires_human_approval: bool,
    pub l1: ProviderConfig,
    pub l2: ProviderConfig,
    pub budget: BudgetConfig,
    pub prices: PriceTable,
    pub runbook: Vec<l0::RunbookRule>,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        Self {
            prompts_dir: None,
            min_confidence: 0.7,
            max_attempts: 2,
            l0_min_similarity: 0.8,
            retrieval_k: 5,
            evidence_max_chars: 12_000,
            compact_evidence: true,
            compact_max_lines: 40,
            constrain_l1_commands: true,
            evidence_checks: true,
            l1_samples: 3,
            l1_sample_temperature: 0.7,
            l2_requires_human_approval: true,
            l1: ProviderConfig {
                provider: ProviderKind::Ollama,
                url: None,
                model: "qwen2.5:7b-instruct".into(),
                api_key: None,
                api_key_file: None,
                timeout: Duration::from_secs(30),
                max_retries: 2,
                max_tokens: 512,
                temperature: 0.0,
            },
            l2: ProviderConfig {
                provider: ProviderKind::Anthropic,
                url: Some(url::Url::parse("https://api.anthropic.com").expect("static url")),
                model: "claude-sonnet-4-5".into(),
                api_key: None,
                api_key_file: None,
                timeout: Duration::from_secs(60),
                max_retries: 3,
                max_tokens: 1024,
                temperature: 0.0,
            },
            budget: BudgetConfig::default(),
            prices: cost::default_prices(),
            runbook: Vec::new(),
        }
    }
}

impl DiagnoseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(ConfigError::invalid("diagnose.min_confidence", "must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&self.l0_min_similarity) {
            return Err(ConfigError::invalid("diagnose.l0_min_similarity", "must be between 0 and 1"));
        }
        if self.compact_max_lines < 10 {
            return Err(ConfigError::invalid("diagnose.compact_max_lines", "must be at least 10"));
        }
        if !(1..=9).contains(&self.l1_samples) {
            return Err(ConfigError::invalid("diagnose.l1_samples", "must be between 1 and 9"));
        }
        if !(0.0..=2.0).contains(&self.l1_sample_temperature) {
            return Err(ConfigError::invalid("diagnose.l1_sample_temperature", "must be between 0 and 2"));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid("diagnose.max_attempts", "must be at least 1"));
        }
        for (key, p) in [("diagnose.l1", &self.l1), ("diagnose.l2", &self.l2)] {
            if p.api_key.is_some() && p.api_key_file.is_some() {
                return Err(ConfigError::invalid(
                    format!("{key}.api_key_file"),
                    "set api_key or api_key_file, not both",
                ));
            }
            if !(0.0..=2.0).contains(&p.temperature) {
                return Err(ConfigError::invalid(format!("{key}.temperature"), "must be between 0 and 2"));
            }
            if let Some(file) = &p.api_key_file
                && !file.exists()
            {
                return Err(ConfigError::invalid(
                    format!("{key}.api_key_file"),
                    format!("{} does not exist", file.display()),
                ));
            }
        }
        l0::Runbook::new(&self.runbook)?;
        prompt::check_templates(self.prompts_dir.clone())
            .map_err(|e| ConfigError::invalid("diagnose.prompts_dir", e))?;
        Ok(())
    }
}

fn resolve_key(config: &ProviderConfig) -> Option<Secret> {
    if let Some(key) = &config.api_key {
        return Some(key.clone());
    }
    if let Some(file) = &config.api_key_file {
        let text = std::fs::read_to_string(file).ok()?;
        let key = text.lines().next()?.trim().to_string();
        return (!key.is_empty()).then(|| Secret::new(key));
    }
    let var = match config.provider {
        ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        ProviderKind::Openai => "OPENAI_API_KEY",
        ProviderKind::Ollama => return None,
    };
    std::env::var(var).ok().filter(|k| !k.trim().is_empty()).map(Secret::new)
}

/// Builds the provider for a level, or None when the level is not configured.
pub fn build_provider(config: &ProviderConfig) -> Option<Arc<dyn LlmProvider>> {
    let url = config.url.as_ref()?;
    match config.provider {
        ProviderKind::Ollama => {
            Some(Arc::new(ollama::OllamaProvider::new(url, &config.model, config.timeout, config.max_retries)))
        }
        ProviderKind::Anthropic => {
            let key = resolve_key(config)?;
            Some(Arc::new(anthropic::AnthropicProvider::new(
                url,
                key,
                &config.model,
                config.timeout,
                config.max_retries,
            )))
        }
        ProviderKind::Openai => Some(Arc::new(openai::OpenAiProvider::new(
            url,
            resolve_key(config),
            &config.model,
            config.timeout,
            config.max_retries,
        ))),
    }
}

pub struct Diagnoser {
    config: DiagnoseConfig,
    prompts: Prompts,
    l1: Option<Arc<dyn LlmProvider>>,
    l2: Option<Arc<dyn LlmProvider>>,
    runbook: l0::Runbook,
}

impl Diagnoser {
    pub fn new(config: DiagnoseConfig) -> Result<Self, ConfigError> {
        let runbook = l0::Runbook::new(&config.runbook)?;
        Ok(Self {
            prompts: Prompts::new(config.prompts_dir.clone()),
            l1: build_provider(&config.l1),
            l2: build_provider(&config.l2),
            runbook,
            config,
        })
    }

    pub fn config(&self) -> &DiagnoseConfig {
        &self.config
    }

    pub fn runbook(&self) -> &l0::Runbook {
        &self.runbook
    }

    pub fn l1_configured(&self) -> bool {
        self.l1.is_some()
    }

    pub fn l2_configured(&self) -> bool {
        self.l2.is_some()
    }

    /// Whether L2 calls cost money (so budgets apply).
    pub fn l2_is_cloud(&self) -> bool {
        self.l2.as_ref().is_some_and(|p| self.config.prices.contains_key(p.model()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_seeded(
        &self,
        provider: &Arc<dyn LlmProvider>,
        kind: PromptKind,
        level: &str,
        context: &PromptContext,
        max_tokens: u32,
        temperature: f32,
        seed: Option<u32>,
    ) -> (Result<LlmReply, DiagnoseError>, Option<CallRecord>) {
        let (system, user) = match self.prompts.render(kind, context) {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        };
        let schema = match (&context.reply_schema, kind) {
            (serde_json::Value::Object(_), _) => context.reply_schema.clone(),
            (_, PromptKind::L1) => parse::diagnosis_schema(&[]),
            (_, PromptKind::L2) => parse::recommendation_schema(),
        };
        let request = LlmRequest { system, user, schema, max_tokens, temperature, seed };
        let started = std::time::Instant::now();
        let result = provider.complete(&request).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let record = match &result {
            Ok(reply) => CallRecord {
                level: level.into(),
                provider: provider.name().into(),
                model: provider.model().into(),
                tokens_in: reply.tokens_in,
                tokens_out: reply.tokens_out,
                cost: cost::cost(&self.config.prices, provider.model(), reply.tokens_in, reply.tokens_out),
                attempts: reply.attempts,
                duration_ms,
                outcome: "replied".into(),
            },
            Err(e) => CallRecord {
                level: level.into(),
                provider: provider.name().into(),
                model: provider.model().into(),
                tokens_in: 0,
                tokens_out: 0,
                cost: 0.0,
                attempts: 0,
                duration_ms,
                outcome: e.to_string(),
            },
        };
        (result, Some(record))
    }

    /// One call, its reply parsed by `parse`; a reply that does not parse is named in the cost record's
    /// outcome.
    #[allow(clippy::too_many_arguments)]
    async fn call_parsed<T>(
        &self,
        provider: &Arc<dyn LlmProvider>,
        kind: PromptKind,
        context: &PromptContext,
        max_tokens: u32,
        temperature: f32,
        seed: Option<u32>,
        parse: impl FnOnce(&str) -> Result<T, DiagnoseError>,
    ) -> (Result<T, DiagnoseError>, Option<CallRecord>) {
        let level = match kind {
            PromptKind::L1 => "l1",
            PromptKind::L2 => "l2",
        };
        let (reply, mut record) = self.call_seeded(provider, kind, level, context, max_tokens, temperature, seed).await;
        let parsed = reply.and_then(|r| parse(&r.text));
        if let (Err(e @ DiagnoseError::Unparseable(_)), Some(r)) = (&parsed, record.as_mut()) {
            r.outcome = e.to_string();
        }
        (parsed, record)
    }

    /// Level 1, one reply, with the model's own confidence (the pipeline uses
    /// [`Diagnoser::level1_sampled`]; this is the single call it is made of, and the benchmark's baseline).
    pub async fn level1(&self, context: &PromptContext) -> (Result<Diagnosis, DiagnoseError>, Option<CallRecord>) {
        let Some(provider) = &self.l1 else {
            return (Err(DiagnoseError::Unavailable("level 1 is not configured (diagnose.l1.url)".into())), None);
        };
        let (temperature, max_tokens) = (self.config.l1.temperature, self.config.l1.max_tokens);
        let (parsed, record) = self
            .call_parsed(provider, PromptKind::L1, context, max_tokens, temperature, None, |text| {
                parse::diagnosis(text, "l1")
            })
            .await;
        (parsed, record)
    }

    /// Level 2: the expert's recommendation (needs a human unless policy says otherwise).
    pub async fn level2(&self, context: &PromptContext) -> (Result<Recommendation, DiagnoseError>, Option<CallRecord>) {
        let Some(provider) = &self.l2 else {
            return (Err(DiagnoseError::Unavailable("level 2 is not configured (diagnose.l2)".into())), None);
        };
        let (temperature, max_tokens) = (self.config.l2.temperature, self.config.l2.max_tokens);
        let force_human = self.config.l2_requires_human_approval;
        let (parsed, record) = self
            .call_parsed(provider, PromptKind::L2, context, max_tokens, temperature, None, |text| {
                parse::recommendation(text, force_human)
            })
            .await;
        (parsed, record)
    }
}
