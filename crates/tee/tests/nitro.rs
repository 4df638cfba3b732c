//! Nitro attestation documents: real ones from AWS hardware (tests/fixtures/nitro) verify, and
//! every kind of tampering or policy violation fails with its own error.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use daas_tee::test_util::{DocSpec, SyntheticNitro, now_ms};
use daas_tee::{NitroDocument, Policy, VerifyError, verify_nitro_document};

/// (file, module_id, timestamp ms, PCR0 prefix) for every real document we carry.
const REAL: &[(&str, &str, u64, &str)] = &[
    ("nautilus-weather-2025-04-15.hex", "i-06e4b98c6549ff803-enc0196373b195fb723", 1744683923696, "cbe1afb6ed0f"),
    ("evervault-beta-debug-2022-10-12.bin", "i-03ad7cdb817437eeb-enc0183cc7569b3f6e1", 1665582606081, "000000000000"),
    ("evervault-beta-valid-2022-10-13.bin", "i-020b6af9246d90e92-enc0183d09086c24190", 1665651482136, "f4d48b81a460"),
    ("evervault-valid-2023-09-18.bin", "i-0918f6c55e3b61d89-enc018aa8b8e2285d13", 1695049410860, "000000000000"),
    ("blocky-nitrite-2024-09-07.bin", "i-0a22e5c5f24d22174-enc0191cceb4289903f", 1725719859545, ""),
    ("blocky-nitrite-debug-2024-09-07.bin", "i-0a22e5c5f24d22174-enc0191ccebaf8feaba", 1725719886508, "000000000000"),
    ("eternis-example-2024-09-09.bin", "i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a", 1725911352400, "000000000000"),
    ("base-nitro-validator-2024-11-30.bin", "i-0de38b2b6853cc9e8-enc0193685e7fee7d85", 1732983768387, ""),
    ("bedrock-wrongcert-2025-08-29.bin", "i-05ebc0d9607fc96a5-enc0198f81c4577e221", 1756509359524, ""),
    ("bedrock-real-2025-09-23.bin", "i-01b324f0b8b6c25ea-enc01997668bda38b2a", 1758628609915, ""),
];

fn load(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nitro").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if name.ends_with(".hex") { hex::decode(String::from_utf8(raw).unwrap().trim()).unwrap() } else { raw }
}

fn nautilus() -> (Vec<u8>, u64) {
    (load(REAL[0].0), REAL[0].2)
}

fn flip(doc: &[u8], at: usize) -> Vec<u8> {
    let mut d = doc.to_vec();
    d[at] ^= 0x01;
    d
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

#[test]
fn every_real_document_verifies_at_its_own_time() {
    for &(file, module_id, ts, pcr0) in REAL {
        let doc = load(file);
        let s = verify_nitro_document(&doc, &Policy::default(), ts).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.module_id, module_id, "{file}");
        assert_eq!(s.timestamp_ms, ts, "{file}");
        assert_eq!(s.digest, "SHA384");
        assert!(hex::encode(&s.pcrs[&0]).starts_with(pcr0), "{file}");
        // Today, the three-hour leaf certificates have long expired.
        assert!(matches!(verify_nitro_document(&doc, &Policy::default(), now_ms()), Err(VerifyError::CertificateExpired { .. })), "{file}");
    }
}

#[test]
fn the_nautilus_document_reads_as_its_readme_says() {
    let (doc, ts) = nautilus();
    let s = verify_nitro_document(&doc, &Policy::default(), ts).unwrap();
    let pcr0 = "cbe1afb6ed0ff89f10295af0b802247ec5670da8f886e71a4226373b032c322f4e42c9c98288e7211682b258684505a2";
    assert_eq!(hex::encode(&s.pcrs[&0]), pcr0);
    assert_eq!(hex::encode(&s.pcrs[&1]), pcr0);
    assert_eq!(
        hex::encode(&s.pcrs[&2]),
        "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"
    );
    assert_eq!(s.public_key.as_ref().map(Vec::len), Some(32));
    assert_eq!((s.user_data, s.nonce), (None, None));
}

/// One failure per kind, each a different error variant.
#[test]
fn every_tampering_fails_with_its_own_error() {
    let (doc, ts) = nautilus();
    let parsed = NitroDocument::parse(&doc).unwrap();
    let pcr2_at = find(&doc, parsed.pcr(2).unwrap());
    let leaf_cn_at = find(&doc, b"i-06e4b98c6549ff803-enc0196373b195fb723.");
    let root_at = find(&doc, parsed.cabundle[0]);
    let p = Policy::default();
    let mut failures: Vec<(&str, VerifyError)> = Vec::new();
    let mut fail = |what: &'static str, r: Result<_, VerifyError>| failures.push((what, r.expect_err(what)));

    fail("payload byte", verify_nitro_document(&flip(&doc, pcr2_at + 5), &p, ts));
    fail("certificate byte", verify_nitro_document(&flip(&doc, leaf_cn_at + 3), &p, ts));
    fail("unknown root", verify_nitro_document(&doc, &Policy { nitro_roots: vec![[7; 32]], ..Policy::default() }, ts));
    fail("expired", verify_nitro_document(&doc, &p, ts + 24 * 3600 * 1000));
    let pcr_policy = Policy { pcrs: [(0u8, vec![0u8; 48])].into(), ..Policy::default() };
    fail("PCR mismatch", verify_nitro_document(&doc, &pcr_policy, ts));
    fail("nonce mismatch", verify_nitro_document(&doc, &Policy { nonce: Some(vec![1; 16]), ..Policy::default() }, ts));
    fail("malformed CBOR", verify_nitro_document(&doc[..doc.len() - 10], &p, ts));
    fail("public key mismatch", verify_nitro_document(&doc, &Policy { public_key: Some(vec![0; 32]), ..Policy::default() }, ts));
    // A root certificate with one bit flipped has another fingerprint: an unknown root, too.
    assert!(matches!(verify_nitro_document(&flip(&doc, root_at + 200), &p, ts), Err(VerifyError::UnknownRoot(_))));
    // The signature is the last 96 bytes.
    assert_eq!(verify_nitro_document(&flip(&doc, doc.len() - 1), &p, ts), Err(VerifyError::DocumentSignature));

    // A document without a public key (a real one) where the policy requires one.
    let no_key = load("evervault-beta-valid-2022-10-13.bin");
    fail("missing public key", verify_nitro_document(&no_key, &Policy { require_public_key: true, ..Policy::default() }, 1665651482136));

    let kinds: HashSet<_> = failures.iter().map(|(_, e)| std::mem::discriminant(e)).collect();
    assert_eq!(kinds.len(), failures.len(), "two tamperings gave the same kind of error: {failures:#?}");
    assert!(matches!(failures[0].1, VerifyError::DocumentSignature));
    assert!(matches!(failures[1].1, VerifyError::CertificateSignature { index: 4, .. }), "{:?}", failures[1].1);
    for (what, e) in &failures {
        assert!(!e.to_string().is_empty(), "{what}");
    }
}

#[test]
fn every_single_byte_flip_of_a_real_document_is_refused() {
    // Cheap enough to try every position of the smallest real document: no flip may verify,
    // and none may panic.
    let doc = load("evervault-beta-debug-2022-10-12.bin");
    let ts = 1665582606081;
    let step = if cfg!(debug_assertions) { 7 } else { 1 };
    for at in (0..doc.len()).step_by(step) {
        assert!(verify_nitro_document(&flip(&doc, at), &Policy::default(), ts).is_err(), "flipping byte {at} still verified");
    }
}

#[test]
fn synthetic_documents_cover_what_real_ones_cannot() {
    let chain = SyntheticNitro::current();
    let policy = Policy { nitro_roots: vec![chain.root_fingerprint()], nonce: Some(vec![0x22; 32]), ..Policy::default() };
    let now = now_ms();
    for (tagged, indefinite) in [(false, false), (true, false), (false, true), (true, true)] {
        let doc = chain.document(&DocSpec { tagged, indefinite, ..DocSpec::default() });
        verify_nitro_document(&doc, &policy, now).unwrap_or_else(|e| panic!("tagged={tagged} indefinite={indefinite}: {e}"));
    }
    // The synthetic root is not AWS's: the default policy refuses it.
    let doc = chain.document(&DocSpec::default());
    assert!(matches!(verify_nitro_document(&doc, &Policy::default(), now), Err(VerifyError::UnknownRoot(_))));
    // Missing public key, with the nonce right.
    let no_key = chain.document(&DocSpec { public_key: None, ..DocSpec::default() });
    let want_key = Policy { public_key: Some(vec![0x11; 32]), ..policy.clone() };
    assert_eq!(verify_nitro_document(&no_key, &want_key, now), Err(VerifyError::PublicKeyMissing));
    // A leaf that expired an hour ago.
    let secs = (now / 1000) as i64;
    let old = SyntheticNitro::new(secs - 4 * 3600, secs - 3600);
    let doc = old.document(&DocSpec::default());
    let p = Policy { nitro_roots: vec![old.root_fingerprint()], ..Policy::default() };
    match verify_nitro_document(&doc, &p, now) {
        Err(VerifyError::CertificateExpired { index: 2, .. }) => {}
        other => panic!("expected the leaf (certificate 2) to be expired, got {other:?}"),
    }
    // A document that is CBOR but not COSE.
    assert!(matches!(verify_nitro_document(&[0xa0], &policy, now), Err(VerifyError::MalformedDocument(_))));
}
