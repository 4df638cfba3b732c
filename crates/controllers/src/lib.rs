//! A cluster that runs itself: the scheduler and the workload, garbage-collection and node
//! controllers. They are clients of the API like any other — built on the kube crate's
//! watcher, reflector and Controller — and run inside `daas server` under leader election on
//! Leases in kube-system (`kube-controller-manager`, `kube-scheduler`), so two masters never
//! run the same controller at once.
#![forbid(unsafe_code)]

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod leader;
pub mod nodelifecycle;
pub mod replicaset;
pub mod scheduler;
pub mod sim;
pub mod statefulset;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Api, Client};

/// Every controller, by the name `--controllers` uses.
pub const ALL: &[&str] =
    &["scheduler", "replicaset", "deployment", "nodelifecycle", "job", "daemonset", "statefulset", "garbagecollector", "endpoints"];

/// What runs and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names of the controllers that run.
    pub enabled: Vec<String>,
    /// Who holds the leases: unique per process.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
    pub nodes: nodelifecycle::Settings,
}

impl Config {
    pub fn enabled(&self, name: &str) -> bool {
        self.enabled.iter().any(|n| n == name)
    }
}

/// Parses kube-controller-manager's `--controllers` syntax: `*` for all, `name` to add one,
/// `-name` to leave one out, comma-separated (`*,-deployment`).
pub fn parse_controllers(spec: &str) -> Result<Vec<String>, String> {
    let mut on: Vec<String> = Vec::new();
    let mut off: Vec<String> = Vec::new();
    let mut star = false;
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (neg, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        if name == "*" && !neg {
            star = true;
            continue;
        }
        if !ALL.contains(&name) {
            return Err(format!("unknown controller {name:?} (known: {})", ALL.join(", ")));
        }
        if neg { off.push(name.into()) } else { on.push(name.into()) }
    }
    Ok(ALL.iter().filter(|n| (star || on.iter().any(|o| o == *n)) && !off.iter().any(|o| o == *n)).map(|n| n.to_string()).collect())
}

/// Runs the enabled controllers until `stop` turns true.
pub async fn run(client: Client, cfg: Config, stop: tokio::sync::watch::Receiver<bool>) {
    let lock = |name: &str| leader::LeaseLock {
        api: Api::namespaced(client.clone(), "kube-system"),
        name: name.into(),
        identity: cfg.identity.clone(),
        duration: cfg.lease_duration,
    };
    let mut tasks = Vec::new();
    if cfg.enabled("scheduler") {
        let c = client.clone();
        tasks.push(tokio::spawn(leader::run_elected(lock("kube-scheduler"), cfg.renew_period, stop.clone(), move || {
            run_scheduler(c.clone())
        })));
    }
    let managed: Vec<String> = cfg.enabled.iter().filter(|n| *n != "scheduler").cloned().collect();
    if !managed.is_empty() {
        let c = client.clone();
        let conf = cfg.clone();
        tasks.push(tokio::spawn(leader::run_elected(lock("kube-controller-manager"), cfg.renew_period, stop.clone(), move || {
            run_manager(c.clone(), conf.clone())
        })));
    }
    tracing::info!(controllers = %cfg.enabled.join(","), "controllers waiting for leadership");
    for t in tasks {
        let _ = t.await;
    }
}

/// A watch of every `K` into a store, touching `notify` on each change.
fn cache<K>(client: Client, notify: Arc<tokio::sync::Notify>) -> (reflector::Store<K>, impl std::future::Future<Output = ()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff().reflect(writer);
    let run = async move {
        stream
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "watch");
                }
                notify.notify_one();
                futures::future::ready(())
            })
            .await;
    };
    (store, run)
}

async fn run_scheduler(client: Client) {
    let changes = Arc::new(tokio::sync::Notify::new());
    let (pods, pods_watch) = cache::<Pod>(client.clone(), changes.clone());
    let (nodes, nodes_watch) = cache::<Node>(client.clone(), changes.clone());
    let stats = Arc::new(scheduler::Stats::default());
    tokio::join!(pods_watch, nodes_watch, scheduler::run(client, pods, nodes, changes, stats));
}

async fn run_manager(client: Client, cfg: Config) {
    // One watch of pods, shared by every controller that follows pods.
    let (pods, writer) = reflector::store_shared::<Pod>(8192);
    let rs_pods = if cfg.enabled("replicaset") { writer.subscribe() } else { None };
    let job_pods = if cfg.enabled("job") { writer.subscribe() } else { None };
    let ds_pods = if cfg.enabled("daemonset") { writer.subscribe() } else { None };
    let sts_pods = if cfg.enabled("statefulset") { writer.subscribe() } else { None };
    let ep_pods = if cfg.enabled("endpoints") { writer.subscribe() } else { None };
    let pod_watch =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect_shared(writer).for_each(|ev| {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "pod watch");
            }
            futures::future::ready(())
        });
    let (replicasets, rs_writer) = reflector::store_shared::<ReplicaSet>(4096);
    let deploy_rs = if cfg.enabled("deployment") { rs_writer.subscribe() } else { None };
    let rs_watch = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect_shared(rs_writer)
        .for_each(|ev| {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "replicaset watch");
            }
            futures::future::ready(())
        });
    let rs = async {
        if let Some(sub) = rs_pods {
            replicaset::run(client.clone(), pods.clone(), sub).await;
        }
    };
    let deployments = async {
        if let Some(sub) = deploy_rs {
            deployment::run(client.clone(), replicasets.clone(), sub).await;
        }
    };
    // One watch of nodes too.
    let (nodes, node_writer) = reflector::store_shared::<Node>(1024);
    let ds_nodes = if cfg.enabled("daemonset") { node_writer.subscribe() } else { None };
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect_shared(node_writer)
        .for_each(|ev| {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "node watch");
            }
            futures::future::ready(())
        });
    let lifecycle = async {
        if cfg.enabled("nodelifecycle") {
            let (leases, leases_watch) = cache::<Lease>(client.clone(), Arc::new(tokio::sync::Notify::new()));
            tokio::join!(leases_watch, nodelifecycle::run(client.clone(), nodes.clone(), leases, pods.clone(), cfg.nodes.clone()));
        }
    };
    let daemonsets = async {
        if let (Some(p), Some(n)) = (ds_pods, ds_nodes) {
            daemonset::run(client.clone(), pods.clone(), p, nodes.clone(), n).await;
        }
    };
    let statefulsets = async {
        if let Some(sub) = sts_pods {
            statefulset::run(client.clone(), pods.clone(), sub).await;
        }
    };
    let jobs = async {
        if let Some(sub) = job_pods {
            job::run(client.clone(), pods.clone(), sub).await;
        }
    };
    let collector = async {
        if cfg.enabled("garbagecollector") {
            gc::run(client.clone()).await;
        }
    };
    let endpoints = async {
        if let Some(sub) = ep_pods {
            endpoints::run(client.clone(), pods.clone(), sub).await;
        }
    };
    tokio::join!(pod_watch, rs_watch, node_watch, rs, deployments, lifecycle, jobs, daemonsets, statefulsets, collector, endpoints);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_chosen_as_kube_controller_manager_does() {
        assert_eq!(parse_controllers("*").unwrap(), ALL);
        assert_eq!(
            parse_controllers("*,-scheduler").unwrap(),
            vec!["replicaset", "deployment", "nodelifecycle", "job", "daemonset", "statefulset", "garbagecollector", "endpoints"]
        );
        assert_eq!(parse_controllers("scheduler").unwrap(), vec!["scheduler"]);
        assert!(parse_controllers("*,-nope").unwrap_err().contains("unknown controller \"nope\""));
    }
}
