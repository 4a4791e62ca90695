//! Approval lifecycle: an approval that nobody decides never strands its incident.
//!
//! A background sweep finds incidents in `awaiting_approval` with no usable link left (all expired, or
//! issued before bound approvals) and moves them back to `escalated`; the pipeline's escalate step then
//! asks again with new links, up to `approval.max_requests` rounds, after which it parks the incident
//! with an escalation email saying nobody decided. Each expiry is audited.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Runner;
use crate::approval::{Approvals, Closed, ask_again};
use crate::audit::AuditRecord;
use crate::domain::{Actor, IncidentState};
use crate::store::Store;

/// How often to look: a quarter of the link lifetime, between 1 s and 30 s.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// One pass: re-opens every stranded incident; returns how many.
pub async fn sweep_expired_approvals(store: &Store, approvals: &Approvals, runner: &Runner) -> usize {
    let stranded = match approvals.stranded().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot look for expired approvals.");
            return 0;
        }
    };
    let max = approvals.max_requests();
    let mut n = 0;
    for (id, requests) in stranded {
        let next = if requests >= max {
            format!("no decision after {requests} request(s): medic stops asking and leaves it to a human")
        } else {
            format!("asking again with new links (request {} of {max})", requests + 1)
        };
        let reason = format!("approval links expired without a decision; {next}");
        let result = store
            .write(move |ctx| {
                let state = ctx.state_of(id)?;
                if state != IncidentState::AwaitingApproval {
                    return Ok(false);
                }
                let record = AuditRecord::ApprovalExpired { requests, next: next.clone() };
                ask_again(ctx, id, Closed::Expired, &reason, (Actor::System, record))?;
                Ok(true)
            })
            .await;
        match result {
            Ok(true) => {
                n += 1;
                if let Ok(Some(incident)) = store.incident(id).await {
                    runner.enqueue(id, incident.key);
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, incident_id = %id, "Cannot re-open an incident whose approval expired."),
        }
    }
    if n > 0 {
        info!(n_incidents = n, "Approvals expired without a decision: asking again.");
    }
    n
}

/// Runs the sweep until `shutdown`.
pub async fn run(store: Store, approvals: Approvals, runner: Runner, shutdown: CancellationToken) {
    let interval = sweep_interval(approvals.ttl());
    loop {
        sweep_expired_approvals(&store, &approvals, &runner).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {},
        }
    }
}
