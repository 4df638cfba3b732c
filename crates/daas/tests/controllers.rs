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
    // `rollout status` and `wait` wait on purpose: give them their own --timeout and more.
    if args.first().is_some_and(|a| *a == "rollout" || *a == "wait") && args.get(1) != Some(&"history") && args.get(1) != Some(&"undo") {
        return s.spawn_kubectl(args, None).wait_exit(Duration::from_secs(90)).ok();
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_and_its_pods_move() {
    let s =
        Server::start_k8s(&["--controllers", "*", "--node-monitor-grace-period", "3s", "--default-unreachable-toleration-seconds", "2"]);
    let names = (1..=3).map(|i| format!("node-{i}")).collect();
    let nodes =
        HollowNodes::start(client(&s).await, names, Options { heartbeat: Duration::from_secs(1), ..Default::default() }).await.unwrap();
    s.kubectl_stdin(&["apply", "-f", "-"], &deployment("mover", 6, "m:1", "100m")).ok();
    let before = eventually(Duration::from_secs(30), "6 running pods", || {
        let by = running_by_node(&pods(&s, "app=mover"));
        (by.values().sum::<usize>() == 6).then_some(by)
    })
    .await;
    assert!(before.get("node-1").copied().unwrap_or(0) > 0, "{before:?}");

    // node-1's machine dies: no more leases, no more status.
    nodes.pause("node-1");
    eventually(Duration::from_secs(20), "node-1 Unknown and tainted unreachable", || {
        let n: Value = serde_json::from_str(&kubectl(&s, &["get", "node", "node-1", "-o", "json"])).unwrap();
        let ready = n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        let tainted =
            n["spec"]["taints"].as_array()?.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        (ready["status"] == "Unknown" && tainted).then_some(())
    })
    .await;
    let nodes_out = kubectl(&s, &["get", "nodes"]);
    assert!(nodes_out.lines().any(|l| l.starts_with("node-1") && l.contains("NotReady")), "{nodes_out}");
    // After the toleration (2 s here) its pods are evicted and replaced on the others.
    let after = eventually(Duration::from_secs(30), "six pods on node-2 and node-3", || {
        let ps = pods(&s, "app=mover");
        let by = running_by_node(&ps);
        let live = ps.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
        (by.values().sum::<usize>() == 6 && !by.contains_key("node-1") && live == 6).then_some(by)
    })
    .await;
    assert_eq!(after.len(), 2, "{after:?}");

    // A node whose stake is revoked is drained at once.
    kubectl(&s, &["taint", "nodes", "node-2", "k3s-daas.io/stake-revoked=slashed:NoExecute"]);
    eventually(Duration::from_secs(30), "node-2 drained", || {
        let by = running_by_node(&pods(&s, "app=mover"));
        (by.get("node-3").copied() == Some(6)).then_some(())
    })
    .await;
}

/// A Job whose pods exit with `exit` on the hollow nodes (SIMULATED: the
/// `k3s-daas.io/simulate-exit` annotation); `extra` adds spec lines.
fn job(name: &str, completions: u32, parallelism: u32, exit: i32, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  completions: {completions}\n  parallelism: {parallelism}\n{extra}  template:\n    metadata:\n      annotations:\n        k3s-daas.io/simulate-exit: \"{exit}\"\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox:1\n"
    )
}

fn job_json(s: &Server, name: &str) -> Value {
    serde_json::from_str(&kubectl(s, &["get", "job", name, "-o", "json"])).unwrap()
}

fn condition_types(job: &Value) -> Vec<String> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_at_their_backoff_limit_and_expire() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 2, "4").await;
    let watch = s.spawn_kubectl(&["get", "jobs", "--watch", "--output-watch-events", "-o", "json"], None);
    // Both at once: the failing one waits out the pod back-off (10 s, then 20 s) meanwhile.
    let manifests = [job("ok", 3, 2, 0, ""), job("bad", 1, 1, 1, "  backoffLimit: 2\n")].join("---\n");
    s.kubectl_stdin(&["apply", "-f", "-"], &manifests).ok();

    // Three successes, two at a time: kubectl wait sees Complete.
    tokio::task::block_in_place(|| {
        s.spawn_kubectl(&["wait", "--for=condition=complete", "job/ok", "--timeout=60s"], None).wait_exit(Duration::from_secs(70)).ok()
    });
    let ok = job_json(&s, "ok");
    assert_eq!(ok["status"]["succeeded"], 3, "{}", ok["status"]);
    assert_eq!(ok["status"]["active"], 0, "{}", ok["status"]);
    assert_eq!(condition_types(&ok), vec!["SuccessCriteriaMet", "Complete"], "{}", ok["status"]);
    assert!(ok["status"]["completionTime"].is_string() && ok["status"]["startTime"].is_string(), "{}", ok["status"]);
    let ok_pods = pods(&s, "batch.kubernetes.io/job-name=ok");
    assert_eq!(ok_pods.len(), 3, "one pod per completion, no more");
    assert!(ok_pods.iter().all(|p| p["status"]["phase"] == "Succeeded" && p["metadata"]["labels"]["job-name"] == "ok"));
    let table = kubectl(&s, &["get", "job", "ok"]);
    assert!(table.contains("Complete") && table.contains("3/3"), "{table}");

    // ttlSecondsAfterFinished: 1 — the Job completes, then goes.
    s.kubectl_stdin(&["apply", "-f", "-"], &job("brief", 1, 1, 0, "  ttlSecondsAfterFinished: 1\n")).ok();
    let brief_events = |out: &str| -> Vec<Value> {
        serde_json::Deserializer::from_str(out)
            .into_iter::<Value>()
            .filter_map(Result::ok)
            .filter(|e| e["object"]["metadata"]["name"] == "brief")
            .collect()
    };
    eventually(Duration::from_secs(30), "job/brief deleted", || {
        brief_events(&watch.stdout_now()).iter().any(|e| e["type"] == "DELETED").then_some(())
    })
    .await;
    let events = brief_events(&watch.kill().stdout);
    let completed = events.iter().position(|e| condition_types(&e["object"]).contains(&"Complete".to_string()));
    let deleted = events.iter().position(|e| e["type"] == "DELETED");
    assert!(matches!((completed, deleted), (Some(c), Some(d)) if c < d), "complete, then deleted: {events:?}");
    let left = kubectl(&s, &["get", "jobs", "-o", "name"]);
    assert!(!left.contains("job.batch/brief") && left.contains("job.batch/ok"), "{left}");

    // Exit 1 three times against a backoffLimit of 2: Failed, and no fourth pod.
    let bad = eventually(Duration::from_secs(90), "job/bad failed", || {
        let j = job_json(&s, "bad");
        condition_types(&j).contains(&"Failed".to_string()).then_some(j)
    })
    .await;
    assert_eq!(condition_types(&bad), vec!["FailureTarget", "Failed"], "{}", bad["status"]);
    let failed = bad["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").unwrap().clone();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(failed["message"], "Job has reached the specified backoff limit");
    assert_eq!(bad["status"]["failed"], 3, "{}", bad["status"]);
    assert!(bad["status"]["completionTime"].is_null(), "only success completes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bad_pods = pods(&s, "job-name=bad");
    assert_eq!(bad_pods.len(), 3, "no pod after the limit");
    let exited_1 =
        |p: &Value| p["status"]["phase"] == "Failed" && p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1;
    assert!(bad_pods.iter().all(exited_1), "{bad_pods:?}");
}

fn daemonset(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_node_rolls_and_follows_taints() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 3, "4").await;
    s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("agent", "agent:1")).ok();

    // One pod on each node, bound by the scheduler through the node affinity the controller set.
    let by = eventually(Duration::from_secs(30), "a running agent on each node", || {
        let by = running_by_node(&pods(&s, "app=agent"));
        (by.len() == 3 && by.values().all(|n| *n == 1)).then_some(by)
    })
    .await;
    assert!(["node-1", "node-2", "node-3"].iter().all(|n| by.contains_key(*n)), "{by:?}");
    for p in pods(&s, "app=agent") {
        let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchFields"][0]["values"][0], p["spec"]["nodeName"], "{p}");
        assert_eq!(p["metadata"]["labels"]["pod-template-generation"], "1");
        assert!(p["metadata"]["labels"]["controller-revision-hash"].is_string());
    }
    kubectl(&s, &["rollout", "status", "ds/agent", "--timeout=60s"]);

    // A new template replaces the pods node by node: never more than one node without its agent.
    kubectl(&s, &["set", "image", "ds/agent", "main=agent:2"]);
    let started = Instant::now();
    let mut lowest = usize::MAX;
    loop {
        let ps = pods(&s, "app=agent");
        lowest = lowest.min(running_by_node(&ps).values().sum::<usize>());
        let all_new =
            ps.len() == 3 && ps.iter().all(|p| p["spec"]["containers"][0]["image"] == "agent:2" && p["status"]["phase"] == "Running");
        if all_new {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the rollout did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lowest >= 2, "availability fell to {lowest} (maxUnavailable 1)");
    kubectl(&s, &["rollout", "status", "ds/agent", "--timeout=60s"]);

    // A NoExecute taint the daemon does not tolerate takes it off that node, and only that one.
    kubectl(&s, &["taint", "nodes", "node-3", "dedicated=infra:NoExecute"]);
    eventually(Duration::from_secs(30), "no agent on node-3", || {
        let ps = pods(&s, "app=agent");
        let by = running_by_node(&ps);
        (ps.len() == 2 && by.len() == 2 && !by.contains_key("node-3")).then_some(())
    })
    .await;
    let status = eventually(Duration::from_secs(30), "status counts two nodes, none misscheduled", || {
        let ds: Value = serde_json::from_str(&kubectl(&s, &["get", "ds", "agent", "-o", "json"])).unwrap();
        let st = &ds["status"];
        (st["desiredNumberScheduled"] == 2 && st["numberAvailable"] == 2 && st["numberMisscheduled"] == 0).then(|| st.clone())
    })
    .await;
    assert_eq!(status["updatedNumberScheduled"], 2, "{status}");
    assert_eq!(status["currentNumberScheduled"], 2, "{status}");
    kubectl(&s, &["rollout", "status", "ds/agent", "--timeout=60s"]);
}

fn statefulset(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\nspec:\n  serviceName: {name}\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: {name}:1\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_starts_in_order_and_scales_down_from_the_top() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 3, "4").await;
    s.kubectl_stdin(&["apply", "-f", "-"], &statefulset("db", 3)).ok();

    let members = eventually(Duration::from_secs(30), "three running members", || {
        let ps = pods(&s, "app=db");
        (running_by_node(&ps).values().sum::<usize>() == 3).then_some(ps)
    })
    .await;
    let by_name: HashMap<String, Value> =
        members.into_iter().map(|p| (p["metadata"]["name"].as_str().unwrap_or("").to_string(), p)).collect();
    let mut names: Vec<&str> = by_name.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    // Each waited for the one before it (timestamps are whole seconds: "not before").
    let created = |n: &str| by_name[n]["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string();
    assert!(created("db-0") <= created("db-1") && created("db-1") <= created("db-2"), "{by_name:?}");
    for (name, p) in &by_name {
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "db");
        assert_eq!(p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], name.as_str());
        assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], &name["db-".len()..]);
    }
    kubectl(&s, &["rollout", "status", "sts/db", "--timeout=60s"]);
    let sts: Value = serde_json::from_str(&kubectl(&s, &["get", "sts", "db", "-o", "json"])).unwrap();
    assert_eq!(sts["status"]["currentRevision"], sts["status"]["updateRevision"], "{}", sts["status"]);
    assert_eq!(by_name["db-0"]["metadata"]["labels"]["controller-revision-hash"], sts["status"]["updateRevision"]);

    // Down to one: db-2 and db-1 go, db-0 stays the same pod.
    let db0 = by_name["db-0"]["metadata"]["uid"].clone();
    kubectl(&s, &["scale", "sts/db", "--replicas=1"]);
    let left = eventually(Duration::from_secs(30), "only db-0 left", || {
        let ps = pods(&s, "app=db");
        (ps.len() == 1 && ps[0]["metadata"]["name"] == "db-0").then(|| ps[0].clone())
    })
    .await;
    assert_eq!(left["metadata"]["uid"], db0);
    kubectl(&s, &["rollout", "status", "sts/db", "--timeout=60s"]);
}

fn exists(s: &Server, kind: &str, name: &str) -> bool {
    !kubectl(s, &["get", kind, name, "--ignore-not-found", "-o", "name"]).trim().is_empty()
}

fn count(s: &Server, kind: &str, selector: &str) -> usize {
    let out = kubectl(s, &["get", kind, "-l", selector, "-o", "json"]);
    serde_json::from_str::<Value>(&out).unwrap()["items"].as_array().map_or(0, |a| a.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_in_all_three_modes() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 2, "8").await;
    for name in ["bg", "fg", "orph"] {
        s.kubectl_stdin(&["apply", "-f", "-"], &deployment(name, 3, "x:1", "10m")).ok();
    }
    for name in ["bg", "fg", "orph"] {
        let sel = format!("app={name}");
        eventually(Duration::from_secs(30), "3 running pods each", || {
            (running_by_node(&pods(&s, &sel)).values().sum::<usize>() == 3).then_some(())
        })
        .await;
    }

    // Background: the Deployment goes at once; its ReplicaSet and pods follow.
    kubectl(&s, &["delete", "deployment", "bg", "--cascade=background"]);
    assert!(!exists(&s, "deployment", "bg"));
    eventually(Duration::from_secs(30), "bg's ReplicaSet and pods collected", || {
        (count(&s, "rs", "app=bg") == 0 && count(&s, "pods", "app=bg") == 0).then_some(())
    })
    .await;

    // Foreground: the Deployment stays (with its foregroundDeletion finalizer) until its
    // ReplicaSet and pods are gone.
    kubectl(&s, &["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"]);
    let d: Value = serde_json::from_str(&kubectl(&s, &["get", "deployment", "fg", "-o", "json"])).unwrap();
    assert!(d["metadata"]["finalizers"].to_string().contains("foregroundDeletion"), "{}", d["metadata"]);
    let mut order = Vec::new();
    eventually(Duration::from_secs(60), "fg and its dependents gone", || {
        let (d, r, p) = (usize::from(exists(&s, "deployment", "fg")), count(&s, "rs", "app=fg"), count(&s, "pods", "app=fg"));
        order.push((d, r, p));
        (d == 0 && r == 0 && p == 0).then_some(())
    })
    .await;
    assert!(order.iter().all(|(d, r, p)| (*p == 0 || (*r > 0 && *d > 0)) && (*r == 0 || *d > 0)), "owners outlive dependents: {order:?}");

    // Orphan: the Deployment goes, its ReplicaSet and pods stay, freed of their owner.
    kubectl(&s, &["delete", "deployment", "orph", "--cascade=orphan"]);
    eventually(Duration::from_secs(30), "orph deleted", || (!exists(&s, "deployment", "orph")).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs: Value = serde_json::from_str(&kubectl(&s, &["get", "rs", "-l", "app=orph", "-o", "json"])).unwrap();
    let items = rs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()), "{}", items[0]["metadata"]);
    assert_eq!(running_by_node(&pods(&s, "app=orph")).values().sum::<usize>(), 3);
}

/// A Service over the pods of `deployment(name, ..)`: port 80 to their port 8080.
fn service_for(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
    )
}

/// The ENDPOINTS column of `kubectl get endpoints <name>` split at commas; None when the
/// Endpoints object does not exist.
fn endpoints_column(s: &Server, name: &str) -> Option<Vec<String>> {
    let out = s.kubectl(&["get", "endpoints", name, "--no-headers"]);
    if out.code != Some(0) {
        assert!(out.stderr.contains("NotFound"), "{out}");
        return None;
    }
    let column = out.stdout.split_whitespace().nth(1).unwrap_or("").to_string();
    Some(if column == "<none>" { Vec::new() } else { column.split(',').map(str::to_string).collect() })
}

/// The EndpointSlices of Service `name`.
fn slices_of(s: &Server, name: &str) -> Vec<Value> {
    let out = kubectl(s, &["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={name}"), "-o", "json"]);
    serde_json::from_str::<Value>(&out).unwrap()["items"].as_array().cloned().unwrap_or_default()
}

/// The addresses of the ready endpoints across `slices`.
fn ready_addresses(slices: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = slices
        .iter()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_their_ready_pods_in_endpoints_and_endpointslices() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 3, "4").await;
    let manifests = [deployment("web", 3, "web:1", "100m"), service_for("web")].join("---\n");
    s.kubectl_stdin(&["apply", "-f", "-"], &manifests).ok();

    // Three Running and Ready pods with their 10.42.x.y addresses, each at the target port.
    let listed = eventually(Duration::from_secs(60), "three addresses in endpoints/web", || {
        endpoints_column(&s, "web").filter(|eps| eps.len() == 3)
    })
    .await;
    let mut pod_ips: Vec<String> =
        pods(&s, "app=web").iter().filter_map(|p| p["status"]["podIP"].as_str().map(|ip| format!("{ip}:8080"))).collect();
    pod_ips.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, pod_ips, "{listed:?}");
    assert!(listed.iter().all(|e| e.starts_with("10.42.")), "{listed:?}");
    let ep: Value = serde_json::from_str(&kubectl(&s, &["get", "endpoints", "web", "-o", "json"])).unwrap();
    assert_eq!(ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true", "{ep}");
    assert_eq!(ep["subsets"][0]["ports"][0], serde_json::json!({"name": "http", "port": 8080, "protocol": "TCP"}), "{ep}");
    let first = &ep["subsets"][0]["addresses"][0];
    assert_eq!(first["targetRef"]["kind"], "Pod", "{ep}");
    assert!(first["nodeName"].as_str().is_some_and(|n| n.starts_with("node-")), "{ep}");

    // The same pods, ready, in an EndpointSlice the Service owns.
    let slices = eventually(Duration::from_secs(30), "three ready endpoints in the slices of web", || {
        let slices = slices_of(&s, "web");
        (ready_addresses(&slices).len() == 3).then_some(slices)
    })
    .await;
    assert_eq!(slices.len(), 1, "{slices:?}");
    let slice = &slices[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert!(slice["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("web-")), "{slice}");
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()), (Some("Service"), Some("web"), Some(true)));
    let mut want: Vec<String> = listed.iter().map(|e| e.trim_end_matches(":8080").to_string()).collect();
    want.sort();
    assert_eq!(ready_addresses(&slices), want);
    let table = kubectl(&s, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    assert!(table.contains("ADDRESSTYPE") && table.contains("IPv4") && table.contains("8080"), "{table}");

    // Down to one pod: one address.
    kubectl(&s, &["scale", "deployment/web", "--replicas=1"]);
    let one =
        eventually(Duration::from_secs(60), "one address in endpoints/web", || endpoints_column(&s, "web").filter(|e| e.len() == 1)).await;
    assert!(one[0].ends_with(":8080"), "{one:?}");
    eventually(Duration::from_secs(30), "one ready endpoint in the slices", || {
        (ready_addresses(&slices_of(&s, "web")).len() == 1).then_some(())
    })
    .await;

    // The Service goes, and its Endpoints and slices with it.
    kubectl(&s, &["delete", "service", "web"]);
    eventually(Duration::from_secs(60), "endpoints/web deleted", || endpoints_column(&s, "web").is_none().then_some(())).await;
    eventually(Duration::from_secs(60), "the slices of web deleted", || slices_of(&s, "web").is_empty().then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_restart_and_namespace_deletion() {
    let s = Server::start_k8s(&["--controllers", "*"]);
    let _nodes = hollow(&s, 2, "8").await;
    kubectl(&s, &["create", "namespace", "team"]);
    s.kubectl_stdin(&["apply", "-n", "team", "-f", "-"], &deployment("web", 2, "web:1", "10m")).ok();
    kubectl(&s, &["rollout", "status", "-n", "team", "deployment/web", "--timeout=60s"]);
    let replica_sets = || count(&s, "rs", "app=web") + kubectl(&s, &["get", "rs", "-n", "team", "-o", "name"]).lines().count();

    // Paused: a template change makes no new ReplicaSet until resumed.
    kubectl(&s, &["rollout", "pause", "-n", "team", "deployment/web"]);
    kubectl(&s, &["set", "image", "-n", "team", "deployment/web", "main=web:2"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replica_sets(), 1);
    let d: Value = serde_json::from_str(&kubectl(&s, &["get", "deployment", "-n", "team", "web", "-o", "json"])).unwrap();
    assert!(d["status"]["conditions"].to_string().contains("DeploymentPaused"), "{}", d["status"]);
    kubectl(&s, &["rollout", "resume", "-n", "team", "deployment/web"]);
    kubectl(&s, &["rollout", "status", "-n", "team", "deployment/web", "--timeout=60s"]);
    assert_eq!(replica_sets(), 2);
    // A restart stamps the template, so a new ReplicaSet rolls out.
    kubectl(&s, &["rollout", "restart", "-n", "team", "deployment/web"]);
    kubectl(&s, &["rollout", "status", "-n", "team", "deployment/web", "--timeout=60s"]);
    assert_eq!(replica_sets(), 3);

    // Deleting the namespace takes its workloads with it; nothing is recreated.
    kubectl(&s, &["delete", "namespace", "team", "--wait=false"]);
    eventually(Duration::from_secs(60), "the namespace is gone", || (!exists(&s, "namespace", "team")).then_some(())).await;
    assert_eq!(kubectl(&s, &["get", "pods", "-n", "team", "-o", "name"]).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_per_lease_and_takeover_after_expiry() {
    use daas_controllers::leader::LeaseLock;
    use k8s_openapi::api::coordination::v1::Lease;
    let s = Server::start_k8s(&[]);
    let c = client(&s).await;
    let lock = |id: &str, secs: u64| LeaseLock {
        api: kube::Api::<Lease>::namespaced(c.clone(), "kube-system"),
        name: "contended".into(),
        identity: id.into(),
        duration: Duration::from_secs(secs),
    };
    let (a, b) = (lock("master-a", 2), lock("master-b", 2));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap(), "held by a");
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    // Both at once: exactly one wins.
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    assert!(ra.unwrap() && !rb.unwrap());
    // a stops renewing; after the lease duration b takes over, and a cannot come back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(b.try_acquire_or_renew().await.unwrap(), "b takes the expired lease");
    assert!(!a.try_acquire_or_renew().await.unwrap());
    let l: Lease = kube::Api::<Lease>::namespaced(c.clone(), "kube-system").get("contended").await.unwrap();
    let spec = l.spec.unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("master-b"), Some(1)));
    // Released on shutdown, it is free at once.
    b.release().await;
    assert!(a.try_acquire_or_renew().await.unwrap());
}
