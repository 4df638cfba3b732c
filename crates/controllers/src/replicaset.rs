//! The ReplicaSet controller: keeps `spec.replicas` active pods for each ReplicaSet, adopting
//! orphans its selector matches and releasing pods that stopped matching, and reports status
//! (replicas, fullyLabeled, ready, available, observedGeneration).
//!
//! Creations go out in slow-start batches (1, 2, 4, … at most 500 per pass, as
//! kube-controller-manager's burst), and the controller waits until its cache shows what it
//! asked for (expectations) before it counts again, so a slow watch never doubles a
//! ReplicaSet.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

use crate::util::{Expectations, controller_ref, is_pod_active, is_pod_available, is_pod_ready};

/// Most pods one pass creates or deletes.
const BURST: usize = 500;

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub expectations: Expectations,
}

/// Runs the controller until the returned future is dropped.
pub async fn run(client: Client, pods: Store<Pod>, pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone(), pods, expectations: Expectations::default() });
    crate::util::drive(
        Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default()).owns_shared_stream(pod_events),
        reconcile,
        ctx,
        "replicaset",
        Duration::from_secs(1),
    )
    .await;
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone();
    let in_ns: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    // Adopt orphans the selector matches; release pods that no longer match.
    let owned = crate::util::claim_pods(rs.as_ref(), &selector, &in_ns, &pods_api, |_| true).await?;

    let present = |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name));
    let terminating =
        |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name) && p.metadata.deletion_timestamp.is_some());
    let settled = ctx.expectations.satisfied(&uid, present, terminating);
    let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_pod_active(p)).cloned().collect();
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);

    // Why creations fail, if they do (a terminating namespace, an invalid template, a quota):
    // reported as the ReplicaFailure condition, as kube-controller-manager does.
    let mut failure: Option<String> = None;
    if settled && active.len() < want {
        let need = (want - active.len()).min(BURST);
        let (created, failed) = create_pods(&rs, &pods_api, need).await;
        failure = failed;
        for p in &created {
            ctx.expectations.expect_add(&uid, p.name_any());
        }
        active.extend(created.into_iter().map(Arc::new));
    } else if settled && active.len() > want {
        let surplus = (active.len() - want).min(BURST);
        active.sort_by_key(|p| crate::util::deletion_rank(p));
        let victims: Vec<Arc<Pod>> = active.drain(..surplus).collect();
        for p in &victims {
            ctx.expectations.expect_delete(&uid, p.name_any());
        }
        crate::util::delete_pods(&pods_api, victims.iter().map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect()).await?;
    }

    // Status, from what this pass saw and did.
    let now = k8s_openapi::jiff::Timestamp::now();
    let min_ready = Duration::from_secs(u64::try_from(spec.min_ready_seconds.unwrap_or(0).max(0)).unwrap_or(0));
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled =
        active.iter().filter(|p| template_labels.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))).count();
    let ready = active.iter().filter(|p| is_pod_ready(p)).count();
    let available = active.iter().filter(|p| is_pod_available(p, min_ready, now)).count();
    let old_failure = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure" && c.status == "True"))
        .map(|c| c.message.clone().unwrap_or_default());
    // A pass that created nothing keeps the last failure until a creation succeeds.
    let failure = if settled && active.len() >= want { None } else { failure.or(old_failure.clone()) };
    let conditions: Vec<serde_json::Value> = failure
        .iter()
        .map(|m| json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": m, "lastTransitionTime": now.to_string()}))
        .collect();
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation,
        "conditions": conditions,
    });
    let old = rs.status.as_ref().map(|s| {
        json!({
            "replicas": s.replicas,
            "fullyLabeledReplicas": s.fully_labeled_replicas.unwrap_or(0),
            "readyReplicas": s.ready_replicas.unwrap_or(0),
            "availableReplicas": s.available_replicas.unwrap_or(0),
            "observedGeneration": s.observed_generation,
        })
    });
    let counts_changed = old.as_ref().is_none_or(|o| o.as_object().is_some_and(|o| o.iter().any(|(k, v)| status.get(k) != Some(v))));
    if counts_changed || failure != old_failure {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    // Pods that are ready but not yet available become available by time alone.
    if ready > available && !min_ready.is_zero() {
        return Ok(Action::requeue(min_ready));
    }
    if !settled || active.len() != want {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // Still waiting for pods to become ready: look again soon even if an event was missed (a
    // status left stale would hold `kubectl rollout status` up).
    if available < want {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Creates `need` pods from the template; on a failure, what was created and why not.
async fn create_pods(rs: &ReplicaSet, api: &Api<Pod>, need: usize) -> (Vec<Pod>, Option<String>) {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let (created, failed) = crate::util::create_slow_start(api, vec![pod; need]).await;
    let message = failed.map(|e| {
        tracing::warn!(replicaset = %crate::util::key(&rs.metadata), error = %e, "creating pods failed; will retry");
        match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        }
    });
    (created, message)
}
