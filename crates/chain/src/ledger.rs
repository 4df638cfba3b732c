//! The development ledger: what `daas server` uses when no Sui endpoint is configured. It is
//! NOT a blockchain: one process keeps stake records in a JSON file and serves them through
//! the same subset of gRPC `sui.rpc.v2` a full node offers, on loopback, so the real chain
//! client code runs against it. Everything that reports on it calls it a development ledger.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sui_rpc::proto::sui::rpc::v2::ledger_service_server::{LedgerService, LedgerServiceServer};
use sui_rpc::proto::sui::rpc::v2::{
    Bcs, Event, EventFilter, GetObjectRequest, GetObjectResponse, GetServiceInfoRequest, GetServiceInfoResponse, ListEventsRequest,
    ListEventsResponse, Object, QueryEnd, QueryEndReason, Watermark, event_literal,
};
use sui_sdk_types::Address;

use crate::events::{K8sApiRequest, SlashEvent, StakeEvent, UnstakeEvent};
use crate::stake::{StakeRecord, StakeStatus, stake_record_type};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("development ledger file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("development ledger file {path} is damaged: {why}")]
    Damaged { path: String, why: String },
    #[error("no stake record {0} on the development ledger")]
    NoSuchStake(String),
    #[error("stake {id} is {status}: {why}")]
    WrongStatus { id: String, status: &'static str, why: &'static str },
}

/// How long an unstaked stake stays locked (the Move package's default): 7 days.
pub const UNSTAKE_LOCK_MS: u64 = 7 * 24 * 3600 * 1000;

/// Largest page ListEvents answers.
const MAX_EVENT_PAGE: u32 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredObject {
    object_type: String,
    version: u64,
    /// Base64 of the BCS contents.
    contents: String,
}

/// One event, in ledger order. Every ledger change is one transaction in its own checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEvent {
    checkpoint: u64,
    tx_digest: String,
    event_index: u32,
    sender: String,
    module: String,
    event_type: String,
    /// Base64 of the BCS contents.
    contents: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    chain_id: String,
    package: String,
    checkpoint: u64,
    objects: BTreeMap<String, StoredObject>,
    #[serde(default)]
    events: Vec<StoredEvent>,
}

/// A development ledger persisted at one path.
#[derive(Clone)]
pub struct DevLedger {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    /// Modification time and length of the file as last read or written: `daas dev` commands
    /// change the file while a server serves it, and the server picks the change up.
    stamp: Arc<Mutex<Option<(std::time::SystemTime, u64)>>>,
}

impl std::fmt::Debug for DevLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevLedger").field("path", &self.path).finish_non_exhaustive()
    }
}

fn random_address() -> Address {
    let mut b = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut b);
    Address::new(b)
}

impl DevLedger {
    /// Opens the ledger at `path`, creating it (with a random chain id and package address)
    /// if it does not exist.
    pub fn open(path: &Path) -> Result<DevLedger, LedgerError> {
        let io = |source| LedgerError::Io { path: path.display().to_string(), source };
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| LedgerError::Damaged { path: path.display().to_string(), why: e.to_string() })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut id = [0u8; 32];
                rand::Rng::fill(&mut rand::rng(), &mut id);
                State {
                    chain_id: format!("devledger-{}", hex::encode(&id[..8])),
                    package: random_address().to_string(),
                    checkpoint: 0,
                    objects: BTreeMap::new(),
                    events: Vec::new(),
                }
            }
            Err(e) => return Err(io(e)),
        };
        let ledger = DevLedger { state: Arc::new(Mutex::new(state)), path: path.to_path_buf(), stamp: Arc::new(Mutex::new(None)) };
        ledger.persist(&ledger.state.lock())?;
        Ok(ledger)
    }

    /// The address the ledger's `staking` module is published at.
    pub fn package(&self) -> Address {
        self.state.lock().package.parse().unwrap_or(Address::ZERO)
    }

    pub fn chain_id(&self) -> String {
        self.state.lock().chain_id.clone()
    }

    /// Records a new active stake of `amount` by `staker` for `node_id` (emits StakeEvent).
    pub fn stake(&self, staker: Address, node_id: &str, amount: u64, now_ms: u64) -> Result<StakeRecord, LedgerError> {
        let rec = StakeRecord {
            id: random_address(),
            staker,
            amount,
            node_id: node_id.to_string(),
            status: StakeStatus::Active,
            staked_at: now_ms,
            locked_until: now_ms,
        };
        let event = StakeEvent { stake_id: rec.id, staker, amount, node_id: node_id.to_string(), staked_at: now_ms };
        self.transact(staker, |st| {
            let ty = stake_record_type(&package_of(st));
            Ok((vec![(rec.id, ty, rec.to_bcs())], vec![("staking", StakeEvent::MOVE_NAME, event.to_bcs())]))
        })?;
        Ok(rec)
    }

    /// The stake record `id`.
    pub fn stake_record(&self, id: &Address) -> Result<StakeRecord, LedgerError> {
        self.refresh();
        let st = self.state.lock();
        read_stake(&st, id)
    }

    /// The staker asks for the stake back: active → unstaking, locked for
    /// [`UNSTAKE_LOCK_MS`] (emits UnstakeEvent).
    pub fn unstake(&self, id: &Address, now_ms: u64) -> Result<StakeRecord, LedgerError> {
        self.refresh();
        let mut rec = self.stake_record(id)?;
        if rec.status != StakeStatus::Active {
            return Err(LedgerError::WrongStatus {
                id: id.to_string(),
                status: rec.status.name(),
                why: "only an active stake can be unstaked",
            });
        }
        rec.status = StakeStatus::Unstaking;
        rec.locked_until = now_ms + UNSTAKE_LOCK_MS;
        let event = UnstakeEvent { stake_id: rec.id, staker: rec.staker, amount: rec.amount, locked_until: rec.locked_until };
        self.transact(rec.staker, |st| {
            let ty = stake_record_type(&package_of(st));
            Ok((vec![(rec.id, ty, rec.to_bcs())], vec![("staking", UnstakeEvent::MOVE_NAME, event.to_bcs())]))
        })?;
        Ok(rec)
    }

    /// Slashes an active or unstaking stake (emits SlashEvent). The development ledger's
    /// stand-in for the package's admin capability: whoever can write the file may slash.
    pub fn slash(&self, id: &Address, reason: &str) -> Result<StakeRecord, LedgerError> {
        self.refresh();
        let mut rec = self.stake_record(id)?;
        if !matches!(rec.status, StakeStatus::Active | StakeStatus::Unstaking) {
            return Err(LedgerError::WrongStatus {
                id: id.to_string(),
                status: rec.status.name(),
                why: "only a live stake can be slashed",
            });
        }
        rec.status = StakeStatus::Slashed;
        let event = SlashEvent { stake_id: rec.id, staker: rec.staker, amount: rec.amount, reason: reason.to_string() };
        self.transact(Address::ZERO, |st| {
            let ty = stake_record_type(&package_of(st));
            Ok((vec![(rec.id, ty, rec.to_bcs())], vec![("staking", SlashEvent::MOVE_NAME, event.to_bcs())]))
        })?;
        Ok(rec)
    }

    /// Records a Kubernetes API request submitted by `request.sender` (emits K8sAPIRequest);
    /// returns the transaction digest and event index.
    pub fn submit_request(&self, request: &K8sApiRequest) -> Result<(String, u32), LedgerError> {
        self.refresh();
        let digest = self.transact(request.sender, |_| Ok((vec![], vec![("k8s_gateway", K8sApiRequest::MOVE_NAME, request.to_bcs())])))?;
        Ok((digest, 0))
    }

    /// Stores any object (tests use it for objects of other types).
    pub fn put_object(&self, id: &Address, object_type: &str, contents: Vec<u8>) -> Result<(), LedgerError> {
        self.transact(Address::ZERO, |_| Ok((vec![(*id, object_type.to_string(), contents)], vec![])))?;
        Ok(())
    }

    /// One transaction in a new checkpoint: writes objects and emits events, on disk first and
    /// then in memory, so a failed write changes nothing. Returns the transaction digest.
    #[allow(clippy::type_complexity)]
    fn transact(
        &self,
        sender: Address,
        f: impl FnOnce(&State) -> Result<(Vec<(Address, String, Vec<u8>)>, Vec<(&str, &str, Vec<u8>)>), LedgerError>,
    ) -> Result<String, LedgerError> {
        let mut st = self.state.lock();
        let (objects, events) = f(&st)?;
        let mut next = st.clone();
        next.checkpoint += 1;
        let mut d = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut d);
        let digest = sui_sdk_types::Digest::new(d).to_string();
        for (id, object_type, contents) in objects {
            let version = next.objects.get(&id.to_string()).map_or(1, |o| o.version + 1);
            next.objects.insert(
                id.to_string(),
                StoredObject { object_type, version, contents: base64::engine::general_purpose::STANDARD.encode(contents) },
            );
        }
        let package = next.package.clone();
        for (i, (module, name, contents)) in events.into_iter().enumerate() {
            next.events.push(StoredEvent {
                checkpoint: next.checkpoint,
                tx_digest: digest.clone(),
                event_index: i as u32,
                sender: sender.to_string(),
                module: module.to_string(),
                event_type: format!("{package}::{name}"),
                contents: base64::engine::general_purpose::STANDARD.encode(contents),
            });
        }
        self.persist(&next)?;
        *st = next;
        Ok(digest)
    }

    fn persist(&self, st: &State) -> Result<(), LedgerError> {
        let io = |source| LedgerError::Io { path: self.path.display().to_string(), source };
        // A per-process temporary name: a `daas dev` command and the server may both write.
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(st).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        *self.stamp.lock() = file_stamp(&self.path);
        Ok(())
    }

    /// Re-reads the file if another process changed it since.
    fn refresh(&self) {
        let now = file_stamp(&self.path);
        if now.is_none() || *self.stamp.lock() == now {
            return;
        }
        match std::fs::read(&self.path).map(|b| serde_json::from_slice::<State>(&b)) {
            Ok(Ok(st)) => {
                *self.state.lock() = st;
                *self.stamp.lock() = now;
            }
            // Mid-rename or damaged: keep serving what was read last.
            _ => tracing_warn(&self.path),
        }
    }

    /// Serves the ledger's `sui.rpc.v2` subset on `listener` until `shutdown` resolves.
    pub fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static)> {
        let addr = listener.local_addr()?;
        let svc = LedgerServiceServer::new(Service { ledger: self.clone() });
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        Ok((addr, tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(incoming, shutdown)))
    }
}

fn package_of(st: &State) -> Address {
    st.package.parse().unwrap_or(Address::ZERO)
}

fn read_stake(st: &State, id: &Address) -> Result<StakeRecord, LedgerError> {
    let obj = st.objects.get(&id.to_string()).ok_or_else(|| LedgerError::NoSuchStake(id.to_string()))?;
    base64::engine::general_purpose::STANDARD
        .decode(&obj.contents)
        .ok()
        .and_then(|b| StakeRecord::from_bcs(&b).ok())
        .ok_or_else(|| LedgerError::NoSuchStake(id.to_string()))
}

/// The ListEvents cursor: the position just after an event, as 8 big-endian bytes.
fn cursor_bytes(position: usize) -> prost::bytes::Bytes {
    prost::bytes::Bytes::copy_from_slice(&(position as u64).to_be_bytes())
}

fn parse_cursor(c: &[u8]) -> Result<usize, tonic::Status> {
    let b: [u8; 8] = c.try_into().map_err(|_| tonic::Status::invalid_argument("options.after is not a cursor this ledger issued"))?;
    usize::try_from(u64::from_be_bytes(b)).map_err(|_| tonic::Status::invalid_argument("cursor out of range"))
}

/// Whether `ty` matches an EventTypeFilter of the forms `address`, `address::module`,
/// `address::module::Name` (addresses compare by value).
fn type_matches(filter: &str, ty: &str) -> bool {
    let (Some((fa, frest)), Some((ta, trest))) = (filter.split_once("::").or(Some((filter, ""))), ty.split_once("::")) else {
        return false;
    };
    let (Ok(fa), Ok(ta)) = (fa.parse::<Address>(), ta.parse::<Address>()) else {
        return false;
    };
    fa == ta && (frest.is_empty() || trest == frest || trest.starts_with(&format!("{frest}::")) || trest.starts_with(&format!("{frest}<")))
}

/// The events a ListEvents filter selects; only the event-type and sender predicates are
/// served (a full node serves more); others are refused, not ignored.
fn filter_matches(filter: Option<&EventFilter>, e: &StoredEvent) -> Result<bool, tonic::Status> {
    let Some(filter) = filter else { return Ok(true) };
    if filter.terms.is_empty() {
        return Err(tonic::Status::invalid_argument("a filter must have at least one term"));
    }
    for term in &filter.terms {
        let mut all = true;
        for lit in &term.literals {
            let hit = match &lit.predicate {
                Some(event_literal::Predicate::EventType(t)) => type_matches(t.event_type.as_deref().unwrap_or(""), &e.event_type),
                Some(event_literal::Predicate::Sender(s)) => {
                    s.address.as_deref().and_then(|a| a.parse::<Address>().ok()).is_some_and(|a| a.to_string() == e.sender)
                }
                _ => return Err(tonic::Status::unimplemented("the development ledger filters events by type and sender only")),
            };
            all &= hit != lit.negated;
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn tracing_warn(path: &Path) {
    tracing::warn!(path = %path.display(), "the development ledger file could not be re-read; serving the last state read");
}

type EventStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ListEventsResponse, tonic::Status>> + Send + 'static>>;

struct Service {
    ledger: DevLedger,
}

#[tonic::async_trait]
impl LedgerService for Service {
    async fn get_service_info(
        &self,
        _request: tonic::Request<GetServiceInfoRequest>,
    ) -> Result<tonic::Response<GetServiceInfoResponse>, tonic::Status> {
        self.ledger.refresh();
        let st = self.ledger.state.lock();
        let mut r = GetServiceInfoResponse::default();
        r.chain_id = Some(st.chain_id.clone());
        r.chain = Some("development-ledger".into());
        r.epoch = Some(0);
        r.checkpoint_height = Some(st.checkpoint);
        r.lowest_available_checkpoint = Some(0);
        r.server = Some(format!("daas development ledger {}", env!("CARGO_PKG_VERSION")));
        Ok(tonic::Response::new(r))
    }

    async fn get_object(&self, request: tonic::Request<GetObjectRequest>) -> Result<tonic::Response<GetObjectResponse>, tonic::Status> {
        let req = request.into_inner();
        let id: Address = req
            .object_id
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|_| tonic::Status::invalid_argument(format!("invalid object_id {:?}", req.object_id.unwrap_or_default())))?;
        self.ledger.refresh();
        let st = self.ledger.state.lock();
        let o = st.objects.get(&id.to_string()).ok_or_else(|| tonic::Status::not_found(format!("object {id} not found")))?;
        let contents =
            base64::engine::general_purpose::STANDARD.decode(&o.contents).map_err(|_| tonic::Status::internal("damaged object"))?;
        let mut obj = Object::default();
        obj.object_id = Some(id.to_string());
        obj.version = Some(o.version);
        obj.object_type = Some(o.object_type.clone());
        let mut bcs = Bcs::default();
        bcs.name = Some(o.object_type.clone());
        bcs.value = Some(contents.into());
        obj.contents = Some(bcs);
        Ok(tonic::Response::new(GetObjectResponse::new(obj)))
    }

    async fn list_events(&self, request: tonic::Request<ListEventsRequest>) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let req = request.into_inner();
        let options = req.options.unwrap_or_default();
        if options.before.is_some() || options.ordering.is_some_and(|o| o != sui_rpc::proto::sui::rpc::v2::Ordering::Ascending as i32) {
            return Err(tonic::Status::unimplemented("the development ledger reads events in ascending order only"));
        }
        let limit = options.limit.unwrap_or(50).clamp(1, MAX_EVENT_PAGE) as usize;
        let start = match options.after.as_deref() {
            Some(c) => parse_cursor(c)?,
            None => 0,
        };
        self.ledger.refresh();
        let st = self.ledger.state.lock();
        if start > st.events.len() {
            return Err(tonic::Status::invalid_argument("options.after lies beyond the ledger's tip"));
        }
        let (first, end) = (req.start_checkpoint.unwrap_or(0), req.end_checkpoint.unwrap_or(u64::MAX));
        let watermark = |position: usize, checkpoint: Option<u64>| {
            let mut w = Watermark::default();
            w.cursor = Some(cursor_bytes(position));
            w.checkpoint = checkpoint;
            w
        };
        let mut frames = Vec::new();
        let mut position = start;
        let mut reason = QueryEndReason::LedgerTip;
        while position < st.events.len() {
            let e = &st.events[position];
            if e.checkpoint >= end {
                reason = QueryEndReason::CheckpointBound;
                break;
            }
            position += 1;
            if e.checkpoint < first || !filter_matches(req.filter.as_ref(), e)? {
                continue;
            }
            let contents =
                base64::engine::general_purpose::STANDARD.decode(&e.contents).map_err(|_| tonic::Status::internal("damaged event"))?;
            let mut ev = Event::default();
            ev.package_id = Some(st.package.clone());
            ev.module = Some(e.module.clone());
            ev.sender = Some(e.sender.clone());
            ev.event_type = Some(e.event_type.clone());
            let mut bcs = Bcs::default();
            bcs.name = Some(e.event_type.clone());
            bcs.value = Some(contents.into());
            ev.contents = Some(bcs);
            ev.checkpoint = Some(e.checkpoint);
            ev.transaction_digest = Some(e.tx_digest.clone());
            ev.transaction_index = Some(0);
            ev.event_index = Some(e.event_index);
            let mut frame = ListEventsResponse::default();
            frame.event = Some(ev);
            frame.watermark = Some(watermark(position, None));
            frames.push(frame);
            if frames.len() == limit {
                reason = QueryEndReason::ItemLimit;
                break;
            }
        }
        let mut q = QueryEnd::default();
        q.reason = Some(reason as i32);
        let covered = st.events[..position].last().map(|e| e.checkpoint).or(Some(st.checkpoint));
        match frames.last_mut() {
            Some(last) if reason == QueryEndReason::ItemLimit => last.end = Some(q),
            _ => {
                let mut frame = ListEventsResponse::default();
                frame.watermark =
                    Some(watermark(position, if reason == QueryEndReason::LedgerTip { Some(st.checkpoint) } else { covered }));
                frame.end = Some(q);
                frames.push(frame);
            }
        }
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(frames.into_iter().map(Ok).collect::<Vec<_>>()))))
    }
}
