//! Many writers at once: every acknowledged write is stored, at its own revision, and a watcher
//! sees each exactly once in revision order.

mod common;

use std::collections::BTreeSet;

use daas_store::{EventKind, KvBackend, RangeRequest, Revision, WatchRequest};

use common::*;

const TASKS: usize = 50;
const PUTS: usize = 40;

async fn concurrent_puts<B: KvBackend>(kv: &B) {
    put(kv, "seed/a", "1").await;
    put(kv, "seed/b", "1").await;
    let r0 = kv.current_revision();
    let mut w = kv
        .watch(WatchRequest { span: prefix("c/"), start_revision: 0, prev_kv: false, no_put: false, no_delete: false })
        .await
        .expect("watch succeeds");

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::with_capacity(PUTS);
            for i in 0..PUTS {
                revs.push(put(&kv, &format!("c/{t:02}/{i:02}"), &format!("{t}-{i}")).await);
            }
            revs
        }));
    }
    let mut revs = BTreeSet::new();
    for task in tasks {
        let mine = task.await.expect("writer task finished");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one task's puts were acknowledged out of order: {mine:?}");
        revs.extend(mine);
    }

    let total = (TASKS * PUTS) as Revision;
    assert_eq!(kv.current_revision(), r0 + total, "one revision per put");
    assert_eq!(revs, (r0 + 1..=r0 + total).collect::<BTreeSet<_>>(), "every put got its own revision");

    let all = kv.range(RangeRequest::new(prefix("c/"))).await.expect("range succeeds");
    assert_eq!(all.count, total);
    for got in &all.kvs {
        let key = s(&got.key);
        let mut parts = key.trim_start_matches("c/").split('/').map(|p| p.parse::<usize>().expect("numeric key part"));
        let (t, i) = (parts.next().expect("task part"), parts.next().expect("index part"));
        assert_eq!(s(&got.value), format!("{t}-{i}"), "value of {key}");
        assert_eq!(got.version, 1);
    }
    assert_eq!(keys(kv, RangeRequest::new(prefix("seed/"))).await, ["seed/a", "seed/b"]);

    let evs = next_n(&mut w, TASKS * PUTS, 10).await;
    assert_eq!(evs.len(), TASKS * PUTS, "every event exactly once");
    for (n, e) in evs.iter().enumerate() {
        assert_eq!(e.kind, EventKind::Put);
        assert_eq!(e.kv.mod_revision, r0 + 1 + n as Revision, "event {n} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_writing_at_once() {
    let (store, _dir) = open();
    concurrent_puts(&store).await;
}
