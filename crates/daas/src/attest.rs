//! `daas attest verify` (a bare Nitro document, or a live master with TLS pinning) and
//! `daas measure`. The verifying is done by daas-tee and daas-attest; this file turns flags into
//! a policy and results into lines a person reads. Exit codes: 0 verified, 1 not verified,
//! 2 bad usage.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use daas_tee::{NitroSummary, Policy};

#[derive(clap::Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify a Nitro attestation document (--nitro-doc) or a running master (--server)
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A Nitro attestation document (COSE_Sign1), as raw bytes or hex
    #[arg(long, conflicts_with = "server", required_unless_present = "server")]
    nitro_doc: Option<PathBuf>,
    /// A master's HTTPS address, e.g. https://10.0.0.5:6443
    #[arg(long)]
    server: Option<String>,
    /// Verify as of this time (Unix milliseconds) instead of now; only with --nitro-doc
    #[arg(long, requires = "nitro_doc")]
    at: Option<u64>,
    /// Expected PCR0 (hex)
    #[arg(long)]
    expect_pcr0: Option<String>,
    /// Expected PCR1 (hex)
    #[arg(long)]
    expect_pcr1: Option<String>,
    /// Expected PCR2 (hex)
    #[arg(long)]
    expect_pcr2: Option<String>,
    /// Expected PCR8 (hex)
    #[arg(long)]
    expect_pcr8: Option<String>,
    /// Expected measurement (hex): PCR0 on Nitro, SHA-384 of the binary in simulation (`daas measure`)
    #[arg(long)]
    expect_measurement: Option<String>,
    /// The nonce the document must carry (hex); only with --nitro-doc
    #[arg(long, requires = "nitro_doc")]
    expect_nonce: Option<String>,
    /// The public key the document must carry (hex); only with --nitro-doc
    #[arg(long, requires = "nitro_doc")]
    expect_public_key: Option<String>,
    /// Fail if the document carries no public key; only with --nitro-doc
    #[arg(long, requires = "nitro_doc")]
    require_public_key: bool,
    /// YAML policy file (expect-pcrs, expect-measurement, simulated-platform-keys, danger-accept-simulation)
    #[arg(long)]
    policy: Option<PathBuf>,
    /// DANGER: accept a master that runs on the SIMULATED TEE (no hardware protection)
    #[arg(long)]
    danger_accept_simulation: bool,
    /// After a successful --server verification, write a kubeconfig pinned to the attested CA here (mode 0600)
    #[arg(long, requires = "server")]
    write_kubeconfig: Option<PathBuf>,
    /// How long --server may take, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_duration)]
    timeout: Duration,
}

fn hex_arg(name: &str, v: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(v.trim()).with_context(|| format!("--{name}: {v:?} is not hex"))
}

fn policy(a: &VerifyArgs) -> anyhow::Result<Policy> {
    let mut p = Policy::default();
    if let Some(f) = &a.policy {
        daas_attest::load_policy(f, &mut p)?;
    }
    for (i, v) in [(0u8, &a.expect_pcr0), (1, &a.expect_pcr1), (2, &a.expect_pcr2), (8, &a.expect_pcr8)] {
        if let Some(v) = v {
            p.pcrs.insert(i, hex_arg(&format!("expect-pcr{i}"), v)?);
        }
    }
    if let Some(m) = &a.expect_measurement {
        p.measurement = Some(hex_arg("expect-measurement", m)?);
    }
    if let Some(n) = &a.expect_nonce {
        p.nonce = Some(hex_arg("expect-nonce", n)?);
    }
    if let Some(k) = &a.expect_public_key {
        p.public_key = Some(hex_arg("expect-public-key", k)?);
    }
    p.require_public_key = a.require_public_key;
    p.danger_accept_simulation |= a.danger_accept_simulation;
    Ok(p)
}

/// A document file holds raw CBOR or its hex (whitespace allowed).
fn read_document(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = String::from_utf8_lossy(&raw).split_whitespace().collect();
    if !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(hex::decode(text)?);
    }
    Ok(raw)
}

fn opt_hex(v: &Option<Vec<u8>>) -> String {
    v.as_ref().map_or_else(|| "none".to_string(), hex::encode)
}

fn print_nitro(s: &NitroSummary) {
    println!("module_id:  {}", s.module_id);
    println!("timestamp:  {} (Unix ms)", s.timestamp_ms);
    println!("digest:     {}", s.digest);
    for (i, v) in &s.pcrs {
        println!("{:<12}{}", format!("PCR{i}:"), hex::encode(v));
    }
    println!("public_key: {}", opt_hex(&s.public_key));
    println!("user_data:  {}", opt_hex(&s.user_data));
    println!("nonce:      {}", opt_hex(&s.nonce));
}

pub async fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    let AttestCommand::Verify(a) = cmd;
    let p = policy(&a)?;
    if let Some(path) = &a.nitro_doc {
        let doc = read_document(path)?;
        let at = a.at.unwrap_or_else(now_ms);
        let s = daas_tee::verify_nitro_document(&doc, &p, at).map_err(|e| anyhow::anyhow!("attestation failed: {e}"))?;
        print_nitro(&s);
        println!("verified:   chain to the pinned root, ES384 signature and policy hold as of {at} (Unix ms)");
        return Ok(());
    }
    let Some(server) = &a.server else { bail!("give --nitro-doc FILE or --server URL") };
    let att = daas_attest::attest_server(server, &p, a.timeout).await.map_err(|e| anyhow::anyhow!("{server}: {e}"))?;
    let v = &att.verified;
    println!("server:             {}", att.server);
    println!("tee_type:           {}", v.tee_type);
    println!("hardware:           {}", if v.hardware { "yes" } else { "NO (simulated TEE: nothing is protected by hardware)" });
    println!("security_level:     {}", v.security_level);
    println!("measurement:        {}", hex::encode(&v.measurement));
    println!("enclave_public_key: {}", hex::encode(v.enclave_public_key));
    println!("tls_ca_sha256:      {}", hex::encode(v.tls_ca_sha256));
    if let Some(n) = &v.nitro {
        println!("module_id:          {}", n.module_id);
    }
    for w in &v.warnings {
        println!("warning:            {w}");
    }
    println!("verified:           report signature, evidence, nonce and the TLS certificate chain to the attested CA");
    if let Some(out) = &a.write_kubeconfig {
        let text = daas_attest::kubeconfig(server, &att.ca_der, None);
        let _ = std::fs::remove_file(out);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("writing {}", out.display()))?;
        f.write_all(text.as_bytes())?;
        println!("kubeconfig:         {} (pinned to the attested CA)", out.display());
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `daas measure`: the measurement the simulated TEE reports for this binary.
pub fn measure() -> anyhow::Result<()> {
    println!("{}", hex::encode(daas_tee::measure_executable()?));
    Ok(())
}
