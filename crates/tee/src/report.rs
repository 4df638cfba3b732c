//! The attestation report the server hands out at `GET /api/v1/attestation` and the
//! [`Attester`] that makes it: TEE evidence over the client's nonce, the enclave's public key
//! and the hash of the TLS CA, wrapped with the measurement and metadata and signed by the
//! enclave key. docs/attestation.md, "Attestation report", gives the JSON fields and the exact bytes
//! the signature covers.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::canon;
use crate::error::{TeeError, VerifyError};
use crate::identity::{EnclaveIdentity, verify_ed25519};
use crate::provider::{TeeProvider, TeeType};

/// Version of the report format and of its signing bytes.
pub const REPORT_VERSION: u32 = 1;
/// Domain label of the report signature.
const REPORT_DOMAIN: &str = "daas-attestation-report-v1";
/// Domain label of the user data bound into evidence.
const USER_DATA_DOMAIN: &str = "daas-evidence-user-data-v1";
/// Shortest and longest nonce a client may send, in bytes.
pub const NONCE_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// A signed attestation report, as JSON on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationReport {
    pub version: u32,
    pub tee_type: TeeType,
    pub security_level: u8,
    /// False for the simulation; a report with `false` is never hardware-backed.
    pub hardware: bool,
    /// Hex.
    pub measurement: String,
    /// Hex of the 32-byte Ed25519 key.
    pub enclave_public_key: String,
    /// Base64 (standard alphabet, padded) of the TEE's own evidence.
    pub evidence: String,
    /// Hex of the client's nonce.
    pub nonce: String,
    /// Unix milliseconds at which the report was made.
    pub timestamp: u64,
    /// Hex of SHA-256 over the DER of the TLS CA certificate.
    pub tls_ca_sha256: String,
    pub warnings: Vec<String>,
    /// Base64 of the Ed25519 signature over [`AttestationReport::signing_bytes`].
    pub signature: String,
}

/// The user data bound into evidence: the TLS CA's hash under its own label.
pub fn evidence_user_data(tls_ca_sha256: &[u8; 32]) -> Vec<u8> {
    canon::encode(USER_DATA_DOMAIN, &[tls_ca_sha256])
}

/// Decoded binary fields of a report, for signing and verification.
#[derive(Debug)]
pub(crate) struct RawReport {
    pub measurement: Vec<u8>,
    pub enclave_public_key: Vec<u8>,
    pub evidence: Vec<u8>,
    pub nonce: Vec<u8>,
    pub tls_ca_sha256: [u8; 32],
}

impl AttestationReport {
    /// Decodes the hex and base64 fields, failing with [`VerifyError::MalformedReport`].
    pub(crate) fn raw(&self) -> Result<RawReport, VerifyError> {
        let hexf = |name: &str, v: &str| hex::decode(v).map_err(|_| VerifyError::MalformedReport(format!("{name} is not hex")));
        let tls: [u8; 32] = hexf("tls_ca_sha256", &self.tls_ca_sha256)?
            .try_into()
            .map_err(|_| VerifyError::MalformedReport("tls_ca_sha256 is not 32 bytes".into()))?;
        Ok(RawReport {
            measurement: hexf("measurement", &self.measurement)?,
            enclave_public_key: hexf("enclave_public_key", &self.enclave_public_key)?,
            evidence: B64.decode(&self.evidence).map_err(|_| VerifyError::MalformedReport("evidence is not base64".into()))?,
            nonce: hexf("nonce", &self.nonce)?,
            tls_ca_sha256: tls,
        })
    }

    /// The bytes the enclave key signs: the canonical encoding (see [`crate::canon`]) of the
    /// label `daas-attestation-report-v1` and then version (u32 BE), tee_type (its name),
    /// security_level (1 byte), hardware (1 byte, 0 or 1), measurement, enclave_public_key,
    /// evidence, nonce (all raw bytes), timestamp (u64 BE), tls_ca_sha256 (32 bytes) and the
    /// warnings joined by newlines.
    pub(crate) fn signing_bytes(&self, raw: &RawReport) -> Vec<u8> {
        let warnings = self.warnings.join("\n");
        canon::encode(
            REPORT_DOMAIN,
            &[
                &self.version.to_be_bytes(),
                self.tee_type.as_str().as_bytes(),
                &[self.security_level],
                &[u8::from(self.hardware)],
                &raw.measurement,
                &raw.enclave_public_key,
                &raw.evidence,
                &raw.nonce,
                &self.timestamp.to_be_bytes(),
                &raw.tls_ca_sha256,
                warnings.as_bytes(),
            ],
        )
    }

    /// Checks the enclave key's signature (and nothing else: see [`crate::verify`]).
    pub(crate) fn check_signature(&self, raw: &RawReport) -> Result<(), VerifyError> {
        let sig = B64.decode(&self.signature).map_err(|_| VerifyError::MalformedReport("signature is not base64".into()))?;
        if verify_ed25519(&raw.enclave_public_key, &self.signing_bytes(raw), &sig) { Ok(()) } else { Err(VerifyError::ReportSignature) }
    }
}

/// Makes reports: one per server, holding the provider, the enclave identity and the TLS CA hash.
#[derive(Debug)]
pub struct Attester {
    provider: Arc<dyn TeeProvider>,
    identity: Arc<EnclaveIdentity>,
    tls_ca_sha256: [u8; 32],
}

impl Attester {
    pub fn new(provider: Arc<dyn TeeProvider>, identity: Arc<EnclaveIdentity>, tls_ca_sha256: [u8; 32]) -> Attester {
        Attester { provider, identity, tls_ca_sha256 }
    }

    pub fn provider(&self) -> &Arc<dyn TeeProvider> {
        &self.provider
    }

    pub fn identity(&self) -> &Arc<EnclaveIdentity> {
        &self.identity
    }

    pub fn tls_ca_sha256(&self) -> [u8; 32] {
        self.tls_ca_sha256
    }

    /// A fresh report over `nonce`, which must be 16 to 64 bytes. Blocks while the TEE device
    /// answers (an ioctl on hardware), so async callers run it on a blocking thread.
    pub fn report(&self, nonce: &[u8]) -> Result<AttestationReport, TeeError> {
        if !NONCE_BYTES.contains(&nonce.len()) {
            return Err(TeeError::Refused(format!("the nonce must be 16 to 64 bytes, got {}", nonce.len())));
        }
        let pk = self.identity.public_key();
        let evidence = self.provider.evidence(nonce, &evidence_user_data(&self.tls_ca_sha256), &pk)?;
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut report = AttestationReport {
            version: REPORT_VERSION,
            tee_type: self.provider.tee_type(),
            security_level: self.provider.security_level().0,
            hardware: self.provider.is_hardware(),
            measurement: hex::encode(self.provider.measurement()),
            enclave_public_key: hex::encode(pk),
            evidence: B64.encode(&evidence),
            nonce: hex::encode(nonce),
            timestamp,
            tls_ca_sha256: hex::encode(self.tls_ca_sha256),
            warnings: self.provider.warnings(),
            signature: String::new(),
        };
        let raw = RawReport {
            measurement: self.provider.measurement().to_vec(),
            enclave_public_key: pk.to_vec(),
            evidence,
            nonce: nonce.to_vec(),
            tls_ca_sha256: self.tls_ca_sha256,
        };
        report.signature = B64.encode(self.identity.sign(&report.signing_bytes(&raw)));
        Ok(report)
    }
}
