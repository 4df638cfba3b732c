//! Compaction: what history stays readable, what goes, and that the compaction point survives
//! a restart.

mod common;

use std::sync::Arc;

use daas_store::{KvBackend, ManualClock, RangeRequest, RequestOp, StoreError, TxnRequest, WatchRequest};

use common::*;

/// Writes this history and compacts at `r0 + 5`:
///
/// | rev  | write        |
/// |------|--------------|
/// | r0+1 | put a = 1    |
/// | r0+2 | put a = 2    |
/// | r0+3 | put b = 1    |
/// | r0+4 | delete b     |
/// | r0+5 | put c = 1    |
/// | r0+6 | put a = 3    |
async fn compacted_history<B: KvBackend>(kv: &B) -> i64 {
    let r0 = kv.current_revision();
    put(kv, "a", "1").await;
    put(kv, "a", "2").await;
    put(kv, "b", "1").await;
    delete(kv, single("b")).await;
    put(kv, "c", "1").await;
    put(kv, "a", "3").await;
    assert_eq!(kv.compact(r0 + 5).await, Ok(r0 + 6));
    assert_eq!(kv.current_revision(), r0 + 6, "compaction does not take a revision");
    r0
}

async fn check_compacted<B: KvBackend>(kv: &B, r0: i64) {
    assert_eq!(kv.status().await.expect("status succeeds").compact_revision, r0 + 5);
    for rev in [r0 + 1, r0 + 3, r0 + 4] {
        let err = kv.range(RangeRequest { revision: rev, ..RangeRequest::new(all_keys()) }).await.expect_err("history below is gone");
        assert_eq!(err, StoreError::Compacted { compact_revision: r0 + 5 }, "read at {rev}");
    }

    // At the compaction point, every key live there is still readable, with its metadata.
    let at = kv.range(RangeRequest { revision: r0 + 5, ..RangeRequest::new(all_keys()) }).await.expect("the compaction point is readable");
    let got: Vec<_> = at.kvs.iter().map(|kv| (s(&kv.key), s(&kv.value), kv.mod_revision, kv.version)).collect();
    assert_eq!(got, [("a".to_string(), "2".to_string(), r0 + 2, 2), ("c".into(), "1".into(), r0 + 5, 1)], "b was deleted before the point");
    let now = dump(kv).await;
    assert_eq!(
        now.iter().map(|kv| (s(&kv.key), s(&kv.value), kv.version, kv.create_revision)).collect::<Vec<_>>(),
        [("a".to_string(), "3".to_string(), 3, r0 + 1), ("c".into(), "1".into(), 1, r0 + 5)]
    );

    // Replaying from the compaction point shows only what is retained: a's update after it.
    // b's put and delete are gone for good.
    let mut w = kv
        .watch(WatchRequest { span: all_keys(), start_revision: r0 + 5, prev_kv: false, no_put: false, no_delete: false })
        .await
        .expect("watch succeeds");
    let evs = next_n(&mut w, 2, 5).await;
    let seen: Vec<_> = evs.iter().map(|e| (s(&e.kv.key), e.kv.mod_revision)).collect();
    assert_eq!(seen, [("c".to_string(), r0 + 5), ("a".to_string(), r0 + 6)]);

    // A key whose history was compacted away starts a new generation when re-created.
    let rb = put(kv, "b", "again").await;
    let b = get(kv, "b").await.expect("b exists");
    assert_eq!((b.create_revision, b.version), (rb, 1));
}

#[tokio::test]
async fn compaction_keeps_the_live_version_and_drops_the_rest() {
    let (store, _dir) = open();
    let r0 = compacted_history(&store).await;
    check_compacted(&store, r0).await;
}

#[tokio::test]
async fn compaction_survives_reopen() {
    let dir = scratch();
    let provider = key_file(dir.path(), "kek");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = open_in(dir.path(), |_| {}, provider.clone(), clock.clone()).expect("store opens");
    let r0 = compacted_history(&store).await;
    let hash = KvBackend::hash_kv(&store, 0).await.expect("hash succeeds");
    drop(store);

    let store = open_in(dir.path(), |_| {}, provider, clock).expect("store reopens");
    assert_eq!(store.current_revision(), r0 + 6);
    assert_eq!(KvBackend::hash_kv(&store, 0).await.expect("hash succeeds"), hash, "the retained history is the same after a restart");
    assert_eq!(store.compact(r0 + 5).await, Err(StoreError::Compacted { compact_revision: r0 + 5 }));
    check_compacted(&store, r0).await;
}

/// A compaction and a txn whose historical read falls below it, folded into one commit: the txn
/// either runs first or fails as compacted, and a txn that fails stores nothing (its earlier put
/// is undone, and the next write does not collide with it).
#[tokio::test]
async fn txn_reading_below_a_compaction_in_the_same_batch() {
    let (kv, _dir) = open();
    put(&kv, "a", "1").await;
    put(&kv, "a", "2").await;
    let txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put_req("k", "v")), RequestOp::Range(RangeRequest { revision: 2, ..RangeRequest::new(single("a")) })],
        failure: vec![],
    };
    let (compacted, txn) = tokio::join!(kv.compact(3), kv.txn(txn));
    assert_eq!(compacted, Ok(3));
    match txn {
        // The txn ran first, or was rejected as compacted: both are etcd behaviour.
        Ok(_) => assert_eq!(value(&kv, "k").await.as_deref(), Some("v")),
        Err(e) => {
            assert_eq!(e, StoreError::Compacted { compact_revision: 3 });
            put(&kv, "b", "x").await;
            let all = kv.range(RangeRequest::new(all_keys())).await.expect("the key space is readable after a rejected txn");
            assert_eq!(all.kvs.iter().map(|kv| s(&kv.key)).collect::<Vec<_>>(), ["a", "b"], "the rejected txn's put is not stored");
        }
    }
}

/// Reads at the current revision never fail while the writer puts and compacts right up to the
/// newest revision: a read that chose its revision just before a compaction is served again
/// rather than answered "compacted" (or, worse, reported as a missing record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_reads_never_fail_under_concurrent_compaction() {
    let (kv, _dir) = open();
    put(&kv, "k", "0").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (kv, stop) = (kv.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = kv.range_now(&RangeRequest::new(single("k")));
                    assert!(r.as_ref().is_ok_and(|r| r.kvs.len() == 1), "a current read failed: {r:?}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 1..=1500 {
        let rev = put(&kv, "k", &i.to_string()).await;
        kv.compact(rev).await.expect("compaction at the newest revision");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|t| t.join().expect("reader did not panic")).sum();
    assert!(reads > 100, "the readers barely ran ({reads} reads)");
}

/// A history replay racing compactions either returns every revision it covers or fails as
/// compacted; it never silently skips revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_never_skips_revisions_under_concurrent_compaction() {
    let (kv, _dir) = open();
    let first = put(&kv, "h", "0").await;
    for i in 1..200 {
        put(&kv, "h", &i.to_string()).await;
    }
    let writer = {
        let kv = kv.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                let rev = put(&kv, "h", &format!("w{i}")).await;
                if i % 4 == 0 {
                    let _ = kv.compact(rev - 150).await;
                }
            }
        })
    };
    let mut replays = 0;
    while !writer.is_finished() {
        let from = kv.compact_revision().max(first);
        match kv.watch(WatchRequest { span: single("h"), start_revision: from, prev_kv: false, no_put: false, no_delete: false }).await {
            Err(StoreError::Compacted { .. }) => continue,
            Err(e) => panic!("{e}"),
            Ok(mut w) => match tokio::time::timeout(std::time::Duration::from_secs(5), w.next()).await.expect("replay answers") {
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => panic!("{e}"),
                Ok(events) => {
                    // Every revision writes "h", so the replay must be contiguous from `from`.
                    let revs: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
                    let want: Vec<i64> = (from..from + revs.len() as i64).collect();
                    assert_eq!(revs, want, "a replay from {from} skipped revisions");
                    replays += 1;
                }
            },
        }
    }
    writer.await.expect("writer");
    assert!(replays > 10, "only {replays} replays ran");
}
