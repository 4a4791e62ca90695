//! Signed webhook deliveries, for orchestrators (n8n) that act on medic's events.
//!
//! A `webhook` channel with a `secret` gets, on every delivery attempt:
//! `X-Medic-Timestamp` (Unix seconds at sending), `X-Medic-Delivery` (the outbox row id: the same on
//! every retry of one message, so a receiver can drop duplicates), `X-Medic-Event` (`incident.opened`,
//! `incident.needs_approval`, `incident.fixed`, `incident.escalated`, `incident.resolved`, …) and
//! `X-Medic-Signature: sha256=<hex>`, the HMAC-SHA256 under the secret of
//! `"<timestamp>.<delivery>.<body>"`. A receiver checks the signature in constant time, refuses a
//! timestamp outside its window (5 minutes is usual) and remembers the deliveries it saw within the
//! window ([`ReplayGuard`]): a captured request replayed later fails one of the two.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header value for one delivery.
pub fn sign(secret: &str, timestamp: i64, delivery: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{delivery}.").as_bytes());
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature does not match the body (wrong secret or a changed body)")]
    Bad,
    #[error("the timestamp is {0} s away from now, outside the window")]
    Stale(i64),
    #[error("delivery {0} was already received")]
    Replayed(String),
}

/// Checks one received delivery: signature, then the timestamp's distance from `now`.
pub fn verify(
    secret: &str,
    timestamp: i64,
    delivery: &str,
    body: &str,
    signature: &str,
    now: i64,
    window_seconds: i64,
) -> Result<(), SignatureError> {
    use subtle::ConstantTimeEq;
    let expected = sign(secret, timestamp, delivery, body);
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(SignatureError::Bad);
    }
    let skew = (now - timestamp).abs();
    if skew > window_seconds {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

/// Deliveries seen within the window (a receiver's memory against replays).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<String, i64>,
}

impl ReplayGuard {
    /// Ok the first time a delivery is seen within the window; forgets deliveries older than it.
    pub fn check(&mut self, delivery: &str, now: i64, window_seconds: i64) -> Result<(), SignatureError> {
        self.seen.retain(|_, at| now - *at <= window_seconds * 2);
        if self.seen.contains_key(delivery) {
            return Err(SignatureError::Replayed(delivery.to_string()));
        }
        self.seen.insert(delivery.to_string(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_body_secret_time_and_replays() {
        let sig = sign("s3cret", 1000, "42", r#"{"a":1}"#);
        assert_eq!(verify("s3cret", 1000, "42", r#"{"a":1}"#, &sig, 1010, 300), Ok(()));
        assert_eq!(verify("other", 1000, "42", r#"{"a":1}"#, &sig, 1010, 300), Err(SignatureError::Bad));
        assert_eq!(verify("s3cret", 1000, "42", r#"{"a":2}"#, &sig, 1010, 300), Err(SignatureError::Bad));
        assert_eq!(
            verify("s3cret", 1000, "43", r#"{"a":1}"#, &sig, 1010, 300),
            Err(SignatureError::Bad),
            "another delivery"
        );
        assert_eq!(verify("s3cret", 1000, "42", r#"{"a":1}"#, &sig, 2000, 300), Err(SignatureError::Stale(1000)));
        let mut guard = ReplayGuard::default();
        assert!(guard.check("42", 1010, 300).is_ok());
        assert_eq!(guard.check("42", 1020, 300), Err(SignatureError::Replayed("42".into())));
        assert!(guard.check("43", 1020, 300).is_ok());
    }
}
