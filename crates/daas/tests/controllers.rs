//! A cluster that runs itself: the scheduler, the ReplicaSet and Deployment controllers inside
//! `daas server`, driven by plain kubectl, with hollow (SIMULATED) nodes standing in for
//! workers: they register, renew their leases and report bound pods as Running and Ready.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Server;
use daas_controllers::sim::{Capacity, HollowNodes, Options};
use serde_json::Value;

async fn client(s: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn hollow(s: &Server, n: usize, cpu: &str) -> HollowNodes {
    let names = (1..=n).map(|i| format!("node-{i}")).collect();
    let opts =
        Options { capacity: Capacity { cpu: cpu.into(), ..Default::default() }, heartbeat: Duration::from_secs(5), ..Default::default() };
    HollowNodes::start(client(s).await, names, opts).await.unwrap()
}

fn kubectl(s: &Server, args: &[&str]) -> String {
    s.kubectl(args).ok()
}

fn pods(s: &Server, selector: &str) -> Vec<Value> {
    let out = kubectl(s, &["get", "pods", "-l", selector, "-o", "json"]);
    serde_json::from_str::<Value>(&out).unwrap()["items"].as_array().cloned().unwrap_or_default()
}

async fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = tokio::task::block_in_place(&mut f) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn deployment(name: &str, replicas: u32, image: &str, cpu: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 1\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n        resources:\n          requests:\n            cpu: {cpu}\n"
    )
}

fn running_by_node(pods: &[Value]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for p in pods {
        if p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null() {
            *by.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
        }
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_spread_roll_undo_and_scale_over_hollow_nodes() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 3, "4").await;
    s.kubectl_stdin(&["apply", "-f", "-"], &deployment("web", 10, "web:1", "100m")).ok();

    // Ten pods, bound by the scheduler across all three nodes, Running and Ready.
    let spread = eventually(Duration::from_secs(30), "10 running pods", || {
        let by = running_by_node(&pods(&s, "app=web"));
        (by.values().sum::<usize>() == 10).then_some(by)
    })
    .await;
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert!(spread.values().all(|n| *n >= 3), "spread evenly: {spread:?}");
    kubectl(&s, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let scheduled = kubectl(&s, &["get", "events", "--field-selector", "reason=Scheduled", "-o", "name"]);
    assert!(scheduled.lines().count() >= 10, "a Scheduled event per pod: {scheduled}");

    // A rolling update replaces every pod, never dropping below replicas - maxUnavailable.
    kubectl(&s, &["set", "image", "deployment/web", "main=web:2"]);
    let started = Instant::now();
    let mut lowest = usize::MAX;
    loop {
        let ps = pods(&s, "app=web");
        let ready_running = running_by_node(&ps).values().sum::<usize>();
        lowest = lowest.min(ready_running);
        let all_new =
            ps.len() == 10 && ps.iter().all(|p| p["spec"]["containers"][0]["image"] == "web:2" && p["status"]["phase"] == "Running");
        if all_new {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the rollout did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lowest >= 9, "availability fell to {lowest} (maxUnavailable 1)");
    kubectl(&s, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let history = kubectl(&s, &["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo goes back to the first template, as revision 3.
    kubectl(&s, &["rollout", "undo", "deployment/web"]);
    eventually(Duration::from_secs(60), "undo", || {
        let ps = pods(&s, "app=web");
        (ps.len() == 10 && ps.iter().all(|p| p["spec"]["containers"][0]["image"] == "web:1" && p["status"]["phase"] == "Running"))
            .then_some(())
    })
    .await;
    let rs = kubectl(&s, &["get", "rs", "-l", "app=web", "-o", "json"]);
    let rs: Value = serde_json::from_str(&rs).unwrap();
    let revisions: Vec<&str> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str())
        .collect();
    assert!(revisions.contains(&"3") && revisions.len() == 2, "{revisions:?}");

    // Scale to zero and back.
    kubectl(&s, &["scale", "deployment/web", "--replicas=0"]);
    eventually(Duration::from_secs(30), "no pods", || pods(&s, "app=web").is_empty().then_some(())).await;
    kubectl(&s, &["scale", "deployment/web", "--replicas=4"]);
    eventually(Duration::from_secs(30), "four pods", || (running_by_node(&pods(&s, "app=web")).values().sum::<usize>() == 4).then_some(()))
        .await;
    kubectl(&s, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let d: Value = serde_json::from_str(&kubectl(&s, &["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(d["status"]["availableReplicas"], 4, "{}", d["status"]);
    let available = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Available").unwrap().clone();
    assert_eq!(available["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_fit_nowhere_say_why() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 3, "2").await;
    kubectl(&s, &["taint", "nodes", "node-1", "dedicated=gpu:NoSchedule"]);
    s.kubectl_stdin(&["apply", "-f", "-"], &deployment("big", 1, "big:1", "3")).ok();
    let message = eventually(Duration::from_secs(30), "a FailedScheduling event", || {
        let out = kubectl(&s, &["get", "events", "--field-selector", "reason=FailedScheduling", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().and_then(|i| i.first()).and_then(|e| e["message"].as_str().map(str::to_string))
    })
    .await;
    assert_eq!(message, "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.");
    let p = &pods(&s, "app=big")[0];
    let cond = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap().clone();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("Unschedulable")));
    let describe = kubectl(&s, &["describe", "pod", "-l", "app=big"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    // Room appears (the taint goes, the request shrinks to fit): the pod is placed.
    kubectl(&s, &["set", "resources", "deployment/big", "--requests=cpu=1"]);
    eventually(Duration::from_secs(30), "the smaller pod runs", || {
        let by = running_by_node(&pods(&s, "app=big"));
        (by.values().sum::<usize>() == 1).then_some(())
    })
    .await;
}
