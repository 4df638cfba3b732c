//! The cluster's memory: an MVCC key-value store with etcd semantics, persisted on redb, every
//! value sealed with AES-256-GCM.
//!
//! Knows nothing of HTTP, gRPC, Kubernetes or Sui. Entry points: [`Store::open`] to open the
//! embedded engine, [`KvBackend`] for the contract every backend keeps, [`KeyProvider`] for
//! where sealing keys come from. The byte layouts are in `docs/design.md`.
#![forbid(unsafe_code)]

mod backend;
mod disk;
mod engine;
mod error;
mod index;
mod seal;
#[cfg(feature = "test-util")]
pub mod test_util;
mod types;
mod wal;
mod watch;

pub use backend::{KvBackend, WatchStream};
pub use engine::{Clock, MAX_LEASE_TTL, ManualClock, Store, StoreConfig, SystemClock};
pub use error::{Result, StoreError};
pub use seal::{
    DEFAULT_ROTATE_AFTER, DataKey, EphemeralKeyProvider, KeyFileProvider, KeyProvider, ProvidedKeyProvider, Sealer, open_blob, random_key,
    seal_blob,
};
pub use types::*;
pub use watch::Watcher;
