//! The safety gate: `check(proposed command) -> Verdict`.
//!
//! Input: a command string from a model, a runbook, memory or a human, and the host it would run on.
//! Output: [`Verdict::Allow`] with an [`ApprovedCommand`], [`Verdict::NeedsApproval`], or [`Verdict::Deny`]
//! with a reason. Failure: there is none; anything doubtful is a deny.
//!
//! Semantics (also in the README):
//! 1. Blocked patterns are matched first, on the raw string folded (lower case, whitespace runs → one
//!    space), for every authority: no approval ever runs a blocked command.
//! 2. The tokenizer refuses any character outside a conservative set ([`tokenize`]) and splits on plain
//!    spaces only, with no expansion.
//! 3. The words must match one template exactly: same literal words, same number of words, each
//!    placeholder filled from its own allow-list or strict pattern. No extra flags anywhere.
//! 4. An allow returns the canonical argv rebuilt from the template. **Only this module can construct an
//!    [`ApprovedCommand`] or a [`DiagnosticCommand`]** (private fields, no public constructor), and the
//!    executor takes nothing else, so nothing downstream re-parses a model's string.

pub mod dry_run;
pub mod policy;
pub mod rules;
pub mod tokenize;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::conf::{ConfigError, empty_none};
use rules::{Mode, PlaceholderType, Rules, RulesFile, Template, Word};
use tokenize::{fold_for_blocklist, tokenize};

pub use dry_run::{DryRun, DryRunState};
pub use policy::{
    ActionOutcome, ActionPolicy, ActionRecord, MaintenanceWindow, PolicyConfig, PolicyDecision, PolicyRequest,
};

/// The shipped rules, used when `gate.safe_commands` is empty.
pub const BUILTIN_RULES: &str = include_str!("../../config/safe_commands.json");

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Path of the rules file; empty: the built-in copy of config/safe_commands.json.
    #[serde(with = "empty_none")]
    pub safe_commands: Option<PathBuf>,
    /// Record "would run" instead of executing anything.
    pub dry_run: bool,
    pub policy: PolicyConfig,
}

impl GateConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Gate::from_config(self).map(|_| ())?;
        self.policy.validate()
    }
}

/// Who asks for the command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// A model, a runbook rule or memory: `approval`-mode categories need a human.
    Automatic,
    /// A human approved this exact command: `approval`-mode categories are allowed; blocked patterns still win.
    Human,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Automatic => "automatic",
            Authority::Human => "human",
        }
    }
}

/// A command the gate allowed. Only the gate builds one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedCommand {
    argv: Vec<String>,
    template: String,
    category: String,
    authority: Authority,
    bindings: Vec<(String, String)>,
}

impl ApprovedCommand {
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
    pub fn template(&self) -> &str {
        &self.template
    }
    pub fn category(&self) -> &str {
        &self.category
    }
    pub fn authority(&self) -> Authority {
        self.authority
    }
    /// Each placeholder's value (`service` = `nginx`).
    pub fn bindings(&self) -> &[(String, String)] {
        &self.bindings
    }
    /// The argv as one line for people (words never contain spaces).
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
    /// Identifies "the same action" for rate limits and the circuit breaker.
    pub fn action_key(&self) -> String {
        self.display()
    }
}

/// A read-only diagnostic command from the `diagnostics` allow-list. Only the gate builds one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosticCommand {
    argv: Vec<String>,
    template: String,
}

impl DiagnosticCommand {
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
    pub fn template(&self) -> &str {
        &self.template
    }
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// A command that matches a template whose category needs a human. Not executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    pub argv: Vec<String>,
    pub template: String,
    pub category: String,
    pub bindings: Vec<(String, String)>,
}

impl PendingApproval {
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(ApprovedCommand),
    NeedsApproval(PendingApproval),
    Deny { reason: String },
}

impl Verdict {
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Allow(_) => "allow",
            Verdict::NeedsApproval(_) => "approval",
            Verdict::Deny { .. } => "deny",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Verdict::Allow(c) => {
                format!("matches template `{}` ({}, {})", c.template, c.category, c.authority.as_str())
            }
            Verdict::NeedsApproval(p) => {
                format!("matches template `{}` in category `{}`, which needs human approval", p.template, p.category)
            }
            Verdict::Deny { reason } => reason.clone(),
        }
    }

    pub fn template(&self) -> Option<&str> {
        match self {
            Verdict::Allow(c) => Some(&c.template),
            Verdict::NeedsApproval(p) => Some(&p.template),
            Verdict::Deny { .. } => None,
        }
    }

    pub fn argv(&self) -> &[String] {
        match self {
            Verdict::Allow(c) => &c.argv,
            Verdict::NeedsApproval(p) => &p.argv,
            Verdict::Deny { .. } => &[],
        }
    }

    /// Each placeholder's value in the matched template.
    pub fn bindings(&self) -> &[(String, String)] {
        match self {
            Verdict::Allow(c) => &c.bindings,
            Verdict::NeedsApproval(p) => &p.bindings,
            Verdict::Deny { .. } => &[],
        }
    }

    /// `{"verdict", "reason", "template", "argv"}` as printed by `medic gate check`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"verdict": self.kind(), "reason": self.reason(), "template": self.template(), "argv": self.argv()})
    }

    fn deny(reason: impl Into<String>) -> Self {
        Verdict::Deny { reason: reason.into() }
    }
}

/// Prefixes that would run another program under the template's name.
const WRAPPERS: &[&str] = &[
    "sudo", "su", "doas", "env", "command", "exec", "nohup", "timeout", "xargs", "sh", "bash", "dash", "zsh",
    "busybox", "nice", "ionice", "setsid", "stdbuf", "time", "chroot", "runuser", "eval", "builtin", "watch",
];

/// The compiled gate. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    rules: Arc<Rules>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("templates", &self.rules.actions.len()).finish()
    }
}

impl Gate {
    pub fn from_config(config: &GateConfig) -> Result<Self, ConfigError> {
        let (text, name) = match &config.safe_commands {
            None => (BUILTIN_RULES.to_string(), "built-in safe_commands.json".to_string()),
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid("gate.safe_commands", format!("cannot read {}: {e}", path.display()))
                })?,
                path.display().to_string(),
            ),
        };
        Self::from_rules_text(&text).map_err(|e| ConfigError::invalid("gate.safe_commands", format!("{name}: {e}")))
    }

    pub fn from_rules_text(text: &str) -> Result<Self, rules::RulesError> {
        let rules = RulesFile::parse(text)?.compile()?;
        // A template that hits a blocked pattern could never pass: almost certainly a config mistake.
        if let Some(blocked) = &rules.blocked {
            for t in rules.actions.iter().chain(&rules.diagnostics) {
                if let Some(m) = blocked.find(&fold_for_blocklist(&t.text)) {
                    return Err(rules::RulesError {
                        entry: format!("template {:?}", t.text),
                        message: format!(
                            "contains blocked pattern `{}`",
                            rules.blocked_patterns[m.pattern().as_usize()]
                        ),
                    });
                }
            }
        }
        Ok(Self { rules: Arc::new(rules) })
    }

    /// The verdict for a proposed remediation command on `host`.
    pub fn check(&self, raw: &str, host: Option<&str>, authority: Authority) -> Verdict {
        if let Some(pattern) = self.blocked_pattern(raw) {
            return Verdict::deny(format!("blocked pattern `{pattern}`"));
        }
        let words = match tokenize(raw) {
            Ok(words) => words,
            Err(e) => return Verdict::deny(e.to_string()),
        };
        let host_rules = host.and_then(|h| self.rules.hosts.get(h));
        let candidates = self.rules.action_index.get(&(words[0].to_string(), words.len()));
        // When templates overlap, the stricter category wins: any approval-mode match needs a human.
        let mut allow: Option<ApprovedCommand> = None;
        let mut approval: Option<PendingApproval> = None;
        for &i in candidates.into_iter().flatten() {
            let template = &self.rules.actions[i];
            if host_rules.is_some_and(|h| h.disabled.contains(&template.category)) {
                continue;
            }
            if matches_template(template, &words, host_rules.map(|h| &h.placeholders)).is_err() {
                continue;
            }
            let argv = canonical_argv(template, &words);
            let bindings = bindings(template, &argv);
            let mode = host_rules.and_then(|h| h.modes.get(&template.category)).copied().unwrap_or(template.mode);
            if mode == Mode::Approval && authority == Authority::Automatic {
                approval.get_or_insert(PendingApproval {
                    argv,
                    template: template.text.clone(),
                    category: template.category.clone(),
                    bindings,
                });
            } else {
                allow.get_or_insert(ApprovedCommand {
                    argv,
                    template: template.text.clone(),
                    category: template.category.clone(),
                    authority,
                    bindings,
                });
            }
        }
        match (approval, allow) {
            (Some(p), _) => Verdict::NeedsApproval(p),
            (None, Some(c)) => Verdict::Allow(c),
            (None, None) => Verdict::deny(self.explain(&words, host_rules.map(|h| &h.placeholders), host, false)),
        }
    }

    /// A read-only command from the diagnostics allow-list, or why not.
    pub fn check_diagnostic(&self, raw: &str, host: Option<&str>) -> Result<DiagnosticCommand, String> {
        if let Some(pattern) = self.blocked_pattern(raw) {
            return Err(format!("blocked pattern `{pattern}`"));
        }
        let words = tokenize(raw).map_err(|e| e.to_string())?;
        let host_placeholders = host.and_then(|h| self.rules.hosts.get(h)).map(|h| &h.placeholders);
        for &i in self.rules.diagnostic_index.get(&(words[0].to_string(), words.len())).into_iter().flatten() {
            let template = &self.rules.diagnostics[i];
            if matches_template(template, &words, host_placeholders).is_ok() {
                return Ok(DiagnosticCommand {
                    argv: canonical_argv(template, &words),
                    template: template.text.clone(),
                });
            }
        }
        Err(self.explain(&words, host_placeholders, host, true))
    }

    /// Action templates usable on `host`, with their mode (for prompts: the model should propose these).
    pub fn action_templates(&self, host: Option<&str>) -> Vec<(String, Mode)> {
        let host_rules = host.and_then(|h| self.rules.hosts.get(h));
        self.rules
            .actions
            .iter()
            .filter(|t| !host_rules.is_some_and(|h| h.disabled.contains(&t.category)))
            .map(|t| (t.text.clone(), host_rules.and_then(|h| h.modes.get(&t.category)).copied().unwrap_or(t.mode)))
            .collect()
    }

    /// Diagnostic templates, in file order.
    /// The diagnostics collected for an incident on `service`: the general ones and that service's own.
    pub fn diagnostic_templates(&self, service: &str) -> Vec<String> {
        self.rules
            .diagnostics
            .iter()
            .filter(|t| t.only_service.as_deref().is_none_or(|s| s == service))
            .map(|t| t.text.clone())
            .collect()
    }

    /// Values a placeholder accepts on `host`, when it is an allow-list (for prompts and collectors).
    pub fn allowed_values(&self, placeholder: &str, host: Option<&str>) -> Option<Vec<String>> {
        let host_type = host.and_then(|h| self.rules.hosts.get(h)).and_then(|h| h.placeholders.get(placeholder));
        let global =
            self.rules.diagnostics.iter().chain(&self.rules.actions).find_map(|t| t.placeholders.get(placeholder));
        match host_type.or(global)? {
            PlaceholderType::Allowed(set) => {
                let mut v: Vec<String> = set.iter().cloned().collect();
                v.sort();
                Some(v)
            }
            _ => None,
        }
    }

    /// True when `value` is acceptable for `placeholder` in some diagnostic template on `host`.
    pub fn placeholder_accepts(&self, placeholder: &str, value: &str, host: Option<&str>) -> bool {
        let host_type = host.and_then(|h| self.rules.hosts.get(h)).and_then(|h| h.placeholders.get(placeholder));
        if let Some(t) = host_type {
            return t.accepts(value);
        }
        self.rules
            .diagnostics
            .iter()
            .chain(&self.rules.actions)
            .filter_map(|t| t.placeholders.get(placeholder))
            .any(|t| t.accepts(value))
    }

    /// True when some action template on `host` accepts `value` for `placeholder`.
    pub fn placeholder_accepts_action(&self, placeholder: &str, value: &str, host: Option<&str>) -> bool {
        let host_type = host.and_then(|h| self.rules.hosts.get(h)).and_then(|h| h.placeholders.get(placeholder));
        if let Some(t) = host_type {
            return t.accepts(value);
        }
        self.rules.actions.iter().filter_map(|t| t.placeholders.get(placeholder)).any(|t| t.accepts(value))
    }

    /// The blocked pattern `raw` contains, if any (also used to keep such text out of emails).
    pub fn blocked_pattern(&self, raw: &str) -> Option<&str> {
        let blocked = self.rules.blocked.as_ref()?;
        let folded = fold_for_blocklist(raw);
        blocked.find(&folded).map(|m| self.rules.blocked_patterns[m.pattern().as_usize()].as_str())
    }

    /// Why no template matched, as precisely as can be said.
    fn explain(
        &self,
        words: &[&str],
        host_placeholders: Option<&std::collections::HashMap<String, PlaceholderType>>,
        host: Option<&str>,
        diagnostic: bool,
    ) -> String {
        let first = words[0];
        let templates = if diagnostic { &self.rules.diagnostics } else { &self.rules.actions };
        let what = if diagnostic { "diagnostic" } else { "allowed" };
        let lists_first = |w: &str| templates.iter().any(|t| t.words[0] == Word::Literal(w.to_string()));
        if WRAPPERS.contains(&first) && !lists_first(first) {
            return format!("`{first}` prefix is not allowed: no {what} template starts with it");
        }
        if first.contains('=') && !lists_first(first) {
            return format!("environment assignment `{first}` is not allowed");
        }
        if (first.starts_with('/') || first.starts_with("./") || first.starts_with("../")) && !lists_first(first) {
            return format!("path `{first}` is not allowed unless a template uses it");
        }
        let same_first: Vec<&Template> =
            templates.iter().filter(|t| t.words[0] == Word::Literal(first.to_string())).collect();
        if same_first.is_empty() {
            return format!("no {what} command starts with `{first}`");
        }
        let same_len: Vec<&&Template> = same_first.iter().filter(|t| t.words.len() == words.len()).collect();
        if same_len.is_empty() {
            let t = same_first[0];
            return format!(
                "wrong number of words: got {}, template `{}` has {} (no extra flags or arguments)",
                words.len(),
                t.text,
                t.words.len()
            );
        }
        let mut best: Option<(usize, String)> = None;
        for t in same_len {
            if let Err((pos, reason)) = matches_template(t, words, host_placeholders) {
                if best.as_ref().is_none_or(|(p, _)| pos > *p) {
                    best = Some((pos, format!("{reason} (template `{}`)", t.text)));
                }
            } else {
                // Matched but was filtered out: the category is disabled on this host.
                return format!("template `{}` is disabled on host `{}`", t.text, host.unwrap_or("?"));
            }
        }
        best.map(|(_, r)| r).unwrap_or_else(|| format!("no {what} template matches"))
    }
}

/// Ok, or the first word that does not fit and why.
fn matches_template(
    template: &Template,
    words: &[&str],
    host_placeholders: Option<&std::collections::HashMap<String, PlaceholderType>>,
) -> Result<(), (usize, String)> {
    if template.words.len() != words.len() {
        return Err((0, "wrong number of words".into()));
    }
    for (pos, (want, got)) in template.words.iter().zip(words).enumerate() {
        match want {
            Word::Literal(lit) => {
                if lit != got {
                    return Err((pos, format!("word {} is `{got}`, expected `{lit}`", pos + 1)));
                }
            }
            Word::Placeholder(name) | Word::Prefixed { name, .. } => {
                let value = match want {
                    Word::Prefixed { prefix, .. } => match got.strip_prefix(prefix.as_str()) {
                        Some(value) => value,
                        None => {
                            return Err((pos, format!("word {} is `{got}`, expected `{prefix}{{{name}}}`", pos + 1)));
                        }
                    },
                    _ => got,
                };
                let got = &value;
                let kind = host_placeholders.and_then(|h| h.get(name)).or_else(|| template.placeholders.get(name));
                let Some(kind) = kind else { return Err((pos, format!("placeholder {{{name}}} is not defined"))) };
                if !kind.accepts(got) {
                    let why = if got.starts_with('-') {
                        format!("`{got}` looks like an option where {{{name}}} is expected (option injection)")
                    } else if got.contains('=') {
                        format!("`{got}` contains `=`, which {{{name}}} does not allow")
                    } else {
                        format!("`{got}` is not an allowed {{{name}}}")
                    };
                    return Err((pos, why));
                }
            }
        }
    }
    Ok(())
}

/// Each placeholder's value, by name, from a canonical argv.
fn bindings(template: &Template, argv: &[String]) -> Vec<(String, String)> {
    template
        .words
        .iter()
        .zip(argv)
        .filter_map(|(want, got)| match want {
            Word::Literal(_) => None,
            Word::Placeholder(name) => Some((name.clone(), got.clone())),
            Word::Prefixed { prefix, name } => Some((name.clone(), got[prefix.len()..].to_string())),
        })
        .collect()
}

/// Why a command is outside an incident's scope: it names another service or container than the
/// incident's own. Commands without a `service` or `container` placeholder act on the host as a whole
/// and are in scope. **Automatic actions are only ever in scope**; others need a human, who is told.
pub fn out_of_scope(bindings: &[(String, String)], service: &str, container: Option<&str>) -> Option<String> {
    for (name, value) in bindings {
        match name.as_str() {
            "service" if value != service => {
                return Some(format!("it acts on service `{value}`, not on the failing service `{service}`"));
            }
            "container" if Some(value.as_str()) != container => {
                return Some(format!(
                    "it acts on container `{value}`, not on the incident's container `{}`",
                    container.unwrap_or("(none named)")
                ));
            }
            _ => {}
        }
    }
    None
}

/// The argv rebuilt from the template's own literal words and the checked placeholder values.
fn canonical_argv(template: &Template, words: &[&str]) -> Vec<String> {
    template
        .words
        .iter()
        .zip(words)
        .map(|(want, got)| match want {
            Word::Literal(lit) => lit.clone(),
            Word::Placeholder(_) => (*got).to_string(),
            Word::Prefixed { prefix, .. } => format!("{prefix}{}", &got[prefix.len()..]),
        })
        .collect()
}

#[cfg(test)]
mod tests;
