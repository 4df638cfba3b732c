//! Following the chain: our package's events, in ledger order, each applied exactly once.
//!
//! The follower reads `LedgerService.ListEvents` after the cursor kept in the store and
//! applies each event in one store transaction together with the cursor that moves past it
//! and a record under the event's idempotency key (transaction digest + event index). A crash
//! at any point leaves either the event applied and the cursor past it, or neither.
//!
//! - `StakeEvent` adds the stake to the stake index (`/daas/chain/stakes/<staker>/<stake>`),
//!   which gives on-chain requests their sender's tier and tenants' logins their stakes.
//! - `UnstakeEvent` and `SlashEvent` revoke the staker's seal tokens at once and taint the
//!   node the stake backed with `k3s-daas.io/stake-revoked:NoExecute` (the taint is written in
//!   the same transaction as the cursor).
//! - `K8sAPIRequest` runs as the sender through the API's own authorization, admission and
//!   audit; its outcome is stored at `/daas/chain/requests/<digest>/<index>` and served at
//!   `GET /api/v1/chain-requests/<digest>/<index>`. The request's first store write carries the
//!   cursor and the outcome marker (see [`crate::k8s::Rider`]), so the effect and "done"
//!   commit together; a malformed or refused request is recorded as failed and the stream
//!   moves on.
//!
//! `POST /api/v1/sui-events` only wakes the follower; nothing in it is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use daas_chain::{Address, ChainEvent, K8sApiRequest, PackageEvent};
use daas_store::{KeySpan, PutRequest, RangeRequest, RequestOp, Store, TxnRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::k8s::auth::User;
use crate::k8s::status::ApiError;
use crate::k8s::{Api, RIDER, Rider, meta};
use crate::seal::Seal;

/// Where the follower keeps its state, under `/daas/chain/<package>/`: another package (a new
/// `--sui-package`) starts from nothing rather than from what an old one said.
#[derive(Debug, Clone)]
pub struct Keys(String);

impl Keys {
    pub fn new(package: &Address) -> Keys {
        Keys(format!("/daas/chain/{package}/"))
    }
    fn cursor(&self) -> String {
        format!("{}cursor", self.0)
    }
    fn applied(&self, event: &str) -> String {
        format!("{}applied/{event}", self.0)
    }
    fn request(&self, event: &str) -> String {
        format!("{}requests/{event}", self.0)
    }
    fn stakes_of(&self, staker: &Address) -> String {
        format!("{}stakes/{staker}/", self.0)
    }
    fn stake(&self, staker: &Address, stake: &Address) -> String {
        format!("{}stakes/{staker}/{stake}", self.0)
    }
    /// The stake a node last registered with.
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.0)
    }
}
/// The taint a node gets when the stake behind it is withdrawn or slashed.
pub const STAKE_REVOKED_TAINT: &str = "k3s-daas.io/stake-revoked";
/// Events read per page.
const PAGE: u32 = 100;
/// Largest payload an on-chain request may carry (the API's body limit).
const MAX_PAYLOAD: usize = 3 * 1024 * 1024;
/// How long one on-chain request (or a taint) may run.
const EXECUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at one event before it is recorded as failed and the stream moves on.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct CursorRecord {
    /// Hex of the opaque ListEvents cursor.
    cursor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
}

/// A stake as the event stream has told it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexedStake {
    pub stake_id: String,
    pub staker: String,
    pub amount: u64,
    pub node_id: String,
    /// `active`, `unstaking` or `slashed`.
    pub status: String,
}

/// What the follower has done, for `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct ChainMetrics {
    polls: AtomicU64,
    poll_errors: AtomicU64,
    events: AtomicU64,
    requests_applied: AtomicU64,
    requests_failed: AtomicU64,
    revocations: AtomicU64,
    checkpoint: AtomicU64,
}

impl ChainMetrics {
    /// The checkpoint of the last event applied (0 before the first).
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text of these counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP daas_chain_polls_total Reads of the chain's event stream.\n# TYPE daas_chain_polls_total counter\ndaas_chain_polls_total {}\n\
             # HELP daas_chain_poll_errors_total Reads of the event stream that failed (retried with back-off).\n# TYPE daas_chain_poll_errors_total counter\ndaas_chain_poll_errors_total {}\n\
             # HELP daas_chain_events_applied_total Package events applied.\n# TYPE daas_chain_events_applied_total counter\ndaas_chain_events_applied_total {}\n\
             # HELP daas_chain_requests_total On-chain Kubernetes requests by result.\n# TYPE daas_chain_requests_total counter\ndaas_chain_requests_total{{result=\"applied\"}} {}\ndaas_chain_requests_total{{result=\"failed\"}} {}\n\
             # HELP daas_chain_revocations_total Stakers whose tokens were revoked by an unstake or slash.\n# TYPE daas_chain_revocations_total counter\ndaas_chain_revocations_total {}\n\
             # HELP daas_chain_checkpoint Checkpoint of the last event applied.\n# TYPE daas_chain_checkpoint gauge\ndaas_chain_checkpoint {}\n",
            g(&self.polls),
            g(&self.poll_errors),
            g(&self.events),
            g(&self.requests_applied),
            g(&self.requests_failed),
            g(&self.revocations),
            g(&self.checkpoint),
        );
    }
}

fn put(key: String, value: &Value) -> RequestOp {
    RequestOp::Put(PutRequest { key: Bytes::from(key), value: Bytes::from(value.to_string()), ..Default::default() })
}

fn get(store: &Store, key: &str) -> Result<Option<Value>, String> {
    let r = store.range_now(&RangeRequest::new(KeySpan::Single(Bytes::from(key.to_string())))).map_err(|e| e.to_string())?;
    match r.kvs.into_iter().next() {
        None => Ok(None),
        Some(kv) => serde_json::from_slice(&kv.value).map(Some).map_err(|e| format!("{key} does not decode: {e}")),
    }
}

/// Every stake the event stream has shown for `staker`.
pub fn stakes_of(store: &Store, keys: &Keys, staker: &Address) -> Result<Vec<IndexedStake>, String> {
    let span = crate::k8s::prefix_span(&keys.stakes_of(staker));
    let r = store.range_now(&RangeRequest::new(span)).map_err(|e| e.to_string())?;
    r.kvs.iter().map(|kv| serde_json::from_slice(&kv.value).map_err(|e| format!("a stake index entry does not decode: {e}"))).collect()
}

/// The identity an on-chain request runs as: the sender's address, with the tier its active
/// stakes (as of this point in the event stream) buy.
fn sender_user(store: &Store, seal: &Seal, sender: &Address) -> Result<User, String> {
    let total: u64 =
        stakes_of(store, &seal.keys, sender)?.iter().filter(|s| s.status == "active").map(|s| s.amount).fold(0, u64::saturating_add);
    let mut groups = Vec::new();
    if let Some(tier) = seal.tiers.tier(total) {
        groups.push(format!("daas:tier:{tier}"));
        groups.push("daas:stakers".into());
    }
    groups.push("system:authenticated".into());
    Ok(User { name: sender.to_string(), uid: sender.to_string(), groups, method: "chain", token: None })
}

fn follower_user() -> User {
    User {
        name: "system:daas:chain-follower".into(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        method: "internal",
        token: None,
    }
}

/// Applies our package's events from the chain to the cluster.
pub struct Follower {
    api: Arc<Api>,
    seal: Arc<Seal>,
    poll: Duration,
    /// The event that failed last and how often in a row.
    attempts: parking_lot::Mutex<(String, u32)>,
}

impl Follower {
    pub fn new(api: Arc<Api>, seal: Arc<Seal>, poll: Duration) -> Arc<Follower> {
        Arc::new(Follower { api, seal, poll, attempts: parking_lot::Mutex::new((String::new(), 0)) })
    }

    /// Follows the chain until `stop` turns true. Chain errors are logged and retried with
    /// back-off; they never stop the server.
    pub fn spawn(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = self.poll;
            loop {
                let wait = match self.poll_once().await {
                    Ok(true) => Duration::ZERO,
                    Ok(false) => {
                        backoff = self.poll;
                        self.poll
                    }
                    Err(e) => {
                        self.seal.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        tracing::warn!(error = %e, retry_in = ?backoff, "following {}: will retry", self.seal.chain_name);
                        backoff
                    }
                };
                if *stop.borrow() {
                    return;
                }
                if !wait.is_zero() {
                    // While backing off, a hint does not cut the wait short: the hint needs no
                    // credentials, so it must not be a way to hammer a failing chain.
                    let backing_off = wait > self.poll;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.seal.wake.notified(), if !backing_off => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        _ = stop.changed() => return,
                    }
                }
            }
        })
    }

    /// Reads one page after the stored cursor and applies it. True when more may follow at
    /// once.
    pub async fn poll_once(&self) -> Result<bool, String> {
        let store = &self.api.store;
        let cursor = match get(store, &self.seal.keys.cursor())? {
            Some(v) => {
                let c: CursorRecord = serde_json::from_value(v).map_err(|e| format!("the chain cursor does not decode: {e}"))?;
                Some(hex::decode(&c.cursor).map_err(|e| format!("the chain cursor does not decode: {e}"))?)
            }
            None => None,
        };
        self.seal.metrics.polls.fetch_add(1, Ordering::Relaxed);
        let page = self.seal.chain.list_events(cursor.as_deref(), PAGE).await.map_err(|e| e.to_string())?;
        let mut last = cursor;
        for ev in &page.events {
            let key = ev.key();
            let tries = {
                let a = self.attempts.lock();
                if a.0 == key { a.1 } else { 0 }
            };
            // An event that keeps failing is applied in its degraded form (recorded as failed,
            // no taint) so one bad event cannot stop the stream behind it.
            let degraded = tries + 1 >= MAX_ATTEMPTS;
            if let Err(e) = self.apply(ev, degraded).await {
                *self.attempts.lock() = (key.clone(), tries + 1);
                return Err(format!("event {key} (attempt {} of {MAX_ATTEMPTS}): {e}", tries + 1));
            }
            if degraded {
                tracing::error!(event = %key, "the event kept failing; it is recorded as failed and the stream moves on");
            }
            last = Some(ev.cursor.clone());
            self.seal.metrics.events.fetch_add(1, Ordering::Relaxed);
            self.seal.metrics.checkpoint.store(ev.checkpoint, Ordering::Relaxed);
        }
        // The node may have scanned past the last match: keep that progress too.
        if let Some(c) = page.cursor
            && Some(&c) != last.as_ref()
        {
            self.commit(vec![self.cursor_op(&c, None)]).await?;
        }
        Ok(page.full)
    }

    fn cursor_op(&self, cursor: &[u8], event: Option<&ChainEvent>) -> RequestOp {
        let rec = CursorRecord { cursor: hex::encode(cursor), event: event.map(ChainEvent::key) };
        put(self.seal.keys.cursor(), &serde_json::to_value(rec).unwrap_or_default())
    }

    async fn commit(&self, ops: Vec<RequestOp>) -> Result<(), String> {
        let r = self.api.store.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await.map_err(|e| e.to_string())?;
        if r.succeeded { Ok(()) } else { Err("the store refused the chain transaction".into()) }
    }

    async fn apply(&self, ev: &ChainEvent, degraded: bool) -> Result<(), String> {
        let store = &self.api.store;
        let keys = &self.seal.keys;
        let key = ev.key();
        let cursor = self.cursor_op(&ev.cursor, Some(ev));
        // The idempotency key: an event already applied only moves the cursor.
        if get(store, &keys.applied(&key))?.is_some() || get(store, &keys.request(&key))?.is_some() {
            tracing::debug!(event = %key, "already applied");
            return self.commit(vec![cursor]).await;
        }
        let marker = put(keys.applied(&key), &json!({"checkpoint": ev.checkpoint, "type": ev.event_type, "degraded": degraded}));
        match ev.decode(self.seal.chain.package()) {
            Err(e) if ev.event_type.ends_with(K8sApiRequest::MOVE_NAME) => {
                let outcome = self.outcome(ev, None, "failed", 400, &format!("the request event does not decode: {}", e.0), None);
                self.seal.metrics.requests_failed.fetch_add(1, Ordering::Relaxed);
                self.commit(vec![cursor, put(keys.request(&key), &outcome)]).await
            }
            // A damaged unstake or slash still names its stake and staker first: revoke.
            Err(e)
                if ev.event_type.ends_with(daas_chain::UnstakeEvent::MOVE_NAME)
                    || ev.event_type.ends_with(daas_chain::SlashEvent::MOVE_NAME) =>
            {
                tracing::error!(event = %key, error = %e, "an unstake/slash event does not decode; revoking by its stake and staker");
                let (Some(stake), Some(staker)) = (ev.contents.get(..32), ev.contents.get(32..64)) else {
                    return self.commit(vec![cursor, marker]).await;
                };
                let (stake, staker) =
                    (Address::new(stake.try_into().unwrap_or([0; 32])), Address::new(staker.try_into().unwrap_or([0; 32])));
                let status = if ev.event_type.ends_with(daas_chain::SlashEvent::MOVE_NAME) { "slashed" } else { "unstaking" };
                self.revoke(&staker, &stake, status, vec![cursor, marker], degraded).await
            }
            Err(e) => {
                tracing::warn!(event = %key, r#type = %ev.event_type, error = %e, "skipping an event that does not decode");
                self.commit(vec![cursor, marker]).await
            }
            Ok(None) => self.commit(vec![cursor, marker]).await,
            Ok(Some(PackageEvent::Stake(s))) => {
                let idx = IndexedStake {
                    stake_id: s.stake_id.to_string(),
                    staker: s.staker.to_string(),
                    amount: s.amount,
                    node_id: s.node_id.clone(),
                    status: "active".into(),
                };
                let entry = put(keys.stake(&s.staker, &s.stake_id), &serde_json::to_value(idx).unwrap_or_default());
                self.commit(vec![cursor, marker, entry]).await
            }
            Ok(Some(PackageEvent::Unstake(u))) => self.revoke(&u.staker, &u.stake_id, "unstaking", vec![cursor, marker], degraded).await,
            Ok(Some(PackageEvent::Slash(s))) => self.revoke(&s.staker, &s.stake_id, "slashed", vec![cursor, marker], degraded).await,
            Ok(Some(PackageEvent::Request(r))) => self.execute(ev, &r, cursor, degraded).await,
        }
    }

    /// An unstake or slash: the staker's tokens stop working now; the node the stake backed is
    /// tainted for draining in the same transaction as the cursor.
    async fn revoke(&self, staker: &Address, stake: &Address, status: &str, mut ops: Vec<RequestOp>, degraded: bool) -> Result<(), String> {
        // Worker tokens of this stake end for good; the staker's tenant tokens end too (their
        // tier may have dropped) and a new login reads the chain afresh.
        self.seal.verifier.revoke_stake(&stake.to_string());
        self.seal.verifier.revoke_tenant(&staker.to_string(), meta::now_unix());
        self.seal.metrics.revocations.fetch_add(1, Ordering::Relaxed);
        let keys = &self.seal.keys;
        let key = keys.stake(staker, stake);
        let known: Option<IndexedStake> = get(&self.api.store, &key)?.and_then(|v| serde_json::from_value(v).ok());
        let mut idx = known.unwrap_or_else(|| IndexedStake {
            stake_id: stake.to_string(),
            staker: staker.to_string(),
            amount: 0,
            node_id: String::new(),
            status: String::new(),
        });
        idx.status = status.into();
        ops.push(put(key, &serde_json::to_value(&idx).unwrap_or_default()));
        // Taint only the node this very stake admitted: anyone may stake for any node name,
        // and another stake may back the same node.
        let registered: Option<Value> = get(&self.api.store, &keys.node(&idx.node_id))?;
        let backs = registered.as_ref().is_some_and(|r| r["stake_id"] == stake.to_string());
        tracing::warn!(%staker, %stake, node = %idx.node_id, status, tainting = backs && !degraded, "stake revoked: its tokens are revoked");
        if !backs || degraded || !crate::seal::valid_node_name(&idx.node_id) {
            return self.commit(ops).await;
        }
        self.taint(&idx.node_id, status, ops).await
    }

    async fn taint(&self, node: &str, why: &str, ops: Vec<RequestOp>) -> Result<(), String> {
        let path = format!("/api/v1/nodes/{node}");
        for _ in 0..5 {
            let r =
                tokio::time::timeout(EXECUTE_TIMEOUT, self.api.execute_as(follower_user(), "GET", &path, "application/json", Bytes::new()))
                    .await
                    .map_err(|_| format!("reading node {node} took longer than {EXECUTE_TIMEOUT:?}"))?;
            if r.status() == StatusCode::NOT_FOUND {
                tracing::info!(node, "no Node object to taint (the worker never joined)");
                return self.commit(ops).await;
            }
            let (code, body) = read_response(r).await;
            if code != 200 {
                return Err(format!("reading node {node}: {code} {}", String::from_utf8_lossy(&body)));
            }
            let obj: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let mut taints = obj.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
            if taints.iter().any(|t| t["key"] == STAKE_REVOKED_TAINT && t["effect"] == "NoExecute") {
                return self.commit(ops).await;
            }
            taints.push(json!({"key": STAKE_REVOKED_TAINT, "value": why, "effect": "NoExecute", "timeAdded": meta::now_rfc3339()}));
            let patch = json!({"metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion")}, "spec": {"taints": taints}});
            let rider = Rider::new(ops.clone());
            let r = tokio::time::timeout(
                EXECUTE_TIMEOUT,
                RIDER.scope(
                    rider.clone(),
                    self.api.execute_as(follower_user(), "PATCH", &path, "application/merge-patch+json", Bytes::from(patch.to_string())),
                ),
            )
            .await
            .map_err(|_| format!("tainting node {node} took longer than {EXECUTE_TIMEOUT:?}"))?;
            if rider.landed().is_some() {
                return Ok(());
            }
            if r.status() != StatusCode::CONFLICT {
                let (code, body) = read_response(r).await;
                return Err(format!("tainting node {node}: {code} {}", String::from_utf8_lossy(&body)));
            }
        }
        Err(format!("tainting node {node}: it kept changing"))
    }

    /// Runs an on-chain request as its sender and records the outcome.
    async fn execute(&self, ev: &ChainEvent, req: &K8sApiRequest, cursor: RequestOp, degraded: bool) -> Result<(), String> {
        let key = self.seal.keys.request(&ev.key());
        let user = sender_user(&self.api.store, &self.seal, &req.sender)?;
        let prepared = if degraded {
            Err((500, format!("the request failed {MAX_ATTEMPTS} times in a row (timeouts or store errors); it is not retried")))
        } else {
            check_request(req).map_err(|m| (400, m))
        };
        let (code, message, object) = match prepared {
            Err((code, message)) => (code, message, None),
            Ok((content_type, body)) => {
                let pending = self.outcome(ev, Some(&user), "applied", 0, "applied; the outcome is being recorded", None);
                let rider = Rider::new(vec![cursor.clone(), put(key.clone(), &pending)]);
                let r = tokio::time::timeout(
                    EXECUTE_TIMEOUT,
                    RIDER.scope(rider.clone(), self.api.execute_as(user.clone(), &req.method, &req.path, content_type, body)),
                )
                .await
                .map_err(|_| format!("the request took longer than {EXECUTE_TIMEOUT:?}"))?;
                let (code, body) = read_response(r).await;
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let message = if v["kind"] == "Status" {
                    v["message"].as_str().unwrap_or("").to_string()
                } else {
                    StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("").to_string()
                };
                let object = (v["kind"] != "Status" && v.is_object()).then(|| {
                    json!({
                        "apiVersion": v["apiVersion"], "kind": v["kind"],
                        "namespace": v.pointer("/metadata/namespace"), "name": v.pointer("/metadata/name"),
                        "uid": v.pointer("/metadata/uid"), "resourceVersion": v.pointer("/metadata/resourceVersion"),
                    })
                });
                if rider.landed().is_some() {
                    let state = if code < 400 { "applied" } else { "failed" };
                    let outcome = self.outcome(ev, Some(&user), state, code, &message, object);
                    self.count(code);
                    return self.commit(vec![put(key, &outcome)]).await;
                }
                (code, message, object)
            }
        };
        let state = if code < 400 { "applied" } else { "failed" };
        if code >= 400 {
            tracing::info!(event = %ev.key(), sender = %req.sender, code, %message, "on-chain request failed");
        }
        self.count(code);
        let outcome = self.outcome(ev, Some(&user), state, code, &message, object);
        self.commit(vec![cursor, put(key, &outcome)]).await
    }

    fn count(&self, code: u16) {
        let c = if code < 400 { &self.seal.metrics.requests_applied } else { &self.seal.metrics.requests_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn outcome(&self, ev: &ChainEvent, user: Option<&User>, state: &str, code: u16, message: &str, object: Option<Value>) -> Value {
        let req = ev.decode(self.seal.chain.package()).ok().flatten();
        let (method, path) = match &req {
            Some(PackageEvent::Request(r)) => (r.method.as_str(), r.path.as_str()),
            _ => ("", ""),
        };
        json!({
            "kind": "ChainRequest",
            "txDigest": ev.tx_digest,
            "eventIndex": ev.event_index,
            "checkpoint": ev.checkpoint,
            "sender": ev.sender.to_string(),
            "user": user.map(|u| json!({"username": u.name, "groups": u.groups})),
            "method": method,
            "path": path,
            "state": state,
            "code": code,
            "message": message,
            "object": object,
            "recordedAt": meta::now_rfc3339(),
        })
    }
}

/// What an on-chain request must be before it runs: a method the API serves, a resource path
/// (no watches), a namespace that agrees with the path, a JSON or YAML body within the limit.
fn check_request(req: &K8sApiRequest) -> Result<(&'static str, Bytes), String> {
    let content_type = match req.method.as_str() {
        "GET" | "DELETE" | "POST" | "PUT" => "application/json",
        "PATCH" => "application/merge-patch+json",
        m => return Err(format!("method {m:?} is not one of GET, POST, PUT, PATCH, DELETE")),
    };
    if !(req.path.starts_with("/api/") || req.path.starts_with("/apis/")) {
        return Err(format!("path {:?} is not a Kubernetes resource path (/api/… or /apis/…)", req.path));
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let method: axum::http::Method = req.method.parse().map_err(|_| format!("method {:?} is not valid", req.method))?;
    let q = crate::k8s::request::parse_query(Some(query));
    match crate::k8s::request::parse(&method, path, &q) {
        Ok(Some(info)) if info.verb == "watch" => return Err("a watch cannot be submitted on chain".into()),
        Ok(Some(info)) if matches!(info.sub, Some(crate::k8s::registry::Sub::Log | crate::k8s::registry::Sub::Exec)) => {
            return Err("logs and exec stream from a node; they cannot be submitted on chain".into());
        }
        // One request, one write: a collection delete would commit item by item.
        Ok(Some(info)) if info.verb == "deletecollection" => {
            return Err("a collection delete cannot be submitted on chain; delete objects one by one".into());
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err(format!("path {:?} is not a Kubernetes resource path", req.path)),
        Err(e) => return Err(e.message),
    }
    let segments: Vec<&str> = path.split('/').collect();
    if let Some(i) = segments.iter().position(|s| *s == "namespaces")
        && let Some(ns) = segments.get(i + 1)
        && segments.len() > i + 2
        && !req.namespace.is_empty()
        && *ns != req.namespace
    {
        return Err(format!("the request names namespace {:?} but its path is in {ns:?}", req.namespace));
    }
    if req.payload.len() > MAX_PAYLOAD {
        return Err(format!("the payload is {} bytes; the limit is {MAX_PAYLOAD}", req.payload.len()));
    }
    if req.payload.is_empty() {
        return Ok((content_type, Bytes::new()));
    }
    let body: Value = match serde_json::from_slice(&req.payload) {
        Ok(v) => v,
        Err(_) => {
            let text = std::str::from_utf8(&req.payload).map_err(|_| "the payload is neither JSON nor YAML (not UTF-8)".to_string())?;
            serde_saphyr::from_str(text).map_err(|e| format!("the payload is neither JSON nor YAML: {e}"))?
        }
    };
    Ok((content_type, Bytes::from(body.to_string())))
}

async fn read_response(r: Response) -> (u16, Bytes) {
    let code = r.status().as_u16();
    (code, axum::body::to_bytes(r.into_body(), 8 * 1024 * 1024).await.unwrap_or_default())
}

/// `GET /api/v1/chain-requests/<digest>/<index>`: for the request's sender and for admins.
pub fn chain_request(store: &Store, keys: &Keys, user: &User, rest: &str) -> Response {
    let mut parts = rest.split('/');
    let (Some(digest), Some(index), None) = (parts.next(), parts.next(), parts.next()) else {
        return ApiError::new(404, "NotFound", "the path is /api/v1/chain-requests/<transaction digest>/<event index>").into_response();
    };
    if index.parse::<u32>().is_err() || digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return ApiError::bad_request("the path is /api/v1/chain-requests/<transaction digest (base58)>/<event index>").into_response();
    }
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            format!("chain request {digest}/{index} has not been applied: the master has not read it (yet), or it is not a K8sAPIRequest of this package"),
        )
        .into_response()
    };
    match get(store, &keys.request(&format!("{digest}/{index}"))) {
        Ok(Some(v)) => {
            let admin = user.is_admin() || user.tier() == Some(crate::k8s::auth::Tier::Admin);
            if admin || v["sender"].as_str() == Some(user.uid.as_str()) {
                (StatusCode::OK, axum::Json(v)).into_response()
            } else {
                ApiError::forbidden(format!(
                    "forbidden: User \"{}\" cannot get chain request {digest}/{index}: only its sender and admins read it",
                    user.name
                ))
                .into_response()
            }
        }
        Ok(None) => not_found(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, ns: &str, payload: &[u8]) -> K8sApiRequest {
        K8sApiRequest {
            method: method.into(),
            path: path.into(),
            namespace: ns.into(),
            resource_type: "configmaps".into(),
            payload: payload.to_vec(),
            sender: Address::ZERO,
            timestamp: 0,
        }
    }

    #[test]
    fn requests_are_checked_before_they_run() {
        let ok = check_request(&req("POST", "/api/v1/namespaces/a/configmaps", "a", b"metadata:\n  name: x\n"));
        assert_eq!(ok, Ok(("application/json", Bytes::from(r#"{"metadata":{"name":"x"}}"#))));
        assert_eq!(
            check_request(&req("PATCH", "/api/v1/namespaces/a/configmaps/x", "", b"{}")).map(|r| r.0),
            Ok("application/merge-patch+json")
        );
        for (bad, why) in [
            (req("TRACE", "/api/v1/pods", "", b""), "method"),
            (req("GET", "/healthz", "", b""), "not a Kubernetes resource path"),
            (req("GET", "/api/v1/pods?watch=true", "", b""), "watch"),
            (req("GET", "/api/v1/watch/namespaces/a/pods", "", b""), "watch"),
            (req("DELETE", "/api/v1/namespaces/a/configmaps", "", b""), "collection delete"),
            (req("POST", "/api/v1/namespaces/a/configmaps", "b", b"{}"), "namespace"),
            (req("POST", "/api/v1/namespaces/a/configmaps", "a", &[0xff, 0xfe]), "neither JSON nor YAML"),
            (req("POST", "/api/v1/namespaces/a/configmaps", "a", b"{unclosed"), "neither JSON nor YAML"),
        ] {
            let e = check_request(&bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
