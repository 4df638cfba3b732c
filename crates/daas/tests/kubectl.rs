//! The Kubernetes API as kubectl users meet it: the real `kubectl` against `daas server`,
//! through the admin kubeconfig the server writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Server;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: python:3.12
        command: [python3, -m, http.server]
        ports: [{containerPort: 8000}]
        resources: {limits: {cpu: 1, memory: 128Mi}}
";

/// kubectl older than 1.27 validates against OpenAPI v2, which this server does not serve yet;
/// such a kubectl (Debian's fallback package) skips this suite, saying so.
fn kubectl_is_recent() -> bool {
    let out = std::process::Command::new("kubectl").args(["version", "--client", "-o", "json"]).output();
    let minor = out
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["clientVersion"]["minor"].as_str().map(|m| m.trim_end_matches('+').parse::<u32>().unwrap_or(0)));
    match minor {
        Some(m) if m >= 27 => true,
        other => {
            eprintln!("SKIPPED: kubectl 1.27 or newer is needed for the kubectl suite (found minor version {other:?})");
            false
        }
    }
}

fn json(out: String) -> serde_json::Value {
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl printed JSON ({e}):\n{out}"))
}

#[test]
fn apply_get_label_scale_diff_and_delete() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    assert!(s.kubeconfig().exists(), "the server writes an admin kubeconfig");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(s.kubeconfig()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let ns = s.kubectl(&["get", "ns", "-o", "name"]).ok();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    assert!(s.kubectl(&["version"]).ok().contains("Server Version: v1."));

    assert!(s.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT).ok().contains("deployment.apps/web created"));
    let d = json(s.kubectl(&["get", "deploy", "web", "-o", "json"]).ok());
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%", "defaults are applied");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");
    let rv1: i64 = d["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();

    // Re-apply with a change: a strategic merge patch computed by kubectl.
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("python:3.12", "python:3.13");
    assert!(s.kubectl_stdin(&["apply", "-f", "-"], &changed).ok().contains("deployment.apps/web configured"));
    let out = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation} {.spec.template.spec.containers[0].image} {.metadata.resourceVersion}",
        ])
        .ok();
    let f: Vec<&str> = out.split(' ').collect();
    assert_eq!(&f[..3], ["3", "2", "python:3.13"], "{out}");
    assert!(f[3].parse::<i64>().unwrap() > rv1);
    // Re-applying the same manifest writes nothing: the resourceVersion stays.
    let rv = s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.resourceVersion}"]).ok();
    s.kubectl_stdin(&["apply", "-f", "-"], &changed).ok();
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.resourceVersion}"]).ok(), rv);

    s.kubectl(&["label", "deploy", "web", "tier=front"]).ok();
    s.kubectl(&["annotate", "deploy", "web", "note=hello"]).ok();
    let wide = s.kubectl(&["get", "deploy", "-l", "tier=front", "-o", "wide"]).ok();
    assert!(wide.starts_with("NAME") && wide.contains("READY") && wide.contains("UP-TO-DATE") && wide.contains("CONTAINERS"), "{wide}");
    assert!(wide.contains("web ") && wide.contains("python:3.13") && wide.contains("app=web"), "{wide}");
    assert!(s.kubectl(&["get", "deploy", "-l", "tier!=front", "-o", "name"]).ok().trim().is_empty());

    s.kubectl(&["scale", "deploy", "web", "--replicas=5"]).ok();
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).ok(), "5");
    // kubectl diff shows the scale drift against the manifest and exits 1.
    let diff = s.kubectl_stdin(&["diff", "-f", "-"], &changed);
    assert_eq!(diff.code, Some(1), "{diff}");
    assert!(diff.stdout.contains("-  replicas: 5") && diff.stdout.contains("+  replicas: 3"), "{diff}");

    let yaml = s.kubectl(&["get", "deploy", "web", "-o", "yaml"]).ok();
    assert!(yaml.contains("kind: Deployment") && yaml.contains("note: hello"), "{yaml}");
    let explain = s.kubectl(&["explain", "deployment.spec.replicas"]).ok();
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
    let resources = s.kubectl(&["api-resources"]).ok();
    assert!(resources.contains("deployments") && resources.contains("deploy") && resources.contains("apps/v1"), "{resources}");
    assert!(s.kubectl(&["api-versions"]).ok().contains("coordination.k8s.io/v1"));

    s.kubectl(&["delete", "deploy", "-l", "app=web"]).ok();
    let gone = s.kubectl(&["get", "deploy", "web"]);
    assert_eq!(gone.code, Some(1));
    assert!(gone.stderr.contains("Error from server (NotFound): deployments.apps \"web\" not found"), "{gone}");

    // What happened shows in the Prometheus metrics, under kube-apiserver's names.
    let metrics = s.kubectl(&["get", "--raw", "/metrics"]).ok();
    assert!(
        metrics.lines().any(|l| l.starts_with("apiserver_request_total{code=\"404\"")
            && l.contains("resource=\"deployments\"")
            && l.contains("verb=\"GET\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_duration_seconds_bucket{") && metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
}

#[test]
fn bad_input_gets_kubernetes_errors_and_nothing_is_stored() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    let invalid = DEPLOYMENT.replace("        image: python:3.12\n", "").replace("name: web\n  labels", "name: Web\n  labels");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &invalid);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("Deployment.apps \"Web\" is invalid") || out.stderr.contains("Deployment \"Web\" is invalid"), "{out}");
    assert!(out.stderr.contains("metadata.name: Invalid value: \"Web\""), "{out}");
    assert!(out.stderr.contains("spec.template.spec.containers[0].image: Required value"), "{out}");

    // Strict field validation (kubectl's default) names the unknown field.
    let unknown = DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  replicaz: 3");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &unknown);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("unknown field \"spec.replicaz\""), "{out}");

    let out = s.kubectl_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("replicas: 2", "replicas: two"));
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("spec.replicas"), "{out}");
    assert!(s.kubectl(&["get", "deploy", "-o", "name"]).ok().trim().is_empty(), "nothing was stored");

    // A namespace that does not exist.
    let out = s.kubectl_stdin(&["apply", "-n", "nope", "-f", "-"], DEPLOYMENT);
    assert!(out.stderr.contains("namespaces \"nope\" not found"), "{out}");
}

#[test]
fn events_of_both_api_groups_are_one_list() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    )
    .ok();
    let uid = s.kubectl(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]).ok();
    // A controller records an event through events.k8s.io/v1 ...
    let ev = format!(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: web.sched}}\neventTime: '2026-11-21T07:00:00.000000Z'\n\
         regarding: {{kind: Pod, name: web, namespace: default, uid: {uid}, apiVersion: v1}}\n\
         reason: FailedScheduling\ntype: Warning\naction: Scheduling\nnote: '0/3 nodes are available: 3 Insufficient cpu.'\n\
         reportingController: default-scheduler\nreportingInstance: daas-0\n"
    );
    s.kubectl_stdin(&["create", "-f", "-"], &ev).ok();
    // ... and core/v1 readers see it: kubectl get events, and describe's event list.
    let core = json(s.kubectl(&["get", "events.v1.", "web.sched", "-o", "json"]).ok());
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "0/3 nodes are available: 3 Insufficient cpu.");
    assert_eq!(core["involvedObject"]["name"], "web");
    let events = s.kubectl(&["get", "events", "--field-selector", "involvedObject.name=web"]).ok();
    assert!(events.contains("FailedScheduling") && events.contains("0/3 nodes are available"), "{events}");
    let describe = s.kubectl(&["describe", "pod", "web"]).ok();
    assert!(describe.contains("Warning  FailedScheduling") && describe.contains("default-scheduler"), "{describe}");
    // A core/v1 event reads back through events.k8s.io/v1.
    s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Event\nmetadata: {name: web.pulled}\ninvolvedObject: {kind: Pod, name: web, namespace: default}\nreason: Pulled\nmessage: pulled\ntype: Normal\nfirstTimestamp: '2026-11-21T07:00:00Z'\nsource: {component: kubelet}\n",
    )
    .ok();
    let v1 = json(s.kubectl(&["get", "events.v1.events.k8s.io", "web.pulled", "-o", "json"]).ok());
    assert_eq!((v1["note"].as_str(), v1["regarding"]["name"].as_str()), (Some("pulled"), Some("web")), "{v1}");
    assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
    let both = s.kubectl(&["get", "events.v1.events.k8s.io", "-o", "name"]).ok();
    assert_eq!(both.lines().count(), 2, "{both}");
}

#[test]
fn history_is_compacted_and_old_versions_expire() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&["--compaction-interval", "1s"]);
    s.kubectl(&["create", "configmap", "h", "--from-literal=v=1"]).ok();
    let old = s.kubectl(&["get", "cm", "h", "-o", "jsonpath={.metadata.resourceVersion}"]).ok();
    s.kubectl(&["patch", "cm", "h", "-p", r#"{"data":{"v":"1.5"}}"#]).ok();
    s.kubectl(&["patch", "cm", "h", "-p", r#"{"data":{"v":"2"}}"#]).ok();
    // Two ticks: the first notes the revision, the second compacts up to it.
    std::thread::sleep(Duration::from_millis(2600));
    let list =
        s.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={old}&resourceVersionMatch=Exact")]);
    assert!(list.code != Some(0) && list.stderr.contains("The resourceVersion for the provided list is too old"), "{list}");
    let watch = s.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}")]).ok();
    assert!(watch.contains("\"type\":\"ERROR\"") && watch.contains("\"code\":410"), "{watch}");
    // The current state is whole.
    assert_eq!(s.kubectl(&["get", "cm", "h", "-o", "jsonpath={.data.v}"]).ok(), "2");
}

#[test]
fn events_expire_after_the_event_ttl_and_other_objects_do_not() {
    let s = Server::start_k8s(&["--event-ttl", "2s"]);
    let event = r#"{"apiVersion": "v1", "kind": "Event", "metadata": {"name": "short-lived"},
        "involvedObject": {"kind": "ConfigMap", "name": "keep", "namespace": "default"}, "reason": "Test", "message": "gone soon"}"#;
    s.kubectl_stdin(&["create", "-f", "-"], event).ok();
    s.kubectl(&["create", "configmap", "keep", "--from-literal=v=1"]).ok();
    assert_eq!(s.kubectl(&["get", "events", "-o", "name"]).ok(), "event/short-lived\n");
    // The TTL (2 s) plus the lease's reuse window, rounded up to whole seconds; the store
    // checks expiries every 100 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while s.kubectl(&["get", "events", "-o", "name"]).ok() != "" {
        assert!(std::time::Instant::now() < deadline, "the event outlived its TTL");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.kubectl(&["get", "cm", "keep", "-o", "jsonpath={.data.v}"]).ok(), "1");
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    let manifest = DEPLOYMENT.replace("labels: {app: web}\nspec:\n  replicas: 2", "labels: {app: web, team: a}\nspec:\n  replicas: 2");
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest).ok();
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let d = json(s.kubectl(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).ok());
    let mf = &d["metadata"]["managedFields"][0];
    assert_eq!((mf["manager"].as_str(), mf["operation"].as_str()), (Some("kubectl"), Some("Apply")), "{mf}");
    let fields = &mf["fieldsV1"];
    assert!(fields["f:spec"]["f:replicas"].is_object(), "{fields}");
    assert!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"].is_object(), "{fields}");
    assert!(fields["f:metadata"]["f:labels"]["f:team"].is_object(), "{fields}");

    // Another writer takes spec.replicas; re-applying a different value conflicts with it and
    // changes nothing.
    s.kubectl(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":5}}"#]).ok();
    let manifest3 = manifest.replace("replicas: 2", "replicas: 3");
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest3);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1: .spec.replicas"), "{out}");
    assert_eq!(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).ok(), "5");
    // Applying the value it already has is shared ownership, not a conflict.
    s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest.replace("replicas: 2", "replicas: 5")).ok();
    // --force-conflicts takes the field over.
    s.kubectl_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &manifest3).ok();
    let d = json(s.kubectl(&["get", "deploy", "web", "-o", "json", "--show-managed-fields"]).ok());
    assert_eq!(d["spec"]["replicas"], 3);
    let owners: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["kubectl"], "{d}");

    // A field the applier stops applying is removed; one another manager set stays.
    s.kubectl(&["label", "deploy", "web", "owner=ops"]).ok();
    s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest3.replace("labels: {app: web, team: a}", "labels: {app: web}")).ok();
    let labels = json(s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"]).ok());
    assert_eq!(labels, serde_json::json!({"app": "web", "owner": "ops"}));

    // Apply creates what does not exist; dry runs store nothing; a missing manager is refused.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: b}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "--dry-run=server", "-f", "-"], cm).ok();
    assert!(out.contains("configmap/ssa serverside-applied (server dry run)"), "{out}");
    assert_eq!(s.kubectl(&["get", "cm", "ssa"]).code, Some(1));
    s.kubectl_stdin(&["apply", "--server-side", "--field-manager=team-x", "-f", "-"], cm).ok();
    let owner = s.kubectl(&["get", "cm", "ssa", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[0].manager}"]).ok();
    assert_eq!(owner, "team-x");
    let raw = s.kubectl(&["patch", "cm", "ssa", "--type=apply", "-p", "{}", "--field-manager="]);
    assert_ne!(raw.code, Some(0), "{raw}");

    // kubectl edit: the edited object goes back as a patch and kubectl-edit owns the change.
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/^  a: b$/  a: edited/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut edit = std::process::Command::new("kubectl");
    edit.env_remove("KUBECONFIG").env("KUBE_EDITOR", &editor).arg("--kubeconfig").arg(s.kubeconfig()).args(["edit", "cm", "ssa"]);
    let out = common::run_command(edit, "kubectl edit", common::COMMAND_TIMEOUT);
    assert!(out.stdout.contains("configmap/ssa edited"), "{out}");
    let d = json(s.kubectl(&["get", "cm", "ssa", "-o", "json", "--show-managed-fields"]).ok());
    assert_eq!(d["data"]["a"], "edited");
    assert!(d["metadata"]["managedFields"].as_array().unwrap().iter().any(|e| e["manager"] == "kubectl-edit"), "{d}");
}

#[test]
fn watch_wait_and_namespace_deletion() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n").ok();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, namespace: team-a, labels: {app: x}}\nspec:\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n";
    s.kubectl_stdin(&["apply", "-f", "-"], pod).ok();
    s.kubectl_stdin(&["apply", "-f", "-"], &pod.replace("p1", "p2").replace("app: x", "app: z2")).ok();

    let table = s.kubectl(&["get", "pods", "-A"]).ok();
    assert!(table.lines().next().unwrap().split_whitespace().eq(["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]), "{table}");
    assert!(table.contains("0/1") && table.contains("Pending"), "{table}");
    let names = s.kubectl(&["get", "pods", "-n", "team-a", "--field-selector", "metadata.name=p2", "-o", "name"]).ok();
    assert_eq!(names.trim(), "pod/p2");
    let names = s.kubectl(&["get", "pods", "-n", "team-a", "-l", "app in (x,z)", "-o", "name"]).ok();
    assert_eq!(names.trim(), "pod/p1");
    let describe = s.kubectl(&["describe", "pod", "p1", "-n", "team-a"]).ok();
    assert!(describe.contains("Name:") && describe.contains("QoS Class:        BestEffort"), "{describe}");

    // A watch sees a change made after it started.
    let w = s.spawn_kubectl(&["get", "pods", "-n", "team-a", "-w", "-o", "json", "--output-watch-events"], None);
    assert!(w.wait_for_stdout(|o| o.contains("ADDED"), Duration::from_secs(10)), "{}", w.stdout_now());
    s.kubectl(&["label", "pod", "p1", "-n", "team-a", "seen=yes"]).ok();
    assert!(w.wait_for_stdout(|o| o.contains("MODIFIED"), Duration::from_secs(10)), "{}", w.stdout_now());
    drop(w);

    // wait --for=condition on a status set through the status subresource.
    s.kubectl(&[
        "patch",
        "pod",
        "p1",
        "-n",
        "team-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p1", "-n", "team-a", "--timeout=10s"]).ok();

    // wait --for=delete returns once a finalizer holding the pod is removed.
    s.kubectl(&["patch", "pod", "p2", "-n", "team-a", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold"]}}"#]).ok();
    s.kubectl(&["delete", "pod", "p2", "-n", "team-a", "--wait=false"]).ok();
    let waiting = s.spawn_kubectl(&["wait", "--for=delete", "pod/p2", "-n", "team-a", "--timeout=20s"], None);
    std::thread::sleep(Duration::from_millis(500));
    s.kubectl(&["patch", "pod", "p2", "-n", "team-a", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]).ok();
    let done = waiting.wait_exit(Duration::from_secs(20));
    assert_eq!(done.code, Some(0), "{done}");
    assert!(done.stdout.contains("pod/p2 condition met"), "{done}");

    // Deleting the namespace removes what is in it; kubectl waits until it is gone.
    s.kubectl(&["delete", "ns", "team-a", "--timeout=20s"]).ok();
    let out = s.kubectl(&["get", "pods", "-n", "team-a", "-o", "name"]);
    assert!(out.stdout.trim().is_empty(), "{out}");
    assert_eq!(s.kubectl(&["get", "ns", "team-a"]).code, Some(1));
    let raw = s.kubectl(&["get", "--raw", "/api/v1/pods"]).ok();
    assert_eq!(json(raw)["items"].as_array().unwrap().len(), 0);
}

#[test]
fn stale_writes_conflict_and_identity_checks() {
    if !kubectl_is_recent() {
        return;
    }
    let s = Server::start_k8s(&[]);
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndata: {a: b}\n").ok();
    let old = s.kubectl(&["get", "cm", "c1", "-o", "json"]).ok();
    s.kubectl(&["patch", "cm", "c1", "--type=merge", "-p", r#"{"data":{"a":"c"}}"#]).ok();
    // Replacing with the old resourceVersion is a 409 Conflict.
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &old);
    assert!(out.stderr.contains("the object has been modified; please apply your changes to the latest version and try again"), "{out}");
    assert_eq!(s.kubectl(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"]).ok(), "c");

    // kubectl's typed commands send protobuf bodies.
    s.kubectl(&["create", "configmap", "c2", "--from-literal=k=v"]).ok();
    s.kubectl(&["create", "secret", "generic", "s1", "--from-literal=p=q"]).ok();
    s.kubectl(&["create", "namespace", "team-b"]).ok();
    assert_eq!(s.kubectl(&["get", "cm", "c2", "-o", "jsonpath={.data.k}"]).ok(), "v");
    assert_eq!(s.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.p}"]).ok(), "cQ==");
    assert_eq!(s.kubectl(&["auth", "can-i", "create", "pods"]).ok().trim(), "yes");
    // The admin is system:admin in system:masters.
    let v = json(s.kubectl(&["auth", "whoami", "-o", "json"]).ok());
    assert_eq!(v["status"]["userInfo"]["username"], "system:admin");
    assert!(v["status"]["userInfo"]["groups"].as_array().unwrap().contains(&serde_json::json!("system:masters")));
    // Anonymous requests get a 401 Status; health, version and attestation stay public.
    let curl = |path: &str| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sk", "-w", "\n%{http_code}"]).arg(format!("{}{path}", s.https_url()));
        common::run_command(c, "curl", common::COMMAND_TIMEOUT).ok()
    };
    let out = curl("/api/v1/namespaces/default/configmaps");
    assert!(out.ends_with("\n401") && out.contains("\"kind\":\"Status\"") && out.contains("\"reason\":\"Unauthorized\""), "{out}");
    for public in ["/livez", "/readyz", "/healthz", "/version", "/health"] {
        assert!(curl(public).ends_with("\n200"), "{public}");
    }
    assert!(curl("/api/v1/attestation?nonce=00112233445566778899aabbccddeeff").ends_with("\n200"));
    for private in ["/api/v1/security-context", "/metrics", "/openapi/v2", "/openapi/v3", "/kubectl/config"] {
        assert!(curl(private).ends_with("\n401"), "{private} answered anonymous requests");
    }
}

#[test]
fn token_users_are_held_to_their_stake_tier() {
    if !kubectl_is_recent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "reader-token-0123456789,alice,1001,\"daas:tier:read\"\nwriter-token-0123456789,bob,1002,\"daas:tier:write\"\n",
    )
    .unwrap();
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let s = Server::start_k8s(&["--token-auth-file", tokens.to_str().unwrap(), "--danger-insecure-http-listen", &plain]);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndata: {a: b}\n";
    // A kubeconfig without the admin's client certificate, so only the token speaks.
    let text = std::fs::read_to_string(s.kubeconfig()).unwrap();
    let tok_cfg = dir.path().join("token.kubeconfig");
    let stripped: String =
        text.lines().filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data")).collect::<Vec<_>>().join("\n");
    std::fs::write(&tok_cfg, stripped.replace("- name: system:admin\n  user:", "- name: system:admin\n  user: {}")).unwrap();
    let run = |token: &str, args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new("kubectl");
        c.env_remove("KUBECONFIG").arg("--kubeconfig").arg(&tok_cfg).arg("--token").arg(token).args(args);
        if let Some(t) = stdin {
            let path = dir.path().join("m.yaml");
            std::fs::write(&path, t).unwrap();
            c.arg("-f").arg(path);
        }
        common::run_command(c, "kubectl (token)", common::COMMAND_TIMEOUT)
    };
    let denied = run("reader-token-0123456789", &["create"], Some(cm));
    assert!(
        denied.stderr.contains("configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\": stake tier \"read\" allows only the verbs get, list, watch"),
        "{denied}"
    );
    let created = run("writer-token-0123456789", &["create"], Some(cm));
    assert_eq!(created.code, Some(0), "{created}");
    let read = run("reader-token-0123456789", &["get", "cm", "c1", "-o", "name"], None);
    assert_eq!(read.stdout.trim(), "configmap/c1", "{read}");
    let secret = run("reader-token-0123456789", &["get", "secrets"], None);
    assert!(secret.stderr.contains("stake tier \"read\" may not access secrets"), "{secret}");
    // The loopback plaintext listener (a danger option) authenticates the same tokens and no
    // one else. (kubectl will not send a token over plain HTTP, so this is a raw request.)
    let plain_get = |token: Option<&str>| {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(&plain).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(c, "GET /api/v1/namespaces/default/configmaps/c1 HTTP/1.1\r\nHost: {plain}\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    };
    let over_http = plain_get(Some("reader-token-0123456789"));
    assert!(over_http.starts_with("HTTP/1.1 200") && over_http.contains("\"name\":\"c1\""), "{over_http}");
    let anonymous = plain_get(None);
    assert!(anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("\"kind\":\"Status\""), "{anonymous}");
    let bad = run("no-such-token", &["get", "cm"], None);
    assert!(bad.stderr.contains("Unauthorized") || bad.stderr.contains("provide credentials"), "{bad}");
    // Every mutating request is in the audit log with who, what and the result.
    let audit = std::fs::read_to_string(s.data_dir().join("audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"user\":\"alice\"") && l.contains("\"verb\":\"create\"") && l.contains("\"code\":403")),
        "{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("\"user\":\"bob\"") && l.contains("\"verb\":\"create\"") && l.contains("\"code\":201")),
        "{audit}"
    );
}
