//! Leases: grant, revoke, keep-alive, time-to-live, list, and expiry driven by a manual clock,
//! including expiry that falls due while the store is closed.
//!
//! Expiry runs on the store's writer thread, which checks every 100 ms on its own schedule, so
//! these tests advance a [`ManualClock`] and then poll (bounded) instead of pausing tokio time.

mod common;

use std::sync::Arc;

use daas_store::{EventKind, KvBackend, ManualClock, PutRequest, RangeRequest, StoreError, WatchRequest};

use common::*;

async fn grants<B: KvBackend>(kv: &B) {
    let auto = kv.lease_grant(0, 30).await.expect("grant succeeds");
    assert!(auto.id > 0, "an automatic id is positive, got {}", auto.id);
    assert_eq!(auto.ttl, 30);
    let other = kv.lease_grant(0, 30).await.expect("grant succeeds");
    assert_ne!(other.id, auto.id, "automatic ids are unique");

    let explicit = kv.lease_grant(42, 10).await.expect("grant succeeds");
    assert_eq!((explicit.id, explicit.ttl), (42, 10));
    assert_eq!(kv.lease_grant(42, 20).await, Err(StoreError::LeaseExists));
    assert_eq!(kv.lease_time_to_live(42, false).await.expect("ttl succeeds").granted_ttl, 10, "the duplicate grant changed nothing");

    assert_eq!(kv.lease_grant(7, 1).await.expect("grant succeeds").ttl, 2, "a TTL below the minimum is raised to 2");
    assert_eq!(kv.lease_grant(8, 0).await.expect("grant succeeds").ttl, 2);

    let mut want = vec![auto.id, other.id, 42, 7, 8];
    want.sort_unstable();
    let mut listed = kv.lease_list().await.expect("list succeeds");
    listed.sort_unstable();
    assert_eq!(listed, want);
    assert_eq!(kv.current_revision(), 1, "granting leases takes no revision (a fresh store is at revision 1)");
}

#[tokio::test]
async fn grant_auto_and_explicit_ids() {
    let (store, _dir) = open();
    grants(&store).await;
}

async fn revoke_deletes_keys<B: KvBackend>(kv: &B) {
    let lease = kv.lease_grant(0, 60).await.expect("grant succeeds").id;
    let other = kv.lease_grant(0, 60).await.expect("grant succeeds").id;
    for k in ["r/a", "r/b", "r/c"] {
        put_lease(kv, k, "v", lease).await;
    }
    put_lease(kv, "r/other", "v", other).await;
    put(kv, "r/free", "v").await;
    let mut w = kv
        .watch(WatchRequest { span: prefix("r/"), start_revision: 0, prev_kv: false, no_put: false, no_delete: false })
        .await
        .expect("watch succeeds");
    let r0 = kv.current_revision();

    assert_eq!(kv.lease_revoke(lease).await, Ok(r0 + 1), "revoke returns the revision of its deletes");
    assert_eq!(kv.current_revision(), r0 + 1, "all keys go in one revision");
    assert_eq!(keys(kv, RangeRequest::new(prefix("r/"))).await, ["r/free", "r/other"]);

    let evs = next_n(&mut w, 3, 5).await;
    assert_eq!(
        evs.iter().map(|e| (e.kind, s(&e.kv.key), e.kv.mod_revision)).collect::<Vec<_>>(),
        [
            (EventKind::Delete, "r/a".to_string(), r0 + 1),
            (EventKind::Delete, "r/b".into(), r0 + 1),
            (EventKind::Delete, "r/c".into(), r0 + 1),
        ]
    );

    assert_eq!(kv.lease_time_to_live(lease, true).await.expect("ttl succeeds").ttl, -1);
    assert!(!kv.lease_list().await.expect("list succeeds").contains(&lease));
    assert_eq!(kv.lease_revoke(lease).await, Err(StoreError::LeaseNotFound));
    assert_eq!(kv.put(put_lease_req("r/late", lease)).await.map(|_| ()), Err(StoreError::LeaseNotFound), "a revoked lease takes no keys");

    // A lease without keys revokes without a revision.
    let empty = kv.lease_grant(0, 60).await.expect("grant succeeds").id;
    assert_eq!(kv.lease_revoke(empty).await, Ok(r0 + 1));
    assert_eq!(kv.current_revision(), r0 + 1);
}

fn put_lease_req(k: &str, lease: i64) -> PutRequest {
    PutRequest { lease, ..put_req(k, "v") }
}

#[tokio::test]
async fn revoke_deletes_attached_keys_in_one_revision() {
    let (store, _dir) = open();
    revoke_deletes_keys(&store).await;
}

async fn keepalive_and_ttl<B: KvBackend>(kv: &B) {
    let lease = kv.lease_grant(0, 30).await.expect("grant succeeds").id;
    put_lease(kv, "t/b", "v", lease).await;
    put_lease(kv, "t/a", "v", lease).await;
    put(kv, "t/free", "v").await;

    assert_eq!(kv.lease_keep_alive(lease).await, Ok(30), "keep-alive returns the TTL");
    let ttl = kv.lease_time_to_live(lease, true).await.expect("ttl succeeds");
    assert_eq!((ttl.id, ttl.granted_ttl), (lease, 30));
    assert!((29..=30).contains(&ttl.ttl), "remaining TTL {} right after a keep-alive", ttl.ttl);
    assert_eq!(ttl.keys, [b("t/a"), b("t/b")]);
    assert!(kv.lease_time_to_live(lease, false).await.expect("ttl succeeds").keys.is_empty(), "keys only when asked");

    delete(kv, single("t/a")).await;
    assert_eq!(kv.lease_time_to_live(lease, true).await.expect("ttl succeeds").keys, [b("t/b")], "a deleted key leaves its lease");

    let unknown = kv.lease_time_to_live(987_654, true).await.expect("ttl of an unknown lease succeeds");
    assert_eq!((unknown.ttl, unknown.granted_ttl, unknown.keys.len()), (-1, 0, 0));
    assert_eq!(kv.lease_keep_alive(987_654).await, Err(StoreError::LeaseNotFound));
}

#[tokio::test]
async fn keepalive_time_to_live_and_unknown_lease() {
    let (store, _dir) = open();
    keepalive_and_ttl(&store).await;
}

/// Polls until `k` is gone; fails after about three seconds.
async fn gone<B: KvBackend>(kv: &B, k: &str) -> bool {
    eventually(3, || async { get(kv, k).await.is_none() }).await
}

#[tokio::test]
async fn lease_expires_on_a_manual_clock() {
    let dir = scratch();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let kv = open_in(dir.path(), |_| {}, ephemeral(), clock.clone()).expect("store opens");

    let lease = kv.lease_grant(0, 5).await.expect("grant succeeds").id;
    put_lease(&kv, "e/a", "v", lease).await;
    put_lease(&kv, "e/b", "v", lease).await;
    put(&kv, "e/free", "v").await;
    let mut w = kv
        .watch(WatchRequest { span: prefix("e/"), start_revision: 0, prev_kv: false, no_put: false, no_delete: false })
        .await
        .expect("watch succeeds");
    assert_eq!(KvBackend::lease_time_to_live(&kv, lease, false).await.expect("ttl succeeds").ttl, 5);

    clock.advance(4_000);
    assert_eq!(KvBackend::lease_time_to_live(&kv, lease, false).await.expect("ttl succeeds").ttl, 1);
    // Not yet due: give the writer a few expiry checks, and the keys must still be there.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(get(&kv, "e/a").await.is_some(), "the lease expired early");

    // A keep-alive moves the deadline: 4 s more is 8 s after the grant, but only 4 s after it.
    assert_eq!(KvBackend::lease_keep_alive(&kv, lease).await, Ok(5));
    clock.advance(4_000);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(get(&kv, "e/a").await.is_some(), "the keep-alive did not extend the lease");

    let r0 = kv.current_revision();
    clock.advance(1_500);
    assert!(gone(&kv, "e/a").await, "the lease did not expire within 3 s of its deadline");
    assert!(gone(&kv, "e/b").await);
    assert_eq!(value(&kv, "e/free").await.as_deref(), Some("v"));
    assert_eq!(kv.current_revision(), r0 + 1, "expiry deletes the lease's keys in one revision");
    assert_eq!(KvBackend::lease_time_to_live(&kv, lease, false).await.expect("ttl succeeds").ttl, -1);
    assert!(KvBackend::lease_list(&kv).await.expect("list succeeds").is_empty());
    assert_eq!(KvBackend::lease_keep_alive(&kv, lease).await, Err(StoreError::LeaseNotFound));

    let evs = next_n(&mut w, 2, 5).await;
    assert_eq!(
        evs.iter().map(|e| (e.kind, s(&e.kv.key), e.kv.mod_revision)).collect::<Vec<_>>(),
        [(EventKind::Delete, "e/a".to_string(), r0 + 1), (EventKind::Delete, "e/b".into(), r0 + 1)]
    );
}

/// A lease survives a restart with its keys and, as in etcd, starts a full TTL again at open
/// (however long the store was closed); it then expires if nobody keeps it alive.
#[tokio::test]
async fn lease_and_its_expiry_survive_a_restart() {
    let dir = scratch();
    let provider = key_file(dir.path(), "kek");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));

    let kv = open_in(dir.path(), |_| {}, provider.clone(), clock.clone()).expect("store opens");
    let lease = kv.lease_grant(0, 10).await.expect("grant succeeds").id;
    put_lease(&kv, "k", "v", lease).await;
    put(&kv, "free", "v").await;
    clock.advance(4_000);
    drop(kv);

    // Closed for a minute, past the old deadline: the lease is back with its key and a full TTL.
    clock.advance(60_000);
    let kv = open_in(dir.path(), |_| {}, provider, clock.clone()).expect("store reopens");
    assert_eq!(KvBackend::lease_list(&kv).await.expect("list succeeds"), [lease]);
    let ttl = KvBackend::lease_time_to_live(&kv, lease, true).await.expect("ttl succeeds");
    assert_eq!((ttl.ttl, ttl.granted_ttl, ttl.keys), (10, 10, vec![b("k")]));
    assert_eq!(get(&kv, "k").await.expect("k survives").lease, lease);
    let r0 = kv.current_revision();

    // Nobody keeps it alive: it expires a TTL after the open, deleting its key.
    clock.advance(10_500);
    assert!(gone(&kv, "k").await, "the lease did not expire after its TTL");
    assert_eq!(value(&kv, "free").await.as_deref(), Some("v"));
    assert_eq!(kv.current_revision(), r0 + 1);
    assert!(KvBackend::lease_list(&kv).await.expect("list succeeds").is_empty());
    // And a keep-alive cannot revive it.
    assert_eq!(KvBackend::lease_keep_alive(&kv, lease).await, Err(StoreError::LeaseNotFound));
}
