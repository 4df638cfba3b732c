//! Server-side printing: `meta.k8s.io/v1` Tables with the columns `kubectl get` shows for
//! each resource (priority-1 columns appear with `-o wide`).

use serde_json::{Value, json};

use super::meta;
use super::registry::{Kind, ResourceType};

/// (name, type, priority, description)
type Col = (&'static str, &'static str, u8, &'static str);

const NAME: Col = ("Name", "string", 0, "Name must be unique within a namespace.");
const AGE: Col = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");

fn columns(kind: Kind) -> Vec<Col> {
    match kind {
        Kind::Pod => vec![
            NAME,
            ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", 0, "The aggregate status of the containers in this pod."),
            (
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            ("IP", "string", 1, "IP address allocated to the pod."),
            ("Node", "string", 1, "Name of the node where the pod is scheduled."),
            ("Nominated Node", "string", 1, "Name of the node the pod is nominated to."),
            ("Readiness Gates", "string", 1, "The readiness gates of the pod."),
        ],
        Kind::Deployment => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            (
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            ("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Label selector for pods."),
        ],
        Kind::ReplicaSet => vec![
            NAME,
            ("Desired", "integer", 0, "Number of desired pods."),
            ("Current", "integer", 0, "The most recently observed number of replicas."),
            ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Label selector for pods."),
        ],
        Kind::DaemonSet => vec![
            NAME,
            ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
            ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod."),
            (
                "Ready",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod."),
            (
                "Available",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            ),
            ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
        ],
        Kind::StatefulSet => vec![NAME, ("Ready", "string", 0, "Number of the pod with ready state"), AGE],
        Kind::Job => vec![
            NAME,
            ("Status", "string", 0, "Status of the job."),
            ("Completions", "string", 0, "The completion status of the job."),
            ("Duration", "string", 0, "Time required to complete the job."),
            AGE,
        ],
        Kind::Node => vec![
            NAME,
            ("Status", "string", 0, "The status of the node"),
            ("Roles", "string", 0, "The roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", 1, "List of internal IPs."),
            ("External-IP", "string", 1, "List of external IPs."),
            ("OS-Image", "string", 1, "OS image reported by the node."),
            ("Kernel-Version", "string", 1, "Kernel version reported by the node."),
            ("Container-Runtime", "string", 1, "Container runtime reported by the node."),
        ],
        Kind::Service => vec![
            NAME,
            ("Type", "string", 0, "The type of the service."),
            ("Cluster-IP", "string", 0, "The cluster IP of the service."),
            ("External-IP", "string", 0, "The external IP of the service."),
            ("Port(s)", "string", 0, "The ports of the service."),
            AGE,
            ("Selector", "string", 1, "The label selector of the service."),
        ],
        Kind::Namespace => vec![NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
        Kind::ConfigMap => vec![NAME, ("Data", "string", 0, "Number of data entries."), AGE],
        Kind::Secret => vec![NAME, ("Type", "string", 0, "The type of the secret"), ("Data", "string", 0, "Number of data entries."), AGE],
        Kind::ServiceAccount => vec![NAME, ("Secrets", "string", 0, "Number of secrets."), AGE],
        Kind::Endpoints => vec![NAME, ("Endpoints", "string", 0, "Endpoints of the service."), AGE],
        Kind::EndpointSlice => vec![
            NAME,
            ("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice."),
            ("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
            ("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        Kind::Lease => vec![NAME, ("Holder", "string", 0, "The holder of the lease."), AGE],
        Kind::Event | Kind::EventV1 => vec![
            ("Last Seen", "string", 0, "Time of the last occurrence."),
            ("Type", "string", 0, "Type of this event (Normal, Warning)."),
            ("Reason", "string", 0, "Why the action was taken."),
            ("Object", "string", 0, "The object this Event is about."),
            ("Message", "string", 0, "A human-readable description of the status of this operation."),
        ],
        _ => vec![
            NAME,
            ("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        ],
    }
}

/// Kubernetes' human duration: `45s`, `5m30s`, `3h`, `2d4h`, `400d`, `3y20d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{}d", h / 24) } else { format!("{}d{}h", h / 24, h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let d = h / 24;
        if d % 365 == 0 { format!("{}y", d / 365) } else { format!("{}y{}d", d / 365, d % 365) }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

fn age(obj: &Value, now: i64) -> String {
    match meta::meta_str(obj, "creationTimestamp").and_then(meta::parse_time) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn s(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

fn i(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

fn template_columns(obj: &Value) -> (String, String, String) {
    let cs = obj.pointer("/spec/template/spec/containers").and_then(Value::as_array);
    let names: Vec<&str> = cs.into_iter().flatten().map(|c| s(c.get("name"))).collect();
    let images: Vec<&str> = cs.into_iter().flatten().map(|c| s(c.get("image"))).collect();
    let sel = obj
        .pointer("/spec/selector")
        .and_then(|x| super::selector::LabelSelector::from_object(x).ok())
        .map(|x| x.to_string())
        .unwrap_or_default();
    (names.join(","), images.join(","), or_none(sel))
}

fn pod_cells(p: &Value, now: i64) -> Vec<Value> {
    let statuses = p.pointer("/status/containerStatuses").and_then(Value::as_array);
    let total = p.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let ready = statuses.into_iter().flatten().filter(|c| c.get("ready") == Some(&json!(true))).count();
    let restarts: i64 = statuses.into_iter().flatten().map(|c| i(c.get("restartCount"))).sum();
    let mut reason = s(p.pointer("/status/reason")).to_string();
    if reason.is_empty() {
        reason = s(p.pointer("/status/phase")).to_string();
    }
    for c in statuses.into_iter().flatten() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            reason = r.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            let r = s(t.get("reason"));
            reason = if r.is_empty() { format!("ExitCode:{}", i(t.get("exitCode"))) } else { r.to_string() };
        }
    }
    if meta::is_deleting(p) {
        reason = "Terminating".into();
    }
    let gates = p.pointer("/spec/readinessGates").and_then(Value::as_array).map_or(0, Vec::len);
    vec![
        json!(meta::name(p)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(p, now)),
        json!(or_none(s(p.pointer("/status/podIP")).to_string())),
        json!(or_none(s(p.pointer("/spec/nodeName")).to_string())),
        json!(or_none(s(p.pointer("/status/nominatedNodeName")).to_string())),
        json!(if gates == 0 { "<none>".to_string() } else { format!("0/{gates}") }),
    ]
}

fn node_cells(n: &Value, now: i64) -> Vec<Value> {
    let conds = n.pointer("/status/conditions").and_then(Value::as_array);
    let ready = conds.into_iter().flatten().find(|c| s(c.get("type")) == "Ready");
    let mut status = match ready.map(|c| s(c.get("status"))) {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if n.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = meta::labels(n)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
                .or_else(|| (k == "kubernetes.io/role").then(|| v.as_str().unwrap_or("").to_string()))
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let addr = |t: &str| {
        n.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| s(a.get("type")) == t)
            .map(|a| s(a.get("address")).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    vec![
        json!(meta::name(n)),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age(n, now)),
        json!(s(n.pointer("/status/nodeInfo/kubeletVersion"))),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(or_none(s(n.pointer("/status/nodeInfo/osImage")).to_string())),
        json!(or_none(s(n.pointer("/status/nodeInfo/kernelVersion")).to_string())),
        json!(or_none(s(n.pointer("/status/nodeInfo/containerRuntimeVersion")).to_string())),
    ]
}

fn service_cells(v: &Value, now: i64) -> Vec<Value> {
    let ty = s(v.pointer("/spec/type"));
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = s(p.get("protocol"));
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{}:{np}/{proto}", i(p.get("port"))),
                None => format!("{}/{proto}", i(p.get("port"))),
            }
        })
        .collect();
    let mut external: Vec<String> =
        v.pointer("/spec/externalIPs").and_then(Value::as_array).into_iter().flatten().map(|x| s(Some(x)).to_string()).collect();
    for ing in v.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten() {
        external.push(s(ing.get("ip")).to_string());
    }
    let external = match (ty, external.is_empty()) {
        ("ExternalName", _) => s(v.pointer("/spec/externalName")).to_string(),
        ("LoadBalancer", true) => "<pending>".into(),
        (_, true) => "<none>".into(),
        _ => external.join(","),
    };
    let selector: Vec<String> =
        v.pointer("/spec/selector").and_then(Value::as_object).into_iter().flatten().map(|(k, x)| format!("{k}={}", s(Some(x)))).collect();
    vec![
        json!(meta::name(v)),
        json!(ty),
        json!(or_none(s(v.pointer("/spec/clusterIP")).to_string())),
        json!(external),
        json!(or_none(ports.join(","))),
        json!(age(v, now)),
        json!(or_none(selector.join(","))),
    ]
}

fn cells(rt: &ResourceType, o: &Value, now: i64) -> Vec<Value> {
    let name = json!(meta::name(o));
    match rt.id {
        Kind::Pod => pod_cells(o, now),
        Kind::Node => node_cells(o, now),
        Kind::Service => service_cells(o, now),
        Kind::Deployment => {
            let (c, im, sel) = template_columns(o);
            vec![
                name,
                json!(format!("{}/{}", i(o.pointer("/status/readyReplicas")), i(o.pointer("/spec/replicas")))),
                json!(i(o.pointer("/status/updatedReplicas"))),
                json!(i(o.pointer("/status/availableReplicas"))),
                json!(age(o, now)),
                json!(c),
                json!(im),
                json!(sel),
            ]
        }
        Kind::ReplicaSet => {
            let (c, im, sel) = template_columns(o);
            vec![
                name,
                json!(i(o.pointer("/spec/replicas"))),
                json!(i(o.pointer("/status/replicas"))),
                json!(i(o.pointer("/status/readyReplicas"))),
                json!(age(o, now)),
                json!(c),
                json!(im),
                json!(sel),
            ]
        }
        Kind::DaemonSet => {
            let ns: Vec<String> = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", s(Some(v))))
                .collect();
            vec![
                name,
                json!(i(o.pointer("/status/desiredNumberScheduled"))),
                json!(i(o.pointer("/status/currentNumberScheduled"))),
                json!(i(o.pointer("/status/numberReady"))),
                json!(i(o.pointer("/status/updatedNumberScheduled"))),
                json!(i(o.pointer("/status/numberAvailable"))),
                json!(or_none(ns.join(","))),
                json!(age(o, now)),
            ]
        }
        Kind::StatefulSet => {
            vec![name, json!(format!("{}/{}", i(o.pointer("/status/readyReplicas")), i(o.pointer("/spec/replicas")))), json!(age(o, now))]
        }
        Kind::Job => {
            let conds = o.pointer("/status/conditions").and_then(Value::as_array);
            let has = |t: &str| conds.into_iter().flatten().any(|c| s(c.get("type")) == t && s(c.get("status")) == "True");
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{}/{c}", i(o.pointer("/status/succeeded"))),
                None => format!("{}/1 of {}", i(o.pointer("/status/succeeded")), i(o.pointer("/spec/parallelism")).max(1)),
            };
            let start = s(o.pointer("/status/startTime"));
            let duration =
                match (meta::parse_time(start), o.pointer("/status/completionTime").and_then(Value::as_str).and_then(meta::parse_time)) {
                    (Some(a), Some(b)) => human_duration(b - a),
                    (Some(a), None) => human_duration(now - a),
                    _ => String::new(),
                };
            vec![name, json!(status), json!(completions), json!(duration), json!(age(o, now))]
        }
        Kind::Namespace => vec![name, json!(s(o.pointer("/status/phase"))), json!(age(o, now))],
        Kind::ConfigMap => {
            let n = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                + o.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(n), json!(age(o, now))]
        }
        Kind::Secret => {
            let n = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(s(o.get("type"))), json!(n), json!(age(o, now))]
        }
        Kind::ServiceAccount => vec![name, json!(o.get("secrets").and_then(Value::as_array).map_or(0, Vec::len)), json!(age(o, now))],
        Kind::Endpoints => {
            let mut eps = Vec::new();
            for subset in o.get("subsets").and_then(Value::as_array).into_iter().flatten() {
                for a in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    for p in subset.get("ports").and_then(Value::as_array).into_iter().flatten() {
                        eps.push(format!("{}:{}", s(a.get("ip")), i(p.get("port"))));
                    }
                }
            }
            let shown = if eps.len() > 3 { format!("{} + {} more...", eps[..3].join(","), eps.len() - 3) } else { or_none(eps.join(",")) };
            vec![name, json!(shown), json!(age(o, now))]
        }
        Kind::EndpointSlice => {
            // As kubectl prints them: port numbers (or names, or `*`), then addresses, three
            // of each at most.
            let ports: Vec<String> = o
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => "*".to_string(),
                })
                .collect();
            let addresses: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e.get("addresses").and_then(Value::as_array).into_iter().flatten())
                .map(|a| s(Some(a)).to_string())
                .collect();
            vec![name, json!(s(o.get("addressType"))), json!(first_three(&ports)), json!(first_three(&addresses)), json!(age(o, now))]
        }
        Kind::Lease => vec![name, json!(s(o.pointer("/spec/holderIdentity"))), json!(age(o, now))],
        Kind::Event | Kind::EventV1 => {
            let (last, obj) = if rt.id == Kind::Event {
                let t = o.get("lastTimestamp").and_then(Value::as_str).or_else(|| o.get("eventTime").and_then(Value::as_str));
                (t, o.get("involvedObject"))
            } else {
                (
                    o.get("deprecatedLastTimestamp").and_then(Value::as_str).or_else(|| o.get("eventTime").and_then(Value::as_str)),
                    o.get("regarding"),
                )
            };
            let last = last
                .and_then(|t| {
                    meta::parse_time(t.split('.').next().map(|x| format!("{}Z", x.trim_end_matches('Z'))).as_deref().unwrap_or(t))
                })
                .map_or("<unknown>".into(), |t| human_duration(now - t));
            let target = obj.map(|x| format!("{}/{}", s(x.get("kind")).to_lowercase(), s(x.get("name")))).unwrap_or_default();
            let msg = if rt.id == Kind::Event { s(o.get("message")) } else { s(o.get("note")) };
            vec![json!(last), json!(s(o.get("type"))), json!(s(o.get("reason"))), json!(target), json!(msg)]
        }
        _ => vec![name, json!(meta::meta_str(o, "creationTimestamp").unwrap_or(""))],
    }
}

/// `a,b,c + 2 more...`, or `<unset>` for none, as kubectl lists an EndpointSlice's ports and
/// addresses.
fn first_three(items: &[String]) -> String {
    match items.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

/// The row object: `PartialObjectMetadata` (default), the whole object, or nothing.
fn row_object(o: &Value, include: &str) -> Option<Value> {
    match include {
        "None" => None,
        "Object" => Some(o.clone()),
        _ => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

pub fn column_definitions(rt: &ResourceType) -> Value {
    Value::Array(
        columns(rt.id)
            .into_iter()
            .map(|(name, ty, priority, desc)| {
                let format = if name == "Name" { "name" } else { "" };
                json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
            })
            .collect(),
    )
}

/// A Table of `objects`; `with_columns` false omits column definitions (watch events after
/// the first).
pub fn table(rt: &ResourceType, objects: &[Value], resource_version: &str, cont: Option<&str>, include: &str, with_columns: bool) -> Value {
    let now = meta::now_secs();
    let rows: Vec<Value> = objects.iter().map(|o| row(rt, o, include, now)).collect();
    from_rows(rt, rows, resource_version, cont, with_columns)
}

/// One row: the cells of `o` and, per `include`, the object or its metadata.
pub fn row(rt: &ResourceType, o: &Value, include: &str, now: i64) -> Value {
    let mut row = json!({"cells": cells(rt, o, now)});
    if let Some(obj) = row_object(o, include) {
        row["object"] = obj;
    }
    row
}

/// A Table from rows made by [`row`].
pub fn from_rows(rt: &ResourceType, rows: Vec<Value>, resource_version: &str, cont: Option<&str>, with_columns: bool) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": if with_columns { column_definitions(rt) } else { json!([]) },
        "rows": rows,
    });
    if let Some(c) = cont.filter(|c| !c.is_empty()) {
        t["metadata"]["continue"] = json!(c);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::registry::by_kind;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(330), "5m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400 + 20 * 86400), "3y20d");
    }

    #[test]
    fn pod_rows_show_readiness_status_and_restarts() {
        let p = json!({"metadata": {"name": "web-1", "creationTimestamp": meta::now_rfc3339()},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table(by_kind(Kind::Pod), &[p], "7", None, "Metadata", true);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web-1");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn service_and_node_rows() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let t = table(by_kind(Kind::Service), &[svc], "1", None, "None", true);
        assert_eq!(t["rows"][0]["cells"][4], "80:30080/TCP");
        assert!(t["rows"][0].get("object").is_none());
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/worker": "true"}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let t = table(by_kind(Kind::Node), &[node], "1", None, "None", true);
        assert_eq!(t["rows"][0]["cells"][1], "Ready,SchedulingDisabled");
        assert_eq!(t["rows"][0]["cells"][2], "worker");
    }

    #[test]
    fn endpointslice_rows_list_ports_and_addresses() {
        let eps: Vec<Value> = (1..=5).map(|i| json!({"addresses": [format!("10.42.0.{i}")]})).collect();
        let slice = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "named"}], "endpoints": eps});
        let t = table(by_kind(Kind::EndpointSlice), &[slice], "1", None, "None", true);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "IPv4");
        assert_eq!(cells[2], "8080,named");
        assert_eq!(cells[3], "10.42.0.1,10.42.0.2,10.42.0.3 + 2 more...");
        let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
        let empty = json!({"metadata": {"name": "web-fghij"}, "addressType": "IPv4", "endpoints": []});
        assert_eq!(table(by_kind(Kind::EndpointSlice), &[empty], "1", None, "None", true)["rows"][0]["cells"][2], "<unset>");
    }
}
