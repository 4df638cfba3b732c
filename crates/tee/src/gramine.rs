//! Intel SGX enclaves under Gramine, through its `/dev/attestation` pseudo-filesystem: write 64
//! bytes of report data to `user_report_data`, read the quote from `quote`; sealing keys are
//! files under `keys/` (`_sgx_mrenclave` is bound to this enclave's measurement). The
//! measurement is MRENCLAVE, read from a quote at open.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use ring::hkdf;
use zeroize::Zeroizing;

use crate::error::TeeError;
use crate::provider::{SecurityLevel, TeeProvider, TeeType, report_data};

/// Offsets in an SGX quote (version 3): a 48-byte header, then the 384-byte report body.
pub mod quote {
    pub const MRENCLAVE: std::ops::Range<usize> = 48 + 64..48 + 96;
    pub const REPORT_DATA: std::ops::Range<usize> = 48 + 320..48 + 384;
}

/// The Gramine provider.
#[derive(Debug)]
pub struct GramineTee {
    root: PathBuf,
    mrenclave: Vec<u8>,
    /// Writing report data and reading the quote are two steps; one request at a time.
    lock: Mutex<()>,
}

impl GramineTee {
    pub fn open(root: &Path) -> Result<GramineTee, TeeError> {
        let kind = std::fs::read_to_string(root.join("attestation_type"))
            .map_err(|e| TeeError::device(format!("{}/attestation_type", root.display()), e))?;
        if kind.trim() == "none" {
            return Err(TeeError::Unsupported("Gramine runs without remote attestation (sgx.remote_attestation = \"none\")".into()));
        }
        let mut tee = GramineTee { root: root.to_owned(), mrenclave: Vec::new(), lock: Mutex::new(()) };
        let q = tee.quote(&[0u8; 64])?;
        tee.mrenclave = q[quote::MRENCLAVE].to_vec();
        Ok(tee)
    }

    fn quote(&self, rd: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
        let _one_at_a_time = self.lock.lock();
        let dev = |name: &str, e| TeeError::device(format!("{}/{name}", self.root.display()), e);
        std::fs::write(self.root.join("user_report_data"), rd).map_err(|e| dev("user_report_data", e))?;
        let q = std::fs::read(self.root.join("quote")).map_err(|e| dev("quote", e))?;
        if q.len() < quote::REPORT_DATA.end {
            return Err(TeeError::Protocol(format!("the SGX quote is {} bytes, too short", q.len())));
        }
        if q[quote::REPORT_DATA] != rd[..] {
            return Err(TeeError::Protocol("the quote does not carry the report data we wrote".into()));
        }
        Ok(q)
    }
}

impl TeeProvider for GramineTee {
    fn tee_type(&self) -> TeeType {
        TeeType::IntelSgx
    }

    fn security_level(&self) -> SecurityLevel {
        SecurityLevel::ATTESTED_SEALED
    }

    fn measurement(&self) -> &[u8] {
        &self.mrenclave
    }

    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, TeeError> {
        self.quote(&report_data(nonce, user_data, public_key))
    }

    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError> {
        let path = self.root.join("keys/_sgx_mrenclave");
        let k = Zeroizing::new(std::fs::read(&path).map_err(|e| TeeError::device(path.display().to_string(), e))?);
        if k.len() != 16 {
            return Err(TeeError::Protocol(format!("{} holds {} bytes, not a 16-byte SGX key", path.display(), k.len())));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"daas-sgx-sealing-v1").extract(&k);
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"store-kek"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key[..]))
            .map_err(|_| TeeError::Key("HKDF expansion failed".into()))?;
        Ok(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Gramine's files are plain files in a temp directory; the "quote" echoes back the report
    /// data only when it was prepared with it, as the real one would.
    #[test]
    fn gramine_file_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("attestation_type"), "dcap").unwrap();
        let mut q = vec![0u8; 48 + 384 + 100];
        q[quote::MRENCLAVE].copy_from_slice(&[0xaa; 32]);
        std::fs::write(root.join("quote"), &q).unwrap();
        let tee = GramineTee::open(root).unwrap();
        assert_eq!(tee.measurement(), &[0xaa; 32]);
        // Evidence for other report data: the stale quote does not carry it, so it is refused.
        assert!(tee.evidence(b"0123456789abcdef", b"u", b"k").unwrap_err().to_string().contains("report data"));
        std::fs::create_dir(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/_sgx_mrenclave"), [1u8; 16]).unwrap();
        let k1 = tee.sealing_key().unwrap();
        std::fs::write(root.join("keys/_sgx_mrenclave"), [2u8; 16]).unwrap();
        assert_ne!(*k1, *tee.sealing_key().unwrap());
        std::fs::write(root.join("attestation_type"), "none").unwrap();
        assert!(GramineTee::open(root).is_err());
    }
}
