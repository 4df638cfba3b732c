//! `daas bench k8s podstart`: creates N pods already bound to one node (so the scheduler is
//! not in the measurement) and times, for each, from its creation until the node reports it
//! Running — the agent's pod start latency. Pods run `sleep`; they are deleted afterwards.
//! Bounded by `--timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct PodStart {
    /// Kubeconfig of the server (its current context)
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// The node (its agent) that runs the pods
    #[arg(long)]
    node: String,
    /// Pods to start
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Pods created at once
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Namespace (created if missing)
    #[arg(long, default_value = "podstart")]
    namespace: String,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The pods' image (what the containerd runtime runs; the process runtime records it)
    #[arg(long, default_value = "busybox")]
    image: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

pub async fn run(a: PodStart) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&a.kubeconfig).with_context(|| format!("reading {}", a.kubeconfig.display()))?;
    let client = Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)?;
    let ns: Api<Namespace> = Api::all(client.clone());
    match ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": a.namespace}}))?).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &a.namespace);
    let mut events = watcher(pods.clone(), watcher::Config::default().labels("bench=podstart")).default_backoff().applied_objects().boxed();
    let created: std::sync::Arc<parking_lot::Mutex<BTreeMap<String, Instant>>> = Default::default();
    let creator = {
        let (pods, created, node, count, clients, image) =
            (pods.clone(), created.clone(), a.node.clone(), a.count, a.clients, a.image.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..count)
                .for_each_concurrent(clients, |i| {
                    let (pods, created, node, image) = (pods.clone(), created.clone(), node.clone(), image.clone());
                    async move {
                        let name = format!("start-{i}");
                        let p: Pod = match serde_json::from_value(json!({
                            "metadata": {"name": name, "labels": {"bench": "podstart"}},
                            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]},
                        })) {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                        let t = Instant::now();
                        if pods.create(&PostParams::default(), &p).await.is_ok() {
                            created.lock().insert(name, t);
                        }
                    }
                })
                .await;
        })
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.timeout);
    let mut latency: BTreeMap<String, Duration> = BTreeMap::new();
    let mut running_at: BTreeMap<String, Instant> = BTreeMap::new();
    while latency.len() < a.count {
        let Ok(Some(ev)) = tokio::time::timeout_at(deadline.into(), events.next()).await else {
            bail!("{} of {} pods Running when the {} s limit ran out", latency.len(), a.count, a.timeout);
        };
        let Ok(p) = ev else { continue };
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            running_at.entry(name).or_insert_with(Instant::now);
        }
        let c = created.lock().clone();
        for (n, at) in &running_at {
            if let Some(t0) = c.get(n) {
                latency.entry(n.clone()).or_insert_with(|| at.saturating_duration_since(*t0));
            }
        }
    }
    let _ = creator.await;
    let mut v: Vec<Duration> = latency.values().copied().collect();
    v.sort();
    let q = |f: f64| v[((v.len() as f64 * f).ceil() as usize).clamp(1, v.len()) - 1];
    let (p50, p99, max) = (q(0.50), q(0.99), v[v.len() - 1]);
    pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=podstart")).await.ok();
    if a.json {
        println!(
            "{}",
            json!({"count": a.count, "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3, "max_ms": max.as_secs_f64() * 1e3, "all_running_s": started.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "{} pods on {}: created → Running p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; all Running after {:.2} s",
            a.count,
            a.node,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
