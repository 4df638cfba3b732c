//! Seal-token verification: the cached path (a token seen before, as on every request after
//! the first) and the first sight of a token (Ed25519 signature check). The issue's target is
//! ≥ 1,000,000 cached verifications per second; the seed quoted 100 requests per second.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daas_chain::{TokenIssuer, TokenVerifier};

fn tokens(c: &mut Criterion) {
    let issuer = TokenIssuer::new(Arc::new(daas_tee::EnclaveIdentity::generate().unwrap()), Duration::from_secs(3600));
    let verifier = TokenVerifier::new(issuer.public_key());
    let sub = "0x7f3a9b1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    // A realistic working set: 1,000 workers' tokens, all seen before.
    let many: Vec<String> = (0..1000).map(|i| issuer.issue(sub, Some(&format!("worker-{i}")), Some("0x5"), "write", 1000).token).collect();
    for t in &many {
        verifier.verify(t, 1001).unwrap();
    }
    verifier.revoke_subject("0xdead", 900);

    let mut g = c.benchmark_group("seal_token");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("verify_cached", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            verifier.verify(&many[i], 1001).unwrap()
        })
    });
    g.bench_function("verify_first_sight", |b| {
        b.iter_batched(
            || (TokenVerifier::new(issuer.public_key()), many[0].clone()),
            |(v, t)| v.verify(&t, 1001).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("issue", |b| b.iter(|| issuer.issue(sub, Some("worker-1"), Some("0x5"), "write", 1000)));
    g.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
