//! Criterion benches for the store's hot paths: sealing and opening values, and MVCC reads and
//! writes through the embedded engine. Run with `cargo bench -p daas-store`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use daas_store::{EphemeralKeyProvider, KeySpan, PutRequest, RangeRequest, Sealer, Store, StoreConfig, random_key};

fn sealing(c: &mut Criterion) {
    let sealer = Sealer::new(true, u64::MAX);
    sealer.install(1, &random_key().expect("rng"), 0).expect("key");
    sealer.activate(1);
    let aad = b"daas.kv.v1/registry/pods/default/nginx-0123456789";
    let mut g = c.benchmark_group("seal");
    for size in [256usize, 4096, 65536] {
        let plain = vec![7u8; size];
        let sealed = sealer.seal(aad, &plain).expect("seal");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| b.iter(|| sealer.seal(aad, p).expect("seal")));
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| b.iter(|| sealer.open(aad, s).expect("open")));
    }
    g.finish();
}

fn mvcc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()), Arc::new(EphemeralKeyProvider::new().expect("rng"))).expect("open");
    let value = Bytes::from(vec![b'v'; 256]);
    rt.block_on(async {
        for i in 0..1000 {
            let key = Bytes::from(format!("/registry/pods/default/p{i:04}"));
            store.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.expect("put");
        }
    });
    let mut g = c.benchmark_group("mvcc");
    g.bench_function("range/single-key", |b| {
        let req = RangeRequest::new(KeySpan::Single(Bytes::from_static(b"/registry/pods/default/p0500")));
        b.iter(|| store.range_now(&req).expect("range"))
    });
    g.bench_function("range/prefix-100", |b| {
        let req = RangeRequest {
            limit: 100,
            ..RangeRequest::new(KeySpan::new(Bytes::from_static(b"/registry/pods/"), Bytes::from_static(b"/registry/pods0")))
        };
        b.iter(|| store.range_now(&req).expect("range"))
    });
    // One put at a time pays a full fsync; the concurrent case shows group commit.
    g.sample_size(20);
    g.bench_function("put/sequential", |b| {
        b.iter(|| {
            rt.block_on(store.put(PutRequest { key: Bytes::from_static(b"/bench/k"), value: value.clone(), ..Default::default() }))
                .expect("put")
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("put/64-concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for i in 0..64 {
                    let s = store.clone();
                    let v = value.clone();
                    tasks.push(tokio::spawn(async move {
                        s.put(PutRequest { key: Bytes::from(format!("/bench/c{i}")), value: v, ..Default::default() }).await
                    }));
                }
                for t in tasks {
                    t.await.expect("join").expect("put");
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, sealing, mvcc);
criterion_main!(benches);
