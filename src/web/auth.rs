//! Token auth for webhooks and the JSON API: `Authorization: Bearer <token>` or `?token=<token>`,
//! compared in constant time (hashes of both sides, so the length does not leak either).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::AppError;

/// How requests are authenticated.
pub enum ApiAuth {
    Token([u8; 32]),
    /// `auth.allow_unauthenticated = true`: explicit, and warned about at start-up.
    Open,
}

impl ApiAuth {
    pub fn token(token: &str) -> Self {
        ApiAuth::Token(Sha256::digest(token.as_bytes()).into())
    }

    pub fn check(&self, presented: Option<&str>) -> bool {
        match self {
            ApiAuth::Open => true,
            ApiAuth::Token(expected) => match presented {
                Some(given) => {
                    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
                    bool::from(given.ct_eq(expected))
                }
                None => false,
            },
        }
    }
}

/// Extractor: present in a handler's arguments means the caller is authenticated.
pub struct Authorized;

fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            return Some(value[7..].trim().to_string());
        }
    }
    parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
    })
}

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if state.auth.check(presented_token(parts).as_deref()) { Ok(Authorized) } else { Err(AppError::Unauthorized) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_table() {
        let auth = ApiAuth::token("correct-horse-battery");
        assert!(auth.check(Some("correct-horse-battery")), "exact token passes");
        assert!(!auth.check(Some("correct-horse-batter")), "prefix fails");
        assert!(!auth.check(Some("correct-horse-battery ")), "trailing space fails");
        assert!(!auth.check(Some("")), "empty fails");
        assert!(!auth.check(None), "missing fails");
        assert!(ApiAuth::Open.check(None), "open mode accepts anything");
    }
}
