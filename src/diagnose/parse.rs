//! Strict parsing of model replies. A reply is untrusted input: it must be exactly one JSON object with
//! every required field of the right type and within bounds, or it is "unparseable" and the incident
//! escalates. Two leniencies: one markdown fence around the whole reply is removed, and fields outside
//! the schema are ignored and logged (a server that does not enforce `json_schema` adds some; they are
//! never read). `action_command` stays a plain string here; only the gate decides what it may become.

use serde::Deserialize;
use serde_json::{Value, json};

use super::provider::DiagnoseError;
use crate::domain::{Diagnosis, Recommendation};

const MAX_TEXT: usize = 4000;
const MAX_COMMAND: usize = 512;

#[derive(Deserialize)]
struct RawDiagnosis {
    #[serde(default)]
    problem: Option<String>,
    cause: String,
    confidence: f64,
    action_command: Option<String>,
    #[serde(default)]
    rationale: String,
}

#[derive(Deserialize)]
struct RawRecommendation {
    root_cause: String,
    action_command: Option<String>,
    #[serde(default)]
    rollback_command: Option<String>,
    risk: String,
    confidence: f64,
    requires_human_approval: bool,
}

/// The first question level 1 answers: what kind of problem the evidence shows. Only the first two are
/// fixed by a restart; any other answer is an abstention, whatever command the reply names. A class is
/// an easier question for a small model than "which command", and answering it costs nothing.
pub const PROBLEMS: [(&str, bool); 11] = [
    ("service stopped or crashed", true),
    ("service running but hung or overloaded", true),
    ("configuration error", false),
    ("port already in use", false),
    ("permission denied", false),
    ("disk full", false),
    ("certificate problem", false),
    ("upstream or dependency down", false),
    ("DNS or network problem", false),
    ("no problem visible", false),
    ("something else", false),
];

/// The level-1 reply schema. `choices`: the concrete allowed commands for this incident; when given,
/// `action_command` is an enum of them plus "none", so a server that enforces the schema (Ollama's
/// `format`, OpenAI's `json_schema`) cannot even produce another string. The gate checks the reply
/// all the same. "none" rather than JSON null: small models pick `null` almost whatever the evidence
/// says (measured with Qwen2.5-Coder-0.5B); null, "" and "none" all parse as "no command".
pub fn diagnosis_schema(choices: &[String]) -> Value {
    let command = if choices.is_empty() {
        json!({"type": "string", "maxLength": 256, "description": "one allowed command exactly as listed, or \"none\""})
    } else {
        let mut values: Vec<Value> = choices.iter().map(|c| json!(c)).collect();
        values.push(json!("none"));
        json!({"type": "string", "enum": values, "description": "the allowed command that fixes the cause, or \"none\""})
    };
    let problems: Vec<&str> = PROBLEMS.iter().map(|(p, _)| *p).collect();
    json!({
        "type": "object",
        "properties": {
            "problem": {"type": "string", "enum": problems, "description": "what the evidence shows"},
            "cause": {"type": "string", "maxLength": 300, "description": "the most likely cause, one or two sentences"},
            "action_command": command,
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "maxLength": 400, "description": "why, in one to three sentences"}
        },
        "required": ["problem", "cause", "action_command", "confidence", "rationale"],
        "additionalProperties": false
    })
}

pub fn recommendation_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "root_cause": {"type": "string"},
            "action_command": {"type": ["string", "null"], "description": "one allowed command, or null"},
            "rollback_command": {"type": ["string", "null"]},
            "risk": {"type": "string", "enum": ["low", "medium", "high"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "requires_human_approval": {"type": "boolean"}
        },
        "required": ["root_cause", "action_command", "rollback_command", "risk", "confidence", "requires_human_approval"],
        "additionalProperties": false
    })
}

fn unparseable(why: impl Into<String>) -> DiagnoseError {
    DiagnoseError::Unparseable(why.into())
}

/// The JSON object text, with one outer ``` fence removed if present.
fn object_text(reply: &str) -> Result<&str, DiagnoseError> {
    let mut text = reply.trim();
    if let Some(rest) = text.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        text = rest.strip_suffix("```").ok_or_else(|| unparseable("unterminated code fence"))?.trim();
    }
    if text.is_empty() {
        return Err(unparseable("empty reply"));
    }
    if !(text.starts_with('{') && text.ends_with('}')) {
        return Err(unparseable("reply is not a single JSON object"));
    }
    Ok(text)
}

/// serde fills a missing `Option` with None; a reply must still name every required key. Keys outside
/// `known` are logged (names only, bounded: the values are untrusted) and otherwise ignored.
fn require_keys(text: &str, keys: &[&str], known: &[&str]) -> Result<(), DiagnoseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| unparseable(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| unparseable("reply is not a JSON object"))?;
    if let Some(missing) = keys.iter().find(|k| !object.contains_key(**k)) {
        return Err(unparseable(format!("missing field `{missing}`")));
    }
    let extra = ignored_fields(object, known);
    if !extra.is_empty() {
        tracing::warn!(fields = ?extra, "Model reply has fields outside the schema; ignored.");
    }
    Ok(())
}

/// Names of the fields outside the schema (at most 10, each cut to 40 characters, shown escaped).
pub fn ignored_fields(object: &serde_json::Map<String, Value>, known: &[&str]) -> Vec<String> {
    object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .take(10)
        .map(|k| k.chars().take(40).flat_map(char::escape_debug).collect())
        .collect()
}

fn checked_text(field: &str, value: String, max: usize) -> Result<String, DiagnoseError> {
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(unparseable(format!("`{field}` is empty")));
    }
    if value.chars().count() > max {
        return Err(unparseable(format!("`{field}` is longer than {max} characters")));
    }
    Ok(value)
}

fn checked_command(field: &str, value: Option<String>) -> Result<Option<String>, DiagnoseError> {
    match value.map(|v| v.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("null") || v.eq_ignore_ascii_case("none") => Ok(None),
        Some(v) if v.chars().count() > MAX_COMMAND => {
            Err(unparseable(format!("`{field}` is longer than {MAX_COMMAND} characters")))
        }
        Some(v) => Ok(Some(v)),
    }
}

fn checked_confidence(value: f64) -> Result<f64, DiagnoseError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(unparseable(format!("confidence {value} is not between 0 and 1")))
    }
}

pub fn diagnosis(reply: &str, level: &str) -> Result<Diagnosis, DiagnoseError> {
    diagnosis_with_problem(reply, level).map(|(d, _)| d)
}

/// A level-1 reply and the problem class it named. A class that a restart does not fix (or one outside
/// [`PROBLEMS`]) makes the reply an abstention: no command, whatever `action_command` says. `problem`
/// is optional so that replies to an older prompt still parse.
pub fn diagnosis_with_problem(reply: &str, level: &str) -> Result<(Diagnosis, Option<String>), DiagnoseError> {
    let text = object_text(reply)?;
    require_keys(
        text,
        &["cause", "confidence", "action_command"],
        &["problem", "cause", "confidence", "action_command", "rationale"],
    )?;
    let raw: RawDiagnosis = serde_json::from_str(text).map_err(|e| unparseable(e.to_string()))?;
    let problem = raw.problem.map(|p| p.trim().chars().take(80).collect::<String>());
    let mut action_command = checked_command("action_command", raw.action_command)?;
    if let Some(p) = &problem
        && !PROBLEMS.iter().any(|(name, fixable)| *fixable && name.eq_ignore_ascii_case(p))
    {
        action_command = None;
    }
    let diagnosis = Diagnosis {
        cause: checked_text("cause", raw.cause, MAX_TEXT)?,
        confidence: checked_confidence(raw.confidence)?,
        action_command,
        rationale: raw.rationale.trim().chars().take(MAX_TEXT).collect(),
        level: level.to_string(),
    };
    Ok((diagnosis, problem))
}

/// `force_human`: policy says L2 always needs a human, whatever the model claims.
pub fn recommendation(reply: &str, force_human: bool) -> Result<Recommendation, DiagnoseError> {
    let text = object_text(reply)?;
    const REQUIRED: [&str; 5] = ["root_cause", "action_command", "risk", "confidence", "requires_human_approval"];
    require_keys(
        text,
        &REQUIRED,
        &["root_cause", "action_command", "rollback_command", "risk", "confidence", "requires_human_approval"],
    )?;
    let raw: RawRecommendation = serde_json::from_str(text).map_err(|e| unparseable(e.to_string()))?;
    let risk = raw.risk.trim().to_ascii_lowercase();
    if !matches!(risk.as_str(), "low" | "medium" | "high") {
        return Err(unparseable(format!("risk {risk:?} is not low, medium or high")));
    }
    Ok(Recommendation {
        root_cause: checked_text("root_cause", raw.root_cause, MAX_TEXT)?,
        action_command: checked_command("action_command", raw.action_command)?,
        rollback_command: checked_command("rollback_command", raw.rollback_command)?,
        risk,
        confidence: checked_confidence(raw.confidence)?,
        requires_human_approval: force_human || raw.requires_human_approval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l1_schema_enumerates_the_choices_when_given() {
        let choices = ["systemctl restart nginx".to_string()];
        let schema = diagnosis_schema(&choices);
        assert_eq!(schema["properties"]["action_command"]["enum"], json!(["systemctl restart nginx", "none"]));
        let open = diagnosis_schema(&[]);
        assert_eq!(open["properties"]["action_command"]["type"], "string");
        assert!(open["properties"]["action_command"].get("enum").is_none());
        // "none" from the enum means no command.
        let d = diagnosis(r#"{"cause":"c","confidence":0.4,"action_command":"none","rationale":"r"}"#, "l1").unwrap();
        assert_eq!(d.action_command, None);
    }

    #[test]
    fn diagnosis_replies_parse_strictly() {
        let ok = [
            (
                r#"{"cause":"nginx stopped","confidence":0.9,"action_command":"systemctl restart nginx","rationale":"r"}"#,
                Some("systemctl restart nginx"),
                "plain",
            ),
            (
                "```json\n{\"cause\":\"c\",\"confidence\":0.5,\"action_command\":null,\"rationale\":\"\"}\n```",
                None,
                "one outer fence",
            ),
            (r#"{"cause":"c","confidence":1,"action_command":"","rationale":"x"}"#, None, "empty command means none"),
        ];
        for (reply, command, why) in ok {
            let d = diagnosis(reply, "l1").unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(d.action_command.as_deref(), command, "{why}");
        }
        let bad = [
            ("", "empty reply"),
            ("   ", "empty reply"),
            ("I think nginx is down. {\"cause\":\"c\"}", "single JSON object"),
            ("{\"cause\":\"c\",\"confidence\":0.9}", "missing field"),
            (r#"{"cause":"c","confidence":1.5,"action_command":null,"rationale":""}"#, "between 0 and 1"),
            (r#"{"cause":"c","confidence":"high","action_command":null,"rationale":""}"#, "invalid type"),
            (r#"{"cause":"","confidence":0.5,"action_command":null,"rationale":""}"#, "`cause` is empty"),
            (r#"[{"cause":"c"}]"#, "single JSON object"),
            ("```json\n{\"cause\":\"c\"", "unterminated"),
        ];
        for (reply, needle) in bad {
            let e = diagnosis(reply, "l1").unwrap_err();
            assert!(matches!(e, DiagnoseError::Unparseable(_)), "{reply:?}");
            assert!(e.to_string().contains(needle), "{reply:?}: {e}");
            assert_eq!(e.escalation_reason(), "unparseable reply");
        }
        // Fields outside the schema are ignored (never read, never acted on), not a reason to escalate.
        let extra = r#"{"cause":"c","confidence":0.5,"action_command":"systemctl restart nginx","rationale":"","execute":"rm -rf /","id":7}"#;
        let d = diagnosis(extra, "l1").expect("extra fields are ignored");
        assert_eq!(d.action_command.as_deref(), Some("systemctl restart nginx"));
        let object: serde_json::Map<String, Value> = serde_json::from_str(extra).unwrap();
        assert_eq!(ignored_fields(&object, &["cause", "confidence", "action_command", "rationale"]), ["execute", "id"]);
        // A required field of the wrong type still is not.
        assert!(diagnosis(r#"{"cause":"c","confidence":0.5,"action_command":7,"rationale":"","x":1}"#, "l1").is_err());
        let long = format!(r#"{{"cause":"c","confidence":0.5,"action_command":"{}","rationale":""}}"#, "a".repeat(600));
        assert!(diagnosis(&long, "l1").is_err());
    }

    #[test]
    fn a_problem_a_restart_does_not_fix_is_an_abstention() {
        let reply = |problem: &str| {
            format!(
                r#"{{"problem":"{problem}","cause":"c","action_command":"systemctl restart nginx","confidence":0.9,"rationale":""}}"#
            )
        };
        let (d, p) = diagnosis_with_problem(&reply("configuration error"), "l1").unwrap();
        assert_eq!((d.action_command, p.as_deref()), (None, Some("configuration error")));
        let (d, _) = diagnosis_with_problem(&reply("service stopped or crashed"), "l1").unwrap();
        assert_eq!(d.action_command.as_deref(), Some("systemctl restart nginx"));
        let (d, _) = diagnosis_with_problem(&reply("the moon"), "l1").unwrap();
        assert_eq!(d.action_command, None, "an unknown class is no licence to act");
        let schema = diagnosis_schema(&[]);
        assert_eq!(schema["required"][0], "problem", "the class is asked first");
    }

    #[test]
    fn policy_can_force_human_approval() {
        let reply = r#"{"root_cause":"r","action_command":"systemctl restart nginx","rollback_command":null,"risk":"Low","confidence":0.8,"requires_human_approval":false}"#;
        assert!(recommendation(reply, true).unwrap().requires_human_approval);
        assert!(!recommendation(reply, false).unwrap().requires_human_approval);
        assert!(recommendation(&reply.replace("Low", "catastrophic"), true).is_err());
    }
}
