//! Crash consistency: a server taking writes from many concurrent clients is SIGKILLed at a
//! random moment, several rounds in a row. After each restart every acknowledged write must be
//! there, and no transaction may be half applied (each txn writes two keys; both or neither).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Server;
use daas_etcd::pb;

const CLIENTS: usize = 48;
const ROUNDS: usize = 4;

fn put_op(key: String, value: String) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() })),
    }
}

/// A tiny deterministic generator so rounds kill at different moments without a rand dependency.
fn jitter(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    x ^= x >> 33;
    x % 400
}

async fn all_keys(s: &Server, prefix: &str) -> Vec<(String, String)> {
    let mut kv = s.kv().await;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    let r = kv
        .range(pb::RangeRequest { key: Bytes::from(prefix.to_string()), range_end: end.into(), ..Default::default() })
        .await
        .expect("range")
        .into_inner();
    r.kvs.into_iter().map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = Arc::new(AtomicU64::new(0));
    let mut acked_total: BTreeSet<u64> = BTreeSet::new();
    for round in 0..ROUNDS {
        let server = Server::start_in(dir.path());
        let channel = server.channel().await;
        let acked = Arc::new(parking_lot_free::Acked::default());
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (ch, next, acked) = (channel.clone(), next.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut kv = pb::kv_client::KvClient::new(ch);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let v = format!("v{i}");
                    let txn = pb::TxnRequest {
                        compare: vec![],
                        success: vec![put_op(format!("crash/a/{i:08}"), v.clone()), put_op(format!("crash/b/{i:08}"), v)],
                        failure: vec![],
                    };
                    match kv.txn(txn).await {
                        Ok(_) => acked.push(i),
                        Err(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + jitter(round as u64))).await;
        server.crash();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let acked_now = acked.take();
        assert!(acked_now.len() > 10, "round {round}: only {} writes were acknowledged before the kill", acked_now.len());
        acked_total.extend(acked_now);

        // Reopen and check.
        let server = Server::start_in(dir.path());
        let a: Vec<_> = all_keys(&server, "crash/a/").await;
        let b: Vec<_> = all_keys(&server, "crash/b/").await;
        let a_ids: BTreeSet<u64> = a.iter().map(|(k, _)| k["crash/a/".len()..].parse().expect("id")).collect();
        let b_ids: BTreeSet<u64> = b.iter().map(|(k, _)| k["crash/b/".len()..].parse().expect("id")).collect();
        assert_eq!(a_ids, b_ids, "round {round}: a transaction was half applied");
        let missing: Vec<_> = acked_total.difference(&a_ids).take(10).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged writes lost after SIGKILL: {missing:?}");
        for (k, v) in &a {
            let id: u64 = k["crash/a/".len()..].parse().expect("id");
            assert_eq!(v, &format!("v{id}"), "wrong value at {k}");
        }
        eprintln!("round {round}: {} acknowledged in all, {} present", acked_total.len(), a_ids.len());
        server.crash();
    }
}

/// A mutex-protected list without pulling in parking_lot for the test.
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Acked(Mutex<Vec<u64>>);

    impl Acked {
        pub fn push(&self, i: u64) {
            self.0.lock().expect("not poisoned").push(i);
        }
        pub fn take(&self) -> Vec<u64> {
            std::mem::take(&mut *self.0.lock().expect("not poisoned"))
        }
    }
}
