//! Outbox bodies at rest: sealed (ChaCha20-Poly1305) under `<data_dir>/secrets/outbox_key`.
//!
//! Every email and chat body carries a credential (an approval link, or a signed incident link), so a
//! copy of `medic.db` must not reveal them: bodies are stored sealed and the sealed part is dropped once
//! the receiving server accepted the message. Only the outbox sender opens them, just before delivery.

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
const AAD: &[u8] = b"medic-outbox-v1";

/// A body as stored: only [`Sealer::seal`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBody(String);

impl SealedBody {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the outbox body is not sealed")]
    NotSealed,
    #[error("the outbox body cannot be opened (wrong outbox_key or damaged row)")]
    Damaged,
}

/// Seals and opens outbox bodies. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// A sealer keyed by any secret (hashed to the cipher's 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        let key = Sha256::digest([b"medic-outbox-key\0".as_slice(), secret].concat());
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("32-byte key");
        Self { key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    pub fn seal(&self, plaintext: &str) -> SealedBody {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut data)
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        SealedBody(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)))
    }

    pub fn open(&self, stored: &str) -> Result<String, SealError> {
        let encoded = stored.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded).map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut data = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(AAD), &mut data).map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_hides_its_text_and_opens_only_with_its_key() {
        let sealer = Sealer::new(b"0123456789abcdef0123456789abcdef");
        let body = "Approve: http://medic/approvals/SECRETTOKEN";
        let sealed = sealer.seal(body);
        assert!(!sealed.as_str().contains("SECRETTOKEN"));
        assert!(Sealer::is_sealed(sealed.as_str()));
        assert_ne!(sealed, sealer.seal(body), "a fresh nonce each time");
        assert_eq!(sealer.open(sealed.as_str()).unwrap(), body);
        let other = Sealer::new(b"another key, another deployment!");
        assert_eq!(other.open(sealed.as_str()), Err(SealError::Damaged));
        let mut damaged = sealed.as_str().to_string();
        damaged.push('A');
        assert!(sealer.open(&damaged).is_err());
        assert_eq!(sealer.open(body), Err(SealError::NotSealed));
    }
}
