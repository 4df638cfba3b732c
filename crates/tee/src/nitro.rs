//! AWS Nitro Enclaves attestation documents: parsing and verification.
//!
//! A document is a COSE_Sign1 structure (RFC 9052, optionally under CBOR tag 18) whose payload
//! is a CBOR map written by the Nitro Secure Module: module id, digest, timestamp, PCRs, the
//! signing certificate, the CA bundle from the AWS root down, and the optional public key,
//! user data and nonce. [`NitroDocument::parse`] checks the shape; [`NitroDocument::verify`]
//! checks the certificate chain against a pinned root at a given time and the ES384 signature.
//! Policy (PCRs, nonce, key) is checked by the caller, see [`crate::verify`].

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};
use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::time::ASN1Time;

use crate::cbor::{self, Value};
use crate::error::VerifyError;

/// SHA-256 of the DER of the AWS Nitro Enclaves Root G1 certificate (CN=aws.nitro-enclaves),
/// as AWS publishes it. Documents must chain to a root with this fingerprint unless a policy
/// names others.
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31, 0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17,
    0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// COSE algorithm identifier of ECDSA with SHA-384 (ES384), as a CBOR negative integer (-35).
const COSE_ES384: Value<'static> = Value::Negative(34);
/// CBOR tag of a COSE_Sign1 structure.
const COSE_SIGN1_TAG: u64 = 18;
/// Largest field sizes the NSM allows (its API limits user data, nonce and key to 1024 bytes).
const MAX_USER_FIELD: usize = 1024;

/// A parsed, not yet verified, Nitro attestation document. Borrows from the input bytes.
#[derive(Debug, Clone)]
pub struct NitroDocument<'a> {
    pub module_id: &'a str,
    pub digest: &'a str,
    /// Milliseconds since the Unix epoch, as the NSM stamped it.
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u8, &'a [u8]>,
    /// DER of the certificate whose key signed the document.
    pub certificate: &'a [u8],
    /// DER certificates from the root (first) down to the leaf's issuer (last).
    pub cabundle: Vec<&'a [u8]>,
    pub public_key: Option<&'a [u8]>,
    pub user_data: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
    protected: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::MalformedDocument(what.into())
}

fn bytes_field<'a>(map: &Value<'a>, key: &str) -> Result<&'a [u8], VerifyError> {
    match map.get(key) {
        Some(Value::Bytes(b)) => Ok(b),
        Some(v) => Err(malformed(format!("field {key:?} is a {}, not a byte string", v.kind()))),
        None => Err(malformed(format!("field {key:?} is missing"))),
    }
}

fn optional_bytes<'a>(map: &Value<'a>, key: &str) -> Result<Option<&'a [u8]>, VerifyError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) if b.len() <= MAX_USER_FIELD => Ok(Some(b)),
        Some(Value::Bytes(b)) => Err(malformed(format!("field {key:?} has {} bytes; the NSM allows {MAX_USER_FIELD}", b.len()))),
        Some(v) => Err(malformed(format!("field {key:?} is a {}, not a byte string or null", v.kind()))),
    }
}

impl<'a> NitroDocument<'a> {
    /// Parses a COSE_Sign1 document (tagged or untagged) and its payload. Fails with
    /// [`VerifyError::MalformedCbor`] when the bytes are not CBOR and with
    /// [`VerifyError::MalformedDocument`] when the structure is not a Nitro document.
    pub fn parse(bytes: &'a [u8]) -> Result<NitroDocument<'a>, VerifyError> {
        let outer = cbor::decode(bytes).map_err(|e| VerifyError::MalformedCbor(format!("COSE_Sign1: {e}")))?;
        let outer = match outer {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(t, _) => return Err(malformed(format!("CBOR tag {t} where COSE_Sign1 (18) was expected"))),
            v => v,
        };
        let Value::Array(parts) = outer else {
            return Err(malformed(format!("COSE_Sign1 is a {}, not an array", outer.kind())));
        };
        let [Value::Bytes(protected), Value::Map(_), Value::Bytes(payload), Value::Bytes(signature)] = parts.as_slice() else {
            return Err(malformed("COSE_Sign1 must be [protected bstr, unprotected map, payload bstr, signature bstr]"));
        };
        let header = cbor::decode(protected).map_err(|e| VerifyError::MalformedCbor(format!("protected header: {e}")))?;
        let alg = match &header {
            Value::Map(entries) => entries.iter().find(|(k, _)| *k == Value::Unsigned(1)).map(|(_, v)| v.clone()),
            _ => None,
        };
        if alg != Some(COSE_ES384) {
            return Err(VerifyError::UnsupportedAlgorithm(format!("{alg:?}")));
        }
        let body = cbor::decode(payload).map_err(|e| VerifyError::MalformedCbor(format!("payload: {e}")))?;
        if !matches!(body, Value::Map(_)) {
            return Err(malformed(format!("payload is a {}, not a map", body.kind())));
        }
        let text = |key: &str| match body.get(key) {
            Some(Value::Text(t)) => Ok(*t),
            Some(v) => Err(malformed(format!("field {key:?} is a {}, not text", v.kind()))),
            None => Err(malformed(format!("field {key:?} is missing"))),
        };
        let module_id = text("module_id")?;
        let digest_name = text("digest")?;
        let timestamp_ms = match body.get("timestamp") {
            Some(Value::Unsigned(t)) => *t,
            _ => return Err(malformed("field \"timestamp\" is missing or not an unsigned integer")),
        };
        let mut pcrs = BTreeMap::new();
        match body.get("pcrs") {
            Some(Value::Map(entries)) if !entries.is_empty() && entries.len() <= 32 => {
                for (k, v) in entries {
                    match (k, v) {
                        (Value::Unsigned(i), Value::Bytes(b)) if *i < 32 && matches!(b.len(), 32 | 48 | 64) => {
                            if pcrs.insert(*i as u8, *b).is_some() {
                                return Err(malformed(format!("PCR{i} appears twice")));
                            }
                        }
                        _ => return Err(malformed("a PCR entry is not (index < 32 → 32, 48 or 64 bytes)")),
                    }
                }
            }
            _ => return Err(malformed("field \"pcrs\" is missing or not a map of 1 to 32 entries")),
        }
        let certificate = bytes_field(&body, "certificate")?;
        let cabundle = match body.get("cabundle") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|c| match c {
                    Value::Bytes(b) => Ok(*b),
                    _ => Err(malformed("a cabundle entry is not a byte string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(malformed("field \"cabundle\" is missing or empty")),
        };
        Ok(NitroDocument {
            module_id,
            digest: digest_name,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key: optional_bytes(&body, "public_key")?,
            user_data: optional_bytes(&body, "user_data")?,
            nonce: optional_bytes(&body, "nonce")?,
            protected,
            payload,
            signature,
        })
    }

    /// Verifies the document as of `at_ms` (Unix milliseconds): the first certificate of the CA
    /// bundle is one of `roots` (SHA-256 fingerprints of DER), each certificate is signed by the
    /// one before it and valid at that time, every issuer is a CA, and the leaf's P-384 key made
    /// the ES384 signature over the COSE Sig_structure. The digest must be SHA384.
    pub fn verify(&self, roots: &[[u8; 32]], at_ms: u64) -> Result<(), VerifyError> {
        if self.digest != "SHA384" {
            return Err(malformed(format!("digest is {:?}; Nitro documents use SHA384", self.digest)));
        }
        let root_fp: [u8; 32] = digest(&SHA256, self.cabundle[0]).as_ref().try_into().map_err(|_| malformed("digest length"))?;
        if !roots.contains(&root_fp) {
            return Err(VerifyError::UnknownRoot(hex::encode(root_fp)));
        }
        let at = ASN1Time::from_timestamp((at_ms / 1000) as i64).map_err(|_| malformed("verification time out of range"))?;
        let chain: Vec<&[u8]> = self.cabundle.iter().copied().chain(std::iter::once(self.certificate)).collect();
        let mut parsed = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            let (rest, cert) =
                X509Certificate::from_der(der).map_err(|e| VerifyError::BadCertificate { index: i, reason: e.to_string() })?;
            if !rest.is_empty() {
                return Err(VerifyError::BadCertificate { index: i, reason: "trailing bytes after the certificate".into() });
            }
            parsed.push(cert);
        }
        let last = parsed.len() - 1;
        for (i, cert) in parsed.iter().enumerate() {
            let subject = cert.subject().to_string();
            let issuer = if i == 0 { cert } else { &parsed[i - 1] };
            if cert.issuer() != issuer.subject() {
                return Err(VerifyError::CertificateChain {
                    index: i,
                    subject,
                    reason: "its issuer is not the certificate before it".into(),
                });
            }
            cert.verify_signature(Some(issuer.public_key()))
                .map_err(|_| VerifyError::CertificateSignature { index: i, subject: subject.clone() })?;
            let validity = cert.validity();
            if !validity.is_valid_at(at) {
                return Err(VerifyError::CertificateExpired {
                    index: i,
                    subject,
                    not_before: validity.not_before.timestamp(),
                    not_after: validity.not_after.timestamp(),
                    at: at.timestamp(),
                });
            }
            if i < last {
                let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
                if !is_ca {
                    return Err(VerifyError::CertificateChain {
                        index: i,
                        subject,
                        reason: "it issues certificates but is not a CA".into(),
                    });
                }
                if let Ok(Some(ku)) = cert.key_usage()
                    && !ku.value.key_cert_sign()
                {
                    return Err(VerifyError::CertificateChain {
                        index: i,
                        subject,
                        reason: "its key usage forbids signing certificates".into(),
                    });
                }
            }
        }
        let leaf_key = &parsed[last].public_key().subject_public_key.data;
        let sig_structure = self.sig_structure();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, leaf_key.as_ref())
            .verify(&sig_structure, self.signature)
            .map_err(|_| VerifyError::DocumentSignature)
    }

    /// The bytes ES384 signs: CBOR `["Signature1", protected, h'', payload]` (RFC 9052 §4.4).
    fn sig_structure(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + self.protected.len() + 32);
        cbor::write_head(&mut out, 4, 4);
        cbor::write_text(&mut out, "Signature1");
        cbor::write_bytes(&mut out, self.protected);
        cbor::write_bytes(&mut out, &[]);
        cbor::write_bytes(&mut out, self.payload);
        out
    }

    /// The PCR at `index`, if the document has it.
    pub fn pcr(&self, index: u8) -> Option<&'a [u8]> {
        self.pcrs.get(&index).copied()
    }
}
