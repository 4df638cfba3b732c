//! Errors of the TEE providers ([`TeeError`]) and of the verifier ([`VerifyError`]). Every
//! verification failure has its own variant, so a tenant (and a test) can tell a tampered
//! signature from an expired certificate or a PCR that does not match the policy.

/// A TEE provider could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    /// The device or file the provider needs is missing or failed.
    #[error("{what}: {source}")]
    Device {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The device answered, but not as its protocol says it should.
    #[error("{0}")]
    Protocol(String),
    /// This TEE cannot do this (for example OP-TEE evidence, or Nitro sealing before provisioning).
    #[error("{0}")]
    Unsupported(String),
    /// The configuration asks for something that must not run, e.g. simulation in production.
    #[error("{0}")]
    Refused(String),
    /// A key could not be created or read.
    #[error("{0}")]
    Key(String),
}

impl TeeError {
    pub(crate) fn device(what: impl Into<String>, source: std::io::Error) -> TeeError {
        TeeError::Device { what: what.into(), source }
    }
}

/// Why evidence or a report did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed CBOR: {0}")]
    MalformedCbor(String),
    #[error("not a Nitro attestation document: {0}")]
    MalformedDocument(String),
    #[error("unsupported COSE algorithm {0}; Nitro documents are signed with ES384")]
    UnsupportedAlgorithm(String),
    #[error("the certificate chain ends in an unknown root (SHA-256 {0}); expected the AWS Nitro Enclaves Root G1")]
    UnknownRoot(String),
    #[error("certificate {index} of the chain does not parse: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("certificate {index} ({subject}) is not signed by the certificate before it")]
    CertificateSignature { index: usize, subject: String },
    #[error("certificate {index} ({subject}) is not valid at {at} (valid from {not_before} to {not_after}, Unix seconds)")]
    CertificateExpired { index: usize, subject: String, not_before: i64, not_after: i64, at: i64 },
    #[error("certificate {index} ({subject}) breaks the chain: {reason}")]
    CertificateChain { index: usize, subject: String, reason: String },
    #[error("the document's ES384 signature does not verify with its certificate (payload or signature altered)")]
    DocumentSignature,
    #[error("PCR{index} is {actual}, the policy expects {expected}")]
    PcrMismatch { index: u8, expected: String, actual: String },
    #[error("PCR{0} is required by the policy but absent from the document")]
    PcrMissing(u8),
    #[error("nonce mismatch: expected {expected}, the evidence carries {actual}")]
    NonceMismatch { expected: String, actual: String },
    #[error("the evidence carries no public key; an enclave must bind its key into its evidence")]
    PublicKeyMissing,
    #[error("the evidence binds public key {actual}, not the report's enclave key {expected}")]
    PublicKeyMismatch { expected: String, actual: String },
    #[error("the evidence's user data does not bind this report's TLS CA")]
    UserDataMismatch,
    #[error("measurement is {actual}, the policy expects {expected}")]
    MeasurementMismatch { expected: String, actual: String },
    #[error("the report's measurement {report} is not the one in its evidence ({evidence})")]
    MeasurementInconsistent { report: String, evidence: String },
    #[error("malformed report: {0}")]
    MalformedReport(String),
    #[error("the report's signature by the enclave key does not verify")]
    ReportSignature,
    #[error("malformed simulated evidence: {0}")]
    MalformedSimulatedEvidence(String),
    #[error("the simulated evidence's signature by its platform key does not verify")]
    SimulatedEvidenceSignature,
    #[error("the simulated platform key {0} is not one the policy pins")]
    UnknownSimulatedPlatform(String),
    #[error(
        "the report comes from a SIMULATED TEE (software only, no hardware protection); pass --danger-accept-simulation (or danger-accept-simulation: true in the policy) to accept it anyway"
    )]
    SimulationNotAccepted,
    #[error("evidence of TEE type {0} cannot be verified by this verifier yet")]
    UnverifiableTee(String),
    #[error("the TLS certificate the server presented is not issued by the attested CA: {0}")]
    TlsNotAttested(String),
}
