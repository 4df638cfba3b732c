//! Attestation reports end to end without a network: a provider makes evidence, the
//! [`Attester`] signs a report, and [`verify_report`] accepts it only when every binding holds.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use daas_tee::test_util::{SyntheticNitro, SyntheticNitroTee, now_ms};
use daas_tee::{
    AttestationReport, Attester, EnclaveIdentity, Policy, SimulatedTee, TeeChoice, TeeConfig, TeeError, TeeProvider, TeeType, VerifyError,
    detect, verify_report,
};

const NONCE: [u8; 32] = [0x5a; 32];
const CA: [u8; 32] = [0xca; 32];

fn sim_attester(dir: &std::path::Path) -> Attester {
    let tee = SimulatedTee::open_or_create(&dir.join("simulated-tee.key")).unwrap();
    Attester::new(Arc::new(tee), Arc::new(EnclaveIdentity::generate().unwrap()), CA)
}

fn accept_sim() -> Policy {
    Policy { danger_accept_simulation: true, ..Policy::default() }
}

#[test]
fn simulated_reports_verify_only_when_simulation_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let a = sim_attester(dir.path());
    let r = a.report(&NONCE).unwrap();
    assert_eq!((r.tee_type, r.security_level, r.hardware), (TeeType::Simulation, 0, false));
    assert!(r.warnings.iter().any(|w| w.contains("SIMULATED TEE")), "{:?}", r.warnings);
    let v = verify_report(&r, &NONCE, &accept_sim(), now_ms()).unwrap();
    assert!(!v.hardware);
    assert_eq!(v.tls_ca_sha256, CA);
    assert_eq!(v.enclave_public_key, a.identity().public_key());
    assert_eq!(v.measurement, daas_tee::measure_executable().unwrap().to_vec());
    assert_eq!(verify_report(&r, &NONCE, &Policy::default(), now_ms()), Err(VerifyError::SimulationNotAccepted));
    // The JSON form round-trips.
    let back: AttestationReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn every_altered_field_breaks_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let a = sim_attester(dir.path());
    let r = a.report(&NONCE).unwrap();
    let p = accept_sim();
    let now = now_ms();
    let altered: Vec<(&str, AttestationReport)> = vec![
        ("tls_ca_sha256", AttestationReport { tls_ca_sha256: hex::encode([0xcb; 32]), ..r.clone() }),
        ("measurement", AttestationReport { measurement: hex::encode([0u8; 48]), ..r.clone() }),
        ("timestamp", AttestationReport { timestamp: r.timestamp + 1, ..r.clone() }),
        ("warnings", AttestationReport { warnings: vec![], ..r.clone() }),
        ("security_level", AttestationReport { security_level: 3, ..r.clone() }),
    ];
    for (what, bad) in altered {
        assert_eq!(verify_report(&bad, &NONCE, &p, now), Err(VerifyError::ReportSignature), "{what}");
    }
    // Another nonce than the client sent.
    assert!(matches!(verify_report(&r, &[0x5b; 32], &p, now), Err(VerifyError::NonceMismatch { .. })));
    // Another enclave's key signing this evidence: the evidence binds the first key.
    let other = EnclaveIdentity::generate().unwrap();
    let mut forged = AttestationReport { enclave_public_key: hex::encode(other.public_key()), ..r.clone() };
    let raw_sig = resign(&forged, &other);
    forged.signature = raw_sig;
    assert!(matches!(verify_report(&forged, &NONCE, &p, now), Err(VerifyError::PublicKeyMismatch { .. })));
    // Tampered evidence.
    let mut ev = base64::engine::general_purpose::STANDARD.decode(&r.evidence).unwrap();
    let last = ev.len() - 1;
    ev[last] ^= 1;
    let bad = AttestationReport { evidence: base64::engine::general_purpose::STANDARD.encode(&ev), ..r.clone() };
    assert_eq!(verify_report(&bad, &NONCE, &p, now), Err(VerifyError::ReportSignature));
    // Pinning another platform key.
    let pinned = Policy { simulated_platform_keys: vec![vec![1; 32]], ..accept_sim() };
    assert!(matches!(verify_report(&r, &NONCE, &pinned, now), Err(VerifyError::UnknownSimulatedPlatform(_))));
    // The expected measurement.
    let m = Policy { measurement: Some(vec![0; 48]), ..accept_sim() };
    assert!(matches!(verify_report(&r, &NONCE, &m, now), Err(VerifyError::MeasurementMismatch { .. })));
}

/// Re-signs a report with `key`, the way a forger holding some other key would.
fn resign(r: &AttestationReport, key: &EnclaveIdentity) -> String {
    // The signing bytes are internal; rebuild them through a throw-away attester would need the
    // provider. The canonical encoding is public, so the forger can compute it.
    let ev = base64::engine::general_purpose::STANDARD.decode(&r.evidence).unwrap();
    let warnings = r.warnings.join("\n");
    let bytes = daas_tee::canon::encode(
        "daas-attestation-report-v1",
        &[
            &r.version.to_be_bytes(),
            r.tee_type.as_str().as_bytes(),
            &[r.security_level],
            &[u8::from(r.hardware)],
            &hex::decode(&r.measurement).unwrap(),
            &hex::decode(&r.enclave_public_key).unwrap(),
            &ev,
            &hex::decode(&r.nonce).unwrap(),
            &r.timestamp.to_be_bytes(),
            &hex::decode(&r.tls_ca_sha256).unwrap(),
            warnings.as_bytes(),
        ],
    );
    base64::engine::general_purpose::STANDARD.encode(key.sign(&bytes))
}

#[test]
fn the_documented_signing_bytes_are_the_real_ones() {
    // `resign` follows docs/attestation.md; if it reproduces a genuine signature byte for byte, the
    // documentation matches the code.
    let dir = tempfile::tempdir().unwrap();
    let tee = Arc::new(SimulatedTee::open_or_create(&dir.path().join("k")).unwrap());
    let id = Arc::new(EnclaveIdentity::generate().unwrap());
    let r = Attester::new(tee, id.clone(), CA).report(&NONCE).unwrap();
    assert_eq!(resign(&r, &id), r.signature);
}

#[test]
fn nitro_reports_verify_end_to_end_with_a_synthetic_chain() {
    let chain = SyntheticNitro::current();
    let root = chain.root_fingerprint();
    let tee = Arc::new(SyntheticNitroTee { chain, pcr0: vec![0xab; 48] });
    let a = Attester::new(tee, Arc::new(EnclaveIdentity::generate().unwrap()), CA);
    let r = a.report(&NONCE).unwrap();
    let p = Policy { nitro_roots: vec![root], ..Policy::default() };
    let v = verify_report(&r, &NONCE, &p, now_ms()).unwrap();
    assert!(v.hardware);
    assert_eq!(v.nitro.unwrap().pcrs[&0], vec![0xab; 48]);
    // PCR policy.
    let strict = Policy { pcrs: [(0u8, vec![0xac; 48])].into(), ..p.clone() };
    assert!(matches!(verify_report(&r, &NONCE, &strict, now_ms()), Err(VerifyError::PcrMismatch { index: 0, .. })));
    // The AWS root only: the synthetic chain is unknown.
    assert!(matches!(verify_report(&r, &NONCE, &Policy::default(), now_ms()), Err(VerifyError::UnknownRoot(_))));
}

#[test]
fn sealing_keys_belong_to_the_install() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = SimulatedTee::open_or_create(&dir.path().join("a.key")).unwrap().sealing_key().unwrap();
    let k1_again = SimulatedTee::open_or_create(&dir.path().join("a.key")).unwrap().sealing_key().unwrap();
    let k2 = SimulatedTee::open_or_create(&dir.path().join("b.key")).unwrap().sealing_key().unwrap();
    assert_eq!(*k1, *k1_again);
    assert_ne!(*k1, *k2);
    // A key file others can read is refused.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path().join("a.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(SimulatedTee::open_or_create(&dir.path().join("a.key")).unwrap_err().to_string().contains("chmod 600"));
}

#[test]
fn detection_needs_device_evidence_and_production_refuses_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let devices = daas_tee::DevicePaths {
        nsm: dir.path().join("nsm"),
        tsm_report: dir.path().join("tsm"),
        sev_guest: dir.path().join("sev-guest"),
        tdx_guest: dir.path().join("tdx_guest"),
        gramine_attestation: dir.path().join("attestation"),
        tee0: dir.path().join("tee0"),
    };
    let cfg = TeeConfig {
        choice: TeeChoice::Auto,
        production: false,
        danger_allow_simulation: false,
        simulation_key_file: dir.path().join("sim.key"),
        devices,
    };
    // No devices: simulation. (No environment variable is ever consulted.)
    let p = detect(&cfg).unwrap();
    assert_eq!(p.tee_type(), TeeType::Simulation);
    let prod = TeeConfig { production: true, ..cfg.clone() };
    assert!(matches!(detect(&prod), Err(TeeError::Refused(_))));
    assert_eq!(detect(&TeeConfig { danger_allow_simulation: true, ..prod }).unwrap().tee_type(), TeeType::Simulation);
    // Asking for Nitro without /dev/nsm fails rather than pretending.
    let nitro = TeeConfig { choice: TeeChoice::Exactly(TeeType::AwsNitro), ..cfg.clone() };
    assert!(matches!(detect(&nitro), Err(TeeError::Device { .. })));
    // A /dev/tee0 that is a plain file is detected as OP-TEE, which refuses evidence clearly.
    std::fs::write(dir.path().join("tee0"), b"").unwrap();
    let p = detect(&cfg).unwrap();
    assert_eq!((p.tee_type(), p.security_level().0), (TeeType::ArmTrustzone, 1));
    assert!(matches!(p.evidence(&NONCE, b"", b""), Err(TeeError::Unsupported(_))));
}
