//! The errors a client sees for malformed or impossible requests, and the guarantee that a
//! rejected request stores nothing. Checked through [`KvBackend`].

mod common;

use bytes::Bytes;
use daas_store::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, KvBackend, MAX_LEASE_TTL, PutRequest, RangeRequest, RequestOp,
    Revision, StoreError, TxnRequest,
};

use common::*;

/// What a client can observe of the store: its revision, compaction point and every key.
async fn snapshot<B: KvBackend>(kv: &B) -> (Revision, Revision, Vec<KeyValue>) {
    let status = kv.status().await.expect("status succeeds");
    (kv.current_revision(), status.compact_revision, dump(kv).await)
}

async fn assert_unchanged<B: KvBackend>(kv: &B, before: &(Revision, Revision, Vec<KeyValue>), what: &str) {
    assert_eq!(&snapshot(kv).await, before, "{what}: the store changed");
}

async fn empty_key<B: KvBackend>(kv: &B) {
    put(kv, "k", "v").await;
    let before = snapshot(kv).await;

    assert_eq!(kv.put(put_req("", "v")).await, Err(StoreError::EmptyKey));
    assert_unchanged(kv, &before, "put with an empty key").await;
    assert_eq!(kv.range(RangeRequest::new(single(""))).await, Err(StoreError::EmptyKey));
    assert_eq!(kv.delete_range(del_req(single(""))).await, Err(StoreError::EmptyKey));
    assert_unchanged(kv, &before, "delete with an empty key").await;
    let txn = TxnRequest {
        compare: vec![Compare { span: single(""), result: CompareResult::Equal, target: CompareTarget::Version(0) }],
        success: vec![RequestOp::Put(put_req("k2", "v"))],
        failure: vec![],
    };
    assert_eq!(kv.txn(txn).await, Err(StoreError::EmptyKey));
    assert_unchanged(kv, &before, "txn comparing an empty key").await;
}

#[tokio::test]
async fn empty_key_is_rejected() {
    let (store, _dir) = open();
    empty_key(&store).await;
}

async fn too_large<B: KvBackend>(kv: &B) {
    const LIMIT: usize = 3 * 1024 * 1024 / 2;
    put(kv, "k", "v").await;
    let before = snapshot(kv).await;

    let big = Bytes::from(vec![7u8; LIMIT + 1]);
    let err = kv.put(PutRequest { key: b("big"), value: big, ..Default::default() }).await.expect_err("a value over 1.5 MiB is refused");
    assert_eq!(err, StoreError::RequestTooLarge);
    assert_unchanged(kv, &before, "an oversized put").await;

    // Key and value together at the limit are accepted, and read back whole.
    let fits = Bytes::from(vec![9u8; LIMIT - 3]);
    put_bytes(kv, "big", fits.clone()).await;
    assert_eq!(get(kv, "big").await.expect("big exists").value, fits);
}

async fn put_bytes<B: KvBackend>(kv: &B, k: &str, v: Bytes) -> Revision {
    kv.put(PutRequest { key: b(k), value: v, ..Default::default() }).await.expect("put succeeds").revision
}

#[tokio::test]
async fn request_too_large_is_rejected() {
    let (store, _dir) = open();
    too_large(&store).await;
}

async fn unknown_lease<B: KvBackend>(kv: &B) {
    put(kv, "k", "v").await;
    let before = snapshot(kv).await;
    let err = kv.put(PutRequest { lease: 4242, ..put_req("leased", "v") }).await.expect_err("an unknown lease is refused");
    assert_eq!(err, StoreError::LeaseNotFound);
    assert_unchanged(kv, &before, "a put with an unknown lease").await;
    let err = kv.put(PutRequest { lease: 4242, ..put_req("k", "w") }).await.expect_err("an unknown lease is refused");
    assert_eq!(err, StoreError::LeaseNotFound);
    assert_unchanged(kv, &before, "an overwrite with an unknown lease").await;

    assert_eq!(kv.lease_revoke(4242).await, Err(StoreError::LeaseNotFound));
    assert_eq!(kv.lease_keep_alive(4242).await, Err(StoreError::LeaseNotFound));
    assert_eq!(kv.lease_grant(0, MAX_LEASE_TTL + 1).await, Err(StoreError::LeaseTtlTooLarge));
    assert!(kv.lease_list().await.expect("list succeeds").is_empty(), "a refused grant leaves no lease");
    assert_unchanged(kv, &before, "lease errors").await;
}

#[tokio::test]
async fn lease_not_found_and_ttl_too_large() {
    let (store, _dir) = open();
    unknown_lease(&store).await;
}

async fn future_and_compacted<B: KvBackend>(kv: &B) {
    for i in 0..5 {
        put(kv, "k", &i.to_string()).await;
    }
    let current = kv.current_revision();
    let before = snapshot(kv).await;

    let future = RangeRequest { revision: current + 10, ..RangeRequest::new(single("k")) };
    assert_eq!(kv.range(future).await, Err(StoreError::FutureRevision));
    let next = RangeRequest { revision: current + 1, ..RangeRequest::new(single("k")) };
    assert_eq!(kv.range(next).await, Err(StoreError::FutureRevision), "one past the current revision is the future too");
    assert_eq!(kv.compact(current + 10).await, Err(StoreError::FutureRevision));
    assert_unchanged(kv, &before, "a compaction of a future revision").await;

    assert_eq!(kv.compact(current - 1).await, Ok(current), "compaction returns the current revision");
    let before = snapshot(kv).await;
    assert_eq!(before.1, current - 1);
    let below = RangeRequest { revision: current - 2, ..RangeRequest::new(single("k")) };
    assert_eq!(kv.range(below).await, Err(StoreError::Compacted { compact_revision: current - 1 }));
    assert_eq!(kv.compact(current - 1).await, Err(StoreError::Compacted { compact_revision: current - 1 }), "the same revision again");
    assert_eq!(kv.compact(current - 3).await, Err(StoreError::Compacted { compact_revision: current - 1 }), "an older revision");
    assert_unchanged(kv, &before, "a repeated compaction").await;
    assert_eq!(kv.hash_kv(current + 1).await.map(|_| ()), Err(StoreError::FutureRevision));
}

#[tokio::test]
async fn future_revision_and_compacted_errors() {
    let (store, _dir) = open();
    future_and_compacted(&store).await;
}

async fn delete_empty_span<B: KvBackend>(kv: &B) {
    put(kv, "a", "1").await;
    put(kv, "z", "1").await;
    let before = snapshot(kv).await;
    let d = kv.delete_range(DeleteRangeRequest { span: span("z", "a"), prev_kv: true }).await.expect("delete of an empty span succeeds");
    assert_eq!((d.deleted, d.prev_kvs.len()), (0, 0));
    assert_unchanged(kv, &before, "a delete of a backwards span").await;
}

#[tokio::test]
async fn delete_of_backwards_span_deletes_nothing() {
    let (store, _dir) = open();
    delete_empty_span(&store).await;
}
