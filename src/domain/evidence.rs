//! Evidence gathered from a host: read-only command results, already redacted.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// The diagnostic command as run (or as it would have run).
    pub command: String,
    pub exit_code: Option<i32>,
    /// Redacted, capped output (stdout, then stderr).
    pub output: String,
    /// Why it did not run or did not finish.
    pub error: Option<String>,
}

impl EvidenceItem {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.exit_code == Some(0)
    }
}

/// Evidence as one block of text for prompts and emails, each item headed by its command.
pub fn render(items: &[EvidenceItem], max_chars: usize) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str(&format!("$ {}\n", item.command));
        if let Some(e) = &item.error {
            out.push_str(&format!("[not available: {e}]\n"));
        } else {
            if item.exit_code != Some(0) {
                out.push_str(&format!("[exit status {}]\n", item.exit_code.unwrap_or(-1)));
            }
            out.push_str(item.output.trim_end());
            out.push('\n');
        }
        out.push('\n');
        if out.chars().count() > max_chars {
            let cut: String = out.chars().take(max_chars).collect();
            return cut + "\n…[evidence truncated]\n";
        }
    }
    out
}
