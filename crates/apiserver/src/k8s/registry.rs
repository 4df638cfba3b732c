//! The one table of served resources. Every resource is a row: its group/version/kind, names,
//! scope, storage prefix, subresources and the typed codec that validates it. Handlers are
//! generic over rows; type-specific behaviour lives in `strategy` and `table`, keyed by
//! [`Kind`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events,
};

/// Which resource a row is; selects type-specific behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Namespace,
    Pod,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    Node,
    Event,
    ServiceAccount,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    Job,
    Lease,
    EventV1,
    /// discovery.k8s.io EndpointSlice.
    EndpointSlice,
    /// authorization.k8s.io SelfSubjectAccessReview: create-only, never stored.
    SelfSubjectAccessReview,
    /// authentication.k8s.io SelfSubjectReview: create-only, never stored.
    SelfSubjectReview,
}

/// Subresources a row serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Status,
    Scale,
    Binding,
    Log,
    Exec,
    Finalize,
}

impl Sub {
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
            Sub::Log => "log",
            Sub::Exec => "exec",
            Sub::Finalize => "finalize",
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Sub::Status | Sub::Scale => &["get", "patch", "update"],
            Sub::Binding => &["create"],
            Sub::Log => &["get"],
            Sub::Exec => &["create", "get"],
            Sub::Finalize => &["update"],
        }
    }
}

/// Decodes a JSON object into the Kubernetes type, reports unknown fields by path, and
/// re-encodes it (dropping what the type does not know, as kube-apiserver's decoding does).
pub type Codec = fn(&Value, &mut Vec<String>) -> Result<Value, String>;

/// One served resource.
#[derive(Debug)]
pub struct ResourceType {
    pub id: Kind,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Key prefix in the store, with a trailing slash, e.g. `/registry/pods/`.
    pub storage: &'static str,
    pub subresources: &'static [Sub],
    pub codec: Codec,
    /// `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    /// Adds the type's JSON schema (and what it refers to) to an OpenAPI generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn schema_of<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

pub const CRUD_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl ResourceType {
    /// `apiVersion` of the objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods` or `deployments.apps`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// A stored object in this resource's served form (events.k8s.io events are stored as
    /// core/v1 ones; everything else as served).
    pub fn from_storage(&self, v: Value) -> Value {
        match self.id {
            Kind::EventV1 => super::convert::event_core_to_v1(&v),
            _ => v,
        }
    }

    /// An object of this resource in its stored form.
    pub fn to_storage<'a>(&self, v: &'a Value) -> std::borrow::Cow<'a, Value> {
        match self.id {
            Kind::EventV1 => std::borrow::Cow::Owned(super::convert::event_v1_to_core(v)),
            _ => std::borrow::Cow::Borrowed(v),
        }
    }

    pub fn has(&self, sub: Sub) -> bool {
        self.subresources.contains(&sub)
    }

    /// True for the review kinds that are computed per request and never stored.
    pub fn is_virtual(&self) -> bool {
        matches!(self.id, Kind::SelfSubjectAccessReview | Kind::SelfSubjectReview)
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_virtual() { &["create"] } else { CRUD_VERBS }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.storage),
            _ => format!("{}{name}", self.storage),
        }
    }

    /// The store prefix of a collection: one namespace, or every object.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.storage),
            _ => self.storage.to_string(),
        }
    }
}

fn codec<T: DeserializeOwned + Serialize>(value: &Value, unknown: &mut Vec<String>) -> Result<Value, String> {
    let mut seen = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
    let de = serde_ignored::Deserializer::new(value, &mut seen);
    let typed: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() { inner } else { format!("{path}: {inner}") }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// `spec.containers[0].foo`, the way Kubernetes names fields.
fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let head = ignored_path(parent);
            if head.is_empty() { key.clone() } else { format!("{head}.{key}") }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

macro_rules! row {
    ($id:ident, $group:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], [$($cat:expr),*], $ns:expr, $storage:expr, [$($sub:ident),*], $ty:ty, $gen:expr) => {
        ResourceType {
            id: Kind::$id,
            group: $group,
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            namespaced: $ns,
            storage: $storage,
            subresources: &[$(Sub::$sub),*],
            codec: codec::<$ty>,
            generation: $gen,
            schema: schema_of::<$ty>,
        }
    };
}

/// Every served resource, in discovery order.
pub static RESOURCES: &[ResourceType] = &[
    row!(
        Namespace,
        "",
        "Namespace",
        "namespaces",
        "namespace",
        ["ns"],
        [],
        false,
        "/registry/namespaces/",
        [Status, Finalize],
        core::Namespace,
        false
    ),
    row!(Pod, "", "Pod", "pods", "pod", ["po"], ["all"], true, "/registry/pods/", [Status, Binding, Log, Exec], core::Pod, false),
    row!(
        Service,
        "",
        "Service",
        "services",
        "service",
        ["svc"],
        ["all"],
        true,
        "/registry/services/specs/",
        [Status],
        core::Service,
        false
    ),
    row!(
        Endpoints,
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        ["ep"],
        [],
        true,
        "/registry/services/endpoints/",
        [],
        core::Endpoints,
        false
    ),
    row!(ConfigMap, "", "ConfigMap", "configmaps", "configmap", ["cm"], [], true, "/registry/configmaps/", [], core::ConfigMap, false),
    row!(Secret, "", "Secret", "secrets", "secret", [], [], true, "/registry/secrets/", [], core::Secret, false),
    row!(Node, "", "Node", "nodes", "node", ["no"], [], false, "/registry/minions/", [Status], core::Node, false),
    row!(Event, "", "Event", "events", "event", ["ev"], [], true, "/registry/events/", [], core::Event, false),
    row!(
        ServiceAccount,
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        ["sa"],
        [],
        true,
        "/registry/serviceaccounts/",
        [],
        core::ServiceAccount,
        false
    ),
    row!(
        Deployment,
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        ["deploy"],
        ["all"],
        true,
        "/registry/deployments/",
        [Status, Scale],
        apps::Deployment,
        true
    ),
    row!(
        ReplicaSet,
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        ["rs"],
        ["all"],
        true,
        "/registry/replicasets/",
        [Status, Scale],
        apps::ReplicaSet,
        true
    ),
    row!(
        DaemonSet,
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        ["ds"],
        ["all"],
        true,
        "/registry/daemonsets/",
        [Status],
        apps::DaemonSet,
        true
    ),
    row!(
        StatefulSet,
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        ["sts"],
        ["all"],
        true,
        "/registry/statefulsets/",
        [Status, Scale],
        apps::StatefulSet,
        true
    ),
    row!(Job, "batch", "Job", "jobs", "job", [], ["all"], true, "/registry/jobs/", [Status], batch::Job, true),
    row!(Lease, "coordination.k8s.io", "Lease", "leases", "lease", [], [], true, "/registry/leases/", [], coordination::Lease, false),
    row!(EventV1, "events.k8s.io", "Event", "events", "event", ["ev"], [], true, "/registry/events/", [], events::Event, false),
    row!(
        EndpointSlice,
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        [],
        [],
        true,
        "/registry/endpointslices/",
        [],
        discovery::EndpointSlice,
        false
    ),
    row!(
        SelfSubjectAccessReview,
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        [],
        [],
        false,
        "/registry/-/",
        [],
        k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
        false
    ),
    row!(
        SelfSubjectReview,
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        [],
        [],
        false,
        "/registry/-/",
        [],
        k8s_openapi::api::authentication::v1::SelfSubjectReview,
        false
    ),
];

/// The row for `group/version` and `plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The row for an object's `apiVersion` and `kind` (stored kinds only).
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| !r.is_virtual() && r.api_version() == api_version && r.kind == kind)
}

/// The row of a kind.
pub fn by_kind(id: Kind) -> &'static ResourceType {
    RESOURCES.iter().find(|r| r.id == id).unwrap_or(&RESOURCES[0])
}

/// Groups in discovery order, each with its one version.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codec_names_unknown_fields_and_type_errors_by_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "extra": true}});
        let mut unknown = Vec::new();
        let out = codec::<core::Pod>(&pod, &mut unknown).unwrap();
        unknown.sort();
        assert_eq!(unknown, vec!["spec.containers[0].bogus".to_string(), "spec.extra".to_string()]);
        assert!(out["spec"].get("extra").is_none());

        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": "three"}});
        let err = codec::<apps::Deployment>(&bad, &mut Vec::new()).unwrap_err();
        assert!(err.starts_with("spec.replicas: invalid type: string \"three\""), "{err}");
    }

    #[test]
    fn table_is_unique_by_group_and_plural() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(!(a.group == b.group && a.plural == b.plural), "{} twice", a.qualified());
            }
        }
        assert_eq!(lookup("apps", "v1", "deployments").map(|r| r.kind), Some("Deployment"));
        assert_eq!(by_kind(Kind::Node).storage, "/registry/minions/");
        let slices = lookup("discovery.k8s.io", "v1", "endpointslices").map(|r| (r.id, r.api_version(), r.namespaced));
        assert_eq!(slices, Some((Kind::EndpointSlice, "discovery.k8s.io/v1".to_string(), true)));
    }
}
