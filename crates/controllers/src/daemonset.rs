//! The DaemonSet controller: one pod on every node its template fits — nodeSelector, required
//! node affinity, and the node's taints against the template's tolerations plus the ones every
//! daemon pod gets — rolled node by node to a new template within maxUnavailable
//! (RollingUpdate) or left for the user to delete (OnDelete), with the status that `kubectl
//! rollout status ds` follows.
//!
//! Daemon pods are not bound here. As in Kubernetes since 1.12, each carries a required node
//! affinity on `metadata.name` naming its node, and the scheduler binds it. The decisions are
//! pure functions — [`node_fit`], [`daemon_plan`], [`daemon_status`] — and `reconcile`
//! carries them out. Start at [`run`].
//!
//! Not supported: `maxSurge` (a DaemonSet asking for it rolls with maxUnavailable alone, and
//! says so once), ControllerRevisions (the API serves none, so `kubectl rollout history|undo
//! ds` have nothing to read), and the backoff kube-controller-manager puts on re-creating a
//! daemon pod that keeps failing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::deployment::{scaled, template_hash};
use crate::scheduler::core::{NodeState, schedule};
use crate::util::{Expectations, claim_pods, controller_ref, create_slow_start, delete_pods, is_pod_available, is_pod_ready, key};

/// The template's hash on each daemon pod; a pod whose value differs is from an old template.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// `metadata.generation` of the DaemonSet that made the pod.
pub const GENERATION_LABEL: &str = "pod-template-generation";
/// The one field a node selector term may name.
const NODE_NAME_FIELD: &str = "metadata.name";

/// Tolerations every daemon pod gets, as kube-controller-manager adds them: a daemon stays on
/// a node that stops being Ready or reachable, and lands on nodes under pressure or cordoned.
/// Not-ready and unreachable are tolerated for NoExecute only, so a node that is not Ready gets
/// no new daemon pod (the scheduler would not bind it there anyway) but keeps the ones it has.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Tolerated too by daemon pods on the host network, which need no pod network.
const HOST_NETWORK_TOLERATION: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// Most pods one pass creates.
const BURST: usize = 500;

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub expectations: Expectations,
    /// DaemonSets (by uid) already told that maxSurge is not supported.
    warned: Mutex<HashSet<String>>,
}

/// Runs the controller until the returned future is dropped. `pod_events` and `node_events` are
/// subscriptions to the shared reflectors behind `pods` and `nodes`.
pub async fn run(
    client: Client,
    pods: Store<Pod>,
    pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static,
    nodes: Store<Node>,
    node_events: impl futures::Stream<Item = Arc<Node>> + Send + 'static,
) {
    // An empty cache would read as "no pods anywhere" and double every DaemonSet.
    let _ = tokio::join!(pods.wait_until_ready(), nodes.wait_until_ready());
    let ctx =
        Arc::new(Ctx { client: client.clone(), pods, nodes, expectations: Expectations::default(), warned: Mutex::new(HashSet::new()) });
    crate::util::drive(
        Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default())
            .owns_shared_stream(pod_events)
            .reconcile_all_on(placement_changes(node_events)),
        reconcile,
        ctx,
        "daemonset",
        Duration::from_secs(1),
    )
    .await;
}

/// One item per node change that can move daemon pods: new nodes, and changes to labels,
/// taints, cordoning or readiness. Heartbeats (every node, every few seconds) pass silently.
/// Deleted nodes are not reported by a shared reflector; the periodic requeue covers them.
fn placement_changes(
    node_events: impl futures::Stream<Item = Arc<Node>> + Send + 'static,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    node_events.filter_map(move |node| {
        let spec = node.spec.as_ref();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        let placement = json!({
            "labels": node.metadata.labels,
            "taints": spec.and_then(|s| s.taints.as_ref()),
            "unschedulable": spec.and_then(|s| s.unschedulable),
            "ready": ready,
        });
        let changed = seen.insert(node.name_any(), placement.clone()) != Some(placement);
        futures::future::ready(changed.then_some(()))
    })
}

/// Whether a daemon pod belongs on a node, as kube-controller-manager's
/// `NodeShouldRunDaemonPod` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A new daemon pod may go there: selector and affinity match, and every NoSchedule and
    /// NoExecute taint is tolerated.
    pub should_run: bool,
    /// A daemon pod already there may stay: selector and affinity match, and every NoExecute
    /// taint is tolerated (NoSchedule taints added since do not evict).
    pub should_continue: bool,
}

/// Asks the scheduler's filters about the one node, with a pod that asks for no resources and
/// no ports: what remains is node selector, required node affinity, readiness, cordoning and
/// taints, which is what a DaemonSet decides on (resources are the scheduler's concern).
pub fn node_fit(template: &PodTemplateSpec, node: &Arc<Node>) -> Fit {
    let spec = template.spec.as_ref();
    let mut tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    add_daemon_tolerations(&mut tolerations, spec.and_then(|s| s.host_network).unwrap_or(false));
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone());
    let probe = |tolerations: Vec<Toleration>| Pod {
        spec: Some(PodSpec {
            node_selector: spec.and_then(|s| s.node_selector.clone()),
            affinity: required.clone().map(|r| Affinity {
                node_affinity: Some(NodeAffinity { required_during_scheduling_ignored_during_execution: Some(r), ..Default::default() }),
                ..Default::default()
            }),
            tolerations: Some(tolerations),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes = [NodeState::new(node.clone())];
    let should_run = schedule(&probe(tolerations.clone()), &nodes).is_ok();
    let should_continue = should_run || {
        // Tolerating every NoSchedule taint (and the scheduler's not-ready and cordon checks,
        // which are NoSchedule) leaves the NoExecute taints and the node selection.
        let mut relaxed = tolerations;
        relaxed.push(Toleration { operator: Some("Exists".into()), effect: Some("NoSchedule".into()), ..Default::default() });
        schedule(&probe(relaxed), &nodes).is_ok()
    };
    Fit { should_run, should_continue }
}

/// Adds the tolerations every daemon pod gets, replacing a template's toleration of the same
/// key, operator, value and effect (so a template's tolerationSeconds does not cut it short).
fn add_daemon_tolerations(tolerations: &mut Vec<Toleration>, host_network: bool) {
    let network = host_network.then_some(HOST_NETWORK_TOLERATION);
    for (key, effect) in DAEMON_TOLERATIONS.iter().copied().chain(network) {
        let same = |t: &Toleration| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
                && t.value.as_deref().unwrap_or("").is_empty()
        };
        tolerations.retain(|t| !same(t));
        tolerations.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        });
    }
}

/// The node a daemon pod is for: the one it is bound to or, before the scheduler has bound it,
/// the one its `metadata.name` node affinity names.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        match (r.key.as_str(), r.operator.as_str(), r.values.as_deref()) {
            (NODE_NAME_FIELD, "In", Some([node])) => Some(node.as_str()),
            _ => None,
        }
    })
}

/// The template's hash, as the pods' `controller-revision-hash` label carries it.
pub fn daemon_hash(ds: &DaemonSet) -> String {
    let collision = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    ds.spec.as_ref().map(|s| template_hash(&s.template, collision)).unwrap_or_default()
}

/// What one pass does: create a daemon pod on these nodes, delete these pods.
#[derive(Debug, Default)]
pub struct Plan {
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

/// Which pods the DaemonSet keeps: the oldest scheduled one first, as kube-controller-manager
/// sorts them before deleting the rest.
fn keep_rank(p: &Pod) -> (bool, Option<Timestamp>, String) {
    let unscheduled = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
    (unscheduled, p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any())
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

/// The DaemonSet's pods by the node they are for; pods for no node are left out.
fn by_node(pods: &[Arc<Pod>]) -> BTreeMap<&str, Vec<&Arc<Pod>>> {
    let mut by: BTreeMap<&str, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in pods {
        if let Some(node) = target_node(p) {
            by.entry(node).or_default().push(p);
        }
    }
    by
}

/// The DaemonSet's next pass, given each node's [`Fit`] and the pods it controls: a pod where
/// one should be and none is (a pod still terminating counts as one, so a replacement waits for
/// it); the oldest kept where there are several; finished pods removed where a pod may stay;
/// every pod removed where none may. Only when that leaves nothing to do does a rolling update
/// take its step, as kube-controller-manager orders them. Pods for nodes that no longer exist
/// are left to pod garbage collection.
pub fn daemon_plan(ds: &DaemonSet, nodes: &[(String, Fit)], pods: &[Arc<Pod>], hash: &str, now: Timestamp) -> Plan {
    let by = by_node(pods);
    let mut plan = Plan::default();
    for (node, fit) in nodes {
        let here = by.get(node.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if fit.should_run && here.is_empty() {
            plan.create_on.push(node.clone());
        } else if fit.should_continue {
            let mut running: Vec<&Arc<Pod>> = Vec::new();
            for p in here.iter().copied().filter(|p| !is_terminating(p)) {
                if matches!(phase(p), "Failed" | "Succeeded") {
                    plan.delete.push(p.clone());
                } else {
                    running.push(p);
                }
            }
            running.sort_by_key(|p| keep_rank(p));
            plan.delete.extend(running.into_iter().skip(1).cloned());
        } else {
            plan.delete.extend(here.iter().copied().filter(|p| !is_terminating(p)).cloned());
        }
    }
    if plan.is_empty() && is_rolling(ds) {
        plan.delete = rolling_step(ds, nodes, &by, hash, now);
    }
    plan
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

fn min_ready(ds: &DaemonSet) -> Duration {
    Duration::from_secs(u64::try_from(ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0).max(0)).unwrap_or(0))
}

/// Whether the DaemonSet asks for a surge this controller does not do.
fn surge_requested(ds: &DaemonSet) -> bool {
    let surge = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_surge.as_ref());
    surge.is_some_and(|s| scaled(Some(s), 100, true, "0") > 0)
}

/// maxUnavailable (default 1) of `desired` nodes, percentages rounded up; zero becomes one, as
/// Kubernetes resolves it when there is no surge.
pub fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    let v = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    scaled(Some(&v), desired, true, "0").max(1)
}

/// One step of a rolling update without surge: old pods that are not available go at once
/// (they cost no availability); available ones go while fewer than maxUnavailable nodes are
/// without an available new pod. The normal one-per-node logic then creates their
/// replacements from the new template.
fn rolling_step(ds: &DaemonSet, nodes: &[(String, Fit)], by: &BTreeMap<&str, Vec<&Arc<Pod>>>, hash: &str, now: Timestamp) -> Vec<Arc<Pod>> {
    let desired = i32::try_from(nodes.iter().filter(|(_, f)| f.should_run).count()).unwrap_or(i32::MAX);
    let budget = max_unavailable(ds, desired);
    let min_ready = min_ready(ds);
    let mut unavailable = 0i32;
    let mut replace_now: Vec<Arc<Pod>> = Vec::new();
    let mut candidates: Vec<Arc<Pod>> = Vec::new();
    for (node, fit) in nodes {
        let here = by.get(node.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if here.is_empty() {
            if fit.should_run {
                unavailable += 1;
            }
            continue;
        }
        let live: Vec<&Arc<Pod>> = here.iter().copied().filter(|p| !is_terminating(p)).collect();
        let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = live.into_iter().partition(|p| is_updated(p, hash));
        match (new.as_slice(), old.as_slice()) {
            ([n], []) => {
                if !is_pod_available(n, min_ready, now) {
                    unavailable += 1;
                }
            }
            ([], [o]) => {
                if is_pod_available(o, min_ready, now) {
                    candidates.push(Arc::clone(o));
                } else {
                    replace_now.push(Arc::clone(o));
                }
            }
            // Nothing live yet, or both templates (or duplicates) for the one-per-node logic to
            // sort out: unavailable meanwhile.
            _ => unavailable += 1,
        }
    }
    let room = usize::try_from((budget - unavailable).max(0)).unwrap_or(0);
    replace_now.extend(candidates.into_iter().take(room));
    replace_now
}

fn is_updated(p: &Pod, hash: &str) -> bool {
    p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).is_some_and(|h| h == hash)
}

/// The counts `status` reports, as kube-controller-manager counts them: per node the oldest
/// pod stands for the node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

pub fn daemon_status(ds: &DaemonSet, nodes: &[(String, Fit)], pods: &[Arc<Pod>], hash: &str, now: Timestamp) -> Counts {
    // Finished pods that are being deleted are gone as far as status is concerned.
    let counted: Vec<Arc<Pod>> =
        pods.iter().filter(|p| !(is_terminating(p) && matches!(phase(p), "Failed" | "Succeeded"))).cloned().collect();
    let by = by_node(&counted);
    let min_ready = min_ready(ds);
    let mut c = Counts::default();
    for (node, fit) in nodes {
        let mut here: Vec<&Arc<Pod>> = by.get(node.as_str()).cloned().unwrap_or_default();
        here.sort_by_key(|p| keep_rank(p));
        if !fit.should_run {
            if !here.is_empty() {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        let Some(p) = here.first() else { continue };
        c.current += 1;
        if is_pod_ready(p) {
            c.ready += 1;
            if is_pod_available(p, min_ready, now) {
                c.available += 1;
            }
        }
        if is_updated(p, hash) {
            c.updated += 1;
        }
    }
    c
}

/// The pod the DaemonSet runs on `node`: the template, its labels plus the hash and
/// generation, the daemon tolerations, and a required node affinity that names the node (the
/// template's own required terms are replaced: the node was checked against them).
pub fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    add_daemon_tolerations(spec.tolerations.get_or_insert_with(Vec::new), host_network);
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
    };
    let node_affinity = spec.affinity.get_or_insert_with(Default::default).node_affinity.get_or_insert_with(Default::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    if ds.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else { return Ok(Action::await_change()) };
    if is_rolling(&ds) && surge_requested(&ds) && ctx.warned.lock().insert(uid.clone()) {
        tracing::warn!(daemonset = %key(&ds.metadata), "maxSurge is not supported here: rolling with maxUnavailable alone");
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let owned = claim_pods(ds.as_ref(), &spec.selector, &in_ns, &pods_api, |_| true).await?;
    let mut nodes = ctx.nodes.state();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let fits: Vec<(String, Fit)> = nodes.iter().map(|n| (n.name_any(), node_fit(&spec.template, n))).collect();
    let hash = daemon_hash(&ds);
    let now = Timestamp::now();

    let present = |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name));
    let terminating = |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name) && is_terminating(p));
    let settled = ctx.expectations.satisfied(&uid, present, terminating);
    let plan = if settled { daemon_plan(&ds, &fits, &owned, &hash, now) } else { Plan::default() };

    if !plan.delete.is_empty() {
        for p in &plan.delete {
            ctx.expectations.expect_delete(&uid, p.name_any());
        }
        tracing::debug!(daemonset = %key(&ds.metadata), pods = plan.delete.len(), "deleting daemon pods");
        delete_pods(&pods_api, plan.delete.iter().map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect()).await?;
    }
    let mut create_failed = false;
    if !plan.create_on.is_empty() {
        let wanted: Vec<Pod> = plan.create_on.iter().take(BURST).map(|node| daemon_pod(&ds, node, &hash)).collect();
        let (created, failed) = create_slow_start(&pods_api, wanted).await;
        for p in &created {
            ctx.expectations.expect_add(&uid, p.name_any());
        }
        if let Some(e) = failed {
            tracing::warn!(daemonset = %key(&ds.metadata), error = %e, "creating daemon pods failed; will retry");
            create_failed = true;
        }
    }

    // Status, from the cache as this pass found it; the next pass sees what this one did.
    let c = daemon_status(&ds, &fits, &owned, &hash, now);
    let status = json!({
        "desiredNumberScheduled": c.desired,
        "currentNumberScheduled": c.current,
        "numberMisscheduled": c.misscheduled,
        "numberReady": c.ready,
        "numberAvailable": c.available,
        "numberUnavailable": (c.desired - c.available).max(0),
        "updatedNumberScheduled": c.updated,
        "observedGeneration": ds.metadata.generation,
    });
    let old = ds.status.as_ref().map(|s| {
        json!({
            "desiredNumberScheduled": s.desired_number_scheduled,
            "currentNumberScheduled": s.current_number_scheduled,
            "numberMisscheduled": s.number_misscheduled,
            "numberReady": s.number_ready,
            "numberAvailable": s.number_available.unwrap_or(0),
            "numberUnavailable": s.number_unavailable.unwrap_or(0),
            "updatedNumberScheduled": s.updated_number_scheduled.unwrap_or(0),
            "observedGeneration": s.observed_generation,
        })
    });
    if old.as_ref() != Some(&status) {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }

    if create_failed {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // A shared reflector does not report deletions, so a pass that waits for a pod to go
    // looks again soon rather than waiting for an event that will not come.
    if !settled || !plan.is_empty() || owned.iter().any(|p| is_terminating(p)) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let min_ready = min_ready(&ds);
    if c.ready > c.available && !min_ready.is_zero() {
        return Ok(Action::requeue(min_ready));
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    fn node(mut v: Value) -> Arc<Node> {
        v["status"] =
            json!({"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}});
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn ds(spec: Value) -> DaemonSet {
        let mut v = json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 3},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "agent:1"}]}},
            },
        });
        if let (Some(base), Some(extra)) = (v["spec"].as_object_mut(), spec.as_object()) {
            for (k, x) in extra {
                base.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    /// An affinity with one required node selector term.
    fn required(term: Value) -> Value {
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}})
    }

    fn template(spec: Value) -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": spec})).unwrap()
    }

    /// A daemon pod for `node` (bound to it only when "ready"); `state` is "ready", "pending",
    /// "failed" or "terminating"; the higher `age`, the earlier its creation.
    fn pod(name: &str, node: &str, hash: &str, state: &str, age: u32) -> Arc<Pod> {
        let created = format!("2024-01-01T00:00:{:02}Z", 59 - age.min(59));
        let mut v = json!({
            "metadata": {
                "name": name,
                "uid": format!("uid-{name}"),
                "labels": {"app": "agent", HASH_LABEL: hash},
                "creationTimestamp": created,
            },
            "spec": {
                "containers": [{"name": "c"}],
                "affinity": required(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]})),
            },
            "status": {"phase": "Pending"},
        });
        match state {
            "ready" => {
                v["spec"]["nodeName"] = json!(node);
                let ready = json!({"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"});
                v["status"] = json!({"phase": "Running", "conditions": [ready]});
            }
            "failed" => v["status"] = json!({"phase": "Failed"}),
            "terminating" => v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:01:00Z"),
            _ => {}
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn fits(names: &[&str]) -> Vec<(String, Fit)> {
        names.iter().map(|n| (n.to_string(), Fit { should_run: true, should_continue: true })).collect()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut v: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        v.sort();
        v
    }

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn nodes_are_chosen_by_selector_affinity_and_taints() {
        let plain = template(json!({"containers": [{"name": "c"}]}));
        let fit = |t: &PodTemplateSpec, n: Value| node_fit(t, &node(n));
        let both = Fit { should_run: true, should_continue: true };
        assert_eq!(fit(&plain, json!({"metadata": {"name": "n1"}})), both);

        let selecting = template(json!({"containers": [{"name": "c"}], "nodeSelector": {"role": "edge"}}));
        assert_eq!(fit(&selecting, json!({"metadata": {"name": "n1", "labels": {"role": "edge"}}})), both);
        assert_eq!(fit(&selecting, json!({"metadata": {"name": "n1"}})), Fit { should_run: false, should_continue: false });

        let affine = template(json!({
            "containers": [{"name": "c"}],
            "affinity": required(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]})),
        }));
        assert!(fit(&affine, json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}})).should_run);
        assert!(!fit(&affine, json!({"metadata": {"name": "n1", "labels": {"zone": "b"}}})).should_continue);

        // A NoSchedule taint keeps new pods off but lets a running one stay; NoExecute does not.
        let no_schedule =
            json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
        assert_eq!(fit(&plain, no_schedule.clone()), Fit { should_run: false, should_continue: true });
        let no_execute =
            json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}});
        assert_eq!(fit(&plain, no_execute.clone()), Fit { should_run: false, should_continue: false });
        let tolerant = template(json!({"containers": [{"name": "c"}], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(fit(&tolerant, no_schedule), both);
        assert_eq!(fit(&tolerant, no_execute), both);

        // What every daemon pod tolerates: cordoned nodes, pressure, unreachable.
        let cordoned = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        ]}});
        assert_eq!(fit(&plain, cordoned), both);
    }

    #[test]
    fn a_node_that_is_not_ready_keeps_its_daemon_but_gets_no_new_one() {
        let plain = template(json!({"containers": [{"name": "c"}]}));
        let mut v = json!({"metadata": {"name": "n1"}});
        v["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
        let n: Arc<Node> = Arc::new(serde_json::from_value(v).unwrap());
        assert_eq!(node_fit(&plain, &n), Fit { should_run: false, should_continue: true });
    }

    #[test]
    fn daemon_pods_name_their_node_by_affinity_not_by_binding() {
        let d = ds(json!({"template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
            "containers": [{"name": "c"}],
            "hostNetwork": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
            "affinity": required(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]})),
        }}}));
        let p = daemon_pod(&d, "n2", "h1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(p.metadata.name, None);
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("agent"));
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("h1"));
        assert_eq!(labels.get(GENERATION_LABEL).map(String::as_str), Some("3"));
        assert_eq!(crate::util::controller_of(&p.metadata).unwrap().uid, "ds-uid");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name, None);
        assert_eq!(target_node(&p), Some("n2"));
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1, "the template's terms are replaced");
        let tolerations = spec.tolerations.as_ref().unwrap();
        let has = |k: &str, e: &str| tolerations.iter().filter(|t| t.key.as_deref() == Some(k) && t.effect.as_deref() == Some(e)).count();
        assert_eq!(has("node.kubernetes.io/not-ready", "NoExecute"), 1);
        assert!(tolerations.iter().all(|t| t.toleration_seconds.is_none()), "daemons stay on unready nodes for good");
        assert_eq!(has("node.kubernetes.io/unschedulable", "NoSchedule"), 1);
        assert_eq!(has("node.kubernetes.io/network-unavailable", "NoSchedule"), 1, "host network");
        assert_eq!(tolerations.len(), 7);
    }

    #[test]
    fn one_pod_per_fitting_node() {
        let d = ds(json!({}));
        let nodes = fits(&["n1", "n2", "n3"]);
        let plan = daemon_plan(&d, &nodes, &[], "h", now());
        assert_eq!(plan.create_on, vec!["n1", "n2", "n3"]);
        assert!(plan.delete.is_empty());

        // A pending pod (not bound yet, known by its affinity) and a terminating one both
        // count: no second pod, and no replacement until the old one is gone.
        let pods = [pod("a", "n1", "h", "pending", 1), pod("b", "n2", "h", "terminating", 1), pod("c", "n3", "h", "ready", 1)];
        let plan = daemon_plan(&d, &nodes, &pods, "h", now());
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn extra_finished_and_misplaced_pods_go() {
        let d = ds(json!({}));
        let mut nodes = fits(&["n1", "n2", "n3"]);
        nodes[2].1 = Fit { should_run: false, should_continue: false };
        let pods = [
            pod("old", "n1", "h", "ready", 5),
            pod("young", "n1", "h", "ready", 1),
            pod("failed", "n2", "h", "failed", 1),
            pod("misplaced", "n3", "h", "ready", 1),
            pod("elsewhere", "gone", "h", "ready", 1),
        ];
        let plan = daemon_plan(&d, &nodes, &pods, "h", now());
        assert_eq!(names(&plan.delete), vec!["failed", "misplaced", "young"], "the oldest stays; pods on vanished nodes are pod GC's");
        assert!(plan.create_on.is_empty(), "n2's replacement waits for the failed pod to go");

        // A node a running pod may stay on but a new one may not go to.
        nodes[2].1 = Fit { should_run: false, should_continue: true };
        let plan = daemon_plan(&d, &nodes, &pods[..1].iter().chain(&pods[3..4]).cloned().collect::<Vec<_>>(), "h", now());
        assert!(plan.delete.is_empty() && plan.create_on == vec!["n2"], "{plan:?}");
    }

    #[test]
    fn rolling_updates_stay_within_max_unavailable() {
        let d = ds(json!({}));
        let nodes = fits(&["n1", "n2", "n3"]);
        let old = |n: &str| pod(&format!("old-{n}"), n, "h1", "ready", 5);
        let all_old = [old("n1"), old("n2"), old("n3")];
        let plan = daemon_plan(&d, &nodes, &all_old, "h2", now());
        assert_eq!(plan.delete.len(), 1, "maxUnavailable 1: {plan:?}");

        // n1 has a new pod that is not available yet: nothing more goes.
        let pods = [pod("new-n1", "n1", "h2", "pending", 1), old("n2"), old("n3")];
        assert!(daemon_plan(&d, &nodes, &pods, "h2", now()).is_empty());
        // A node still waiting for its new pod counts as unavailable too.
        assert!(daemon_plan(&d, &nodes, &all_old[1..], "h2", now()).create_on == vec!["n1"]);

        // Old pods that are unavailable anyway go at once, whatever the budget.
        let pods = [pod("new-n1", "n1", "h2", "pending", 1), pod("sick", "n2", "h1", "pending", 5), old("n3")];
        assert_eq!(names(&daemon_plan(&d, &nodes, &pods, "h2", now()).delete), vec!["sick"]);

        // A percentage of the desired nodes, rounded up.
        let wide = ds(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}}));
        assert_eq!(max_unavailable(&wide, 3), 2);
        assert_eq!(daemon_plan(&wide, &nodes, &all_old, "h2", now()).delete.len(), 2);
        assert_eq!(max_unavailable(&ds(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}})), 3), 1);

        // OnDelete never replaces.
        let on_delete = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(daemon_plan(&on_delete, &nodes, &all_old, "h2", now()).is_empty());
    }

    #[test]
    fn status_counts_one_pod_per_node() {
        let d = ds(json!({}));
        let mut nodes = fits(&["n1", "n2", "n3", "n4"]);
        nodes[3].1 = Fit { should_run: false, should_continue: true };
        let pods = [
            pod("a", "n1", "h2", "ready", 1),
            pod("b", "n2", "h1", "ready", 1),
            pod("c", "n3", "h2", "pending", 1),
            pod("d", "n4", "h2", "ready", 1),
        ];
        let c = daemon_status(&d, &nodes, &pods, "h2", now());
        assert_eq!(c, Counts { desired: 3, current: 3, misscheduled: 1, ready: 2, available: 2, updated: 2 });
        let c = daemon_status(&d, &nodes, &pods[..1], "h2", now());
        assert_eq!((c.desired, c.current, c.updated), (3, 1, 1));
    }

    #[test]
    fn node_heartbeats_do_not_trigger_but_taints_do() {
        let n = |taint: bool, beat: &str| {
            let ready = json!({"type": "Ready", "status": "True", "lastHeartbeatTime": beat});
            let mut v = json!({"metadata": {"name": "n1"}, "status": {"conditions": [ready]}});
            if taint {
                v["spec"] = json!({"taints": [{"key": "k", "effect": "NoSchedule"}]});
            }
            Arc::new(serde_json::from_value::<Node>(v).unwrap())
        };
        let events = futures::stream::iter([
            n(false, "2024-01-01T00:00:00Z"),
            n(false, "2024-01-01T00:00:10Z"),
            n(true, "2024-01-01T00:00:20Z"),
            n(true, "2024-01-01T00:00:30Z"),
        ]);
        let triggers: Vec<()> = futures::executor::block_on(placement_changes(events).collect());
        assert_eq!(triggers.len(), 2);
    }
}
