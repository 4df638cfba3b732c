//! Trust you can check: which TEE the master runs in, the evidence it produces, the enclave's
//! identity key, the sealing key that protects the store, and the verifier clients run.
//!
//! Server side: [`detect`] returns a [`TeeProvider`] (Nitro, SEV-SNP, TDX, SGX/Gramine, OP-TEE
//! or the labelled simulation); an [`Attester`] combines it with the [`EnclaveIdentity`] and
//! the TLS CA's hash into signed [`AttestationReport`]s. Client side: [`verify_report`] and
//! [`verify_nitro_document`] check them against a [`Policy`]. This crate never opens a socket.

pub mod canon;
pub mod cbor;
mod error;
mod gramine;
mod identity;
pub mod nitro;
mod nsm;
mod optee;
mod provider;
mod report;
mod sev_guest;
pub mod sim;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod tsm;
mod verify;

pub use error::{TeeError, VerifyError};
pub use gramine::GramineTee;
pub use identity::{EnclaveIdentity, verify_ed25519};
pub use nitro::{AWS_NITRO_ROOT_G1_SHA256, NitroDocument};
pub use nsm::NitroTee;
pub use optee::OpTee;
pub use provider::{DevicePaths, SecurityLevel, TeeChoice, TeeConfig, TeeProvider, TeeType, detect, report_data};
pub use report::{AttestationReport, Attester, NONCE_BYTES, REPORT_VERSION, evidence_user_data};
pub use sim::{SimulatedTee, measure_executable};
pub use verify::{NitroSummary, Policy, VerifiedReport, verify_nitro_document, verify_report};
