//! A simple markdown runbook format for `medic memory import`:
//!
//! ```markdown
//! ## nginx stopped after a bad reload          <- one entry per `##` heading (the heading is the symptom
//! - service: nginx                                 unless a `symptom:` line says otherwise)
//! - symptom: connect ECONNREFUSED on port 80
//! - cause: a config reload failed and left nginx stopped
//! - command: systemctl restart nginx
//! - signature: nginx.service: Failed with result 'exit-code'   <- repeatable; normalised on import
//! ```
//!
//! Required per entry: `service`, `cause`, `command`. Imported entries count as verified fixes (approved
//! by "runbook import"); they still pass the gate and the action policy every time they are used.

use chrono::Utc;

use super::signature::normalize_line;
use super::{MemoryEntry, MemoryError, Outcome, validate_entry};

pub fn parse(text: &str) -> Result<Vec<MemoryEntry>, MemoryError> {
    let mut entries = Vec::new();
    let mut current: Option<(usize, MemoryEntry)> = None;
    let finish = |current: Option<(usize, MemoryEntry)>, entries: &mut Vec<MemoryEntry>| -> Result<(), MemoryError> {
        if let Some((line, entry)) = current {
            if entry.root_cause.trim().is_empty() {
                return Err(MemoryError::Import { line, message: "entry has no `cause:`".into() });
            }
            validate_entry(&entry).map_err(|message| MemoryError::Import { line, message })?;
            entries.push(entry);
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if let Some(title) = line.strip_prefix("## ") {
            finish(current.take(), &mut entries)?;
            current = Some((
                n,
                MemoryEntry {
                    id: uuid::Uuid::now_v7(),
                    service: String::new(),
                    monitor: String::new(),
                    symptom: title.trim().to_string(),
                    signature: Vec::new(),
                    root_cause: String::new(),
                    command: String::new(),
                    outcome: Outcome::Verified,
                    approved_by: Some("runbook import".into()),
                    approved_at: Some(Utc::now()),
                    incident_id: None,
                    reason: None,
                    created_at: Utc::now(),
                },
            ));
            continue;
        }
        let Some(item) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) else { continue };
        let Some((_, entry)) = current.as_mut() else {
            return Err(MemoryError::Import {
                line: n,
                message: "a `- key: value` line before any `## ` heading".into(),
            });
        };
        let Some((key, value)) = item.split_once(':') else {
            return Err(MemoryError::Import { line: n, message: "expected `- key: value`".into() });
        };
        let value = value.trim().trim_matches('`').to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "service" => entry.service = value,
            "monitor" => entry.monitor = value,
            "symptom" => entry.symptom = value,
            "cause" | "root cause" | "root_cause" => entry.root_cause = value,
            "command" | "fix" => entry.command = value,
            "signature" => entry.signature.push(normalize_line(&value)),
            other => {
                return Err(MemoryError::Import {
                    line: n,
                    message: format!("unknown key {other:?} (service, monitor, symptom, cause, command, signature)"),
                });
            }
        }
    }
    finish(current, &mut entries)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbook_entries_parse() {
        let text = "# My runbook\n\n## nginx stopped\n- service: nginx\n- cause: bad reload\n- command: `systemctl restart nginx`\n\
                    - signature: nginx[123]: exited 2026-01-01T00:00:00Z\n\n## disk full\n- service: postgresql\n- symptom: No space left on device\n\
                    - cause: logs filled /var\n- command: /usr/local/lib/medic/clean_logs.sh postgresql\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].symptom, "nginx stopped");
        assert_eq!(entries[0].command, "systemctl restart nginx");
        assert_eq!(entries[0].signature, vec!["nginx[<n>]: exited <time>"]);
        assert_eq!(entries[1].symptom, "No space left on device");
    }

    #[test]
    fn runbook_errors_name_the_line() {
        let cases = [
            ("- service: x\n", 1, "before any"),
            ("## a\n- service: x\n- command: y\n", 1, "no `cause:`"),
            ("## a\n- service: x\n- cause: c\n- colour: red\n", 4, "unknown key"),
            ("## a\n- cause: c\n- command: y\n", 1, "service is empty"),
            ("## a\n- service nginx\n", 2, "key: value"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(&format!("line {line}")) && shown.contains(needle), "{text:?}: {shown}");
        }
    }
}
