//! Stake is the key: workers (and later tenants) prove a Sui key and a stake on chain and get
//! a seal token signed by the enclave key.
//!
//! - `GET /api/v1/challenge?purpose=register-worker|login` →
//!   `{"nonce", "message", "expires_at"}`; `message` is the exact text to sign as a Sui
//!   personal message, nonces are single-use.
//! - `POST /api/v1/register-worker` with `{"node_id", "stake_object_id", "nonce", "signature"}`
//!   → `{"status": "registered", "node_id", "seal_token", "expires_at", "tier"}`, or 400/401/403/503
//!   with `{"status": "refused", "reason": "<code>", "message": "<text>"}`.
//!
//! The master checks the signature, derives the address, loads the stake object from the
//! chain and checks its type, owner, status, amount and node. A chain that does not answer is
//! a 503: nothing is admitted because the chain was silent.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use daas_chain::{ChainClient, ChainError, Challenges, Purpose, StakeStatus, TokenIssuer, TokenVerifier};
use serde::Deserialize;
use serde_json::json;

/// Stake amounts that give each tier (read < write < admin), in the stake coin's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierThresholds {
    pub read: u64,
    pub write: u64,
    pub admin: u64,
}

impl TierThresholds {
    /// The tier `amount` buys, if any.
    pub fn tier(&self, amount: u64) -> Option<&'static str> {
        if amount >= self.admin {
            Some("admin")
        } else if amount >= self.write {
            Some("write")
        } else if amount >= self.read {
            Some("read")
        } else {
            None
        }
    }
}

/// Everything the stake endpoints need.
#[derive(Debug)]
pub struct Seal {
    pub challenges: Challenges,
    pub issuer: TokenIssuer,
    pub verifier: Arc<TokenVerifier>,
    pub chain: ChainClient,
    /// Least stake a worker needs.
    pub min_stake: u64,
    pub tiers: TierThresholds,
    /// What the chain is, for messages: "Sui" or "the development ledger".
    pub chain_name: String,
    /// Wakes the chain follower (`POST /api/v1/sui-events`).
    pub wake: tokio::sync::Notify,
    /// Where the chain follower keeps its state for this package.
    pub keys: crate::chain::Keys,
    pub metrics: crate::chain::ChainMetrics,
}

fn refused(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({"status": "refused", "reason": reason, "message": message.into()}))).into_response()
}

impl Seal {
    /// `GET /api/v1/challenge`.
    pub fn challenge(&self, purpose: Option<&str>) -> Response {
        let Some(purpose) = purpose.and_then(Purpose::parse) else {
            return refused(StatusCode::BAD_REQUEST, "bad-purpose", "purpose must be register-worker or login");
        };
        match self.challenges.issue(purpose, crate::k8s::meta::now_unix()) {
            Ok(c) => (StatusCode::OK, axum::Json(c)).into_response(),
            Err(e) => {
                let mut r = refused(StatusCode::TOO_MANY_REQUESTS, "too-many-challenges", e.to_string());
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
                r
            }
        }
    }

    /// `POST /api/v1/register-worker`.
    pub async fn register_worker(&self, store: &daas_store::Store, body: &[u8]) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            node_id: String,
            stake_object_id: String,
            nonce: String,
            signature: String,
        }
        let req: Req = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return refused(StatusCode::BAD_REQUEST, "bad-request", format!("the body is not a register-worker request: {e}")),
        };
        if !valid_node_name(&req.node_id) {
            return refused(StatusCode::BAD_REQUEST, "bad-node-id", "node_id must be a DNS subdomain name (lower case, digits, '-', '.')");
        }
        let Ok(stake_id) = req.stake_object_id.parse::<daas_chain::Address>() else {
            return refused(StatusCode::BAD_REQUEST, "bad-stake-object-id", "stake_object_id must be a Sui object id (0x + hex)");
        };
        let t = crate::k8s::meta::now_unix();
        let message = match self.challenges.take(&req.nonce, Purpose::RegisterWorker, t) {
            Ok(m) => m,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "bad-nonce", e.to_string()),
        };
        let address = match daas_chain::verify_personal_message(message.as_bytes(), &req.signature) {
            Ok(a) => a,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string()),
        };
        let stake = match self.chain.stake_record(&stake_id).await {
            Ok(s) => s,
            Err(ChainError::Unavailable(e)) => {
                tracing::warn!(error = %e, "register-worker: the chain did not answer; refusing");
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "chain-unavailable",
                    format!("{} did not answer, so the stake cannot be checked; try again: {e}", self.chain_name),
                );
            }
            Err(e @ (ChainError::NotFound(_) | ChainError::WrongType { .. })) => {
                return refused(StatusCode::FORBIDDEN, "unknown-stake", e.to_string());
            }
            Err(e) => return refused(StatusCode::FORBIDDEN, "bad-stake", e.to_string()),
        };
        if stake.staker != address {
            return refused(
                StatusCode::FORBIDDEN,
                "wrong-owner",
                format!("stake {stake_id} belongs to {}, not to the signer {address}", stake.staker),
            );
        }
        if stake.status != StakeStatus::Active {
            let reason = if stake.status == StakeStatus::Slashed { "slashed" } else { "not-active" };
            return refused(StatusCode::FORBIDDEN, reason, format!("stake {stake_id} is {}", stake.status.name()));
        }
        if stake.amount < self.min_stake {
            return refused(
                StatusCode::FORBIDDEN,
                "stake-too-low",
                format!("stake {stake_id} holds {}, a worker needs at least {}", stake.amount, self.min_stake),
            );
        }
        if stake.node_id != req.node_id {
            return refused(
                StatusCode::FORBIDDEN,
                "wrong-node",
                format!("stake {stake_id} backs node {:?}, not {:?}", stake.node_id, req.node_id),
            );
        }
        let tier = self.tiers.tier(stake.amount).unwrap_or("read");
        // Which stake admitted the node: only its unstake or slash taints the node.
        let record = json!({"stake_id": stake_id.to_string(), "staker": address.to_string(), "registered_at": t});
        let put = daas_store::PutRequest {
            key: bytes::Bytes::from(self.keys.node(&req.node_id)),
            value: bytes::Bytes::from(record.to_string()),
            ..Default::default()
        };
        if let Err(e) = store.put(put).await {
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("recording the registration failed: {e}"));
        }
        let issued = self.issuer.issue(&address.to_string(), Some(&req.node_id), Some(&stake_id.to_string()), tier, t);
        tracing::info!(node = %req.node_id, staker = %address, stake = %stake_id, tier, "worker registered");
        (
            StatusCode::OK,
            axum::Json(json!({
                "status": "registered",
                "node_id": req.node_id,
                "seal_token": issued.token,
                "expires_at": issued.claims.exp,
                "tier": tier,
            })),
        )
            .into_response()
    }
}

impl Seal {
    /// `POST /api/v1/login`: a tenant proves its key; the tier comes from the active stakes
    /// the event stream shows for its address, each read again from the chain now.
    pub async fn login(&self, store: &daas_store::Store, body: &[u8]) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            nonce: String,
            signature: String,
        }
        let req: Req = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return refused(StatusCode::BAD_REQUEST, "bad-request", format!("the body is not a login request: {e}")),
        };
        let t = crate::k8s::meta::now_unix();
        let message = match self.challenges.take(&req.nonce, Purpose::Login, t) {
            Ok(m) => m,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "bad-nonce", e.to_string()),
        };
        let address = match daas_chain::verify_personal_message(message.as_bytes(), &req.signature) {
            Ok(a) => a,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string()),
        };
        let known = match crate::chain::stakes_of(store, &self.keys, &address) {
            Ok(k) => k,
            Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        };
        let mut total = 0u64;
        for s in known.iter().filter(|s| s.status == "active") {
            let Ok(id) = s.stake_id.parse::<daas_chain::Address>() else { continue };
            match self.chain.stake_record(&id).await {
                Ok(r) if r.staker == address && r.status == StakeStatus::Active => total = total.saturating_add(r.amount),
                Ok(_) | Err(ChainError::NotFound(_)) => {}
                Err(ChainError::Unavailable(e)) => {
                    return refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "chain-unavailable",
                        format!("{} did not answer, so the stake cannot be checked; try again: {e}", self.chain_name),
                    );
                }
                Err(e) => tracing::warn!(stake = %id, error = %e, "login: a stake of the index cannot be read"),
            }
        }
        let Some(tier) = self.tiers.tier(total) else {
            let reason = if total == 0 { "no-stake" } else { "stake-too-low" };
            return refused(
                StatusCode::FORBIDDEN,
                reason,
                format!(
                    "{address} has {total} in active stakes on {} as far as the master has read it (events up to checkpoint {}; a stake made just now shows within a poll); reading needs {}, writing {}, admin {}",
                    self.chain_name,
                    self.metrics.checkpoint(),
                    self.tiers.read,
                    self.tiers.write,
                    self.tiers.admin
                ),
            );
        };
        let issued = self.issuer.issue(&address.to_string(), None, None, tier, t);
        tracing::info!(%address, tier, "tenant logged in");
        (
            StatusCode::OK,
            axum::Json(json!({"status": "logged-in", "address": address.to_string(), "tier": tier, "seal_token": issued.token, "expires_at": issued.claims.exp})),
        )
            .into_response()
    }

    /// `POST /api/v1/nodes/heartbeat` with a worker's seal token: a fresh token for the same
    /// node, with the tier the stake buys now, after reading the stake from the chain again. A
    /// stake that is gone is a 401, as for a revoked token; a silent chain is a 503 (the old
    /// token keeps working until it expires).
    pub async fn heartbeat(&self, token: &str) -> Response {
        let t = crate::k8s::meta::now_unix();
        let claims = match self.verifier.verify(token, t) {
            Ok(c) => c,
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "bad-token", e.to_string()),
        };
        let (Some(node), Some(stake)) = (claims.node.as_deref(), claims.stake.as_deref()) else {
            return refused(StatusCode::FORBIDDEN, "not-a-worker", "heartbeats come from workers: use the token register-worker issued");
        };
        let Ok(stake_id) = stake.parse::<daas_chain::Address>() else {
            return refused(StatusCode::FORBIDDEN, "not-a-worker", "the token names no stake object");
        };
        let rec = match self.chain.stake_record(&stake_id).await {
            Ok(r) => r,
            Err(ChainError::Unavailable(e)) => {
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "chain-unavailable",
                    format!(
                        "{} did not answer, so the stake cannot be checked; the current token stays valid until it expires: {e}",
                        self.chain_name
                    ),
                );
            }
            Err(e) => return refused(StatusCode::UNAUTHORIZED, "stake-revoked", format!("stake {stake_id}: {e}")),
        };
        if rec.staker.to_string() != claims.sub || rec.status != StakeStatus::Active || rec.node_id != node || rec.amount < self.min_stake {
            self.verifier.revoke_stake(stake);
            return refused(
                StatusCode::UNAUTHORIZED,
                "stake-revoked",
                format!("stake {stake_id} is {} and holds {}; it no longer backs node {node}", rec.status.name(), rec.amount),
            );
        }
        let tier = self.tiers.tier(rec.amount).unwrap_or("read");
        let issued = self.issuer.issue(&claims.sub, Some(node), Some(stake), tier, t);
        (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "node_id": node, "seal_token": issued.token, "expires_at": issued.claims.exp, "tier": tier})),
        )
            .into_response()
    }
}

/// A Kubernetes node name: a DNS subdomain.
pub(crate) fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_thresholds() {
        let t = TierThresholds { read: 100, write: 1000, admin: 10_000 };
        assert_eq!(t.tier(99), None);
        assert_eq!(t.tier(100), Some("read"));
        assert_eq!(t.tier(9_999), Some("write"));
        assert_eq!(t.tier(10_000), Some("admin"));
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(valid_node_name("worker-1.example"));
        assert!(!valid_node_name("Worker"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name(""));
    }
}
