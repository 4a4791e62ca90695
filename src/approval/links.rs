//! Read-only incident links for humans: `/incidents/{id}?exp=<unix seconds>&sig=<HMAC>`.
//!
//! Chat messages and emails link to an incident's page. A browser cannot send the API's bearer token, so
//! the link itself carries the right to read that one incident until `exp`: an HMAC-SHA256 over the
//! incident id and the expiry, keyed by a secret generated once into `<data_dir>/secrets/link_key`.
//! A link opens one incident's page and nothing else: it decides nothing and reveals no other incident.
//! Whoever can read the channel can read the incident, so the page shows only redacted text, as the
//! channels themselves do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::IncidentId;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link expired")]
    Expired,
}

#[derive(Clone)]
pub struct IncidentLinks {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for IncidentLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncidentLinks").field("key", &"***").field("ttl", &self.ttl).finish()
    }
}

impl IncidentLinks {
    pub fn new(key: &[u8], ttl: Duration) -> Self {
        Self { key: key.to_vec(), ttl }
    }

    /// Reads the key from `<data_dir>/secrets/link_key`, generating it on first start.
    pub fn open(secrets: &crate::secrets::SecretsDir, ttl: Duration) -> std::io::Result<Self> {
        Ok(Self::new(&secrets.key("link_key")?, ttl))
    }

    fn mac(&self, id: IncidentId, exp: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("medic-incident-link\0{id}\0{exp}").as_bytes());
        mac
    }

    /// The query string (`exp=…&sig=…`) for a link valid until `now + ttl`.
    pub fn query_at(&self, id: IncidentId, now: DateTime<Utc>) -> String {
        let exp = now.timestamp() + self.ttl.as_secs() as i64;
        let sig = hex::encode(self.mac(id, exp).finalize().into_bytes());
        format!("exp={exp}&sig={sig}")
    }

    pub fn query(&self, id: IncidentId) -> String {
        self.query_at(id, Utc::now())
    }

    /// Checks a link's expiry and signature (in constant time).
    pub fn verify(&self, id: IncidentId, exp: i64, sig: &str, now: DateTime<Utc>) -> Result<(), LinkError> {
        let bytes = hex::decode(sig).map_err(|_| LinkError::Invalid)?;
        self.mac(id, exp).verify_slice(&bytes).map_err(|_| LinkError::Invalid)?;
        if now.timestamp() >= exp {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_incident_only_until_it_expires() {
        let links = IncidentLinks::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let (a, b) = (IncidentId::new(), IncidentId::new());
        let now = Utc::now();
        let query = links.query_at(a, now);
        let (exp, sig) = query.strip_prefix("exp=").unwrap().split_once("&sig=").unwrap();
        let exp: i64 = exp.parse().unwrap();
        assert_eq!(links.verify(a, exp, sig, now), Ok(()));
        assert_eq!(links.verify(b, exp, sig, now), Err(LinkError::Invalid), "another incident");
        assert_eq!(links.verify(a, exp + 3600, sig, now), Err(LinkError::Invalid), "a longer life");
        assert_eq!(links.verify(a, exp, &sig.replace('a', "b"), now), Err(LinkError::Invalid));
        assert_eq!(links.verify(a, exp, "not hex", now), Err(LinkError::Invalid));
        assert_eq!(links.verify(a, exp, sig, now + chrono::Duration::seconds(61)), Err(LinkError::Expired));
        let other_key = IncidentLinks::new(b"another key, another deployment!", Duration::from_secs(60));
        assert_eq!(other_key.verify(a, exp, sig, now), Err(LinkError::Invalid));
    }
}
