//! Crash consistency: a server taking writes from many concurrent clients is SIGKILLed at a
//! random moment, several rounds in a row. After each restart every acknowledged write must be
//! there, and no transaction may be half applied (each txn writes two keys; both or neither).
//! Run once with the defaults (everything since start lives in the write-ahead log) and once
//! with tiny log segments and frequent data-key rotation, so checkpoints, segment switches and
//! keys created after the last checkpoint are all cut by the kill. A damaged log must stop
//! the server rather than silently drop acknowledged writes.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

fn ids(kvs: &[(String, String)], prefix: &str) -> BTreeSet<u64> {
    kvs.iter().map(|(k, _)| k[prefix.len()..].parse().expect("numeric id")).collect()
}

async fn crash_rounds(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = Arc::new(AtomicU64::new(0));
    let mut acked_total: BTreeSet<u64> = BTreeSet::new();

    // A lease with a key, granted before the first crash, must survive every crash.
    let lease_id = {
        let server = Server::start_in_with(dir.path(), extra);
        let mut lease = pb::lease_client::LeaseClient::new(server.channel().await);
        let id = lease.lease_grant(pb::LeaseGrantRequest { ttl: 3600, id: 0 }).await.expect("grant").into_inner().id;
        let mut kv = server.kv().await;
        kv.put(pb::PutRequest { key: "crash/leased".into(), value: "x".into(), lease: id, ..Default::default() })
            .await
            .expect("put with lease");
        server.crash();
        id
    };

    for round in 0..ROUNDS {
        let server = Server::start_in_with(dir.path(), extra);
        let channel = server.channel().await;
        let acked = Arc::new(Mutex::new(Vec::new()));
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
                        Ok(_) => acked.lock().expect("not poisoned").push(i),
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
        let acked_now = std::mem::take(&mut *acked.lock().expect("not poisoned"));
        assert!(acked_now.len() > 10, "round {round}: only {} writes were acknowledged before the kill", acked_now.len());
        acked_total.extend(acked_now);

        // Reopen and check.
        let server = Server::start_in_with(dir.path(), extra);
        let a = all_keys(&server, "crash/a/").await;
        let b = all_keys(&server, "crash/b/").await;
        let (a_ids, b_ids) = (ids(&a, "crash/a/"), ids(&b, "crash/b/"));
        assert_eq!(a_ids, b_ids, "round {round}: a transaction was half applied");
        let missing: Vec<_> = acked_total.difference(&a_ids).take(10).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged writes lost after SIGKILL: {missing:?}");
        for (k, v) in &a {
            let id: u64 = k["crash/a/".len()..].parse().expect("id");
            assert_eq!(v, &format!("v{id}"), "wrong value at {k}");
        }
        let mut lease = pb::lease_client::LeaseClient::new(server.channel().await);
        let ttl = lease.lease_time_to_live(pb::LeaseTimeToLiveRequest { id: lease_id, keys: true }).await.expect("ttl").into_inner();
        assert!(ttl.ttl > 0, "round {round}: the lease was lost");
        assert_eq!(ttl.keys, vec![Bytes::from_static(b"crash/leased")], "round {round}: the lease lost its key");
        eprintln!("round {round}: {} acknowledged in all, {} present", acked_total.len(), a_ids.len());
        server.crash();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    crash_rounds(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_across_checkpoints_and_key_rotations() {
    crash_rounds(&["--wal-segment-bytes", "65536", "--dek-rotate-after", "50"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_write_ahead_log_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(dir.path());
    {
        let mut kv = server.kv().await;
        for i in 0..20 {
            kv.put(pb::PutRequest { key: format!("w/{i}").into(), value: "v".into(), ..Default::default() }).await.expect("put");
        }
    }
    server.crash();
    // Flip a bit inside the first frame's payload; later frames stay intact.
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .min()
        .expect("a log segment");
    let mut bytes = std::fs::read(&wal).expect("read segment");
    bytes[20] ^= 0x01;
    std::fs::write(&wal, &bytes).expect("write segment");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["server", "--etcd-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("DAAS_LOG_LEVEL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run daas");
    // Bounded: a server that wrongly starts is killed after 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("waitpid").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect output");
    assert!(!out.status.success(), "the server started on a damaged log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write-ahead log is damaged"), "stderr: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("etcd API on"), "it must not serve");
}
