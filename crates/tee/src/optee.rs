//! ARM TrustZone with OP-TEE (`/dev/tee0`): detected and reported with its security level. OP-TEE
//! has no remote attestation or sealing service that this build speaks, so evidence and the
//! sealing key are refused with a message saying so, and the master needs `--kek-file`.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::TeeError;
use crate::provider::{SecurityLevel, TeeProvider, TeeType};

#[derive(Debug)]
pub struct OpTee;

impl OpTee {
    pub fn open(device: &Path) -> Result<OpTee, TeeError> {
        std::fs::OpenOptions::new().read(true).write(true).open(device).map_err(|e| TeeError::device(device.display().to_string(), e))?;
        Ok(OpTee)
    }
}

impl TeeProvider for OpTee {
    fn tee_type(&self) -> TeeType {
        TeeType::ArmTrustzone
    }

    fn security_level(&self) -> SecurityLevel {
        SecurityLevel::ISOLATED
    }

    fn measurement(&self) -> &[u8] {
        &[]
    }

    fn evidence(&self, _nonce: &[u8], _user_data: &[u8], _public_key: &[u8]) -> Result<Vec<u8>, TeeError> {
        Err(TeeError::Unsupported("OP-TEE (ARM TrustZone) offers no remote attestation in this build".into()))
    }

    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError> {
        Err(TeeError::Unsupported(
            "OP-TEE (ARM TrustZone) offers no sealing service in this build: start the master with --kek-file".into(),
        ))
    }
}
