//! Synthetic Nitro attestation documents for tests: a P-384 chain of our own (root,
//! intermediate, leaf) and a COSE_Sign1 document signed by the leaf, with every field under the
//! test's control. Real documents cannot be made without Nitro hardware, and their fields are
//! fixed; these cover what real ones cannot (a chosen nonce, a missing key, an expired leaf).
//! Policies must pin [`SyntheticNitro::root_fingerprint`] to accept them.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

use crate::cbor;

/// The fields of a synthetic document.
#[derive(Debug, Clone)]
pub struct DocSpec {
    pub module_id: String,
    pub timestamp_ms: u64,
    pub pcrs: Vec<(u8, Vec<u8>)>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
    /// Write the payload as an indefinite-length map, as recent NSMs do.
    pub indefinite: bool,
    /// Wrap the COSE_Sign1 in CBOR tag 18.
    pub tagged: bool,
}

impl Default for DocSpec {
    fn default() -> Self {
        DocSpec {
            module_id: "i-0123456789abcdef0-enc0123456789abcdef".into(),
            timestamp_ms: now_ms(),
            pcrs: (0..16u8).map(|i| (i, vec![i; 48])).collect(),
            public_key: Some(vec![0x11; 32]),
            user_data: None,
            nonce: Some(vec![0x22; 32]),
            indefinite: false,
            tagged: false,
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A test CA chain that signs documents.
pub struct SyntheticNitro {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SyntheticNitro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyntheticNitro")
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("no SANs to validate");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

impl SyntheticNitro {
    /// A new chain whose leaf is valid from `leaf_not_before` to `leaf_not_after` (Unix seconds).
    pub fn new(leaf_not_before: i64, leaf_not_after: i64) -> SyntheticNitro {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let root_params = ca_params("synthetic.nitro-enclaves");
        let root = root_params.self_signed(&root_key).expect("self-signed root");
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let int_params = ca_params("synthetic.intermediate");
        let intermediate = int_params.signed_by(&int_key, &root_issuer).expect("intermediate");
        let int_issuer = Issuer::new(int_params, int_key);
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).expect("no SANs");
        leaf_params.distinguished_name.push(DnType::CommonName, "i-0123456789abcdef0-enc0123456789abcdef.synthetic");
        leaf_params.not_before = time::OffsetDateTime::from_unix_timestamp(leaf_not_before).expect("time");
        leaf_params.not_after = time::OffsetDateTime::from_unix_timestamp(leaf_not_after).expect("time");
        let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).expect("leaf");
        SyntheticNitro {
            root_der: root.der().to_vec(),
            intermediate_der: intermediate.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            leaf_pkcs8: leaf_key.serialize_der(),
        }
    }

    /// A chain whose leaf is valid from an hour ago for three hours.
    pub fn current() -> SyntheticNitro {
        let now = (now_ms() / 1000) as i64;
        SyntheticNitro::new(now - 3600, now + 3 * 3600)
    }

    /// SHA-256 of the root's DER, to pin in a [`crate::Policy`].
    pub fn root_fingerprint(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.root_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// Byte offset range of the leaf certificate inside a document built from this chain.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// Builds and signs a document.
    pub fn document(&self, spec: &DocSpec) -> Vec<u8> {
        let mut payload = Vec::new();
        if spec.indefinite {
            payload.push(0xbf);
        } else {
            cbor::write_head(&mut payload, 5, 9);
        }
        cbor::write_text(&mut payload, "module_id");
        cbor::write_text(&mut payload, &spec.module_id);
        cbor::write_text(&mut payload, "digest");
        cbor::write_text(&mut payload, "SHA384");
        cbor::write_text(&mut payload, "timestamp");
        cbor::write_head(&mut payload, 0, spec.timestamp_ms);
        cbor::write_text(&mut payload, "pcrs");
        cbor::write_head(&mut payload, 5, spec.pcrs.len() as u64);
        for (i, v) in &spec.pcrs {
            cbor::write_head(&mut payload, 0, u64::from(*i));
            cbor::write_bytes(&mut payload, v);
        }
        cbor::write_text(&mut payload, "certificate");
        cbor::write_bytes(&mut payload, &self.leaf_der);
        cbor::write_text(&mut payload, "cabundle");
        cbor::write_head(&mut payload, 4, 2);
        cbor::write_bytes(&mut payload, &self.root_der);
        cbor::write_bytes(&mut payload, &self.intermediate_der);
        for (name, v) in [("public_key", &spec.public_key), ("user_data", &spec.user_data), ("nonce", &spec.nonce)] {
            cbor::write_text(&mut payload, name);
            match v {
                Some(b) => cbor::write_bytes(&mut payload, b),
                None => payload.push(0xf6),
            }
        }
        if spec.indefinite {
            payload.push(0xff);
        }
        let protected = [0xa1, 0x01, 0x38, 0x22];
        let mut sig_structure = Vec::new();
        cbor::write_head(&mut sig_structure, 4, 4);
        cbor::write_text(&mut sig_structure, "Signature1");
        cbor::write_bytes(&mut sig_structure, &protected);
        cbor::write_bytes(&mut sig_structure, &[]);
        cbor::write_bytes(&mut sig_structure, &payload);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &self.leaf_pkcs8, &rng).expect("leaf key");
        let sig = key.sign(&rng, &sig_structure).expect("signing");
        let mut doc = Vec::new();
        if spec.tagged {
            cbor::write_head(&mut doc, 6, 18);
        }
        cbor::write_head(&mut doc, 4, 4);
        cbor::write_bytes(&mut doc, &protected);
        doc.push(0xa0);
        cbor::write_bytes(&mut doc, &payload);
        cbor::write_bytes(&mut doc, sig.as_ref());
        doc
    }
}

/// A [`crate::TeeProvider`] for tests that answers with synthetic Nitro documents, so the Nitro
/// path of report verification runs end to end without hardware. Test-only by construction:
/// its chain ends in a throw-away root that no default policy accepts.
#[derive(Debug)]
pub struct SyntheticNitroTee {
    pub chain: SyntheticNitro,
    pub pcr0: Vec<u8>,
}

impl crate::TeeProvider for SyntheticNitroTee {
    fn tee_type(&self) -> crate::TeeType {
        crate::TeeType::AwsNitro
    }

    fn security_level(&self) -> crate::SecurityLevel {
        crate::SecurityLevel::ATTESTED
    }

    fn measurement(&self) -> &[u8] {
        &self.pcr0
    }

    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, crate::TeeError> {
        let mut pcrs: Vec<(u8, Vec<u8>)> = (1..16u8).map(|i| (i, vec![0; 48])).collect();
        pcrs.insert(0, (0, self.pcr0.clone()));
        Ok(self.chain.document(&DocSpec {
            pcrs,
            public_key: Some(public_key.to_vec()),
            user_data: Some(user_data.to_vec()),
            nonce: Some(nonce.to_vec()),
            ..DocSpec::default()
        }))
    }

    fn sealing_key(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, crate::TeeError> {
        Err(crate::TeeError::Unsupported("synthetic Nitro has no sealing key".into()))
    }
}
