//! One decision on one token row, inside the writer's transaction: the checks both a link's POST and
//! the console's inbox go through (usable, right action, still waiting, same binding, journal first),
//! then every token of the incident closed and the incident moved, audited, in one transaction. Also
//! [`ask_again`]: closing a request's open links without a decision.

use crate::store::db::params;

use super::journal::{DecisionJournal, Entry};
use super::{ApprovalError, Binding, Decided, Decider, Decision, Row};
use crate::audit::AuditRecord;
use crate::domain::{Actor, IncidentId, IncidentState, Transition};
use crate::store::{StoreError, WriteCtx};

/// The decision on one token row, inside the writer's transaction (links and the console share it).
#[allow(clippy::too_many_arguments)]
pub(super) fn decide_row(
    ctx: &mut WriteCtx<'_>,
    journal: &DecisionJournal,
    hash: &str,
    row: Row,
    asked: Option<Decision>,
    reason: Option<String>,
    decider: &Decider,
    current: &Result<Binding, String>,
) -> Result<Result<Decided, ApprovalError>, StoreError> {
    let action = match row.usable(journal, ctx.now())? {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(asked) = asked
        && asked != action
    {
        return Ok(Err(ApprovalError::WrongAction(action.action(), asked.action())));
    }
    let id = row.incident_id()?;
    let state = ctx.state_of(id)?;
    if state != IncidentState::AwaitingApproval {
        return Ok(Err(ApprovalError::NotWaiting(state.to_string())));
    }
    let now = crate::audit::format_time(ctx.now());
    let changed = match current {
        Err(why) => Some(why.clone()),
        Ok(now_binding) => row.binding().difference(now_binding),
    };
    if let Some(why) = changed {
        let reason = format!("approval refused: {why}; asking again");
        let record = AuditRecord::ApprovalRefused {
            status: 409,
            reason: reason.clone(),
            ip: decider.ip.clone(),
            user_agent: decider.user_agent.clone(),
        };
        ask_again(ctx, id, Closed::Superseded, &reason, (Actor::Human, record))?;
        return Ok(Err(ApprovalError::Changed(why)));
    }
    // Outside the database first: a restored backup cannot revive this request.
    match journal.record(&row.request_id, &row.incident, Entry::Decided) {
        Ok(true) => {}
        Ok(false) => return Ok(Err(ApprovalError::InJournal)),
        Err(e) => return Err(StoreError::Corrupt(format!("cannot write the decision journal: {e}"))),
    }
    // First valid decision wins: close every token of this incident.
    ctx.conn().execute(
        "UPDATE approvals SET decided_at = ?2, decision = ?3,
             reason = CASE WHEN token_hash = ?4 THEN ?5 ELSE reason END,
             used = CASE WHEN token_hash = ?4 THEN 1 ELSE 0 END,
             decided_ip = CASE WHEN token_hash = ?4 THEN ?6 ELSE NULL END,
             decided_ua = CASE WHEN token_hash = ?4 THEN ?7 ELSE NULL END
         WHERE incident_id = ?1 AND decided_at IS NULL",
        params![row.incident, now, action.as_str(), hash, reason, decider.ip, decider.user_agent],
    )?;
    let argv: Vec<String> = serde_json::from_str(&row.argv)?;
    let to = match action {
        Decision::Approve => IncidentState::Approved,
        Decision::Reject => IncidentState::Rejected,
    };
    let who = decider.describe(&row.recipient, ctx.now());
    let why = match (&action, &reason) {
        (Decision::Approve, _) => format!("approved by {who}: {}", argv.join(" ")),
        (Decision::Reject, Some(r)) if !r.trim().is_empty() => format!("rejected by {who}: {r}"),
        (Decision::Reject, _) => format!("rejected by {who}"),
    };
    ctx.transition(id, &Transition::new(state, to, why)?, Actor::Human)?;
    ctx.update_details(id, |d| d.decided_by = Some(who.clone()))?;
    ctx.audit(
        Some(id),
        Actor::Human,
        AuditRecord::ApprovalDecided {
            decision: action.as_str().into(),
            recipient: row.recipient.clone(),
            reason: reason.clone().unwrap_or_default(),
            ip: decider.ip.clone(),
            user_agent: decider.user_agent.clone(),
            request_id: row.request_id.clone(),
            operator: decider.operator.clone().unwrap_or_default(),
        },
    )?;
    Ok(Ok(Decided { incident_id: id, argv, recipient: row.recipient, decision: action, who }))
}

/// Why the open links of a request were closed without a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// What would run changed (host, mapping, gate verdict) before the POST.
    Superseded,
    /// Every link expired unanswered.
    Expired,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Superseded => "superseded",
            Closed::Expired => "expired",
        }
    }
}

/// Closes every open link of an incident waiting for approval, audits why, and moves it back to
/// `escalated` so that the pipeline asks again with new links (or stops asking). In the caller's
/// transaction; the one way an approval request ends without a decision.
pub fn ask_again(
    ctx: &mut WriteCtx<'_>,
    id: IncidentId,
    closed: Closed,
    reason: &str,
    (actor, record): (Actor, AuditRecord),
) -> Result<(), StoreError> {
    ctx.conn().execute(
        "UPDATE approvals SET decided_at = ?2, decision = ?3 WHERE incident_id = ?1 AND decided_at IS NULL",
        params![id.to_string(), crate::audit::format_time(ctx.now()), closed.as_str()],
    )?;
    ctx.audit(Some(id), actor, record)?;
    ctx.update_details(id, |d| d.escalation_reason = Some(reason.to_string()))?;
    let transition = Transition::new(IncidentState::AwaitingApproval, IncidentState::Escalated, reason)?;
    ctx.transition(id, &transition, Actor::System)
}
