//! The endpoints and EndpointSlice controllers, as one: for every Service with a selector, an
//! Endpoints object of the same name and EndpointSlices labelled with the Service's name, both
//! listing the selected pods that have an IP, with the Service's ports resolved against each
//! pod (a numbered targetPort as is, a named one through the pod's container ports).
//!
//! - Endpoints: ready pods under `addresses`, the others (not terminating) under
//!   `notReadyAddresses`, grouped into subsets by the ports they serve; at most 1000
//!   addresses, beyond which the object is marked `endpoints.kubernetes.io/over-capacity:
//!   truncated`. Labelled `endpointslice.kubernetes.io/skip-mirror: "true"`, as
//!   kube-controller-manager does, which also marks it as ours.
//! - EndpointSlices: one per set of resolved ports and per 100 endpoints (IPv4 only), each
//!   endpoint with its ready/serving/terminating conditions, terminating pods included; a
//!   Service with no endpoints keeps one empty slice. Each is controlled by its Service through
//!   an ownerReference, and labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by`.
//!
//! Services without a selector, and ExternalName Services, are left alone: their endpoints are
//! whoever writes them. When a Service goes, its Endpoints and slices are deleted at once (the
//! watch reports the deletion) and again by a sweep every 30 seconds, for deletions the watch
//! missed while it was down; the slices' ownerReferences let the garbage collector reach them
//! too.
//!
//! The decisions are pure functions — [`endpoints_for`], [`slices_for`], [`plan_slices`],
//! [`find_port`] — and `reconcile` carries them out. Start at [`run`].
//!
//! Simplifications, against kube-controller-manager: pods are packed into slices by address
//! order, not by the minimal-churn placement Kubernetes uses, so one new pod can rewrite
//! several slices of a large Service; slices carry no zone or topology hints; the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation is not written; and a pod
//! deleted without first being marked for deletion (force deletion) stays listed until the
//! Service's next periodic pass, at most 30 seconds later, because the shared pod reflector
//! reports no deletions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::{Expectations, controller_of, controller_ref, is_pod_ready, key};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice, and our value of it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// On Endpoints: not to be mirrored into EndpointSlices (we write the slices ourselves).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// On the Endpoints and slices of a Service without a cluster IP.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// On Endpoints that list fewer addresses than the Service selects.
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// Most addresses one Endpoints object lists, as in Kubernetes.
const MAX_ENDPOINTS_ADDRESSES: usize = 1000;
/// Most endpoints in one EndpointSlice (kube-controller-manager's
/// `--max-endpoints-per-slice` default).
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// How often every Service is reconciled again, and orphans are swept.
const RESYNC: Duration = Duration::from_secs(30);

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    /// The EndpointSlices we manage (by label).
    pub slices: Store<discovery::EndpointSlice>,
    /// Slices created and deleted that the slice cache has not shown yet, per Service uid.
    pub expectations: Expectations,
}

/// Runs the controller until the returned future is dropped. `pod_events` is a subscription
/// to the shared reflector behind `pods`.
pub async fn run(client: Client, pods: Store<Pod>, pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let (services, service_writer) = reflector::store::<Service>();
    let (gone_tx, gone_rx) = mpsc::unbounded_channel::<(String, String)>();
    // One watch of Services feeds the controller and reports deletions, which a Controller
    // never reconciles.
    let service_stream = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(service_writer)
        .inspect(move |ev| {
            if let Ok(watcher::Event::Delete(svc)) = ev {
                let _ = gone_tx.send((svc.namespace().unwrap_or_default(), svc.name_any()));
            }
        })
        .applied_objects();
    let (endpoints, endpoints_watch) = cache::<Endpoints>(Api::all(client.clone()), watcher::Config::default(), "endpoints");
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (slices, slices_watch) = cache::<discovery::EndpointSlice>(Api::all(client.clone()), managed, "endpointslice");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.clone(),
        services: services.clone(),
        endpoints,
        slices,
        expectations: Expectations::default(),
    });
    let controller = {
        let ctx = ctx.clone();
        let mapper = pod_mapper(services.clone(), pods);
        async move {
            // An empty pod cache would read as "no pods anywhere" and empty every Endpoints.
            let _ = tokio::join!(ctx.pods.wait_until_ready(), ctx.endpoints.wait_until_ready(), ctx.slices.wait_until_ready());
            crate::util::drive(
                Controller::for_stream(service_stream, services).watches_shared_stream(pod_events, mapper),
                reconcile,
                ctx,
                "endpoints",
                Duration::from_secs(2),
            )
            .await;
        }
    };
    tokio::join!(endpoints_watch, slices_watch, controller, follow_deletions(ctx.clone(), gone_rx), sweep(ctx));
}

/// A watch of `K` into a store.
fn cache<K>(api: Api<K>, config: watcher::Config, what: &'static str) -> (Store<K>, impl std::future::Future<Output = ()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let run = watcher(api, config).default_backoff().reflect(writer).for_each(move |ev| {
        if let Err(e) = ev {
            tracing::debug!(error = %e, "{what} watch");
        }
        futures::future::ready(())
    });
    (store, run)
}

/// Maps a changed pod to the Services that select it now and those that selected it at its
/// previous change (so a pod whose labels changed leaves the Services it left).
fn pod_mapper(services: Store<Service>, pods: Store<Pod>) -> impl Fn(Arc<Pod>) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    type LastServices = Mutex<HashMap<(String, String), Vec<ObjectRef<Service>>>>;
    let last: LastServices = Mutex::new(HashMap::new());
    move |pod| {
        let ns = pod.namespace().unwrap_or_default();
        let now: Vec<ObjectRef<Service>> = services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()) && selector(s).is_some_and(|sel| selects(sel, &pod)))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let mut last = last.lock();
        let before = last.insert((ns, pod.name_any()), now.clone()).unwrap_or_default();
        // The shared reflector reports no deletions: forget deleted pods now and then.
        if last.len() > 2 * pods.len() + 1024 {
            last.retain(|(ns, name), _| pods.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        let mut out = now;
        for r in before {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(sel) = selector(&svc) else {
        return Ok(Action::await_change());
    };
    let ns = svc.namespace().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(sel, p));
    sync_endpoints(&ctx, &svc, &pods).await?;
    if !sync_slices(&ctx, &svc, &pods).await? {
        // The slice cache has not caught up with our last writes: look again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(RESYNC))
}

/// The selector of a Service this controller keeps endpoints for: not ExternalName, with a
/// non-empty selector.
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Labels of the Service's Endpoints and slices: the Service's own, plus the headless marker
/// for a Service without a cluster IP, plus `extra`.
fn object_labels(svc: &Service, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    for reserved in [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, SKIP_MIRROR_LABEL, HEADLESS_LABEL] {
        labels.remove(reserved);
    }
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    if ip.is_empty() || ip == "None" {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

fn has_labels(meta: &ObjectMeta, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| meta.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
}

// ---- Endpoints ----

async fn sync_endpoints(ctx: &Ctx, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let mut subsets = endpoints_for(svc, pods);
    let truncated = truncate(&mut subsets, MAX_ENDPOINTS_ADDRESSES);
    let labels = object_labels(svc, &[(SKIP_MIRROR_LABEL, "true")]);
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let marked = current.as_ref().and_then(|c| c.metadata.annotations.as_ref()).is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION));
    if let Some(cur) = &current
        && cur.subsets.as_deref().unwrap_or_default() == subsets.as_slice()
        && has_labels(&cur.metadata, &labels)
        && marked == truncated
    {
        return Ok(());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let create = || {
        let annotations = truncated.then(|| BTreeMap::from([(OVER_CAPACITY_ANNOTATION.to_string(), "truncated".to_string())]));
        Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                annotations,
                ..Default::default()
            },
            subsets: (!subsets.is_empty()).then(|| subsets.clone()),
        }
    };
    if current.is_none() {
        match api.create(&PostParams::default(), &create()).await {
            Ok(_) => return Ok(()),
            // Our cache is behind: update what is there.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A merge patch replaces `subsets` whole; `null` removes it (and the annotation).
    let subsets_value = if subsets.is_empty() { Value::Null } else { json!(subsets) };
    let mut patch = json!({"metadata": {"labels": labels}, "subsets": subsets_value});
    if truncated || marked {
        let over_capacity = if truncated { json!("truncated") } else { Value::Null };
        patch["metadata"]["annotations"] = json!({OVER_CAPACITY_ANNOTATION: over_capacity});
    }
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile (by someone else): put it back.
        Err(kube::Error::Api(e)) if e.code == 404 => match api.create(&PostParams::default(), &create()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// A Service port resolved against one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResolvedPort {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

/// The pod's port that a Service port sends to, as Kubernetes' `FindPort` resolves it: a
/// numbered targetPort as is (the Service's own port when none is set), a named one through
/// the container port of that name and protocol, in the pod's containers and sidecars (init
/// containers that keep running). None when the pod has no such port.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    match &service_port.target_port {
        None => Some(service_port.port),
        Some(IntOrString::Int(n)) => Some(if *n > 0 { *n } else { service_port.port }),
        Some(IntOrString::String(name)) => {
            let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|p| p.container_port)
        }
    }
}

/// The Service's ports this pod serves, in the Service's order; ports the pod cannot resolve
/// are left out.
fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| ResolvedPort {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The pod's IPv4 address, if it has one yet.
fn pod_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    status.pod_ip.as_deref().into_iter().chain(listed).find(|ip| ip.parse::<Ipv4Addr>().is_ok()).map(str::to_string)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// A pod's hostname in the Service's DNS: set when the pod names the Service as its subdomain.
fn hostname_for(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same = spec.subdomain.as_deref() == svc.metadata.name.as_deref() && pod.metadata.namespace == svc.metadata.namespace;
    same.then(|| hostname.to_string())
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

/// The subsets of the Service's Endpoints: the selected `pods` with an IP that are not
/// finished, ready ones (or all, with `publishNotReadyAddresses`) under `addresses`, the
/// others under `notReadyAddresses`; terminating pods are left out unless not-ready addresses
/// are published. Pods serving the same resolved ports share a subset; a pod that resolves
/// none of the Service's ports is left out, except for a headless Service without ports.
/// Addresses are sorted by IP, subsets by their ports.
pub fn endpoints_for(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let portless_headless = spec.ports.as_ref().is_none_or(Vec::is_empty) && spec.cluster_ip.as_deref() == Some("None");
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        if is_terminal(pod) || (pod.metadata.deletion_timestamp.is_some() && !publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let ports = resolve_ports(svc, pod);
        if ports.is_empty() && !portless_headless {
            continue;
        }
        let address = EndpointAddress { ip, hostname: hostname_for(svc, pod), node_name: node_name(pod), target_ref: Some(pod_ref(pod)) };
        let (ready, not_ready) = groups.entry(ports).or_default();
        if publish_not_ready || is_pod_ready(pod) { ready.push(address) } else { not_ready.push(address) }
    }
    let order = |a: &EndpointAddress, b: &EndpointAddress| {
        let ip = |x: &EndpointAddress| x.ip.parse::<Ipv4Addr>().ok();
        ip(a).cmp(&ip(b)).then_with(|| a.target_ref.as_ref().map(|r| &r.name).cmp(&b.target_ref.as_ref().map(|r| &r.name)))
    };
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(order);
            not_ready.sort_by(order);
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|p| EndpointPort {
                    name: Some(p.name).filter(|n| !n.is_empty()),
                    port: p.port,
                    protocol: Some(p.protocol),
                    app_protocol: p.app_protocol,
                })
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Cuts `subsets` down to `max` addresses, ready ones first; true if anything was cut.
fn truncate(subsets: &mut Vec<EndpointSubset>, max: usize) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let total: usize = subsets.iter().map(|s| count(&s.addresses) + count(&s.not_ready_addresses)).sum();
    if total <= max {
        return false;
    }
    let mut budget = max;
    for ready in [true, false] {
        for s in subsets.iter_mut() {
            let list = if ready { &mut s.addresses } else { &mut s.not_ready_addresses };
            let keep = list.as_ref().map_or(0, |l| l.len().min(budget));
            budget -= keep;
            if keep == 0 {
                *list = None;
            } else if let Some(l) = list {
                l.truncate(keep);
            }
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    true
}

// ---- EndpointSlices ----

/// What one EndpointSlice lists.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    pub ports: Option<Vec<discovery::EndpointPort>>,
    pub endpoints: Vec<discovery::Endpoint>,
}

impl SliceContent {
    fn of(slice: &discovery::EndpointSlice) -> SliceContent {
        SliceContent { ports: slice.ports.clone().filter(|p| !p.is_empty()), endpoints: slice.endpoints.clone() }
    }
}

/// The slices of a Service: its selected `pods` with an IPv4 address that are not finished,
/// terminating ones included, each with the conditions Kubernetes gives it (`serving`: the
/// pod is Ready; `ready`: serving and not terminating, or always with
/// `publishNotReadyAddresses`; `terminating`). Pods are grouped by the ports they resolve,
/// sorted by address, and cut into slices of at most 100; with no pods, one empty slice.
pub fn slices_for(svc: &Service, pods: &[Arc<Pod>]) -> Vec<SliceContent> {
    let publish_not_ready = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true);
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<(Ipv4Addr, discovery::Endpoint)>> = BTreeMap::new();
    for pod in pods {
        if is_terminal(pod) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let Ok(sort_key) = ip.parse::<Ipv4Addr>() else { continue };
        let serving = is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint = discovery::Endpoint {
            addresses: vec![ip],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(publish_not_ready || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(svc, pod),
            node_name: node_name(pod),
            target_ref: Some(pod_ref(pod)),
            ..Default::default()
        };
        groups.entry(resolve_ports(svc, pod)).or_default().push((sort_key, endpoint));
    }
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|(a, x), (b, y)| {
            a.cmp(b).then_with(|| x.target_ref.as_ref().map(|r| &r.name).cmp(&y.target_ref.as_ref().map(|r| &r.name)))
        });
        let ports: Vec<discovery::EndpointPort> = ports
            .into_iter()
            .map(|p| discovery::EndpointPort {
                // Slices keep an empty name, unlike Endpoints.
                name: Some(p.name),
                port: Some(p.port),
                protocol: Some(p.protocol),
                app_protocol: p.app_protocol,
            })
            .collect();
        let ports = (!ports.is_empty()).then_some(ports);
        let endpoints: Vec<discovery::Endpoint> = endpoints.into_iter().map(|(_, e)| e).collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent { ports: ports.clone(), endpoints: chunk.to_vec() });
        }
    }
    if out.is_empty() {
        out.push(SliceContent { ports: None, endpoints: Vec::new() });
    }
    out
}

/// A slice the Service has now: its name, what it lists, and whether its labels are current.
#[derive(Clone, Debug)]
pub struct ExistingSlice {
    pub name: String,
    pub content: SliceContent,
    pub labels_current: bool,
}

/// What to do to turn the existing slices into the desired ones.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Existing slices to rewrite, by name.
    pub update: Vec<(String, SliceContent)>,
    pub create: Vec<SliceContent>,
    pub delete: Vec<String>,
}

/// Keeps every existing slice that already lists a desired content (with current labels),
/// rewrites other existing slices to the remaining contents (one with the same ports first),
/// creates slices for what is left, and deletes the slices nothing wants.
pub fn plan_slices(desired: Vec<SliceContent>, existing: &[ExistingSlice]) -> SlicePlan {
    let mut used = vec![false; existing.len()];
    let mut rest = Vec::new();
    for d in desired {
        match (0..existing.len()).find(|&i| !used[i] && existing[i].labels_current && existing[i].content == d) {
            Some(i) => used[i] = true,
            None => rest.push(d),
        }
    }
    let mut plan = SlicePlan::default();
    for d in rest {
        let same_ports = (0..existing.len()).find(|&i| !used[i] && existing[i].content.ports == d.ports);
        match same_ports.or_else(|| (0..existing.len()).find(|&i| !used[i])) {
            Some(i) => {
                used[i] = true;
                plan.update.push((existing[i].name.clone(), d));
            }
            None => plan.create.push(d),
        }
    }
    plan.delete = existing.iter().zip(&used).filter(|(_, u)| !**u).map(|(e, _)| e.name.clone()).collect();
    plan
}

/// Brings the Service's slices in line; false when the slice cache has not yet shown our
/// last creations and deletions (nothing is done then).
async fn sync_slices(ctx: &Ctx, svc: &Service, pods: &[Arc<Pod>]) -> Result<bool, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let uid = svc.uid().unwrap_or_default();
    let in_ns = |s: &discovery::EndpointSlice| s.metadata.namespace.as_deref() == Some(ns.as_str());
    let present = |n: &str| ctx.slices.get(&ObjectRef::new(n).within(&ns)).is_some();
    if !ctx.expectations.satisfied(&uid, present, |_| false) {
        return Ok(false);
    }
    let ours: Vec<Arc<discovery::EndpointSlice>> = ctx.slices.state_filter(|s| {
        in_ns(s) && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) == Some(name.as_str())
    });
    let api: Api<discovery::EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let labels = object_labels(svc, &[(SERVICE_NAME_LABEL, name.as_str()), (MANAGED_BY_LABEL, MANAGED_BY)]);
    let mut existing = Vec::new();
    for s in &ours {
        let slice_name = s.name_any();
        // Slices of an earlier Service of the same name, or of nobody, go; so do slices of
        // another address type (it cannot change, and we write IPv4 only).
        if controller_of(&s.metadata).is_none_or(|o| o.uid != uid) || s.address_type != "IPv4" {
            delete_slice(&api, &slice_name).await?;
            ctx.expectations.expect_delete(&uid, slice_name);
            continue;
        }
        existing.push(ExistingSlice { name: slice_name, content: SliceContent::of(s), labels_current: has_labels(&s.metadata, &labels) });
    }
    let plan = plan_slices(slices_for(svc, pods), &existing);
    for (slice_name, content) in plan.update {
        let patch = json!({
            "metadata": {"labels": labels},
            "ports": content.ports,
            "endpoints": content.endpoints,
        });
        match api.patch(&slice_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Gone meanwhile: a later pass creates what is missing.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for content in plan.create {
        let slice = discovery::EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![controller_ref(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: content.endpoints,
            ports: content.ports,
        };
        let created = api.create(&PostParams::default(), &slice).await?;
        ctx.expectations.expect_add(&uid, created.name_any());
    }
    for slice_name in plan.delete {
        delete_slice(&api, &slice_name).await?;
        ctx.expectations.expect_delete(&uid, slice_name);
    }
    Ok(true)
}

async fn delete_slice(api: &Api<discovery::EndpointSlice>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

// ---- Deleted Services ----

/// Removes the Endpoints and slices of each Service the watch reports deleted.
async fn follow_deletions(ctx: Arc<Ctx>, mut gone: mpsc::UnboundedReceiver<(String, String)>) {
    while let Some((ns, name)) = gone.recv().await {
        // As kube-controller-manager does on a Service's deletion: its Endpoints go whoever
        // wrote them.
        if let Err(e) = remove_orphaned(&ctx, &ns, &name, true).await {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "removing the endpoints of a deleted service failed");
        }
    }
}

/// Every [`RESYNC`]: removes our Endpoints and slices whose Service is gone (deletions the
/// watch did not report, e.g. while it was reconnecting or before we started).
async fn sweep(ctx: Arc<Ctx>) {
    // An empty Service cache would make every Endpoints look orphaned.
    let _ = tokio::join!(ctx.services.wait_until_ready(), ctx.endpoints.wait_until_ready(), ctx.slices.wait_until_ready());
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let missing = |ns: &str, name: &str| ctx.services.get(&ObjectRef::new(name).within(ns)).is_none();
        let mut orphans: BTreeSet<(String, String)> = BTreeSet::new();
        for ep in ctx.endpoints.state() {
            let ours = ep.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR_LABEL)).map(String::as_str) == Some("true");
            let ns = ep.namespace().unwrap_or_default();
            if ours && missing(&ns, &ep.name_any()) {
                orphans.insert((ns, ep.name_any()));
            }
        }
        for s in ctx.slices.state() {
            let ns = s.namespace().unwrap_or_default();
            if let Some(service) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL))
                && missing(&ns, service)
            {
                orphans.insert((ns, service.clone()));
            }
        }
        for (ns, name) in orphans {
            if let Err(e) = remove_orphaned(&ctx, &ns, &name, false).await {
                tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "removing orphaned endpoints failed");
            }
        }
    }
}

/// Deletes the Endpoints (any, or only ours) and our slices of Service `ns/name`, after
/// checking with the API that the Service is really gone (our cache may lag, and a Service
/// of the same name may have been created since).
async fn remove_orphaned(ctx: &Ctx, ns: &str, name: &str, any_endpoints: bool) -> Result<(), kube::Error> {
    if Api::<Service>::namespaced(ctx.client.clone(), ns).get_opt(name).await?.is_some() {
        return Ok(());
    }
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let delete = match endpoints.get_opt(name).await? {
        Some(ep) => any_endpoints || ep.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR_LABEL)).is_some_and(|v| v == "true"),
        None => false,
    };
    if delete {
        match endpoints.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(endpoints = %format!("{ns}/{name}"), "deleted the endpoints of a deleted service"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let slices: Api<discovery::EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"));
    for s in slices.list(&lp).await?.items {
        delete_slice(&slices, &s.name_any()).await?;
        if let Some(uid) = controller_of(&s.metadata).map(|o| o.uid.clone()) {
            ctx.expectations.forget(&uid);
        }
        tracing::debug!(slice = %key(&s.metadata), "deleted the endpointslice of a deleted service");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-1", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10", "ports": ports},
        }))
        .unwrap()
    }

    /// A pod `name` on node-1 with `ip` (none when empty), Ready or not, with container ports.
    fn pod(name: &str, ip: &str, ready: bool, container_ports: Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "web:1", "ports": container_ports}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if !ip.is_empty() {
            p["status"]["podIP"] = json!(ip);
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn terminating(p: Arc<Pod>) -> Arc<Pod> {
        let mut p = (*p).clone();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        Arc::new(p)
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ports_resolve_by_number_or_by_container_port_name_and_protocol() {
        let p = pod(
            "a",
            "10.42.0.1",
            true,
            json!([{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
        );
        let sp = |v: Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        assert_eq!(find_port(&p, &sp(json!({"port": 80, "targetPort": 9000}))), Some(9000));
        assert_eq!(find_port(&p, &sp(json!({"port": 80}))), Some(80), "no targetPort: the Service's port");
        assert_eq!(find_port(&p, &sp(json!({"port": 80, "targetPort": "http"}))), Some(8080));
        assert_eq!(find_port(&p, &sp(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))), Some(53));
        assert_eq!(find_port(&p, &sp(json!({"port": 53, "targetPort": "dns"}))), None, "dns is UDP, the Service port TCP");
        assert_eq!(find_port(&p, &sp(json!({"port": 80, "targetPort": "nope"}))), None);
        // A sidecar's ports count; a plain init container's do not.
        let side: Pod = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "m"}],
            "initContainers": [{"name": "proxy", "restartPolicy": "Always", "ports": [{"name": "proxy", "containerPort": 15001}]},
                               {"name": "setup", "ports": [{"name": "setup", "containerPort": 1}]}]}}))
        .unwrap();
        assert_eq!(find_port(&side, &sp(json!({"port": 80, "targetPort": "proxy"}))), Some(15001));
        assert_eq!(find_port(&side, &sp(json!({"port": 80, "targetPort": "setup"}))), None);
    }

    #[test]
    fn endpoints_list_ready_and_not_ready_pods_by_port_set() {
        let svc = service(json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]));
        let http = |n: i32| json!([{"name": "http", "containerPort": n}]);
        let pods = vec![
            pod("b", "10.42.0.10", true, http(8080)),
            pod("a", "10.42.0.9", true, http(8080)),
            pod("c", "10.42.0.3", false, http(8080)),
            pod("d", "10.42.0.4", true, http(9090)),
            pod("e", "", true, http(8080)),
            pod("f", "10.42.0.6", true, json!([])),
            terminating(pod("g", "10.42.0.7", true, http(8080))),
        ];
        let subsets = endpoints_for(&svc, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let by_port: BTreeMap<i32, &EndpointSubset> = subsets.iter().map(|s| (s.ports.as_ref().unwrap()[0].port, s)).collect();
        let main = by_port[&8080];
        assert_eq!(ips(&main.addresses), ["10.42.0.9", "10.42.0.10"], "sorted as addresses, not strings");
        assert_eq!(ips(&main.not_ready_addresses), ["10.42.0.3"]);
        assert_eq!(ips(&by_port[&9090].addresses), ["10.42.0.4"]);
        let port = &main.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.protocol.as_deref()), (Some("http"), Some("TCP")));
        let a = &main.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.namespace.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("default"), Some("uid-a"))
        );

        // publishNotReadyAddresses: every pod with an IP is an address, terminating ones too.
        let mut open = svc.clone();
        open.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = endpoints_for(&open, &pods);
        let main = subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == 8080).unwrap();
        assert_eq!(ips(&main.addresses), ["10.42.0.3", "10.42.0.7", "10.42.0.9", "10.42.0.10"]);
        assert!(main.not_ready_addresses.is_none());
    }

    #[test]
    fn numbered_target_ports_and_unnamed_ports() {
        let svc = service(json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"}]));
        let subsets = endpoints_for(&svc, &[pod("a", "10.42.0.1", true, json!([]))]);
        assert_eq!(subsets.len(), 1);
        let port = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.port, port.name.as_deref()), (8080, None));
        assert!(endpoints_for(&svc, &[]).is_empty());
        // A headless Service without ports lists its pods with no ports.
        let mut headless = service(json!([]));
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let subsets = endpoints_for(&headless, &[pod("a", "10.42.0.1", true, json!([]))]);
        assert_eq!((ips(&subsets[0].addresses), subsets[0].ports.is_none()), (vec!["10.42.0.1"], true));
    }

    #[test]
    fn endpoints_are_truncated_ready_first() {
        let svc = service(json!([{"port": 80, "targetPort": 8080}]));
        let pods: Vec<Arc<Pod>> = (0..6).map(|i| pod(&format!("p{i}"), &format!("10.42.0.{i}"), i < 3, json!([]))).collect();
        let mut subsets = endpoints_for(&svc, &pods);
        assert!(!truncate(&mut subsets, 6));
        assert!(truncate(&mut subsets, 4));
        assert_eq!(ips(&subsets[0].addresses).len(), 3);
        assert_eq!(ips(&subsets[0].not_ready_addresses).len(), 1);
        assert!(truncate(&mut subsets, 2));
        assert_eq!((ips(&subsets[0].addresses).len(), subsets[0].not_ready_addresses.is_none()), (2, true));
    }

    #[test]
    fn slices_carry_conditions_and_split_at_one_hundred() {
        let svc = service(json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]));
        let pods = vec![
            pod("a", "10.42.0.1", true, json!([])),
            pod("b", "10.42.0.2", false, json!([])),
            terminating(pod("c", "10.42.0.3", true, json!([]))),
        ];
        let slices = slices_for(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let conds: Vec<(bool, bool, bool)> = slices[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(conds, [(true, true, false), (false, false, false), (false, true, true)]);
        let port = &slices[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some("http"), Some(8080), Some("TCP")));
        assert_eq!(slices[0].endpoints[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));

        let many: Vec<Arc<Pod>> =
            (0..250).map(|i| pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 200, i % 200), true, json!([]))).collect();
        let sizes: Vec<usize> = slices_for(&svc, &many).iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let empty = slices_for(&svc, &[]);
        assert_eq!(empty, [SliceContent { ports: None, endpoints: Vec::new() }], "an empty Service keeps one empty slice");
    }

    #[test]
    fn slice_plans_keep_what_matches_reuse_the_rest_and_delete_leftovers() {
        let svc = service(json!([{"port": 80, "targetPort": 8080}]));
        let content = |ips: &[&str]| {
            let pods: Vec<Arc<Pod>> = ips.iter().enumerate().map(|(i, ip)| pod(&format!("p{i}"), ip, true, json!([]))).collect();
            slices_for(&svc, &pods).remove(0)
        };
        let existing = |name: &str, c: SliceContent, labels_current: bool| ExistingSlice { name: name.into(), content: c, labels_current };
        let a = content(&["10.42.0.1"]);
        let b = content(&["10.42.0.2"]);

        // Up to date: nothing to do.
        assert_eq!(plan_slices(vec![a.clone()], &[existing("s1", a.clone(), true)]), SlicePlan::default());
        // Same content, stale labels: rewritten.
        let plan = plan_slices(vec![a.clone()], &[existing("s1", a.clone(), false)]);
        assert_eq!(plan.update, [("s1".to_string(), a.clone())]);
        // Changed content: the existing slice is rewritten, not replaced.
        let plan = plan_slices(vec![b.clone()], &[existing("s1", a.clone(), true)]);
        assert_eq!((plan.update.len(), plan.create.len(), plan.delete.len()), (1, 0, 0));
        // More wanted than there are: create; fewer: delete the extra.
        let plan = plan_slices(vec![a.clone(), b.clone()], &[existing("s1", a.clone(), true)]);
        assert_eq!((plan.update.len(), plan.create, plan.delete.len()), (0, vec![b.clone()], 0));
        let plan = plan_slices(vec![b.clone()], &[existing("s1", a.clone(), true), existing("s2", b.clone(), true)]);
        assert_eq!((plan.update.len(), plan.create.len(), plan.delete), (0, 0, vec!["s1".to_string()]));
    }

    #[test]
    fn services_without_selectors_or_of_type_external_name_are_left_alone() {
        let mut svc = service(json!([{"port": 80}]));
        assert!(selector(&svc).is_some());
        assert!(selects(selector(&svc).unwrap(), &pod("a", "10.42.0.1", true, json!([]))));
        svc.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(selector(&svc).is_none());
        svc.spec.as_mut().unwrap().type_ = None;
        svc.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(selector(&svc).is_none());
        let labels = object_labels(&svc, &[(SKIP_MIRROR_LABEL, "true")]);
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(!labels.contains_key(HEADLESS_LABEL));
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert!(object_labels(&svc, &[]).contains_key(HEADLESS_LABEL));
    }
}
