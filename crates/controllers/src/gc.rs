//! The garbage collector: follows ownerReferences across the kinds the API serves.
//! - An object whose owners are all gone is deleted (in the background); owners that are gone
//!   are dropped from an object that still has others.
//! - An owner deleted in the foreground (finalizer `foregroundDeletion`) has its dependents
//!   deleted in the foreground too, and keeps its finalizer until no dependent with
//!   `blockOwnerDeletion` is left.
//! - An owner deleted with orphaning (finalizer `orphan`) has its references removed from its
//!   dependents, then loses the finalizer.
//!
//! An owner missing from the caches is looked up live before anything is deleted: a cache
//! that lags must not cost a dependent its life.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

/// A kind the collector follows.
#[derive(Clone)]
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

fn kinds() -> Vec<Kind> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core};
    fn k<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Kind {
        Kind { ar: ApiResource::erase::<K>(&()), namespaced }
    }
    vec![
        k::<core::Pod>(true),
        k::<apps::ReplicaSet>(true),
        k::<apps::Deployment>(true),
        k::<apps::DaemonSet>(true),
        k::<apps::StatefulSet>(true),
        k::<batch::Job>(true),
        k::<core::ConfigMap>(true),
        k::<core::Secret>(true),
        k::<core::Service>(true),
        k::<core::Endpoints>(true),
        k::<k8s_openapi::api::discovery::v1::EndpointSlice>(true),
        k::<core::ServiceAccount>(true),
        k::<coord::Lease>(true),
        k::<core::Node>(false),
    ]
}

pub async fn run(client: Client) {
    let kinds = kinds();
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut stores: Vec<Store<DynamicObject>> = Vec::new();
    let mut watches = Vec::new();
    for kind in &kinds {
        let writer = reflector::store::Writer::<DynamicObject>::new(kind.ar.clone());
        stores.push(writer.as_reader());
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.ar);
        let n = notify.clone();
        watches.push(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(move |ev| {
                    if let Err(e) = ev {
                        tracing::debug!(error = %e, "gc watch");
                    }
                    n.notify_one();
                    futures::future::ready(())
                })
                .boxed(),
        );
    }
    let collector = async {
        for s in &stores {
            let _ = s.wait_until_ready().await;
        }
        let mut recent: HashMap<String, Instant> = HashMap::new();
        loop {
            recent.retain(|_, at| at.elapsed() < Duration::from_secs(5));
            pass(&client, &kinds, &stores, &mut recent).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), notify.notified()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(futures::future::join_all(watches), collector);
}

fn kind_of<'a>(kinds: &'a [Kind], api_version: &str, kind: &str) -> Option<&'a Kind> {
    kinds.iter().find(|k| k.ar.api_version == api_version && k.ar.kind == kind)
}

fn api_for(client: &Client, kind: &Kind, ns: Option<&str>) -> Api<DynamicObject> {
    match (kind.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &kind.ar),
        _ => Api::all_with(client.clone(), &kind.ar),
    }
}

/// Whether an owner the caches do not show exists after all (asked live).
async fn owner_exists(
    client: &Client,
    kinds: &[Kind],
    r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ns: Option<&str>,
) -> bool {
    let Some(kind) = kind_of(kinds, &r.api_version, &r.kind) else {
        // A kind we do not follow: never collect on its account.
        return true;
    };
    match api_for(client, kind, ns).get_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() == Some(r.uid.as_str()),
        Ok(None) => false,
        // Unsure: keep the dependent.
        Err(_) => true,
    }
}

async fn pass(client: &Client, kinds: &[Kind], stores: &[Store<DynamicObject>], recent: &mut HashMap<String, Instant>) {
    let mut all: Vec<(usize, Arc<DynamicObject>)> = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        all.extend(s.state().into_iter().map(|o| (i, o)));
    }
    let by_uid: HashMap<&str, (usize, &Arc<DynamicObject>)> =
        all.iter().filter_map(|(i, o)| o.metadata.uid.as_deref().map(|u| (u, (*i, o)))).collect();
    // Owner uid → (kind, dependent, blocks the owner's deletion).
    type Dependents<'a> = HashMap<&'a str, Vec<(usize, &'a Arc<DynamicObject>, bool)>>;
    let mut dependents: Dependents = HashMap::new();
    for (i, o) in &all {
        for r in o.owner_references() {
            dependents.entry(r.uid.as_str()).or_default().push((*i, o, r.block_owner_deletion == Some(true)));
        }
    }
    let once = |recent: &mut HashMap<String, Instant>, key: String| -> bool {
        if recent.contains_key(&key) {
            return false;
        }
        recent.insert(key, Instant::now());
        true
    };

    for (i, o) in &all {
        let refs = o.owner_references();
        if refs.is_empty() || o.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let kind = &kinds[*i];
        let ns = o.namespace();
        let uid = o.uid().unwrap_or_default();
        let mut gone = Vec::new();
        let mut foreground = false;
        let mut orphaned = Vec::new();
        for r in refs {
            match by_uid.get(r.uid.as_str()) {
                Some((_, owner)) => {
                    let finalizers = owner.finalizers();
                    if owner.metadata.deletion_timestamp.is_some() {
                        if finalizers.iter().any(|f| f == "foregroundDeletion") {
                            foreground = true;
                        } else if finalizers.iter().any(|f| f == "orphan") {
                            orphaned.push(r.uid.clone());
                        }
                    }
                }
                None => {
                    if !owner_exists(client, kinds, r, ns.as_deref()).await {
                        gone.push(r.uid.clone());
                    }
                }
            }
        }
        let api = api_for(client, kind, ns.as_deref());
        let name = o.name_any();
        if gone.len() == refs.len() || foreground {
            if !once(recent, format!("delete/{uid}")) {
                continue;
            }
            let policy = if foreground { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
            let dp = DeleteParams {
                propagation_policy: Some(policy),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            tracing::info!(kind = %kind.ar.kind, object = %format!("{}/{name}", ns.as_deref().unwrap_or("")), foreground, "collecting a dependent whose owner is gone");
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection: delete failed; retried next pass"),
            }
        } else if !gone.is_empty() || !orphaned.is_empty() {
            if !once(recent, format!("refs/{uid}")) {
                continue;
            }
            let keep: Vec<_> = refs.iter().filter(|r| !gone.contains(&r.uid) && !orphaned.contains(&r.uid)).cloned().collect();
            let patch = json!({"metadata": {"ownerReferences": keep, "resourceVersion": o.resource_version()}});
            if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(error = %e, "garbage collection: dropping owner references (retried next pass)");
            }
        }
    }

    // Owners waiting on their dependents.
    for (i, o) in &all {
        if o.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let finalizers = o.finalizers();
        let uid = o.uid().unwrap_or_default();
        let deps = dependents.get(uid.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mut remove = Vec::new();
        if finalizers.iter().any(|f| f == "orphan") && deps.is_empty() {
            remove.push("orphan");
        }
        if finalizers.iter().any(|f| f == "foregroundDeletion") && !deps.iter().any(|(_, _, blocking)| *blocking) {
            remove.push("foregroundDeletion");
        }
        if remove.is_empty() || !once(recent, format!("finalize/{uid}/{}", remove.join(","))) {
            continue;
        }
        let keep: Vec<&String> = finalizers.iter().filter(|f| !remove.contains(&f.as_str())).collect();
        let kind = &kinds[*i];
        let api = api_for(client, kind, o.namespace().as_deref());
        let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": o.resource_version()}});
        tracing::info!(kind = %kind.ar.kind, object = %o.name_any(), removed = ?remove, "owner's dependents are settled");
        if let Err(e) = api.patch(&o.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(error = %e, "garbage collection: removing a finalizer (retried next pass)");
        }
    }
}
