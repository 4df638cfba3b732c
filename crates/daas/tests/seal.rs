//! Stake is the key: a worker with a stake on the development ledger signs a challenge and
//! gets a seal token the API server accepts; without a proper stake it gets a reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Output, Server, daas_command, run_command};
use daas_chain::SuiKey;
use serde_json::{Value, json};

fn daas(args: &[&str]) -> Output {
    let mut cmd = daas_command();
    cmd.args(args);
    run_command(cmd, &format!("daas {}", args.join(" ")), Duration::from_secs(30))
}

/// `curl` against the server: (HTTP code, body).
fn curl(s: &Server, method: &str, path: &str, body: Option<&Value>, headers: &[&str]) -> (u16, Value) {
    let mut c = std::process::Command::new("curl");
    c.args(["-sk", "-X", method, "-w", "\n%{http_code}"]);
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", &b.to_string()]);
    }
    c.arg(format!("{}{path}", s.https_url()));
    let out = run_command(c, "curl", Duration::from_secs(30)).ok();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

/// Challenge, sign with `key`, register: (HTTP code, answer).
fn register(s: &Server, key: &SuiKey, node: &str, stake: &str) -> (u16, Value) {
    let (code, c) = curl(s, "GET", "/api/v1/challenge?purpose=register-worker", None, &[]);
    assert_eq!(code, 200, "{c}");
    let sig = key.sign_personal_message(c["message"].as_str().unwrap().as_bytes()).unwrap();
    let req = json!({"node_id": node, "stake_object_id": stake, "nonce": c["nonce"], "signature": sig});
    curl(s, "POST", "/api/v1/register-worker", Some(&req), &[])
}

#[test]
fn a_staked_worker_gets_a_token_and_others_get_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Server::start_k8s_in(&data_dir, &["--min-stake", "1000"]);
    let d = data_dir.to_str().unwrap().to_string();
    let key_file = dir.path().join("worker.key");
    let address = daas(&["dev", "keygen", "--out", key_file.to_str().unwrap()]).ok().trim().to_string();
    let key = SuiKey::read(&key_file).unwrap();
    assert_eq!(key.address().to_string(), address);
    let stake = |amount: &str, node: &str| {
        daas(&["dev", "stake", "--data-dir", &d, "--key", key_file.to_str().unwrap(), "--node", node, "--amount", amount])
            .ok()
            .trim()
            .to_string()
    };
    let good = stake("5000", "worker-1");

    // The challenge names its purpose and this enclave.
    let (_, c) = curl(&s, "GET", "/api/v1/challenge?purpose=register-worker", None, &[]);
    assert!(c["message"].as_str().unwrap().starts_with("K3s-DaaS register-worker\nnonce: "), "{c}");
    assert_eq!(curl(&s, "GET", "/api/v1/challenge?purpose=steal", None, &[]).0, 400);

    let (code, ok) = register(&s, &key, "worker-1", &good);
    assert_eq!(code, 200, "{ok}");
    assert_eq!((ok["status"].as_str(), ok["node_id"].as_str(), ok["tier"].as_str()), (Some("registered"), Some("worker-1"), Some("write")));
    let token = ok["seal_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("seal_"));

    // The token works as a bearer token and as the seed's X-Seal-Token, as system:node:worker-1.
    let (code, who) = curl(
        &s,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
        &[&format!("Authorization: Bearer {token}")],
    );
    assert_eq!(code, 201, "{who}");
    assert_eq!(who["status"]["userInfo"]["username"], "system:node:worker-1");
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("daas:tier:write") && groups.contains("system:nodes"), "{groups}");
    let (code, _) = curl(&s, "GET", "/api/v1/namespaces/default/configmaps", None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 200);
    // The write tier writes namespaced resources only, so not other nodes.
    let (code, denied) = curl(&s, "DELETE", "/api/v1/nodes/worker-7", None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 403, "{denied}");
    assert!(denied["message"].as_str().unwrap().contains("User \"system:node:worker-1\" cannot delete resource \"nodes\""), "{denied}");
    // A damaged token is a 401.
    let (code, _) = curl(&s, "GET", "/api/v1/namespaces/default/configmaps", None, &[&format!("X-Seal-Token: {}x", token)]);
    assert_eq!(code, 401);

    // Refusals, each with its reason.
    let (code, r) = curl(&s, "GET", "/api/v1/challenge?purpose=register-worker", None, &[]);
    assert_eq!(code, 200);
    let sig = key.sign_personal_message(r["message"].as_str().unwrap().as_bytes()).unwrap();
    let req = json!({"node_id": "worker-1", "stake_object_id": good, "nonce": r["nonce"], "signature": sig});
    assert_eq!(curl(&s, "POST", "/api/v1/register-worker", Some(&req), &[]).0, 200);
    let (code, again) = curl(&s, "POST", "/api/v1/register-worker", Some(&req), &[]);
    assert_eq!((code, again["reason"].as_str()), (401, Some("bad-nonce")), "a nonce is single-use: {again}");

    let other = SuiKey::generate("secp256k1").unwrap();
    let (code, r) = register(&s, &other, "worker-1", &good);
    assert_eq!((code, r["reason"].as_str()), (403, Some("wrong-owner")), "{r}");
    let (code, r) = register(&s, &key, "worker-2", &good);
    assert_eq!((code, r["reason"].as_str()), (403, Some("wrong-node")), "{r}");
    let low = stake("999", "worker-3");
    let (code, r) = register(&s, &key, "worker-3", &low);
    assert_eq!((code, r["reason"].as_str()), (403, Some("stake-too-low")), "{r}");
    let (code, r) = register(&s, &key, "worker-1", &format!("0x{}", "ab".repeat(32)));
    assert_eq!((code, r["reason"].as_str()), (403, Some("unknown-stake")), "{r}");
    let (code, r) = curl(
        &s,
        "POST",
        "/api/v1/register-worker",
        Some(&json!({"node_id": "worker-1", "stake_object_id": good, "nonce": "00", "signature": "AAAA"})),
        &[],
    );
    assert_eq!((code, r["reason"].as_str()), (401, Some("bad-nonce")), "{r}");
    let (code, r) = curl(&s, "POST", "/api/v1/register-worker", Some(&json!({"node_id": "worker-1"})), &[]);
    assert_eq!((code, r["reason"].as_str()), (400, Some("bad-request")), "{r}");

    // A slashed stake admits no one.
    daas(&["dev", "slash", "--data-dir", &d, "--stake", &good]).ok();
    let (code, r) = register(&s, &key, "worker-1", &good);
    assert_eq!((code, r["reason"].as_str()), (403, Some("slashed")), "{r}");
    // A signature over the wrong message (another purpose's challenge) is refused.
    let (_, login) = curl(&s, "GET", "/api/v1/challenge?purpose=login", None, &[]);
    let sig = key.sign_personal_message(login["message"].as_str().unwrap().as_bytes()).unwrap();
    let req = json!({"node_id": "worker-1", "stake_object_id": good, "nonce": login["nonce"], "signature": sig});
    let (code, r) = curl(&s, "POST", "/api/v1/register-worker", Some(&req), &[]);
    assert_eq!((code, r["reason"].as_str()), (401, Some("bad-nonce")), "{r}");

    // Tokens are signed by the per-boot enclave key: after a restart the worker re-registers.
    // The ledger (a file in the data dir) keeps the stakes.
    s.stop();
    let s = Server::start_k8s_in(&data_dir, &["--min-stake", "1000"]);
    let (code, _) = curl(&s, "GET", "/api/v1/namespaces/default/configmaps", None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 401, "a token from the previous boot");
    let second = stake("2000", "worker-9");
    let (code, r) = register(&s, &key, "worker-9", &second);
    assert_eq!(code, 200, "{r}");
}
