//! Node lifecycle: the Ready condition follows the node's heartbeats (its Lease in
//! kube-node-lease and its own status updates); a node silent for the grace period goes
//! Unknown and gets `node.kubernetes.io/unreachable` (NoSchedule and NoExecute), a node
//! reporting NotReady gets `node.kubernetes.io/not-ready`. Pods on a node with a NoExecute
//! taint they do not tolerate are evicted — at once, or after their `tolerationSeconds`; for
//! the two taints above a pod without a toleration gets the default one (300 s, as
//! kube-apiserver's DefaultTolerationSeconds admission gives). `k3s-daas.io/stake-revoked`
//! (set when the stake behind a node is withdrawn or slashed) evicts at once. Pods bound to
//! nodes that no longer exist, and terminating pods past their grace on nodes that are not
//! Ready, are removed (pod garbage collection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const STAKE_REVOKED: &str = "k3s-daas.io/stake-revoked";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Silence after which a node is Unknown (`--node-monitor-grace-period`, 40 s).
    pub grace: Duration,
    /// How often nodes are checked (5 s, as kube-controller-manager's node monitor period).
    pub period: Duration,
    /// tolerationSeconds for not-ready/unreachable when a pod has no toleration of its own.
    pub default_toleration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { grace: Duration::from_secs(40), period: Duration::from_secs(5), default_toleration: Duration::from_secs(300) }
    }
}

/// The node's last sign of life: its Lease's renewTime or its Ready condition's heartbeat.
fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let from_lease = lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
    let from_status = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
    from_lease.into_iter().chain(from_status).max()
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// When the pod must leave a node with these taints: None = it may stay; Some(t) = from t on.
pub fn eviction_time(pod: &Pod, taints: &[Taint], default_toleration: Duration, now: Timestamp) -> Option<Timestamp> {
    let tolerations: &[Toleration] = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let mut when: Option<Timestamp> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = t.time_added.as_ref().map(|a| a.0).unwrap_or(now);
        let tol = tolerations.iter().find(|tol| tolerates(tol, t));
        let seconds = match tol {
            Some(tol) => match tol.toleration_seconds {
                None => continue,
                Some(s) => Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0)),
            },
            None if t.key == UNREACHABLE || t.key == NOT_READY => default_toleration,
            None => Duration::ZERO,
        };
        let at = added.checked_add(seconds).unwrap_or(added);
        when = Some(when.map_or(at, |w| w.min(at)));
    }
    when
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match tol.key.as_deref() {
        None | Some("") => tol.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match tol.operator.as_deref() {
        Some("Exists") => true,
        _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// The taints a node should carry for its Ready status; others are kept.
pub fn wanted_taints(current: &[Taint], ready: &str, now: Timestamp) -> Vec<Taint> {
    let mut out: Vec<Taint> = current.iter().filter(|t| t.key != UNREACHABLE && t.key != NOT_READY).cloned().collect();
    let key = match ready {
        "True" => None,
        "Unknown" => Some(UNREACHABLE),
        _ => Some(NOT_READY),
    };
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current.iter().find(|t| t.key == key && t.effect == effect).cloned();
            out.push(kept.unwrap_or_else(|| Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == "NoExecute").then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            }));
        }
    }
    out
}

pub async fn run(client: Client, nodes: Store<Node>, leases: Store<Lease>, pods: Store<Pod>, settings: Settings) {
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    // Force-deletions already sent, so a slow cache does not repeat them every pass.
    let mut evicted: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        let now = Timestamp::now();
        evicted.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        let lease_of: HashMap<String, Arc<Lease>> = leases
            .state()
            .into_iter()
            .filter(|l| l.metadata.namespace.as_deref() == Some("kube-node-lease"))
            .map(|l| (l.name_any(), l))
            .collect();
        let node_api: Api<Node> = Api::all(client.clone());
        let mut taints_of: HashMap<String, (Vec<Taint>, String)> = HashMap::new();
        for node in nodes.state() {
            let name = node.name_any();
            let mut ready = ready_condition(&node).map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into());
            let silent = last_heartbeat(&node, lease_of.get(&name).map(Arc::as_ref))
                .is_none_or(|t| t.checked_add(settings.grace).is_ok_and(|until| until < now));
            if silent && ready != "Unknown" {
                if let Err(e) = mark_unknown(&node_api, &node, now).await {
                    tracing::warn!(node = %name, error = %e, "marking a silent node Unknown");
                    continue;
                }
                tracing::warn!(node = %name, grace = ?settings.grace, "node stopped posting status: Ready is Unknown");
                ready = "Unknown".into();
            }
            let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            let wanted = wanted_taints(&current, &ready, now);
            if wanted != current {
                let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": wanted}});
                if let Err(e) = node_api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::debug!(node = %name, error = %e, "updating taints (retried next pass)");
                }
            }
            taints_of.insert(name, (wanted, ready));
        }
        for pod in pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { continue };
            let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            if evicted.contains_key(&key) {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let Some((taints, ready)) = taints_of.get(&node) else {
                // Bound to a node that does not exist: nothing will ever run or finish it.
                if nodes.state().iter().all(|n| n.name_any() != node) {
                    tracing::info!(pod = %key, %node, "deleting a pod bound to a node that does not exist");
                    let _ = api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await;
                    evicted.insert(key, std::time::Instant::now());
                }
                continue;
            };
            if let Some(deleting) = pod.metadata.deletion_timestamp.as_ref() {
                // Terminating on a node that cannot finish it: remove it once its grace is over.
                if ready != "True" && deleting.0 <= now {
                    let _ = api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await;
                    evicted.insert(key, std::time::Instant::now());
                }
                continue;
            }
            if let Some(at) = eviction_time(&pod, taints, settings.default_toleration, now)
                && at <= now
            {
                tracing::warn!(pod = %key, %node, "evicting: the node has a NoExecute taint the pod does not tolerate (any longer)");
                match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {
                        evicted.insert(key, std::time::Instant::now());
                    }
                    Err(e) => tracing::debug!(error = %e, "evicting"),
                }
            }
        }
        tokio::time::sleep(settings.period).await;
    }
}

async fn mark_unknown(api: &Api<Node>, node: &Node, now: Timestamp) -> Result<(), kube::Error> {
    let conditions: Vec<serde_json::Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or_default();
                    v["status"] = json!("Unknown");
                    v["reason"] = json!("NodeStatusUnknown");
                    v["message"] = json!("Kubelet stopped posting node status.");
                    v["lastTransitionTime"] = json!(now.to_string());
                    v
                })
                .collect()
        })
        .unwrap_or_else(|| {
            vec![json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status.", "lastTransitionTime": now.to_string()})]
        });
    let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "status": {"conditions": conditions}});
    api.patch_status(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(added)),
        }
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
    }

    #[test]
    fn eviction_follows_tolerations_and_the_default() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let d = Duration::from_secs(300);
        let unreachable = [taint(UNREACHABLE, "NoExecute", t0)];
        // No toleration: the default 300 s.
        assert_eq!(eviction_time(&pod(json!([])), &unreachable, d, t0), Some(t0.checked_add(d).unwrap()));
        // Its own tolerationSeconds.
        let own = pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]));
        assert_eq!(eviction_time(&own, &unreachable, d, t0), Some(t0.checked_add(Duration::from_secs(5)).unwrap()));
        // Tolerated forever.
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &unreachable, d, t0), None);
        // A revoked stake: at once, unless tolerated.
        let revoked = [taint(STAKE_REVOKED, "NoExecute", t0)];
        assert_eq!(eviction_time(&pod(json!([])), &revoked, d, t0), Some(t0));
        // NoSchedule taints never evict.
        assert_eq!(eviction_time(&pod(json!([])), &[taint("x", "NoSchedule", t0)], d, t0), None);
    }

    #[test]
    fn taints_follow_readiness() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let other = taint("dedicated", "NoSchedule", t0);
        let unknown = wanted_taints(std::slice::from_ref(&other), "Unknown", t0);
        assert_eq!(
            unknown.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect::<Vec<_>>(),
            [("dedicated", "NoSchedule"), (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        );
        // Stable: a second pass keeps the time the taint was added.
        let later: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(wanted_taints(&unknown, "Unknown", later), unknown);
        assert_eq!(wanted_taints(&unknown, "True", later), vec![other.clone()]);
        assert!(wanted_taints(&[other], "False", t0).iter().any(|t| t.key == NOT_READY && t.effect == "NoExecute"));
    }
}
