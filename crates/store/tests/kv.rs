//! Revisions, ranges, puts and deletes with etcd's semantics, checked through [`KvBackend`].
//!
//! Each case is a generic `async fn` over any backend; the `#[tokio::test]` beside it runs it
//! against the embedded [`daas_store::Store`] in a scratch directory.

mod common;

use daas_store::{DeleteRangeRequest, KvBackend, PutRequest, RangeRequest, RequestOp, SortOrder, SortTarget, StoreError, TxnRequest};

use common::*;

// ---- revisions ---------------------------------------------------------------------------

async fn revisions_follow_etcd<B: KvBackend>(kv: &B) {
    let r0 = kv.current_revision();

    assert_eq!(put(kv, "a", "1").await, r0 + 1);
    let a = get(kv, "a").await.expect("a exists");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r0 + 1, r0 + 1, 1));

    assert_eq!(put(kv, "a", "2").await, r0 + 2, "an overwrite takes the next revision");
    let a = get(kv, "a").await.expect("a exists");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r0 + 1, r0 + 2, 2));

    assert_eq!(put(kv, "b", "x").await, r0 + 3, "one revision counter for every key");
    assert_eq!(kv.current_revision(), r0 + 3);

    let d = kv.delete_range(del_req(single("a"))).await.expect("delete succeeds");
    assert_eq!((d.revision, d.deleted), (r0 + 4, 1));
    assert_eq!(get(kv, "a").await, None);

    assert_eq!(put(kv, "a", "3").await, r0 + 5);
    let a = get(kv, "a").await.expect("a exists again");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r0 + 5, r0 + 5, 1), "re-creation starts a new generation");

    // History keeps every generation.
    let old = get_at(kv, "a", r0 + 2).await.expect("a existed at r0+2");
    assert_eq!((s(&old.value).as_str(), old.version, old.create_revision), ("2", 2, r0 + 1));
    assert_eq!(get_at(kv, "a", r0 + 4).await, None, "a was deleted at r0+4");

    let resp = kv.range(RangeRequest::new(single("b"))).await.expect("range succeeds");
    assert_eq!(resp.revision, r0 + 5, "a read reports the current revision");
}

#[tokio::test]
async fn revisions() {
    let (store, _dir) = open();
    revisions_follow_etcd(&store).await;
}

async fn txn_writes_share_one_revision<B: KvBackend>(kv: &B) {
    put(kv, "seed", "0").await;
    let r0 = kv.current_revision();
    let resp = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put_req("t/a", "1")),
                RequestOp::Put(put_req("t/b", "2")),
                RequestOp::DeleteRange(del_req(single("seed"))),
                RequestOp::Put(put_req("t/c", "3")),
            ],
            failure: vec![],
        })
        .await
        .expect("txn succeeds");
    assert!(resp.succeeded);
    assert_eq!(resp.revision, r0 + 1);
    assert_eq!(kv.current_revision(), r0 + 1, "four writes, one revision");
    for k in ["t/a", "t/b", "t/c"] {
        let kv = get(kv, k).await.expect("written by the txn");
        assert_eq!((kv.mod_revision, kv.create_revision), (r0 + 1, r0 + 1), "{k}");
    }
    assert_eq!(get(kv, "seed").await, None);
    assert_eq!(put(kv, "after", "x").await, r0 + 2);
}

#[tokio::test]
async fn txn_shares_one_revision() {
    let (store, _dir) = open();
    txn_writes_share_one_revision(&store).await;
}

async fn no_change_no_revision<B: KvBackend>(kv: &B) {
    put(kv, "k", "v").await;
    let r0 = kv.current_revision();

    // A read-only txn.
    let resp = kv
        .txn(TxnRequest { compare: vec![], success: vec![RequestOp::Range(RangeRequest::new(single("k")))], failure: vec![] })
        .await
        .expect("read-only txn succeeds");
    assert_eq!(resp.revision, r0);
    assert_eq!(kv.current_revision(), r0, "a read-only txn does not bump the revision");

    // A txn whose writes are all in the branch not taken.
    let resp = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Range(RangeRequest::new(single("k")))],
            failure: vec![RequestOp::Put(put_req("k", "never"))],
        })
        .await
        .expect("txn succeeds");
    assert!(resp.succeeded);
    assert_eq!(kv.current_revision(), r0, "the taken branch wrote nothing");
    assert_eq!(value(kv, "k").await.as_deref(), Some("v"));

    // A txn whose only write deletes nothing.
    kv.txn(TxnRequest { compare: vec![], success: vec![RequestOp::DeleteRange(del_req(single("absent")))], failure: vec![] })
        .await
        .expect("txn succeeds");
    assert_eq!(kv.current_revision(), r0, "a txn deleting nothing does not bump the revision");

    // A delete of nothing.
    let d = kv.delete_range(del_req(prefix("nothing/"))).await.expect("delete succeeds");
    assert_eq!((d.deleted, d.revision), (0, r0));
    assert_eq!(kv.current_revision(), r0, "deleting nothing does not bump the revision");

    assert_eq!(put(kv, "k", "w").await, r0 + 1, "the next write takes the next revision");
}

#[tokio::test]
async fn no_write_no_revision() {
    let (store, _dir) = open();
    no_change_no_revision(&store).await;
}

// ---- range -------------------------------------------------------------------------------

const KEYS: [&str; 8] = ["a", "b", "c", "foo", "foo/1", "foo/2", "fop", "z"];

async fn seed<B: KvBackend>(kv: &B) {
    for k in KEYS {
        put(kv, k, &format!("v-{k}")).await;
    }
}

async fn range_spans<B: KvBackend>(kv: &B) {
    seed(kv).await;
    let r = RangeRequest::new;

    let one = kv.range(r(single("foo"))).await.expect("range succeeds");
    assert_eq!(one.kvs.len(), 1);
    assert_eq!((s(&one.kvs[0].key).as_str(), s(&one.kvs[0].value).as_str()), ("foo", "v-foo"));
    assert_eq!(one.count, 1);
    assert_eq!(keys(kv, r(single("fo"))).await, Vec::<String>::new(), "a single key is not a prefix");

    assert_eq!(keys(kv, r(span("b", "foo"))).await, ["b", "c"], "[key, range_end) excludes the end");
    assert_eq!(keys(kv, r(prefix("foo"))).await, ["foo", "foo/1", "foo/2"]);
    assert_eq!(keys(kv, r(prefix("foo/"))).await, ["foo/1", "foo/2"]);
    assert_eq!(keys(kv, r(from_key("foo/"))).await, ["foo/1", "foo/2", "fop", "z"], "range_end \\0 reads to the end");
    assert_eq!(keys(kv, r(all_keys())).await, KEYS);

    let backwards = kv.range(r(span("z", "a"))).await.expect("range succeeds");
    assert!(backwards.kvs.is_empty(), "range_end before key is an empty span");
    assert_eq!(backwards.count, 0);
    let equal = kv.range(r(span("c", "c"))).await.expect("range succeeds");
    assert!(equal.kvs.is_empty(), "range_end == key is an empty span");
}

#[tokio::test]
async fn range_spans_single_range_prefix_fromkey_all() {
    let (store, _dir) = open();
    range_spans(&store).await;
}

async fn range_limit_count_only_keys_only<B: KvBackend>(kv: &B) {
    seed(kv).await;

    let resp = kv.range(RangeRequest { limit: 3, ..RangeRequest::new(all_keys()) }).await.expect("range succeeds");
    assert_eq!(resp.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(resp.more, "five more keys matched");
    assert_eq!(resp.count, 8, "count ignores the limit");

    let resp = kv.range(RangeRequest { limit: 8, ..RangeRequest::new(all_keys()) }).await.expect("range succeeds");
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (8, false, 8), "a limit equal to the matches leaves nothing more");

    let resp = kv.range(RangeRequest { limit: 2, ..RangeRequest::new(prefix("foo")) }).await.expect("range succeeds");
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));

    let resp = kv.range(RangeRequest { count_only: true, ..RangeRequest::new(prefix("foo")) }).await.expect("range succeeds");
    assert!(resp.kvs.is_empty(), "count_only returns no pairs");
    assert_eq!(resp.count, 3);
    assert_eq!(resp.revision, kv.current_revision());

    let resp = kv.range(RangeRequest { keys_only: true, ..RangeRequest::new(prefix("foo")) }).await.expect("range succeeds");
    assert_eq!(resp.kvs.len(), 3);
    for got in &resp.kvs {
        assert!(got.value.is_empty(), "keys_only returned a value for {:?}", got.key);
        let full = get(kv, &s(&got.key)).await.expect("key exists");
        assert_eq!((got.mod_revision, got.create_revision, got.version), (full.mod_revision, full.create_revision, full.version));
    }
}

#[tokio::test]
async fn range_limit_more_count_keys_only() {
    let (store, _dir) = open();
    range_limit_count_only_keys_only(&store).await;
}

async fn range_history<B: KvBackend>(kv: &B) {
    put(kv, "h/a", "1").await;
    let r1 = put(kv, "h/b", "1").await;
    put(kv, "h/a", "2").await;
    put(kv, "h/c", "1").await;
    let r2 = kv.delete_range(del_req(single("h/b"))).await.expect("delete succeeds").revision;

    let at = kv.range(RangeRequest { revision: r1, ..RangeRequest::new(prefix("h/")) }).await.expect("historical read succeeds");
    assert_eq!(
        at.kvs.iter().map(|kv| (s(&kv.key), s(&kv.value))).collect::<Vec<_>>(),
        [("h/a".into(), "1".into()), ("h/b".into(), "1".into())]
    );
    assert_eq!(at.kvs[0].version, 1);
    assert_eq!(at.revision, kv.current_revision(), "the header names the current revision, not the one read");

    let before_delete = keys(kv, RangeRequest { revision: r2 - 1, ..RangeRequest::new(prefix("h/")) }).await;
    assert_eq!(before_delete, ["h/a", "h/b", "h/c"]);
    let now = keys(kv, RangeRequest::new(prefix("h/"))).await;
    assert_eq!(now, ["h/a", "h/c"]);
    let counted =
        kv.range(RangeRequest { revision: r1, count_only: true, ..RangeRequest::new(prefix("h/")) }).await.expect("range succeeds");
    assert_eq!(counted.count, 2, "count_only at a past revision counts that revision's keys");
}

#[tokio::test]
async fn range_at_past_revision() {
    let (store, _dir) = open();
    range_history(&store).await;
}

/// Writes three keys whose orders by key, create, mod, version and value all differ:
///
/// | key  | create | mod  | version | value |
/// |------|--------|------|---------|-------|
/// | s/k1 | r0+3   | r0+6 | 2       | q     |
/// | s/k2 | r0+1   | r0+5 | 3       | z     |
/// | s/k3 | r0+2   | r0+2 | 1       | x     |
async fn seed_sortable<B: KvBackend>(kv: &B) -> i64 {
    let r0 = kv.current_revision();
    put(kv, "s/k2", "m").await;
    put(kv, "s/k3", "x").await;
    put(kv, "s/k1", "a").await;
    put(kv, "s/k2", "m2").await;
    put(kv, "s/k2", "z").await;
    put(kv, "s/k1", "q").await;
    r0
}

async fn sorted<B: KvBackend>(kv: &B, order: SortOrder, target: SortTarget, limit: i64) -> Vec<String> {
    keys(kv, RangeRequest { sort_order: order, sort_target: target, limit, ..RangeRequest::new(prefix("s/")) }).await
}

async fn range_sorting<B: KvBackend>(kv: &B) {
    put(kv, "other", "1").await;
    seed_sortable(kv).await;
    use SortOrder::{Ascend, Descend};
    use SortTarget::{Create, Key, Mod, Value, Version};

    assert_eq!(sorted(kv, Ascend, Key, 0).await, ["s/k1", "s/k2", "s/k3"]);
    assert_eq!(sorted(kv, Descend, Key, 0).await, ["s/k3", "s/k2", "s/k1"]);
    assert_eq!(sorted(kv, Ascend, Create, 0).await, ["s/k2", "s/k3", "s/k1"]);
    assert_eq!(sorted(kv, Descend, Create, 0).await, ["s/k1", "s/k3", "s/k2"]);
    assert_eq!(sorted(kv, Ascend, Mod, 0).await, ["s/k3", "s/k2", "s/k1"]);
    assert_eq!(sorted(kv, Descend, Mod, 0).await, ["s/k1", "s/k2", "s/k3"]);
    assert_eq!(sorted(kv, Ascend, Version, 0).await, ["s/k3", "s/k1", "s/k2"]);
    assert_eq!(sorted(kv, Descend, Version, 0).await, ["s/k2", "s/k1", "s/k3"]);
    assert_eq!(sorted(kv, Ascend, Value, 0).await, ["s/k1", "s/k3", "s/k2"]);
    assert_eq!(sorted(kv, Descend, Value, 0).await, ["s/k2", "s/k3", "s/k1"]);

    // The limit applies after sorting.
    assert_eq!(sorted(kv, Descend, Key, 1).await, ["s/k3"]);
    assert_eq!(sorted(kv, Descend, Mod, 2).await, ["s/k1", "s/k2"]);
    assert_eq!(sorted(kv, Ascend, Value, 2).await, ["s/k1", "s/k3"]);
    let resp = kv
        .range(RangeRequest { sort_order: Descend, sort_target: Version, limit: 1, ..RangeRequest::new(prefix("s/")) })
        .await
        .expect("range succeeds");
    assert_eq!((resp.more, resp.count), (true, 3));

    // Sorting by value with keys_only still sorts by the (unreturned) value.
    let resp = kv
        .range(RangeRequest { sort_order: Ascend, sort_target: Value, keys_only: true, ..RangeRequest::new(prefix("s/")) })
        .await
        .expect("range succeeds");
    assert_eq!(resp.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(), ["s/k1", "s/k3", "s/k2"]);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));

    // Descending by key over the whole key space, with a limit.
    let resp = kv.range(RangeRequest { sort_order: Descend, limit: 2, ..RangeRequest::new(all_keys()) }).await.expect("range succeeds");
    assert_eq!(resp.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(), ["s/k3", "s/k2"]);
    assert_eq!((resp.more, resp.count), (true, 4));
}

#[tokio::test]
async fn range_sort_orders_and_targets() {
    let (store, _dir) = open();
    range_sorting(&store).await;
}

async fn range_revision_filters<B: KvBackend>(kv: &B) {
    let r0 = seed_sortable(kv).await;
    let req = |f: &dyn Fn(&mut RangeRequest)| {
        let mut r = RangeRequest::new(prefix("s/"));
        f(&mut r);
        r
    };
    assert_eq!(keys(kv, req(&|r| r.min_mod_revision = r0 + 5)).await, ["s/k1", "s/k2"]);
    assert_eq!(keys(kv, req(&|r| r.max_mod_revision = r0 + 5)).await, ["s/k2", "s/k3"]);
    assert_eq!(keys(kv, req(&|r| r.min_create_revision = r0 + 2)).await, ["s/k1", "s/k3"]);
    assert_eq!(keys(kv, req(&|r| r.max_create_revision = r0 + 1)).await, ["s/k2"]);
    assert_eq!(
        keys(
            kv,
            req(&|r| {
                r.min_mod_revision = r0 + 2;
                r.max_mod_revision = r0 + 5;
                r.min_create_revision = r0 + 2;
            })
        )
        .await,
        ["s/k3"]
    );
    assert!(keys(kv, req(&|r| r.min_mod_revision = r0 + 7)).await.is_empty());
}

#[tokio::test]
async fn range_min_max_revision_filters() {
    let (store, _dir) = open();
    range_revision_filters(&store).await;
}

/// etcd (server/etcdserver/txn/range.go) sets `more` only when the pairs left after the
/// filters exceed `limit`, and reports as `count` every key in the span.
async fn range_filters_more_and_count<B: KvBackend>(kv: &B) {
    let r0 = seed_sortable(kv).await;
    let resp = kv.range(RangeRequest { min_mod_revision: r0 + 5, ..RangeRequest::new(prefix("s/")) }).await.expect("range succeeds");
    assert_eq!(resp.kvs.len(), 2);
    assert_eq!(resp.count, 3, "count is every key in the span, before the filters");
    assert!(!resp.more, "no limit was set, so nothing more can be left out");
    let resp =
        kv.range(RangeRequest { min_mod_revision: r0 + 5, limit: 1, ..RangeRequest::new(prefix("s/")) }).await.expect("range succeeds");
    assert_eq!(resp.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(), ["s/k1"]);
    assert!(resp.more, "two pairs passed the filter and the limit is one");
    let resp =
        kv.range(RangeRequest { min_mod_revision: r0 + 5, limit: 2, ..RangeRequest::new(prefix("s/")) }).await.expect("range succeeds");
    assert!(!resp.more, "both filtered pairs fit in the limit");
}

#[tokio::test]
async fn range_filters_set_more_only_past_the_limit() {
    let (store, _dir) = open();
    range_filters_more_and_count(&store).await;
}

// ---- put ---------------------------------------------------------------------------------

async fn put_prev_kv<B: KvBackend>(kv: &B) {
    let first = kv.put(PutRequest { prev_kv: true, ..put_req("p", "1") }).await.expect("put succeeds");
    assert_eq!(first.prev_kv, None, "no previous version of a new key");
    let second = kv.put(PutRequest { prev_kv: true, ..put_req("p", "2") }).await.expect("put succeeds");
    let prev = second.prev_kv.expect("the previous version is returned");
    assert_eq!((s(&prev.key).as_str(), s(&prev.value).as_str()), ("p", "1"));
    assert_eq!((prev.version, prev.mod_revision, prev.create_revision), (1, first.revision, first.revision));
    let third = kv.put(put_req("p", "3")).await.expect("put succeeds");
    assert_eq!(third.prev_kv, None, "prev_kv only when asked");
    delete(kv, single("p")).await;
    let again = kv.put(PutRequest { prev_kv: true, ..put_req("p", "4") }).await.expect("put succeeds");
    assert_eq!(again.prev_kv, None, "a deleted key has no previous version");
}

#[tokio::test]
async fn put_returns_prev_kv() {
    let (store, _dir) = open();
    put_prev_kv(&store).await;
}

async fn put_lease_and_ignore_flags<B: KvBackend>(kv: &B) {
    let l1 = kv.lease_grant(0, 60).await.expect("grant succeeds").id;
    let l2 = kv.lease_grant(0, 60).await.expect("grant succeeds").id;

    // Attach.
    put_lease(kv, "k", "v1", l1).await;
    assert_eq!(get(kv, "k").await.expect("k exists").lease, l1);
    assert_eq!(kv.lease_time_to_live(l1, true).await.expect("ttl succeeds").keys, [b("k")]);

    // ignore_value keeps the value and moves the key to the new lease.
    let r = kv.put(PutRequest { key: b("k"), ignore_value: true, lease: l2, ..Default::default() }).await.expect("put succeeds").revision;
    let k = get(kv, "k").await.expect("k exists");
    assert_eq!((s(&k.value).as_str(), k.lease, k.version, k.mod_revision), ("v1", l2, 2, r));
    assert!(kv.lease_time_to_live(l1, true).await.expect("ttl succeeds").keys.is_empty(), "the key left its old lease");
    assert_eq!(kv.lease_time_to_live(l2, true).await.expect("ttl succeeds").keys, [b("k")]);

    // ignore_lease keeps the lease and takes the new value.
    kv.put(PutRequest { key: b("k"), value: b("v2"), ignore_lease: true, ..Default::default() }).await.expect("put succeeds");
    let k = get(kv, "k").await.expect("k exists");
    assert_eq!((s(&k.value).as_str(), k.lease, k.version), ("v2", l2, 3));

    // A plain put without a lease detaches the key: revoking the lease no longer deletes it.
    put(kv, "k", "v3").await;
    assert_eq!(get(kv, "k").await.expect("k exists").lease, 0);
    kv.lease_revoke(l2).await.expect("revoke succeeds");
    assert_eq!(value(kv, "k").await.as_deref(), Some("v3"), "a detached key survives its old lease");
}

#[tokio::test]
async fn put_lease_ignore_value_ignore_lease() {
    let (store, _dir) = open();
    put_lease_and_ignore_flags(&store).await;
}

async fn put_flag_errors<B: KvBackend>(kv: &B) {
    let lease = kv.lease_grant(0, 60).await.expect("grant succeeds").id;
    put(kv, "present", "v").await;
    let r0 = kv.current_revision();

    let cases: Vec<(&str, PutRequest, StoreError)> = vec![
        (
            "ignore_value on a missing key",
            PutRequest { key: b("absent"), ignore_value: true, ..Default::default() },
            StoreError::KeyNotFound,
        ),
        (
            "ignore_lease on a missing key",
            PutRequest { key: b("absent"), value: b("v"), ignore_lease: true, ..Default::default() },
            StoreError::KeyNotFound,
        ),
        (
            "ignore_value with a value",
            PutRequest { key: b("present"), value: b("new"), ignore_value: true, ..Default::default() },
            StoreError::ValueProvided,
        ),
        (
            "ignore_value with a value, key missing",
            PutRequest { key: b("absent"), value: b("new"), ignore_value: true, ..Default::default() },
            StoreError::ValueProvided,
        ),
        (
            "ignore_lease with a lease",
            PutRequest { key: b("present"), value: b("new"), lease, ignore_lease: true, ..Default::default() },
            StoreError::LeaseProvided,
        ),
    ];
    for (what, req, want) in cases {
        let err = kv.put(req).await.expect_err(what);
        assert_eq!(err, want, "{what}");
        assert_eq!(kv.current_revision(), r0, "{what}: nothing was written");
        assert_eq!(get(kv, "absent").await, None, "{what}: nothing was created");
        assert_eq!(value(kv, "present").await.as_deref(), Some("v"), "{what}: nothing was changed");
    }
}

#[tokio::test]
async fn put_ignore_flag_errors() {
    let (store, _dir) = open();
    put_flag_errors(&store).await;
}

// ---- delete ------------------------------------------------------------------------------

async fn delete_range_prev_kv<B: KvBackend>(kv: &B) {
    seed(kv).await;
    let r0 = kv.current_revision();

    let d = kv.delete_range(DeleteRangeRequest { span: single("a"), prev_kv: true }).await.expect("delete succeeds");
    assert_eq!((d.deleted, d.revision), (1, r0 + 1));
    assert_eq!(d.prev_kvs.len(), 1);
    assert_eq!((s(&d.prev_kvs[0].key).as_str(), s(&d.prev_kvs[0].value).as_str(), d.prev_kvs[0].version), ("a", "v-a", 1));

    let d = kv.delete_range(DeleteRangeRequest { span: prefix("foo"), prev_kv: true }).await.expect("delete succeeds");
    assert_eq!((d.deleted, d.revision), (3, r0 + 2), "one revision for the whole range");
    assert_eq!(
        d.prev_kvs.iter().map(|kv| (s(&kv.key), s(&kv.value))).collect::<Vec<_>>(),
        [("foo".to_string(), "v-foo".to_string()), ("foo/1".into(), "v-foo/1".into()), ("foo/2".into(), "v-foo/2".into())]
    );

    let d = kv.delete_range(DeleteRangeRequest { span: span("b", "d"), prev_kv: false }).await.expect("delete succeeds");
    assert_eq!(d.deleted, 2);
    assert!(d.prev_kvs.is_empty(), "prev_kvs only when asked");

    let d = kv.delete_range(DeleteRangeRequest { span: single("a"), prev_kv: true }).await.expect("delete succeeds");
    assert_eq!((d.deleted, d.prev_kvs.len(), d.revision), (0, 0, r0 + 3));

    assert_eq!(keys(kv, RangeRequest::new(all_keys())).await, ["fop", "z"]);
    let d = kv.delete_range(DeleteRangeRequest { span: all_keys(), prev_kv: false }).await.expect("delete succeeds");
    assert_eq!((d.deleted, d.revision), (2, r0 + 4));
    assert!(dump(kv).await.is_empty());
    assert_eq!(keys(kv, RangeRequest { revision: r0, ..RangeRequest::new(all_keys()) }).await, KEYS, "history still has them");
}

#[tokio::test]
async fn delete_range_with_prev_kv_and_counts() {
    let (store, _dir) = open();
    delete_range_prev_kv(&store).await;
}
