//! Seal tokens: what the master hands a staked worker or tenant after checking its signature
//! and its stake. Wire form (so other clients can implement it):
//!
//! `seal_` + base64url(payload) + `.` + base64url(signature), both without padding, where the
//! payload is the JSON of [`Claims`] and the signature is the enclave key's Ed25519 signature
//! over `canon::encode("k3s-daas/seal-token/v1", [payload])` (length-prefixed fields, see
//! docs/attestation.md). Accepted as `X-Seal-Token` and as `Authorization: Bearer`.
//!
//! Verifying a token seen before costs one hash-map lookup: the signature of each distinct
//! token is checked once, and expiry and revocation on every use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use daas_tee::EnclaveIdentity;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

const DOMAIN: &str = "k3s-daas/seal-token/v1";
const PREFIX: &str = "seal_";
/// Distinct tokens whose signature check is remembered; past this the memory starts over.
const CACHE_LIMIT: usize = 100_000;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The Sui address that proved its key and stake (`0x` + 64 hex digits).
    pub sub: String,
    /// The worker node the token is for; absent for tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The stake object that backs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<String>,
    /// `read`, `write` or `admin`.
    pub tier: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Unique id.
    pub jti: String,
}

/// A token and what it says.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a seal token")]
    Malformed,
    #[error("the seal token's signature is not the master's")]
    BadSignature,
    #[error("the seal token expired at {0}")]
    Expired(u64),
    #[error("the seal token was revoked (its stake was withdrawn or slashed)")]
    Revoked,
}

/// Issues tokens signed by the enclave key.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    identity: Arc<EnclaveIdentity>,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(identity: Arc<EnclaveIdentity>, ttl: Duration) -> TokenIssuer {
        TokenIssuer { identity, ttl }
    }

    /// The key tokens verify with.
    pub fn public_key(&self) -> [u8; 32] {
        self.identity.public_key()
    }

    /// A token for `sub` at `now` (Unix seconds), valid for the issuer's TTL.
    pub fn issue(&self, sub: &str, node: Option<&str>, stake: Option<&str>, tier: &str, now: u64) -> IssuedToken {
        let mut jti = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut jti);
        let claims = Claims {
            sub: sub.to_string(),
            node: node.map(str::to_string),
            stake: stake.map(str::to_string),
            tier: tier.to_string(),
            iat: now,
            exp: now + self.ttl.as_secs().max(1),
            jti: hex::encode(jti),
        };
        // Serializing a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let sig = self.identity.sign(&daas_tee::canon::encode(DOMAIN, &[&payload]));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        IssuedToken { token: format!("{PREFIX}{}.{}", b64.encode(&payload), b64.encode(sig)), claims }
    }
}

/// Checks tokens: signature once per distinct token, expiry and revocation every time.
pub struct TokenVerifier {
    public_key: [u8; 32],
    checked: RwLock<HashMap<Box<str>, Arc<Claims>>>,
    /// Subject → revocation time: tokens issued at or before it are revoked.
    revoked: RwLock<HashMap<String, u64>>,
    /// Subject → revocation time for its tenant tokens (those without a node) only.
    tenants_revoked: RwLock<HashMap<String, u64>>,
    /// Stake objects whose worker tokens are revoked, whenever issued.
    stakes_revoked: RwLock<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("public_key", &hex::encode(self.public_key)).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(public_key: [u8; 32]) -> TokenVerifier {
        TokenVerifier {
            public_key,
            checked: RwLock::new(HashMap::new()),
            revoked: RwLock::new(HashMap::new()),
            tenants_revoked: RwLock::new(HashMap::new()),
            stakes_revoked: RwLock::new(std::collections::HashSet::new()),
        }
    }

    /// The claims of a valid token at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
        let cached = self.checked.read().get(token).cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(self.check_signature(token)?);
                let mut checked = self.checked.write();
                if checked.len() >= CACHE_LIMIT {
                    checked.clear();
                }
                checked.insert(token.into(), c.clone());
                c
            }
        };
        if claims.exp <= now {
            return Err(TokenError::Expired(claims.exp));
        }
        if self.revoked_claims(&claims) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Whether a token this master signed has been revoked since, expired or not (a
    /// connection authenticated with it must end). Tokens that do not verify count as revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        let cached = self.checked.read().get(token).cloned();
        match cached.map_or_else(|| self.check_signature(token).map(Arc::new), Ok) {
            Ok(claims) => self.revoked_claims(&claims),
            Err(_) => true,
        }
    }

    fn revoked_claims(&self, claims: &Claims) -> bool {
        if let Some(at) = self.revoked.read().get(&claims.sub)
            && claims.iat <= *at
        {
            return true;
        }
        match (&claims.node, &claims.stake) {
            (Some(_), Some(stake)) => self.stakes_revoked.read().contains(stake),
            (None, _) => self.tenants_revoked.read().get(&claims.sub).is_some_and(|at| claims.iat <= *at),
            (Some(_), None) => false,
        }
    }

    /// Revokes every token of `sub` issued at or before `at` (Unix seconds); tokens issued
    /// later (after the subject staked again) stay good.
    pub fn revoke_subject(&self, sub: &str, at: u64) {
        let mut revoked = self.revoked.write();
        let e = revoked.entry(sub.to_string()).or_insert(at);
        *e = (*e).max(at);
    }

    /// Revokes every worker token backed by `stake` (an unstaked or slashed stake never backs
    /// a node again).
    pub fn revoke_stake(&self, stake: &str) {
        self.stakes_revoked.write().insert(stake.to_string());
    }

    /// Revokes `sub`'s tenant tokens issued at or before `at`: its tier may have dropped.
    pub fn revoke_tenant(&self, sub: &str, at: u64) {
        let mut revoked = self.tenants_revoked.write();
        let e = revoked.entry(sub.to_string()).or_insert(at);
        *e = (*e).max(at);
    }

    fn check_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let body = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, sig) = body.split_once('.').ok_or(TokenError::Malformed)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let sig = b64.decode(sig).map_err(|_| TokenError::Malformed)?;
        if !daas_tee::verify_ed25519(&self.public_key, &daas_tee::canon::encode(DOMAIN, &[&payload]), &sig) {
            return Err(TokenError::BadSignature);
        }
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair() -> (TokenIssuer, TokenVerifier) {
        let issuer = TokenIssuer::new(Arc::new(EnclaveIdentity::generate().unwrap()), Duration::from_secs(3600));
        let verifier = TokenVerifier::new(issuer.public_key());
        (issuer, verifier)
    }

    #[test]
    fn a_token_carries_its_claims_until_it_expires() {
        let (issuer, verifier) = pair();
        let t = issuer.issue("0xabc", Some("worker-1"), Some("0x5"), "write", 1000);
        assert!(t.token.starts_with("seal_") && !t.token.contains('='));
        let c = verifier.verify(&t.token, 1001).unwrap();
        assert_eq!((c.sub.as_str(), c.node.as_deref(), c.tier.as_str(), c.exp), ("0xabc", Some("worker-1"), "write", 4600));
        assert_eq!(verifier.verify(&t.token, 4600), Err(TokenError::Expired(4600)));
        assert_ne!(issuer.issue("0xabc", None, None, "read", 1000).claims.jti, t.claims.jti);
    }

    #[test]
    fn another_masters_token_and_tampering_are_refused() {
        let (issuer, verifier) = pair();
        let (other, _) = pair();
        let forged = other.issue("0xabc", None, None, "admin", 1000);
        assert_eq!(verifier.verify(&forged.token, 1001), Err(TokenError::BadSignature));
        // Raise the tier in the payload, keep the signature.
        let t = issuer.issue("0xabc", None, None, "read", 1000);
        let (payload, sig) = t.token["seal_".len()..].split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = String::from_utf8(b64.decode(payload).unwrap()).unwrap().replace("\"read\"", "\"admin\"");
        let tampered = format!("seal_{}.{sig}", b64.encode(text));
        assert_eq!(verifier.verify(&tampered, 1001), Err(TokenError::BadSignature));
        for junk in ["", "seal_", "seal_abc", "seal_a.b", "Bearer x", &t.token.replace("seal_", "seel_")] {
            assert!(verifier.verify(junk, 1001).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn revocation_covers_earlier_tokens_only() {
        let (issuer, verifier) = pair();
        let old = issuer.issue("0xabc", Some("w"), None, "write", 1000);
        let other = issuer.issue("0xdef", Some("v"), None, "write", 1000);
        verifier.verify(&old.token, 1001).unwrap();
        verifier.revoke_subject("0xabc", 1500);
        assert_eq!(verifier.verify(&old.token, 1501), Err(TokenError::Revoked), "a cached token is revoked too");
        assert!(verifier.verify(&other.token, 1501).is_ok());
        let fresh = issuer.issue("0xabc", Some("w"), None, "write", 1600);
        assert!(verifier.verify(&fresh.token, 1601).is_ok());
    }

    #[test]
    fn revocation_is_seen_after_expiry_too() {
        let (issuer, verifier) = pair();
        let (other, _) = pair();
        let w = issuer.issue("0xabc", Some("w1"), Some("0x1"), "write", 1000);
        // Long expired (exp 4600): verify says Expired, is_revoked still answers.
        assert_eq!(verifier.verify(&w.token, 9999), Err(TokenError::Expired(4600)));
        assert!(!verifier.is_revoked(&w.token));
        verifier.revoke_stake("0x1");
        assert!(verifier.is_revoked(&w.token));
        assert!(verifier.is_revoked(&other.issue("0xabc", Some("w1"), Some("0x9"), "write", 1000).token), "not ours: treated as revoked");
    }

    #[test]
    fn a_revoked_stake_ends_its_workers_and_a_revoked_tenant_its_logins() {
        let (issuer, verifier) = pair();
        let w1 = issuer.issue("0xabc", Some("w1"), Some("0x1"), "write", 1000);
        let w2 = issuer.issue("0xabc", Some("w2"), Some("0x2"), "write", 1000);
        let tenant = issuer.issue("0xabc", None, None, "admin", 1000);
        verifier.revoke_stake("0x1");
        assert_eq!(verifier.verify(&w1.token, 1001), Err(TokenError::Revoked));
        assert!(verifier.verify(&w2.token, 1001).is_ok(), "the staker's other stake still backs its node");
        assert!(verifier.verify(&tenant.token, 1001).is_ok());
        verifier.revoke_tenant("0xabc", 1000);
        assert_eq!(verifier.verify(&tenant.token, 1001), Err(TokenError::Revoked));
        assert!(verifier.verify(&w2.token, 1001).is_ok());
        assert!(verifier.verify(&issuer.issue("0xabc", None, None, "read", 1001).token, 1002).is_ok(), "a later login");
    }
}
