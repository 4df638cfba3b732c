//! Remote attestation of a master, as a tenant or a worker does it before trusting anything the
//! master says. [`attest_server`] opens a TLS connection without trusting any CA, asks that same
//! connection for a report over a fresh random nonce, verifies the report with
//! [`daas_tee::verify_report`], and only then checks that the certificate the server presented
//! chains to the CA the report attests. [`kubeconfig`] writes a kubeconfig pinned to that CA.
//! Policies come from YAML files through [`load_policy`].
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daas_tee::{AttestationReport, Policy, VerifiedReport, VerifyError};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

/// Largest report body accepted.
const MAX_REPORT_BYTES: usize = 1 << 20;

/// Why a master could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{0}")]
    Url(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the answer is not an attestation report: {0}")]
    NotAReport(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("attestation failed: {0}")]
    Verify(#[from] VerifyError),
    #[error("policy {path}: {reason}")]
    Policy { path: String, reason: String },
}

/// A master that passed attestation.
#[derive(Debug, Clone)]
pub struct Attested {
    /// `https://host:port` as given.
    pub server: String,
    pub report: AttestationReport,
    pub verified: VerifiedReport,
    /// DER of the attested CA, as the server presented it.
    pub ca_der: Vec<u8>,
}

/// Records the chain a server presents and checks that it holds the leaf's key (the handshake
/// signature), but decides nothing about trust: the report does that afterwards.
#[derive(Debug)]
struct CaptureChain {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for CaptureChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = chain;
        // Trust is decided after the report is verified, against the CA it names; nothing sent
        // on this connection before then is believed.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Host, port and `host:port` of an `https://` URL.
fn parse_url(url: &str) -> Result<(String, u16), AttestError> {
    let uri: hyper::Uri = url.parse().map_err(|e| AttestError::Url(format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(AttestError::Url(format!("{url:?} must start with https://")));
    }
    let host = uri.host().ok_or_else(|| AttestError::Url(format!("{url:?} has no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, uri.port_u16().unwrap_or(6443)))
}

/// Attests the master at `url` (`https://host:port`) under `policy`, as of now.
pub async fn attest_server(url: &str, policy: &Policy, timeout: Duration) -> Result<Attested, AttestError> {
    tokio::time::timeout(timeout, attest_inner(url, policy)).await.map_err(|_| AttestError::Timeout(timeout))?
}

async fn attest_inner(url: &str, policy: &Policy) -> Result<Attested, AttestError> {
    let (host, port) = parse_url(url)?;
    let server_name = ServerName::try_from(host.clone()).map_err(|e| AttestError::Url(format!("{host:?}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(CaptureChain { provider: provider.clone(), chain: Mutex::new(Vec::new()) });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AttestError::Tls(url.into(), std::io::Error::other(e)))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|source| AttestError::Connect { addr: addr.clone(), source })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(server_name.clone().to_owned(), tcp)
        .await
        .map_err(|e| AttestError::Tls(addr.clone(), e))?;

    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| AttestError::Http("the system random source failed".into()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| AttestError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(format!("/api/v1/attestation?nonce={}", hex::encode(nonce)))
        .header(hyper::header::HOST, &addr)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| AttestError::Http(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| AttestError::Http(e.to_string()))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_REPORT_BYTES)
        .collect()
        .await
        .map_err(|e| AttestError::Http(format!("reading the report: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(AttestError::Status { status: status.as_u16(), body: String::from_utf8_lossy(&body).into_owned() });
    }
    let report: AttestationReport = serde_json::from_slice(&body).map_err(|e| AttestError::NotAReport(e.to_string()))?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let verified = daas_tee::verify_report(&report, &nonce, policy, now_ms)?;

    let chain = capture.chain.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ca_der = check_tls_chain(&chain, &verified.tls_ca_sha256, &server_name, provider)?;
    Ok(Attested { server: url.to_string(), report, verified, ca_der })
}

/// Checks that `chain` (leaf first) holds the CA with SHA-256 `ca_sha256` and that the leaf is
/// issued by it for `server_name`; returns the CA's DER.
pub fn check_tls_chain(
    chain: &[CertificateDer<'static>],
    ca_sha256: &[u8; 32],
    server_name: &ServerName<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<Vec<u8>, VerifyError> {
    let (leaf, rest) = chain.split_first().ok_or_else(|| VerifyError::TlsNotAttested("the server presented no certificate".into()))?;
    let ca = rest.iter().find(|c| ring::digest::digest(&ring::digest::SHA256, c).as_ref() == ca_sha256).ok_or_else(|| {
        VerifyError::TlsNotAttested(format!("the server's chain does not include the attested CA (SHA-256 {})", hex::encode(ca_sha256)))
    })?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| VerifyError::TlsNotAttested(format!("the attested CA is not usable as a root: {e}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| VerifyError::TlsNotAttested(e.to_string()))?;
    verifier.verify_server_cert(leaf, &[], server_name, &[], UnixTime::now()).map_err(|e| VerifyError::TlsNotAttested(e.to_string()))?;
    Ok(ca.to_vec())
}

/// One HTTPS request to `server` (`https://host:port`) trusting only the attested CA
/// `ca_der`: (status, body). JSON in, JSON out; for clients that attested the master first.
pub async fn pinned_request(
    server: &str,
    ca_der: &[u8],
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), AttestError> {
    tokio::time::timeout(timeout, pinned_inner(server, ca_der, method, path, body, None))
        .await
        .map_err(|_| AttestError::Timeout(timeout))?
}

/// [`pinned_request`] with a bearer token.
pub async fn pinned_request_with_token(
    server: &str,
    ca_der: &[u8],
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), AttestError> {
    tokio::time::timeout(timeout, pinned_inner(server, ca_der, method, path, body, Some(token)))
        .await
        .map_err(|_| AttestError::Timeout(timeout))?
}

async fn pinned_inner(
    server: &str,
    ca_der: &[u8],
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), AttestError> {
    let (host, port) = parse_url(server)?;
    let server_name = ServerName::try_from(host.clone()).map_err(|e| AttestError::Url(format!("{host:?}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).map_err(|e| AttestError::Tls(server.into(), std::io::Error::other(e)))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AttestError::Tls(server.into(), std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|source| AttestError::Connect { addr: addr.clone(), source })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(server_name.to_owned(), tcp)
        .await
        .map_err(|e| AttestError::Tls(addr.clone(), e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| AttestError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, &addr)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(http_body_util::Full::new(payload)).map_err(|e| AttestError::Http(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| AttestError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_REPORT_BYTES)
        .collect()
        .await
        .map_err(|e| AttestError::Http(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// A kubeconfig for `server` that trusts only `ca_der`, with a bearer token if given (else no
/// user credentials: those come from the cluster's own sign-in, `daas login`).
pub fn kubeconfig(server: &str, ca_der: &[u8], token: Option<&str>) -> String {
    use base64::Engine as _;
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_der);
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let ca_data = base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k3s-daas\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_data}\ncontexts:\n- name: k3s-daas\n  context:\n    cluster: k3s-daas\n    user: k3s-daas-tenant\ncurrent-context: k3s-daas\nusers:\n- name: k3s-daas-tenant\n  user: {user}\npreferences: {{}}\n",
        user = match token {
            Some(t) => format!("\n    token: {t}"),
            None => "{}".into(),
        }
    )
}

/// A policy file: every key optional, hex strings for bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyFile {
    /// Expected PCRs by index, e.g. `{0: "cbe1…", 8: "…"}`.
    #[serde(default)]
    pub expect_pcrs: BTreeMap<u8, String>,
    pub expect_measurement: Option<String>,
    #[serde(default)]
    pub danger_accept_simulation: bool,
    #[serde(default)]
    pub simulated_platform_keys: Vec<String>,
}

impl PolicyFile {
    /// Adds this file's requirements to `policy`.
    pub fn apply(self, policy: &mut Policy) -> Result<(), String> {
        let h = |what: &str, v: &str| hex::decode(v.trim()).map_err(|_| format!("{what}: {v:?} is not hex"));
        for (i, v) in self.expect_pcrs {
            if i >= 32 {
                return Err(format!("expect-pcrs: PCR{i} does not exist (0 to 31)"));
            }
            policy.pcrs.insert(i, h(&format!("expect-pcrs.{i}"), &v)?);
        }
        if let Some(m) = self.expect_measurement {
            policy.measurement = Some(h("expect-measurement", &m)?);
        }
        policy.danger_accept_simulation |= self.danger_accept_simulation;
        for k in self.simulated_platform_keys {
            policy.simulated_platform_keys.push(h("simulated-platform-keys", &k)?);
        }
        Ok(())
    }
}

/// Reads a YAML policy file into `policy`.
pub fn load_policy(path: &Path, policy: &mut Policy) -> Result<(), AttestError> {
    let err = |reason: String| AttestError::Policy { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: PolicyFile =
        if text.trim().is_empty() { PolicyFile::default() } else { serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))? };
    file.apply(policy).map_err(err)
}
