//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, with the hostname and
//! the subdomain of the governing Service, created in order — each only once those before it
//! are Running and Ready (OrderedReady) — or all at once (Parallel), removed from the highest
//! ordinal down, and rolled to a new template from the highest ordinal down, one pod at a time
//! and not below `rollingUpdate.partition` (RollingUpdate), or only as the user deletes them
//! (OnDelete). Status carries currentRevision and updateRevision as `kubectl rollout status
//! sts` reads them. The decision is the pure [`sts_plan`]; `reconcile` carries it out. Start at
//! [`run`].
//!
//! Revisions are named `<set>-<template hash>` as ControllerRevisions are, but none are stored
//! (the API serves no ControllerRevisions). The current revision's template, which pods below
//! the partition are re-created from, is remembered in memory; after a restart the controller
//! does not know it and re-creates them from the update revision. volumeClaimTemplates are not
//! provisioned (there is no storage here): each claim becomes an emptyDir volume of the same
//! name, so the template's mounts resolve, and the StatefulSet is told so once in the log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::json;

use crate::deployment::template_hash;
use crate::util::{Expectations, controller_ref, is_pod_available, is_pod_ready, key};
use crate::util::{claim_pods, create_slow_start, delete_pods};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The revision (`<set>-<hash>`) a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub expectations: Expectations,
    /// Per StatefulSet uid, the templates of its current and update revisions, by revision.
    templates: Mutex<HashMap<String, BTreeMap<String, PodTemplateSpec>>>,
    /// StatefulSets (by uid) already told that their volumeClaimTemplates are not provisioned.
    warned: Mutex<HashSet<String>>,
}

/// Runs the controller until the returned future is dropped. `pod_events` is a subscription to
/// the shared reflector behind `pods`.
pub async fn run(client: Client, pods: Store<Pod>, pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    // An empty cache would read as "no pods" and have every create answered with a conflict.
    let _ = pods.wait_until_ready().await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
        expectations: Expectations::default(),
        templates: Mutex::new(HashMap::new()),
        warned: Mutex::new(HashSet::new()),
    });
    crate::util::drive(
        Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default()).owns_shared_stream(pod_events),
        reconcile,
        ctx,
        "statefulset",
        Duration::from_secs(1),
    )
    .await;
}

/// The ordinal in a member's name (`web-3` of set `web` is 3); `None` for names that are not
/// exactly `<set>-<n>` (`web-03` and `web-+3` are not members).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n: i32 = pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()?;
    (n >= 0 && format!("{set}-{n}") == pod).then_some(n)
}

/// A pod of the set as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub ordinal: i32,
    pub name: String,
    pub uid: String,
    pub revision: String,
    /// Running with the Ready condition.
    pub ready: bool,
    /// Running and Ready for minReadySeconds.
    pub available: bool,
    pub terminating: bool,
    /// Succeeded or Failed: to be replaced.
    pub finished: bool,
}

impl Member {
    pub fn of(set: &str, pod: &Pod, min_ready: Duration, now: Timestamp) -> Option<Member> {
        let name = pod.metadata.name.clone()?;
        let ordinal = ordinal_of(set, &name)?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let running = phase == "Running";
        Some(Member {
            ordinal,
            name,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            revision: pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).cloned().unwrap_or_default(),
            ready: running && is_pod_ready(pod),
            available: running && is_pod_available(pod, min_ready, now),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            finished: matches!(phase, "Succeeded" | "Failed"),
        })
    }

    /// What the ordered policy waits for before it moves on.
    fn healthy(&self) -> bool {
        self.ready && self.available && !self.terminating
    }
}

/// The parts of the spec the plan follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `spec.ordinals.start`: the first ordinal.
    pub start: i32,
    pub replicas: i32,
    /// OrderedReady (true) or Parallel.
    pub ordered: bool,
    /// RollingUpdate (true) or OnDelete.
    pub rolling: bool,
    /// Ordinals below `start + partition` keep the current revision.
    pub partition: i32,
}

impl Policy {
    pub fn of(sts: &StatefulSet) -> Policy {
        let spec = sts.spec.as_ref();
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        Policy {
            start: spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1).max(0),
            ordered: spec.and_then(|s| s.pod_management_policy.as_deref()).unwrap_or("OrderedReady") != "Parallel",
            rolling,
            partition: if rolling {
                strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0).max(0)
            } else {
                0
            },
        }
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the member with this ordinal, from the current revision (below the partition) or
    /// from the update revision.
    Create { ordinal: i32, current: bool },
    /// Delete this pod (by name and uid).
    Delete { name: String, uid: String },
}

/// The StatefulSet's next steps, in kube-controller-manager's order: first every ordinal in
/// range gets its pod (finished pods are deleted to be re-created); then members beyond the
/// range go, highest first; then one pod of the old revision is replaced, highest first and not
/// below the partition. Under OrderedReady the plan stops at the first thing it must wait for
/// — a pod that is missing, terminating or not yet healthy — so at most one step comes out;
/// under Parallel creations and removals all come at once, though the rolling update still
/// replaces one pod at a time.
pub fn sts_plan(policy: &Policy, members: &[Member], update_revision: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let end = policy.start.saturating_add(policy.replicas);
    let slot = |ordinal: i32| members.iter().find(|m| m.ordinal == ordinal);
    let delete = |m: &Member| Step::Delete { name: m.name.clone(), uid: m.uid.clone() };

    for ordinal in policy.start..end {
        match slot(ordinal) {
            None => {
                steps.push(Step::Create { ordinal, current: policy.rolling && ordinal < policy.start.saturating_add(policy.partition) });
                if policy.ordered {
                    return steps;
                }
            }
            Some(m) if m.finished => {
                if !m.terminating {
                    steps.push(delete(m));
                }
                if policy.ordered {
                    return steps;
                }
            }
            Some(m) if !m.healthy() && policy.ordered => return steps,
            Some(_) => {}
        }
    }

    // Members beyond the range, highest first. The ordered policy gets here only with every
    // member in range healthy, and an unhealthy member up here blocks unless it is the lowest
    // unhealthy one (then nothing below it waits on it).
    let first_unhealthy = members.iter().filter(|m| !m.healthy()).map(|m| m.ordinal).min();
    let mut condemned: Vec<&Member> = members.iter().filter(|m| m.ordinal < policy.start || m.ordinal >= end).collect();
    condemned.sort_by_key(|m| std::cmp::Reverse(m.ordinal));
    for m in condemned {
        if m.terminating {
            if policy.ordered {
                return steps;
            }
            continue;
        }
        if policy.ordered && !m.healthy() && Some(m.ordinal) != first_unhealthy {
            return steps;
        }
        steps.push(delete(m));
        if policy.ordered {
            return steps;
        }
    }

    if !policy.rolling {
        return steps;
    }
    let lowest = policy.start.saturating_add(policy.partition);
    for ordinal in (lowest..end).rev() {
        // Missing (being created), finished (being replaced) or terminating: wait for it.
        let Some(m) = slot(ordinal).filter(|m| !m.finished) else { return steps };
        if m.revision != update_revision && !m.terminating {
            steps.push(delete(m));
            return steps;
        }
        if !m.healthy() {
            return steps;
        }
    }
    steps
}

/// The counts `status` reports, and the current revision once a rolling update has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
    pub current_revision: String,
}

/// As kube-controller-manager counts: every pod of the set is a replica (terminating ones
/// included), current and updated count the pods not terminating by revision; a rolling
/// update is complete when every pod is updated and ready, and then the update revision
/// becomes the current one.
pub fn sts_status(members: &[Member], current_revision: &str, update_revision: &str, rolling: bool) -> Counts {
    let mut c = Counts {
        replicas: count(members, |_| true),
        ready: count(members, |m| m.ready),
        available: count(members, |m| m.available),
        current: count(members, |m| !m.terminating && m.revision == current_revision),
        updated: count(members, |m| !m.terminating && m.revision == update_revision),
        current_revision: current_revision.to_string(),
    };
    if rolling && c.updated == c.replicas && c.ready == c.replicas {
        c.current = c.updated;
        c.current_revision = update_revision.to_string();
    }
    c
}

fn count(members: &[Member], f: impl Fn(&Member) -> bool) -> i32 {
    i32::try_from(members.iter().filter(|m| f(m)).count()).unwrap_or(i32::MAX)
}

/// The member with `ordinal`, made from `template` of `revision`: its name, hostname and
/// subdomain, the template's labels plus its identity and revision, and emptyDir volumes for
/// the claims this cluster does not provision.
pub fn sts_pod(sts: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = format!("{}-{ordinal}", sts.name_any());
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(service) = sts.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    for claim in sts.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
        let Some(claim) = claim.metadata.name.clone() else { continue };
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        if !volumes.iter().any(|v| v.name == claim) {
            volumes.push(Volume { name: claim, empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref(sts)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Keeps the templates of the current and update revisions; returns the current one's, if known.
fn remember(ctx: &Ctx, uid: &str, current: &str, update: &str, template: &PodTemplateSpec) -> Option<PodTemplateSpec> {
    let mut all = ctx.templates.lock();
    let revisions = all.entry(uid.to_string()).or_default();
    revisions.insert(update.to_string(), template.clone());
    revisions.retain(|r, _| r == current || r == update);
    revisions.get(current).cloned()
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = sts.namespace().unwrap_or_default();
    let uid = sts.uid().unwrap_or_default();
    let set = sts.name_any();
    if sts.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        ctx.templates.lock().remove(&uid);
        return Ok(Action::await_change());
    }
    let Some(spec) = sts.spec.as_ref() else { return Ok(Action::await_change()) };
    if spec.volume_claim_templates.as_ref().is_some_and(|v| !v.is_empty()) && ctx.warned.lock().insert(uid.clone()) {
        tracing::info!(
            statefulset = %key(&sts.metadata),
            "volumeClaimTemplates are not provisioned here (no storage): each claim is an emptyDir volume"
        );
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let owned = claim_pods(sts.as_ref(), &spec.selector, &in_ns, &pods_api, |p| {
        p.metadata.name.as_deref().and_then(|n| ordinal_of(&set, n)).is_some()
    })
    .await?;
    let now = Timestamp::now();
    let min_ready = Duration::from_secs(u64::try_from(spec.min_ready_seconds.unwrap_or(0).max(0)).unwrap_or(0));
    let members: Vec<Member> = owned.iter().filter_map(|p| Member::of(&set, p, min_ready, now)).collect();

    let collision = sts.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let update_revision = format!("{set}-{}", template_hash(&spec.template, collision));
    let current_revision =
        sts.status.as_ref().and_then(|s| s.current_revision.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| update_revision.clone());
    let current_template = remember(&ctx, &uid, &current_revision, &update_revision, &spec.template);
    let policy = Policy::of(&sts);

    let present = |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name));
    let terminating =
        |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name) && p.metadata.deletion_timestamp.is_some());
    let settled = ctx.expectations.satisfied(&uid, present, terminating);
    let steps = if settled { sts_plan(&policy, &members, &update_revision) } else { Vec::new() };

    let mut victims = Vec::new();
    let mut wanted = Vec::new();
    for step in &steps {
        match step {
            Step::Delete { name, uid: pod_uid } => victims.push((name.clone(), pod_uid.clone())),
            Step::Create { ordinal, current } => {
                let pod = match (&current_template, *current && current_revision != update_revision) {
                    (Some(t), true) => sts_pod(&sts, t, *ordinal, &current_revision),
                    (None, true) => {
                        tracing::info!(statefulset = %key(&sts.metadata), ordinal = *ordinal, revision = %current_revision,
                            "the current revision's template is not known (not kept across restarts): creating from the update revision");
                        sts_pod(&sts, &spec.template, *ordinal, &update_revision)
                    }
                    (_, false) => sts_pod(&sts, &spec.template, *ordinal, &update_revision),
                };
                wanted.push(pod);
            }
        }
    }
    if !victims.is_empty() {
        for (name, _) in &victims {
            ctx.expectations.expect_delete(&uid, name.clone());
        }
        tracing::debug!(statefulset = %key(&sts.metadata), pods = ?victims.iter().map(|v| &v.0).collect::<Vec<_>>(), "deleting");
        delete_pods(&pods_api, victims).await?;
    }
    let mut create_failed = false;
    if !wanted.is_empty() {
        let (created, failed) = create_slow_start(&pods_api, wanted).await;
        for p in &created {
            ctx.expectations.expect_add(&uid, p.name_any());
        }
        if let Some(e) = failed {
            // A conflict is a pod of that name the cache has not shown yet, or one the set does
            // not own; either way the next pass sees it.
            tracing::warn!(statefulset = %key(&sts.metadata), error = %e, "creating pods failed; will retry");
            create_failed = true;
        }
    }

    // Status, from the cache as this pass found it; the next pass sees what this one did.
    let c = sts_status(&members, &current_revision, &update_revision, policy.rolling);
    let status = json!({
        "observedGeneration": sts.metadata.generation,
        "replicas": c.replicas,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "currentReplicas": c.current,
        "updatedReplicas": c.updated,
        "currentRevision": c.current_revision,
        "updateRevision": update_revision,
    });
    let old = sts.status.as_ref().map(|s| {
        json!({
            "observedGeneration": s.observed_generation,
            "replicas": s.replicas,
            "readyReplicas": s.ready_replicas.unwrap_or(0),
            "availableReplicas": s.available_replicas.unwrap_or(0),
            "currentReplicas": s.current_replicas.unwrap_or(0),
            "updatedReplicas": s.updated_replicas.unwrap_or(0),
            "currentRevision": s.current_revision.clone().unwrap_or_default(),
            "updateRevision": s.update_revision.clone().unwrap_or_default(),
        })
    });
    if old.as_ref() != Some(&status) {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&set, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
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
    if !settled || !steps.is_empty() || members.iter().any(|m| m.terminating) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if c.ready > c.available && !min_ready.is_zero() {
        return Ok(Action::requeue(min_ready));
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(ordinal: i32, revision: &str, state: &str) -> Member {
        let healthy = state == "healthy";
        Member {
            ordinal,
            name: format!("web-{ordinal}"),
            uid: format!("uid-{ordinal}"),
            revision: revision.into(),
            ready: healthy || state == "terminating",
            available: healthy || state == "terminating",
            terminating: state == "terminating",
            finished: state == "failed",
        }
    }

    fn policy(replicas: i32) -> Policy {
        Policy { start: 0, replicas, ordered: true, rolling: true, partition: 0 }
    }

    fn create(ordinal: i32) -> Step {
        Step::Create { ordinal, current: false }
    }

    fn delete(ordinal: i32) -> Step {
        Step::Delete { name: format!("web-{ordinal}"), uid: format!("uid-{ordinal}") }
    }

    #[test]
    fn ordinals_are_read_from_exact_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-03"), None);
        assert_eq!(ordinal_of("web", "web-+3"), None);
        assert_eq!(ordinal_of("web", "web--1"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-a-1"), None);
        assert_eq!(ordinal_of("web-a", "web-a-1"), Some(1));
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let p = policy(3);
        assert_eq!(sts_plan(&p, &[], "r1"), vec![create(0)]);
        assert_eq!(sts_plan(&p, &[member(0, "r1", "pending")], "r1"), vec![], "web-0 is not ready yet");
        assert_eq!(sts_plan(&p, &[member(0, "r1", "healthy")], "r1"), vec![create(1)]);
        let all = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r1", "healthy")];
        assert_eq!(sts_plan(&p, &all, "r1"), vec![]);
        // A gap is filled before anything above it moves.
        assert_eq!(sts_plan(&p, &[member(0, "r1", "healthy"), member(2, "r1", "healthy")], "r1"), vec![create(1)]);
    }

    #[test]
    fn parallel_creates_and_removes_at_once() {
        let p = Policy { ordered: false, ..policy(3) };
        assert_eq!(sts_plan(&p, &[member(1, "r1", "pending")], "r1"), vec![create(0), create(2)]);
        let p = Policy { ordered: false, ..policy(1) };
        let all = [member(0, "r1", "pending"), member(1, "r1", "healthy"), member(2, "r1", "pending")];
        assert_eq!(sts_plan(&p, &all, "r1"), vec![delete(2), delete(1)]);
    }

    #[test]
    fn ordered_scale_down_goes_from_the_top_and_waits() {
        let p = policy(1);
        let all = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r1", "healthy")];
        assert_eq!(sts_plan(&p, &all, "r1"), vec![delete(2)]);
        let going = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r1", "terminating")];
        assert_eq!(sts_plan(&p, &going, "r1"), vec![], "web-1 waits for web-2 to be gone");
        assert_eq!(sts_plan(&p, &going[..2], "r1"), vec![delete(1)]);
        // An unhealthy member blocks removal, unless it is the lowest unhealthy one itself.
        let sick = [member(0, "r1", "healthy"), member(1, "r1", "pending"), member(2, "r1", "pending")];
        assert_eq!(sts_plan(&p, &sick, "r1"), vec![]);
        let sick_top = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r1", "pending")];
        assert_eq!(sts_plan(&p, &sick_top, "r1"), vec![delete(2)]);
        // Members in range come first: nothing goes while web-0 is not ready.
        let first_sick = [member(0, "r1", "pending"), member(1, "r1", "healthy"), member(2, "r1", "healthy")];
        assert_eq!(sts_plan(&p, &first_sick, "r1"), vec![]);
    }

    #[test]
    fn rolling_update_replaces_from_the_top_one_at_a_time() {
        let p = policy(3);
        let old = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r1", "healthy")];
        assert_eq!(sts_plan(&p, &old, "r2"), vec![delete(2)]);
        // web-2 is gone: it is re-created (from the update revision) before anything else.
        assert_eq!(sts_plan(&p, &old[..2], "r2"), vec![create(2)]);
        // web-2 is new but not ready: wait.
        let next = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r2", "pending")];
        assert_eq!(sts_plan(&p, &next, "r2"), vec![]);
        let next = [member(0, "r1", "healthy"), member(1, "r1", "healthy"), member(2, "r2", "healthy")];
        assert_eq!(sts_plan(&p, &next, "r2"), vec![delete(1)]);
        // A partition keeps the ordinals below it on the old revision, and re-creates them so.
        let partitioned = Policy { partition: 2, ..policy(3) };
        assert_eq!(sts_plan(&partitioned, &next, "r2"), vec![]);
        assert_eq!(sts_plan(&partitioned, &next[1..], "r2"), vec![Step::Create { ordinal: 0, current: true }]);
        // OnDelete never replaces.
        let on_delete = Policy { rolling: false, ..policy(3) };
        assert_eq!(sts_plan(&on_delete, &old, "r2"), vec![]);
        // Parallel still replaces one pod at a time.
        let parallel = Policy { ordered: false, ..policy(3) };
        assert_eq!(sts_plan(&parallel, &old, "r2"), vec![delete(2)]);
    }

    #[test]
    fn finished_pods_are_replaced() {
        let p = policy(2);
        let failed = [member(0, "r1", "failed"), member(1, "r1", "healthy")];
        assert_eq!(sts_plan(&p, &failed, "r1"), vec![delete(0)]);
        let parallel = Policy { ordered: false, ..p };
        assert_eq!(sts_plan(&parallel, &failed, "r1"), vec![delete(0)], "not deleted twice by the rolling step");
    }

    #[test]
    fn the_revision_moves_on_when_every_pod_is_updated_and_ready() {
        let mixed = [member(0, "r1", "healthy"), member(1, "r2", "healthy")];
        let c = sts_status(&mixed, "r1", "r2", true);
        assert_eq!((c.replicas, c.ready, c.current, c.updated, c.current_revision.as_str()), (2, 2, 1, 1, "r1"));
        let done = [member(0, "r2", "healthy"), member(1, "r2", "healthy")];
        let c = sts_status(&done, "r1", "r2", true);
        assert_eq!((c.current, c.updated, c.current_revision.as_str()), (2, 2, "r2"));
        assert_eq!(sts_status(&done, "r1", "r2", false).current_revision, "r1", "OnDelete leaves it");
        let going = [member(0, "r2", "healthy"), member(1, "r2", "terminating")];
        let c = sts_status(&going, "r2", "r2", true);
        assert_eq!((c.replicas, c.ready, c.updated), (2, 2, 1));
    }

    #[test]
    fn members_carry_their_identity() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            },
        }))
        .unwrap();
        let template = sts.spec.as_ref().unwrap().template.clone();
        let p = sts_pod(&sts, &template, 2, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get(POD_NAME_LABEL).map(String::as_str), Some("web-2"));
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("2"));
        assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some("web-abc"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("nginx")));
        let volumes = spec.volumes.as_ref().unwrap();
        assert!(volumes.len() == 1 && volumes[0].name == "data" && volumes[0].empty_dir.is_some());
        assert_eq!(crate::util::controller_of(&p.metadata).unwrap().uid, "sts-uid");

        let policy = Policy::of(&sts);
        assert_eq!(policy, Policy { start: 0, replicas: 1, ordered: true, rolling: true, partition: 0 });
    }
}
