//! The operator console at `/ui/`: server-rendered askama pages, no JavaScript.
//!
//! Input: a browser with a console session ([`session`]); output: pages that show the store, the audit
//! log, memory, the gate and the hosts, and forms that decide approvals or change things (each audited as
//! an [`AuditRecord::OperatorAction`] naming the operator).
//!
//! **Every page needs a session**; without one a request is redirected to `/ui/login`. **Every form
//! carries the session's CSRF value**; a POST without it, with another session's, or sent from another
//! site (`Sec-Fetch-Site`/`Origin`) gets 403 and changes nothing. Everything shown is askama-escaped,
//! and text from webhooks, logs and models is redacted again before it is shown.
//!
//! With `console.proxy_header` set, a request from one of `console.trusted_proxies` carrying that header
//! is that operator (SSO in front of medic); the header is ignored from any other address.

mod audit;
mod decide;
mod incidents;
mod login;
mod manage;
mod overview;
pub mod session;
mod watch;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::audit::AuditRecord;
use crate::conf::{ConfigError, Secret, empty_none};
use crate::domain::Actor;
pub use session::{Operator, Sessions};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at `/ui/`.
    pub enabled: bool,
    /// Local operators: `[[console.users]] name = "…" password_hash = "$argon2id$…"`.
    pub users: Vec<ConsoleUser>,
    /// A session ends this long after login, whatever happens.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// A session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A header naming the operator, set by a trusted reverse proxy (SSO); empty: off.
    pub proxy_header: String,
    /// The only client addresses whose `proxy_header` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    #[serde(with = "empty_none", default)]
    pub password_hash: Option<Secret>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            users: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(3600),
            proxy_header: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// An operator name: what the audit log and the sessions page print.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

impl ConsoleConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let key = format!("console.users[{i}]");
            if !valid_name(&user.name) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "1-64 characters of letters, digits, '.', '_', '@', '-'",
                ));
            }
            if !seen.insert(user.name.clone()) {
                return Err(ConfigError::invalid(format!("{key}.name"), "listed twice"));
            }
            match &user.password_hash {
                None => {
                    return Err(ConfigError::invalid(
                        format!("{key}.password_hash"),
                        "missing: run `medic users add NAME` and paste the line it prints",
                    ));
                }
                Some(hash) => session::valid_hash(hash.expose())
                    .map_err(|e| ConfigError::invalid(format!("{key}.password_hash"), &e))?,
            }
        }
        if self.session_ttl < Duration::from_secs(60) {
            return Err(ConfigError::invalid("console.session_ttl", "must be at least 1m"));
        }
        if self.idle_timeout < Duration::from_secs(60) {
            return Err(ConfigError::invalid("console.idle_timeout", "must be at least 1m"));
        }
        if !self.proxy_header.is_empty() {
            if axum::http::HeaderName::from_bytes(self.proxy_header.as_bytes()).is_err() {
                return Err(ConfigError::invalid("console.proxy_header", "not a valid header name"));
            }
            if self.trusted_proxies.is_empty() {
                return Err(ConfigError::invalid(
                    "console.trusted_proxies",
                    "must list the reverse proxy's address when console.proxy_header is set",
                ));
            }
        }
        Ok(())
    }

    /// Whether anyone can log in at all (`approval.require_login` needs it).
    pub fn has_operators(&self) -> bool {
        !self.users.is_empty() || !self.proxy_header.is_empty()
    }

    /// The configured operators as (name, PHC string).
    pub fn user_hashes(&self) -> Vec<(String, String)> {
        self.users
            .iter()
            .filter_map(|u| u.password_hash.as_ref().map(|h| (u.name.clone(), h.expose().to_string())))
            .collect()
    }
}

/// What the console needs besides the rest of [`AppState`].
pub struct Console {
    pub sessions: Sessions,
    pub proxy_header: Option<axum::http::HeaderName>,
    pub trusted_proxies: Vec<IpAddr>,
    pub require_login: bool,
    /// For "check now" on the hosts page.
    pub collector: crate::collect::Collector,
    pub transports: Arc<crate::transport::Transports>,
}

impl Console {
    /// The operator a trusted reverse proxy names, when the request came from one.
    pub fn proxy_user(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<String> {
        let name = self.proxy_header.as_ref()?;
        let peer = peer?;
        if !self.trusted_proxies.contains(&peer) {
            return None;
        }
        let user = headers.get(name)?.to_str().ok()?.trim();
        valid_name(user).then(|| user.to_string())
    }

    fn proxied(&self, peer: Option<IpAddr>) -> bool {
        self.proxy_header.is_some() && peer.is_some_and(|p| self.trusted_proxies.contains(&p))
    }

    /// The live session a request carries, if any.
    pub async fn operator(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<Operator> {
        let token = cookie_value(headers, self.sessions.cookie_name())?;
        let proxy_user = self.proxy_user(peer, headers);
        if self.proxied(peer) && proxy_user.is_none() {
            return None;
        }
        match self.sessions.lookup(&token, proxy_user.as_deref()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read a console session.");
                None
            }
        }
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn peer_of(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// Where a request without a session is sent: the login page, coming back here afterwards.
fn to_login(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/");
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/ui/login?next={next}")).into_response()
}

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        match state.console.operator(peer_of(parts), &parts.headers).await {
            Some(operator) => Ok(operator),
            None => Err(to_login(parts)),
        }
    }
}

/// The request's client: address and user agent (one line, capped).
pub struct Client {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user_agent = super::approval::user_agent(&parts.headers);
        Ok(Client { ip: peer_of(parts), user_agent })
    }
}

/// A console form, accepted: a live session, this session's CSRF value in the form (`csrf`), and not
/// posted from another site. Anything else is answered before the handler runs (redirect to the login,
/// or 403 naming the problem).
pub struct Checked<T>(pub Operator, pub T);

#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Arc<AppState>> for Checked<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let axum::Form(WithCsrf { csrf, form }) =
            axum::Form::<WithCsrf<T>>::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        match check_form(&operator, &csrf, &headers, state.notifier.public_url()) {
            Some(refused) => Err(refused),
            None => Ok(Checked(operator, form)),
        }
    }
}

/// A 403 page unless the form carries this session's CSRF value and came from medic's own pages.
fn check_form(operator: &Operator, presented: &str, headers: &HeaderMap, public_url: &url::Url) -> Option<Response> {
    use subtle::ConstantTimeEq;
    if let Some(why) = super::approval::cross_site(headers, public_url) {
        return Some(forbidden(&format!("Refused: {why}.")));
    }
    if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(operator.csrf.as_bytes())) {
        return Some(forbidden("Refused: this form's CSRF token is missing or not this session's. Reload the page."));
    }
    None
}

fn forbidden(message: &str) -> Response {
    super::approval::result(StatusCode::FORBIDDEN, "Forbidden", &format!("{message} Nothing was changed."))
}

/// What every console page's frame shows.
pub struct Layout {
    pub operator: String,
    pub csrf: String,
    pub active: &'static str,
    pub waiting: usize,
    pub dry_run: bool,
}

impl Layout {
    pub async fn new(state: &AppState, operator: &Operator, active: &'static str) -> Self {
        let waiting = state.store.waiting_for_human().await.map(|v| v.len()).unwrap_or(0);
        Self {
            operator: operator.name.clone(),
            csrf: operator.csrf.clone(),
            active,
            waiting,
            dry_run: state.dry_run.is_on(),
        }
    }

    /// Navigation entries: (path, label, active).
    pub fn nav(&self) -> Vec<(&'static str, String, bool)> {
        [
            ("/ui/", "Overview", "overview"),
            ("/ui/incidents", "Incidents", "incidents"),
            ("/ui/approvals", "Approvals", "approvals"),
            ("/ui/audit", "Audit", "audit"),
            ("/ui/memory", "Memory", "memory"),
            ("/ui/gate", "Gate", "gate"),
            ("/ui/probes", "Probes", "probes"),
            ("/ui/hosts", "Hosts", "hosts"),
            ("/ui/sessions", "Sessions", "sessions"),
        ]
        .into_iter()
        .map(|(path, label, key)| {
            let label = if key == "approvals" && self.waiting > 0 {
                format!("{label} ({})", self.waiting)
            } else {
                label.to_string()
            };
            (path, label, key == self.active)
        })
        .collect()
    }
}

/// Renders a page, or a generic 500 with the cause logged.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => super::approval::page(StatusCode::OK, html),
        Err(e) => internal(e),
    }
}

pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "Console page failed.");
    super::approval::result(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "medic could not handle this request. Nothing was changed.",
    )
}

/// Audits something an operator did.
pub async fn audit_action(state: &AppState, operator: &Operator, action: &str, target: &str, detail: &str) {
    let record = AuditRecord::OperatorAction {
        operator: operator.name.clone(),
        action: action.into(),
        target: target.chars().take(300).collect(),
        detail: detail.chars().take(2000).collect(),
    };
    if let Err(e) = state.store.write(move |ctx| ctx.audit(None, Actor::Human, record)).await {
        tracing::warn!(error = %e, "Could not audit a console action.");
    }
}

/// Redirects after a POST (303, so a reload does not post again).
pub fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(overview::page))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/sessions", get(login::sessions))
        .route("/ui/sessions/revoke", post(login::revoke))
        .route("/ui/incidents", get(incidents::list))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/approvals", get(decide::inbox))
        .route("/ui/approvals/{id}", post(decide::decide))
        .route("/ui/audit", get(audit::review))
        .route("/ui/audit/export", get(audit::export))
        .route("/ui/memory", get(manage::memory))
        .route("/ui/memory/{id}", get(manage::memory_entry).post(manage::memory_change))
        .route("/ui/memory/import", post(manage::memory_import))
        .route("/ui/gate", get(manage::gate).post(manage::gate_try))
        .route("/ui/gate/dry-run", post(manage::dry_run))
        .route("/ui/probes", get(watch::probes))
        .route("/ui/hosts", get(watch::hosts))
        .route("/ui/hosts/check", post(manage::hosts_check))
}
