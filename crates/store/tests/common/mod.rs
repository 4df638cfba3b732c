//! Shared helpers for the store's integration tests: opening a store in a scratch directory,
//! building requests, and reading results back through [`KvBackend`].
//!
//! Every suite is written against `KvBackend`, so a second backend can run the same checks;
//! only opening, reopening and the engine-only calls (DEK rotation, clocks) name [`Store`].

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use daas_store::{
    Clock, DeleteRangeRequest, EphemeralKeyProvider, Event, KeyFileProvider, KeyProvider, KeySpan, KeyValue, KvBackend, PutRequest,
    RangeRequest, Revision, Store, StoreConfig, StoreError, WatchStream,
};
use tempfile::TempDir;

pub use daas_store::test_util::scratch;

/// A store configuration for tests: the defaults, with a small page cache.
pub fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir.join("data"));
    c.cache_bytes = 8 * 1024 * 1024;
    c
}

/// A fresh store with an in-memory key and its directory (keep the directory alive).
pub fn open() -> (Store, TempDir) {
    let dir = scratch();
    let store = Store::open(config(dir.path()), ephemeral()).expect("a fresh store opens");
    (store, dir)
}

pub fn ephemeral() -> Arc<dyn KeyProvider> {
    Arc::new(EphemeralKeyProvider::new().expect("the system random source works"))
}

/// A key-file provider whose file lives at `dir/name` (created on first use).
pub fn key_file(dir: &Path, name: &str) -> Arc<dyn KeyProvider> {
    Arc::new(KeyFileProvider::open_or_create(&dir.join(name)).expect("the key file opens"))
}

/// Opens (or reopens) the store in `dir` with `provider` and `clock`.
pub fn open_in(
    dir: &Path,
    cfg: impl FnOnce(&mut StoreConfig),
    provider: Arc<dyn KeyProvider>,
    clock: Arc<dyn Clock>,
) -> Result<Store, StoreError> {
    let mut c = config(dir);
    cfg(&mut c);
    Store::open_with_clock(c, provider, clock)
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn s(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn single(k: &str) -> KeySpan {
    KeySpan::new(b(k), Bytes::new())
}

pub fn span(k: &str, end: &str) -> KeySpan {
    KeySpan::new(b(k), b(end))
}

/// Every key starting with `p`, as etcd clients encode a prefix.
pub fn prefix(p: &str) -> KeySpan {
    let mut end = p.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return KeySpan::new(b(p), Bytes::from(end));
        }
    }
    KeySpan::new(b(p), Bytes::from_static(b"\0"))
}

/// Every key from `k` on (`range_end == "\0"`).
pub fn from_key(k: &str) -> KeySpan {
    KeySpan::new(b(k), Bytes::from_static(b"\0"))
}

/// Every key (`key == "\0"`, `range_end == "\0"`).
pub fn all_keys() -> KeySpan {
    KeySpan::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
}

pub fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest { key: b(k), value: b(v), ..Default::default() }
}

pub fn del_req(span: KeySpan) -> DeleteRangeRequest {
    DeleteRangeRequest { span, prev_kv: false }
}

/// Puts `k = v` and returns the revision it was written at.
pub async fn put<B: KvBackend>(kv: &B, k: &str, v: &str) -> Revision {
    kv.put(put_req(k, v)).await.expect("put succeeds").revision
}

/// Puts `k = v` attached to `lease`.
pub async fn put_lease<B: KvBackend>(kv: &B, k: &str, v: &str, lease: i64) -> Revision {
    kv.put(PutRequest { lease, ..put_req(k, v) }).await.expect("put with lease succeeds").revision
}

/// Deletes `span`; returns how many keys went.
pub async fn delete<B: KvBackend>(kv: &B, span: KeySpan) -> i64 {
    kv.delete_range(del_req(span)).await.expect("delete succeeds").deleted
}

/// The current version of `k`, if it exists.
pub async fn get<B: KvBackend>(kv: &B, k: &str) -> Option<KeyValue> {
    get_at(kv, k, 0).await
}

/// The version of `k` visible at revision `rev` (0 = now).
pub async fn get_at<B: KvBackend>(kv: &B, k: &str, rev: Revision) -> Option<KeyValue> {
    let resp = kv.range(RangeRequest { revision: rev, ..RangeRequest::new(single(k)) }).await.expect("range succeeds");
    assert!(resp.kvs.len() <= 1, "a single-key read returned {} keys", resp.kvs.len());
    resp.kvs.into_iter().next()
}

/// The value of `k` as a string, if it exists.
pub async fn value<B: KvBackend>(kv: &B, k: &str) -> Option<String> {
    get(kv, k).await.map(|kv| s(&kv.value))
}

/// The keys a range request returns, in the order returned.
pub async fn keys<B: KvBackend>(kv: &B, req: RangeRequest) -> Vec<String> {
    kv.range(req).await.expect("range succeeds").kvs.iter().map(|kv| s(&kv.key)).collect()
}

/// Every live key/value pair, in key order.
pub async fn dump<B: KvBackend>(kv: &B) -> Vec<KeyValue> {
    kv.range(RangeRequest::new(all_keys())).await.expect("range succeeds").kvs
}

/// Waits for at least `n` events from `w`, failing after `secs` seconds.
pub async fn next_n<W: WatchStream>(w: &mut W, n: usize, secs: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, w.next_events()).await {
            // A step may find nothing for this watcher (another span's commit, a replay chunk).
            Ok(Ok(evs)) => out.extend(evs),
            Ok(Err(e)) => panic!("watch failed after {} of {n} events: {e}", out.len()),
            Err(_) => panic!("timed out after {} of {n} events: {out:?}", out.len()),
        }
    }
    out
}

/// Waits for the next non-empty group of events, failing after `secs` seconds.
pub async fn next_group<W: WatchStream>(w: &mut W, secs: u64) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, w.next_events()).await {
            Ok(Ok(evs)) if evs.is_empty() => continue,
            Ok(Ok(evs)) => return evs,
            Ok(Err(e)) => panic!("watch failed: {e}"),
            Err(_) => panic!("no events within {secs}s"),
        }
    }
}

/// Waits for the watcher's next error (skipping events), failing after `secs` seconds.
pub async fn next_error<W: WatchStream>(w: &mut W, secs: u64) -> StoreError {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, w.next_events()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return e,
            Err(_) => panic!("no error within {secs}s"),
        }
    }
}

/// Polls `check` every 20 ms until it returns true, for at most `secs` seconds. Used where the
/// store's writer thread acts on its own schedule (lease expiry), which `tokio::time::pause`
/// cannot drive.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
