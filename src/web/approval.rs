//! `GET /approvals/{token}`: a confirm page that changes nothing (mail scanners and link previews fetch
//! links). `POST /approvals/{token}`: the decision, with the page's CSRF value, incident id and command
//! hash. An approve link only approves and a reject link only rejects.
//!
//! Every attempt is answered with a page naming the outcome. Refused ones (403/404/409/410) are logged,
//! audited (rate-limited) and counted per client IP; past [`crate::approval::throttle::LIMIT`] an
//! address gets 429.
//! A decision POST that carries `Origin` or `Sec-Fetch-Site` from another site is refused (403): the
//! form is only valid from medic's own page. Headers (no-store, no-referrer, CSP, no framing) come from
//! [`super::security`]; everything shown is askama-escaped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::AppState;
use crate::approval::throttle::Strike;
use crate::approval::{ApprovalError, Binding, Decider, Decision, DecisionForm};
use crate::audit::AuditRecord;
use crate::domain::{Actor, IncidentId, IncidentState};
use crate::memory::Outcome;

#[derive(Template)]
#[template(path = "pages/approval.html")]
struct ConfirmPage {
    approve: bool,
    service: String,
    host: String,
    monitor: String,
    incident_id: String,
    state: String,
    message: String,
    cause: Option<String>,
    recipient: String,
    expires: String,
    command: String,
    scope: Option<String>,
    rollback: Option<String>,
    csrf: String,
    command_hash: String,
}

#[derive(Template)]
#[template(path = "pages/result.html")]
struct ResultPage {
    title: String,
    message: String,
}

/// An HTML page; the security headers are added by the router's layer.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

pub(crate) fn result(status: StatusCode, title: &str, message: &str) -> Response {
    let html = ResultPage { title: title.into(), message: message.into() }
        .render()
        .unwrap_or_else(|_| "medic: internal error".into());
    page(status, html)
}

fn strike(error: &ApprovalError) -> Strike {
    match error {
        ApprovalError::Unknown | ApprovalError::Mismatch | ApprovalError::WrongAction(..) => Strike::Counts,
        _ => Strike::Free,
    }
}

fn refusal_status(error: &ApprovalError) -> (StatusCode, &'static str) {
    match error {
        ApprovalError::Unknown => (StatusCode::NOT_FOUND, "Link not valid"),
        ApprovalError::Expired(_) => (StatusCode::GONE, "Link expired"),
        ApprovalError::AlreadyDecided { .. } | ApprovalError::InJournal => (StatusCode::CONFLICT, "Already decided"),
        ApprovalError::Mismatch => (StatusCode::FORBIDDEN, "Form does not match"),
        ApprovalError::WrongAction(..) => (StatusCode::FORBIDDEN, "Wrong link for this decision"),
        ApprovalError::NotWaiting(_) => (StatusCode::CONFLICT, "No longer waiting for approval"),
        ApprovalError::Changed(_) => (StatusCode::CONFLICT, "The fix changed: asking again"),
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    warn!(error = %e, "Approval page failed.");
    result(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "medic could not handle this request. Nothing was changed.",
    )
}

/// The peer address of the connection, when the server recorded it.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// The client as the audit log records it.
fn decider(peer: Option<SocketAddr>, headers: &HeaderMap) -> Decider {
    Decider {
        ip: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        user_agent: user_agent(headers),
        operator: None,
    }
}

/// The client's user agent as medic records it: one line, control characters dropped, 300 at most.
pub(crate) fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// Logs, audits (while the throttle allows) and answers a refused attempt.
async fn refuse(
    strike: Strike,
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    message: String,
) -> Response {
    let who = decider(peer, headers);
    let refusal = state.throttle.refused(peer_ip(peer), strike);
    info!(status = status.as_u16(), client = %who.ip, attempts = refusal.count, reason = %message, "Approval attempt refused.");
    if refusal.audit {
        let record = AuditRecord::ApprovalRefused {
            status: status.as_u16(),
            reason: message.clone(),
            ip: who.ip,
            user_agent: who.user_agent,
        };
        if let Err(e) = state.store.write(move |ctx| ctx.audit(None, Actor::Human, record)).await {
            warn!(error = %e, "Could not audit a refused approval attempt.");
        }
    }
    result(status, title, &format!("{message}. Nothing was changed."))
}

fn throttled(seconds: u64) -> Response {
    let mut response = result(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "Too many refused approval attempts from your address. Wait and open the link from the email again.",
    );
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// `approval.require_login` and no console session: the link works only after logging in. The session
/// cookie is `SameSite=Strict`, so a link clicked in a webmail arrives without it; the login page, reached
/// from this page, sees it and comes straight back.
fn login_first(token: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(format!("/approvals/{token}").as_bytes()).collect();
    let html =
        LoginFirst { next: format!("/ui/login?next={next}") }.render().unwrap_or_else(|_| "medic: log in first".into());
    page(StatusCode::OK, html)
}

#[derive(Template)]
#[template(path = "pages/login_first.html")]
struct LoginFirst {
    next: String,
}

fn peer_ip(peer: Option<SocketAddr>) -> IpAddr {
    peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// What a closed incident's page says instead of offering buttons.
fn closed_outcome(state: IncidentState) -> &'static str {
    match state {
        IncidentState::Resolved => "it was fixed and verified",
        IncidentState::RecoveredByMonitor => "the monitor reports the service up again",
        IncidentState::Rejected => "the fix was rejected",
        IncidentState::Failed => "medic gave up on it; see the incident page",
        IncidentState::Approved | IncidentState::Executing | IncidentState::Verifying => {
            "a fix was approved and is running or being verified"
        }
        _ => "it is being handled again; a new email will follow if a decision is needed",
    }
}

pub async fn confirm(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if let Some(seconds) = state.throttle.blocked(peer_ip(peer)) {
        return throttled(seconds);
    }
    if state.console.require_login && state.console.operator(peer.map(|p| p.ip()), &headers).await.is_none() {
        return login_first(&token);
    }
    let view = match state.approvals.view(&token).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let (status, title) = refusal_status(&e);
            return refuse(strike(&e), &state, peer, &headers, status, title, e.to_string()).await;
        }
        Err(e) => return internal(e),
    };
    let incident = match state.store.incident(view.incident_id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            let e = ApprovalError::Unknown;
            return refuse(
                Strike::Counts,
                &state,
                peer,
                &headers,
                StatusCode::NOT_FOUND,
                "Link not valid",
                e.to_string(),
            )
            .await;
        }
        Err(e) => return internal(e),
    };
    if incident.state != IncidentState::AwaitingApproval {
        // A closed (or re-opened) incident offers no buttons, only its outcome.
        return result(
            StatusCode::CONFLICT,
            "No decision needed",
            &format!(
                "Incident {} is {}: {}. This link decides nothing any more.",
                incident.id,
                incident.state,
                closed_outcome(incident.state)
            ),
        );
    }
    let d = &incident.details;
    let host = incident.host.clone().or(d.host_name.clone());
    let verdict = state.gate.check(&view.argv.join(" "), host.as_deref(), crate::gate::Authority::Human);
    let scope = crate::gate::out_of_scope(verdict.bindings(), &view.service, view.container.as_deref());
    let html = ConfirmPage {
        approve: view.action == Decision::Approve,
        service: view.service.clone(),
        host: host.clone().unwrap_or_else(|| "unknown".into()),
        monitor: incident.monitor.name.clone(),
        incident_id: incident.id.to_string(),
        state: "awaiting approval".into(),
        message: state.notifier.shown_text(&incident.error_logs, host.as_deref()),
        cause: d
            .level_2_recommendation
            .as_ref()
            .map(|r| r.root_cause.clone())
            .or_else(|| d.fix_cause.clone())
            .map(|c| state.notifier.shown_text(&c, host.as_deref())),
        recipient: view.recipient,
        expires: view.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        command: view.argv.join(" "),
        scope,
        rollback: view.rollback,
        csrf: view.csrf,
        command_hash: view.command_hash,
    }
    .render();
    match html {
        Ok(html) => page(StatusCode::OK, html),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct DecisionFormData {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    incident_id: String,
    #[serde(default)]
    command_hash: String,
    #[serde(default)]
    reason: String,
}

/// `Sec-Fetch-Site` (sent by current browsers, not settable by a page) must say the form came from
/// medic's own page; without it, an `Origin` must be medic's. `Origin: null` is what a browser sends for
/// a form on a `no-referrer` page such as medic's, so it is no proof either way; the form's CSRF value,
/// only on medic's page, still is.
pub(crate) fn cross_site(headers: &HeaderMap, public_url: &url::Url) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return (!matches!(site, "same-origin" | "none"))
            .then(|| format!("the form was sent from another site (Sec-Fetch-Site: {site})"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let ours = public_url.origin().ascii_serialization();
        if origin != ours && origin != "null" {
            return Some(format!("the form was sent from another origin ({origin}, expected {ours})"));
        }
    }
    None
}

pub async fn decide(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<DecisionFormData>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(seconds) = state.throttle.blocked(peer_ip(peer)) {
        return throttled(seconds);
    }
    if let Some(why) = cross_site(&headers, state.notifier.public_url()) {
        return refuse(Strike::Counts, &state, peer, &headers, StatusCode::FORBIDDEN, "Cross-site form refused", why)
            .await;
    }
    let Ok(Form(form)) = form else {
        return result(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The decision must be sent from the confirmation page. Nothing was changed.",
        );
    };
    let asked = match form.decision.as_str() {
        "approve" => Some(Decision::Approve),
        "reject" => Some(Decision::Reject),
        "" => None,
        _ => return result(StatusCode::BAD_REQUEST, "Bad request", "Choose approve or reject. Nothing was changed."),
    };
    if form.csrf.is_empty() {
        return refuse(
            Strike::Counts,
            &state,
            peer,
            &headers,
            StatusCode::FORBIDDEN,
            "Form token missing",
            "This form lacks its token; open the link from the email again".into(),
        )
        .await;
    }
    let reason: String = form.reason.trim().chars().take(1000).collect();
    let reason = (!reason.is_empty()).then_some(reason);
    // What the approval would be bound to now: the incident's current host mapping and gate verdict.
    let view = match state.approvals.view(&token).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let (status, title) = refusal_status(&e);
            return refuse(strike(&e), &state, peer, &headers, status, title, e.to_string()).await;
        }
        Err(e) => return internal(e),
    };
    let current = match state.store.incident(view.incident_id).await {
        Ok(Some(incident)) => {
            let target = state.inventory.resolve(&incident.key, &incident.monitor);
            Binding::current(&state.gate, target.as_ref(), &view.argv)
        }
        Ok(None) => Err("the incident does not exist".into()),
        Err(e) => return internal(e),
    };
    let decision_form = DecisionForm {
        incident_id: form.incident_id.clone(),
        command_hash: form.command_hash.clone(),
        csrf: form.csrf.clone(),
        decision: asked,
        reason: reason.clone(),
    };
    let mut who = decider(peer, &headers);
    if state.console.require_login {
        match state.console.operator(peer.map(|p| p.ip()), &headers).await {
            Some(operator) => who.operator = Some(operator.name),
            None => {
                return refuse(
                    Strike::Free,
                    &state,
                    peer,
                    &headers,
                    StatusCode::FORBIDDEN,
                    "Console login required",
                    "approval links need a console session here (approval.require_login); log in and open the link again".into(),
                )
                .await;
            }
        }
    }
    let decided = match state.approvals.decide(&token, decision_form, who, current).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            if let ApprovalError::Changed(_) = &e
                && let Ok(Some(incident)) = state.store.incident(view.incident_id).await
            {
                state.runner.enqueue(view.incident_id, incident.key);
            }
            let (status, title) = refusal_status(&e);
            return refuse(strike(&e), &state, peer, &headers, status, title, e.to_string()).await;
        }
        Err(e) => return internal(e),
    };
    let (id, command) = (decided.incident_id, decided.argv.join(" "));
    info!(incident_id = %id, decision = decided.decision.as_str(), who = %decided.who, "Approval decided.");
    match decided.decision {
        Decision::Approve => {
            if let Ok(Some(incident)) = state.store.incident(id).await {
                state.runner.enqueue(id, incident.key);
            }
            result(StatusCode::OK, "Approved", &format!("medic is running `{command}` now and will email the result."))
        }
        Decision::Reject => {
            remember_rejection(&state, id, &command, &decided.recipient, reason).await;
            result(
                StatusCode::OK,
                "Rejected",
                &format!("`{command}` will not run. The incident is closed as rejected."),
            )
        }
    }
}

/// A rejected fix becomes a negative example for level 2, with the human's reason.
pub(crate) async fn remember_rejection(
    state: &AppState,
    id: IncidentId,
    command: &str,
    recipient: &str,
    reason: Option<String>,
) {
    let (Some(memory), Ok(Some(incident))) = (&state.memory, state.store.incident(id).await) else { return };
    let entry = crate::memory::MemoryEntry {
        id: uuid::Uuid::now_v7(),
        service: incident.service_name.clone(),
        monitor: incident.monitor.name.clone(),
        symptom: incident.error_logs.chars().take(300).collect(),
        signature: crate::memory::signature::signature(&incident.error_logs, &incident.details.evidence, 10),
        root_cause: incident
            .details
            .level_2_recommendation
            .as_ref()
            .map(|r| r.root_cause.clone())
            .or(incident.details.fix_cause.clone())
            .unwrap_or_else(|| "unknown".into()),
        command: command.to_string(),
        outcome: Outcome::Rejected,
        approved_by: Some(recipient.to_string()),
        approved_at: Some(chrono::Utc::now()),
        incident_id: Some(id.to_string()),
        reason: reason.or_else(|| Some("rejected without a reason".into())),
        created_at: chrono::Utc::now(),
    };
    if let Err(e) = memory.store(&entry).await {
        warn!(error = %e, "Could not store the rejection in memory.");
    }
}
