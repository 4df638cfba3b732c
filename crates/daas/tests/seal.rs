//! Stake is the key: a worker with a stake on the development ledger signs a challenge and
//! gets a seal token the API server accepts; without a proper stake it gets a reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Output, Server, daas_command, eventually, run_command};
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
    let (code, _) = curl(&s, "GET", "/api/v1/nodes", None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 200);
    // The node identity is authorized as a node, whatever tier its stake buys: no other nodes,
    // no workloads, no listing of configmaps or secrets.
    let (code, denied) = curl(&s, "DELETE", "/api/v1/nodes/worker-7", None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 403, "{denied}");
    assert!(denied["message"].as_str().unwrap().contains("User \"system:node:worker-1\" cannot delete resource \"nodes\""), "{denied}");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-node"}});
    let (code, denied) = curl(&s, "POST", "/api/v1/namespaces/default/configmaps", Some(&cm), &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(code, 403, "{denied}");
    assert!(denied["message"].as_str().unwrap().contains("a node may only do what running its pods needs"), "{denied}");
    assert_eq!(curl(&s, "GET", "/api/v1/namespaces/default/secrets", None, &[&format!("X-Seal-Token: {token}")]).0, 403);
    // It reads a secret or configmap only when a pod bound to it refers to it.
    for name in ["db-used", "db-other"] {
        s.kubectl(&["create", "secret", "generic", name, "--from-literal=k=v"]).ok();
    }
    for name in ["cfg-used", "cfg-other"] {
        s.kubectl(&["create", "configmap", name, "--from-literal=k=v"]).ok();
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "uses", "namespace": "default"}, "spec": {
        "nodeName": "worker-1",
        "containers": [{"name": "c", "image": "busybox", "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db-used", "key": "k"}}}]}],
        "volumes": [{"name": "v", "configMap": {"name": "cfg-used"}}],
    }});
    s.kubectl_stdin(&["create", "-f", "-"], &pod.to_string()).ok();
    let get = |path: &str| curl(&s, "GET", path, None, &[&format!("X-Seal-Token: {token}")]);
    assert_eq!(get("/api/v1/namespaces/default/secrets/db-used").0, 200);
    assert_eq!(get("/api/v1/namespaces/default/configmaps/cfg-used").0, 200);
    let (code, denied) = get("/api/v1/namespaces/default/secrets/db-other");
    assert_eq!(code, 403, "{denied}");
    assert!(denied["message"].as_str().unwrap().contains("no relationship found between node 'worker-1' and this object"), "{denied}");
    assert_eq!(get("/api/v1/namespaces/default/configmaps/cfg-other").0, 403);
    // The worker writes its own Node (NodeRestriction), which carries the tier its stake buys
    // whatever the worker claims; another node's object is refused.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1", "labels": {"k3s-daas.io/stake-tier": "admin"}}});
    let (code, created) = curl(&s, "POST", "/api/v1/nodes", Some(&node), &[&format!("Authorization: Bearer {token}")]);
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["labels"]["k3s-daas.io/stake-tier"], "write");
    let other = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-2"}});
    let (code, r) = curl(&s, "POST", "/api/v1/nodes", Some(&other), &[&format!("Authorization: Bearer {token}")]);
    assert_eq!(code, 403, "{r}");
    assert!(r["message"].as_str().unwrap().contains("node \"worker-1\" is not allowed to modify node \"worker-2\""), "{r}");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "worker-1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "worker-1"}});
    let (code, r) = curl(
        &s,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        Some(&lease),
        &[&format!("Authorization: Bearer {token}")],
    );
    assert_eq!(code, 201, "{r}");

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

fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, SuiKey) {
    let path = dir.join(name);
    daas(&["dev", "keygen", "--out", path.to_str().unwrap()]).ok();
    let key = SuiKey::read(&path).unwrap();
    (path, key)
}

fn dev_stake(data_dir: &std::path::Path, key: &std::path::Path, node: &str, amount: &str) -> String {
    daas(&["dev", "stake", "--data-dir", data_dir.to_str().unwrap(), "--key", key.to_str().unwrap(), "--node", node, "--amount", amount])
        .ok()
        .trim()
        .to_string()
}

fn node_taints(s: &Server, node: &str) -> Vec<Value> {
    let out = s.kubectl(&["get", "node", node, "-o", "json"]).ok();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["spec"]["taints"].as_array().cloned().unwrap_or_default()
}

#[test]
fn heartbeats_refresh_tokens_and_an_unstake_or_a_slash_revokes_them() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Server::start_k8s_in(&data_dir, &["--min-stake", "1000", "--sui-poll-interval", "30s"]);
    let (k1_file, k1) = keygen(dir.path(), "w1.key");
    let (k2_file, k2) = keygen(dir.path(), "w2.key");
    let s1 = dev_stake(&data_dir, &k1_file, "worker-1", "5000");
    let s2 = dev_stake(&data_dir, &k2_file, "worker-2", "5000");
    let (_, r1) = register(&s, &k1, "worker-1", &s1);
    let (_, r2) = register(&s, &k2, "worker-2", &s2);
    let (t1, t2) = (r1["seal_token"].as_str().unwrap().to_string(), r2["seal_token"].as_str().unwrap().to_string());
    // The Node objects (the agent creates its own; here the admin does).
    for n in ["worker-1", "worker-2"] {
        s.kubectl_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n")).ok();
    }
    let works = |t: &str| curl(&s, "GET", "/api/v1/nodes", None, &[&format!("X-Seal-Token: {t}")]).0;

    // A heartbeat hands back a fresh token with the same identity.
    let (code, hb) = curl(&s, "POST", "/api/v1/nodes/heartbeat", Some(&json!({})), &[&format!("X-Seal-Token: {t1}")]);
    assert_eq!((code, hb["status"].as_str(), hb["node_id"].as_str()), (200, Some("ok"), Some("worker-1")), "{hb}");
    let t1b = hb["seal_token"].as_str().unwrap().to_string();
    assert_ne!(t1b, t1);
    assert_eq!(works(&t1b), 200);
    assert_eq!(curl(&s, "POST", "/api/v1/nodes/heartbeat", Some(&json!({})), &[]).0, 401, "anonymous");
    let (code, r) = curl(&s, "POST", "/api/v1/nodes/heartbeat", Some(&json!({})), &[&format!("X-Seal-Token: {t1}x")]);
    assert_eq!(code, 401, "{r}");

    // The slash lands on the ledger; the hint (which carries nothing) makes the master read
    // now rather than at its next 30 s poll.
    daas(&["dev", "slash", "--data-dir", data_dir.to_str().unwrap(), "--stake", &s1, "--reason", "double signing"]).ok();
    let (code, hint) = curl(&s, "POST", "/api/v1/sui-events", Some(&json!({"events": [{"type": "forged"}]})), &[]);
    assert_eq!((code, hint["status"].as_str()), (202, Some("polling")), "{hint}");
    eventually(Duration::from_secs(10), "the slashed worker's token is revoked", || (works(&t1b) == 401).then_some(()));
    assert_eq!(works(&t1), 401, "every token of the slashed staker");
    let (code, r) = curl(&s, "POST", "/api/v1/nodes/heartbeat", Some(&json!({})), &[&format!("X-Seal-Token: {t1b}")]);
    assert_eq!(code, 401, "a revoked worker cannot refresh: {r}");
    let taints = node_taints(&s, "worker-1");
    assert!(
        taints.iter().any(|t| t["key"] == "k3s-daas.io/stake-revoked" && t["effect"] == "NoExecute" && t["value"] == "slashed"),
        "{taints:?}"
    );
    // The other staker is untouched.
    assert_eq!(works(&t2), 200);
    assert!(node_taints(&s, "worker-2").is_empty());

    // Anyone may stake naming any node, but only the stake that admitted a node taints it.
    let (k3_file, _) = keygen(dir.path(), "w3.key");
    let squatter = dev_stake(&data_dir, &k3_file, "worker-2", "1000");
    daas(&["dev", "unstake", "--data-dir", data_dir.to_str().unwrap(), "--key", k3_file.to_str().unwrap(), "--stake", &squatter]).ok();
    curl(&s, "POST", "/api/v1/sui-events", None, &[]);
    eventually(Duration::from_secs(10), "the squatter's unstake is applied", || {
        s.kubectl(&["get", "--raw", "/metrics"]).ok().contains("daas_chain_events_applied_total 5").then_some(())
    });
    assert!(node_taints(&s, "worker-2").is_empty(), "another stake's unstake does not taint worker-2");
    assert_eq!(works(&t2), 200);

    // An unstake by the staker: the next heartbeat reads the chain and refuses at once, before
    // the master's next poll (30 s away); the event then taints the node.
    daas(&["dev", "unstake", "--data-dir", data_dir.to_str().unwrap(), "--key", k2_file.to_str().unwrap(), "--stake", &s2]).ok();
    let (code, r) = curl(&s, "POST", "/api/v1/nodes/heartbeat", Some(&json!({})), &[&format!("X-Seal-Token: {t2}")]);
    assert_eq!((code, r["reason"].as_str()), (401, Some("stake-revoked")), "{r}");
    assert_eq!(works(&t2), 401);
    curl(&s, "POST", "/api/v1/sui-events", None, &[]);
    eventually(Duration::from_secs(10), "worker-2 is tainted", || {
        node_taints(&s, "worker-2").iter().any(|t| t["key"] == "k3s-daas.io/stake-revoked" && t["value"] == "unstaking").then_some(())
    });
    // Three stakes, a slash and two unstakes; the counters move just after the taint lands.
    let metrics = eventually(Duration::from_secs(5), "the counters", || {
        let m = s.kubectl(&["get", "--raw", "/metrics"]).ok();
        m.contains("daas_chain_events_applied_total 6").then_some(m)
    });
    assert!(metrics.contains("daas_chain_revocations_total 3"), "{metrics}");
}

fn chain_request(s: &Server, id: &str) -> Option<Value> {
    let out = s.kubectl(&["get", "--raw", &format!("/api/v1/chain-requests/{id}")]);
    (out.code == Some(0)).then(|| serde_json::from_str(&out.stdout).unwrap())
}

fn dev_request(data_dir: &std::path::Path, key: &std::path::Path, manifest: &std::path::Path, extra: &[&str]) -> String {
    let mut args =
        vec!["dev", "request", "--data-dir", data_dir.to_str().unwrap(), "--key", key.to_str().unwrap(), "-f", manifest.to_str().unwrap()];
    args.extend_from_slice(extra);
    daas(&args).ok().trim().to_string()
}

#[test]
fn on_chain_requests_run_once_as_their_sender_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let args = ["--sui-poll-interval", "200ms"];
    let s = Server::start_k8s_in(&data_dir, &args);
    let (tenant_file, tenant) = keygen(dir.path(), "tenant.key");
    let (poor_file, poor) = keygen(dir.path(), "poor.key");
    let tenant_stake = dev_stake(&data_dir, &tenant_file, "tenant-a", "5000");
    // generateName: were the request applied twice, there would be two objects.
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: chain-\n  namespace: default\ndata:\n  from: chain\n")
        .unwrap();

    let id = dev_request(&data_dir, &tenant_file, &cm, &[]);
    assert!(id.ends_with("/0"), "{id}");
    let done = eventually(Duration::from_secs(10), "the request is applied", || chain_request(&s, &id));
    assert_eq!((done["state"].as_str(), done["code"].as_u64()), (Some("applied"), Some(201)), "{done}");
    assert_eq!(done["user"]["username"], tenant.address().to_string());
    assert!(done["user"]["groups"].to_string().contains("daas:tier:write"), "{done}");
    let name = done["object"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("chain-"), "{done}");
    let created = s.kubectl(&["get", "cm", &name, "-o", "jsonpath={.data.from}"]).ok();
    assert_eq!(created, "chain");

    // Refused and malformed requests are recorded as failed and the stream moves on.
    let refused = dev_request(&data_dir, &poor_file, &cm, &[]);
    let r = eventually(Duration::from_secs(10), "the unstaked sender's request is recorded", || chain_request(&s, &refused));
    assert_eq!((r["state"].as_str(), r["code"].as_u64()), (Some("failed"), Some(403)), "{r}");
    assert!(r["message"].as_str().unwrap().contains(&format!("User \"{}\" cannot create resource \"configmaps\"", poor.address())), "{r}");
    let bare = dir.path().join("bare.yaml");
    std::fs::write(&bare, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lost\n").unwrap();
    let elsewhere = dev_request(&data_dir, &tenant_file, &bare, &["--path", "/api/v1/namespaces/nowhere/configmaps"]);
    let r = eventually(Duration::from_secs(10), "a request into a missing namespace is recorded", || chain_request(&s, &elsewhere));
    assert_eq!((r["state"].as_str(), r["code"].as_u64()), (Some("failed"), Some(404)), "{r}");
    let list = dir.path().join("list.yaml");
    std::fs::write(&list, "- not\n- an object\n").unwrap();
    let junk = dev_request(&data_dir, &tenant_file, &list, &["--path", "/api/v1/namespaces/default/configmaps"]);
    let r = eventually(Duration::from_secs(10), "a malformed request is recorded", || chain_request(&s, &junk));
    assert_eq!((r["state"].as_str(), r["code"].as_u64()), (Some("failed"), Some(400)), "{r}");
    let unknown = s.kubectl(&["get", "--raw", "/api/v1/chain-requests/11111111111111111111111111111111/0"]);
    assert_ne!(unknown.code, Some(0));
    assert!(unknown.stderr.contains("NotFound") || unknown.stderr.contains("not found"), "{}", unknown.stderr);

    // An outcome is for its sender (and admins): another staker's token is refused.
    let (_, own) = register(&s, &tenant, "tenant-a", &tenant_stake);
    let own = own["seal_token"].as_str().unwrap().to_string();
    let path = format!("/api/v1/chain-requests/{id}");
    let (code, mine) = curl(&s, "GET", &path, None, &[&format!("Authorization: Bearer {own}")]);
    assert_eq!((code, &mine), (200, &done));
    let (other_file, other) = keygen(dir.path(), "other.key");
    let other_stake = dev_stake(&data_dir, &other_file, "other-node", "5000");
    let (_, o) = register(&s, &other, "other-node", &other_stake);
    let (code, r) = curl(&s, "GET", &path, None, &[&format!("Authorization: Bearer {}", o["seal_token"].as_str().unwrap())]);
    assert_eq!(code, 403, "{r}");

    // SIGKILL and start again: the cursor is in the store, so nothing is applied twice.
    s.crash();
    let s = Server::start_k8s_in(&data_dir, &args);
    let cm2 = dir.path().join("cm2.yaml");
    std::fs::write(&cm2, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-restart\n").unwrap();
    let later = dev_request(&data_dir, &tenant_file, &cm2, &[]);
    let r = eventually(Duration::from_secs(10), "a request after the restart is applied", || chain_request(&s, &later));
    assert_eq!(r["code"].as_u64(), Some(201), "{r}");
    let names = s.kubectl(&["get", "cm", "-o", "name"]).ok();
    assert_eq!(names.lines().filter(|l| l.starts_with("configmap/chain-")).count(), 1, "{names}");
    assert_eq!(chain_request(&s, &id).unwrap(), done, "the outcome is kept as recorded");
}

fn kubectl_with(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut c = std::process::Command::new("kubectl");
    c.arg("--kubeconfig").arg(kubeconfig).args(args);
    run_command(c, &format!("kubectl {}", args.join(" ")), Duration::from_secs(30))
}

#[test]
fn tenants_log_in_with_a_sui_key_and_get_the_tier_their_stake_buys() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Server::start_k8s_in(&data_dir, &["--sui-poll-interval", "200ms"]);
    let (admin_file, admin) = keygen(dir.path(), "admin.key");
    let (writer_file, writer) = keygen(dir.path(), "writer.key");
    let (nobody_file, _) = keygen(dir.path(), "nobody.key");
    // Two stakes add up: 6,000 + 6,000 ≥ 10,000 is the admin tier.
    dev_stake(&data_dir, &admin_file, "a-1", "6000");
    dev_stake(&data_dir, &admin_file, "a-2", "6000");
    dev_stake(&data_dir, &writer_file, "w-1", "1500");
    let login = |key: &std::path::Path, extra: &[&str]| {
        let mut cmd = daas_command();
        cmd.args(["login", "--server", s.https_url(), "--sui-key", key.to_str().unwrap(), "--danger-accept-simulation"]).args(extra);
        run_command(cmd, "daas login", Duration::from_secs(30))
    };
    let admin_kc = dir.path().join("admin.kubeconfig");
    // The master learns of stakes from the event stream, within a poll interval.
    eventually(Duration::from_secs(10), "the admin's login", || {
        let out = login(&admin_file, &["--write-kubeconfig", admin_kc.to_str().unwrap()]);
        (out.code == Some(0)).then_some(out)
    });
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&admin_kc).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let who: Value = serde_json::from_str(&kubectl_with(&admin_kc, &["auth", "whoami", "-o", "json"]).ok()).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], admin.address().to_string());
    assert!(who["status"]["userInfo"]["groups"].to_string().contains("daas:tier:admin"), "{who}");

    let writer_kc = dir.path().join("writer.kubeconfig");
    login(&writer_file, &["--write-kubeconfig", writer_kc.to_str().unwrap()]).ok();
    kubectl_with(&writer_kc, &["create", "configmap", "by-tenant", "--from-literal=a=1"]).ok();
    let who: Value = serde_json::from_str(&kubectl_with(&writer_kc, &["auth", "whoami", "-o", "json"]).ok()).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], writer.address().to_string());
    let denied = kubectl_with(&writer_kc, &["delete", "node", "anything"]);
    assert_ne!(denied.code, Some(0));
    assert!(denied.stderr.contains(&format!("User \"{}\" cannot delete resource \"nodes\"", writer.address())), "{}", denied.stderr);

    // Without --write-kubeconfig the token is printed; it is a bearer token like any other.
    let token = login(&writer_file, &[]).ok().trim().to_string();
    assert!(token.starts_with("seal_"));
    assert_eq!(
        curl(&s, "GET", "/api/v1/namespaces/default/configmaps/by-tenant", None, &[&format!("Authorization: Bearer {token}")]).0,
        200
    );

    // No stake, no login; and the master must be attested.
    let out = login(&nobody_file, &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no-stake"), "{}", out.stderr);
    let mut cmd = daas_command();
    cmd.args(["login", "--server", s.https_url(), "--sui-key", writer_file.to_str().unwrap()]);
    let out = run_command(cmd, "daas login", Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("SIMULATED") || out.stderr.contains("simulat"), "{}", out.stderr);
}

/// Keys made and signatures produced by Mysten's TypeScript SDK (run under node) register
/// workers with our master, for every scheme.
#[test]
fn workers_with_keys_from_the_typescript_sdk_register() {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chain/tests/ts");
    assert!(sdk.join("node_modules/@mysten/sui").exists(), "the TypeScript SDK is not installed: run `npm ci` in {}", sdk.display());
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Server::start_k8s_in(&data_dir, &[]);
    for scheme in ["ed25519", "secp256k1", "secp256r1"] {
        let (_, c) = curl(&s, "GET", "/api/v1/challenge?purpose=register-worker", None, &[]);
        let mut node = std::process::Command::new("node");
        node.current_dir(&sdk).args(["sdk.mjs", "sign", c["message"].as_str().unwrap()]);
        let out = run_command(node, "node sdk.mjs sign", Duration::from_secs(30)).ok();
        let signed: Value = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["scheme"] == scheme).unwrap();
        let key_file = dir.path().join(format!("{scheme}.key"));
        std::fs::write(&key_file, signed["suiprivkey"].as_str().unwrap()).unwrap();
        let node_name = format!("ts-{scheme}");
        let stake = dev_stake(&data_dir, &key_file, &node_name, "5000");
        let req = json!({"node_id": node_name, "stake_object_id": stake, "nonce": c["nonce"], "signature": signed["signature"]});
        let (code, r) = curl(&s, "POST", "/api/v1/register-worker", Some(&req), &[]);
        assert_eq!(code, 200, "{scheme}: {r}");
        let token = r["seal_token"].as_str().unwrap();
        let (code, who) = curl(
            &s,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
            &[&format!("Authorization: Bearer {token}")],
        );
        assert_eq!(
            (code, who["status"]["userInfo"]["username"].as_str()),
            (201, Some(format!("system:node:{node_name}").as_str())),
            "{who}"
        );
        assert_eq!(who["status"]["userInfo"]["uid"], signed["address"], "{scheme}");
    }
}
