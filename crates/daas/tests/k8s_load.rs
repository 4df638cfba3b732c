//! The repo's Kubernetes load tool (`daas bench k8s`) against `daas server`: a short, small run
//! of each mode must complete without a single failed request or missed watch event. (The
//! figures themselves come from `scripts/bench-k8s.sh` in release builds, not from here.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, daas_command, run_command};
use serde_json::Value;

fn bench(s: &Server, args: &[&str]) -> Value {
    let mut cmd = daas_command();
    cmd.args(["bench", "k8s"]).args(args).arg("--json").arg("--kubeconfig").arg(s.kubeconfig());
    let out = run_command(cmd, "daas bench k8s", Duration::from_secs(120)).ok();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn every_mode_of_the_load_tool_completes_without_errors() {
    let s = Server::start_k8s(&[]);

    let m = bench(&s, &["mixed", "--rate", "100", "--duration", "2", "--clients", "4", "--watchers", "2"]);
    assert_eq!(m["requests"], 200, "{m}");
    assert_eq!(m["errors"], 0, "{m}");
    for verb in ["create", "get", "list", "patch", "delete"] {
        assert!(m["by_verb"][verb]["count"].as_u64().unwrap() > 0, "no {verb} in {m}");
    }
    // Both watchers saw the creates of their kind at least.
    assert!(m["watch_events_seen"].as_u64().unwrap() >= m["by_verb"]["create"]["count"].as_u64().unwrap() / 2, "{m}");

    let p = bench(&s, &["pods", "--namespace", "pods", "--count", "120", "--clients", "4", "--lists", "1"]);
    assert_eq!(p["pods"], 120, "{p}");
    assert_eq!(p["create_errors"], 0, "{p}");

    let w = bench(&s, &["watch", "--namespace", "w", "--watchers", "30", "--conns", "2", "--events", "10", "--rate", "100"]);
    assert_eq!(w["watchers_with_every_event"], 30, "{w}");

    // What the tool created is really there, as kubectl sees it.
    let out = s.kubectl(&["get", "pods", "-n", "pods", "--no-headers"]).ok();
    assert_eq!(out.lines().count(), 120);
}
