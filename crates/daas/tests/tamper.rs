//! Tamper resistance: bytes flipped in the data file while the server is down make the affected
//! reads fail with a clear integrity error (gRPC DATA_LOSS), never return wrong data, and leave
//! the server serving every other key.

mod common;

use bytes::Bytes;
use common::Server;
use daas_etcd::pb;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use tonic::Code;

/// The store's history table, as documented in docs/design.md.
const REVS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("revs");
const HEADER: usize = 29;

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The raw record the file holds for `key` (its latest version).
fn raw_record(path: &std::path::Path, key: &[u8]) -> Vec<u8> {
    let db = redb::Database::open(path).expect("open data file");
    let rtx = db.begin_read().expect("read txn");
    let t = rtx.open_table(REVS).expect("revs table");
    let mut found = None;
    for item in t.iter().expect("iter") {
        let (_, v) = item.expect("entry");
        let raw = v.value();
        let n = u32::from_be_bytes(raw[25..29].try_into().expect("4 bytes")) as usize;
        if &raw[HEADER..HEADER + n] == key {
            found = Some(raw.to_vec());
        }
    }
    found.expect("record for key")
}

/// Flips one bit at `offset` within every copy of `needle` in the file; returns how many.
fn flip_in_file(path: &std::path::Path, needle: &[u8], offset: usize) -> usize {
    let mut bytes = std::fs::read(path).expect("read data file");
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + offset] ^= 0x01;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(path, bytes).expect("write data file");
    hits
}

async fn get(kv: &mut pb::kv_client::KvClient<tonic::transport::Channel>, key: &str) -> Result<Option<Bytes>, tonic::Status> {
    let r = kv.range(pb::RangeRequest { key: Bytes::from(key.to_string()), ..Default::default() }).await?.into_inner();
    Ok(r.kvs.into_iter().next().map(|kv| kv.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_are_detected_and_other_keys_keep_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim_value = pseudo_random(4096, 42);
    let server = Server::start_in(dir.path());
    {
        let mut kv = server.kv().await;
        for i in 0..50 {
            kv.put(pb::PutRequest { key: format!("t/k{i:02}").into(), value: format!("value {i}").into(), ..Default::default() })
                .await
                .expect("put");
        }
        kv.put(pb::PutRequest { key: "t/victim".into(), value: victim_value.clone().into(), ..Default::default() }).await.expect("put");
        kv.put(pb::PutRequest { key: "t/meta-victim".into(), value: "small".into(), ..Default::default() }).await.expect("put");
    }
    assert!(server.stop().success(), "the server stops cleanly on SIGTERM");

    let file = dir.path().join("data.redb");
    // 1. A bit in the middle of the victim's ciphertext.
    let raw = raw_record(&file, b"t/victim");
    assert!(!raw.windows(64).any(|w| victim_value.windows(64).any(|v| v == w)), "the value must not be on disk in the clear");
    let tail = &raw[raw.len() - 200..];
    assert!(flip_in_file(&file, tail, 100) >= 1, "ciphertext not found in the file");
    // 2. A bit of the other victim's metadata (its version field), which is authenticated too.
    let raw = raw_record(&file, b"t/meta-victim");
    assert!(flip_in_file(&file, &raw, 16) >= 1, "record not found in the file");

    let server = Server::start_in(dir.path());
    let mut kv = server.kv().await;
    for key in ["t/victim", "t/meta-victim"] {
        let err = get(&mut kv, key).await.expect_err("a tampered value must not be returned");
        assert_eq!(err.code(), Code::DataLoss, "{key}: {err:?}");
        assert!(err.message().contains("integrity"), "{key}: {}", err.message());
    }
    // A range covering a tampered key fails as a whole rather than returning part of it silently.
    let r = kv.range(pb::RangeRequest { key: "t/".into(), range_end: "t0".into(), ..Default::default() }).await;
    assert_eq!(r.expect_err("range over tampered keys").code(), Code::DataLoss);
    // Every other key still reads back exactly.
    for i in 0..50 {
        let v = get(&mut kv, &format!("t/k{i:02}")).await.expect("untouched key").expect("present");
        assert_eq!(v, Bytes::from(format!("value {i}")));
    }
    // And the server keeps taking writes, including over a tampered key.
    kv.put(pb::PutRequest { key: "t/after".into(), value: "ok".into(), ..Default::default() }).await.expect("put after tamper");
    kv.put(pb::PutRequest { key: "t/victim".into(), value: "replaced".into(), ..Default::default() })
        .await
        .expect("overwrite tampered key");
    assert_eq!(get(&mut kv, "t/victim").await.expect("fresh value").expect("present"), Bytes::from_static(b"replaced"));
}
