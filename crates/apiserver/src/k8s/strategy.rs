//! Type-specific behaviour, keyed by [`Kind`]: defaulting, what create and update may change,
//! and semantic validation. Everything here works on JSON that already passed the typed codec.

use serde_json::{Value, json};

use super::meta;
use super::registry::{Kind, ResourceType};
use super::selector::LabelSelector;
use super::status::FieldError;

/// Kubernetes accepts numbers where a `Quantity` string is expected (`cpu: 1` in YAML); turn
/// them into strings before typed decoding, under the map keys that hold quantities.
pub fn normalize_quantities(v: &mut Value) {
    const QUANTITY_MAPS: &[&str] = &["limits", "requests", "capacity", "allocatable", "hard", "used", "overhead"];
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str())
                    && let Value::Object(q) = child
                {
                    for val in q.values_mut() {
                        if let Value::Number(n) = val {
                            *val = Value::String(n.to_string());
                        }
                    }
                } else if k == "sizeLimit"
                    && let Value::Number(n) = child
                {
                    *child = Value::String(n.to_string());
                }
                normalize_quantities(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize_quantities),
        _ => {}
    }
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    let m = meta::ensure_object(obj);
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

fn default_container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let policy = if image.contains('@') {
        "IfNotPresent"
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// Pod spec defaults, as the defaulting of kube-apiserver and its default admission plugins
/// (service account, default tolerations) leave a pod.
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

fn default_pod_admission(spec: &mut Value, (not_ready, unreachable): (i64, i64)) {
    set_default(spec, "serviceAccountName", json!("default"));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    // DefaultTolerationSeconds: tolerate not-ready and unreachable for a while (300 s unless
    // configured) unless the pod says.
    let tolerations = meta::ensure_object(spec).entry("tolerations").or_insert_with(|| json!([]));
    if let Value::Array(t) = tolerations {
        for (key, seconds) in [("node.kubernetes.io/not-ready", not_ready), ("node.kubernetes.io/unreachable", unreachable)] {
            let has = t.iter().any(|x| {
                x.get("key").and_then(Value::as_str) == Some(key)
                    || (x.get("key").is_none() && x.get("operator").and_then(Value::as_str) == Some("Exists"))
            });
            if !has {
                t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
            }
        }
    }
}

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(|s| s.get_mut("template")).and_then(|t| t.get_mut("spec")) {
        default_pod_spec(spec);
    }
}

/// Defaults applied on create and update.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match rt.id {
        Kind::Pod => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        Kind::Deployment => {
            let spec = meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(spec, "strategy", json!({"type": "RollingUpdate"}));
            if let Some(s) = spec.get_mut("strategy")
                && s.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            {
                set_default(s, "rollingUpdate", json!({}));
                if let Some(r) = s.get_mut("rollingUpdate") {
                    set_default(r, "maxSurge", json!("25%"));
                    set_default(r, "maxUnavailable", json!("25%"));
                }
            }
            default_template(obj);
        }
        Kind::ReplicaSet => {
            set_default(meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({})), "replicas", json!(1));
            default_template(obj);
        }
        Kind::DaemonSet => {
            let spec = meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
            default_template(obj);
        }
        Kind::StatefulSet => {
            let spec = meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            default_template(obj);
        }
        Kind::Job => {
            let spec = meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "parallelism", json!(1));
            if spec.get("completions").is_none() && spec.get("parallelism").and_then(Value::as_i64) == Some(1) {
                spec["completions"] = json!(1);
            }
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "manualSelector", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            default_template(obj);
        }
        Kind::Service => {
            let spec = meta::ensure_object(obj).entry("spec").or_insert_with(|| json!({}));
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "targetPort", port);
                    }
                }
            }
        }
        Kind::Secret => {
            set_default(obj, "type", json!("Opaque"));
            // stringData is write-only: fold it into data.
            if let Some(Value::Object(sd)) = meta::ensure_object(obj).remove("stringData") {
                use base64::Engine as _;
                let data = meta::ensure_object(meta::ensure_object(obj).entry("data").or_insert_with(|| json!({})));
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                }
            }
        }
        Kind::Namespace => {
            let name = meta::name(obj).to_string();
            let labels = meta::ensure_object(meta::metadata_mut(obj).entry("labels").or_insert_with(|| json!({})));
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        _ => {}
    }
}

/// Server-owned state of a new object: status reset, generation 1, pod admission defaults.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value, tolerations: (i64, i64)) {
    if rt.generation {
        meta::metadata_mut(obj).insert("generation".into(), json!(1));
    }
    match rt.id {
        Kind::Pod => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_admission(spec, tolerations);
            }
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::StatefulSet | Kind::Job => {
            obj["status"] = json!({});
        }
        Kind::Namespace => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        Kind::Service => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}

/// The pod's QoS class from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.get("spec").and_then(|s| s.get(*k)).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.get("resources").and_then(|r| r.get("requests")).and_then(Value::as_object);
        let lim = c.get("resources").and_then(|r| r.get("limits")).and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Carries server-owned state from `old` into an update of the main resource: identity,
/// creation time, status (owned by the status subresource), generation.
pub fn prepare_update(rt: &ResourceType, new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let m = meta::metadata_mut(new);
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old_meta.get(k) {
            Some(v) => {
                m.insert(k.into(), v.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
    if rt.has(super::registry::Sub::Status) || rt.id == Kind::Namespace {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                meta::ensure_object(new).remove("status");
            }
        }
    }
    if rt.id == Kind::Namespace {
        new["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    }
    if rt.id == Kind::Pod
        && let (Some(spec), Some(old_spec)) = (new.get_mut("spec"), old.get("spec"))
    {
        // Admission defaults of the original create stay.
        for k in ["serviceAccountName", "preemptionPolicy", "priority", "nodeName"] {
            if spec.get(k).is_none()
                && let Some(v) = old_spec.get(k)
            {
                spec[k] = v.clone();
            }
        }
        if spec.get("tolerations").is_none()
            && let Some(v) = old_spec.get("tolerations")
        {
            spec["tolerations"] = v.clone();
        }
    }
    if rt.id == Kind::Service
        && let (Some(spec), Some(old_spec)) = (new.get_mut("spec"), old.get("spec"))
    {
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(k).is_none()
                && let Some(v) = old_spec.get(k)
            {
                spec[k] = v.clone();
            }
        }
    }
    if rt.generation && new.get("spec") != old.get("spec") {
        let g = old.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(0);
        meta::metadata_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// An update of the status subresource: the old object with the new status.
pub fn status_update(new: &Value, old: &Value) -> Value {
    let mut out = old.clone();
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            meta::ensure_object(&mut out).remove("status");
        }
    }
    out
}

fn check_name(rt: &ResourceType, name: &str, errs: &mut Vec<FieldError>) {
    let why = match rt.id {
        Kind::Namespace | Kind::Service => meta::check_label(name),
        _ => meta::check_subdomain(name),
    };
    if let Some(why) = why {
        errs.push(FieldError::invalid("metadata.name", &json!(name), why));
    }
}

fn check_labels(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(l) = meta::labels(obj) {
        for (k, v) in l {
            if let Some(why) = meta::check_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", &json!(k), why));
            }
            if let Some(why) = v.as_str().and_then(meta::check_label_value) {
                errs.push(FieldError::invalid("metadata.labels", v, why));
            }
        }
    }
    if let Some(a) = obj.get("metadata").and_then(|m| m.get("annotations")).and_then(Value::as_object) {
        for k in a.keys() {
            if let Some(why) = meta::check_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.annotations", &json!(k), why));
            }
        }
    }
}

fn check_pod_spec(spec: Option<&Value>, at: &str, errs: &mut Vec<FieldError>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required(at, ""));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(format!("{at}.containers"), ""));
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let field = format!("{at}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required(format!("{field}.name"), "")),
                Some(n) => {
                    if let Some(why) = meta::check_label(n) {
                        errs.push(FieldError::invalid(format!("{field}.name"), &json!(n), why));
                    } else if !names.insert(n.to_string()) {
                        errs.push(FieldError::duplicate(format!("{field}.name"), &json!(n)));
                    }
                }
            }
            if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                errs.push(FieldError::required(format!("{field}.image"), ""));
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy")
        && !matches!(rp.as_str(), Some("Always" | "OnFailure" | "Never"))
    {
        errs.push(FieldError::not_supported(format!("{at}.restartPolicy"), rp, &["Always", "OnFailure", "Never"]));
    }
}

fn check_selector_matches_template(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(spec) = obj.get("spec") else { return };
    let Some(sel) = spec.get("selector") else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    match LabelSelector::from_object(sel) {
        Err(why) => errs.push(FieldError::invalid("spec.selector", sel, why)),
        Ok(s) if s.is_empty() => errs.push(FieldError::invalid("spec.selector", sel, "empty selector is invalid for deployment")),
        Ok(s) => {
            let labels = spec.get("template").and_then(|t| t.get("metadata")).and_then(|m| m.get("labels")).and_then(Value::as_object);
            if !s.matches(labels) {
                let l = labels.map(|l| Value::Object(l.clone())).unwrap_or(json!({}));
                errs.push(FieldError::invalid("spec.template.metadata.labels", &l, "`selector` does not match template `labels`"));
            }
        }
    }
}

/// Semantic validation of an object about to be stored (`old` on updates).
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_name(rt, meta::name(obj), &mut errs);
    check_labels(obj, &mut errs);
    match rt.id {
        Kind::Pod => {
            check_pod_spec(obj.get("spec"), "spec", &mut errs);
            if let (Some(old), true) = (old, errs.is_empty()) {
                let strip = |v: &Value| {
                    let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                    for list in ["containers", "initContainers"] {
                        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                            for c in cs {
                                meta::ensure_object(c).remove("image");
                            }
                        }
                    }
                    for k in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
                        meta::ensure_object(&mut s).remove(k);
                    }
                    s
                };
                if strip(obj) != strip(old) {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    ));
                }
            }
        }
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::StatefulSet => {
            check_selector_matches_template(obj, &mut errs);
            check_pod_spec(obj.get("spec").and_then(|s| s.get("template")).and_then(|t| t.get("spec")), "spec.template.spec", &mut errs);
            if let Some(r) = obj.get("spec").and_then(|s| s.get("replicas")).and_then(Value::as_i64)
                && r < 0
            {
                errs.push(FieldError::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0"));
            }
            if let (Some(old), Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::StatefulSet) = (old, rt.id) {
                let sel = |v: &Value| v.get("spec").and_then(|s| s.get("selector")).cloned();
                if sel(obj) != sel(old) {
                    errs.push(FieldError::invalid("spec.selector", &sel(obj).unwrap_or(Value::Null), "field is immutable"));
                }
            }
        }
        Kind::Job => {
            let tmpl = obj.get("spec").and_then(|s| s.get("template")).and_then(|t| t.get("spec"));
            check_pod_spec(tmpl, "spec.template.spec", &mut errs);
            if let Some(rp) = tmpl.and_then(|t| t.get("restartPolicy"))
                && !matches!(rp.as_str(), Some("OnFailure" | "Never"))
            {
                errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", rp, &["OnFailure", "Never"]));
            }
        }
        Kind::Service => {
            let spec = obj.get("spec");
            let headless = spec.and_then(|s| s.get("clusterIP")).and_then(Value::as_str) == Some("None");
            let ty = spec.and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP");
            if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
                errs.push(FieldError::not_supported("spec.type", &json!(ty), &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]));
            }
            let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
            if ports.is_none_or(|p| p.is_empty()) && !headless && ty != "ExternalName" {
                errs.push(FieldError::required("spec.ports", ""));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                match p.get("port").and_then(Value::as_i64) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    other => errs.push(FieldError::invalid(
                        format!("spec.ports[{i}].port"),
                        &json!(other.unwrap_or(0)),
                        "must be between 1 and 65535, inclusive",
                    )),
                }
                if ports.is_some_and(|ps| ps.len() > 1) && p.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
                }
            }
            if let Some(old) = old {
                let ip = |v: &Value| v.get("spec").and_then(|s| s.get("clusterIP")).cloned();
                if ip(old).is_some() && ip(obj) != ip(old) {
                    errs.push(FieldError::invalid("spec.clusterIPs[0]", &ip(obj).unwrap_or(Value::Null), "may not change once set"));
                }
            }
        }
        Kind::EndpointSlice => check_endpoint_slice(obj, old, &mut errs),
        Kind::ConfigMap | Kind::Secret => {
            let mut total = 0usize;
            for field in ["data", "binaryData"] {
                for (k, v) in obj.get(field).and_then(Value::as_object).into_iter().flatten() {
                    let valid = !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
                    if !valid {
                        errs.push(FieldError::invalid(
                            field.to_string(),
                            &json!(k),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                        ));
                    }
                    total += v.as_str().map_or(0, str::len);
                }
            }
            if total > 1024 * 1024 {
                errs.push(FieldError {
                    kind: super::status::FieldErrorKind::TooLong,
                    field: "data".into(),
                    value: None,
                    detail: "must have at most 1048576 bytes".into(),
                });
            }
            if rt.id == Kind::Secret
                && let Some(old) = old
                && old.get("type") != obj.get("type")
            {
                errs.push(FieldError::invalid("type", obj.get("type").unwrap_or(&Value::Null), "field is immutable"));
            }
        }
        _ => {}
    }
    errs
}

/// What kube-apiserver checks of an EndpointSlice: a supported, unchanging address type;
/// at most 1000 endpoints, each with 1 to 100 addresses of that type; valid port numbers.
fn check_endpoint_slice(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    const TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
    let address_type = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !TYPES.contains(&address_type) {
        errs.push(FieldError::not_supported("addressType", &json!(address_type), TYPES));
    }
    if let Some(old) = old
        && old.get("addressType") != obj.get("addressType")
    {
        errs.push(FieldError::invalid("addressType", &json!(address_type), "field is immutable"));
    }
    let endpoints = obj.get("endpoints").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if endpoints.len() > 1000 {
        errs.push(FieldError::invalid("endpoints", &json!(endpoints.len()), "must have at most 1000 items"));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let addresses = e.get("addresses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let field = format!("endpoints[{i}].addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(field.clone(), "must contain at least 1 address"));
        } else if addresses.len() > 100 {
            errs.push(FieldError::invalid(field.clone(), &json!(addresses.len()), "must have at most 100 items"));
        }
        for (j, a) in addresses.iter().enumerate() {
            let text = a.as_str().unwrap_or("");
            let why: Option<String> = match address_type {
                "IPv4" if text.parse::<std::net::Ipv4Addr>().is_err() => Some("must be a valid IPv4 address".into()),
                "IPv6" if text.parse::<std::net::Ipv6Addr>().is_err() => Some("must be a valid IPv6 address".into()),
                "FQDN" => meta::check_subdomain(text),
                _ => None,
            };
            if let Some(why) = why {
                errs.push(FieldError::invalid(format!("{field}[{j}]"), a, why));
            }
        }
    }
    for (i, p) in obj.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Some(n) = p.get("port").and_then(Value::as_i64)
            && !(1..=65535).contains(&n)
        {
            errs.push(FieldError::invalid(format!("ports[{i}].port"), &json!(n), "must be between 1 and 65535, inclusive"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::registry::by_kind;

    #[test]
    fn quantities_given_as_numbers_become_strings() {
        let mut v = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}}}]}});
        normalize_quantities(&mut v);
        assert_eq!(v["spec"]["containers"][0]["resources"]["limits"]["cpu"], json!("1"));
        assert_eq!(v["spec"]["containers"][0]["resources"]["requests"]["cpu"], json!("0.5"));
    }

    #[test]
    fn pods_get_defaults_and_qos() {
        let rt = by_kind(Kind::Pod);
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply_defaults(rt, &mut p);
        prepare_create(rt, &mut p, (300, 300));
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert!(validate(rt, &p, None).is_empty());
    }

    #[test]
    fn validation_names_fields() {
        let rt = by_kind(Kind::Deployment);
        let d = json!({"metadata": {"name": "Web"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        let errs: Vec<String> = validate(rt, &d, None).iter().map(|e| e.field.clone()).collect();
        assert_eq!(errs, vec!["metadata.name", "spec.template.metadata.labels", "spec.template.spec.containers[0].image"]);
    }

    #[test]
    fn endpoint_slices_keep_their_address_type_and_valid_addresses() {
        let rt = by_kind(Kind::EndpointSlice);
        let slice = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.1"]}], "ports": [{"port": 8080}]});
        assert!(validate(rt, &slice, None).is_empty());
        let bad = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv6",
            "endpoints": [{"addresses": []}, {"addresses": ["10.42.0.1"]}], "ports": [{"port": 0}]});
        let errs: Vec<String> = validate(rt, &bad, Some(&slice)).iter().map(|e| e.field.clone()).collect();
        assert_eq!(errs, vec!["addressType", "endpoints[0].addresses", "endpoints[1].addresses[0]", "ports[0].port"]);
        let untyped = json!({"metadata": {"name": "x"}, "addressType": "IPX", "endpoints": []});
        assert_eq!(validate(rt, &untyped, None).len(), 1);
    }

    #[test]
    fn spec_changes_bump_generation_and_status_is_kept() {
        let rt = by_kind(Kind::Deployment);
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        prepare_update(rt, &mut new, &old);
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["status"]["replicas"], 1);
        let mut same = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_update(rt, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
    }
}
