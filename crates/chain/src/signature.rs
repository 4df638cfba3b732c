//! Sui personal-message signatures: `Base64(flag || signature || public key)` over
//! blake2b-256(intent `03 00 00` || BCS(message as vector<u8>)). Ed25519 signs that digest;
//! Secp256k1 and Secp256r1 sign its SHA-256 as `r || s`. Only canonical (low-S) ECDSA
//! signatures are accepted, as Sui's validators require; the signer is the address derived
//! from the public key inside the signature, so callers compare it with whom they expect.

use sui_crypto::SuiVerifier as _;
use sui_crypto::simple::SimpleVerifier;
use sui_sdk_types::{Address, PersonalMessage, Secp256r1Signature, SimpleSignature, UserSignature};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not a serialized Sui signature: {0}")]
    Malformed(String),
    #[error("only Ed25519, Secp256k1 and Secp256r1 signatures are accepted, not {0}")]
    Scheme(&'static str),
    #[error("the secp256r1 signature is not canonical (high S)")]
    HighS,
    #[error("the signature does not verify for this message")]
    Invalid,
}

/// Checks `signature` (Base64) over `message` and returns the signer's address.
pub fn verify_personal_message(message: &[u8], signature: &str) -> Result<Address, SignatureError> {
    let sig = UserSignature::from_base64(signature.trim()).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let address = match &sig {
        UserSignature::Simple(SimpleSignature::Ed25519 { public_key, .. }) => public_key.derive_address(),
        UserSignature::Simple(SimpleSignature::Secp256k1 { public_key, .. }) => public_key.derive_address(),
        UserSignature::Simple(SimpleSignature::Secp256r1 { signature, public_key }) => {
            if is_high_s(signature.inner()) {
                return Err(SignatureError::HighS);
            }
            public_key.derive_address()
        }
        UserSignature::Multisig(_) => return Err(SignatureError::Scheme("multisig")),
        UserSignature::ZkLogin(_) => return Err(SignatureError::Scheme("zkLogin")),
        UserSignature::Passkey(_) => return Err(SignatureError::Scheme("passkey")),
        _ => return Err(SignatureError::Scheme("an unknown scheme")),
    };
    SimpleVerifier.verify_personal_message(&PersonalMessage(message.into()), &sig).map_err(|_| SignatureError::Invalid)?;
    Ok(address)
}

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// floor(n / 2) for P-256, big-endian.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
    0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

fn is_high_s(sig: &[u8; 64]) -> bool {
    sig[32..] > P256_HALF_N[..]
}

/// `r || (n - s)` when s is high, so a signature made by a library that does not normalize
/// (p256 0.13 through sui-crypto) is the canonical one Sui accepts.
pub(crate) fn normalize_r1(sig: UserSignature) -> UserSignature {
    let UserSignature::Simple(SimpleSignature::Secp256r1 { signature, public_key }) = &sig else { return sig };
    let bytes = signature.inner();
    if !is_high_s(bytes) {
        return sig;
    }
    let mut out = *bytes;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(bytes[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        out[32 + i] = (d + 256 * borrow) as u8;
    }
    UserSignature::Simple(SimpleSignature::Secp256r1 { signature: Secp256r1Signature::new(out), public_key: *public_key })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::SuiKey;
    use base64::Engine as _;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn each_scheme_signs_and_verifies_and_names_its_signer() {
        for scheme in ["ed25519", "secp256k1", "secp256r1"] {
            // r1 signatures come out high-S about half the time before normalizing: try several.
            for _ in 0..8 {
                let key = SuiKey::generate(scheme).unwrap();
                let sig = key.sign_personal_message(b"hello").unwrap();
                assert_eq!(verify_personal_message(b"hello", &sig), Ok(key.address()), "{scheme}");
                assert_eq!(verify_personal_message(b"hellO", &sig), Err(SignatureError::Invalid), "{scheme}");
                // The suiprivkey form reads back as the same account.
                assert_eq!(SuiKey::parse(&key.to_suiprivkey().unwrap()).unwrap().address(), key.address());
            }
        }
        assert!(SuiKey::generate("rsa").is_err());
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused() {
        let key = SuiKey::generate_ed25519();
        let raw = base64::engine::general_purpose::STANDARD.decode(key.sign_personal_message(b"m").unwrap()).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert!(verify_personal_message(b"m", &b64(&bad)).is_err(), "byte {i}");
        }
        assert!(matches!(verify_personal_message(b"m", "not base64!"), Err(SignatureError::Malformed(_))));
        assert!(matches!(verify_personal_message(b"m", &b64(&raw[..50])), Err(SignatureError::Malformed(_))));
    }

    #[test]
    fn high_s_r1_signatures_are_refused_and_ours_are_low_s() {
        let n_minus_1 = {
            let mut v = P256_N;
            v[31] -= 1;
            v
        };
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&n_minus_1);
        assert!(is_high_s(&sig));
        sig[32..].copy_from_slice(&P256_HALF_N);
        assert!(!is_high_s(&sig));
        // n - (n - 1) = 1.
        let mut high = [7u8; 64];
        high[32..].copy_from_slice(&n_minus_1);
        let pk = sui_sdk_types::Secp256r1PublicKey::new([2u8; 33]);
        let fixed =
            normalize_r1(UserSignature::Simple(SimpleSignature::Secp256r1 { signature: Secp256r1Signature::new(high), public_key: pk }));
        let UserSignature::Simple(SimpleSignature::Secp256r1 { signature, .. }) = fixed else { panic!() };
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(signature.inner()[32..], one);
        assert_eq!(signature.inner()[..32], [7u8; 32]);
    }
}
