//! The enclave's identity: an Ed25519 key pair generated at boot inside the TEE, never written
//! anywhere. Its public key is bound into every piece of evidence, and it signs attestation
//! reports (and, later, seal tokens), so a client that verified the evidence once can trust
//! everything this key signs for as long as the enclave runs.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use crate::error::TeeError;

/// The boot-time signing key of the enclave.
pub struct EnclaveIdentity {
    key: SigningKey,
}

impl fmt::Debug for EnclaveIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnclaveIdentity").field("public_key", &hex::encode(self.public_key())).finish_non_exhaustive()
    }
}

impl EnclaveIdentity {
    /// A fresh key from the operating system's CSPRNG (inside an enclave, the enclave kernel's,
    /// which Nitro seeds from the NSM).
    pub fn generate() -> Result<EnclaveIdentity, TeeError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(&mut seed[..]).map_err(|_| TeeError::Key("the system random source failed".into()))?;
        Ok(EnclaveIdentity { key: SigningKey::from_bytes(&seed) })
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Verifies an Ed25519 signature by `public_key` (strict: no malleable or small-order forms).
pub fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = <[u8; 32]>::try_from(public_key) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(signature) else { return false };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else { return false };
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}
