//! Transactions: compares, branches, nesting, reads inside a txn, and the requests a txn
//! rejects without storing anything. Checked through [`KvBackend`].

mod common;

use daas_store::{
    Compare, CompareResult, CompareTarget, KeySpan, KvBackend, PutRequest, RangeRequest, RequestOp, ResponseOp, Revision, StoreError,
    TxnRequest,
};

use common::*;

fn cmp(span: KeySpan, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { span, result, target }
}

/// Runs `c` twice: as a read-only txn and as a txn that writes `res` in either branch (the
/// two go through different code paths). Both must agree; returns the outcome.
async fn holds<B: KvBackend>(kv: &B, c: &Compare) -> bool {
    let read = kv.txn(TxnRequest { compare: vec![c.clone()], success: vec![], failure: vec![] }).await.expect("read-only txn succeeds");
    let write = kv
        .txn(TxnRequest {
            compare: vec![c.clone()],
            success: vec![RequestOp::Put(put_req("res", "success"))],
            failure: vec![RequestOp::Put(put_req("res", "failure"))],
        })
        .await
        .expect("writing txn succeeds");
    assert_eq!(read.succeeded, write.succeeded, "read-only and writing txns disagree on {c:?}");
    let want = if write.succeeded { "success" } else { "failure" };
    assert_eq!(value(kv, "res").await.as_deref(), Some(want), "the branch taken for {c:?} did not run");
    write.succeeded
}

async fn compares<B: KvBackend>(kv: &B) {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};

    let lease = kv.lease_grant(7, 60).await.expect("grant succeeds").id;
    let created = put(kv, "k", "v").await;
    let modified = put_lease(kv, "k", "w", lease).await;
    let k = || single("k");

    let cases: Vec<(Compare, bool)> = vec![
        (cmp(k(), Equal, Value(b("w"))), true),
        (cmp(k(), Equal, Value(b("v"))), false),
        (cmp(k(), NotEqual, Value(b("v"))), true),
        (cmp(k(), NotEqual, Value(b("w"))), false),
        (cmp(k(), Greater, Value(b("a"))), true),
        (cmp(k(), Greater, Value(b("z"))), false),
        (cmp(k(), Less, Value(b("z"))), true),
        (cmp(k(), Less, Value(b("w"))), false),
        (cmp(k(), Equal, Version(2)), true),
        (cmp(k(), NotEqual, Version(2)), false),
        (cmp(k(), Greater, Version(1)), true),
        (cmp(k(), Less, Version(3)), true),
        (cmp(k(), Less, Version(2)), false),
        (cmp(k(), Equal, Create(created)), true),
        (cmp(k(), Equal, Create(modified)), false),
        (cmp(k(), Less, Create(modified)), true),
        (cmp(k(), Greater, Create(created - 1)), true),
        (cmp(k(), Equal, Mod(modified)), true),
        (cmp(k(), Equal, Mod(created)), false),
        (cmp(k(), Greater, Mod(created)), true),
        (cmp(k(), Less, Mod(modified)), false),
        (cmp(k(), NotEqual, Mod(created)), true),
        (cmp(k(), Equal, Lease(lease)), true),
        (cmp(k(), NotEqual, Lease(0)), true),
        (cmp(k(), Less, Lease(lease + 1)), true),
        (cmp(k(), Greater, Lease(lease)), false),
        // A missing key: every value compare fails; version, create, mod and lease are 0.
        (cmp(single("missing"), Equal, Value(b(""))), false),
        (cmp(single("missing"), NotEqual, Value(b("x"))), false),
        (cmp(single("missing"), Less, Value(b("x"))), false),
        (cmp(single("missing"), Equal, Version(0)), true),
        (cmp(single("missing"), Greater, Version(0)), false),
        (cmp(single("missing"), Less, Version(1)), true),
        (cmp(single("missing"), Equal, Create(0)), true),
        (cmp(single("missing"), Equal, Mod(0)), true),
        (cmp(single("missing"), Equal, Lease(0)), true),
    ];
    for (c, want) in &cases {
        assert_eq!(holds(kv, c).await, *want, "{c:?}");
    }

    // Several compares: all must hold.
    let both = TxnRequest {
        compare: vec![cmp(k(), Equal, Value(b("w"))), cmp(k(), Equal, Version(2))],
        success: vec![RequestOp::Put(put_req("multi", "yes"))],
        failure: vec![RequestOp::Put(put_req("multi", "no"))],
    };
    assert!(kv.txn(both.clone()).await.expect("txn succeeds").succeeded);
    let mut one_fails = both;
    one_fails.compare.push(cmp(k(), Equal, Version(5)));
    assert!(!kv.txn(one_fails).await.expect("txn succeeds").succeeded);
    assert_eq!(value(kv, "multi").await.as_deref(), Some("no"));
}

#[tokio::test]
async fn compare_targets_and_results() {
    let (store, _dir) = open();
    compares(&store).await;
}

async fn compare_over_a_range<B: KvBackend>(kv: &B) {
    for k in ["p/a", "p/b", "p/c"] {
        put(kv, k, "same").await;
    }
    let c = cmp(prefix("p/"), CompareResult::Equal, CompareTarget::Value(b("same")));
    assert!(holds(kv, &c).await, "every key in the range has the value");
    put(kv, "p/b", "different").await;
    assert!(!holds(kv, &c).await, "one key in the range differs");
    let v = cmp(prefix("p/"), CompareResult::Less, CompareTarget::Version(3));
    assert!(holds(kv, &v).await);
}

#[tokio::test]
async fn compare_over_a_key_range() {
    let (store, _dir) = open();
    compare_over_a_range(&store).await;
}

async fn branches<B: KvBackend>(kv: &B) {
    put(kv, "flag", "on").await;
    let txn = |want: &str| TxnRequest {
        compare: vec![cmp(single("flag"), CompareResult::Equal, CompareTarget::Value(b(want)))],
        success: vec![RequestOp::Put(put_req("out", "success")), RequestOp::Range(RangeRequest::new(single("flag")))],
        failure: vec![RequestOp::DeleteRange(del_req(single("flag"))), RequestOp::Put(put_req("out", "failure"))],
    };

    let r0 = kv.current_revision();
    let ok = kv.txn(txn("on")).await.expect("txn succeeds");
    assert!(ok.succeeded);
    assert_eq!(ok.revision, r0 + 1);
    assert_eq!(ok.responses.len(), 2);
    assert!(matches!(&ok.responses[0], ResponseOp::Put(p) if p.revision == r0 + 1));
    match &ok.responses[1] {
        ResponseOp::Range(r) => assert_eq!(r.kvs.iter().map(|kv| s(&kv.value)).collect::<Vec<_>>(), ["on"]),
        other => panic!("expected a range response, got {other:?}"),
    }
    assert_eq!(value(kv, "out").await.as_deref(), Some("success"));
    assert_eq!(value(kv, "flag").await.as_deref(), Some("on"), "the failure branch did not run");

    let bad = kv.txn(txn("off")).await.expect("txn succeeds");
    assert!(!bad.succeeded);
    assert_eq!(bad.revision, r0 + 2);
    match &bad.responses[..] {
        [ResponseOp::DeleteRange(d), ResponseOp::Put(_)] => assert_eq!(d.deleted, 1),
        other => panic!("expected delete then put, got {other:?}"),
    }
    assert_eq!(value(kv, "out").await.as_deref(), Some("failure"));
    assert_eq!(get(kv, "flag").await, None);
}

#[tokio::test]
async fn success_and_failure_branches() {
    let (store, _dir) = open();
    branches(&store).await;
}

async fn nested_and_reads_see_own_writes<B: KvBackend>(kv: &B) {
    put(kv, "n/old", "x").await;
    let r0 = kv.current_revision();
    let inner = TxnRequest {
        // Compares are decided before the txn runs, as etcd does: n/a does not exist yet.
        compare: vec![cmp(single("n/a"), CompareResult::Equal, CompareTarget::Version(0))],
        success: vec![RequestOp::Put(put_req("n/b", "2")), RequestOp::Range(RangeRequest::new(prefix("n/")))],
        failure: vec![RequestOp::Put(put_req("n/never", "!"))],
    };
    let resp = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put_req("n/a", "1")),
                RequestOp::Range(RangeRequest::new(single("n/a"))),
                RequestOp::DeleteRange(del_req(single("n/old"))),
                RequestOp::Txn(inner),
                RequestOp::Range(RangeRequest { count_only: true, ..RangeRequest::new(prefix("n/")) }),
            ],
            failure: vec![],
        })
        .await
        .expect("txn succeeds");
    assert_eq!(resp.revision, r0 + 1);
    assert_eq!(kv.current_revision(), r0 + 1, "nested writes share the outer txn's revision");

    let [ResponseOp::Put(_), ResponseOp::Range(own), ResponseOp::DeleteRange(del), ResponseOp::Txn(nested), ResponseOp::Range(count)] =
        &resp.responses[..]
    else {
        panic!("unexpected responses {:?}", resp.responses);
    };
    assert_eq!(own.kvs.len(), 1, "a range in a txn sees the txn's earlier put");
    assert_eq!((s(&own.kvs[0].value).as_str(), own.kvs[0].mod_revision, own.kvs[0].version), ("1", r0 + 1, 1));
    assert_eq!(del.deleted, 1);
    assert!(nested.succeeded, "the nested compare saw the state before the txn");
    let [ResponseOp::Put(_), ResponseOp::Range(inner_range)] = &nested.responses[..] else {
        panic!("unexpected nested responses {:?}", nested.responses);
    };
    assert_eq!(
        inner_range.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(),
        ["n/a", "n/b"],
        "the nested range sees both puts and the delete"
    );
    assert_eq!(count.count, 2);
    for r in [own.revision, del.revision, nested.revision, inner_range.revision, count.revision] {
        assert_eq!(r, r0 + 1, "nested responses report the txn's revision");
    }
    assert_eq!(get(kv, "n/never").await, None);
    assert_eq!(keys(kv, RangeRequest::new(prefix("n/"))).await, ["n/a", "n/b"]);
}

#[tokio::test]
async fn nested_txn_and_reads_inside_a_txn() {
    let (store, _dir) = open();
    nested_and_reads_see_own_writes(&store).await;
}

async fn read_only_txn_at_a_past_revision<B: KvBackend>(kv: &B) {
    let r1 = put(kv, "h", "1").await;
    put(kv, "h", "2").await;
    let resp = kv
        .txn(TxnRequest {
            compare: vec![cmp(single("h"), CompareResult::Equal, CompareTarget::Value(b("2")))],
            success: vec![RequestOp::Range(RangeRequest { revision: r1, ..RangeRequest::new(single("h")) })],
            failure: vec![],
        })
        .await
        .expect("txn succeeds");
    assert!(resp.succeeded);
    let [ResponseOp::Range(r)] = &resp.responses[..] else { panic!("unexpected {:?}", resp.responses) };
    assert_eq!(r.kvs.iter().map(|kv| s(&kv.value)).collect::<Vec<_>>(), ["1"]);
}

#[tokio::test]
async fn txn_range_at_past_revision() {
    let (store, _dir) = open();
    read_only_txn_at_a_past_revision(&store).await;
}

/// Sends `txn`, expects `want`, and checks that nothing was stored.
async fn rejected<B: KvBackend>(kv: &B, what: &str, txn: TxnRequest, want: StoreError) {
    let r0: Revision = kv.current_revision();
    let before = dump(kv).await;
    let err = kv.txn(txn).await.expect_err(what);
    assert_eq!(err, want, "{what}");
    assert_eq!(kv.current_revision(), r0, "{what}: the revision moved");
    assert_eq!(dump(kv).await, before, "{what}: the key space changed");
}

async fn rejected_txns_store_nothing<B: KvBackend>(kv: &B) {
    put(kv, "present", "v").await;
    let puts = |n: usize| (0..n).map(|i| RequestOp::Put(put_req(&format!("many/{i:03}"), "v"))).collect::<Vec<_>>();
    let txn = |success: Vec<RequestOp>| TxnRequest { compare: vec![], success, failure: vec![] };

    rejected(kv, "129 ops", txn(puts(129)), StoreError::TooManyOps).await;
    rejected(
        kv,
        "129 ops in the failure branch",
        TxnRequest { compare: vec![], success: vec![], failure: puts(129) },
        StoreError::TooManyOps,
    )
    .await;
    let too_many_compares = (0..129).map(|i| cmp(single(&format!("c{i}")), CompareResult::Equal, CompareTarget::Version(0))).collect();
    rejected(kv, "129 compares", TxnRequest { compare: too_many_compares, success: puts(1), failure: vec![] }, StoreError::TooManyOps)
        .await;

    rejected(
        kv,
        "the same key put twice",
        txn(vec![RequestOp::Put(put_req("dup", "1")), RequestOp::Put(put_req("dup", "2"))]),
        StoreError::DuplicateKey,
    )
    .await;
    rejected(
        kv,
        "a key put and deleted",
        txn(vec![RequestOp::Put(put_req("dup", "1")), RequestOp::DeleteRange(del_req(prefix("du")))]),
        StoreError::DuplicateKey,
    )
    .await;
    let nested_dup = TxnRequest { compare: vec![], success: vec![RequestOp::Put(put_req("dup", "2"))], failure: vec![] };
    rejected(
        kv,
        "a key put in a txn and its nested txn",
        txn(vec![RequestOp::Put(put_req("dup", "1")), RequestOp::Txn(nested_dup)]),
        StoreError::DuplicateKey,
    )
    .await;

    // Requests that only fail once the writer looks at the state: the earlier put must not stay.
    let ignore_missing = PutRequest { key: b("absent"), ignore_value: true, ..Default::default() };
    rejected(
        kv,
        "ignore_value on a missing key",
        txn(vec![RequestOp::Put(put_req("good", "1")), RequestOp::Put(ignore_missing)]),
        StoreError::KeyNotFound,
    )
    .await;
    let unknown_lease = PutRequest { lease: 999_999, ..put_req("leased", "1") };
    rejected(
        kv,
        "a put with an unknown lease",
        txn(vec![RequestOp::Put(put_req("good", "1")), RequestOp::Put(unknown_lease)]),
        StoreError::LeaseNotFound,
    )
    .await;
    let future = RangeRequest { revision: kv.current_revision() + 10, ..RangeRequest::new(single("present")) };
    rejected(
        kv,
        "a range at a future revision",
        txn(vec![RequestOp::Put(put_req("good", "1")), RequestOp::Range(future.clone())]),
        StoreError::FutureRevision,
    )
    .await;
    rejected(kv, "a read-only txn at a future revision", txn(vec![RequestOp::Range(future)]), StoreError::FutureRevision).await;
    let empty = put_req("", "v");
    rejected(kv, "a put with an empty key", txn(vec![RequestOp::Put(put_req("good", "1")), RequestOp::Put(empty)]), StoreError::EmptyKey)
        .await;

    // The largest txn allowed goes through, in one revision.
    let r0 = kv.current_revision();
    let resp = kv.txn(txn(puts(128))).await.expect("128 ops are allowed");
    assert_eq!(resp.revision, r0 + 1);
    assert_eq!(kv.range(RangeRequest { count_only: true, ..RangeRequest::new(prefix("many/")) }).await.expect("range succeeds").count, 128);
    // The same key in the two branches of one txn is fine: only one runs.
    kv.txn(TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put_req("dup", "s"))],
        failure: vec![RequestOp::Put(put_req("dup", "f"))],
    })
    .await
    .expect("a key in both branches is allowed");
    assert_eq!(value(kv, "dup").await.as_deref(), Some("s"));
}

#[tokio::test]
async fn rejected_txn_stores_nothing() {
    let (store, _dir) = open();
    rejected_txns_store_nothing(&store).await;
}

/// A compare over a range with no keys compares one absent key, as etcd does: `version > 0`
/// and any value compare fail, `create == 0` holds. "Does anything exist under this prefix"
/// guards depend on it.
#[tokio::test]
async fn compare_over_an_empty_range() {
    let (kv, _dir) = open();
    put(&kv, "other", "x").await;
    let cmp =
        |result, target| TxnRequest { compare: vec![Compare { span: span("a", "b"), result, target }], success: vec![], failure: vec![] };
    let ok = |t: TxnRequest| {
        let kv = kv.clone();
        async move { kv.txn(t).await.expect("txn succeeds").succeeded }
    };
    assert!(!ok(cmp(CompareResult::Greater, CompareTarget::Version(0))).await, "version > 0 over no keys");
    assert!(!ok(cmp(CompareResult::Equal, CompareTarget::Value(b("zzz")))).await, "a value compare over no keys");
    assert!(!ok(cmp(CompareResult::NotEqual, CompareTarget::Value(b("zzz")))).await, "a value compare over no keys");
    assert!(ok(cmp(CompareResult::Equal, CompareTarget::Create(0))).await, "create == 0 over no keys");
}
