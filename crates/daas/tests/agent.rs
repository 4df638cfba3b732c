//! Workers that earn their place, end to end on one machine: `daas server` and two
//! `daas agent` processes (own node names, data dirs) with stakes on the development ledger.
//! A Deployment of `python3` HTTP servers with a readiness probe runs Ready across both nodes;
//! `kubectl logs` and `kubectl exec` go through the reverse tunnel; a SIGKILLed agent's node
//! goes NotReady and its pods come back on the other; a crash-looping container shows
//! CrashLoopBackOff; an agent without a stake is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Running, Server, daas_command, daas_ok, eventually, pod_ready, spawn_command, staked_worker};
use serde_json::Value;

fn agent(s: &Server, dir: &Path, node: &str, key: &Path, stake: &str) -> Running {
    let mut cmd = daas_command();
    cmd.args(["agent", "--server", s.https_url(), "--node-name", node, "--sui-key"]).arg(key);
    cmd.args(["--stake-object", stake, "--danger-accept-simulation", "--heartbeat", "1s", "--data-dir"]).arg(dir.join(node));
    spawn_command(cmd, format!("daas agent {node}"), None)
}

fn web(dir: &Path) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: python:3
        workingDir: {dir}
        command: ["python3", "-c"]
        args:
        - |
          import http.server, os
          s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
          open("port-" + os.environ["POD_UID"], "w").write(str(s.server_port))
          print("serving on", s.server_port, flush=True)
          s.serve_forever()
        env:
        - name: POD_UID
          valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
        readinessProbe:
          exec:
            command: ["python3", "-c", "import urllib.request, os; urllib.request.urlopen('http://127.0.0.1:' + open('port-' + os.environ['POD_UID']).read())"]
          periodSeconds: 1
"#,
        dir = dir.display()
    )
}

#[test]
fn two_agents_run_a_deployment_with_logs_exec_failover_and_crash_loops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let s = Server::start_k8s_in(
        &data,
        &["--controllers", "*", "--node-monitor-grace-period", "4s", "--default-unreachable-toleration-seconds", "2"],
    );
    let mut stakes = Vec::new();
    for node in ["agent-a", "agent-b"] {
        let (key, stake) = staked_worker(dir.path(), &data, node);
        stakes.push((node, key, stake));
    }
    let _reaper = Reaper(dir.path().to_path_buf());
    let mut a = Some(agent(&s, dir.path(), stakes[0].0, &stakes[0].1, &stakes[0].2));
    let b = agent(&s, dir.path(), stakes[1].0, &stakes[1].1, &stakes[1].2);
    eventually(Duration::from_secs(30), "both nodes Ready", || {
        let nodes = s.kubectl_json(&["get", "nodes", "-o", "json"]);
        let ready = nodes["items"].as_array()?.iter().filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        });
        (ready.count() == 2).then_some(())
    });
    let node = s.kubectl_json(&["get", "node", "agent-a", "-o", "json"]);
    assert_eq!(node["metadata"]["labels"]["k3s-daas.io/stake-tier"], "write");
    assert!(node["status"]["capacity"]["cpu"].as_str().unwrap().parse::<u32>().unwrap() >= 1, "measured: {}", node["status"]["capacity"]);

    // Three HTTP servers, Ready by their probe, across both nodes.
    s.kubectl_stdin(&["apply", "-f", "-"], &web(&work)).ok();
    let pods = eventually(Duration::from_secs(60), "3 ready web pods", || {
        let ps = s.kubectl_json(&["get", "pods", "-l", "app=web", "-o", "json"])["items"].as_array().cloned()?;
        (ps.len() == 3 && ps.iter().all(|p| p["status"]["phase"] == "Running" && pod_ready(p))).then_some(ps)
    });
    let nodes: std::collections::BTreeSet<&str> = pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    assert_eq!(nodes.len(), 2, "spread over both agents: {nodes:?}");
    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let logs = s.kubectl(&["logs", &name]).ok();
    assert!(logs.contains("serving on"), "{logs}");
    let out = s.kubectl(&["exec", &name, "--", "sh", "-c", "echo hello from $HOSTNAME; exit 0"]).ok();
    assert_eq!(out.trim(), format!("hello from {name}"));
    let failed = s.kubectl(&["exec", &name, "--", "sh", "-c", "exit 7"]);
    assert_ne!(failed.code, Some(0));

    // SIGKILL agent-a: its node goes NotReady and its pods come back on agent-b.
    a.take().unwrap().kill();
    eventually(Duration::from_secs(30), "agent-a NotReady", || {
        let out = s.kubectl(&["get", "nodes"]).ok();
        out.lines().any(|l| l.starts_with("agent-a") && l.contains("NotReady")).then_some(())
    });
    eventually(Duration::from_secs(90), "3 ready web pods on agent-b", || {
        let ps = s.kubectl_json(&["get", "pods", "-l", "app=web", "-o", "json"])["items"].as_array().cloned()?;
        let live: Vec<&Value> = ps.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        (live.len() == 3 && live.iter().all(|p| p["spec"]["nodeName"] == "agent-b" && pod_ready(p))).then_some(())
    });

    // A container that keeps failing backs off.
    s.kubectl(&["create", "deployment", "crasher", "--image=busybox", "--", "sh", "-c", "echo boom; exit 3"]).ok();
    eventually(Duration::from_secs(60), "CrashLoopBackOff", || {
        let out = s.kubectl(&["get", "pods", "-l", "app=crasher"]).ok();
        out.contains("CrashLoopBackOff").then_some(())
    });
    let logs = s.kubectl(&["logs", "-l", "app=crasher"]).ok();
    assert!(logs.contains("boom"), "{logs}");

    // No stake, no node: the agent is refused and says why.
    let key = dir.path().join("nobody.key");
    daas_ok(&["dev", "keygen", "--out", key.to_str().unwrap()]);
    let refused = agent(&s, dir.path(), "agent-c", &key, &stakes[0].2).wait_exit(Duration::from_secs(30));
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("wrong-owner") || refused.stderr.contains("wrong-node"), "{}", refused.stderr);

    // SIGTERM: agent-b cordons its node and stops its pods before it exits.
    let out = b.terminate(Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let node = s.kubectl_json(&["get", "node", "agent-b", "-o", "json"]);
    assert_eq!(node["spec"]["unschedulable"], true);
}

/// Processes a SIGKILLed agent left behind (its pods) die with the test.
struct Reaper(std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().to_string();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mentions = String::from_utf8_lossy(&cmdline).contains(&*self.0.to_string_lossy());
            if cwd.starts_with(&self.0) || mentions {
                let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
}

#[test]
fn an_agent_restart_readopts_its_pods_and_a_master_restart_is_rejoined() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _reaper = Reaper(dir.path().to_path_buf());
    // A fixed port, so the restarted master is where the agent looks for it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = || {
        let mut cmd = daas_command();
        cmd.args([
            "server",
            "--etcd-listen",
            "127.0.0.1:0",
            "--https-listen",
            &format!("127.0.0.1:{port}"),
            "--controllers",
            "*",
            "--data-dir",
        ])
        .arg(&data);
        Server::start_command(cmd, &data)
    };
    let s = start();
    let (key, stake) = staked_worker(dir.path(), &data, "solo");
    let a = agent(&s, dir.path(), "solo", &key, &stake);
    s.kubectl(&["create", "deployment", "sleeper", "--image=busybox", "--replicas=2", "--", "sh", "-c", "echo started $$; sleep 3600"])
        .ok();
    let pids = |s: &Server| -> Vec<(String, String)> {
        let ps = s.kubectl_json(&["get", "pods", "-l", "app=sleeper", "-o", "json"])["items"].as_array().cloned().unwrap_or_default();
        let mut v: Vec<(String, String)> = ps
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && pod_ready(p))
            .map(|p| {
                (p["metadata"]["name"].as_str().unwrap_or("").to_string(), p["status"]["containerStatuses"][0]["restartCount"].to_string())
            })
            .collect();
        v.sort();
        v
    };
    let before = eventually(Duration::from_secs(60), "2 running sleepers", || {
        let v = pids(&s);
        (v.len() == 2).then_some(v)
    });
    let logs_before = s.kubectl(&["logs", &before[0].0]).ok();

    // The agent dies and comes back on the same data dir: the same pods, not restarted, same logs.
    a.kill();
    let a = agent(&s, dir.path(), "solo", &key, &stake);
    std::thread::sleep(Duration::from_secs(3));
    let after = eventually(Duration::from_secs(30), "the sleepers re-adopted", || {
        let v = pids(&s);
        (v.len() == 2).then_some(v)
    });
    assert_eq!(after, before, "same pods, restart counts unchanged");
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x003600\x00"))
        .count();
    assert!(procs >= 2, "the containers still run: {procs}");
    assert_eq!(s.kubectl(&["logs", &before[0].0]).ok(), logs_before, "logs kept across the agent restart");

    // A pod force-deleted while the agent is away is stopped when it comes back.
    let orphan = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"}, "spec": {"nodeName": "solo",
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3599"]}]}}"#;
    s.kubectl_stdin(&["create", "-f", "-"], orphan).ok();
    let orphans = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x003599\x00"))
            .count()
    };
    eventually(Duration::from_secs(30), "the orphan running", || (orphans() == 1).then_some(()));
    a.kill();
    s.kubectl(&["delete", "pod", "orphan", "--force", "--grace-period=0"]);
    let a = agent(&s, dir.path(), "solo", &key, &stake);
    eventually(Duration::from_secs(30), "the orphan stopped", || (orphans() == 0).then_some(()));

    // The master restarts (new enclave key: the agent's token is void); the agent rejoins.
    s.stop();
    let s = start();
    let restarted = k8s_openapi::jiff::Timestamp::now();
    eventually(Duration::from_secs(60), "a heartbeat after the master restarted", || {
        let n = s.kubectl_json(&["get", "node", "solo", "-o", "json"]);
        let hb = n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?["lastHeartbeatTime"].as_str()?.to_string();
        (hb.parse::<k8s_openapi::jiff::Timestamp>().ok()? > restarted).then_some(())
    });
    // Its tunnel is back too (exec goes through it), and the pods never stopped.
    let out = eventually(Duration::from_secs(30), "exec through the new tunnel", || {
        let o = s.kubectl(&["exec", &before[0].0, "--", "echo", "still here"]);
        (o.code == Some(0)).then_some(o.stdout)
    });
    assert_eq!(out.trim(), "still here");
    assert_eq!(pids(&s), before);
    drop(a);
}

#[test]
fn a_slashed_workers_tunnel_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No controllers: nothing evicts the pod, so only the tunnel decides whether exec works.
    let s = Server::start_k8s_in(&data, &["--controllers", ""]);
    let _reaper = Reaper(dir.path().to_path_buf());
    let (key, stake) = staked_worker(dir.path(), &data, "slashed");
    let d = data.to_str().unwrap();
    let _a = agent(&s, dir.path(), "slashed", &key, &stake);
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "slashed",
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}"#;
    eventually(Duration::from_secs(30), "the node registered", || s.try_kubectl_json(&["get", "node", "slashed", "-o", "json"]));
    s.kubectl_stdin(&["create", "-f", "-"], pod).ok();
    let out = eventually(Duration::from_secs(30), "exec through the tunnel", || {
        let o = s.kubectl(&["exec", "p", "--", "echo", "in"]);
        (o.code == Some(0)).then_some(o.stdout)
    });
    assert_eq!(out, "in\n");

    // A graceful deletion gives the container its grace period: its SIGTERM handler finishes
    // (the status updates the termination itself causes do not cut it short).
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let graceful = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "graceful"}, "spec": {
        "nodeName": "slashed",
        "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            "command": ["sh", "-c", "trap 'sleep 2; echo clean > /out/marker; exit 0' TERM; while true; do sleep 0.2; done"]}],
        "volumes": [{"name": "out", "hostPath": {"path": out_dir.to_str().unwrap()}}],
    }});
    s.kubectl_stdin(&["create", "-f", "-"], &graceful.to_string()).ok();
    eventually(Duration::from_secs(30), "the graceful pod running", || {
        (s.kubectl_json(&["get", "pod", "graceful", "-o", "json"])["status"]["phase"] == "Running").then_some(())
    });
    s.kubectl(&["delete", "pod", "graceful", "--timeout=60s"]).ok();
    assert_eq!(std::fs::read_to_string(out_dir.join("marker")).unwrap_or_default(), "clean\n", "the SIGTERM handler ran to its end");

    // The stake is slashed: the agent's token is revoked. The agent leaves (its heartbeat is
    // refused) and cannot open another tunnel; had it held on, the master would close the
    // tunnel at its next ping (`crates/agent/tests/tunnel.rs`).
    daas_ok(&["dev", "slash", "--data-dir", d, "--stake", &stake]);
    // (An exec caught while the tunnel goes down fails as "connection … lost"; the steady
    // state is "not connected".)
    let refused = eventually(Duration::from_secs(45), "exec refused: agent not connected", || {
        let o = s.kubectl(&["exec", "p", "--", "echo", "in"]);
        (o.code != Some(0) && o.stderr.contains("is not connected")).then_some(o.stderr)
    });
    assert!(refused.contains("the agent on node \"slashed\" is not connected"), "{refused}");
}
