//! Sui private keys in the forms the Sui CLI and SDKs write them: Bech32 `suiprivkey1…`
//! (flag byte + 32-byte secret), the legacy `sui.keystore` entry (Base64 of the same 33
//! bytes), or a `sui.keystore` file (a JSON array of such entries; the first is used).

use std::path::Path;

use sui_crypto::SuiSigner as _;
use sui_crypto::ed25519::Ed25519PrivateKey;
use sui_crypto::secp256k1::Secp256k1PrivateKey;
use sui_crypto::secp256r1::Secp256r1PrivateKey;
use sui_sdk_types::{Address, PersonalMessage};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not a Sui private key: {0}")]
    Format(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One Sui private key of any of the three simple schemes.
pub enum SuiKey {
    Ed25519(Ed25519PrivateKey),
    Secp256k1(Secp256k1PrivateKey),
    Secp256r1(Secp256r1PrivateKey),
}

impl std::fmt::Debug for SuiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuiKey").field("scheme", &self.scheme()).field("address", &self.address().to_string()).finish_non_exhaustive()
    }
}

impl SuiKey {
    /// Parses one key: `suiprivkey1…` or Base64 of `flag || secret`.
    pub fn parse(text: &str) -> Result<SuiKey, KeyError> {
        let text = text.trim();
        let fmt = |e: &dyn std::fmt::Display| KeyError::Format(e.to_string());
        if text.starts_with("suiprivkey") {
            // The flag picks the scheme; each parser refuses another scheme's flag (and the
            // secp256r1 one refuses an out-of-range scalar instead of panicking).
            if let Ok(k) = Ed25519PrivateKey::from_suiprivkey(text) {
                return Ok(SuiKey::Ed25519(k));
            }
            if let Ok(k) = Secp256k1PrivateKey::from_suiprivkey(text) {
                return Ok(SuiKey::Secp256k1(k));
            }
            return Secp256r1PrivateKey::from_suiprivkey(text).map(SuiKey::Secp256r1).map_err(|e| fmt(&e));
        }
        if let Ok(k) = Ed25519PrivateKey::from_base64(text) {
            return Ok(SuiKey::Ed25519(k));
        }
        if let Ok(k) = Secp256k1PrivateKey::from_base64(text) {
            return Ok(SuiKey::Secp256k1(k));
        }
        Secp256r1PrivateKey::from_base64(text).map(SuiKey::Secp256r1).map_err(|e| fmt(&e))
    }

    /// Reads a key file: one key, or a `sui.keystore` JSON array (its first key).
    pub fn read(path: &Path) -> Result<SuiKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
        let trimmed = text.trim();
        if trimmed.starts_with('[') {
            let entries: Vec<String> = serde_json::from_str(trimmed)
                .map_err(|e| KeyError::Format(format!("{}: not a sui.keystore array: {e}", path.display())))?;
            let first = entries.first().ok_or_else(|| KeyError::Format(format!("{}: the keystore is empty", path.display())))?;
            return SuiKey::parse(first);
        }
        SuiKey::parse(trimmed)
    }

    /// A fresh Ed25519 key (the scheme whose signatures are canonical by construction).
    pub fn generate_ed25519() -> SuiKey {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        SuiKey::Ed25519(Ed25519PrivateKey::new(seed))
    }

    /// A key of `scheme` ("ed25519", "secp256k1" or "secp256r1") from a 32-byte secret; an
    /// out-of-range ECDSA scalar is an error, not a panic.
    pub fn from_secret(scheme: &str, secret: [u8; 32]) -> Result<SuiKey, KeyError> {
        use base64::Engine as _;
        let flag = match scheme {
            "ed25519" => 0u8,
            "secp256k1" => 1,
            "secp256r1" => 2,
            other => return Err(KeyError::Format(format!("unknown scheme {other:?}"))),
        };
        let mut raw = vec![flag];
        raw.extend_from_slice(&secret);
        SuiKey::parse(&base64::engine::general_purpose::STANDARD.encode(raw))
    }

    /// A fresh key of `scheme`.
    pub fn generate(scheme: &str) -> Result<SuiKey, KeyError> {
        loop {
            let mut secret = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut secret);
            match SuiKey::from_secret(scheme, secret) {
                Err(KeyError::Format(e)) if e.starts_with("unknown scheme") => return Err(KeyError::Format(e)),
                // A scalar outside the curve's order (chance ~2^-128 for a random one): draw again.
                Err(_) => continue,
                Ok(k) => return Ok(k),
            }
        }
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            SuiKey::Ed25519(_) => "ed25519",
            SuiKey::Secp256k1(_) => "secp256k1",
            SuiKey::Secp256r1(_) => "secp256r1",
        }
    }

    /// The account address: blake2b-256(flag || public key).
    pub fn address(&self) -> Address {
        match self {
            SuiKey::Ed25519(k) => k.public_key().derive_address(),
            SuiKey::Secp256k1(k) => k.public_key().derive_address(),
            SuiKey::Secp256r1(k) => k.public_key().derive_address(),
        }
    }

    /// The `suiprivkey1…` form.
    pub fn to_suiprivkey(&self) -> Result<String, KeyError> {
        match self {
            SuiKey::Ed25519(k) => k.to_suiprivkey(),
            SuiKey::Secp256k1(k) => k.to_suiprivkey(),
            SuiKey::Secp256r1(k) => k.to_suiprivkey(),
        }
        .map_err(|e| KeyError::Format(e.to_string()))
    }

    /// Signs `message` as a Sui personal message; returns the serialized signature in Base64
    /// (`flag || signature || public key`), as wallets and the SDKs send it.
    pub fn sign_personal_message(&self, message: &[u8]) -> Result<String, KeyError> {
        let msg = PersonalMessage(message.into());
        let sig = match self {
            SuiKey::Ed25519(k) => k.sign_personal_message(&msg),
            SuiKey::Secp256k1(k) => k.sign_personal_message(&msg),
            SuiKey::Secp256r1(k) => k.sign_personal_message(&msg).map(crate::signature::normalize_r1),
        }
        .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(sig.to_base64())
    }
}
