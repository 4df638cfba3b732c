//! `daas bench k8s schedule`: registers N hollow (SIMULATED) nodes, creates one Deployment of
//! R replicas, and times until every pod is bound — the whole chain of Deployment,
//! ReplicaSet and scheduler controllers — and the scheduler's rate while it binds. The hollow
//! nodes do not report pods (they stay Pending once bound), so the figure is the control
//! plane's alone. Bounded by `--timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct Schedule {
    /// Kubeconfig of the server (its current context)
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// Hollow nodes to register
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Replicas of the Deployment
    #[arg(long, default_value_t = 5000)]
    replicas: usize,
    /// Namespace (created if missing)
    #[arg(long, default_value = "sched")]
    namespace: String,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Schedule) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&a.kubeconfig).with_context(|| format!("reading {}", a.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    // Room for every pod: max pods per node from the replicas, cpu to spare.
    let per_node = a.replicas.div_ceil(a.nodes.max(1)) + 10;
    let opts = daas_controllers::sim::Options {
        capacity: daas_controllers::sim::Capacity { cpu: "64".into(), memory: "256Gi".into(), pods: per_node.to_string() },
        labels: BTreeMap::from([("bench".to_string(), a.namespace.clone())]),
        heartbeat: Duration::from_secs(10),
        report_pods: false,
    };
    let names = (0..a.nodes).map(|i| format!("{}-hollow-{i}", a.namespace)).collect();
    let _nodes = daas_controllers::sim::HollowNodes::start(client.clone(), names, opts).await.context("registering hollow nodes")?;
    let ns: Api<Namespace> = Api::all(client.clone());
    match ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": a.namespace}}))?).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &a.namespace);
    let mut events = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &a.namespace);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "load"},
        "spec": {
            "replicas": a.replicas,
            "selector": {"matchLabels": {"app": "load"}},
            "template": {
                "metadata": {"labels": {"app": "load"}},
                "spec": {"containers": [{"name": "main", "image": "load:1", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }))?;
    let started = Instant::now();
    deployments.create(&PostParams::default(), &d).await.context("creating the Deployment")?;
    let mut created: BTreeMap<String, Duration> = BTreeMap::new();
    let mut bound: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = started + Duration::from_secs(a.timeout);
    while bound.len() < a.replicas {
        let next = tokio::time::timeout_at(deadline.into(), events.next()).await;
        let Ok(Some(ev)) = next else {
            bail!("{} of {} pods bound ({} created) when the {} s limit ran out", bound.len(), a.replicas, created.len(), a.timeout);
        };
        let Ok(p) = ev else { continue };
        let name = p.metadata.name.clone().unwrap_or_default();
        let t = started.elapsed();
        created.entry(name.clone()).or_insert(t);
        if p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty()) {
            bound.entry(name).or_insert(t);
        }
    }
    let all_created = created.values().max().copied().unwrap_or_default();
    let first_bound = bound.values().min().copied().unwrap_or_default();
    let all_bound = bound.values().max().copied().unwrap_or_default();
    let rate = a.replicas as f64 / (all_bound - first_bound).as_secs_f64().max(1e-9);
    deployments.delete("load", &Default::default()).await.ok();
    if a.json {
        println!(
            "{}",
            json!({"nodes": a.nodes, "replicas": a.replicas, "all_created_s": all_created.as_secs_f64(), "first_bound_s": first_bound.as_secs_f64(), "all_bound_s": all_bound.as_secs_f64(), "bind_rate_per_s": rate})
        );
    } else {
        println!(
            "{} pods on {} hollow nodes: all created after {:.2} s, first bound {:.2} s, all bound {:.2} s; scheduler {:.0} pods/s",
            a.replicas,
            a.nodes,
            all_created.as_secs_f64(),
            first_bound.as_secs_f64(),
            all_bound.as_secs_f64(),
            rate
        );
    }
    Ok(())
}
