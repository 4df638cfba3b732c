//! Small pieces every controller uses: owner references, pod states, label selectors, and the
//! expectations that keep a controller from acting twice on what its cache has not seen yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;

use kube::runtime::Controller;
use kube::runtime::controller::Action;

/// The controlling owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true))
}

/// A controller reference to `owner`, blocking its foreground deletion.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Not finished and not being deleted: what counts toward a controller's replicas.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready for at least `min_ready` (by the Ready condition's transition time), as
/// `availableReplicas` counts.
pub fn is_pod_available(pod: &Pod, min_ready: Duration, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(c) = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")) else {
        return false;
    };
    if c.status != "True" {
        return false;
    }
    if min_ready.is_zero() {
        return true;
    }
    c.last_transition_time.as_ref().and_then(|t| t.0.checked_add(min_ready).ok()).is_some_and(|t| t <= now)
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions). An empty selector
/// matches everything, as in Kubernetes; a missing one matches nothing.
pub fn selector_matches(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// What a controller asked the API for and its cache has not shown yet, per owner uid. While
/// an owner has unmet expectations its controller only reports status; after `ttl` they are
/// dropped (a lost watch event must not wedge the owner).
#[derive(Debug)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expect>>,
    ttl: Duration,
}

#[derive(Debug)]
struct Expect {
    adds: HashSet<String>,
    deletes: HashSet<String>,
    at: Instant,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations { inner: Mutex::new(HashMap::new()), ttl: Duration::from_secs(60) }
    }
}

impl Expectations {
    pub fn expect_add(&self, owner: &str, name: String) {
        let mut m = self.inner.lock();
        let e = m.entry(owner.to_string()).or_insert_with(|| Expect { adds: HashSet::new(), deletes: HashSet::new(), at: Instant::now() });
        e.adds.insert(name);
        e.at = Instant::now();
    }

    pub fn expect_delete(&self, owner: &str, name: String) {
        let mut m = self.inner.lock();
        let e = m.entry(owner.to_string()).or_insert_with(|| Expect { adds: HashSet::new(), deletes: HashSet::new(), at: Instant::now() });
        e.deletes.insert(name);
        e.at = Instant::now();
    }

    /// True when the cache shows everything asked for: every added name `present`, every
    /// deleted one `!present` or terminating (`present` answers for the owner's namespace).
    pub fn satisfied(&self, owner: &str, present: impl Fn(&str) -> bool, terminating: impl Fn(&str) -> bool) -> bool {
        let mut m = self.inner.lock();
        let Some(e) = m.get_mut(owner) else { return true };
        e.adds.retain(|n| !present(n));
        e.deletes.retain(|n| present(n) && !terminating(n));
        let done = (e.adds.is_empty() && e.deletes.is_empty()) || e.at.elapsed() > self.ttl;
        if done {
            m.remove(owner);
        }
        done
    }

    pub fn forget(&self, owner: &str) {
        self.inner.lock().remove(owner);
    }
}

/// The namespace and name of an object, for logs.
pub fn key(meta: &ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// API calls in flight at once when a controller creates or deletes pods.
const IN_FLIGHT: usize = 32;

/// The order in which surplus pods go, as Kubernetes ranks them: unscheduled before
/// scheduled, pending before running, not ready before ready, newer before older.
pub fn deletion_rank(p: &Pod) -> (bool, u8, bool, std::cmp::Reverse<Option<k8s_openapi::jiff::Timestamp>>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    (scheduled, phase, is_pod_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
}

/// The pods `owner` controls: its own that its selector still matches, and orphans it adopts
/// (matched, active, and accepted by `member`); its own that stopped matching are released.
/// Adoption and release carry the pod's uid, so they apply to exactly the pod seen.
pub async fn claim_pods<K: Resource<DynamicType = ()>>(
    owner: &K,
    selector: &LabelSelector,
    in_ns: &[Arc<Pod>],
    api: &Api<Pod>,
    member: impl Fn(&Pod) -> bool,
) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    // apps/v1 validation forbids an empty selector; should one get through, it adopts nothing.
    let empty =
        selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && selector.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    let adopting = !empty && owner.meta().deletion_timestamp.is_none();
    let mut owned = Vec::new();
    for p in in_ns {
        let matches = selector_matches(Some(selector), p.metadata.labels.as_ref());
        match controller_of(&p.metadata) {
            Some(o) if o.uid == uid => {
                if matches {
                    owned.push(p.clone());
                } else if p.metadata.deletion_timestamp.is_none() {
                    let refs: Vec<_> = p.owner_references().iter().filter(|o| o.uid != uid).cloned().collect();
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": p.uid()}});
                    match api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            None if adopting && matches && is_pod_active(p) && member(p) => {
                let mut refs = p.owner_references().to_vec();
                refs.push(controller_ref(owner));
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": p.uid()}});
                match api.patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(adopted) => owned.push(Arc::new(adopted)),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

/// Creates `pods` in doubling batches (1, 2, 4, …), as kube-controller-manager's slow start
/// does, so a template the API rejects costs one call rather than hundreds. Stops at the first
/// batch with an error; returns what was created and that error.
pub async fn create_slow_start(api: &Api<Pod>, pods: Vec<Pod>) -> (Vec<Pod>, Option<kube::Error>) {
    let mut created = Vec::with_capacity(pods.len());
    let mut rest = pods.into_iter();
    let mut batch = 1usize;
    loop {
        let chunk: Vec<Pod> = rest.by_ref().take(batch).collect();
        if chunk.is_empty() {
            return (created, None);
        }
        let pp = PostParams::default();
        let results: Vec<Result<Pod, kube::Error>> = futures::stream::iter(chunk.into_iter().map(|p| {
            let (api, pp) = (api.clone(), pp.clone());
            async move { api.create(&pp, &p).await }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => created.push(p),
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_some() {
            return (created, failed);
        }
        batch = batch.saturating_mul(2);
    }
}

/// Deletes pods by (name, uid). The uid precondition makes sure a pod that has been replaced
/// by a new one of the same name since the cache saw it is left alone.
pub async fn delete_pods(api: &Api<Pod>, victims: Vec<(String, String)>) -> Result<(), kube::Error> {
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(victims.into_iter().map(|(name, uid)| {
        let api = api.clone();
        async move {
            let dp =
                DeleteParams { preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }), ..DeleteParams::default() };
            match api.delete(&name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect()
    .await;
    results.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "canary", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert!(selector_matches(Some(&sel), Some(&l(&[("app", "web"), ("tier", "a")]))));
        assert!(!selector_matches(Some(&sel), Some(&l(&[("app", "web"), ("tier", "c")]))));
        assert!(!selector_matches(Some(&sel), Some(&l(&[("app", "web"), ("tier", "a"), ("canary", "1")]))));
        assert!(!selector_matches(Some(&sel), None));
        assert!(selector_matches(Some(&LabelSelector::default()), None), "empty selects all");
        assert!(!selector_matches(None, Some(&l(&[("app", "web")]))), "missing selects none");
    }

    #[test]
    fn expectations_hold_until_the_cache_shows_them() {
        let e = Expectations::default();
        e.expect_add("rs", "a".into());
        e.expect_delete("rs", "b".into());
        assert!(!e.satisfied("rs", |n| n == "b", |_| false));
        assert!(!e.satisfied("rs", |n| n == "a" || n == "b", |_| false), "b still there");
        assert!(e.satisfied("rs", |n| n == "a" || n == "b", |n| n == "b"), "b terminating counts");
        assert!(e.satisfied("other", |_| false, |_| false));
    }
}

/// What every controller's reconcile returns on failure: an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Runs `controller` with `reconcile` until the future is dropped, as every controller here
/// does: a failed reconcile is logged and retried after `retry`; `name` labels the logs.
pub async fn drive<K, C, F, Fut>(controller: Controller<K>, reconcile: F, ctx: Arc<C>, name: &'static str, retry: Duration)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
    C: Send + Sync + 'static,
{
    let error_policy = move |_obj: Arc<K>, e: &Error, _ctx: Arc<C>| {
        tracing::warn!(error = %e, "{name}: will retry");
        Action::requeue(retry)
    };
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "{name} controller");
            }
        })
        .await;
}
