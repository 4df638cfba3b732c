//! The embedded store: an MVCC engine with etcd semantics on redb, values sealed.
//!
//! Reads run on the caller's thread against the committed revision. Writes go to one writer
//! thread that gathers every request waiting at that moment into one redb transaction and one
//! fsync (group commit), then acknowledges them all, publishes the new revision and hands the
//! events to watchers. Leases expire on the same thread. Start with [`Store::open`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase as _, ReadableTable, Value as _};
use tokio::sync::{broadcast, oneshot};

use crate::disk::{self, DEKS, LEASES, META, REVS};
use crate::error::{Result, StoreError};
use crate::index::{Entry, Index, Live, Rev};
use crate::seal::{self, KeyProvider, Sealer};
use crate::types::*;
use crate::wal::{self, Log, Logged, TableId, Wal};

/// The largest lease TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How the store is set up. Built by the binary from flags, files and environment.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory holding `data.redb`.
    pub data_dir: PathBuf,
    /// Largest value (and, at the face, request) accepted; etcd's default is 1.5 MiB.
    pub max_request_bytes: usize,
    /// Most operations in one branch of a txn; etcd's default is 128.
    pub max_txn_ops: usize,
    /// Seal values (always, except the danger-named benchmark mode).
    pub sealing: bool,
    /// Rotate the active data key after this many values sealed under it.
    pub rotate_after_writes: u64,
    /// Most write requests folded into one commit.
    pub max_batch: usize,
    /// Shortest lease TTL granted, in seconds; shorter requests are raised to it.
    pub min_lease_ttl: i64,
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
    /// Size of a write-ahead log segment; a checkpoint follows each filled one.
    pub wal_segment_bytes: u64,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            max_request_bytes: 3 * 1024 * 1024 / 2,
            max_txn_ops: 128,
            sealing: true,
            rotate_after_writes: seal::DEFAULT_ROTATE_AFTER,
            max_batch: 2048,
            min_lease_ttl: 2,
            cache_bytes: 256 * 1024 * 1024,
            wal_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Wall-clock time in Unix milliseconds; lease deadlines are stored in it so that expiry
/// survives a restart. Tests substitute a manual clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Milliseconds on the monotonic clock (since this process first asked): a wall-clock step
    /// (NTP, an operator) must not expire every lease at once.
    fn now_ms(&self) -> i64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        i64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct LeaseState {
    ttl: i64,
    expiry_ms: i64,
    keys: BTreeSet<Bytes>,
}

/// Events of one commit, in revision order.
#[derive(Debug)]
pub(crate) struct Batch {
    pub last_rev: Revision,
    pub events: Vec<Event>,
}

pub(crate) struct Shared {
    db: Database,
    path: PathBuf,
    index: RwLock<Index>,
    committed: AtomicI64,
    compacted: AtomicI64,
    sealer: Sealer,
    provider: RwLock<Arc<dyn KeyProvider>>,
    leases: Mutex<HashMap<i64, LeaseState>>,
    pub(crate) events: broadcast::Sender<Arc<Batch>>,
    failed: AtomicBool,
    live_bytes: AtomicI64,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    cluster_id: u64,
    member_id: u64,
}

enum WriteOp {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(Revision),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke(i64),
    LeaseKeepAlive(i64),
    RotateDek,
    Reseal(Vec<Rev>),
    Rewrap(Arc<dyn KeyProvider>),
}

enum WriteOut {
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Revision(Revision),
    Lease(LeaseGrant),
    Ttl(i64),
    Count(u64),
}

struct WriteReq {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOut>>,
}

/// Sends `op` to the writer and unwraps the answer of the expected kind.
macro_rules! write_as {
    ($store:ident, $op:expr, $kind:ident) => {
        match $store.write($op).await? {
            WriteOut::$kind(out) => Ok(out),
            _ => Err(StoreError::Storage("the writer answered with the wrong kind of result".into())),
        }
    };
}

/// A handle to an open store. Cheap to clone; the store closes when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    tx: mpsc::Sender<WriteReq>,
    _writer: Arc<WriterGuard>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

/// Joins the writer thread when the last handle goes, so the data file is closed on return.
struct WriterGuard {
    stop: mpsc::Sender<WriteReq>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Replace our sender with a dead one so the channel closes once every Store is gone.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.stop, dead));
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn meta_u64(t: &impl ReadableTable<&'static str, &'static [u8]>, k: &str) -> Result<Option<u64>> {
    Ok(t.get(k)?.map(|v| {
        let b = v.value();
        let mut a = [0u8; 8];
        let n = b.len().min(8);
        a[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(a)
    }))
}

fn random_u64() -> u64 {
    rand::random::<u64>() | 1
}

impl Store {
    /// Opens (or creates) the store in `config.data_dir`, unwrapping its data keys through
    /// `provider`. Fails if the key provider cannot unwrap them or if the file's sealing mode
    /// differs from the configuration.
    pub fn open(config: StoreConfig, provider: Arc<dyn KeyProvider>) -> Result<Store> {
        Self::open_with_clock(config, provider, Arc::new(SystemClock))
    }

    /// [`Store::open`] with an explicit clock (tests).
    pub fn open_with_clock(config: StoreConfig, provider: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Result<Store> {
        // Owner-only: values are sealed, but key names and metadata are stored in the clear.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(&config.data_dir)?;
        if let Ok(meta) = std::fs::metadata(&config.data_dir)
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
        {
            tracing::warn!(dir = %config.data_dir.display(), "the data directory is accessible to other users; key names in it are not encrypted (chmod 700)");
        }
        let path = config.data_dir.join("data.redb");
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|e| StoreError::Storage(format!("opening {}: {e}", path.display())))?;
        let sealer = Sealer::new(config.sealing, config.rotate_after_writes.max(1));

        // Changes acknowledged after the last checkpoint live only in the write-ahead log:
        // apply them before anything else reads the tables (data keys included).
        let wal_dir = config.data_dir.join("wal");
        if wal_dir.is_dir() {
            let wtx = db.begin_write()?;
            let frames = {
                let mut revs = wtx.open_table(REVS)?;
                let mut leases = wtx.open_table(LEASES)?;
                let mut deks = wtx.open_table(DEKS)?;
                let mut meta = wtx.open_table(META)?;
                wal::replay(&wal_dir, |payload| {
                    for c in wal::changes(payload)? {
                        let key_ok = match c.table {
                            TableId::Revs => c.key.len() == 12,
                            TableId::Leases => c.key.len() == 8,
                            TableId::Deks => c.key.len() == 4,
                            TableId::Meta => std::str::from_utf8(c.key).is_ok(),
                        };
                        if !key_ok {
                            return Err(StoreError::Storage("a write-ahead log frame holds a malformed key".into()));
                        }
                        match (c.table, c.delete) {
                            (TableId::Revs, false) => drop(revs.insert(<(u64, u32)>::from_bytes(c.key), c.value)?),
                            (TableId::Revs, true) => drop(revs.remove(<(u64, u32)>::from_bytes(c.key))?),
                            (TableId::Leases, false) => drop(leases.insert(i64::from_bytes(c.key), c.value)?),
                            (TableId::Leases, true) => drop(leases.remove(i64::from_bytes(c.key))?),
                            (TableId::Deks, false) => drop(deks.insert(u32::from_bytes(c.key), c.value)?),
                            (TableId::Deks, true) => drop(deks.remove(u32::from_bytes(c.key))?),
                            (TableId::Meta, false) => drop(meta.insert(<&str>::from_bytes(c.key), c.value)?),
                            (TableId::Meta, true) => drop(meta.remove(<&str>::from_bytes(c.key))?),
                        }
                    }
                    Ok(())
                })?
            };
            wtx.commit()?;
            if frames > 0 {
                tracing::info!(frames, "replayed the write-ahead log");
            }
        }
        let wal = Wal::start(&wal_dir, config.wal_segment_bytes)?;

        // First open: write the store's identity. Later opens: check it.
        let wtx = db.begin_write()?;
        let (cluster_id, member_id, current, compacted);
        {
            let mut meta = wtx.open_table(META)?;
            let mut deks = wtx.open_table(DEKS)?;
            wtx.open_table(REVS)?;
            wtx.open_table(LEASES)?;
            match meta_u64(&meta, disk::META_FORMAT)? {
                None => {
                    meta.insert(disk::META_FORMAT, &disk::FORMAT_VERSION.to_be_bytes()[..])?;
                    meta.insert(disk::META_CLUSTER_ID, &random_u64().to_be_bytes()[..])?;
                    meta.insert(disk::META_MEMBER_ID, &random_u64().to_be_bytes()[..])?;
                    meta.insert(disk::META_SEALED, &u64::from(config.sealing).to_be_bytes()[..])?;
                    // etcd starts a fresh store at revision 1; the first write gets revision 2.
                    meta.insert(disk::META_CURRENT, &1u64.to_be_bytes()[..])?;
                    meta.insert(disk::META_COMPACTED, &0u64.to_be_bytes()[..])?;
                    if config.sealing {
                        let key = seal::random_key()?;
                        let wrapped = provider.wrap(&key, &seal::dek_context(1))?;
                        deks.insert(1, disk::encode_dek(0, clock.now_ms(), &wrapped).as_slice())?;
                        meta.insert(disk::META_ACTIVE_DEK, &1u64.to_be_bytes()[..])?;
                    }
                    tracing::info!(path = %path.display(), sealed = config.sealing, "created a new store");
                }
                Some(v) if v != disk::FORMAT_VERSION => {
                    return Err(StoreError::Storage(format!(
                        "{} has format {v}; this build reads format {}",
                        path.display(),
                        disk::FORMAT_VERSION
                    )));
                }
                Some(_) => {
                    let sealed = meta_u64(&meta, disk::META_SEALED)?.unwrap_or(1) == 1;
                    if sealed != config.sealing {
                        return Err(StoreError::Sealing(format!(
                            "{} was created {} and cannot be opened {}",
                            path.display(),
                            if sealed { "sealed" } else { "unsealed" },
                            if config.sealing { "sealed" } else { "unsealed" }
                        )));
                    }
                }
            }
            cluster_id = meta_u64(&meta, disk::META_CLUSTER_ID)?.unwrap_or(1);
            member_id = meta_u64(&meta, disk::META_MEMBER_ID)?.unwrap_or(1);
            current = meta_u64(&meta, disk::META_CURRENT)?.unwrap_or(0) as i64;
            compacted = meta_u64(&meta, disk::META_COMPACTED)?.unwrap_or(0) as i64;
            if config.sealing {
                for item in deks.iter()? {
                    let (id, v) = item?;
                    let id = id.value();
                    let (writes, _, wrapped) =
                        disk::decode_dek(v.value()).ok_or_else(|| StoreError::Sealing(format!("data key {id} is damaged")))?;
                    let key = provider.unwrap(wrapped, &seal::dek_context(id))?;
                    sealer.install(id, &key, writes)?;
                }
                let active = meta_u64(&meta, disk::META_ACTIVE_DEK)?.unwrap_or(1) as u32;
                sealer.activate(active);
                // The active key's counter is persisted every `persist_every` values, so after a
                // crash it may be behind by that much plus one batch: count those as used.
                let every = persist_every(&config);
                if every > 1 {
                    sealer.add_writes(active, every + (config.max_batch * config.max_txn_ops) as u64);
                }
            }
        }
        wtx.commit()?;

        // Rebuild the index and lease table from the file.
        let mut index = Index::new();
        let mut live_bytes = 0i64;
        let mut newest = 0;
        let mut leases = HashMap::new();
        {
            let rtx = db.begin_read()?;
            let revs = rtx.open_table(REVS)?;
            if let Some((k, _)) = revs.last()? {
                newest = k.value().0 as i64;
            }
            for item in revs.iter()? {
                let (k, v) = item?;
                let (main, sub) = k.value();
                let raw = v.value();
                live_bytes += raw.len() as i64;
                let rec = disk::decode(raw).map_err(|e| StoreError::Integrity {
                    key: String::new(),
                    revision: main as i64,
                    detail: format!("record ({main}, {sub}): {e}"),
                })?;
                let rev = Rev { main: main as i64, sub };
                index.push(Bytes::copy_from_slice(rec.key), rec.entry(rev));
            }
            let lt = rtx.open_table(LEASES)?;
            for item in lt.iter()? {
                let (id, v) = item?;
                // As etcd does when a member takes over, every lease starts a full TTL again: a
                // restart is no reason for all leases to lapse at once. Leases still expire if
                // nobody keeps them alive.
                if let Some((ttl, _)) = disk::decode_lease(v.value()) {
                    let expiry_ms = clock.now_ms().saturating_add(ttl.saturating_mul(1000));
                    leases.insert(id.value(), LeaseState { ttl, expiry_ms, keys: BTreeSet::new() });
                }
            }
        }
        let all = KeySpan::Range { start: Bytes::new(), end: None };
        index.visit(&all, i64::MAX, |k, live| {
            if live.lease != 0
                && let Some(l) = leases.get_mut(&live.lease)
            {
                l.keys.insert(k.clone());
            }
            true
        });
        let current = current.max(newest);
        tracing::info!(revision = current, compact_revision = compacted, keys = index.len(), leases = leases.len(), "store opened");

        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            db,
            path,
            index: RwLock::new(index),
            committed: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            sealer,
            provider: RwLock::new(provider),
            leases: Mutex::new(leases),
            events,
            failed: AtomicBool::new(false),
            live_bytes: AtomicI64::new(live_bytes),
            clock,
            config,
            cluster_id,
            member_id,
        });
        let (tx, rx) = mpsc::channel();
        let persisted_writes = shared.sealer.active_writes();
        let w = Writer {
            shared: shared.clone(),
            rx,
            runtime: tokio::runtime::Handle::try_current().ok(),
            persisted_writes: persisted_writes.into(),
            wal: Some(wal).into(),
            last_expiry_check: std::time::Instant::now().into(),
        };
        let thread = std::thread::Builder::new().name("daas-store-writer".into()).spawn(move || w.run())?;
        let guard = Arc::new(WriterGuard { stop: tx.clone(), thread: Mutex::new(Some(thread)) });
        Ok(Store { shared, tx, _writer: guard })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOut> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(StoreError::Storage("an earlier commit failed; the store refuses writes until restarted".into()));
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(WriteReq { op, reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The revision of the newest committed write.
    pub fn current_revision(&self) -> Revision {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// The revision up to which history has been compacted.
    pub fn compact_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    // ---- reads -------------------------------------------------------------------------

    /// Serves a range read at the committed (or a named historical) revision.
    pub fn range_now(&self, req: &RangeRequest) -> Result<RangeResponse> {
        retry_current(req.revision, || self.range_once(req))
    }

    fn range_once(&self, req: &RangeRequest) -> Result<RangeResponse> {
        check_key(req.span.start(), &req.span)?;
        let current = self.current_revision();
        let at = self.resolve(req.revision, current)?;
        // Select under the index lock; read and open values after releasing it, so a long range
        // does not hold up the writer. A record compacted away meanwhile reads as Compacted.
        let selection = select_range(&self.shared.index.read(), req, at);
        // The index may have been compacted past `at` while we chose it: then the selection can
        // miss keys. The compaction point is published before any pruning, so this catches it.
        self.check_not_compacted(at)?;
        let rtx = self.shared.db.begin_read()?;
        let table = rtx.open_table(REVS)?;
        let mut fetch = |key: &Bytes, rev: Rev| self.shared.fetch_value(&table, key, rev, at);
        let mut resp = finish_range(selection, req, &mut fetch)?;
        resp.revision = current;
        Ok(resp)
    }

    fn resolve(&self, requested: Revision, current: Revision) -> Result<Revision> {
        if requested <= 0 {
            return Ok(current);
        }
        if requested > current {
            return Err(StoreError::FutureRevision);
        }
        let compacted = self.compact_revision();
        if requested < compacted {
            return Err(StoreError::Compacted { compact_revision: compacted });
        }
        Ok(requested)
    }

    /// Remaining and granted TTL of a lease, and optionally its keys.
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> LeaseTimeToLive {
        let leases = self.shared.leases.lock();
        match leases.get(&id) {
            None => LeaseTimeToLive { id, ttl: -1, granted_ttl: 0, keys: vec![] },
            Some(l) => {
                let remaining = (l.expiry_ms - self.shared.clock.now_ms()).max(0) / 1000;
                LeaseTimeToLive {
                    id,
                    ttl: remaining,
                    granted_ttl: l.ttl,
                    keys: if keys { l.keys.iter().cloned().collect() } else { vec![] },
                }
            }
        }
    }

    /// Every lease currently granted.
    pub fn lease_list(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.shared.leases.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Store facts for status endpoints.
    pub fn status(&self) -> StoreStatus {
        let db_size = std::fs::metadata(&self.shared.path).map_or(0, |m| m.len() as i64);
        StoreStatus {
            revision: self.current_revision(),
            compact_revision: self.compact_revision(),
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            db_size,
            db_size_in_use: self.shared.live_bytes.load(Ordering::Relaxed).min(db_size),
            sealed: self.shared.sealer.is_enabled(),
            key_provider: self.shared.provider.read().name(),
            active_dek: self.shared.sealer.active_id(),
        }
    }

    /// Hashes every retained version at or below `revision` (0 = current): the plaintext of
    /// keys, values and metadata, so two stores with the same history hash alike.
    pub fn hash_kv(&self, revision: Revision) -> Result<HashKv> {
        let current = self.current_revision();
        let at = self.resolve(revision, current)?;
        let rtx = self.shared.db.begin_read()?;
        let table = rtx.open_table(REVS)?;
        let mut h = crc32fast::Hasher::new();
        for item in table.range((0u64, 0u32)..=(at as u64, u32::MAX))? {
            let (k, v) = item?;
            let (main, sub) = k.value();
            let raw = v.value();
            let rev = Rev { main: main as i64, sub };
            let rec = disk::decode(raw).map_err(|e| integrity(b"", rev, e))?;
            h.update(&main.to_be_bytes());
            h.update(&sub.to_be_bytes());
            h.update(disk::header_and_key(&rec, raw));
            let plain = self.shared.open_record(&rec, raw, rev)?;
            h.update(&plain);
        }
        Ok(HashKv { hash: h.finalize(), compact_revision: self.compact_revision(), hash_revision: at })
    }

    /// Watches `req.span`; see [`crate::watch::Watcher`].
    pub fn watch_now(&self, req: WatchRequest) -> Result<crate::watch::Watcher> {
        crate::watch::Watcher::new(self.clone(), req)
    }

    // ---- writes ------------------------------------------------------------------------

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        self.check_put(&req)?;
        write_as!(self, WriteOp::Put(req), Put)
    }

    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        check_key(req.span.start(), &req.span)?;
        write_as!(self, WriteOp::Delete(req), Delete)
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.check_txn(&req)?;
        if req.is_read_only() {
            return self.read_txn(&req);
        }
        write_as!(self, WriteOp::Txn(req), Txn)
    }

    /// Removes history below `revision`. Returns the store revision.
    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        write_as!(self, WriteOp::Compact(revision), Revision)
    }

    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrant> {
        if ttl > MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        write_as!(self, WriteOp::LeaseGrant { id, ttl }, Lease)
    }

    /// Revokes a lease, deleting its keys. Returns the store revision.
    pub async fn lease_revoke(&self, id: i64) -> Result<Revision> {
        write_as!(self, WriteOp::LeaseRevoke(id), Revision)
    }

    /// Renews a lease; returns its TTL.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        write_as!(self, WriteOp::LeaseKeepAlive(id), Ttl)
    }

    /// Starts a new data key for new writes; old values stay readable. Returns its id.
    pub async fn rotate_dek(&self) -> Result<u32> {
        write_as!(self, WriteOp::RotateDek, Count).map(|id| id as u32)
    }

    /// Re-seals every retained value under the active data key, then forgets data keys nothing
    /// uses any more. Returns how many values were re-sealed.
    pub async fn reencrypt(&self) -> Result<u64> {
        let active = self.shared.sealer.active_id();
        let mut total = 0;
        let mut from = (0u64, 0u32);
        loop {
            let mut chunk = Vec::new();
            {
                let rtx = self.shared.db.begin_read()?;
                let table = rtx.open_table(REVS)?;
                for item in table.range(from..)? {
                    let (k, v) = item?;
                    let (main, sub) = k.value();
                    from = (main, sub.saturating_add(1));
                    let raw = v.value();
                    let rec = disk::decode(raw).map_err(|e| integrity(b"", Rev { main: main as i64, sub }, e))?;
                    if Sealer::dek_of(rec.sealed).is_some_and(|d| d != active) {
                        chunk.push(Rev { main: main as i64, sub });
                    }
                    if chunk.len() >= 512 {
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                break;
            }
            if let WriteOut::Count(n) = self.write(WriteOp::Reseal(chunk)).await? {
                total += n;
            }
        }
        // An empty reseal drops data keys no record names.
        self.write(WriteOp::Reseal(Vec::new())).await?;
        Ok(total)
    }

    /// Wraps every data key under `provider` instead of the current one. After this returns,
    /// the store must be reopened with `provider`.
    pub async fn rewrap(&self, provider: Arc<dyn KeyProvider>) -> Result<u64> {
        write_as!(self, WriteOp::Rewrap(provider), Count)
    }

    fn check_put(&self, req: &PutRequest) -> Result<()> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if req.key.len() + req.value.len() > self.shared.config.max_request_bytes {
            return Err(StoreError::RequestTooLarge);
        }
        if req.ignore_value && !req.value.is_empty() {
            return Err(StoreError::ValueProvided);
        }
        if req.ignore_lease && req.lease != 0 {
            return Err(StoreError::LeaseProvided);
        }
        Ok(())
    }

    fn check_txn(&self, req: &TxnRequest) -> Result<()> {
        let max = self.shared.config.max_txn_ops;
        if req.compare.len() > max || req.success.len() > max || req.failure.len() > max {
            return Err(StoreError::TooManyOps);
        }
        for c in &req.compare {
            if c.span.start().is_empty() && matches!(c.span, KeySpan::Single(_)) {
                return Err(StoreError::EmptyKey);
            }
        }
        for op in req.success.iter().chain(&req.failure) {
            match op {
                RequestOp::Range(r) => check_key(r.span.start(), &r.span)?,
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(d) => check_key(d.span.start(), &d.span)?,
                RequestOp::Txn(t) => self.check_txn(t)?,
            }
        }
        branch_writes(&req.success)?;
        branch_writes(&req.failure)?;
        Ok(())
    }

    fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        retry_current(0, || self.read_txn_once(req))
    }

    fn read_txn_once(&self, req: &TxnRequest) -> Result<TxnResponse> {
        let current = self.current_revision();
        let index = self.shared.index.read();
        let rtx = self.shared.db.begin_read()?;
        let table = rtx.open_table(REVS)?;
        let mut fetch = |key: &Bytes, rev: Rev| self.shared.fetch_value(&table, key, rev, current);
        let path = txn_path(&index, req, current, &mut fetch)?;
        let mut resp = read_txn_ops(self, &index, req, &path, current, &mut fetch)?;
        drop(index);
        self.check_not_compacted(current)?;
        resp.revision = current;
        Ok(resp)
    }

    /// Fails with Compacted when history at `at` has been (or is being) compacted away.
    fn check_not_compacted(&self, at: Revision) -> Result<()> {
        let compacted = self.compact_revision();
        if at < compacted {
            return Err(StoreError::Compacted { compact_revision: compacted });
        }
        Ok(())
    }

    /// The value of `key` as of the record at `rev`, read from disk (for watchers).
    pub(crate) fn value_at(&self, key: &Bytes, rev: Rev) -> Result<Bytes> {
        let rtx = self.shared.db.begin_read()?;
        let table = rtx.open_table(REVS)?;
        self.shared.fetch_value(&table, key, rev, rev.main)
    }

    /// The version of `key` live just before `rev` (for `prev_kv` in watch events).
    pub(crate) fn prev_of(&self, key: &Bytes, rev: Rev) -> Option<KeyValue> {
        let live = self.shared.index.read().get_before(key, rev)?;
        let value = self.value_at(key, live.rev).ok()?;
        Some(kv_of(key, live, value))
    }

    /// Decoded history records in `[from, to]` whose keys fall in `span`, for watch replay.
    /// Stops after about `max` events, at a revision boundary; returns the last revision read.
    pub(crate) fn history(&self, span: &KeySpan, from: Revision, to: Revision, max: usize) -> Result<(Vec<Event>, Revision)> {
        // Snapshot first, then the compaction point: a compaction visible in the snapshot has
        // already published its point (it does so before committing), so no record of
        // `[from, to]` can be missing without this check seeing it.
        let rtx = self.shared.db.begin_read()?;
        let table = rtx.open_table(REVS)?;
        let compacted = self.compact_revision();
        if from < compacted {
            return Err(StoreError::Compacted { compact_revision: compacted });
        }
        let mut out = Vec::new();
        let mut last = from - 1;
        for item in table.range((from as u64, 0u32)..=(to as u64, u32::MAX))? {
            let (k, v) = item?;
            let (main, sub) = k.value();
            let main = main as i64;
            if main != last && out.len() >= max {
                break;
            }
            last = main;
            let raw = v.value();
            let rev = Rev { main, sub };
            let rec = disk::decode(raw).map_err(|e| integrity(b"", rev, e))?;
            if !span.contains(rec.key) {
                continue;
            }
            let key = Bytes::copy_from_slice(rec.key);
            if rec.tombstone {
                out.push(Event { kind: EventKind::Delete, kv: KeyValue { key, mod_revision: main, ..Default::default() }, prev_kv: None });
            } else {
                let value = Bytes::from(self.shared.open_record(&rec, raw, rev)?);
                let live = Live { rev, create: rec.create, version: rec.version, lease: rec.lease };
                out.push(Event { kind: EventKind::Put, kv: kv_of(&key, live, value), prev_kv: None });
            }
        }
        if out.len() < max {
            last = to;
        }
        Ok((out, last))
    }
}

/// A read at the current revision (`requested <= 0`) that meets a compaction committed after it
/// chose its revision is simply served again at the newer revision; only a read of a named past
/// revision may answer "compacted".
fn retry_current<T>(requested: Revision, mut read: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match read() {
            Err(StoreError::Compacted { .. }) if requested <= 0 && tries < 16 => tries += 1,
            r => return r,
        }
    }
}

fn check_key(key: &Bytes, span: &KeySpan) -> Result<()> {
    if key.is_empty() && matches!(span, KeySpan::Single(_)) {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

fn integrity(key: &[u8], rev: Rev, detail: impl Into<String>) -> StoreError {
    StoreError::Integrity { key: String::from_utf8_lossy(key).into_owned(), revision: rev.main, detail: detail.into() }
}

pub(crate) fn kv_of(key: &Bytes, live: Live, value: Bytes) -> KeyValue {
    KeyValue {
        key: key.clone(),
        create_revision: live.create,
        mod_revision: live.rev.main,
        version: live.version,
        value,
        lease: live.lease,
    }
}

impl Shared {
    fn open_record(&self, rec: &disk::Record<'_>, raw: &[u8], rev: Rev) -> Result<Vec<u8>> {
        let aad = disk::aad(rev, disk::header_and_key(rec, raw));
        self.sealer.open(&aad, rec.sealed).map_err(|e| integrity(rec.key, rev, e))
    }

    /// Reads and opens the value of the record at `rev`, checking it belongs to `key`.
    fn fetch_value(&self, table: &impl ReadableTable<(u64, u32), &'static [u8]>, key: &Bytes, rev: Rev, at: Revision) -> Result<Bytes> {
        let Some(guard) = table.get((rev.main as u64, rev.sub))? else {
            // Compaction removed it between the index lookup and this read.
            let compacted = self.compacted.load(Ordering::Acquire);
            return Err(if at < compacted {
                StoreError::Compacted { compact_revision: compacted }
            } else {
                integrity(key, rev, "record is missing from the data file")
            });
        };
        let raw = guard.value();
        let rec = disk::decode(raw).map_err(|e| integrity(key, rev, e))?;
        if rec.key != key.as_ref() {
            return Err(integrity(key, rev, "record holds another key"));
        }
        Ok(Bytes::from(self.open_record(&rec, raw, rev)?))
    }
}

/// What a range selected from the index, before any value is read.
struct Selection {
    hits: Vec<(Bytes, Live)>,
    count: i64,
    more: bool,
}

/// Reads a range: [`select_range`] under the index lock, then [`finish_range`] for the values.
fn read_range(
    index: &Index,
    req: &RangeRequest,
    at: Revision,
    fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>,
) -> Result<RangeResponse> {
    finish_range(select_range(index, req, at), req, fetch)
}

/// The span's keys live at `at`, filtered and (when sorted by key) limited as `req` asks.
/// Needs only the index, so the caller can release the index lock before reading values.
fn select_range(index: &Index, req: &RangeRequest, at: Revision) -> Selection {
    let filter = |l: &Live| {
        (req.min_mod_revision == 0 || l.rev.main >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || l.rev.main <= req.max_mod_revision)
            && (req.min_create_revision == 0 || l.create >= req.min_create_revision)
            && (req.max_create_revision == 0 || l.create <= req.max_create_revision)
    };
    let by_key = req.sort_target == SortTarget::Key;
    let limit = if req.limit > 0 { req.limit as usize } else { usize::MAX };
    let mut count = 0i64;
    let mut hits: Vec<(Bytes, Live)> = Vec::new();
    // As in etcd, `count` is every key live in the span; the revision filters and the limit
    // only decide which of them are returned. One hit past the limit tells whether there is
    // `more`, as etcd asks its index for limit+1.
    let keep = limit.saturating_add(1);
    let mut collect = |k: &Bytes, l: Live| {
        count += 1;
        // Sorting by anything but the key needs every hit; otherwise the limit cuts early.
        if !req.count_only && filter(&l) && (!by_key || hits.len() < keep) {
            hits.push((k.clone(), l));
        }
        true
    };
    if by_key && req.sort_order == SortOrder::Descend {
        index.visit_rev(&req.span, at, &mut collect);
    } else {
        index.visit(&req.span, at, &mut collect);
    }
    let more = hits.len() > limit;
    if by_key {
        hits.truncate(limit);
    }
    Selection { hits, count, more }
}

/// Reads the selected values through `fetch`, sorts by a non-key target, applies the limit.
fn finish_range(sel: Selection, req: &RangeRequest, fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>) -> Result<RangeResponse> {
    let Selection { hits, count, more } = sel;
    if req.count_only {
        return Ok(RangeResponse { revision: 0, kvs: vec![], more: false, count });
    }
    let limit = if req.limit > 0 { req.limit as usize } else { usize::MAX };
    let needs_value = !req.keys_only || req.sort_target == SortTarget::Value;
    let mut kvs = Vec::with_capacity(hits.len());
    for (k, l) in &hits {
        let value = if needs_value { fetch(k, l.rev)? } else { Bytes::new() };
        kvs.push(kv_of(k, *l, value));
    }
    if req.sort_target != SortTarget::Key {
        // A stable sort over key-ordered input: ties stay in key order, as in etcd. Order NONE
        // with a non-key target sorts ascending.
        let descend = req.sort_order == SortOrder::Descend;
        kvs.sort_by(|a, b| {
            let o = match req.sort_target {
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
                SortTarget::Key => a.key.cmp(&b.key),
            };
            if descend { o.reverse() } else { o }
        });
        kvs.truncate(limit);
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
    }
    Ok(RangeResponse { revision: 0, kvs, more, count })
}

/// Whether a compare holds for one key's state (`None` = the key does not exist).
fn compare_one(c: &Compare, live: Option<(Live, Option<Bytes>)>) -> bool {
    use std::cmp::Ordering as O;
    let ord = match (&c.target, &live) {
        // etcd: comparing the value of a missing key always fails.
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(v), Some((_, val))) => val.as_deref().unwrap_or_default().cmp(v.as_ref()),
        (CompareTarget::Version(v), l) => l.as_ref().map_or(0, |(l, _)| l.version).cmp(v),
        (CompareTarget::Create(v), l) => l.as_ref().map_or(0, |(l, _)| l.create).cmp(v),
        (CompareTarget::Mod(v), l) => l.as_ref().map_or(0, |(l, _)| l.rev.main).cmp(v),
        (CompareTarget::Lease(v), l) => l.as_ref().map_or(0, |(l, _)| l.lease).cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord == O::Equal,
        CompareResult::NotEqual => ord != O::Equal,
        CompareResult::Greater => ord == O::Greater,
        CompareResult::Less => ord == O::Less,
    }
}

fn eval_compare(index: &Index, c: &Compare, at: Revision, fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>) -> Result<bool> {
    let want_value = matches!(c.target, CompareTarget::Value(_));
    match &c.span {
        KeySpan::Single(k) => {
            let live = match index.get(k, at) {
                None => None,
                Some(l) => Some((l, if want_value { Some(fetch(k, l.rev)?) } else { None })),
            };
            Ok(compare_one(c, live))
        }
        span => {
            let mut hits = Vec::new();
            index.visit(span, at, |k, l| {
                hits.push((k.clone(), l));
                true
            });
            // As in etcd, an empty range compares like one absent key (a value compare fails).
            if hits.is_empty() {
                return Ok(compare_one(c, None));
            }
            for (k, l) in hits {
                let v = if want_value { Some(fetch(&k, l.rev)?) } else { None };
                if !compare_one(c, Some((l, v))) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// Which branch each (nested) txn takes, decided against the state before the txn runs, as
/// etcd does. Depth-first: this txn's choice, then its chosen branch's nested txns in order.
fn txn_path(index: &Index, req: &TxnRequest, at: Revision, fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>) -> Result<Vec<bool>> {
    let mut path = Vec::new();
    fn walk(
        index: &Index,
        req: &TxnRequest,
        at: Revision,
        fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>,
        path: &mut Vec<bool>,
    ) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !eval_compare(index, c, at, fetch)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let RequestOp::Txn(t) = op {
                walk(index, t, at, fetch, path)?;
            }
        }
        Ok(())
    }
    walk(index, req, at, fetch, &mut path)?;
    Ok(path)
}

fn read_txn_ops(
    store: &Store,
    index: &Index,
    req: &TxnRequest,
    path: &[bool],
    at: Revision,
    fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>,
) -> Result<TxnResponse> {
    let mut pos = 0;
    fn run(
        store: &Store,
        index: &Index,
        req: &TxnRequest,
        path: &[bool],
        pos: &mut usize,
        at: Revision,
        fetch: &mut dyn FnMut(&Bytes, Rev) -> Result<Bytes>,
    ) -> Result<TxnResponse> {
        let ok = path[*pos];
        *pos += 1;
        let mut responses = Vec::new();
        for op in if ok { &req.success } else { &req.failure } {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let rat = store.resolve(r.revision, at)?;
                    let mut resp = read_range(index, r, rat, fetch)?;
                    resp.revision = at;
                    ResponseOp::Range(resp)
                }
                RequestOp::Txn(t) => ResponseOp::Txn(run(store, index, t, path, pos, at, fetch)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    return Err(StoreError::Storage("write in a read-only txn".into()));
                }
            });
        }
        Ok(TxnResponse { revision: at, succeeded: ok, responses })
    }
    run(store, index, req, path, &mut pos, at, fetch)
}

/// Keys a branch puts and spans it deletes, rejecting a key put twice or put and deleted in
/// the same branch (etcd's "duplicate key given in txn request").
fn branch_writes(ops: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<KeySpan>)> {
    let mut puts = HashSet::new();
    let mut dels = Vec::new();
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                if !puts.insert(p.key.clone()) {
                    return Err(StoreError::DuplicateKey);
                }
            }
            RequestOp::DeleteRange(d) => dels.push(d.span.clone()),
            RequestOp::Txn(t) => {
                let (sp, sd) = branch_writes(&t.success)?;
                let (fp, fd) = branch_writes(&t.failure)?;
                for k in sp.union(&fp) {
                    if !puts.insert(k.clone()) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                dels.extend(sd);
                dels.extend(fd);
            }
            RequestOp::Range(_) => {}
        }
    }
    if puts.iter().any(|k| dels.iter().any(|d| d.contains(k))) {
        return Err(StoreError::DuplicateKey);
    }
    Ok((puts, dels))
}

// ---- the writer ------------------------------------------------------------------------

struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<WriteReq>,
    /// The runtime the store was opened in, if any: replies are handed to it in one task.
    runtime: Option<tokio::runtime::Handle>,
    /// Values sealed under the active DEK when its counter was last persisted.
    persisted_writes: std::cell::Cell<u64>,
    /// The write-ahead log; `None` once closed at shutdown.
    wal: std::cell::RefCell<Option<Wal>>,
    last_expiry_check: std::cell::Cell<std::time::Instant>,
}

/// How many values the active DEK seals between two writes of its counter.
fn persist_every(config: &StoreConfig) -> u64 {
    (config.rotate_after_writes / 16).clamp(1, 1 << 16)
}

/// Sends every reply of a batch. Inside a runtime this happens on one of its workers, so waking
/// the waiting tasks costs local queue pushes rather than a cross-thread wakeup each (measured:
/// the writer spent a tenth of its time in futex wakeups when it answered directly).
fn answer(runtime: Option<&tokio::runtime::Handle>, replies: Vec<(oneshot::Sender<Result<WriteOut>>, Result<WriteOut>)>) {
    let send_all = move || {
        for (reply, out) in replies {
            let _ = reply.send(out);
        }
    };
    match runtime {
        Some(h) => drop(h.spawn(async move { send_all() })),
        None => send_all(),
    }
}

/// State of the batch being built: the next revision and what to publish after the commit.
struct BatchCtx {
    next_main: Revision,
    touched: Vec<Bytes>,
    events: Vec<Event>,
    compact_to: Option<Revision>,
    live_delta: i64,
    dek_changed: bool,
    /// Lease attachments changed in this batch: (lease, key, attached?), for undoing a request.
    lease_undo: Vec<(i64, Bytes, bool)>,
}

/// Where a request started in the batch, so a request that fails midway can be undone.
struct Mark {
    events: usize,
    touched: usize,
    live_delta: i64,
    lease_undo: usize,
}

impl BatchCtx {
    fn mark(&self) -> Mark {
        Mark { events: self.events.len(), touched: self.touched.len(), live_delta: self.live_delta, lease_undo: self.lease_undo.len() }
    }
}

/// One write request's share of a revision: its main revision and the next sub revision.
struct RevSlot {
    main: Revision,
    sub: u32,
}

impl Writer {
    fn run(self) {
        loop {
            let timeout = Duration::from_millis(100);
            let first = match self.rx.recv_timeout(timeout) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut reqs: Vec<WriteReq> = first.into_iter().collect();
            while reqs.len() < self.shared.config.max_batch {
                match self.rx.try_recv() {
                    Ok(r) => reqs.push(r),
                    Err(_) => break,
                }
            }
            // Expiry scans every lease: at most every 100 ms, however busy the writer is.
            let expired = if self.last_expiry_check.get().elapsed() >= Duration::from_millis(100) {
                self.last_expiry_check.set(std::time::Instant::now());
                self.expired_leases()
            } else {
                Vec::new()
            };
            if reqs.is_empty() && expired.is_empty() {
                continue;
            }
            if self.shared.failed.load(Ordering::Acquire) {
                for r in reqs {
                    let _ = r.reply.send(Err(StoreError::Storage("an earlier commit failed; restart the store".into())));
                }
                continue;
            }
            self.commit_batch(reqs, expired);
        }
        // A clean stop leaves everything in redb and an empty log.
        if !self.shared.failed.load(Ordering::Acquire) {
            match self.checkpoint() {
                Ok(()) => {
                    if let Some(w) = self.wal.borrow_mut().take()
                        && let Err(e) = w.clear()
                    {
                        tracing::warn!(error = %e, "could not remove the write-ahead log after the final checkpoint");
                    }
                }
                Err(e) => tracing::error!(error = %e, "final checkpoint failed; the write-ahead log will be replayed at the next start"),
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Makes every commit so far durable in redb, then drops the log segments it covers.
    fn checkpoint(&self) -> Result<()> {
        let mut wtx = self.shared.db.begin_write()?;
        wtx.set_durability(Durability::Immediate).map_err(|e| StoreError::Storage(e.to_string()))?;
        {
            // Write something so the commit is never skipped as empty.
            let mut meta = wtx.open_table(META)?;
            meta.insert(disk::META_CHECKPOINT, &self.shared.clock.now_ms().to_be_bytes()[..])?;
        }
        wtx.commit()?;
        if let Some(w) = self.wal.borrow_mut().as_mut() {
            w.checkpointed()?;
        }
        Ok(())
    }

    fn expired_leases(&self) -> Vec<i64> {
        let now = self.shared.clock.now_ms();
        let leases = self.shared.leases.lock();
        let mut ids: Vec<i64> = leases.iter().filter(|(_, l)| l.expiry_ms <= now).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    fn commit_batch(&self, reqs: Vec<WriteReq>, expired: Vec<i64>) {
        let sh = &self.shared;
        let committed = sh.committed.load(Ordering::Acquire);
        let mut ctx = BatchCtx {
            next_main: committed + 1,
            touched: vec![],
            events: vec![],
            compact_to: None,
            live_delta: 0,
            dek_changed: false,
            lease_undo: vec![],
        };
        let mut replies = Vec::with_capacity(reqs.len());
        let outcome: Result<()> = (|| {
            // Durability comes from the write-ahead log: redb commits without syncing, after the
            // batch's changes are synced to the log.
            let mut wtx = sh.db.begin_write()?;
            wtx.set_durability(Durability::None).map_err(|e| StoreError::Storage(e.to_string()))?;
            let log: Log = Default::default();
            {
                let mut revs = Logged::new(wtx.open_table(REVS)?, log.clone(), TableId::Revs);
                let mut leases = Logged::new(wtx.open_table(LEASES)?, log.clone(), TableId::Leases);
                let mut deks = Logged::new(wtx.open_table(DEKS)?, log.clone(), TableId::Deks);
                let mut meta = Logged::new(wtx.open_table(META)?, log.clone(), TableId::Meta);
                for id in expired {
                    tracing::debug!(lease = id, "lease expired");
                    // The lease may have been renewed or revoked since it was listed; only a
                    // lease still past its deadline goes.
                    let still = sh.leases.lock().get(&id).is_some_and(|l| l.expiry_ms <= sh.clock.now_ms());
                    if still {
                        self.revoke(&mut ctx, &mut revs, &mut leases, &mut deks, &mut meta, id)?;
                    }
                }
                for req in reqs {
                    let out = self.apply(&mut ctx, &mut revs, &mut leases, &mut deks, &mut meta, req.op);
                    // A storage error fails the whole batch; a request error fails only its own.
                    if let Err(StoreError::Storage(e)) = &out {
                        return Err(StoreError::Storage(e.clone()));
                    }
                    replies.push((req.reply, out));
                }
                // The current revision is not written per commit: at open it is the newest record's
                // revision, or the one written at creation or at the last compaction if higher.
                let writes = sh.sealer.active_writes();
                if ctx.dek_changed {
                    self.persisted_writes.set(0);
                }
                if sh.sealer.is_enabled() && writes.saturating_sub(self.persisted_writes.get()) >= persist_every(&sh.config) {
                    // Persist how much the active DEK has sealed, now and then rather than every
                    // commit; at open the count is raised by the most that can go unrecorded.
                    self.persisted_writes.set(writes);
                    let id = sh.sealer.active_id();
                    let updated = deks.get(id)?.and_then(|v| {
                        disk::decode_dek(v.value())
                            .map(|(_, created, wrapped)| disk::encode_dek(sh.sealer.active_writes(), created, wrapped))
                    });
                    if let Some(v) = updated {
                        deks.insert(id, v.as_slice())?;
                    }
                }
            }
            let log = log.take();
            let appended =
                if log.is_empty() { None } else { Some(self.wal.borrow_mut().as_mut().ok_or(StoreError::Closed)?.append(&log)?) };
            // Readers that find a record missing decide "compacted" from this value, so it must
            // be visible before the records disappear from redb.
            if let Some(c) = ctx.compact_to {
                sh.compacted.store(c, Ordering::Release);
            }
            if let Err(e) = wtx.commit() {
                // The frame is durable but the batch failed: take it back, so it cannot
                // reappear at the next start.
                if let (Some(at), Some(wal)) = (appended, self.wal.borrow_mut().as_mut()) {
                    wal.retract(at);
                }
                return Err(e.into());
            }
            Ok(())
        })();

        match outcome {
            Ok(()) => {
                let current = ctx.next_main - 1;
                if let Some(c) = ctx.compact_to {
                    sh.index.write().compact(c);
                }
                sh.live_bytes.fetch_add(ctx.live_delta, Ordering::Relaxed);
                sh.committed.store(current, Ordering::Release);
                if !ctx.events.is_empty() {
                    let _ = sh.events.send(Arc::new(Batch { last_rev: current, events: std::mem::take(&mut ctx.events) }));
                }
                answer(self.runtime.as_ref(), replies);
                let due = self.wal.borrow().as_ref().is_some_and(Wal::wants_checkpoint);
                if due && let Err(e) = self.checkpoint() {
                    tracing::error!(error = %e, "checkpoint failed; the store now refuses writes until restarted");
                    sh.failed.store(true, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the store now refuses writes until restarted");
                sh.failed.store(true, Ordering::Release);
                sh.index.write().rollback(&ctx.touched, committed);
                answer(self.runtime.as_ref(), replies.into_iter().map(|(r, _)| (r, Err(e.clone()))).collect());
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        leases: &mut Logged<i64, &'static [u8]>,
        deks: &mut Logged<u32, &'static [u8]>,
        meta: &mut Logged<&'static str, &'static [u8]>,
        op: WriteOp,
    ) -> Result<WriteOut> {
        let sh = &self.shared;
        if sh.sealer.needs_rotation() {
            self.rotate(ctx, deks, meta)?;
        }
        match op {
            WriteOp::Put(req) => {
                let cur = sh.index.read().get(&req.key, i64::MAX);
                self.check_put_state(&req, cur)?;
                let mut slot = RevSlot { main: ctx.next_main, sub: 0 };
                let resp = self.put(ctx, revs, &mut slot, &req, cur)?;
                ctx.next_main += 1;
                Ok(WriteOut::Put(resp))
            }
            WriteOp::Delete(req) => {
                let mut slot = RevSlot { main: ctx.next_main, sub: 0 };
                let mark = ctx.mark();
                let resp = self.delete(ctx, revs, &mut slot, &req);
                let resp = self.undo_on_error(ctx, revs, &mark, &slot, resp)?;
                if slot.sub > 0 {
                    ctx.next_main += 1;
                }
                Ok(WriteOut::Delete(DeleteRangeResponse { revision: ctx.next_main - 1, ..resp }))
            }
            WriteOp::Txn(req) => {
                let at = i64::MAX;
                let path = {
                    let index = sh.index.read();
                    let mut fetch = |k: &Bytes, r: Rev| self.fetch_pending(revs, k, r);
                    txn_path(&index, &req, at, &mut fetch)?
                };
                self.check_txn_state(ctx, &req, &path, &mut 0)?;
                let mut slot = RevSlot { main: ctx.next_main, sub: 0 };
                let mark = ctx.mark();
                let resp = self.txn(ctx, revs, &mut slot, &req, &path, &mut 0);
                let mut resp = self.undo_on_error(ctx, revs, &mark, &slot, resp)?;
                if slot.sub > 0 {
                    ctx.next_main += 1;
                }
                fix_txn_revision(&mut resp, ctx.next_main - 1);
                Ok(WriteOut::Txn(resp))
            }
            WriteOp::Compact(rev) => {
                let current = ctx.next_main - 1;
                if rev > current {
                    return Err(StoreError::FutureRevision);
                }
                let done = ctx.compact_to.unwrap_or(sh.compacted.load(Ordering::Acquire));
                if rev <= done {
                    return Err(StoreError::Compacted { compact_revision: done });
                }
                let gone = sh.index.read().compactable(rev);
                for r in &gone {
                    if let Some(n) = revs.remove((r.main as u64, r.sub))? {
                        ctx.live_delta -= n as i64;
                    }
                }
                meta.insert(disk::META_COMPACTED, &(rev as u64).to_be_bytes()[..])?;
                // Compaction may remove the newest records (tombstones), so remember the revision.
                meta.insert(disk::META_CURRENT, &(current as u64).to_be_bytes()[..])?;
                ctx.compact_to = Some(rev);
                tracing::info!(revision = rev, removed = gone.len(), "compacted");
                Ok(WriteOut::Revision(current))
            }
            WriteOp::LeaseGrant { id, ttl } => {
                let ttl = ttl.max(sh.config.min_lease_ttl);
                let mut map = sh.leases.lock();
                let id = if id == 0 {
                    loop {
                        let c = (rand::random::<u64>() >> 1) as i64;
                        if c != 0 && !map.contains_key(&c) {
                            break c;
                        }
                    }
                } else if map.contains_key(&id) {
                    return Err(StoreError::LeaseExists);
                } else {
                    id
                };
                let expiry_ms = sh.clock.now_ms().saturating_add(ttl.saturating_mul(1000));
                leases.insert(id, &disk::encode_lease(ttl, expiry_ms)[..])?;
                map.insert(id, LeaseState { ttl, expiry_ms, keys: BTreeSet::new() });
                Ok(WriteOut::Lease(LeaseGrant { id, ttl }))
            }
            WriteOp::LeaseRevoke(id) => {
                self.revoke(ctx, revs, leases, deks, meta, id)?;
                Ok(WriteOut::Revision(ctx.next_main - 1))
            }
            WriteOp::LeaseKeepAlive(id) => {
                let mut map = sh.leases.lock();
                let now = sh.clock.now_ms();
                let l = map.get_mut(&id).filter(|l| l.expiry_ms > now).ok_or(StoreError::LeaseNotFound)?;
                l.expiry_ms = sh.clock.now_ms().saturating_add(l.ttl.saturating_mul(1000));
                leases.insert(id, &disk::encode_lease(l.ttl, l.expiry_ms)[..])?;
                Ok(WriteOut::Ttl(l.ttl))
            }
            WriteOp::RotateDek => {
                if !sh.sealer.is_enabled() {
                    return Err(StoreError::Sealing("this store runs unsealed".into()));
                }
                let id = self.rotate(ctx, deks, meta)?;
                Ok(WriteOut::Count(u64::from(id)))
            }
            WriteOp::Reseal(list) => self.reseal(revs, deks, &list).map(WriteOut::Count),
            WriteOp::Rewrap(provider) => {
                let all: Vec<(u32, Vec<u8>)> =
                    deks.iter()?.map(|i| i.map(|(k, v)| (k.value(), v.value().to_vec()))).collect::<std::result::Result<_, _>>()?;
                // Every key is re-wrapped before any is written, so a failure leaves all of them
                // under the old provider rather than some under each.
                let mut rewrapped = Vec::with_capacity(all.len());
                for (id, raw) in all {
                    let (writes, created, wrapped) =
                        disk::decode_dek(&raw).ok_or_else(|| StoreError::Sealing(format!("data key {id} is damaged")))?;
                    let key = sh.provider.read().unwrap(wrapped, &seal::dek_context(id))?;
                    rewrapped.push((id, disk::encode_dek(writes, created, &provider.wrap(&key, &seal::dek_context(id))?)));
                }
                let n = rewrapped.len() as u64;
                for (id, v) in rewrapped {
                    deks.insert(id, v.as_slice())?;
                }
                // Data keys made from now on (rotation) are wrapped by the new provider too.
                *sh.provider.write() = provider;
                Ok(WriteOut::Count(n))
            }
        }
    }

    fn rotate(
        &self,
        ctx: &mut BatchCtx,
        deks: &mut Logged<u32, &'static [u8]>,
        meta: &mut Logged<&'static str, &'static [u8]>,
    ) -> Result<u32> {
        let sh = &self.shared;
        let id = deks.last()?.map_or(0, |(k, _)| k.value()) + 1;
        let key = seal::random_key()?;
        let wrapped = sh.provider.read().wrap(&key, &seal::dek_context(id))?;
        deks.insert(id, disk::encode_dek(0, sh.clock.now_ms(), &wrapped).as_slice())?;
        meta.insert(disk::META_ACTIVE_DEK, &u64::from(id).to_be_bytes()[..])?;
        sh.sealer.install(id, &key, 0)?;
        sh.sealer.activate(id);
        ctx.dek_changed = true;
        tracing::info!(dek = id, "rotated the data key");
        Ok(id)
    }

    fn reseal(&self, revs: &mut Logged<(u64, u32), &'static [u8]>, deks: &mut Logged<u32, &'static [u8]>, list: &[Rev]) -> Result<u64> {
        let sh = &self.shared;
        let mut n = 0;
        for &rev in list {
            let Some(raw) = revs.get((rev.main as u64, rev.sub))?.map(|g| g.value().to_vec()) else {
                continue;
            };
            let rec = disk::decode(&raw).map_err(|e| integrity(b"", rev, e))?;
            let plain = sh.open_record(&rec, &raw, rev)?;
            let hk = disk::header_and_key(&rec, &raw);
            let sealed = sh.sealer.seal(&disk::aad(rev, hk), &plain)?;
            let mut out = hk.to_vec();
            out.extend_from_slice(&sealed);
            revs.insert((rev.main as u64, rev.sub), out.as_slice())?;
            n += 1;
        }
        if list.is_empty() {
            // Forget data keys that no record names any more.
            let mut used = HashSet::new();
            for item in revs.iter()? {
                let (_, v) = item?;
                if let Ok(rec) = disk::decode(v.value())
                    && let Some(d) = Sealer::dek_of(rec.sealed)
                {
                    used.insert(d);
                }
            }
            let active = sh.sealer.active_id();
            let ids: Vec<u32> = deks.iter()?.map(|i| i.map(|(k, _)| k.value())).collect::<std::result::Result<_, _>>()?;
            for id in ids {
                if id != active && !used.contains(&id) {
                    deks.remove(id)?;
                    tracing::info!(dek = id, "dropped a data key no value uses");
                }
            }
        }
        Ok(n)
    }

    fn fetch_pending(&self, revs: &Logged<(u64, u32), &'static [u8]>, key: &Bytes, rev: Rev) -> Result<Bytes> {
        self.shared.fetch_value(&revs.table, key, rev, i64::MAX)
    }

    fn check_put_state(&self, req: &PutRequest, cur: Option<Live>) -> Result<()> {
        if (req.ignore_value || req.ignore_lease) && cur.is_none() {
            return Err(StoreError::KeyNotFound);
        }
        if !req.ignore_lease && req.lease != 0 && !self.shared.leases.lock().contains_key(&req.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        Ok(())
    }

    /// Undoes what a failed request wrote in this batch, so it leaves nothing behind.
    fn undo_on_error<T>(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        mark: &Mark,
        slot: &RevSlot,
        r: Result<T>,
    ) -> Result<T> {
        let Err(e) = r else { return r };
        if slot.sub == 0 {
            return Err(e);
        }
        for sub in 0..slot.sub {
            revs.remove((slot.main as u64, sub))?;
        }
        self.shared.index.write().remove_main(&ctx.touched[mark.touched..], slot.main);
        ctx.touched.truncate(mark.touched);
        ctx.events.truncate(mark.events);
        ctx.live_delta = mark.live_delta;
        let mut leases = self.shared.leases.lock();
        for (lease, key, attached) in ctx.lease_undo.drain(mark.lease_undo..).rev() {
            if let Some(l) = leases.get_mut(&lease) {
                if attached {
                    l.keys.remove(&key);
                } else {
                    l.keys.insert(key);
                }
            }
        }
        Err(e)
    }

    fn check_txn_state(&self, ctx: &BatchCtx, req: &TxnRequest, path: &[bool], pos: &mut usize) -> Result<()> {
        let ok = path[*pos];
        *pos += 1;
        for op in if ok { &req.success } else { &req.failure } {
            match op {
                RequestOp::Put(p) => {
                    let cur = self.shared.index.read().get(&p.key, i64::MAX);
                    self.check_put_state(p, cur)?;
                }
                RequestOp::Txn(t) => self.check_txn_state(ctx, t, path, pos)?,
                RequestOp::Range(r) => {
                    if r.revision > 0 {
                        // Historical reads in a txn are checked against the batch so far,
                        // including a compaction earlier in the same batch.
                        let current = ctx.next_main - 1;
                        if r.revision > current {
                            return Err(StoreError::FutureRevision);
                        }
                        let c = ctx.compact_to.unwrap_or_else(|| self.shared.compacted.load(Ordering::Acquire));
                        if r.revision < c {
                            return Err(StoreError::Compacted { compact_revision: c });
                        }
                    }
                }
                RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn write_record(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        slot: &mut RevSlot,
        key: &Bytes,
        entry: Entry,
        value: &[u8],
    ) -> Result<()> {
        let hk = disk::encode_header(entry.tombstone, entry.create, entry.version, entry.lease, key, value.len() + seal::SEAL_OVERHEAD);
        let sealed = self.shared.sealer.seal(&disk::aad(entry.rev, &hk), value)?;
        let mut raw = hk;
        raw.extend_from_slice(&sealed);
        revs.insert((entry.rev.main as u64, entry.rev.sub), raw.as_slice())?;
        ctx.live_delta += raw.len() as i64;
        self.shared.index.write().push(key.clone(), entry);
        ctx.touched.push(key.clone());
        slot.sub += 1;
        Ok(())
    }

    fn put(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        slot: &mut RevSlot,
        req: &PutRequest,
        cur: Option<Live>,
    ) -> Result<PutResponse> {
        let sh = &self.shared;
        let prev_value = if req.ignore_value || req.prev_kv {
            match cur {
                Some(l) => Some(self.fetch_pending(revs, &req.key, l.rev)?),
                None => None,
            }
        } else {
            None
        };
        let value = if req.ignore_value { prev_value.clone().unwrap_or_default() } else { req.value.clone() };
        let lease = if req.ignore_lease { cur.map_or(0, |l| l.lease) } else { req.lease };
        let rev = Rev { main: slot.main, sub: slot.sub };
        let entry =
            Entry { rev, tombstone: false, create: cur.map_or(slot.main, |l| l.create), version: cur.map_or(1, |l| l.version + 1), lease };
        self.write_record(ctx, revs, slot, &req.key, entry, &value)?;
        // Move the key between leases.
        let old_lease = cur.map_or(0, |l| l.lease);
        if old_lease != lease {
            let mut map = sh.leases.lock();
            if old_lease != 0
                && let Some(l) = map.get_mut(&old_lease)
                && l.keys.remove(&req.key)
            {
                ctx.lease_undo.push((old_lease, req.key.clone(), false));
            }
            if lease != 0
                && let Some(l) = map.get_mut(&lease)
                && l.keys.insert(req.key.clone())
            {
                ctx.lease_undo.push((lease, req.key.clone(), true));
            }
        }
        let live = Live { rev, create: entry.create, version: entry.version, lease };
        ctx.events.push(Event { kind: EventKind::Put, kv: kv_of(&req.key, live, value), prev_kv: None });
        let prev_kv = if req.prev_kv { cur.zip(prev_value).map(|(l, v)| kv_of(&req.key, l, v)) } else { None };
        Ok(PutResponse { revision: slot.main, prev_kv })
    }

    fn delete(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        slot: &mut RevSlot,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        let mut hits = Vec::new();
        self.shared.index.read().visit(&req.span, i64::MAX, |k, l| {
            hits.push((k.clone(), l));
            true
        });
        let mut prev_kvs = Vec::new();
        for (k, l) in &hits {
            if req.prev_kv {
                let v = self.fetch_pending(revs, k, l.rev)?;
                prev_kvs.push(kv_of(k, *l, v));
            }
            self.delete_key(ctx, revs, slot, k, *l)?;
        }
        Ok(DeleteRangeResponse { revision: slot.main, deleted: hits.len() as i64, prev_kvs })
    }

    fn delete_key(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        slot: &mut RevSlot,
        key: &Bytes,
        live: Live,
    ) -> Result<()> {
        let rev = Rev { main: slot.main, sub: slot.sub };
        let entry = Entry { rev, tombstone: true, create: 0, version: 0, lease: 0 };
        self.write_record(ctx, revs, slot, key, entry, &[])?;
        if live.lease != 0
            && let Some(l) = self.shared.leases.lock().get_mut(&live.lease)
            && l.keys.remove(key)
        {
            ctx.lease_undo.push((live.lease, key.clone(), false));
        }
        ctx.events.push(Event {
            kind: EventKind::Delete,
            kv: KeyValue { key: key.clone(), mod_revision: slot.main, ..Default::default() },
            prev_kv: None,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn txn(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        slot: &mut RevSlot,
        req: &TxnRequest,
        path: &[bool],
        pos: &mut usize,
    ) -> Result<TxnResponse> {
        let ok = path[*pos];
        *pos += 1;
        let mut responses = Vec::new();
        for op in if ok { &req.success } else { &req.failure } {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let index = self.shared.index.read();
                    let at = if r.revision > 0 { r.revision } else { i64::MAX };
                    let mut fetch = |k: &Bytes, rv: Rev| self.fetch_pending(revs, k, rv);
                    ResponseOp::Range(read_range(&index, r, at, &mut fetch)?)
                }
                RequestOp::Put(p) => {
                    let cur = self.shared.index.read().get(&p.key, i64::MAX);
                    ResponseOp::Put(self.put(ctx, revs, slot, p, cur)?)
                }
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(ctx, revs, slot, d)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.txn(ctx, revs, slot, t, path, pos)?),
            });
        }
        Ok(TxnResponse { revision: slot.main, succeeded: ok, responses })
    }

    #[allow(clippy::too_many_arguments)]
    fn revoke(
        &self,
        ctx: &mut BatchCtx,
        revs: &mut Logged<(u64, u32), &'static [u8]>,
        leases: &mut Logged<i64, &'static [u8]>,
        _deks: &mut Logged<u32, &'static [u8]>,
        _meta: &mut Logged<&'static str, &'static [u8]>,
        id: i64,
    ) -> Result<()> {
        let keys = {
            let map = self.shared.leases.lock();
            map.get(&id).ok_or(StoreError::LeaseNotFound)?.keys.clone()
        };
        let mut slot = RevSlot { main: ctx.next_main, sub: 0 };
        let mark = ctx.mark();
        let deleted = (|| {
            for k in &keys {
                let live = self.shared.index.read().get(k, i64::MAX);
                if let Some(l) = live {
                    self.delete_key(ctx, revs, &mut slot, k, l)?;
                }
            }
            Ok(())
        })();
        self.undo_on_error(ctx, revs, &mark, &slot, deleted)?;
        if slot.sub > 0 {
            ctx.next_main += 1;
        }
        leases.remove(id)?;
        self.shared.leases.lock().remove(&id);
        Ok(())
    }
}

/// A txn's response and its nested ones report the txn's revision.
fn fix_txn_revision(resp: &mut TxnResponse, rev: Revision) {
    resp.revision = rev;
    for r in &mut resp.responses {
        match r {
            ResponseOp::Range(x) => x.revision = rev,
            ResponseOp::Put(x) => x.revision = rev,
            ResponseOp::DeleteRange(x) => x.revision = rev,
            ResponseOp::Txn(x) => fix_txn_revision(x, rev),
        }
    }
}

impl Store {
    /// The path of the data file.
    pub fn data_file(&self) -> &Path {
        &self.shared.path
    }
}
