//! `/ui/login`, `/ui/logout` and `/ui/sessions`.
//!
//! The login form has its own CSRF value (a short-lived `medic_login` cookie that the form must repeat),
//! so a page elsewhere cannot log a browser into an attacker's account. A successful login always starts
//! a new session (no fixation). `next` is followed only when it is a path on medic itself.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::{SessionRow, short_time};
use super::{Checked, Client, Layout, Operator, internal, render, see_other};
use crate::audit::AuditRecord;
use crate::domain::Actor;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
    no_users: bool,
}

#[derive(Template)]
#[template(path = "console/sessions.html")]
struct SessionsPage {
    layout: Layout,
    sessions: Vec<SessionRow>,
    own: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// A path on medic itself, or the overview.
fn local_path(next: &str) -> String {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.contains("://");
    if ok && next.len() < 2000 { next.to_string() } else { "/ui/".into() }
}

fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn login_page(state: &AppState, status: StatusCode, next: &str, error: Option<String>) -> Response {
    let sessions = &state.console.sessions;
    let csrf = crate::random_token(24);
    let page = LoginPage { csrf: csrf.clone(), next: local_path(next), error, no_users: !sessions.has_users() };
    let mut response = render(&page);
    *response.status_mut() = status;
    let cookie = sessions.cookie(sessions.login_cookie_name(), &csrf, std::time::Duration::from_secs(1800));
    with_cookies(response, &[cookie])
}

pub async fn form(
    State(state): State<Arc<AppState>>,
    client: Client,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = local_path(&query.next);
    if state.console.operator(client.ip, &headers).await.is_some() {
        return see_other(&next);
    }
    // Behind a trusted SSO proxy the header is the login.
    if let Some(user) = state.console.proxy_user(client.ip, &headers) {
        return start_session(&state, &user, &client, &next, "proxy header").await;
    }
    login_page(&state, StatusCode::OK, &next, None)
}

async fn start_session(state: &AppState, user: &str, client: &Client, next: &str, how: &str) -> Response {
    let sessions = &state.console.sessions;
    let token = match sessions.create(user, client.ip, &client.user_agent).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    audit_login(state, user, &format!("ok ({how})"), client).await;
    tracing::info!(operator = %user, how, "Console login.");
    let clear_login = sessions.cookie(sessions.login_cookie_name(), "", std::time::Duration::ZERO);
    with_cookies(see_other(next), &[sessions.session_cookie(&token), clear_login])
}

async fn audit_login(state: &AppState, user: &str, outcome: &str, client: &Client) {
    let record = AuditRecord::OperatorLogin {
        operator: user.chars().take(64).collect(),
        outcome: outcome.into(),
        ip: client.ip.map(|i| i.to_string()).unwrap_or_default(),
        user_agent: client.user_agent.clone(),
    };
    if let Err(e) = state.store.write(move |ctx| ctx.audit(None, Actor::Human, record)).await {
        tracing::warn!(error = %e, "Could not audit a console login.");
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    client: Client,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ip = client.ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let throttle = state.console.sessions.throttle();
    if let Some(seconds) = throttle.blocked(ip) {
        let mut response = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "/ui/",
            Some(format!("Too many failed logins from your address. Try again in {seconds} s.")),
        );
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let Ok(Form(form)) = form else {
        return login_page(&state, StatusCode::BAD_REQUEST, "/ui/", Some("Send the form from this page.".into()));
    };
    if let Some(why) = crate::web::approval::cross_site(&headers, state.notifier.public_url()) {
        return login_page(&state, StatusCode::FORBIDDEN, &form.next, Some(format!("Refused: {why}.")));
    }
    let expected = super::cookie_value(&headers, state.console.sessions.login_cookie_name()).unwrap_or_default();
    {
        use subtle::ConstantTimeEq;
        if form.csrf.is_empty() || !bool::from(form.csrf.as_bytes().ct_eq(expected.as_bytes())) {
            return login_page(
                &state,
                StatusCode::FORBIDDEN,
                &form.next,
                Some("This login form expired or was not sent from medic's page. Try again.".into()),
            );
        }
    }
    let name = form.name.trim();
    if super::valid_name(name) && state.console.sessions.verify_password(name, &form.password).await {
        return start_session(&state, name, &client, &local_path(&form.next), "password").await;
    }
    let refusal = throttle.refused(ip, crate::approval::throttle::Strike::Counts);
    tracing::info!(client = %ip, attempts = refusal.count, "Console login refused.");
    if refusal.audit {
        audit_login(&state, name, "refused: wrong name or password", &client).await;
    }
    login_page(&state, StatusCode::UNAUTHORIZED, &form.next, Some("Wrong operator name or password.".into()))
}

/// The sessions page's forms: logout carries only its CSRF value, revoke a session's id.
#[derive(Deserialize)]
pub struct SessionForm {
    #[serde(default)]
    id: String,
}

pub async fn logout(State(state): State<Arc<AppState>>, Checked(operator, _): Checked<SessionForm>) -> Response {
    let sessions = &state.console.sessions;
    if let Err(e) = sessions.revoke(&operator.session_id).await {
        return internal(e);
    }
    super::audit_action(&state, &operator, "logout", &operator.session_id, "").await;
    let clear = sessions.cookie(sessions.cookie_name(), "", std::time::Duration::ZERO);
    with_cookies(see_other("/ui/login"), &[clear])
}

pub async fn sessions(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let mut sessions = match state.console.sessions.list().await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    for s in &mut sessions {
        for t in [&mut s.created_at, &mut s.last_seen, &mut s.expires_at] {
            *t = short_time(t);
        }
        s.revoked_at = s.revoked_at.as_deref().map(short_time);
    }
    let layout = Layout::new(&state, &operator, "sessions").await;
    render(&SessionsPage { layout, sessions, own: operator.session_id.clone() })
}

pub async fn revoke(State(state): State<Arc<AppState>>, Checked(operator, form): Checked<SessionForm>) -> Response {
    match state.console.sessions.revoke(&form.id).await {
        Ok(true) => {
            super::audit_action(&state, &operator, "revoke_session", &form.id, "").await;
            see_other("/ui/sessions")
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no such live session").into_response(),
        Err(e) => internal(e),
    }
}
