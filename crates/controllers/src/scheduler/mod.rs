//! The scheduler: binds pending pods (schedulerName `default-scheduler`) to nodes through the
//! binding subresource. Each round takes every pending pod, builds the nodes' state from the
//! caches (plus the pods it has bound whose binding the cache has not shown yet — "assumed",
//! as kube-scheduler calls them), and asks the pure decision core ([`core::schedule`]) for a
//! node. Bindings go out concurrently; a pod no node fits gets a FailedScheduling event with
//! the reasons summed up as kube-scheduler words them, and a PodScheduled=False condition.

pub mod core;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource as _, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::json;

pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once.
const IN_FLIGHT: usize = 64;

/// Counters for the load tool and logs.
#[derive(Debug, Default)]
pub struct Stats {
    pub bound: std::sync::atomic::AtomicU64,
    pub unschedulable: std::sync::atomic::AtomicU64,
}

struct State {
    /// Pod uid → node, for bindings sent and not yet seen in the cache.
    assumed: HashMap<String, String>,
    /// Pod uid → the last FailedScheduling message sent for it.
    reported: HashMap<String, String>,
}

fn is_pending_for_us(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty)
        && spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && crate::util::is_pod_active(p)
}

fn bound_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Schedules until the returned future is dropped. `changes` fires on every pod or node
/// change the caches see.
pub async fn run(client: Client, pods: Store<Pod>, nodes: Store<Node>, changes: Arc<tokio::sync::Notify>, stats: Arc<Stats>) {
    let recorder = Recorder::new(client.clone(), Reporter { controller: SCHEDULER_NAME.into(), instance: None });
    let state = Arc::new(Mutex::new(State { assumed: HashMap::new(), reported: HashMap::new() }));
    let _ = pods.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    loop {
        round(&client, &recorder, &pods, &nodes, &state, &stats).await;
        // Wait for something to change (or retry the unschedulable once a second), then let a
        // burst of changes gather before the next round.
        let _ = tokio::time::timeout(Duration::from_secs(1), changes.notified()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn round(
    client: &Client,
    recorder: &Recorder,
    pods: &Store<Pod>,
    nodes: &Store<Node>,
    state: &Arc<Mutex<State>>,
    stats: &Arc<Stats>,
) {
    let all_pods = pods.state();
    let mut pending: Vec<Arc<Pod>> = Vec::new();
    let mut by_node: BTreeMap<String, core::NodeState> =
        nodes.state().into_iter().map(|n| (n.name_any(), core::NodeState::new(n))).collect();
    {
        let mut st = state.lock();
        // A binding the cache now shows is no longer assumed.
        for p in &all_pods {
            if bound_node(p).is_some()
                && let Some(uid) = p.metadata.uid.as_deref()
            {
                st.assumed.remove(uid);
            }
        }
        for p in &all_pods {
            if let Some(node) = bound_node(p) {
                if crate::util::is_pod_active(p)
                    && let Some(ns) = by_node.get_mut(node)
                {
                    ns.add_pod(p);
                }
            } else if is_pending_for_us(p) {
                match p.metadata.uid.as_deref().and_then(|u| st.assumed.get(u)) {
                    Some(node) => {
                        if let Some(ns) = by_node.get_mut(node) {
                            ns.add_pod(p);
                        }
                    }
                    None => pending.push(p.clone()),
                }
            }
        }
    }
    if pending.is_empty() {
        return;
    }
    // Oldest first, as the scheduling queue orders pods of equal priority.
    pending.sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any()));
    let mut states: Vec<core::NodeState> = by_node.into_values().collect();
    let mut binds = Vec::new();
    let mut failures = Vec::new();
    for p in pending {
        match core::schedule(&p, &states) {
            Ok(i) => {
                states[i].add_pod(&p);
                let node = states[i].name().to_string();
                if let Some(uid) = p.metadata.uid.clone() {
                    state.lock().assumed.insert(uid, node.clone());
                }
                binds.push((p, node));
            }
            Err(u) => failures.push((p, u)),
        }
    }
    let bound = futures::stream::iter(binds.into_iter().map(|(p, node)| bind(client, recorder, state, p, node)))
        .buffer_unordered(IN_FLIGHT)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    stats.bound.fetch_add(bound as u64, std::sync::atomic::Ordering::Relaxed);
    for (p, u) in failures {
        stats.unschedulable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let fresh = state.lock().reported.insert(uid, u.message.clone()).as_deref() != Some(u.message.as_str());
        if fresh {
            report_unschedulable(client, recorder, &p, &u.message).await;
        }
    }
}

async fn bind(client: &Client, recorder: &Recorder, state: &Arc<Mutex<State>>, p: Arc<Pod>, node: String) -> bool {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": p.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
        Ok(_) => {
            let ev = Event {
                type_: EventType::Normal,
                reason: "Scheduled".into(),
                note: Some(format!("Successfully assigned {ns}/{name} to {node}")),
                action: "Binding".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &p.object_ref(&())).await {
                tracing::debug!(error = %e, "recording a Scheduled event");
            }
            if let Some(uid) = p.metadata.uid.as_deref() {
                state.lock().reported.remove(uid);
            }
            true
        }
        Err(e) => {
            if let Some(uid) = p.metadata.uid.as_deref() {
                state.lock().assumed.remove(uid);
            }
            // A pod deleted or bound meanwhile is not an error worth a warning.
            match e {
                kube::Error::Api(ref s) if s.code == 404 || s.code == 409 => tracing::debug!(pod = %name, error = %e, "binding"),
                _ => tracing::warn!(pod = %format!("{ns}/{name}"), %node, error = %e, "binding failed; will retry"),
            }
            false
        }
    }
}

async fn report_unschedulable(client: &Client, recorder: &Recorder, p: &Pod, message: &str) {
    let reference: ObjectReference = p.object_ref(&());
    let ev = Event {
        type_: EventType::Warning,
        reason: "FailedScheduling".into(),
        note: Some(message.into()),
        action: "Scheduling".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference).await {
        tracing::debug!(error = %e, "recording a FailedScheduling event");
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastTransitionTime": now,
    }]}});
    if let Err(e) = api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await {
        tracing::debug!(error = %e, "marking a pod unschedulable");
    }
}
