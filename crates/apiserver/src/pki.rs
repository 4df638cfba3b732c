//! The cluster's TLS keys. The CA key is generated inside the enclave on first start and kept
//! only sealed (`DATA_DIR/pki/ca.sealed`, under the store's key provider, so only this TEE
//! install can open it); its certificate's SHA-256 goes into every attestation report, so a
//! client that verified a report can pin TLS to it. The serving certificate is issued afresh at
//! every start, with a key that never leaves memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use daas_store::KeyProvider;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Associated data (and key-wrapping context) of the sealed CA file.
const CA_CONTEXT: &[u8] = b"daas-pki-ca-v1";

/// Why the PKI could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sealed cluster CA in {0} does not open: {1}")]
    Unseal(PathBuf, daas_store::StoreError),
    #[error("sealing the cluster CA: {0}")]
    Seal(daas_store::StoreError),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Format(String),
}

/// The cluster CA, unsealed in memory.
pub struct Pki {
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_sha256", &hex::encode(self.ca_sha256())).finish_non_exhaustive()
    }
}

impl Pki {
    /// Opens the sealed CA under `data_dir/pki`, or generates and seals one on first start.
    pub fn load_or_create(data_dir: &Path, provider: &dyn KeyProvider) -> Result<Pki, PkiError> {
        let dir = data_dir.join("pki");
        let path = dir.join("ca.sealed");
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| PkiError::Io { path: p, source }
        };
        match std::fs::read(&path) {
            Ok(sealed) => {
                let plain = daas_store::open_blob(provider, CA_CONTEXT, &sealed).map_err(|e| PkiError::Unseal(path.clone(), e))?;
                let mut r = daas_tee::canon::Reader::new(&plain);
                let bad = || PkiError::Format(format!("{} is not a sealed CA", path.display()));
                if r.field() != Some(CA_CONTEXT) {
                    return Err(bad());
                }
                let (key, cert) = (r.field().ok_or_else(bad)?, r.field().ok_or_else(bad)?);
                let key = KeyPair::try_from(key)?;
                let ca_der = CertificateDer::from(cert.to_vec());
                let issuer = Issuer::from_ca_cert_der(&ca_der, key)?;
                Ok(Pki { ca_der, issuer })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                let now = time::OffsetDateTime::now_utc();
                params.distinguished_name.push(DnType::CommonName, format!("k3s-daas-enclave-ca@{}", now.unix_timestamp()));
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                params.not_before = now - time::Duration::hours(1);
                params.not_after = now + time::Duration::days(3650);
                let cert = params.self_signed(&key)?;
                let plain = daas_tee::canon::encode("daas-pki-ca-v1", &[&key.serialize_der(), cert.der()]);
                let sealed = daas_store::seal_blob(provider, CA_CONTEXT, &plain).map_err(PkiError::Seal)?;
                std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(&dir).map_err(io(&dir))?;
                let tmp = dir.join("ca.sealed.tmp");
                std::fs::write(&tmp, &sealed).map_err(io(&tmp))?;
                std::fs::rename(&tmp, &path).map_err(io(&path))?;
                tracing::info!(path = %path.display(), "generated the cluster CA inside the TEE and sealed it");
                let ca_der = cert.der().clone();
                Ok(Pki { ca_der, issuer: Issuer::new(params, key) })
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Re-seals the CA under `new` (after the store's data keys moved to a new KEK). Returns
    /// false if there is no CA yet.
    pub fn rewrap(data_dir: &Path, old: &dyn KeyProvider, new: &dyn KeyProvider) -> Result<bool, PkiError> {
        let path = data_dir.join("pki/ca.sealed");
        let sealed = match std::fs::read(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(PkiError::Io { path, source }),
        };
        let plain = daas_store::open_blob(old, CA_CONTEXT, &sealed).map_err(|e| PkiError::Unseal(path.clone(), e))?;
        let resealed = daas_store::seal_blob(new, CA_CONTEXT, &plain).map_err(PkiError::Seal)?;
        let tmp = path.with_extension("sealed.tmp");
        std::fs::write(&tmp, &resealed).map_err(|source| PkiError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| PkiError::Io { path: path.clone(), source })?;
        Ok(true)
    }

    /// DER of the CA certificate.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// SHA-256 of the CA certificate's DER: the `tls_ca_sha256` of every report.
    pub fn ca_sha256(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &self.ca_der).as_ref());
        out
    }

    /// PEM of the CA certificate, for kubeconfigs.
    pub fn ca_pem(&self) -> String {
        pem_certificate(&self.ca_der)
    }

    /// A TLS server configuration with a fresh serving certificate for `sans` (DNS names or IP
    /// addresses), chained to the CA; HTTP/2 and HTTP/1.1 by ALPN.
    pub fn serving_config(&self, sans: &[String]) -> Result<rustls::ServerConfig, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "k3s-daas-apiserver");
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(s.as_str().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        // Client certificates are optional at the TLS layer (attestation and health are
        // public); the API authenticates whoever presented one chained to the cluster CA.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Format(format!("client verifier: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl Pki {
    /// A client certificate for `user` in `groups` (CN and O, as Kubernetes reads them),
    /// valid for `days`. Returns the certificate and its PKCS#8 key, both PEM.
    pub fn client_certificate(&self, user: &str, groups: &[String], days: i64) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, g.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((pem_certificate(cert.der()), key.serialize_pem()))
    }
}

/// Credentials a kubeconfig carries.
#[derive(Debug, Clone)]
pub enum Credentials {
    ClientCertificate { cert_pem: String, key_pem: String },
    Token(String),
    None,
}

/// A kubeconfig (YAML) for `server`, trusting `ca_pem`, with one user.
pub fn kubeconfig(server: &str, ca_pem: &str, cluster: &str, user: &str, creds: &Credentials) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let user_block = match creds {
        Credentials::ClientCertificate { cert_pem, key_pem } => {
            format!("    client-certificate-data: {}\n    client-key-data: {}\n", b64(cert_pem), b64(key_pem))
        }
        Credentials::Token(t) => format!("    token: {t}\n"),
        Credentials::None => "    {}\n".to_string(),
    };
    let user_block = if matches!(creds, Credentials::None) { "  user: {}\n".to_string() } else { format!("  user:\n{user_block}") };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\ncurrent-context: {cluster}\npreferences: {{}}\nusers:\n- name: {user}\n{user_block}",
        ca = b64(ca_pem)
    )
}

/// PEM text of one certificate.
pub fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The names the serving certificate is valid for: localhost, the loopback addresses, the
/// host's name and addresses, the listen address, and any `extra`.
pub fn default_sans(listen: std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            sans.push(h.to_string());
        }
    }
    if let Ok(ifs) = if_addrs::get_if_addrs() {
        sans.extend(ifs.into_iter().map(|i| i.ip().to_string()));
    }
    if !listen.ip().is_unspecified() {
        sans.push(listen.ip().to_string());
    }
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}
