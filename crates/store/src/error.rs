//! The store's error type. Each variant matches an error etcd reports, so that the etcd face
//! can translate it once, in one table, into the code and message etcd clients expect.

use crate::Revision;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A request named no key.
    #[error("key is not provided")]
    EmptyKey,
    /// A value or request exceeded the configured maximum size.
    #[error("request is too large")]
    RequestTooLarge,
    /// A transaction carried more operations than allowed.
    #[error("too many operations in txn request")]
    TooManyOps,
    /// A transaction wrote the same key twice.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A read or compaction named a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A read named a revision removed by compaction.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: Revision },
    /// The lease does not exist (never granted, revoked or expired).
    #[error("requested lease not found")]
    LeaseNotFound,
    /// A lease with that ID is already granted.
    #[error("lease already exists")]
    LeaseExists,
    /// The TTL asked for exceeds the maximum.
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value` or `ignore_lease` was used on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// `ignore_value` was set together with a value.
    #[error("value is provided")]
    ValueProvided,
    /// `ignore_lease` was set together with a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A sealed value failed to authenticate: the data file was altered or damaged.
    #[error("integrity check failed for key {key:?} at revision {revision}: {detail}")]
    Integrity { key: String, revision: Revision, detail: String },
    /// The underlying storage failed; the store refuses writes until restarted.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The sealing layer could not produce or load a key.
    #[error("sealing: {0}")]
    Sealing(String),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
}

/// Short form used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}

storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    std::io::Error
);
