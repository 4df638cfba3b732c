//! The simulated TEE: software keys, for machines without TEE hardware. It is honest about
//! being software: every report says `tee_type: simulation`, `security_level: 0`, and carries a
//! warning, and a verifier refuses it unless told otherwise.
//!
//! Per install it keeps one key file (64 random bytes, mode 0600): the first half seeds the
//! simulated *platform key*, an Ed25519 key that signs evidence the way a TEE vendor's key
//! would; the second half is the root of the sealing key, so the same install reopens its
//! store and another install cannot. The measurement is SHA-384 of the running executable
//! ([`measure_executable`], also printed by `daas measure`). Evidence layout: docs/attestation.md,
//! "Simulated evidence".

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use ring::hkdf;
use zeroize::Zeroizing;

use crate::canon;
use crate::error::{TeeError, VerifyError};
use crate::identity::verify_ed25519;
use crate::provider::{SecurityLevel, TeeProvider, TeeType};

/// Domain label of simulated evidence.
const EVIDENCE_DOMAIN: &str = "daas-simulated-evidence-v1";
/// Warning carried by every simulated report and health answer.
pub const SIMULATION_WARNING: &str =
    "SIMULATED TEE: no hardware protects this server; keys live in a file on the host and the evidence is signed by a software key";

/// SHA-384 of the executable this process runs (`/proc/self/exe`).
pub fn measure_executable() -> Result<[u8; 48], TeeError> {
    let path = Path::new("/proc/self/exe");
    let mut f = std::fs::File::open(path).map_err(|e| TeeError::device("reading /proc/self/exe to measure it", e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA384);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| TeeError::device("reading /proc/self/exe to measure it", e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The simulated provider.
pub struct SimulatedTee {
    platform: SigningKey,
    sealing_root: Zeroizing<[u8; 32]>,
    measurement: [u8; 48],
    key_file: PathBuf,
}

impl std::fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTee")
            .field("key_file", &self.key_file)
            .field("platform_key", &hex::encode(self.platform_public_key()))
            .finish_non_exhaustive()
    }
}

impl SimulatedTee {
    /// Loads the install's key file, or creates it on first start.
    pub fn open_or_create(key_file: &Path) -> Result<SimulatedTee, TeeError> {
        let bytes = crate::provider::secret_file(key_file, 64)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let mut sealing_root = Zeroizing::new([0u8; 32]);
        sealing_root.copy_from_slice(&bytes[32..]);
        Ok(SimulatedTee {
            platform: SigningKey::from_bytes(&seed),
            sealing_root,
            measurement: measure_executable()?,
            key_file: key_file.to_owned(),
        })
    }

    /// The simulated platform's public key; a verifier may pin it.
    pub fn platform_public_key(&self) -> [u8; 32] {
        self.platform.verifying_key().to_bytes()
    }
}

impl TeeProvider for SimulatedTee {
    fn tee_type(&self) -> TeeType {
        TeeType::Simulation
    }

    fn security_level(&self) -> SecurityLevel {
        SecurityLevel::SIMULATED
    }

    fn measurement(&self) -> &[u8] {
        &self.measurement
    }

    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, TeeError> {
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let pk = self.platform_public_key();
        let ts = ts.to_be_bytes();
        let fields: [&[u8]; 6] = [&pk, &self.measurement, &ts, nonce, user_data, public_key];
        let mut out = canon::encode(EVIDENCE_DOMAIN, &fields);
        let sig = self.platform.sign(&out).to_bytes();
        canon::push(&mut out, &sig);
        Ok(out)
    }

    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"daas-simulated-sealing-v1").extract(&self.sealing_root[..]);
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"store-kek"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key[..]))
            .map_err(|_| TeeError::Key("HKDF expansion failed".into()))?;
        Ok(key)
    }

    fn warnings(&self) -> Vec<String> {
        vec![format!("{SIMULATION_WARNING} ({})", self.key_file.display())]
    }
}

/// Simulated evidence, parsed and its platform signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedEvidence<'a> {
    pub platform_key: &'a [u8],
    pub measurement: &'a [u8],
    pub timestamp_ms: u64,
    pub nonce: &'a [u8],
    pub user_data: &'a [u8],
    pub public_key: &'a [u8],
}

impl<'a> SimulatedEvidence<'a> {
    /// Parses `bytes` and verifies the platform key's signature over them.
    pub fn verify(bytes: &'a [u8]) -> Result<SimulatedEvidence<'a>, VerifyError> {
        let bad = |m: &str| VerifyError::MalformedSimulatedEvidence(m.to_string());
        let mut r = canon::Reader::new(bytes);
        if r.field() != Some(EVIDENCE_DOMAIN.as_bytes()) {
            return Err(bad("it does not start with the daas-simulated-evidence-v1 label"));
        }
        let mut fields = [&[][..]; 6];
        for f in &mut fields {
            *f = r.field().ok_or_else(|| bad("a field is missing or runs past the end"))?;
        }
        let signed_len = bytes.len() - r.remaining();
        let sig = r.field().ok_or_else(|| bad("the signature is missing"))?;
        if !r.is_empty() {
            return Err(bad("trailing bytes after the signature"));
        }
        let [platform_key, measurement, ts, nonce, user_data, public_key] = fields;
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad("the timestamp is not 8 bytes"))?;
        if !verify_ed25519(platform_key, &bytes[..signed_len], sig) {
            return Err(VerifyError::SimulatedEvidenceSignature);
        }
        Ok(SimulatedEvidence { platform_key, measurement, timestamp_ms: u64::from_be_bytes(ts), nonce, user_data, public_key })
    }
}
