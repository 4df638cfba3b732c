//! Small pieces every controller uses: owner references, pod states, label selectors, and the
//! expectations that keep a controller from acting twice on what its cache has not seen yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use parking_lot::Mutex;

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
