//! `daas login`: a tenant signs in with its Sui key. The master is attested first and every
//! request after that trusts only the attested CA; then the login challenge is signed as a Sui
//! personal message and exchanged for a seal token whose tier the address's stake decides.
//! Exit codes: 0 logged in, 1 refused or unreachable, 2 bad usage.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use daas_chain::SuiKey;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The master's HTTPS address, e.g. https://10.0.0.5:6443
    #[arg(long)]
    server: String,
    /// The tenant's Sui key (suiprivkey as the Sui CLI writes it, base64, or a sui.keystore)
    #[arg(long)]
    sui_key: PathBuf,
    /// Write a kubeconfig (mode 0600) pinned to the attested CA and holding the token; without
    /// it the token is printed
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// YAML attestation policy (expect-pcrs, expect-measurement, simulated-platform-keys, danger-accept-simulation)
    #[arg(long)]
    attestation_policy: Option<PathBuf>,
    /// DANGER: accept a master that runs on the SIMULATED TEE (no hardware protection)
    #[arg(long)]
    danger_accept_simulation: bool,
    /// How long each step may take, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_duration)]
    timeout: Duration,
}

pub async fn run(a: LoginArgs) -> anyhow::Result<()> {
    let key = SuiKey::read(&a.sui_key)?;
    let mut policy = daas_tee::Policy::default();
    if let Some(f) = &a.attestation_policy {
        daas_attest::load_policy(f, &mut policy)?;
    }
    policy.danger_accept_simulation |= a.danger_accept_simulation;
    let server = a.server.trim_end_matches('/');
    let att = daas_attest::attest_server(server, &policy, a.timeout).await.with_context(|| format!("attesting {server}"))?;
    let hw = if att.verified.hardware { "hardware" } else { "SIMULATED, no hardware protection" };
    eprintln!("attested {server}: {:?} TEE ({hw}), measurement {}", att.verified.tee_type, hex::encode(&att.verified.measurement));

    let call = |method: &'static str, path: String, body: Option<Value>| {
        let ca = att.ca_der.clone();
        async move {
            let (code, bytes) = daas_attest::pinned_request(server, &ca, method, &path, body.as_ref(), a.timeout).await?;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            anyhow::Ok((code, v))
        }
    };
    let (code, challenge) = call("GET", "/api/v1/challenge?purpose=login".into(), None).await?;
    if code != 200 {
        bail!("the master refused a login challenge ({code}): {}", reason(&challenge));
    }
    let message = challenge["message"].as_str().context("the challenge has no message")?;
    let signature = key.sign_personal_message(message.as_bytes())?;
    let (code, answer) = call("POST", "/api/v1/login".into(), Some(json!({"nonce": challenge["nonce"], "signature": signature}))).await?;
    if code != 200 {
        bail!("login refused ({code}): {}", reason(&answer));
    }
    let token = answer["seal_token"].as_str().context("the answer has no token")?;
    let tier = answer["tier"].as_str().unwrap_or("?");
    eprintln!("logged in as {} (tier {tier}); the token expires at {} (Unix seconds)", key.address(), answer["expires_at"]);
    match &a.write_kubeconfig {
        Some(path) => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let text = daas_attest::kubeconfig(server, &att.ca_der, Some(token));
            // A file that exists keeps its mode on open: start afresh so the token is 0600.
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("writing {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            eprintln!("kubeconfig written to {}", path.display());
        }
        None => println!("{token}"),
    }
    Ok(())
}

fn reason(v: &Value) -> String {
    match (v["reason"].as_str(), v["message"].as_str()) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        _ => v.to_string(),
    }
}
