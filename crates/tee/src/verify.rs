//! The verifier that clients (the `daas attest verify` command and the agent) run on evidence
//! and reports, with nothing but public facts: the pinned AWS Nitro root, the policy's expected
//! measurements, and the nonce the client chose. Start with [`verify_report`]; bare Nitro
//! documents go through [`verify_nitro_document`].

use std::collections::BTreeMap;

use crate::error::VerifyError;
use crate::nitro::{AWS_NITRO_ROOT_G1_SHA256, NitroDocument};
use crate::provider::TeeType;
use crate::report::{AttestationReport, evidence_user_data};
use crate::sim::SimulatedEvidence;

/// What a verifier expects. The default accepts any genuine Nitro enclave and refuses the
/// simulation; real deployments pin PCRs or the measurement.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Expected PCR values by index (Nitro).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// Expected measurement (any TEE type; PCR0 on Nitro).
    pub measurement: Option<Vec<u8>>,
    /// Accept reports from the simulated TEE (they are still flagged as not hardware).
    pub danger_accept_simulation: bool,
    /// Simulated platform keys to accept; empty accepts any (when simulation is accepted).
    pub simulated_platform_keys: Vec<Vec<u8>>,
    /// SHA-256 fingerprints of the roots Nitro documents may chain to.
    pub nitro_roots: Vec<[u8; 32]>,
    /// For bare documents: the nonce the document must carry.
    pub nonce: Option<Vec<u8>>,
    /// For bare documents: the public key the document must carry.
    pub public_key: Option<Vec<u8>>,
    /// For bare documents: require a public key even without an expected value.
    pub require_public_key: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            pcrs: BTreeMap::new(),
            measurement: None,
            danger_accept_simulation: false,
            simulated_platform_keys: Vec::new(),
            nitro_roots: vec![AWS_NITRO_ROOT_G1_SHA256],
            nonce: None,
            public_key: None,
            require_public_key: false,
        }
    }
}

/// What a verified Nitro document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitroSummary {
    pub module_id: String,
    pub timestamp_ms: u64,
    pub digest: String,
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

/// What a verified report says; `hardware` is false for the simulation, whatever else holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReport {
    pub tee_type: TeeType,
    pub hardware: bool,
    pub security_level: u8,
    pub measurement: Vec<u8>,
    pub enclave_public_key: [u8; 32],
    pub tls_ca_sha256: [u8; 32],
    pub timestamp_ms: u64,
    pub warnings: Vec<String>,
    /// Set for Nitro evidence.
    pub nitro: Option<NitroSummary>,
}

fn check_bytes(expected: &[u8], actual: Option<&[u8]>, err: impl FnOnce(String, String) -> VerifyError) -> Result<(), VerifyError> {
    match actual {
        Some(a) if a == expected => Ok(()),
        Some(a) => Err(err(hex::encode(expected), hex::encode(a))),
        None => Err(err(hex::encode(expected), "none".into())),
    }
}

fn check_pcrs(doc: &NitroDocument<'_>, policy: &Policy) -> Result<(), VerifyError> {
    for (&i, want) in &policy.pcrs {
        let got = doc.pcr(i).ok_or(VerifyError::PcrMissing(i))?;
        if got != want.as_slice() {
            return Err(VerifyError::PcrMismatch { index: i, expected: hex::encode(want), actual: hex::encode(got) });
        }
    }
    Ok(())
}

fn check_measurement(actual: &[u8], policy: &Policy) -> Result<(), VerifyError> {
    match &policy.measurement {
        Some(want) if want.as_slice() != actual => {
            Err(VerifyError::MeasurementMismatch { expected: hex::encode(want), actual: hex::encode(actual) })
        }
        _ => Ok(()),
    }
}

fn summary(doc: &NitroDocument<'_>) -> NitroSummary {
    NitroSummary {
        module_id: doc.module_id.to_string(),
        timestamp_ms: doc.timestamp_ms,
        digest: doc.digest.to_string(),
        pcrs: doc.pcrs.iter().map(|(&i, v)| (i, v.to_vec())).collect(),
        public_key: doc.public_key.map(<[u8]>::to_vec),
        user_data: doc.user_data.map(<[u8]>::to_vec),
        nonce: doc.nonce.map(<[u8]>::to_vec),
    }
}

/// Verifies a bare Nitro attestation document as of `at_ms`: signature and chain, then the
/// policy's PCRs, measurement (PCR0), nonce and public key.
pub fn verify_nitro_document(bytes: &[u8], policy: &Policy, at_ms: u64) -> Result<NitroSummary, VerifyError> {
    let doc = NitroDocument::parse(bytes)?;
    doc.verify(&policy.nitro_roots, at_ms)?;
    check_pcrs(&doc, policy)?;
    if let Some(pcr0) = doc.pcr(0) {
        check_measurement(pcr0, policy)?;
    }
    if let Some(n) = &policy.nonce {
        check_bytes(n, doc.nonce, |expected, actual| VerifyError::NonceMismatch { expected, actual })?;
    }
    match (&policy.public_key, doc.public_key) {
        (Some(_), None) => return Err(VerifyError::PublicKeyMissing),
        (None, None) if policy.require_public_key => return Err(VerifyError::PublicKeyMissing),
        (Some(want), Some(got)) if want.as_slice() != got => {
            return Err(VerifyError::PublicKeyMismatch { expected: hex::encode(want), actual: hex::encode(got) });
        }
        _ => {}
    }
    Ok(summary(&doc))
}

/// Verifies a report fetched with `nonce`, as of `at_ms`: the enclave key's signature, then
/// the evidence (which must bind that key, the nonce and the report's TLS CA hash), then the
/// policy. The TLS CA itself is checked by the caller against what the server presented.
pub fn verify_report(report: &AttestationReport, nonce: &[u8], policy: &Policy, at_ms: u64) -> Result<VerifiedReport, VerifyError> {
    if report.version != crate::report::REPORT_VERSION {
        return Err(VerifyError::MalformedReport(format!("version {} is not one this verifier knows", report.version)));
    }
    let raw = report.raw()?;
    let enclave_public_key: [u8; 32] = raw
        .enclave_public_key
        .as_slice()
        .try_into()
        .map_err(|_| VerifyError::MalformedReport("enclave_public_key is not 32 bytes".into()))?;
    report.check_signature(&raw)?;
    check_bytes(nonce, Some(&raw.nonce), |expected, actual| VerifyError::NonceMismatch { expected, actual })?;
    let user_data = evidence_user_data(&raw.tls_ca_sha256);
    let mut nitro = None;
    let hardware = match report.tee_type {
        TeeType::AwsNitro => {
            let doc = NitroDocument::parse(&raw.evidence)?;
            doc.verify(&policy.nitro_roots, at_ms)?;
            check_bytes(nonce, doc.nonce, |expected, actual| VerifyError::NonceMismatch { expected, actual })?;
            match doc.public_key {
                None => return Err(VerifyError::PublicKeyMissing),
                Some(k) if k != enclave_public_key => {
                    return Err(VerifyError::PublicKeyMismatch { expected: hex::encode(enclave_public_key), actual: hex::encode(k) });
                }
                Some(_) => {}
            }
            if doc.user_data != Some(user_data.as_slice()) {
                return Err(VerifyError::UserDataMismatch);
            }
            let pcr0 = doc.pcr(0).unwrap_or_default();
            if pcr0 != raw.measurement.as_slice() {
                return Err(VerifyError::MeasurementInconsistent { report: report.measurement.clone(), evidence: hex::encode(pcr0) });
            }
            check_pcrs(&doc, policy)?;
            nitro = Some(summary(&doc));
            true
        }
        TeeType::Simulation => {
            let ev = SimulatedEvidence::verify(&raw.evidence)?;
            if !policy.simulated_platform_keys.is_empty() && !policy.simulated_platform_keys.iter().any(|k| k.as_slice() == ev.platform_key)
            {
                return Err(VerifyError::UnknownSimulatedPlatform(hex::encode(ev.platform_key)));
            }
            check_bytes(nonce, Some(ev.nonce), |expected, actual| VerifyError::NonceMismatch { expected, actual })?;
            if ev.public_key != enclave_public_key {
                return Err(VerifyError::PublicKeyMismatch {
                    expected: hex::encode(enclave_public_key),
                    actual: hex::encode(ev.public_key),
                });
            }
            if ev.user_data != user_data.as_slice() {
                return Err(VerifyError::UserDataMismatch);
            }
            if ev.measurement != raw.measurement.as_slice() {
                return Err(VerifyError::MeasurementInconsistent {
                    report: report.measurement.clone(),
                    evidence: hex::encode(ev.measurement),
                });
            }
            if report.hardware || report.security_level != 0 {
                return Err(VerifyError::MalformedReport("a simulated report claims hardware protection".into()));
            }
            if !policy.danger_accept_simulation {
                return Err(VerifyError::SimulationNotAccepted);
            }
            false
        }
        other => return Err(VerifyError::UnverifiableTee(other.to_string())),
    };
    check_measurement(&raw.measurement, policy)?;
    Ok(VerifiedReport {
        tee_type: report.tee_type,
        hardware,
        security_level: report.security_level,
        measurement: raw.measurement,
        enclave_public_key,
        tls_ca_sha256: raw.tls_ca_sha256,
        timestamp_ms: report.timestamp,
        warnings: report.warnings.clone(),
        nitro,
    })
}
