//! The seam between the etcd face (and later the API server) and whatever holds the data.
//!
//! [`KvBackend`] is etcd's contract: revisions, ranges, txns, watches, leases. The embedded
//! [`Store`] is one implementation; a later one can sit on an external etcd cluster, sealing
//! values before they leave the enclave. Test suites take `impl KvBackend` so that every
//! backend runs the same tests.

use std::future::Future;

use crate::engine::Store;
use crate::error::Result;
use crate::types::*;
use crate::watch::Watcher;

/// A stream of watch events.
pub trait WatchStream: Send + 'static {
    /// Advances by one step and returns the events it found, possibly none. Cancel-safe.
    fn next_events(&mut self) -> impl Future<Output = Result<Vec<Event>>> + Send;
    /// Every event at or below this revision has been returned.
    fn synced_revision(&self) -> Revision;
}

/// A key-value store with etcd semantics.
pub trait KvBackend: Clone + Send + Sync + 'static {
    type Watch: WatchStream;

    fn range(&self, req: RangeRequest) -> impl Future<Output = Result<RangeResponse>> + Send;
    fn put(&self, req: PutRequest) -> impl Future<Output = Result<PutResponse>> + Send;
    fn delete_range(&self, req: DeleteRangeRequest) -> impl Future<Output = Result<DeleteRangeResponse>> + Send;
    fn txn(&self, req: TxnRequest) -> impl Future<Output = Result<TxnResponse>> + Send;
    /// Removes history below `revision`; returns the current revision.
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<Revision>> + Send;
    fn watch(&self, req: WatchRequest) -> impl Future<Output = Result<Self::Watch>> + Send;
    fn lease_grant(&self, id: i64, ttl: i64) -> impl Future<Output = Result<LeaseGrant>> + Send;
    /// Revokes a lease and deletes its keys; returns the current revision.
    fn lease_revoke(&self, id: i64) -> impl Future<Output = Result<Revision>> + Send;
    /// Renews a lease; returns its TTL in seconds.
    fn lease_keep_alive(&self, id: i64) -> impl Future<Output = Result<i64>> + Send;
    fn lease_time_to_live(&self, id: i64, keys: bool) -> impl Future<Output = Result<LeaseTimeToLive>> + Send;
    fn lease_list(&self) -> impl Future<Output = Result<Vec<i64>>> + Send;
    fn status(&self) -> impl Future<Output = Result<StoreStatus>> + Send;
    fn hash_kv(&self, revision: Revision) -> impl Future<Output = Result<HashKv>> + Send;
    /// The newest committed revision.
    fn current_revision(&self) -> Revision;
}

impl WatchStream for Watcher {
    async fn next_events(&mut self) -> Result<Vec<Event>> {
        self.step().await
    }
    fn synced_revision(&self) -> Revision {
        Watcher::synced_revision(self)
    }
}

impl KvBackend for Store {
    type Watch = Watcher;

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.range_now(&req)
    }
    async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        Store::put(self, req).await
    }
    async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        Store::delete_range(self, req).await
    }
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        Store::txn(self, req).await
    }
    async fn compact(&self, revision: Revision) -> Result<Revision> {
        Store::compact(self, revision).await
    }
    async fn watch(&self, req: WatchRequest) -> Result<Watcher> {
        self.watch_now(req)
    }
    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrant> {
        Store::lease_grant(self, id, ttl).await
    }
    async fn lease_revoke(&self, id: i64) -> Result<Revision> {
        Store::lease_revoke(self, id).await
    }
    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        Store::lease_keep_alive(self, id).await
    }
    async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLive> {
        Ok(Store::lease_time_to_live(self, id, keys))
    }
    async fn lease_list(&self) -> Result<Vec<i64>> {
        Ok(Store::lease_list(self))
    }
    async fn status(&self) -> Result<StoreStatus> {
        Ok(Store::status(self))
    }
    async fn hash_kv(&self, revision: Revision) -> Result<HashKv> {
        Store::hash_kv(self, revision)
    }
    fn current_revision(&self) -> Revision {
        Store::current_revision(self)
    }
}
