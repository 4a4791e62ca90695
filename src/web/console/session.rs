//! Console operators and their sessions.
//!
//! **Passwords**: argon2id PHC strings in config (`medic users add NAME` prints the line). Verification
//! runs off the async threads; an unknown name is checked against a fixed dummy hash so the answer takes
//! as long as for a known one.
//!
//! **Sessions**: a random 256-bit cookie value; only its SHA-256 is stored (`console_sessions`), with
//! the operator, a per-session CSRF value, creation, last use, absolute expiry, the client's address and
//! user agent, and a revocation time. A cookie is worth nothing to another medic (another database) or
//! after logout/revocation. The cookie is `HttpOnly; SameSite=Strict; Path=/`, and `Secure` with the
//! `__Host-` prefix when `approval.public_url` is https.
//!
//! **Login throttling**: refused logins count per client address ([`Throttle`], the approval pages'
//! limiter); past the limit the address gets 429 until the window ends, and failures stop being audited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::store::db::{OptionalExtension, params};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::approval::throttle::Throttle;
use crate::store::{Store, StoreError};

/// How often a session's "last seen" is written (not on every request).
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// The argon2id PHC string of `password`, with a random salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `phc` is a password hash medic can check (config validation).
pub fn valid_hash(phc: &str) -> Result<(), String> {
    PasswordHash::new(phc).map(|_| ()).map_err(|e| format!("not an argon2 PHC string ({e})"))
}

fn check_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A logged-in operator, as a handler sees one.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    /// The session's public id (shown on the sessions page; never the cookie).
    pub session_id: String,
    /// The session's CSRF value: every console form carries it.
    pub csrf: String,
}

/// One session as the sessions page lists it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub operator: String,
    pub created_at: String,
    pub last_seen: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    pub revoked_at: Option<String>,
}

#[derive(Clone)]
pub struct Sessions {
    store: Store,
    users: HashMap<String, String>,
    ttl: Duration,
    idle: Duration,
    secure: bool,
    throttle: Throttle,
    dummy: String,
}

impl Sessions {
    pub fn new(store: Store, users: &[(String, String)], ttl: Duration, idle: Duration, secure: bool) -> Self {
        Self {
            store,
            users: users.iter().cloned().collect(),
            ttl,
            idle,
            secure,
            throttle: Throttle::default(),
            dummy: hash_password("medic-dummy-password-for-equal-timing"),
        }
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure { "__Host-medic_session" } else { "medic_session" }
    }

    pub fn login_cookie_name(&self) -> &'static str {
        if self.secure { "__Host-medic_login" } else { "medic_login" }
    }

    /// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/`, `Secure` on https.
    pub fn cookie(&self, name: &'static str, value: &str, max_age: Duration) -> String {
        cookie::Cookie::build((name, value.to_string()))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
            .build()
            .to_string()
    }

    pub fn session_cookie(&self, token: &str) -> String {
        self.cookie(self.cookie_name(), token, self.ttl)
    }

    /// Whether `name`/`password` is a configured operator (constant work for unknown names).
    pub async fn verify_password(&self, name: &str, password: &str) -> bool {
        let (phc, known) = match self.users.get(name) {
            Some(phc) => (phc.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || check_password(&phc, &password)).await.unwrap_or(false);
        ok && known
    }

    /// A new session for `operator`; returns the cookie value (only ever sent to the browser).
    pub async fn create(&self, operator: &str, ip: Option<IpAddr>, user_agent: &str) -> Result<String, StoreError> {
        let token = crate::random_token(32);
        let hash = sha256(&token);
        let (operator, user_agent) = (operator.to_string(), user_agent.chars().take(300).collect::<String>());
        let ip = ip.map(|i| i.to_string()).unwrap_or_default();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(12));
        self.store
            .write(move |ctx| {
                let now = ctx.now();
                ctx.conn().execute(
                    "INSERT INTO console_sessions
                       (token_hash, operator, csrf, created_at, last_seen, expires_at, ip, user_agent, id)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        hash,
                        operator,
                        crate::random_token(24),
                        crate::store::ts(now),
                        crate::store::ts(now + ttl),
                        ip,
                        user_agent,
                        crate::random_token(9)
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok(token)
    }

    /// The operator of a live session: known, not revoked, not expired, not idle too long, and the
    /// operator still configured (when operators come from config).
    pub async fn lookup(&self, token: &str, proxy_user: Option<&str>) -> Result<Option<Operator>, StoreError> {
        let hash = sha256(token);
        let lookup = hash.clone();
        type Found = (String, String, String, String, String, Option<String>);
        let row: Option<Found> = self
            .store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT operator, csrf, id, last_seen, expires_at, revoked_at
                         FROM console_sessions WHERE token_hash = ?1",
                        [&lookup],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                    )
                    .optional()?)
            })
            .await?;
        let Some((name, csrf, session_id, last_seen, expires, revoked)) = row else { return Ok(None) };
        let now = Utc::now();
        let (last_seen, expires) = (crate::store::parse_ts(&last_seen)?, crate::store::parse_ts(&expires)?);
        let idle = chrono::Duration::from_std(self.idle).unwrap_or(chrono::Duration::hours(1));
        let configured = match proxy_user {
            Some(user) => user == name,
            None => self.users.contains_key(&name),
        };
        if revoked.is_some() || now >= expires || now - last_seen > idle || !configured {
            return Ok(None);
        }
        if now - last_seen > TOUCH_EVERY {
            self.store
                .write(move |ctx| {
                    let now = crate::store::ts(ctx.now());
                    ctx.conn()
                        .execute("UPDATE console_sessions SET last_seen = ?2 WHERE token_hash = ?1", [&hash, &now])?;
                    Ok(())
                })
                .await?;
        }
        Ok(Some(Operator { name, session_id, csrf }))
    }

    /// Revokes a session by its public id; false when there is no such live session.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.store
            .write(move |ctx| {
                let now = crate::store::ts(ctx.now());
                Ok(ctx.conn().execute(
                    "UPDATE console_sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    [&id, &now],
                )? == 1)
            })
            .await
    }

    /// Sessions that have not expired, newest first.
    pub async fn list(&self) -> Result<Vec<SessionRow>, StoreError> {
        let now = crate::store::ts(Utc::now());
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, operator, created_at, last_seen, expires_at, ip, user_agent, revoked_at
                     FROM console_sessions WHERE expires_at > ?1 ORDER BY created_at DESC LIMIT 200",
                )?;
                let rows = stmt.query_map([now], |r| {
                    Ok(SessionRow {
                        id: r.get(0)?,
                        operator: r.get(1)?,
                        created_at: r.get(2)?,
                        last_seen: r.get(3)?,
                        expires_at: r.get(4)?,
                        ip: r.get(5)?,
                        user_agent: r.get(6)?,
                        revoked_at: r.get(7)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}

/// A short display form of a stored timestamp.
pub fn short_time(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_and_nothing_else() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(valid_hash(&phc).is_ok());
        assert!(check_password(&phc, "correct horse"));
        assert!(!check_password(&phc, "correct horse "), "a trailing space is another password");
        assert!(!check_password(&phc, ""), "empty fails");
        assert!(valid_hash("plaintext").is_err(), "a plain password in config is refused");
        assert_ne!(hash_password("x"), hash_password("x"), "salted");
    }
}
