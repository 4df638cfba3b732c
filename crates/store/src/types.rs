//! Request and response types of the store, shaped after etcd's v3 API but free of protobuf.
//!
//! The etcd face converts between these and the wire messages; nothing else in the workspace
//! needs to know the wire format. Start with [`RangeRequest`] and [`TxnRequest`].

use bytes::Bytes;

/// A global store revision. Revision 1 is the first write; 0 means "current" in requests.
pub type Revision = i64;

/// One version of one key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub value: Bytes,
    pub lease: i64,
}

/// Whether an event created/updated a key or deleted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key, as delivered to watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete, only `key` and `mod_revision` (the delete's revision) are set.
    pub kv: KeyValue,
    /// The key's previous version, when the watcher asked for it and it is still retained.
    pub prev_kv: Option<KeyValue>,
}

/// The span of keys a request covers, decoded from etcd's `key`/`range_end` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpan {
    /// Exactly one key (`range_end` empty).
    Single(Bytes),
    /// `[start, end)`; `end == None` means "every key from `start` on" (`range_end == "\0"`).
    Range { start: Bytes, end: Option<Bytes> },
}

impl KeySpan {
    /// Decodes etcd's convention: empty `range_end` is a single key, `"\0"` is "from key".
    /// A `range_end` that sorts at or before `key` is an empty span, as etcd treats it.
    pub fn new(key: Bytes, range_end: Bytes) -> Self {
        if range_end.is_empty() {
            KeySpan::Single(key)
        } else if range_end.as_ref() == [0] {
            KeySpan::Range { start: key, end: None }
        } else {
            KeySpan::Range { start: key, end: Some(range_end) }
        }
    }

    /// Returns true when `key` lies in the span.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeySpan::Single(k) => k.as_ref() == key,
            KeySpan::Range { start, end } => key >= start.as_ref() && end.as_ref().is_none_or(|e| key < e.as_ref()),
        }
    }

    /// The first key of the span.
    pub fn start(&self) -> &Bytes {
        match self {
            KeySpan::Single(k) => k,
            KeySpan::Range { start, .. } => start,
        }
    }

    /// True when no key can fall in the span (`end <= start`).
    pub fn is_empty(&self) -> bool {
        match self {
            KeySpan::Single(_) => false,
            KeySpan::Range { start, end: Some(end) } => end <= start,
            KeySpan::Range { end: None, .. } => false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    pub span: KeySpan,
    /// Maximum number of keys returned; 0 means no limit.
    pub limit: i64,
    /// Read at this revision; 0 means the current one.
    pub revision: Revision,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: Revision,
    pub max_mod_revision: Revision,
    pub min_create_revision: Revision,
    pub max_create_revision: Revision,
}

impl RangeRequest {
    /// A plain read of `span` at the current revision.
    pub fn new(span: KeySpan) -> Self {
        RangeRequest {
            span,
            limit: 0,
            revision: 0,
            sort_order: SortOrder::None,
            sort_target: SortTarget::Key,
            keys_only: false,
            count_only: false,
            min_mod_revision: 0,
            max_mod_revision: 0,
            min_create_revision: 0,
            max_create_revision: 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's current revision when the read was served.
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// Number of keys matched, ignoring `limit`.
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub revision: Revision,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub span: KeySpan,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub revision: Revision,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(Revision),
    Mod(Revision),
    Value(Bytes),
    Lease(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub span: KeySpan,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// True when no branch, at any depth, writes.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Txn(t) => t.is_read_only(),
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub revision: Revision,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// What a watcher wants to see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    pub span: KeySpan,
    /// Replay history from this revision; 0 means "changes after now".
    pub start_revision: Revision,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: i64,
    /// The TTL granted, in seconds (may be raised to the minimum).
    pub ttl: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// Remaining seconds; -1 when the lease does not exist (etcd's convention).
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Bytes>,
}

/// Facts about the store for `etcdctl endpoint status` and health output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    pub revision: Revision,
    pub compact_revision: Revision,
    pub cluster_id: u64,
    pub member_id: u64,
    /// Size of the data file in bytes.
    pub db_size: i64,
    /// Bytes of the data file holding live data.
    pub db_size_in_use: i64,
    /// True when values are sealed (false only in the danger-named benchmark mode).
    pub sealed: bool,
    pub key_provider: String,
    pub active_dek: u32,
}

/// Result of hashing the key space, for `etcdctl endpoint hashkv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    pub compact_revision: Revision,
    pub hash_revision: Revision,
}
