//! `medic hosts check`: before the first 3 a.m. incident, run a host's evidence plan once and say what
//! will not work: an unreachable host, a diagnostic the ssh user may not run (journal permissions, a
//! missing `docker`), and a login shell that prints. The last one matters more than it looks: rc files
//! that print (pyenv, nvm, banners) put the same lines into every piece of evidence, now and then, and the
//! validated-fix memory compares evidence, so the same fault stops looking the same.
//!
//! Only the gate's diagnostics run, exactly as during an incident.

use std::collections::BTreeSet;

use super::Collector;
use crate::domain::EvidenceItem;
use crate::inventory::Target;
use crate::transport::Transport;

/// What one host said.
#[derive(Debug)]
pub struct HostReport {
    pub host: String,
    pub transport: String,
    pub service: String,
    pub items: Vec<EvidenceItem>,
    /// Lines every command printed on stderr: the login shell's, not the commands'.
    pub shell_noise: Vec<String>,
}

/// How a diagnostic went, for the report and the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum ItemStatus {
    /// Exit 0.
    Ok,
    /// Ran and exited non-zero: often fine (`systemctl status` of a stopped unit exits 3).
    NonZero(i32),
    /// Could not run: refused by the gate, not found (127), not executable (126), timed out, no connection.
    Failed(String),
}

pub fn status(item: &EvidenceItem) -> ItemStatus {
    match (&item.error, item.exit_code) {
        (Some(e), _) => ItemStatus::Failed(e.clone()),
        (None, Some(0)) => ItemStatus::Ok,
        (None, Some(127)) => ItemStatus::Failed("command not found on the host (exit 127)".into()),
        (None, Some(126)) => ItemStatus::Failed("not executable for this user (exit 126)".into()),
        (None, Some(code)) => ItemStatus::NonZero(code),
        (None, None) => ItemStatus::Failed("no exit status".into()),
    }
}

fn stderr_lines(item: &EvidenceItem) -> BTreeSet<String> {
    item.output
        .split_once("\n[stderr]\n")
        .map(|(_, err)| err.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Lines found on the stderr of every command that ran (at least two ran).
pub fn shell_noise(items: &[EvidenceItem]) -> Vec<String> {
    let ran: Vec<&EvidenceItem> = items.iter().filter(|i| i.error.is_none()).collect();
    if ran.len() < 2 {
        return Vec::new();
    }
    let mut common = stderr_lines(ran[0]);
    for item in &ran[1..] {
        let lines = stderr_lines(item);
        common.retain(|l| lines.contains(l));
    }
    common.into_iter().collect()
}

pub async fn check_host(collector: &Collector, target: &Target, transport: &dyn Transport) -> HostReport {
    let items = collector.collect(target, transport).await;
    HostReport {
        host: target.host.name.clone(),
        transport: transport.describe(),
        service: target.service.clone(),
        shell_noise: shell_noise(&items),
        items,
    }
}

impl HostReport {
    /// True when nothing could run at all.
    pub fn unreachable(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.error.is_some())
    }

    pub fn failures(&self) -> usize {
        self.items.iter().filter(|i| matches!(status(i), ItemStatus::Failed(_))).count()
    }

    pub fn render(&self) -> String {
        let mut out = format!("{} ({}), service {}\n", self.host, self.transport, self.service);
        if self.items.is_empty() {
            out.push_str("  no diagnostics apply: the gate's diagnostics list is empty for this host\n");
        }
        for item in &self.items {
            let line = match status(item) {
                ItemStatus::Ok => format!("  ok       {}\n", item.command),
                ItemStatus::NonZero(code) => format!("  exit {code:<3} {}\n", item.command),
                ItemStatus::Failed(why) => format!("  FAILED   {}: {why}\n", item.command),
            };
            out.push_str(&line);
        }
        if !self.shell_noise.is_empty() {
            out.push_str(
                "  WARNING  the login shell prints on every command (rc files?); this goes into all evidence\n",
            );
            out.push_str(
                "           and makes the same fault look different to memory. Give the ssh user a quiet shell:\n",
            );
            for line in &self.shell_noise {
                out.push_str(&format!("           | {line}\n"));
            }
        }
        if self.unreachable() {
            out.push_str("  UNREACHABLE: no diagnostic could run\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(command: &str, output: &str, exit: Option<i32>, error: Option<&str>) -> EvidenceItem {
        EvidenceItem { command: command.into(), exit_code: exit, output: output.into(), error: error.map(Into::into) }
    }

    #[test]
    fn noise_is_what_every_command_printed_on_stderr() {
        let items = [
            item("uptime", "up 3 days\n[stderr]\nWelcome to web1\npyenv: cannot rehash\n", Some(0), None),
            item("df -h", "/dev/vda 36%\n[stderr]\npyenv: cannot rehash\nWelcome to web1\n", Some(0), None),
            item("journalctl -u x", "\n[stderr]\nWelcome to web1\nNo journal files were found.\n", Some(1), None),
            item("docker logs x", "", None, Some("collection time bound reached")),
        ];
        assert_eq!(shell_noise(&items), vec!["Welcome to web1".to_string()]);
        assert!(shell_noise(&items[..1]).is_empty(), "one command proves nothing");
        let quiet = [item("uptime", "up\n", Some(0), None), item("df -h", "x\n[stderr]\nwarn\n", Some(0), None)];
        assert!(shell_noise(&quiet).is_empty());
    }

    #[test]
    fn statuses() {
        assert_eq!(status(&item("a", "", Some(0), None)), ItemStatus::Ok);
        assert_eq!(status(&item("a", "", Some(3), None)), ItemStatus::NonZero(3));
        assert!(matches!(status(&item("a", "", Some(127), None)), ItemStatus::Failed(w) if w.contains("not found")));
        assert!(matches!(status(&item("a", "", None, Some("refused"))), ItemStatus::Failed(_)));
    }
}
