//! The Deployment controller: one ReplicaSet per pod template (named and labelled by its
//! `pod-template-hash`), rolled by the strategy — RollingUpdate within maxSurge and
//! maxUnavailable, or Recreate — with revisions in `deployment.kubernetes.io/revision`
//! (what `kubectl rollout history|undo` read), `revisionHistoryLimit` old ReplicaSets kept,
//! pause and resume, and the status and conditions (Available, Progressing) that `kubectl
//! rollout status` follows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::{Value, json};

use crate::util::{controller_of, controller_ref};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub replicasets: Store<ReplicaSet>,
}

pub async fn run(client: Client, replicasets: Store<ReplicaSet>, rs_events: impl futures::Stream<Item = Arc<ReplicaSet>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone(), replicasets });
    crate::util::drive(
        Controller::new(Api::<Deployment>::all(client), watcher::Config::default()).owns_shared_stream(rs_events),
        reconcile,
        ctx,
        "deployment",
        Duration::from_secs(1),
    )
    .await;
}

/// FNV-1a over the template's JSON, spelled with kube's safe alphabet (no vowels, no
/// look-alikes), so names stay pronounceable-free and stable.
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes.iter().chain(collision_count.to_le_bytes().iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|d| ALPHABET[usize::from(d - b'0') % ALPHABET.len()] as char).collect()
}

/// An int-or-percent of `total`: percentages round up for surge, down for unavailability.
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = v.cloned().unwrap_or_else(|| IntOrString::String(default.into()));
    match v {
        IntOrString::Int(i) => i.max(0),
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = i64::from(total) * pct;
            let r = if round_up { (x + 99) / 100 } else { x / 100 };
            i32::try_from(r.max(0)).unwrap_or(i32::MAX)
        }
    }
}

/// maxSurge and maxUnavailable for `replicas`; both zero is not allowed, so unavailability
/// becomes one, as Kubernetes resolves it.
pub fn surge_and_unavailable(d: &Deployment, replicas: i32) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let mut unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), replicas, false, "25%").min(replicas);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// The template without the hash label, as JSON, for comparing a ReplicaSet with its
/// Deployment (what `kubectl rollout undo` writes back is the ReplicaSet's template).
fn template_sans_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut t = t.cloned().unwrap_or_default();
    if let Some(m) = t.metadata.as_mut()
        && let Some(l) = m.labels.as_mut()
    {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            m.labels = None;
        }
    }
    serde_json::to_value(t).unwrap_or(Value::Null)
}

async fn scale(api: &Api<ReplicaSet>, rs: &ReplicaSet, replicas: i32, d: &Deployment, max_surge: i32) -> Result<(), kube::Error> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if spec_replicas(rs) == replicas
        && rs.annotations().get(DESIRED).map(String::as_str) == Some(want.to_string().as_str())
        && rs.annotations().get(MAX_REPLICAS).map(String::as_str) == Some((want + max_surge).to_string().as_str())
    {
        return Ok(());
    }
    let patch = json!({
        "metadata": {"annotations": {DESIRED: want.to_string(), MAX_REPLICAS: (want + max_surge).to_string()}},
        "spec": {"replicas": replicas},
    });
    api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned: Vec<Arc<ReplicaSet>> = ctx.replicasets.state_filter(|rs| {
        rs.metadata.namespace.as_deref() == Some(ns.as_str()) && controller_of(&rs.metadata).is_some_and(|o| o.uid == uid)
    });
    owned.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));

    let collision = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let hash = template_hash(&spec.template, collision);
    let wanted = template_sans_hash(Some(&spec.template));
    let mut new_rs = owned
        .iter()
        .find(|rs| rs.labels().get(HASH_LABEL) == Some(&hash))
        .or_else(|| owned.iter().find(|rs| template_sans_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted))
        .cloned();
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let (max_surge, max_unavailable) = surge_and_unavailable(&d, replicas);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let paused = spec.paused.unwrap_or(false);
    let mut created_new = false;

    if !paused {
        match &new_rs {
            // The template's ReplicaSet is the newest revision (a rollback makes an old one new).
            Some(rs) if revision(rs) < max_revision || revision(rs) == 0 => {
                let patch = json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}});
                let updated = rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                new_rs = Some(Arc::new(updated));
            }
            Some(_) => {}
            None => {
                let old_total: i32 = owned.iter().map(|rs| spec_replicas(rs)).sum();
                let start = if recreate || owned.is_empty() {
                    if recreate && old_total > 0 { 0 } else { replicas }
                } else {
                    (replicas + max_surge - old_total).clamp(0, replicas)
                };
                let rs = new_replica_set(&d, &hash, start, max_revision + 1, max_surge);
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(created) => {
                        tracing::info!(deployment = %crate::util::key(&d.metadata), replicaset = %created.name_any(), "new replica set");
                        created_new = true;
                        new_rs = Some(Arc::new(created));
                    }
                    // A name taken by another template: count the collision and try again.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let existing = rs_api.get_opt(&rs.name_any()).await?;
                        let ours = existing.as_ref().is_some_and(|e| controller_of(&e.metadata).is_some_and(|o| o.uid == uid));
                        if !ours
                            || existing
                                .as_ref()
                                .is_some_and(|e| template_sans_hash(e.spec.as_ref().and_then(|s| s.template.as_ref())) != wanted)
                        {
                            let dapi: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
                            dapi.patch_status(
                                &d.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&json!({"status": {"collisionCount": collision + 1}})),
                            )
                            .await?;
                        }
                        return Ok(Action::requeue(Duration::from_millis(200)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let new_name = new_rs.as_ref().map(|rs| rs.name_any());
    let old: Vec<Arc<ReplicaSet>> = owned.iter().filter(|rs| Some(rs.name_any()) != new_name).cloned().collect();

    if paused {
        // A paused Deployment still scales: its newest ReplicaSet follows spec.replicas.
        if let Some(rs) = new_rs.as_ref().or(owned.last()) {
            let others: i32 = owned.iter().filter(|o| o.name_any() != rs.name_any()).map(|o| spec_replicas(o)).sum();
            if others == 0 {
                scale(&rs_api, rs, replicas, &d, max_surge).await?;
            }
        }
    } else if let Some(new) = &new_rs {
        if recreate {
            let old_running: i32 = old.iter().map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas)).sum();
            for rs in &old {
                scale(&rs_api, rs, 0, &d, max_surge).await?;
            }
            if old.iter().all(|rs| spec_replicas(rs) == 0) && old_running == 0 {
                scale(&rs_api, new, replicas, &d, max_surge).await?;
            }
        } else {
            roll(&rs_api, &d, new, &old, replicas, max_surge, max_unavailable).await?;
        }
    }
    cleanup(&rs_api, &d, &old).await?;
    status(&ctx, &d, new_rs.as_deref(), &owned, replicas, max_unavailable, paused, created_new).await?;

    let complete = new_rs.as_ref().is_some_and(|n| {
        spec_replicas(n) == replicas && available(n) >= replicas && old.iter().all(|o| o.status.as_ref().map_or(0, |s| s.replicas) == 0)
    });
    Ok(if complete { Action::requeue(Duration::from_secs(300)) } else { Action::requeue(Duration::from_secs(5)) })
}

fn new_replica_set(d: &Deployment, hash: &str, replicas: i32, revision: i64, max_surge: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.into());
    let mut selector: LabelSelector = spec.selector.clone();
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.into());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    let want = spec.replicas.unwrap_or(1);
    let mut annotations: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED.into(), want.to_string());
    annotations.insert(MAX_REPLICAS.into(), (want + max_surge).to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// One step of a rolling update: grow the new ReplicaSet within the surge, shrink old ones
/// while enough pods stay available.
async fn roll(
    api: &Api<ReplicaSet>,
    d: &Deployment,
    new: &ReplicaSet,
    old: &[Arc<ReplicaSet>],
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
) -> Result<(), kube::Error> {
    let all: i32 = spec_replicas(new) + old.iter().map(|rs| spec_replicas(rs)).sum::<i32>();
    let new_replicas = spec_replicas(new);
    if new_replicas > replicas {
        scale(api, new, replicas, d, max_surge).await?;
    } else if new_replicas < replicas {
        let room = replicas + max_surge - all;
        if room > 0 {
            scale(api, new, new_replicas + room.min(replicas - new_replicas), d, max_surge).await?;
        } else {
            scale(api, new, new_replicas, d, max_surge).await?;
        }
    }
    // Scale old ReplicaSets down only as far as availability allows.
    let min_available = replicas - max_unavailable;
    let new_unavailable = (spec_replicas(new) - available(new)).max(0);
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return Ok(());
    }
    // First the old pods that are not available anyway (they cost no availability).
    let mut remaining: Vec<(Arc<ReplicaSet>, i32)> = old.iter().map(|rs| (rs.clone(), spec_replicas(rs))).collect();
    for (rs, target) in remaining.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (*target - available(rs)).max(0).min(budget);
        if unhealthy > 0 {
            *target -= unhealthy;
            budget -= unhealthy;
        }
    }
    // Then available old pods, oldest ReplicaSet first, while the total available stays above
    // the minimum.
    let total_available: i32 = available(new) + old.iter().map(|rs| available(rs)).sum::<i32>();
    let mut can_drop = (total_available - min_available).min(budget);
    for (_, target) in remaining.iter_mut() {
        if can_drop <= 0 {
            break;
        }
        let n = (*target).min(can_drop);
        *target -= n;
        can_drop -= n;
    }
    for (rs, target) in remaining {
        if target != spec_replicas(&rs) {
            scale(api, &rs, target, d, max_surge).await?;
        }
    }
    Ok(())
}

/// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit` (default 10), oldest first.
async fn cleanup(api: &Api<ReplicaSet>, d: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), kube::Error> {
    let limit = usize::try_from(d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0)).unwrap_or(10);
    let empty: Vec<&Arc<ReplicaSet>> = old
        .iter()
        .filter(|rs| {
            spec_replicas(rs) == 0 && rs.status.as_ref().map_or(0, |s| s.replicas) == 0 && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    for rs in &empty[..empty.len() - limit] {
        match api.delete(&rs.name_any(), &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn status(
    ctx: &Ctx,
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[Arc<ReplicaSet>],
    replicas: i32,
    max_unavailable: i32,
    paused: bool,
    created_new: bool,
) -> Result<(), kube::Error> {
    let sum = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let total = sum(|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let ready = sum(|rs| rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
    let avail = sum(available);
    let updated =
        new.and_then(|rs| all.iter().find(|o| o.name_any() == rs.name_any())).map_or(0, |rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let now_ts = k8s_openapi::jiff::Timestamp::now();
    let now = now_ts.to_string();
    let old = d.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).unwrap_or(Value::Null);
    let counts = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "unavailableReplicas": (replicas - avail).max(0),
    });
    // Progress is any change in the counts: it moves Progressing's lastUpdateTime, and only a
    // rollout without progress for progressDeadlineSeconds is declared stuck.
    let progressed = counts.as_object().is_some_and(|c| c.iter().any(|(k, v)| old.get(k).cloned().unwrap_or(json!(0)) != *v));
    let old_conditions: Vec<Value> = old["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        let previous = old_conditions.iter().find(|c| c["type"] == type_);
        let transition = match previous {
            Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let update = match previous {
            Some(p) if p["status"] == status && p["reason"] == reason && !progressed => p["lastUpdateTime"].clone(),
            _ => json!(now),
        };
        json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": transition, "lastUpdateTime": update})
    };
    let available_condition = if avail >= replicas - max_unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into())
    };
    let new_name = new.map(|rs| rs.name_any()).unwrap_or_default();
    let complete = new.is_some() && updated == replicas && total == replicas && avail >= replicas;
    let progressing = if paused {
        condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
    } else if complete {
        condition("Progressing", "True", "NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
    } else if created_new {
        condition("Progressing", "True", "NewReplicaSetCreated", format!("Created new replica set \"{new_name}\""))
    } else {
        let deadline = Duration::from_secs(
            u64::try_from(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600).max(0)).unwrap_or(600),
        );
        let previous = old_conditions.iter().find(|c| c["type"] == "Progressing");
        let since = previous.and_then(|p| p["lastUpdateTime"].as_str()).and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
        let stuck = !progressed && since.and_then(|t| t.checked_add(deadline).ok()).is_some_and(|until| until < now_ts);
        if stuck {
            condition("Progressing", "False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{new_name}\" has timed out progressing."))
        } else {
            condition("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
        }
    };
    let mut status = counts;
    let mut conditions = vec![available_condition, progressing];
    // A ReplicaSet that cannot create its pods says why on the Deployment too.
    let failure = all.iter().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default())
    });
    if let Some(message) = failure {
        conditions.push(condition("ReplicaFailure", "True", "FailedCreate", message));
    }
    status["conditions"] = json!(conditions);
    if let Some(c) = d.status.as_ref().and_then(|s| s.collision_count) {
        status["collisionCount"] = json!(c);
    }
    let summary = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["conditions"]
            .as_array()
            .map(|cs| cs.iter().map(|c| (c["type"].clone(), c["status"].clone(), c["reason"].clone())).collect())
            .unwrap_or_default()
    };
    if !progressed && summary(&old) == summary(&status) {
        return Ok(());
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    match api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10, true, "0"), 3);
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10, false, "0"), 2);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 10, false, "0"), 2);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}
        }))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d, 3), (0, 1), "both zero becomes one unavailable");
    }

    #[test]
    fn the_hash_follows_the_template_and_the_collision_count() {
        let a: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}})).unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "b"}}})).unwrap();
        assert_eq!(template_hash(&a, 0), template_hash(&a, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(template_hash(&a, 0).bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
    }
}
