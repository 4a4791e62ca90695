//! `safe_commands.json` → compiled [`Rules`].
//!
//! The original design's shape loads as is (`safe_commands.<category>.allowed` + `allowed_services`,
//! `safe_commands.blocked_patterns`). Extensions: a `mode` per category (`auto` or `approval`; a category
//! without one is `auto`, as in the original design), typed `placeholders` (each an `allowed` list, an
//! anchored `pattern`, or an integer `range`) at top level or per category, a read-only `diagnostics`
//! allow-list, and per-host overrides under `hosts`. Every problem refuses to load, naming the entry.

use std::collections::{BTreeMap, HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::Deserialize;

use super::tokenize::{fold_for_blocklist, is_safe_word};

/// The file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub safe_commands: SafeCommands,
    #[serde(default)]
    pub placeholders: BTreeMap<String, PlaceholderSpec>,
    #[serde(default)]
    pub diagnostics: Option<Diagnostics>,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostOverride>,
}

#[derive(Debug, Deserialize)]
pub struct SafeCommands {
    #[serde(default)]
    pub blocked_patterns: Vec<String>,
    #[serde(flatten)]
    pub categories: BTreeMap<String, CategorySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySpec {
    pub allowed: Vec<String>,
    #[serde(default)]
    pub allowed_services: Option<Vec<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub placeholders: BTreeMap<String, PlaceholderSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnostics {
    pub allowed: Vec<String>,
    /// Diagnostics run only for one service (its configuration test: `nginx -t`, `apachectl
    /// configtest`, `sshd -t`): service name → templates.
    #[serde(default)]
    pub by_service: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostOverride {
    /// Placeholder definitions that replace the global ones on this host.
    #[serde(default)]
    pub placeholders: BTreeMap<String, PlaceholderSpec>,
    /// Category → mode on this host.
    #[serde(default)]
    pub modes: BTreeMap<String, Mode>,
    /// Categories switched off on this host.
    #[serde(default)]
    pub disabled: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderSpec {
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub range: Option<(u64, u64)>,
}

/// Whether a matching command may run without a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Approval,
}

/// A compiled placeholder type: never free text.
#[derive(Debug, Clone)]
pub enum PlaceholderType {
    Allowed(HashSet<String>),
    Pattern(Regex),
    Range(u64, u64),
}

impl PlaceholderType {
    /// A value fits when it is a safe word, does not start with `-` (option injection), has no `=`
    /// unless allow-listed verbatim, and matches the type.
    pub fn accepts(&self, value: &str) -> bool {
        if value.is_empty() || value.starts_with('-') || !is_safe_word(value) {
            return false;
        }
        match self {
            PlaceholderType::Allowed(set) => set.contains(value),
            PlaceholderType::Pattern(re) => !value.contains('=') && re.is_match(value),
            PlaceholderType::Range(lo, hi) => {
                value.len() <= 20
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && !(value.len() > 1 && value.starts_with('0'))
                    && value.parse::<u64>().is_ok_and(|n| (*lo..=*hi).contains(&n))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Literal(String),
    Placeholder(String),
    /// `--flag={name}`: a literal ending in `=` followed by a placeholder value.
    Prefixed {
        prefix: String,
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
    pub category: String,
    pub mode: Mode,
    pub words: Vec<Word>,
    /// Placeholder definitions of this template's category (category-level beats top-level).
    pub placeholders: HashMap<String, PlaceholderType>,
    /// Diagnostics only: the one service this template is collected for (None: every incident).
    pub only_service: Option<String>,
}

/// Per-host view: which templates apply and with which placeholder types and modes.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    pub placeholders: HashMap<String, PlaceholderType>,
    pub modes: HashMap<String, Mode>,
    pub disabled: HashSet<String>,
}

/// Everything the gate needs, compiled once.
#[derive(Debug)]
pub struct Rules {
    pub actions: Vec<Template>,
    pub diagnostics: Vec<Template>,
    /// (first word, number of words) → indexes into `actions` / `diagnostics`.
    pub action_index: HashMap<(String, usize), Vec<usize>>,
    pub diagnostic_index: HashMap<(String, usize), Vec<usize>>,
    pub blocked_patterns: Vec<String>,
    pub blocked: Option<AhoCorasick>,
    pub hosts: HashMap<String, HostRules>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{entry}: {message}")]
pub struct RulesError {
    pub entry: String,
    pub message: String,
}

fn err(entry: impl Into<String>, message: impl Into<String>) -> RulesError {
    RulesError { entry: entry.into(), message: message.into() }
}

fn compile_placeholder(entry: &str, spec: &PlaceholderSpec) -> Result<PlaceholderType, RulesError> {
    let kinds = [spec.allowed.is_some(), spec.pattern.is_some(), spec.range.is_some()].iter().filter(|b| **b).count();
    if kinds != 1 {
        return Err(err(entry, "set exactly one of `allowed`, `pattern`, `range` (placeholders are never free text)"));
    }
    if let Some(list) = &spec.allowed {
        if list.is_empty() {
            return Err(err(entry, "`allowed` is empty"));
        }
        for value in list {
            if value.starts_with('-') || !is_safe_word(value) {
                return Err(err(entry, format!("allowed value {value:?} is not a safe word")));
            }
        }
        return Ok(PlaceholderType::Allowed(list.iter().cloned().collect()));
    }
    if let Some(pattern) = &spec.pattern {
        if !pattern.starts_with('^') || !pattern.ends_with('$') {
            return Err(err(entry, format!("pattern {pattern:?} must be anchored with ^ and $")));
        }
        let re = Regex::new(pattern).map_err(|e| err(entry, format!("pattern does not compile: {e}")))?;
        return Ok(PlaceholderType::Pattern(re));
    }
    let (lo, hi) = spec.range.expect("one kind is set");
    if lo > hi {
        return Err(err(entry, format!("range [{lo}, {hi}] is empty")));
    }
    Ok(PlaceholderType::Range(lo, hi))
}

fn parse_template(entry: &str, text: &str) -> Result<Vec<Word>, RulesError> {
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Err(err(entry, "empty template"));
    }
    words
        .into_iter()
        .map(|w| {
            if let Some(name) = w.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(err(entry, format!("bad placeholder {w:?}")));
                }
                Ok(Word::Placeholder(name.to_string()))
            } else if let Some((prefix, rest)) = w.split_once("={")
                && let Some(name) = rest.strip_suffix('}')
                && is_safe_word(prefix)
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                Ok(Word::Prefixed { prefix: format!("{prefix}="), name: name.to_string() })
            } else if w.contains('{') || w.contains('}') {
                Err(err(entry, format!("{w:?}: placeholders must be whole words like {{service}}, or --flag={{name}}")))
            } else if !is_safe_word(w) {
                Err(err(entry, format!("{w:?} has characters outside the safe set")))
            } else {
                Ok(Word::Literal(w.to_string()))
            }
        })
        .collect()
}

impl RulesFile {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        serde_json::from_str(text).map_err(|e| err("safe_commands.json", e.to_string()))
    }

    pub fn compile(self) -> Result<Rules, RulesError> {
        let mut global: HashMap<String, PlaceholderType> = HashMap::new();
        for (name, spec) in &self.placeholders {
            global.insert(name.clone(), compile_placeholder(&format!("placeholders.{name}"), spec)?);
        }
        if self.safe_commands.categories.is_empty() {
            return Err(err("safe_commands", "no command categories"));
        }
        let mut actions = Vec::new();
        for (category, spec) in &self.safe_commands.categories {
            let base = format!("safe_commands.{category}");
            if spec.allowed.is_empty() {
                return Err(err(format!("{base}.allowed"), "empty allow-list"));
            }
            let mut local = global.clone();
            if let Some(services) = &spec.allowed_services {
                let entry = format!("{base}.allowed_services");
                let spec = PlaceholderSpec { allowed: Some(services.clone()), pattern: None, range: None };
                local.insert("service".into(), compile_placeholder(&entry, &spec)?);
            }
            for (name, spec) in &spec.placeholders {
                local.insert(name.clone(), compile_placeholder(&format!("{base}.placeholders.{name}"), spec)?);
            }
            for (i, text) in spec.allowed.iter().enumerate() {
                let entry = format!("{base}.allowed[{i}] {text:?}");
                let words = parse_template(&entry, text)?;
                check_placeholders_known(&entry, &words, &local)?;
                actions.push(Template {
                    text: text.clone(),
                    category: category.clone(),
                    mode: spec.mode.unwrap_or(Mode::Auto),
                    words,
                    placeholders: local.clone(),
                    only_service: None,
                });
            }
        }
        let mut diagnostics = Vec::new();
        if let Some(diag) = &self.diagnostics {
            if diag.allowed.is_empty() {
                return Err(err("diagnostics.allowed", "empty allow-list"));
            }
            let general = diag.allowed.iter().enumerate().map(|(i, t)| (format!("diagnostics.allowed[{i}]"), t, None));
            let per_service = diag.by_service.iter().flat_map(|(service, texts)| {
                texts
                    .iter()
                    .enumerate()
                    .map(move |(i, t)| (format!("diagnostics.by_service.{service}[{i}]"), t, Some(service.clone())))
            });
            for (key, text, only_service) in general.chain(per_service) {
                let entry = format!("{key} {text:?}");
                let words = parse_template(&entry, text)?;
                check_placeholders_known(&entry, &words, &global)?;
                diagnostics.push(Template {
                    text: text.clone(),
                    category: "diagnostics".into(),
                    mode: Mode::Auto,
                    words,
                    placeholders: global.clone(),
                    only_service,
                });
            }
        }
        let mut blocked_patterns = Vec::new();
        for (i, p) in self.safe_commands.blocked_patterns.iter().enumerate() {
            let folded = fold_for_blocklist(p);
            if folded.trim().is_empty() {
                return Err(err(format!("safe_commands.blocked_patterns[{i}]"), "empty pattern"));
            }
            blocked_patterns.push(folded);
        }
        let blocked = if blocked_patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&blocked_patterns)
                    .map_err(|e| err("safe_commands.blocked_patterns", e.to_string()))?,
            )
        };
        let categories: HashSet<&String> = self.safe_commands.categories.keys().collect();
        let mut hosts = HashMap::new();
        for (host, over) in &self.hosts {
            let base = format!("hosts.{host}");
            let mut rules = HostRules::default();
            for (name, spec) in &over.placeholders {
                rules
                    .placeholders
                    .insert(name.clone(), compile_placeholder(&format!("{base}.placeholders.{name}"), spec)?);
            }
            for (category, mode) in &over.modes {
                if !categories.contains(category) {
                    return Err(err(format!("{base}.modes.{category}"), "no such category"));
                }
                rules.modes.insert(category.clone(), *mode);
            }
            for category in &over.disabled {
                if !categories.contains(category) {
                    return Err(err(format!("{base}.disabled"), format!("no such category {category:?}")));
                }
                rules.disabled.insert(category.clone());
            }
            hosts.insert(host.clone(), rules);
        }
        let index = |templates: &[Template]| {
            let mut map: HashMap<(String, usize), Vec<usize>> = HashMap::new();
            for (i, t) in templates.iter().enumerate() {
                if let Word::Literal(first) = &t.words[0] {
                    map.entry((first.clone(), t.words.len())).or_default().push(i);
                }
            }
            map
        };
        if actions.iter().chain(&diagnostics).any(|t| !matches!(t.words[0], Word::Literal(_))) {
            return Err(err("safe_commands", "a template may not start with a placeholder"));
        }
        Ok(Rules {
            action_index: index(&actions),
            diagnostic_index: index(&diagnostics),
            actions,
            diagnostics,
            blocked_patterns,
            blocked,
            hosts,
        })
    }
}

fn check_placeholders_known(
    entry: &str,
    words: &[Word],
    known: &HashMap<String, PlaceholderType>,
) -> Result<(), RulesError> {
    for w in words {
        let name = match w {
            Word::Placeholder(name) | Word::Prefixed { name, .. } => name,
            Word::Literal(_) => continue,
        };
        if !known.contains_key(name) {
            return Err(err(entry, format!("unknown placeholder {{{name}}} (define it under `placeholders`)")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_design_shape_loads_as_is() {
        let text = r#"{ "safe_commands": {
            "service_management": {
              "allowed": ["systemctl restart {service}", "systemctl start {service}"],
              "allowed_services": ["nginx", "apache2", "docker"] },
            "blocked_patterns": ["rm -rf", "shutdown", "mkfs"] } }"#;
        let rules = RulesFile::parse(text).unwrap().compile().unwrap();
        assert_eq!(rules.actions.len(), 2);
        assert_eq!(rules.actions[0].mode, Mode::Auto);
        assert_eq!(rules.blocked_patterns.len(), 3);
    }

    #[test]
    fn the_shipped_file_compiles() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/safe_commands.json")).unwrap();
        let rules = RulesFile::parse(&text).unwrap().compile().unwrap();
        assert!(rules.diagnostics.len() >= 8);
        assert!(rules.actions.iter().any(|t| t.mode == Mode::Approval));
    }

    #[test]
    fn invalid_rules_name_the_entry() {
        let cases = [
            (
                r#"{"safe_commands":{"svc":{"allowed":["systemctl restart {servce}"]}}}"#,
                "safe_commands.svc.allowed[0]",
                "unknown placeholder",
            ),
            (r#"{"safe_commands":{"svc":{"allowed":[]}}}"#, "safe_commands.svc.allowed", "empty allow-list"),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x {p}"]}},"placeholders":{"p":{"pattern":"^[a-$"}}}"#,
                "placeholders.p",
                "does not compile",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x {p}"]}},"placeholders":{"p":{"pattern":"[a-z]+"}}}"#,
                "placeholders.p",
                "anchored",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x {p}"]}},"placeholders":{"p":{"allowed":[]}}}"#,
                "placeholders.p",
                "empty",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x {p}"]}},"placeholders":{"p":{}}}"#,
                "placeholders.p",
                "exactly one",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x {p}"]}},"placeholders":{"p":{"allowed":["a;b"]}}}"#,
                "placeholders.p",
                "not a safe word",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x --u{p}"]}},"placeholders":{"p":{"allowed":["a"]}}}"#,
                "allowed[0]",
                "whole words",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x --u={q}"]}},"placeholders":{"p":{"allowed":["a"]}}}"#,
                "allowed[0]",
                "unknown placeholder",
            ),
            (r#"{"safe_commands":{"svc":{"allowed":["x"],"allowed_services":[]}}}"#, "allowed_services", "empty"),
            (r#"{"safe_commands":{"svc":{"allowed":["x"],"mode":"yolo"}}}"#, "safe_commands.json", "yolo"),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x"]}},"hosts":{"h":{"modes":{"nope":"auto"}}}}"#,
                "hosts.h.modes.nope",
                "no such category",
            ),
            (
                r#"{"safe_commands":{"svc":{"allowed":["x"]}},"diagnostics":{"allowed":["df {x}"]}}"#,
                "diagnostics.allowed[0]",
                "unknown placeholder",
            ),
            (r#"{"safe_commands":{"svc":{"allowed":["x"]}},"extra":1}"#, "safe_commands.json", "extra"),
        ];
        for (text, entry, message) in cases {
            let e = RulesFile::parse(text).and_then(RulesFile::compile).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(entry) && shown.contains(message), "want {entry} / {message}, got: {shown}");
        }
    }

    #[test]
    fn placeholder_types_accept_only_their_values() {
        let range = PlaceholderType::Range(1, 5000);
        for (v, ok) in [
            ("1", true),
            ("5000", true),
            ("5001", false),
            ("0", false),
            ("007", false),
            ("-5", false),
            ("1e3", false),
            ("", false),
        ] {
            assert_eq!(range.accepts(v), ok, "range {v}");
        }
        let pattern = PlaceholderType::Pattern(Regex::new("^[a-z0-9][a-z0-9_.-]{0,62}$").unwrap());
        for (v, ok) in
            [("web", true), ("web-1", true), ("-web", false), ("web;ls", false), ("a=b", false), ("WEB", false)]
        {
            assert_eq!(pattern.accepts(v), ok, "pattern {v}");
        }
        let allowed = PlaceholderType::Allowed(["nginx".to_string()].into_iter().collect());
        for (v, ok) in [("nginx", true), ("NGINX", false), ("nginx.service", false), ("nginx ", false)] {
            assert_eq!(allowed.accepts(v), ok, "allowed {v:?}");
        }
    }
}
