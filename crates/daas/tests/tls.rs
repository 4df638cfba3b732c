//! TLS on the etcd listener, checked with the real `etcdctl`: with `--etcd-cert-file` and
//! `--etcd-key-file` the server speaks only TLS with the certificate it was given; adding
//! `--etcd-client-ca-file` makes it demand a client certificate from that CA.
//!
//! Certificates (a CA, a server certificate for 127.0.0.1 and localhost, client certificates)
//! are made per test with `rcgen` on `ring`, the workspace's crypto provider.

mod common;

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;

use common::{Output, Server, etcdctl_at, scratch};

/// Keeps etcdctl's failures quick: a TLS mismatch otherwise retries until the default
/// five-second command timeout.
const FAIL_FAST: [&str; 4] = ["--dial-timeout", "2s", "--command-timeout", "3s"];

/// A CA and PEM files it signed, in a scratch directory.
struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = scratch();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        Pki { dir, issuer: Issuer::new(params, key) }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `NAME.pem` and `NAME-key.pem`, a certificate for `sans` with extended key usage
    /// `usage`, and returns their paths.
    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        let (cert_path, key_path) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn server_cert(&self) -> (PathBuf, PathBuf) {
        self.issue("server", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_cert(&self) -> (PathBuf, PathBuf) {
        self.issue("client", &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `etcdctl --endpoints ENDPOINT EXTRA... ARGS...`.
fn etcdctl(endpoint: &str, extra: &[&str], args: &[&str]) -> Output {
    let all: Vec<&str> = extra.iter().chain(args).copied().collect();
    etcdctl_at(endpoint, &all)
}

#[track_caller]
fn assert_fails(out: &Output, what: &str) {
    assert!(!out.killed && out.code.is_some_and(|c| c != 0) && out.stdout.is_empty(), "{what} should fail:\n{out}");
}

#[test]
fn tls_listener_serves_only_tls_with_its_certificate() {
    let pki = Pki::new("test");
    let (cert, key) = pki.server_cert();
    let server = Server::start_with(&["--etcd-cert-file", s(&cert), "--etcd-key-file", s(&key)]);
    let https = server.url();
    assert_eq!(https, format!("https://{}", server.addr()), "the ready line must say https");
    let ca_file = pki.ca();
    let ca = ["--cacert", s(&ca_file)];

    assert_eq!(etcdctl(&https, &ca, &["put", "k", "v"]).ok(), "OK\n");
    assert_eq!(etcdctl(&https, &ca, &["get", "k"]).ok(), "k\nv\n");
    // The certificate names localhost too.
    let port = server.addr().rsplit_once(':').expect("HOST:PORT").1;
    assert_eq!(etcdctl(&format!("https://localhost:{port}"), &ca, &["get", "k"]).ok(), "k\nv\n");

    let plain = etcdctl(&format!("http://{}", server.addr()), &FAIL_FAST, &["get", "k"]);
    assert_fails(&plain, "plaintext against the TLS listener");
    // Without our CA etcdctl must not trust the server, so what it trusted above was our
    // certificate. (etcdctl reports only a deadline, not the verification error.)
    let untrusted = etcdctl(&https, &FAIL_FAST, &["get", "k"]);
    assert_fails(&untrusted, "TLS without the CA");
}

#[test]
fn client_ca_requires_a_client_certificate_from_that_ca() {
    let pki = Pki::new("test");
    let (cert, key) = pki.server_cert();
    let (client_cert, client_key) = pki.client_cert();
    let ca_file = pki.ca();
    let server = Server::start_with(&["--etcd-cert-file", s(&cert), "--etcd-key-file", s(&key), "--etcd-client-ca-file", s(&ca_file)]);
    let https = server.url();
    let ca = ["--cacert", s(&ca_file)];

    let anonymous = etcdctl(&https, &[&ca[..], &FAIL_FAST].concat(), &["put", "k", "anonymous"]);
    assert_fails(&anonymous, "a client without a certificate");

    let with_cert = [&ca[..], &["--cert", s(&client_cert), "--key", s(&client_key)]].concat();
    assert_eq!(etcdctl(&https, &with_cert, &["put", "k", "v"]).ok(), "OK\n");
    assert_eq!(etcdctl(&https, &with_cert, &["get", "k"]).ok(), "k\nv\n");

    // A certificate from another CA is no better than none.
    let other = Pki::new("other");
    let (other_cert, other_key) = other.client_cert();
    let stranger = etcdctl(&https, &[&ca[..], &FAIL_FAST, &["--cert", s(&other_cert), "--key", s(&other_key)]].concat(), &["get", "k"]);
    assert_fails(&stranger, "a client certificate from another CA");

    assert_eq!(etcdctl(&https, &with_cert, &["get", "k"]).ok(), "k\nv\n", "the refused clients must not have written");
}
