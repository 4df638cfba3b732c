//! Watches: live events, history replay, spans, filters, `prev_kv`, compaction, and a watcher
//! that falls behind the broadcast buffer. Checked through [`KvBackend`] and [`WatchStream`].

mod common;

use daas_store::{Event, EventKind, KeySpan, KvBackend, RequestOp, Revision, StoreError, TxnRequest, WatchRequest, WatchStream};

use common::*;

fn wreq(span: KeySpan, start_revision: Revision) -> WatchRequest {
    WatchRequest { span, start_revision, prev_kv: false, no_put: false, no_delete: false }
}

/// `(kind, key, value, mod_revision)` of each event, for compact assertions.
fn brief(evs: &[Event]) -> Vec<(EventKind, String, String, Revision)> {
    evs.iter().map(|e| (e.kind, s(&e.kv.key), s(&e.kv.value), e.kv.mod_revision)).collect()
}

/// Puts a sentinel key into the watched span and checks it is the very next event: nothing
/// was delivered twice and nothing outside the span slipped in.
async fn assert_drained<B: KvBackend>(kv: &B, w: &mut B::Watch, sentinel: &str) {
    let rev = put(kv, sentinel, "end").await;
    let evs = next_group(w, 5).await;
    assert_eq!(brief(&evs), [(EventKind::Put, sentinel.to_string(), "end".to_string(), rev)], "unexpected events before the sentinel");
}

async fn watch_from_now<B: KvBackend>(kv: &B) {
    put(kv, "w/old", "before the watch").await;
    let mut w = kv.watch(wreq(prefix("w/"), 0)).await.expect("watch succeeds");
    let r0 = kv.current_revision();

    put(kv, "w/a", "1").await;
    put(kv, "elsewhere", "x").await;
    put(kv, "w/b", "2").await;
    put(kv, "w/a", "3").await;
    delete(kv, single("w/a")).await;

    let evs = next_n(&mut w, 4, 5).await;
    use EventKind::{Delete, Put};
    assert_eq!(
        brief(&evs),
        [
            (Put, "w/a".to_string(), "1".to_string(), r0 + 1),
            (Put, "w/b".into(), "2".into(), r0 + 3),
            (Put, "w/a".into(), "3".into(), r0 + 4),
            (Delete, "w/a".into(), "".into(), r0 + 5),
        ]
    );
    assert_eq!((evs[2].kv.version, evs[2].kv.create_revision), (2, r0 + 1), "events carry the key's metadata");
    assert!(evs.iter().all(|e| e.prev_kv.is_none()), "prev_kv only when asked");
    assert_drained(kv, &mut w, "w/zz").await;
}

#[tokio::test]
async fn watch_from_now_sees_puts_and_deletes_in_order() {
    let (store, _dir) = open();
    watch_from_now(&store).await;
}

async fn watch_from_past<B: KvBackend>(kv: &B) {
    let r1 = put(kv, "h/a", "1").await;
    put(kv, "h/a", "2").await;
    put(kv, "h/b", "1").await;
    delete(kv, single("h/a")).await;

    let mut w = kv.watch(wreq(prefix("h/"), r1 + 1)).await.expect("watch succeeds");
    use EventKind::{Delete, Put};
    let replay = next_n(&mut w, 3, 5).await;
    assert_eq!(
        brief(&replay),
        [
            (Put, "h/a".to_string(), "2".to_string(), r1 + 1),
            (Put, "h/b".into(), "1".into(), r1 + 2),
            (Delete, "h/a".into(), "".into(), r1 + 3),
        ]
    );

    let live = put(kv, "h/c", "live").await;
    assert_eq!(brief(&next_group(&mut w, 5).await), [(Put, "h/c".to_string(), "live".to_string(), live)]);
    assert_drained(kv, &mut w, "h/zz").await;

    // Starting at revision 1 replays everything (a fresh store is at 1, so writes start at 2).
    let mut all = kv.watch(wreq(all_keys(), 1)).await.expect("watch succeeds");
    let evs = next_n(&mut all, 6, 5).await;
    let revs: Vec<Revision> = evs.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, (2..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_from_past_revision_replays_then_goes_live() {
    let (store, _dir) = open();
    watch_from_past(&store).await;
}

async fn watch_spans<B: KvBackend>(kv: &B) {
    let mut single_w = kv.watch(wreq(single("foo"), 0)).await.expect("watch succeeds");
    let mut prefix_w = kv.watch(wreq(prefix("foo"), 0)).await.expect("watch succeeds");
    let mut range_w = kv.watch(wreq(span("b", "foo/"), 0)).await.expect("watch succeeds");
    for k in ["a", "b", "foo", "foo/1", "fop", "fo"] {
        put(kv, k, "v").await;
    }
    let keys_of = |evs: Vec<Event>| evs.iter().map(|e| s(&e.kv.key)).collect::<Vec<_>>();
    assert_eq!(keys_of(next_n(&mut single_w, 1, 5).await), ["foo"]);
    assert_eq!(keys_of(next_n(&mut prefix_w, 2, 5).await), ["foo", "foo/1"]);
    assert_eq!(keys_of(next_n(&mut range_w, 3, 5).await), ["b", "foo", "fo"]);
    // One put inside all three spans: it is the next event of each, so none saw extra events.
    let rev = put(kv, "foo", "end").await;
    for w in [&mut single_w, &mut prefix_w, &mut range_w] {
        assert_eq!(brief(&next_group(w, 5).await), [(EventKind::Put, "foo".to_string(), "end".to_string(), rev)]);
    }
}

#[tokio::test]
async fn watch_spans_single_prefix_range() {
    let (store, _dir) = open();
    watch_spans(&store).await;
}

async fn watch_prev_kv<B: KvBackend>(kv: &B) {
    let r0 = kv.current_revision();
    let mut live = kv.watch(WatchRequest { prev_kv: true, ..wreq(single("p"), 0) }).await.expect("watch succeeds");
    put(kv, "p", "1").await;
    put(kv, "p", "2").await;
    delete(kv, single("p")).await;
    put(kv, "p", "3").await;

    let check = |evs: &[Event]| {
        let prev: Vec<Option<(String, Revision, i64)>> =
            evs.iter().map(|e| e.prev_kv.as_ref().map(|p| (s(&p.value), p.mod_revision, p.version))).collect();
        assert_eq!(prev, [None, Some(("1".to_string(), r0 + 1, 1)), Some(("2".to_string(), r0 + 2, 2)), None], "prev_kv of each event");
    };
    check(&next_n(&mut live, 4, 5).await);

    // The same through history replay.
    let mut replay = kv.watch(WatchRequest { prev_kv: true, ..wreq(single("p"), r0 + 1) }).await.expect("watch succeeds");
    check(&next_n(&mut replay, 4, 5).await);
}

#[tokio::test]
async fn watch_with_prev_kv() {
    let (store, _dir) = open();
    watch_prev_kv(&store).await;
}

async fn watch_filters<B: KvBackend>(kv: &B) {
    let mut no_put = kv.watch(WatchRequest { no_put: true, ..wreq(prefix("f/"), 0) }).await.expect("watch succeeds");
    let mut no_delete = kv.watch(WatchRequest { no_delete: true, ..wreq(prefix("f/"), 0) }).await.expect("watch succeeds");
    put(kv, "f/a", "1").await;
    put(kv, "f/b", "1").await;
    delete(kv, single("f/a")).await;
    put(kv, "f/a", "2").await;
    delete(kv, prefix("f/")).await;

    let deletes = next_n(&mut no_put, 3, 5).await;
    assert!(deletes.iter().all(|e| e.kind == EventKind::Delete), "no_put delivered a put: {deletes:?}");
    assert_eq!(deletes.iter().map(|e| s(&e.kv.key)).collect::<Vec<_>>(), ["f/a", "f/a", "f/b"]);
    let puts = next_n(&mut no_delete, 3, 5).await;
    assert!(puts.iter().all(|e| e.kind == EventKind::Put), "no_delete delivered a delete: {puts:?}");
    assert_eq!(puts.iter().map(|e| s(&e.kv.value)).collect::<Vec<_>>(), ["1", "1", "2"]);

    // Nothing else was queued: the next event of each is the next change it may see.
    assert_drained(kv, &mut no_delete, "f/end").await;
    let r = kv.current_revision();
    delete(kv, single("f/end")).await;
    assert_eq!(brief(&next_group(&mut no_put, 5).await), [(EventKind::Delete, "f/end".to_string(), String::new(), r + 1)]);
}

#[tokio::test]
async fn watch_no_put_and_no_delete_filters() {
    let (store, _dir) = open();
    watch_filters(&store).await;
}

async fn watch_txn_events<B: KvBackend>(kv: &B) {
    put(kv, "t/gone", "x").await;
    let mut w = kv.watch(wreq(prefix("t/"), 0)).await.expect("watch succeeds");
    let resp = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put_req("t/a", "1")),
                RequestOp::DeleteRange(del_req(single("t/gone"))),
                RequestOp::Put(put_req("t/b", "2")),
            ],
            failure: vec![],
        })
        .await
        .expect("txn succeeds");
    let evs = next_n(&mut w, 3, 5).await;
    use EventKind::{Delete, Put};
    assert_eq!(
        brief(&evs),
        [
            (Put, "t/a".to_string(), "1".to_string(), resp.revision),
            (Delete, "t/gone".into(), "".into(), resp.revision),
            (Put, "t/b".into(), "2".into(), resp.revision),
        ]
    );
}

#[tokio::test]
async fn watch_sees_a_txn_as_one_revision() {
    let (store, _dir) = open();
    watch_txn_events(&store).await;
}

async fn watch_compacted<B: KvBackend>(kv: &B) {
    for i in 0..5 {
        put(kv, "c", &i.to_string()).await;
    }
    // A fresh store is at revision 1, so the puts take revisions 2..=6.
    // A watcher from revision 3, created before the compaction, has not replayed anything yet.
    let mut early = kv.watch(wreq(single("c"), 3)).await.expect("watch succeeds");
    kv.compact(5).await.expect("compaction succeeds");

    let err = kv.watch(wreq(single("c"), 4)).await.map(|_| ()).expect_err("history below the compaction is gone");
    assert_eq!(err, StoreError::Compacted { compact_revision: 5 });
    assert_eq!(
        next_error(&mut early, 5).await,
        StoreError::Compacted { compact_revision: 5 },
        "the history the early watcher needed was compacted"
    );

    // At the compaction point and from now are fine.
    let mut at = kv.watch(wreq(single("c"), 5)).await.expect("watch at the compaction point succeeds");
    assert_eq!(
        brief(&next_n(&mut at, 2, 5).await),
        [(EventKind::Put, "c".to_string(), "3".to_string(), 5), (EventKind::Put, "c".into(), "4".into(), 6)]
    );
}

#[tokio::test]
async fn watch_below_compaction_is_refused() {
    let (store, _dir) = open();
    watch_compacted(&store).await;
}

async fn watcher_falls_behind<B: KvBackend>(kv: &B) {
    const COMMITS: usize = 3000;
    let mut w = kv.watch(wreq(prefix("lag/"), 0)).await.expect("watch succeeds");
    let r0 = kv.current_revision();
    // One commit per put, far more than the broadcast buffer holds, while nobody polls.
    for i in 0..COMMITS {
        put(kv, &format!("lag/{:02}", i % 50), &i.to_string()).await;
    }
    let evs = next_n(&mut w, COMMITS, 20).await;
    assert_eq!(evs.len(), COMMITS, "every event exactly once");
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.kind, EventKind::Put);
        assert_eq!(e.kv.mod_revision, r0 + 1 + i as Revision, "event {i} out of order or missing");
        assert_eq!((s(&e.kv.key), s(&e.kv.value)), (format!("lag/{:02}", i % 50), i.to_string()));
    }
    assert_drained(kv, &mut w, "lag/end").await;
}

#[tokio::test]
async fn a_lagging_watcher_gets_every_event_once_in_order() {
    let (store, _dir) = open();
    watcher_falls_behind(&store).await;
}

/// The watcher sees the store's revision move even for commits outside its span.
async fn synced_revision_advances<B: KvBackend>(kv: &B) {
    let mut w = kv.watch(wreq(single("mine"), 0)).await.expect("watch succeeds");
    let r = put(kv, "other", "x").await;
    let mine = put(kv, "mine", "y").await;
    assert_eq!(next_group(&mut w, 5).await.len(), 1);
    assert!(w.synced_revision() >= mine && mine > r);
}

#[tokio::test]
async fn watch_synced_revision_follows_commits() {
    let (store, _dir) = open();
    synced_revision_advances(&store).await;
}
