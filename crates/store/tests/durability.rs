//! What survives a restart: values, revisions and history under the same key file; refusal to
//! open with the wrong key or sealing mode; data-key rotation, re-encryption and re-wrapping.
//!
//! Dropping the last [`Store`] handle joins the writer thread, so a store can be reopened in
//! the same directory right after.

mod common;

use std::path::Path;
use std::sync::Arc;

use daas_store::{KeyProvider, KeyValue, KvBackend, ManualClock, RangeRequest, Store, StoreConfig, StoreError};

use common::*;

fn reopen(dir: &Path, provider: Arc<dyn KeyProvider>, cfg: impl FnOnce(&mut StoreConfig)) -> Result<Store, StoreError> {
    open_in(dir, cfg, provider, Arc::new(ManualClock::new(1_700_000_000_000)))
}

async fn write_history<B: KvBackend>(kv: &B) {
    for i in 0..10 {
        put(kv, &format!("p/{i}"), &format!("v{i}")).await;
    }
    put(kv, "p/3", "updated").await;
    delete(kv, single("p/5")).await;
}

#[tokio::test]
async fn values_and_revisions_survive_reopen() {
    let dir = scratch();
    let kek = dir.path().join("kek");
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("store opens");
    write_history(&kv).await;
    let before: Vec<KeyValue> = dump(&kv).await;
    let rev = kv.current_revision();
    let status = KvBackend::status(&kv).await.expect("status succeeds");
    let hash = KvBackend::hash_kv(&kv, 0).await.expect("hash succeeds");
    let clone = kv.clone();
    drop(kv);
    drop(clone);

    // A fresh provider reading the same key file.
    let provider: Arc<dyn KeyProvider> = Arc::new(daas_store::KeyFileProvider::open_or_create(&kek).expect("key file reloads"));
    let kv = reopen(dir.path(), provider, |_| {}).expect("store reopens");
    assert_eq!(kv.current_revision(), rev);
    assert_eq!(dump(&kv).await, before, "every key, value and revision is the same");
    assert_eq!(get_at(&kv, "p/3", 5).await.map(|kv| s(&kv.value)), Some("v3".to_string()), "history survives");
    assert_eq!(get_at(&kv, "p/5", rev - 1).await.map(|kv| s(&kv.value)), Some("v5".to_string()));
    assert_eq!(KvBackend::hash_kv(&kv, 0).await.expect("hash succeeds"), hash);
    let after = KvBackend::status(&kv).await.expect("status succeeds");
    assert_eq!((after.cluster_id, after.member_id, after.sealed), (status.cluster_id, status.member_id, true));
    assert_eq!(put(&kv, "p/new", "x").await, rev + 1, "revisions continue where they stopped");
}

#[tokio::test]
async fn a_different_key_file_cannot_open_the_store() {
    let dir = scratch();
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("store opens");
    put(&kv, "k", "v").await;
    drop(kv);

    let err = reopen(dir.path(), key_file(dir.path(), "other-kek"), |_| {}).expect_err("another key file is refused");
    let StoreError::Sealing(msg) = &err else { panic!("expected a sealing error, got {err:?}") };
    assert!(msg.contains("other-kek") && msg.contains("does not unwrap"), "unclear message: {msg}");

    // The failed attempt changed nothing.
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("the right key file still opens it");
    assert_eq!(value(&kv, "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn sealing_mode_cannot_change() {
    let dir = scratch();
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("store opens");
    put(&kv, "k", "v").await;
    drop(kv);
    let err = reopen(dir.path(), key_file(dir.path(), "kek"), |c| c.sealing = false).expect_err("a sealed store refuses to open unsealed");
    let StoreError::Sealing(msg) = &err else { panic!("expected a sealing error, got {err:?}") };
    assert!(msg.contains("created sealed") && msg.contains("unsealed"), "unclear message: {msg}");

    let plain = scratch();
    let kv = reopen(plain.path(), key_file(plain.path(), "kek"), |c| c.sealing = false).expect("an unsealed store opens");
    put(&kv, "k", "v").await;
    assert!(!KvBackend::status(&kv).await.expect("status succeeds").sealed);
    drop(kv);
    let err = reopen(plain.path(), key_file(plain.path(), "kek"), |_| {}).expect_err("an unsealed store refuses to open sealed");
    assert!(matches!(err, StoreError::Sealing(_)), "{err:?}");
}

/// The file on disk never holds a value in the clear (keys are not sealed, by design); the
/// danger-named unsealed mode shows that the check would notice.
#[tokio::test]
async fn values_are_sealed_on_disk() {
    const SECRET: &str = "correct-horse-battery-staple-0123456789";
    for sealing in [true, false] {
        let dir = scratch();
        let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |c| c.sealing = sealing).expect("store opens");
        put(&kv, "secret/key", SECRET).await;
        put(&kv, "secret/key", &format!("{SECRET}-v2")).await;
        let file = kv.data_file().to_owned();
        drop(kv);
        let raw = std::fs::read(&file).expect("data file is readable");
        let found = raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert_eq!(found, !sealing, "sealing = {sealing}: plaintext value found on disk = {found}");
    }
}

async fn all_values_read_back<B: KvBackend>(kv: &B, n: usize) {
    let got = kv.range(RangeRequest::new(prefix("d/"))).await.expect("every value opens");
    assert_eq!(got.kvs.len(), n);
    for kv in &got.kvs {
        let i = s(&kv.key).trim_start_matches("d/").to_string();
        assert_eq!(s(&kv.value), format!("value-{i}"));
    }
}

async fn put_values<B: KvBackend>(kv: &B, range: std::ops::Range<usize>) {
    for i in range {
        put(kv, &format!("d/{i:02}"), &format!("value-{i:02}")).await;
    }
}

#[tokio::test]
async fn data_key_rotates_after_the_configured_writes() {
    let dir = scratch();
    let cfg = |c: &mut StoreConfig| c.rotate_after_writes = 5;
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), cfg).expect("store opens");
    assert_eq!(KvBackend::status(&kv).await.expect("status succeeds").active_dek, 1);
    put_values(&kv, 0..20).await;
    let active = KvBackend::status(&kv).await.expect("status succeeds").active_dek;
    assert!(active >= 4, "20 writes with rotation every 5 left data key {active} active");
    all_values_read_back(&kv, 20).await;
    // History sealed under the older keys still opens.
    assert_eq!(get_at(&kv, "d/00", 2).await.map(|kv| s(&kv.value)), Some("value-00".to_string()));
    drop(kv);

    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), cfg).expect("store reopens");
    assert_eq!(KvBackend::status(&kv).await.expect("status succeeds").active_dek, active, "the active key survives a restart");
    all_values_read_back(&kv, 20).await;
    put_values(&kv, 20..30).await;
    all_values_read_back(&kv, 30).await;
}

#[tokio::test]
async fn rotate_then_reencrypt_keeps_values_readable() {
    let dir = scratch();
    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("store opens");
    put_values(&kv, 0..20).await;
    put(&kv, "d/00", "value-00").await; // history under the first key too

    let id = kv.rotate_dek().await.expect("rotation succeeds");
    assert_eq!(id, 2);
    assert_eq!(KvBackend::status(&kv).await.expect("status succeeds").active_dek, 2);
    all_values_read_back(&kv, 20).await;

    let resealed = kv.reencrypt().await.expect("re-encryption succeeds");
    assert_eq!(resealed, 21, "every retained version was sealed under the old key");
    assert_eq!(kv.reencrypt().await, Ok(0), "nothing is left under an old key");
    all_values_read_back(&kv, 20).await;
    assert_eq!(get_at(&kv, "d/00", 2).await.map(|kv| s(&kv.value)), Some("value-00".to_string()), "history was re-sealed too");
    let hash = KvBackend::hash_kv(&kv, 0).await.expect("hash succeeds");
    drop(kv);

    let kv = reopen(dir.path(), key_file(dir.path(), "kek"), |_| {}).expect("store reopens");
    all_values_read_back(&kv, 20).await;
    assert_eq!(KvBackend::hash_kv(&kv, 0).await.expect("hash succeeds"), hash, "re-sealing changed no plaintext");
    assert_eq!(KvBackend::status(&kv).await.expect("status succeeds").active_dek, 2);
}

#[tokio::test]
async fn rewrap_moves_the_store_to_a_new_key_provider() {
    let dir = scratch();
    let cfg = |c: &mut StoreConfig| c.rotate_after_writes = 4;
    let kv = reopen(dir.path(), key_file(dir.path(), "old"), cfg).expect("store opens");
    put_values(&kv, 0..10).await; // several data keys
    let n = kv.rewrap(key_file(dir.path(), "new")).await.expect("rewrap succeeds");
    assert!(n >= 3, "rewrapped {n} data keys");
    drop(kv);

    let kv = reopen(dir.path(), key_file(dir.path(), "new"), cfg).expect("the new provider opens the store");
    all_values_read_back(&kv, 10).await;
    put_values(&kv, 10..16).await;
    drop(kv);

    let err = reopen(dir.path(), key_file(dir.path(), "old"), cfg).expect_err("the old provider no longer opens the store");
    assert!(matches!(err, StoreError::Sealing(_)), "{err:?}");
    let kv = reopen(dir.path(), key_file(dir.path(), "new"), cfg).expect("the new provider still opens the store");
    all_values_read_back(&kv, 16).await;
}

/// After `rewrap(new)`, data keys made later (by an explicit or automatic rotation) are wrapped
/// with `new` as well, so the store reopens with `new` alone.
#[tokio::test]
async fn rotation_after_rewrap_keeps_the_store_openable() {
    let dir = scratch();
    let kv = reopen(dir.path(), key_file(dir.path(), "old"), |_| {}).expect("store opens");
    put_values(&kv, 0..2).await;
    kv.rewrap(key_file(dir.path(), "new")).await.expect("rewrap succeeds");
    kv.rotate_dek().await.expect("rotation succeeds");
    put_values(&kv, 2..4).await;
    drop(kv);

    let kv = reopen(dir.path(), key_file(dir.path(), "new"), |_| {}).expect("the new provider opens the store");
    all_values_read_back(&kv, 4).await;
}
