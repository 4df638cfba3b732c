//! Single-use login challenges. `GET /api/v1/challenge?purpose=…` hands out a nonce and the
//! exact text to sign; the text names the purpose, the nonce, the expiry and the enclave's
//! public key, so a signature is good for one purpose, one master and one use only.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// What a challenge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    RegisterWorker,
    Login,
}

impl Purpose {
    pub fn parse(s: &str) -> Option<Purpose> {
        match s {
            "register-worker" => Some(Purpose::RegisterWorker),
            "login" => Some(Purpose::Login),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::RegisterWorker => "register-worker",
            Purpose::Login => "login",
        }
    }
}

/// The answer to a challenge request (the wire form of `GET /api/v1/challenge`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub message: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("unknown nonce: it was never issued here or has already been used")]
    Unknown,
    #[error("the challenge expired at {0}; ask for a new one")]
    Expired(u64),
    #[error("the challenge was issued for {issued}, not {used}")]
    WrongPurpose { issued: &'static str, used: &'static str },
    #[error("too many challenges are pending; try again shortly")]
    TooMany,
}

struct Pending {
    purpose: Purpose,
    expires_at: u64,
    message: String,
}

/// The challenges handed out and not yet used.
pub struct Challenges {
    enclave_key_hex: String,
    ttl: Duration,
    max_pending: usize,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").field("ttl", &self.ttl).field("pending", &self.pending.lock().len()).finish_non_exhaustive()
    }
}

impl Challenges {
    /// Challenges naming `enclave_public_key`, valid for `ttl`, at most `max_pending` at once.
    pub fn new(enclave_public_key: &[u8], ttl: Duration, max_pending: usize) -> Challenges {
        Challenges { enclave_key_hex: hex::encode(enclave_public_key), ttl, max_pending, pending: Mutex::new(HashMap::new()) }
    }

    /// A fresh challenge at `now` (Unix seconds).
    pub fn issue(&self, purpose: Purpose, now: u64) -> Result<Challenge, ChallengeError> {
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut raw);
        let nonce = hex::encode(raw);
        let expires_at = now + self.ttl.as_secs().max(1);
        let message = format!(
            "K3s-DaaS {purpose}\nnonce: {nonce}\nexpires: {expires_at}\nenclave: {key}",
            purpose = purpose.as_str(),
            key = self.enclave_key_hex
        );
        let mut pending = self.pending.lock();
        if pending.len() >= self.max_pending {
            pending.retain(|_, p| p.expires_at > now);
            if pending.len() >= self.max_pending {
                return Err(ChallengeError::TooMany);
            }
        }
        pending.insert(nonce.clone(), Pending { purpose, expires_at, message: message.clone() });
        Ok(Challenge { nonce, message, expires_at })
    }

    /// Uses up `nonce` for `purpose` and returns the exact message that had to be signed. A
    /// nonce is gone after its first use, whatever the outcome.
    pub fn take(&self, nonce: &str, purpose: Purpose, now: u64) -> Result<String, ChallengeError> {
        let p = self.pending.lock().remove(nonce).ok_or(ChallengeError::Unknown)?;
        if p.expires_at <= now {
            return Err(ChallengeError::Expired(p.expires_at));
        }
        if p.purpose != purpose {
            return Err(ChallengeError::WrongPurpose { issued: p.purpose.as_str(), used: purpose.as_str() });
        }
        Ok(p.message)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn challenges() -> Challenges {
        Challenges::new(&[7u8; 32], Duration::from_secs(60), 3)
    }

    #[test]
    fn the_message_names_purpose_nonce_expiry_and_enclave() {
        let c = challenges().issue(Purpose::RegisterWorker, 1000).unwrap();
        assert_eq!(c.expires_at, 1060);
        assert_eq!(c.nonce.len(), 64);
        assert_eq!(c.message, format!("K3s-DaaS register-worker\nnonce: {}\nexpires: 1060\nenclave: {}", c.nonce, "07".repeat(32)));
    }

    #[test]
    fn nonces_are_single_use_and_expire() {
        let cs = challenges();
        let c = cs.issue(Purpose::Login, 1000).unwrap();
        assert_eq!(cs.take(&c.nonce, Purpose::Login, 1001), Ok(c.message.clone()));
        assert_eq!(cs.take(&c.nonce, Purpose::Login, 1001), Err(ChallengeError::Unknown));
        let c = cs.issue(Purpose::Login, 1000).unwrap();
        assert_eq!(cs.take(&c.nonce, Purpose::Login, 1060), Err(ChallengeError::Expired(1060)));
        let c = cs.issue(Purpose::Login, 1000).unwrap();
        assert_eq!(
            cs.take(&c.nonce, Purpose::RegisterWorker, 1001),
            Err(ChallengeError::WrongPurpose { issued: "login", used: "register-worker" })
        );
        assert_eq!(cs.take(&c.nonce, Purpose::Login, 1001), Err(ChallengeError::Unknown), "a failed use still uses it up");
        assert_eq!(cs.take("00", Purpose::Login, 1001), Err(ChallengeError::Unknown));
    }

    #[test]
    fn pending_challenges_are_bounded_but_expired_ones_make_room() {
        let cs = challenges();
        for _ in 0..3 {
            cs.issue(Purpose::Login, 1000).unwrap();
        }
        assert_eq!(cs.issue(Purpose::Login, 1000), Err(ChallengeError::TooMany));
        assert!(cs.issue(Purpose::Login, 2000).is_ok());
    }
}
