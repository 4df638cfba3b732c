//! AMD SEV-SNP and Intel TDX guests, through Linux's configfs-tsm report interface
//! (`/sys/kernel/config/tsm/report`, Documentation/ABI/testing/configfs-tsm): make a directory,
//! write 64 bytes of report data to `inblob`, read the signed report (SNP) or quote (TDX) from
//! `outblob`, and check that `generation` did not move while reading, which would mean another
//! writer changed `inblob` in between. The report data is [`report_data`] over the nonce, user
//! data and enclave key. SNP seals through `/dev/sev-guest`'s derived key; TDX has no sealing
//! key, so a TDX master takes its KEK from `--kek-file`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::error::TeeError;
use crate::provider::{SecurityLevel, TeeProvider, TeeType, report_data};

/// Which guest the configfs provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsmKind {
    SevSnp,
    Tdx,
}

impl TsmKind {
    /// What the kernel writes to the entry's `provider` file.
    fn provider_name(self) -> &'static str {
        match self {
            TsmKind::SevSnp => "sev_guest",
            TsmKind::Tdx => "tdx_guest",
        }
    }
}

/// Offsets in the SEV-SNP `ATTESTATION_REPORT` (AMD SEV-SNP ABI, table "ATTESTATION_REPORT").
pub mod snp {
    pub const REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
    pub const MEASUREMENT: std::ops::Range<usize> = 0x90..0xc0;
    /// The report, signature included, is 0x4a0 bytes.
    pub const REPORT_LEN: usize = 0x4a0;
}

/// Offsets in a TDX quote, version 4 (header, then the TD report body) and version 5 (header,
/// body type u16 and size u32, then the body).
pub mod tdx {
    pub const HEADER_LEN: usize = 48;
    /// MRTD, the measurement of the initial TD contents, within the body.
    pub const MRTD: std::ops::Range<usize> = 136..184;
    pub const REPORT_DATA: std::ops::Range<usize> = 520..584;
    pub const BODY_LEN: usize = 584;
}

/// Measurement and report data read out of a report or quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFields {
    pub measurement: Vec<u8>,
    pub report_data: [u8; 64],
}

/// Parses an SEV-SNP attestation report.
pub fn parse_snp_report(r: &[u8]) -> Result<ReportFields, TeeError> {
    if r.len() < snp::REPORT_LEN {
        return Err(TeeError::Protocol(format!("an SEV-SNP report is {} bytes, got {}", snp::REPORT_LEN, r.len())));
    }
    let mut rd = [0u8; 64];
    rd.copy_from_slice(&r[snp::REPORT_DATA]);
    Ok(ReportFields { measurement: r[snp::MEASUREMENT].to_vec(), report_data: rd })
}

/// Parses a TDX quote (version 4 or 5).
pub fn parse_tdx_quote(q: &[u8]) -> Result<ReportFields, TeeError> {
    let version = q.get(..2).map(|v| u16::from_le_bytes([v[0], v[1]])).ok_or_else(|| TeeError::Protocol("empty TDX quote".into()))?;
    let body_start = match version {
        4 => tdx::HEADER_LEN,
        5 => tdx::HEADER_LEN + 6,
        v => return Err(TeeError::Protocol(format!("TDX quote version {v} is not 4 or 5"))),
    };
    let body = q
        .get(body_start..body_start + tdx::BODY_LEN)
        .ok_or_else(|| TeeError::Protocol(format!("the TDX quote is {} bytes, too short for its TD report", q.len())))?;
    let mut rd = [0u8; 64];
    rd.copy_from_slice(&body[tdx::REPORT_DATA]);
    Ok(ReportFields { measurement: body[tdx::MRTD].to_vec(), report_data: rd })
}

/// One report request against an existing configfs entry directory: write `inblob`, read
/// `generation`, `provider` and `outblob`, and read `generation` again.
pub fn request_in(entry: &Path, kind: TsmKind, inblob: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
    let io = |what: &str, e| TeeError::device(format!("{} ({what})", entry.display()), e);
    std::fs::write(entry.join("inblob"), inblob).map_err(|e| io("writing inblob", e))?;
    let generation = |e: &Path| -> Result<String, TeeError> {
        std::fs::read_to_string(e.join("generation")).map(|s| s.trim().to_string()).map_err(|err| io("reading generation", err))
    };
    let before = generation(entry)?;
    let provider = std::fs::read_to_string(entry.join("provider")).map_err(|e| io("reading provider", e))?;
    if provider.trim() != kind.provider_name() {
        return Err(TeeError::Protocol(format!("configfs-tsm is served by {:?}, not {}", provider.trim(), kind.provider_name())));
    }
    let out = std::fs::read(entry.join("outblob")).map_err(|e| io("reading outblob", e))?;
    if generation(entry)? != before {
        return Err(TeeError::Protocol("another writer changed the report request while it was read (generation moved)".into()));
    }
    Ok(out)
}

/// The configfs-tsm provider.
#[derive(Debug)]
pub struct TsmTee {
    root: PathBuf,
    kind: TsmKind,
    sev_guest: Option<PathBuf>,
    measurement: Vec<u8>,
    counter: AtomicU64,
}

impl TsmTee {
    /// Opens the interface and takes one report to learn the measurement (and to prove the
    /// device answers).
    pub fn open(root: &Path, kind: TsmKind, sev_guest: Option<PathBuf>) -> Result<TsmTee, TeeError> {
        let mut tee = TsmTee { root: root.to_owned(), kind, sev_guest, measurement: Vec::new(), counter: AtomicU64::new(0) };
        tee.measurement = tee.fields(&[0u8; 64])?.measurement;
        Ok(tee)
    }

    fn fields(&self, inblob: &[u8; 64]) -> Result<ReportFields, TeeError> {
        let raw = self.request(inblob)?;
        match self.kind {
            TsmKind::SevSnp => parse_snp_report(&raw),
            TsmKind::Tdx => parse_tdx_quote(&raw),
        }
    }

    /// Creates a fresh entry, runs [`request_in`] in it and removes it.
    fn request(&self, inblob: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
        let name = format!("daas-{}-{}", std::process::id(), self.counter.fetch_add(1, Ordering::Relaxed));
        let entry = self.root.join(name);
        std::fs::create_dir(&entry).map_err(|e| TeeError::device(format!("creating {}", entry.display()), e))?;
        let result = request_in(&entry, self.kind, inblob);
        let _ = std::fs::remove_dir(&entry);
        result
    }
}

impl TeeProvider for TsmTee {
    fn tee_type(&self) -> TeeType {
        match self.kind {
            TsmKind::SevSnp => TeeType::AmdSevSnp,
            TsmKind::Tdx => TeeType::IntelTdx,
        }
    }

    fn security_level(&self) -> SecurityLevel {
        match self.kind {
            TsmKind::SevSnp => SecurityLevel::ATTESTED_SEALED,
            TsmKind::Tdx => SecurityLevel::ATTESTED,
        }
    }

    fn measurement(&self) -> &[u8] {
        &self.measurement
    }

    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, TeeError> {
        let rd = report_data(nonce, user_data, public_key);
        let raw = self.request(&rd)?;
        let fields = match self.kind {
            TsmKind::SevSnp => parse_snp_report(&raw)?,
            TsmKind::Tdx => parse_tdx_quote(&raw)?,
        };
        if fields.report_data != rd {
            return Err(TeeError::Protocol("the report does not carry the report data we asked for".into()));
        }
        Ok(raw)
    }

    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError> {
        match (&self.kind, &self.sev_guest) {
            (TsmKind::SevSnp, Some(dev)) => crate::sev_guest::derived_key(dev),
            _ => Err(TeeError::Unsupported("Intel TDX has no sealing key: start the master with --kek-file".into())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fake_entry(dir: &Path, provider: &str, out: &[u8]) {
        std::fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
        std::fs::write(dir.join("generation"), "1\n").unwrap();
        std::fs::write(dir.join("outblob"), out).unwrap();
    }

    #[test]
    fn configfs_protocol_against_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = vec![0u8; snp::REPORT_LEN];
        report[snp::REPORT_DATA].copy_from_slice(&[9u8; 64]);
        report[snp::MEASUREMENT].copy_from_slice(&[5u8; 48]);
        fake_entry(dir.path(), "sev_guest", &report);
        let out = request_in(dir.path(), TsmKind::SevSnp, &[9u8; 64]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("inblob")).unwrap(), vec![9u8; 64]);
        let f = parse_snp_report(&out).unwrap();
        assert_eq!(f.measurement, vec![5u8; 48]);
        assert_eq!(f.report_data, [9u8; 64]);
        // The same directory served by the other vendor's driver is refused.
        let err = request_in(dir.path(), TsmKind::Tdx, &[0u8; 64]).unwrap_err();
        assert!(err.to_string().contains("sev_guest"), "{err}");
        // A missing outblob is a device error naming the step.
        std::fs::remove_file(dir.path().join("outblob")).unwrap();
        assert!(request_in(dir.path(), TsmKind::SevSnp, &[0u8; 64]).unwrap_err().to_string().contains("reading outblob"));
    }

    #[test]
    fn tdx_quote_layouts() {
        for (version, start) in [(4u16, 48usize), (5, 54)] {
            let mut q = vec![0u8; start + tdx::BODY_LEN];
            q[..2].copy_from_slice(&version.to_le_bytes());
            q[start + 136..start + 184].copy_from_slice(&[3u8; 48]);
            q[start + 520..start + 584].copy_from_slice(&[4u8; 64]);
            let f = parse_tdx_quote(&q).unwrap();
            assert_eq!((f.measurement, f.report_data), (vec![3u8; 48], [4u8; 64]));
            assert!(parse_tdx_quote(&q[..q.len() - 1]).is_err());
        }
        assert!(parse_tdx_quote(&[3, 0]).unwrap_err().to_string().contains("version 3"));
        assert!(parse_snp_report(&[0u8; 100]).is_err());
    }
}
