//! `daas agent`: a worker that earns its place. Before it sends anything it verifies the
//! master's attestation and pins TLS to the attested CA; then it proves its stake
//! (`POST /api/v1/register-worker`, the seal-token flow) and, as `system:node:<name>`, keeps
//! its Node (capacity measured from the machine), its Lease and its conditions, heartbeats on
//! `POST /api/v1/nodes/heartbeat` (fresh token each time), runs the pods bound to it through
//! the [`PodManager`], and serves logs and exec over the reverse tunnel. A 401 (token expired,
//! master restarted, stake revoked) sends it back to attest and join; SIGTERM cordons the
//! node, stops its pods gracefully and ends.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use daas_chain::SuiKey;
use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::{Value, json};

use crate::node::{CpuSampler, Machine, Usage};
use crate::pods::PodManager;

/// How the agent joins and runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `https://host:port` of the master.
    pub server: String,
    pub node: String,
    pub key: Arc<SuiKey>,
    pub stake_object: String,
    pub policy: daas_tee::Policy,
    pub data_dir: PathBuf,
    /// Node status, Lease and heartbeat period (the kubelet's 10 s).
    pub heartbeat: Duration,
    pub max_pods: u32,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("attesting the master: {0}")]
    Attest(#[from] daas_attest::AttestError),
    #[error("the master refused to register this worker ({code}): {reason}")]
    Refused { code: u16, reason: String },
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> AgentError {
    AgentError::Other(e.to_string())
}

/// What a join gives: the attested CA and a token.
struct Joined {
    ca_der: Vec<u8>,
    token: String,
}

impl Config {
    fn token_file(&self) -> PathBuf {
        self.data_dir.join("seal-token")
    }

    /// Attests the master, signs its challenge, registers; writes the token (0600).
    async fn join(&self) -> Result<Joined, AgentError> {
        let att = daas_attest::attest_server(&self.server, &self.policy, self.timeout).await?;
        tracing::info!(server = %self.server, hardware = att.verified.hardware, measurement = %hex_of(&att.verified.measurement), "master attested");
        if !att.verified.hardware {
            tracing::warn!("the master runs on a SIMULATED TEE (accepted by policy): no hardware protection");
        }
        let call = |method: &'static str, path: String, body: Option<Value>| {
            let ca = att.ca_der.clone();
            async move {
                let (code, bytes) = daas_attest::pinned_request(&self.server, &ca, method, &path, body.as_ref(), self.timeout).await?;
                Ok::<_, AgentError>((code, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)))
            }
        };
        let (code, challenge) = call("GET", "/api/v1/challenge?purpose=register-worker".into(), None).await?;
        if code != 200 {
            return Err(AgentError::Refused { code, reason: challenge.to_string() });
        }
        let message = challenge["message"].as_str().ok_or_else(|| other("the challenge has no message"))?;
        let signature = self.key.sign_personal_message(message.as_bytes()).map_err(other)?;
        let body = json!({"node_id": self.node, "stake_object_id": self.stake_object, "nonce": challenge["nonce"], "signature": signature});
        let (code, answer) = call("POST", "/api/v1/register-worker".into(), Some(body)).await?;
        if code != 200 {
            let reason = match (answer["reason"].as_str(), answer["message"].as_str()) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                _ => answer.to_string(),
            };
            return Err(AgentError::Refused { code, reason });
        }
        let token = answer["seal_token"].as_str().ok_or_else(|| other("the answer has no token"))?.to_string();
        write_secret(&self.token_file(), &token).map_err(other)?;
        tracing::info!(node = %self.node, tier = %answer["tier"], "joined the cluster");
        Ok(Joined { ca_der: att.ca_der, token })
    }

    fn client(&self, ca_der: &[u8]) -> Result<Client, AgentError> {
        let mut c = kube::Config::new(self.server.parse().map_err(other)?);
        c.root_cert = Some(vec![ca_der.to_vec()]);
        c.auth_info.token_file = Some(self.token_file().display().to_string());
        c.read_timeout = None;
        Client::try_from(c).map_err(other)
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Runs the agent until `stop` turns true. Returns an error only when it cannot join at all
/// (attestation refused, no stake): those are for a person to fix, not to retry.
/// `on_client` receives the API client after every (re)join (for what reads ConfigMaps and
/// Secrets on the pods' behalf).
pub async fn run(
    cfg: Config,
    pods: Arc<PodManager>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    on_client: impl Fn(Client) + Send + Sync,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(other)?;
    let recovered = pods.recover();
    if !recovered.is_empty() {
        tracing::info!(pods = recovered.len(), "re-adopted running pods from the previous agent");
    }
    let mut first = true;
    let mut backoff = Duration::from_secs(1);
    loop {
        let joined = match cfg.join().await {
            Ok(j) => j,
            // Refusals of the worker itself end the agent on the first join.
            Err(e @ (AgentError::Attest(daas_attest::AttestError::Verify(_)) | AgentError::Refused { .. })) if first => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "joining failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        first = false;
        backoff = Duration::from_secs(1);
        let client = cfg.client(&joined.ca_der)?;
        on_client(client.clone());
        let token = Arc::new(parking_lot::Mutex::new(joined.token.clone()));
        let machine = Machine::measure(&cfg.data_dir, cfg.max_pods);
        if let Err(e) = ensure_node(&client, &cfg, &machine, &pods.runtime_version()).await {
            tracing::warn!(error = %e, "registering the Node failed; rejoining");
            tokio::time::sleep(backoff).await;
            continue;
        }
        let (rejoin_tx, mut rejoin) = tokio::sync::mpsc::channel::<String>(1);
        let mut tasks = vec![
            tokio::spawn(status_loop(client.clone(), cfg.clone(), joined.ca_der.clone(), token.clone(), pods.clone(), rejoin_tx.clone())),
            tokio::spawn(pod_loop(client.clone(), cfg.node.clone(), pods.clone())),
            tokio::spawn(report_loop(client.clone(), cfg.node.clone(), pods.clone())),
        ];
        {
            let (server, ca, node, io) = (cfg.server.clone(), joined.ca_der.clone(), cfg.node.clone(), pods.clone());
            let token = token.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                crate::tunnel::run(&server, &ca, &node, move || token.lock().clone(), io, stop).await;
            }));
        }
        let leaving = tokio::select! {
            why = rejoin.recv() => {
                tracing::warn!(why = %why.unwrap_or_default(), "rejoining the cluster");
                false
            }
            _ = stop.changed() => true,
        };
        for t in &tasks {
            t.abort();
        }
        if leaving {
            shut_down(&client, &cfg, &pods).await;
            return Ok(());
        }
    }
}

/// Creates or updates this node's Node: capacity and allocatable as measured, addresses,
/// nodeInfo, the worker label. The stake tier label is the master's to set (NodeRestriction).
async fn ensure_node(client: &Client, cfg: &Config, m: &Machine, runtime_version: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ip = node_ip(&cfg.server);
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.node, "labels": {
            "k3s-daas.io/worker": "true", "kubernetes.io/hostname": cfg.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": m.arch,
        }},
        "spec": {"unschedulable": false},
    });
    match nodes.create(&PostParams::default(), &serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            nodes.patch(&cfg.node, &PatchParams::default(), &Patch::Merge(&body)).await?;
        }
        Err(e) => return Err(e),
    }
    let status = json!({"status": {
        "capacity": m.capacity(), "allocatable": m.capacity(),
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": m.hostname}],
        "nodeInfo": m.node_info(runtime_version),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    }});
    nodes.patch_status(&cfg.node, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// The address other nodes reach this one at: the local address of a socket toward the
/// master (loopback when the master is local).
fn node_ip(server: &str) -> String {
    let host = server.trim_start_matches("https://").split('/').next().unwrap_or("127.0.0.1").to_string();
    let target = if host.contains(':') { host } else { format!("{host}:443") };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(&target)?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Every heartbeat period: node conditions, the node Lease, and the heartbeat that refreshes
/// the token. A 401 anywhere means rejoin.
async fn status_loop(
    client: Client,
    cfg: Config,
    ca_der: Vec<u8>,
    token: Arc<parking_lot::Mutex<String>>,
    pods: Arc<PodManager>,
    rejoin: tokio::sync::mpsc::Sender<String>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut cpu = CpuSampler::default();
    let mut old_conditions: Vec<Value> = Vec::new();
    loop {
        let now = k8s_openapi::jiff::Timestamp::now();
        let usage = Usage::measure(&mut cpu, &cfg.data_dir);
        let conditions = usage.conditions(&now.to_string(), &old_conditions);
        let patch = json!({"status": {"conditions": conditions}});
        match nodes.patch_status(&cfg.node, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => old_conditions = conditions,
            Err(kube::Error::Api(e)) if e.code == 401 => {
                let _ = rejoin.send("the master no longer accepts our token".into()).await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "posting node status"),
        }
        let secs = i32::try_from((cfg.heartbeat * 4).as_secs()).unwrap_or(40);
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": cfg.node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": cfg.node, "leaseDurationSeconds": secs, "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)}});
        let ssa = PatchParams::apply("daas-agent").force();
        if let Err(e) = leases.patch(&cfg.node, &ssa, &Patch::Apply(&lease)).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        let body = usage.heartbeat(&cfg.node, pods.running());
        let current = token.lock().clone();
        let hb = daas_attest::pinned_request_with_token(
            &cfg.server,
            &ca_der,
            "POST",
            "/api/v1/nodes/heartbeat",
            Some(&body),
            &current,
            cfg.timeout,
        )
        .await;
        match hb {
            Ok((200, bytes)) => {
                if let Some(t) = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["seal_token"].as_str().map(str::to_string)) {
                    if let Err(e) = write_secret(&cfg.token_file(), &t) {
                        tracing::warn!(error = %e, "saving the refreshed token");
                    }
                    *token.lock() = t;
                }
            }
            Ok((401, bytes)) => {
                let _ = rejoin.send(format!("heartbeat refused: {}", String::from_utf8_lossy(&bytes))).await;
                return;
            }
            Ok((code, bytes)) => tracing::warn!(code, body = %String::from_utf8_lossy(&bytes), "heartbeat not accepted"),
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::time::sleep(cfg.heartbeat).await;
    }
}

/// Follows the pods bound to this node: runs new ones, stops deleted ones and finishes their
/// deletion (the kubelet's final delete with grace 0).
async fn pod_loop(client: Client, node: String, pods: Arc<PodManager>) {
    let api: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut known: HashMap<String, (String, String)> = HashMap::new();
    // The uids of a (re)list in progress.
    let mut listing: Option<HashSet<String>> = None;
    let mut events = watcher(api, wc).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        let (applied, deleted): (Vec<Pod>, Vec<Pod>) = match ev {
            watcher::Event::Apply(p) => (vec![p], vec![]),
            watcher::Event::InitApply(p) => {
                if let Some(seen) = listing.as_mut() {
                    seen.insert(p.uid().unwrap_or_default());
                }
                (vec![p], vec![])
            }
            watcher::Event::Delete(p) => (vec![], vec![p]),
            watcher::Event::Init => {
                listing = Some(HashSet::new());
                (vec![], vec![])
            }
            watcher::Event::InitDone => {
                // A full list: pods this agent runs that the API no longer has (deleted while
                // the agent was away) go, and so does what the runtime holds for them.
                if let Some(seen) = listing.take() {
                    for uid in pods.uids().into_iter().filter(|u| !seen.contains(u)) {
                        tracing::info!(%uid, "the pod is gone from the API; removing it");
                        let pods = pods.clone();
                        tokio::spawn(async move { pods.remove(&uid, Some(Duration::ZERO)).await });
                    }
                    let pods = pods.clone();
                    tokio::spawn(async move { pods.sweep(&seen).await });
                }
                (vec![], vec![])
            }
        };
        for p in deleted {
            let uid = p.uid().unwrap_or_default();
            known.remove(&uid);
            // On its own task, as graceful removals are: the watch may be cut short.
            let pods = pods.clone();
            tokio::spawn(async move { pods.remove(&uid, Some(Duration::ZERO)).await });
        }
        for p in applied {
            let uid = p.uid().unwrap_or_default();
            known.insert(uid.clone(), (p.namespace().unwrap_or_default(), p.name_any()));
            if p.metadata.deletion_timestamp.is_some() {
                let grace = p.metadata.deletion_grace_period_seconds.map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0)));
                let (pods, client) = (pods.clone(), client.clone());
                tokio::spawn(async move {
                    pods.remove(&uid, grace).await;
                    let api: Api<Pod> = Api::namespaced(client, &p.namespace().unwrap_or_default());
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                        ..Default::default()
                    };
                    if let Err(e) = api.delete(&p.name_any(), &dp).await {
                        tracing::debug!(error = %e, "finishing a pod's deletion");
                    }
                });
            } else {
                pods.sync(&p);
            }
        }
    }
}

/// Patches a pod's status whenever the PodManager says it changed; posts its events.
async fn report_loop(client: Client, node: String, pods: Arc<PodManager>) {
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter { controller: "kubelet".into(), instance: Some(node) },
    );
    let mut changes = pods.changes();
    let mut events = pods.events();
    loop {
        tokio::select! {
            Some(uid) = changes.recv() => {
                let (Some((ns, name)), Some(status)) = (pods.pod_name(&uid), pods.status(&uid)) else { continue };
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let patch = json!({"metadata": {"uid": uid}, "status": status});
                if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::debug!(pod = %name, error = %e, "patching pod status");
                }
            }
            Some(ev) = events.recv() => {
                let reference = ev.object_ref();
                let e = kube::runtime::events::Event {
                    type_: if ev.warning { kube::runtime::events::EventType::Warning } else { kube::runtime::events::EventType::Normal },
                    reason: ev.reason.clone(),
                    note: Some(ev.message.clone()),
                    action: ev.reason.clone(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&e, &reference).await {
                    tracing::debug!(error = %e, "posting an event");
                }
            }
            else => return,
        }
    }
}

/// SIGTERM: cordon, stop every pod gracefully, report them terminated by the node's shutdown.
async fn shut_down(client: &Client, cfg: &Config, pods: &Arc<PodManager>) {
    let nodes: Api<Node> = Api::all(client.clone());
    if let Err(e) = nodes.patch(&cfg.node, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": true}}))).await {
        tracing::warn!(error = %e, "cordoning the node");
    }
    // Every pod stops at once (each within its own grace period), then each is reported.
    let stop = pods.uids().into_iter().map(|uid| async move {
        let name = pods.pod_name(&uid);
        pods.remove(&uid, None).await;
        name
    });
    for (ns, name) in futures::future::join_all(stop).await.into_iter().flatten() {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let not = |t: &str| json!({"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now});
        let patch = json!({"status": {
            "phase": "Failed", "reason": "Terminated", "message": "Pod was terminated in response to the node's agent shutting down.",
            "conditions": [not("Ready"), not("ContainersReady")],
        }});
        let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
    // Pods deleted just before the shutdown are still being stopped by their own tasks.
    pods.removals_done().await;
    tracing::info!(node = %cfg.node, "cordoned, pods stopped; agent exiting");
}
