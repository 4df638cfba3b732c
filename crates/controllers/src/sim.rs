//! Hollow nodes: SIMULATED worker nodes for tests and load tools, as kubemark's hollow nodes
//! are. Each registers a Node (labelled and annotated as simulated), renews its Lease in
//! kube-node-lease and its Ready condition, and reports the pods bound to it as Running and
//! Ready without running anything; pods being deleted are finished at once. Pausing a node
//! stops all of that, as if its machine had died.
//!
//! SIMULATED exits, for tests of controllers that wait for pods to finish (Jobs): a pod
//! annotated [`SIMULATE_EXIT`] with an exit code N is reported Running, then about 200 ms
//! later finished — phase Succeeded if N is 0, else Failed — with every container terminated
//! with exit code N. The restart policy is not simulated: the pod finishes whatever it says.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::json;

pub const SIMULATED_LABEL: &str = "k3s-daas.io/simulated";
/// SIMULATION: the exit code a hollow node makes a pod's containers exit with, ~200 ms after
/// it reports them running (value: an integer; anything else is ignored).
pub const SIMULATE_EXIT: &str = "k3s-daas.io/simulate-exit";
/// How long a pod with [`SIMULATE_EXIT`] runs.
const SIMULATED_RUN: Duration = Duration::from_millis(200);

/// What each hollow node offers.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { cpu: "4".into(), memory: "16Gi".into(), pods: "110".into() }
    }
}

/// How hollow nodes behave.
#[derive(Debug, Clone)]
pub struct Options {
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    /// How often each renews its Lease and Ready condition.
    pub heartbeat: Duration,
    /// Report bound pods as Running and Ready (off: pods stay Pending once bound, for load
    /// tools that measure the scheduler alone).
    pub report_pods: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { capacity: Capacity::default(), labels: BTreeMap::new(), heartbeat: Duration::from_secs(10), report_pods: true }
    }
}

/// Running hollow nodes; dropping it stops them.
pub struct HollowNodes {
    names: Vec<String>,
    paused: Arc<Mutex<HashSet<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn ready_status(name: &str, cap: &Capacity, now: &str) -> serde_json::Value {
    let resources = json!({"cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods, "ephemeral-storage": "100Gi"});
    let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("Ready", "True", "KubeletReady", "hollow node (SIMULATED, no kubelet) is posting ready status"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "nodeInfo": {
            "kubeletVersion": "v1.33.0-hollow", "kubeProxyVersion": "", "containerRuntimeVersion": "simulated://0",
            "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow node (simulated)",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }})
}

impl HollowNodes {
    /// Registers `names` as hollow nodes and starts their heartbeats and pod reporting.
    pub async fn start(client: Client, names: Vec<String>, opts: Options) -> Result<HollowNodes, kube::Error> {
        let Options { capacity, labels, heartbeat, report_pods } = opts;
        let nodes: Api<Node> = Api::all(client.clone());
        let now = Timestamp::now().to_string();
        for name in &names {
            let mut l = labels.clone();
            l.insert("kubernetes.io/hostname".into(), name.clone());
            l.insert("kubernetes.io/os".into(), "linux".into());
            l.insert(SIMULATED_LABEL.into(), "true".into());
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(l),
                    annotations: Some(BTreeMap::from([(
                        SIMULATED_LABEL.to_string(),
                        "hollow node: no kubelet, no containers".to_string(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&ready_status(name, &capacity, &now))).await?;
        }
        let paused = Arc::new(Mutex::new(HashSet::new()));
        let mut tasks = Vec::new();
        {
            let (client, names, paused, capacity) = (client.clone(), names.clone(), paused.clone(), capacity.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(heartbeat).await;
                    for name in &names {
                        if paused.lock().contains(name) {
                            continue;
                        }
                        if let Err(e) = beat(&client, name, &capacity, heartbeat).await {
                            tracing::debug!(node = %name, error = %e, "hollow node heartbeat");
                        }
                    }
                }
            }));
        }
        for name in &names {
            let _ = beat(&client, name, &capacity, heartbeat).await;
        }
        if report_pods {
            let (client, mine, paused) = (client.clone(), names.iter().cloned().collect::<HashSet<String>>(), paused.clone());
            tasks.push(tokio::spawn(async move {
                let pods: Api<Pod> = Api::all(client.clone());
                let mut events = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
                let mut n: u32 = 0;
                while let Some(ev) = events.next().await {
                    let Ok(pod) = ev else { continue };
                    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
                    if !mine.contains(&node) || paused.lock().contains(&node) {
                        continue;
                    }
                    n = n.wrapping_add(1);
                    let (client, paused) = (client.clone(), paused.clone());
                    tokio::spawn(async move {
                        if let Err(e) = report(&client, &pod, &node, n, &paused).await {
                            tracing::debug!(pod = %pod.name_any(), error = %e, "hollow node pod report");
                        }
                    });
                }
            }));
        }
        Ok(HollowNodes { names, paused, tasks })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The node stops heartbeating and reporting, as if its machine died.
    pub fn pause(&self, name: &str) {
        self.paused.lock().insert(name.to_string());
    }

    pub fn resume(&self, name: &str) {
        self.paused.lock().remove(name);
    }
}

async fn beat(client: &Client, name: &str, cap: &Capacity, every: Duration) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let secs = i32::try_from((every * 4).as_secs().max(1)).unwrap_or(40);
    let lease = Lease {
        metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(secs),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"spec": {"renewTime": MicroTime(now), "holderIdentity": name, "leaseDurationSeconds": secs}});
            leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Err(e) => return Err(e),
    }
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&ready_status(name, cap, &now.to_string()))).await?;
    Ok(())
}

/// Reports a pod bound to a hollow node: Running and Ready, or gone when it is being deleted;
/// a pod with [`SIMULATE_EXIT`] then finishes.
async fn report(client: &Client, pod: &Pod, node: &str, n: u32, paused: &Mutex<HashSet<String>>) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if pod.metadata.deletion_timestamp.is_some() {
        // Finished already (a finalizer holds it): nothing more for the node to do.
        if pod.metadata.deletion_grace_period_seconds == Some(0) {
            return Ok(());
        }
        return match api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        };
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Running") || phase == Some("Succeeded") || phase == Some("Failed") {
        return Ok(());
    }
    let now = Timestamp::now().to_string();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let statuses: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "", "ready": true, "started": true,
                        "restartCount": 0, "state": {"running": {"startedAt": now}},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        "containerStatuses": statuses,
        "hostIP": "127.0.0.1",
        "podIP": format!("10.42.{}.{}", (n >> 8) & 0xff, n & 0xff),
        "startTime": now,
    }});
    match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let Some(code) = pod.annotations().get(SIMULATE_EXIT).and_then(|v| v.trim().parse::<i32>().ok()) else {
        return Ok(());
    };
    tokio::time::sleep(SIMULATED_RUN).await;
    if paused.lock().contains(node) {
        return Ok(());
    }
    simulate_exit(&api, pod, code, &now).await
}

/// SIMULATION: the pod's containers exit with `code` (started at `started`), as a kubelet
/// reports a finished pod: phase Succeeded or Failed, not Ready.
async fn simulate_exit(api: &Api<Pod>, pod: &Pod, code: i32, started: &str) -> Result<(), kube::Error> {
    let now = Timestamp::now().to_string();
    let reason = if code == 0 { "Completed" } else { "Error" };
    let done = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let stopped = |t: &str| json!({"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now});
    let statuses: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "", "ready": false, "started": false,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now}},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [done("PodScheduled"), done("Initialized"), stopped("ContainersReady"), stopped("Ready")],
        "containerStatuses": statuses,
    }});
    tracing::debug!(pod = %pod.name_any(), code, "hollow node: SIMULATED exit");
    match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
