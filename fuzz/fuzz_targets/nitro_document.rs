//! Arbitrary bytes through everything that parses attestation evidence: the CBOR decoder, the
//! Nitro document parser and verifier, and the simulated-evidence parser. None may panic, and
//! memory stays bounded (libFuzzer's -rss_limit_mb and -malloc_limit_mb catch runaway
//! allocations). Seed the corpus from crates/tee/tests/fixtures/nitro (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = daas_tee::cbor::decode(data);
    if let Ok(doc) = daas_tee::NitroDocument::parse(data) {
        // As of the Nautilus fixture's time, so that certificate checks run past validity.
        let _ = doc.verify(&[daas_tee::AWS_NITRO_ROOT_G1_SHA256], 1_744_683_923_696);
    }
    let _ = daas_tee::sim::SimulatedEvidence::verify(data);
});
