//! What an approval is bound to besides the argv ([`Binding`]: host, service, container, the gate's
//! verdict), and who decided it ([`Decider`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::gate::{Authority, Gate};
use crate::inventory::Target;

/// Where and as what a command would run: what an approval is bound to besides the argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// Host name with its transport and address (`web1 ssh medic@10.0.0.5:22`).
    pub host: String,
    pub service: String,
    pub container: Option<String>,
    /// The gate's verdict for the argv on that host, for a human (`approval|template|category`).
    pub verdict: String,
}

impl Binding {
    /// The binding as of now: the incident's current target and the gate's current verdict.
    pub fn current(gate: &Gate, target: Option<&Target>, argv: &[String]) -> Result<Self, String> {
        let target = target.ok_or("the incident's monitor no longer maps to a host in [inventory]")?;
        let h = &target.host;
        let verdict = gate.check(&argv.join(" "), Some(&h.name), Authority::Human);
        if verdict.argv() != argv {
            return Err(format!("the gate now refuses `{}` on {}: {}", argv.join(" "), h.name, verdict.reason()));
        }
        Ok(Self {
            host: format!("{} {:?} {}@{}:{}", h.name, h.transport, h.user, h.address, h.port).to_lowercase(),
            service: target.service.clone(),
            container: target.container.clone(),
            verdict: format!("{}|{}", verdict.kind(), verdict.template().unwrap_or("")),
        })
    }

    /// What differs between the approved binding and the current one, for the refusal page.
    pub fn difference(&self, now: &Binding) -> Option<String> {
        let mut diffs = Vec::new();
        if self.host != now.host {
            diffs.push(format!("the host is now `{}` (the link was for `{}`)", now.host, self.host));
        }
        if self.service != now.service {
            diffs.push(format!("the service is now `{}` (the link was for `{}`)", now.service, self.service));
        }
        if self.container != now.container {
            diffs.push(format!(
                "the container is now `{}` (the link was for `{}`)",
                now.container.as_deref().unwrap_or("none"),
                self.container.as_deref().unwrap_or("none")
            ));
        }
        if self.verdict != now.verdict {
            diffs.push(format!("the gate's verdict is now `{}` (it was `{}`)", now.verdict, self.verdict));
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

/// Who decided, from where.
#[derive(Debug, Clone, Default)]
pub struct Decider {
    pub ip: String,
    pub user_agent: String,
    /// The console operator whose session made the decision, when there was one.
    pub operator: Option<String>,
}

impl Decider {
    /// "alice@example.com from 192.0.2.7 (Mozilla/5.0 …) at 2026-11-30 12:00:00 UTC"
    pub fn describe(&self, recipient: &str, at: DateTime<Utc>) -> String {
        // The user agent is the client's text: shown defanged, on one line.
        let ua = crate::notify::quote::field(&self.user_agent, 120);
        let recipient = match &self.operator {
            Some(name) if recipient.is_empty() => format!("operator {name} (console)"),
            Some(name) => format!("operator {name} (console session, link sent to {recipient})"),
            None => recipient.to_string(),
        };
        format!(
            "{recipient} from {} ({}) at {}",
            if self.ip.is_empty() { "unknown address" } else { &self.ip },
            if ua.is_empty() { "no user agent" } else { &ua },
            at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}
