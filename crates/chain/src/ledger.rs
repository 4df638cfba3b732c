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
use sui_rpc::proto::sui::rpc::v2::{Bcs, GetObjectRequest, GetObjectResponse, GetServiceInfoRequest, GetServiceInfoResponse, Object};
use sui_sdk_types::Address;

use crate::stake::{StakeRecord, StakeStatus, stake_record_type};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("development ledger file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("development ledger file {path} is damaged: {why}")]
    Damaged { path: String, why: String },
    #[error("no stake record {0} on the development ledger")]
    NoSuchStake(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredObject {
    object_type: String,
    version: u64,
    /// Base64 of the BCS contents.
    contents: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    chain_id: String,
    package: String,
    checkpoint: u64,
    objects: BTreeMap<String, StoredObject>,
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

    /// Records a new active stake of `amount` by `staker` for `node_id`; returns it.
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
        let mut st = self.state.lock();
        let ty = stake_record_type(&st.package.parse().unwrap_or(Address::ZERO));
        self.write_object(&mut st, &rec.id, &ty, rec.to_bcs())?;
        Ok(rec)
    }

    /// The stake record `id`.
    pub fn stake_record(&self, id: &Address) -> Result<StakeRecord, LedgerError> {
        self.refresh();
        let st = self.state.lock();
        let obj = st.objects.get(&id.to_string()).ok_or_else(|| LedgerError::NoSuchStake(id.to_string()))?;
        base64::engine::general_purpose::STANDARD
            .decode(&obj.contents)
            .ok()
            .and_then(|b| StakeRecord::from_bcs(&b).ok())
            .ok_or_else(|| LedgerError::NoSuchStake(id.to_string()))
    }

    /// Changes a stake's status (an unstake request or a slash); returns the new record.
    pub fn set_status(&self, id: &Address, status: StakeStatus) -> Result<StakeRecord, LedgerError> {
        let mut st = self.state.lock();
        let obj = st.objects.get(&id.to_string()).ok_or_else(|| LedgerError::NoSuchStake(id.to_string()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&obj.contents)
            .map_err(|e| LedgerError::Damaged { path: self.path.display().to_string(), why: e.to_string() })?;
        let mut rec = StakeRecord::from_bcs(&bytes).map_err(|_| LedgerError::NoSuchStake(id.to_string()))?;
        rec.status = status;
        let ty = obj.object_type.clone();
        self.write_object(&mut st, id, &ty, rec.to_bcs())?;
        Ok(rec)
    }

    /// Stores any object (tests use it for objects of other types).
    pub fn put_object(&self, id: &Address, object_type: &str, contents: Vec<u8>) -> Result<(), LedgerError> {
        let mut st = self.state.lock();
        self.write_object(&mut st, id, object_type, contents)
    }

    fn write_object(&self, st: &mut State, id: &Address, object_type: &str, contents: Vec<u8>) -> Result<(), LedgerError> {
        let version = st.objects.get(&id.to_string()).map_or(1, |o| o.version + 1);
        let mut next = st.clone();
        next.checkpoint += 1;
        next.objects.insert(
            id.to_string(),
            StoredObject {
                object_type: object_type.to_string(),
                version,
                contents: base64::engine::general_purpose::STANDARD.encode(contents),
            },
        );
        // On disk first, then in memory: a failed write changes nothing.
        self.persist(&next)?;
        *st = next;
        Ok(())
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

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn tracing_warn(path: &Path) {
    tracing::warn!(path = %path.display(), "the development ledger file could not be re-read; serving the last state read");
}

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
}
