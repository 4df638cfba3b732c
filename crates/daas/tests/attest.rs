//! Remote attestation end to end: `daas server` (simulated TEE) serves signed reports over TLS
//! rooted in its sealed CA; `daas attest verify --server` accepts them only when asked to accept
//! simulation, writes a kubeconfig that real `kubectl` uses, and refuses when another server's
//! TLS sits in front of the genuine report. `daas attest verify --nitro-doc` checks real Nitro
//! documents.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{COMMAND_TIMEOUT, Output, Server, daas_command, run_command, scratch};

fn daas(args: &[&str]) -> Output {
    let mut cmd = daas_command();
    cmd.args(args);
    run_command(cmd, &format!("daas {}", args.join(" ")), COMMAND_TIMEOUT)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tee/tests/fixtures/nitro").join(name).to_str().expect("utf-8").to_string()
}

/// Runs kubectl with the pinned kubeconfig. The trust endpoints need no credentials and the
/// kubeconfig carries none yet (sign-in comes with seal tokens), so a placeholder token keeps
/// kubectl from prompting for a username.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).arg("--token=unused-by-trust-endpoints").args(args);
    run_command(cmd, &format!("kubectl {}", args.join(" ")), COMMAND_TIMEOUT)
}

/// The value after `label:` in `daas attest verify`'s output.
fn field(out: &str, label: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix(&format!("{label}:"))).unwrap_or_else(|| panic!("no {label} in:\n{out}")).trim().to_string()
}

#[test]
fn a_simulated_master_verifies_only_when_simulation_is_accepted() {
    // With the Kubernetes API, so the admin kubeconfig exists.
    let server = Server::start_k8s(&[]);
    let dir = scratch();
    let kubeconfig = dir.path().join("pinned.kubeconfig");
    let kc = kubeconfig.to_str().expect("utf-8");

    let refused = daas(&["attest", "verify", "--server", server.https_url()]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains("SIMULATED TEE"), "{refused}");
    assert!(!kubeconfig.exists());

    let out = daas(&["attest", "verify", "--server", server.https_url(), "--danger-accept-simulation", "--write-kubeconfig", kc]).ok();
    assert_eq!(field(&out, "tee_type"), "simulation");
    assert!(field(&out, "hardware").starts_with("NO"), "{out}");
    assert!(field(&out, "warning").contains("SIMULATED TEE"), "{out}");
    // The measurement is the one `daas measure` computes for the same binary.
    assert_eq!(field(&out, "measurement"), daas(&["measure"]).ok().trim());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&kubeconfig).expect("kubeconfig written").permissions().mode() & 0o777, 0o600);

    // Real kubectl, trusting nothing but the attested CA, reaches the health endpoint.
    let health: serde_json::Value = serde_json::from_str(&kubectl(&kubeconfig, &["get", "--raw", "/health"]).ok()).expect("JSON");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["enclave"], false);
    assert_eq!(health["simulated"], true);
    assert_eq!(health["tee_type"], "simulation");
    assert_eq!(health["security_level"], 0);
    assert!(health["warnings"][0].as_str().expect("a warning").contains("SIMULATED TEE"));
    // The security context is for authenticated callers: the pinned kubeconfig carries no
    // credentials (401), the admin's does.
    let anonymous = kubectl(&kubeconfig, &["get", "--raw", "/api/v1/security-context"]);
    assert!(anonymous.code == Some(1) && anonymous.stderr.contains("Unauthorized"), "{anonymous}");
    let ctx: serde_json::Value =
        serde_json::from_str(&kubectl(&server.kubeconfig(), &["get", "--raw", "/api/v1/security-context"]).ok()).expect("JSON");
    assert_eq!(ctx["tls_ca_sha256"], field(&out, "tls_ca_sha256"));
    assert_eq!(ctx["store"]["key_provider"], "tee-sealing:simulation");
    // A bad nonce is a 400 with a reason.
    let bad = kubectl(&kubeconfig, &["get", "--raw", "/api/v1/attestation?nonce=abc"]);
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(bad.stderr.contains("BadRequest") || bad.stderr.contains("400"), "{bad}");
}

#[test]
fn the_ca_survives_restarts_and_the_enclave_key_does_not() {
    let dir = scratch();
    let verify = |s: &Server| daas(&["attest", "verify", "--server", s.https_url(), "--danger-accept-simulation"]).ok();
    let server = Server::start_in(dir.path());
    let first = verify(&server);
    server.etcdctl(&["put", "k", "v"]).ok();
    assert!(server.stop().success());
    let server = Server::start_in(dir.path());
    let second = verify(&server);
    assert_eq!(field(&first, "tls_ca_sha256"), field(&second, "tls_ca_sha256"));
    assert_ne!(field(&first, "enclave_public_key"), field(&second, "enclave_public_key"));
    assert_eq!(server.etcdctl(&["get", "k", "--print-value-only"]).ok(), "v\n");
    assert!(server.stop().success());

    // Another install's simulated TEE key cannot open this store.
    let other = scratch();
    let s = Server::start_in(other.path());
    assert!(s.stop().success());
    let mine = dir.path().join("simulated-tee.key");
    let saved = std::fs::read(&mine).expect("key file");
    std::fs::copy(other.path().join("simulated-tee.key"), &mine).expect("swap key");
    let mut cmd = daas_command();
    cmd.args(["server", "--etcd-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
    let out = run_command(cmd, "daas server with another install's key", COMMAND_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("does not unwrap"), "{out}");
    std::fs::write(&mine, saved).expect("restore key");
    let server = Server::start_in(dir.path());
    assert_eq!(server.etcdctl(&["get", "k", "--print-value-only"]).ok(), "v\n");
}

/// A man in the middle: terminates TLS with its own certificate and relays the plaintext to
/// the genuine master, whose signed report therefore reaches the client intact.
async fn tls_relay(upstream: String) -> String {
    use tokio_rustls::rustls;
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let mut client_cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    client_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, connector, upstream) = (acceptor.clone(), connector.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut down) = acceptor.accept(tcp).await else { return };
                let Ok(up_tcp) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                let Ok(mut up) = connector.connect(name, up_tcp).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    format!("https://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_tls_endpoint_is_refused_although_the_report_is_genuine() {
    let server = Server::start();
    let upstream = server.https_url().trim_start_matches("https://").to_string();
    let relay = tls_relay(upstream).await;
    let out = tokio::task::spawn_blocking(move || daas(&["attest", "verify", "--server", &relay, "--danger-accept-simulation"]))
        .await
        .expect("join");
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("not issued by the attested CA"), "{out}");
    assert!(out.stderr.contains("does not include the attested CA"), "{out}");
    drop(server);
}

#[test]
fn bare_nitro_documents_verify_and_tampered_ones_fail_distinctly() {
    let doc = fixture("nautilus-weather-2025-04-15.hex");
    let at = "1744683923696";
    let pcr0 = "cbe1afb6ed0ff89f10295af0b802247ec5670da8f886e71a4226373b032c322f4e42c9c98288e7211682b258684505a2";
    let out = daas(&["attest", "verify", "--nitro-doc", &doc, "--at", at, "--expect-pcr0", pcr0]).ok();
    assert_eq!(field(&out, "module_id"), "i-06e4b98c6549ff803-enc0196373b195fb723");
    assert_eq!(field(&out, "timestamp"), "1744683923696 (Unix ms)");
    assert_eq!(field(&out, "PCR0"), pcr0);
    // A raw (binary) document too.
    daas(&["attest", "verify", "--nitro-doc", &fixture("bedrock-real-2025-09-23.bin"), "--at", "1758628609915"]).ok();

    let fails = |args: &[&str], needle: &str| {
        let mut all = vec!["attest", "verify"];
        all.extend_from_slice(args);
        let out = daas(&all);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains(needle), "expected {needle:?}:\n{out}");
    };
    fails(&["--nitro-doc", &doc], "is not valid at");
    fails(&["--nitro-doc", &doc, "--at", at, "--expect-pcr0", &"00".repeat(48)], "PCR0 is");
    fails(&["--nitro-doc", &doc, "--at", at, "--expect-nonce", "00112233"], "nonce mismatch");
    fails(
        &["--nitro-doc", &fixture("evervault-beta-valid-2022-10-13.bin"), "--at", "1665651482136", "--require-public-key"],
        "carries no public key",
    );
    let dir = scratch();
    let hex = std::fs::read_to_string(&doc).expect("fixture");
    let tampered = dir.path().join("tampered.hex");
    let mut bytes = hex::decode(hex.trim()).expect("hex");
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&tampered, hex::encode(&bytes)).expect("write");
    fails(&["--nitro-doc", tampered.to_str().expect("utf-8"), "--at", at], "ES384 signature does not verify");
    std::fs::write(&tampered, &bytes[..100]).expect("write");
    fails(&["--nitro-doc", tampered.to_str().expect("utf-8"), "--at", at], "malformed CBOR");
}

#[test]
fn production_mode_refuses_the_simulation_unless_told_otherwise() {
    let dir = scratch();
    let mut cmd = daas_command();
    cmd.args(["server", "--etcd-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0", "--tee-mode", "production", "--data-dir"])
        .arg(dir.path());
    let out = run_command(cmd, "daas server --tee-mode production", COMMAND_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("refusing to run simulated"), "{out}");
    assert!(!dir.path().join("data.redb").exists(), "nothing may be created before the refusal");
    let server = Server::start_in_with(dir.path(), &["--tee-mode", "production", "--danger-allow-simulated-tee"]);
    assert!(server.stderr_text().contains("DANGER: --danger-allow-simulated-tee"), "{}", server.stderr_text());
    // Unknown TEE names are settings errors (exit 2).
    let out = daas(&["server", "--tee", "sgx", "--data-dir", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("intel-sgx"), "{out}");
}
