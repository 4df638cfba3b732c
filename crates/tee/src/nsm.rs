//! AWS Nitro Enclaves, through the Nitro Secure Module at `/dev/nsm` (the platform Sui's
//! Nautilus runs on). Evidence is the NSM's attestation document, which carries the enclave's
//! public key, the client's nonce and our user data in fields of their own; the measurement is
//! PCR0, the hash of the enclave image.
//!
//! Nitro has no sealing key. Our choice (docs/attestation.md, "Nitro key provisioning"): the KEK is
//! provisioned after boot by the operator over vsock, encrypted to a key the enclave attests,
//! as Nautilus provisions its secrets. Until that channel exists, a Nitro master takes its KEK
//! from `--kek-file` and [`NitroTee::sealing_key`] says so.

use std::path::Path;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

use crate::error::TeeError;
use crate::provider::{SecurityLevel, TeeProvider, TeeType};

/// The Nitro provider: an open NSM device and the enclave's PCR0.
#[derive(Debug)]
pub struct NitroTee {
    fd: i32,
    pcr0: Vec<u8>,
}

impl NitroTee {
    /// Opens the NSM and reads PCR0. Fails unless the device exists and answers.
    pub fn open(device: &Path) -> Result<NitroTee, TeeError> {
        if !device.exists() {
            return Err(TeeError::device(device.display().to_string(), std::io::ErrorKind::NotFound.into()));
        }
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(TeeError::device(format!("opening {}", device.display()), std::io::Error::last_os_error()));
        }
        let tee = NitroTee { fd, pcr0: Vec::new() };
        let pcr0 = match driver::nsm_process_request(fd, Request::DescribePCR { index: 0 }) {
            Response::DescribePCR { data, .. } => data,
            other => return Err(TeeError::Protocol(format!("the NSM answered DescribePCR(0) with {other:?}"))),
        };
        Ok(NitroTee { pcr0, ..tee })
    }
}

impl Drop for NitroTee {
    fn drop(&mut self) {
        driver::nsm_exit(self.fd);
    }
}

impl TeeProvider for NitroTee {
    fn tee_type(&self) -> TeeType {
        TeeType::AwsNitro
    }

    fn security_level(&self) -> SecurityLevel {
        SecurityLevel::ATTESTED
    }

    fn measurement(&self) -> &[u8] {
        &self.pcr0
    }

    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, TeeError> {
        let req = Request::Attestation {
            user_data: Some(ByteBuf::from(user_data)),
            nonce: Some(ByteBuf::from(nonce)),
            public_key: Some(ByteBuf::from(public_key)),
        };
        match driver::nsm_process_request(self.fd, req) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(TeeError::Protocol(format!("the NSM refused the attestation request: {code:?}"))),
            other => Err(TeeError::Protocol(format!("the NSM answered an attestation request with {other:?}"))),
        }
    }

    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError> {
        Err(TeeError::Unsupported(
            "AWS Nitro Enclaves have no sealing key, and KEK provisioning over vsock is not built yet: start the master with --kek-file (see docs/attestation.md, \"Nitro key provisioning\")".into(),
        ))
    }
}
