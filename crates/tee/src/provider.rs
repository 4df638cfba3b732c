//! The [`TeeProvider`] trait every TEE backend implements, the facts a provider reports
//! ([`TeeType`], [`SecurityLevel`]), and [`detect`], which picks the provider the configuration
//! and the machine's devices call for. A hardware TEE is chosen only when its device exists and
//! answers; no environment variable counts as proof of one.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::TeeError;

/// Which kind of TEE produced a piece of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeType {
    /// Software only; no hardware protects anything. For development and tests.
    Simulation,
    AwsNitro,
    AmdSevSnp,
    IntelTdx,
    IntelSgx,
    ArmTrustzone,
}

impl TeeType {
    /// The name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeType::Simulation => "simulation",
            TeeType::AwsNitro => "aws-nitro",
            TeeType::AmdSevSnp => "amd-sev-snp",
            TeeType::IntelTdx => "intel-tdx",
            TeeType::IntelSgx => "intel-sgx",
            TeeType::ArmTrustzone => "arm-trustzone",
        }
    }

    /// Parses [`TeeType::as_str`]'s names.
    pub fn parse(s: &str) -> Option<TeeType> {
        [TeeType::Simulation, TeeType::AwsNitro, TeeType::AmdSevSnp, TeeType::IntelTdx, TeeType::IntelSgx, TeeType::ArmTrustzone]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TeeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a TEE protects, as a number that only grows with protection (the seed reported an
/// integer too). See docs/attestation.md, "Security levels".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecurityLevel(pub u8);

impl SecurityLevel {
    /// 0: simulated. Nothing is protected from the host.
    pub const SIMULATED: SecurityLevel = SecurityLevel(0);
    /// 1: hardware isolation without remote attestation (OP-TEE as detected here).
    pub const ISOLATED: SecurityLevel = SecurityLevel(1);
    /// 2: hardware isolation and remote attestation; keys come from outside (Nitro, TDX).
    pub const ATTESTED: SecurityLevel = SecurityLevel(2);
    /// 3: hardware isolation, remote attestation and hardware-derived sealing keys (SGX, SEV-SNP).
    pub const ATTESTED_SEALED: SecurityLevel = SecurityLevel(3);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "simulated",
            1 => "isolated",
            2 => "attested",
            _ => "attested-sealed",
        }
    }
}

/// A trusted execution environment as the server sees it from inside.
pub trait TeeProvider: Send + Sync + fmt::Debug {
    fn tee_type(&self) -> TeeType;
    fn security_level(&self) -> SecurityLevel;
    /// True for hardware TEEs, false for the simulation.
    fn is_hardware(&self) -> bool {
        self.tee_type() != TeeType::Simulation
    }
    /// What identifies the code that runs: PCR0 on Nitro, MEASUREMENT on SEV-SNP, MRTD on TDX,
    /// MRENCLAVE on SGX, SHA-384 of the executable in simulation.
    fn measurement(&self) -> &[u8];
    /// Device evidence that binds `nonce`, `user_data` and `public_key` (directly where the
    /// format has fields for them, through [`report_data`] where it has 64 bytes of report data).
    fn evidence(&self, nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, TeeError>;
    /// The key-encryption key for the store, derived from or delivered to this TEE.
    fn sealing_key(&self) -> Result<Zeroizing<[u8; 32]>, TeeError>;
    /// Warnings that every report and health answer must carry (non-empty for the simulation).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The 64 bytes of report data that bind a nonce, user data and a public key, for TEEs whose
/// reports carry exactly 64 bytes of caller data (SEV-SNP, TDX, SGX): SHA-512 of their
/// canonical encoding under the label `daas-report-data-v1`.
pub fn report_data(nonce: &[u8], user_data: &[u8], public_key: &[u8]) -> [u8; 64] {
    let enc = crate::canon::encode("daas-report-data-v1", &[nonce, user_data, public_key]);
    let mut out = [0u8; 64];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA512, &enc).as_ref());
    out
}

/// Which provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeChoice {
    /// The first hardware TEE whose device answers; the simulation if there is none (and the
    /// mode allows it).
    Auto,
    Exactly(TeeType),
}

/// Device paths, overridable so tests can point them at a temporary directory.
#[derive(Debug, Clone)]
pub struct DevicePaths {
    pub nsm: PathBuf,
    pub tsm_report: PathBuf,
    pub sev_guest: PathBuf,
    pub tdx_guest: PathBuf,
    pub gramine_attestation: PathBuf,
    pub tee0: PathBuf,
}

impl Default for DevicePaths {
    fn default() -> Self {
        DevicePaths {
            nsm: "/dev/nsm".into(),
            tsm_report: "/sys/kernel/config/tsm/report".into(),
            sev_guest: "/dev/sev-guest".into(),
            tdx_guest: "/dev/tdx_guest".into(),
            gramine_attestation: "/dev/attestation".into(),
            tee0: "/dev/tee0".into(),
        }
    }
}

/// How [`detect`] chooses.
#[derive(Debug, Clone)]
pub struct TeeConfig {
    pub choice: TeeChoice,
    /// Production mode refuses the simulation.
    pub production: bool,
    /// Lets production mode run simulated anyway (named so nobody sets it by accident).
    pub danger_allow_simulation: bool,
    /// The simulated platform's per-install key file (created on first start).
    pub simulation_key_file: PathBuf,
    pub devices: DevicePaths,
}

/// Picks and opens the provider `cfg` asks for.
pub fn detect(cfg: &TeeConfig) -> Result<Arc<dyn TeeProvider>, TeeError> {
    let d = &cfg.devices;
    let kind = match cfg.choice {
        TeeChoice::Exactly(t) => t,
        TeeChoice::Auto => {
            if d.nsm.exists() {
                TeeType::AwsNitro
            } else if d.tsm_report.is_dir() && d.sev_guest.exists() {
                TeeType::AmdSevSnp
            } else if d.tsm_report.is_dir() && d.tdx_guest.exists() {
                TeeType::IntelTdx
            } else if d.gramine_attestation.join("quote").exists() {
                TeeType::IntelSgx
            } else if d.tee0.exists() {
                TeeType::ArmTrustzone
            } else {
                TeeType::Simulation
            }
        }
    };
    let provider: Arc<dyn TeeProvider> = match kind {
        TeeType::Simulation => {
            if cfg.production && !cfg.danger_allow_simulation {
                return Err(TeeError::Refused(
                    "tee-mode is production but no hardware TEE was found (no /dev/nsm, configfs-tsm with /dev/sev-guest or /dev/tdx_guest, /dev/attestation or /dev/tee0); refusing to run simulated. Set --danger-allow-simulated-tee to run anyway".into(),
                ));
            }
            Arc::new(crate::sim::SimulatedTee::open_or_create(&cfg.simulation_key_file)?)
        }
        TeeType::AwsNitro => Arc::new(crate::nsm::NitroTee::open(&d.nsm)?),
        TeeType::AmdSevSnp => Arc::new(crate::tsm::TsmTee::open(&d.tsm_report, crate::tsm::TsmKind::SevSnp, Some(d.sev_guest.clone()))?),
        TeeType::IntelTdx => Arc::new(crate::tsm::TsmTee::open(&d.tsm_report, crate::tsm::TsmKind::Tdx, None)?),
        TeeType::IntelSgx => Arc::new(crate::gramine::GramineTee::open(&d.gramine_attestation)?),
        TeeType::ArmTrustzone => Arc::new(crate::optee::OpTee::open(&d.tee0)?),
    };
    if provider.is_hardware() {
        tracing::info!(tee = %provider.tee_type(), level = provider.security_level().0, measurement = %hex::encode(provider.measurement()), "hardware TEE found");
    } else {
        for w in provider.warnings() {
            tracing::warn!("{w}");
        }
    }
    Ok(provider)
}

/// Reads a secret file of exactly `len` bytes readable by its owner only, or creates one with
/// random bytes (mode 0600) if none exists.
pub(crate) fn secret_file(path: &std::path::Path, len: usize) -> Result<Zeroizing<Vec<u8>>, TeeError> {
    use ring::rand::SecureRandom as _;
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TeeError::Key(format!("{} has mode {mode:o}; only its owner may read it (chmod 600)", path.display())));
            }
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| TeeError::device(path.display().to_string(), e))?);
            if bytes.len() != len {
                return Err(TeeError::Key(format!("{} must hold exactly {len} bytes, found {}", path.display(), bytes.len())));
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = Zeroizing::new(vec![0u8; len]);
            ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| TeeError::Key("the system random source failed".into()))?;
            if let Some(parent) = path.parent() {
                std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                    .create(parent)
                    .map_err(|e| TeeError::device(parent.display().to_string(), e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| TeeError::device(path.display().to_string(), e))?;
            f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| TeeError::device(path.display().to_string(), e))?;
            Ok(bytes)
        }
        Err(e) => Err(TeeError::device(path.display().to_string(), e)),
    }
}
