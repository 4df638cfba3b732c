//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the
//! JSON form of the object.
//!
//! kubectl sends the bodies of typed creates (`kubectl create configmap`, `kubectl auth can-i`, ...)
//! as protobuf. Such a body is the 4 magic bytes `k8s\0` followed by a `runtime.Unknown` envelope
//! (`typeMeta` = 1 {apiVersion = 1, kind = 2}, `raw` = 2, `contentEncoding` = 3, `contentType` = 4)
//! whose `raw` field holds the encoded object message (`generated.proto` of k8s.io/api).
//!
//! The decoder is table-driven: every supported message has a descriptor ([`Field`] slice) that maps
//! protobuf field numbers to JSON names and value kinds; unknown field numbers are skipped. The result
//! mimics what kube-apiserver would produce by decoding into the Go type and encoding it as JSON:
//!
//! - a field absent on the wire is absent from the JSON;
//! - Go's generated marshallers write every non-pointer scalar, even when empty, so a zero scalar
//!   whose Go field is tagged `omitempty` ([`Card::Opt`]) is dropped; pointer fields and fields
//!   without `omitempty` ([`Card::Keep`]) keep their zero value;
//! - embedded structs tagged `json:",inline"` (e.g. `Volume.VolumeSource`) are merged into the parent;
//! - `bytes` (map values) become base64, `meta.v1.Time` becomes RFC 3339 seconds (like kube, nanos are dropped;
//!   an empty, i.e. zero, time is omitted), `IntOrString` becomes a number or a string and
//!   `resource.Quantity` its string.
//!
//! Statuses (other than the few listed in the tables) and `metadata.managedFields` are not decoded:
//! they are ignored or reset on create anyway.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// `time.Time{}` (year 1) in Unix seconds: Go's zero time, which marshals as null.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Decodes a protobuf request body into the object's JSON form, including apiVersion and kind from the envelope.
pub fn decode(body: &[u8]) -> Result<serde_json::Value, String> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| "protobuf body does not start with the magic bytes \"k8s\\0\"".to_string())?;
    let envelope = Envelope::parse(rest).map_err(|e| format!("malformed protobuf envelope: {}", e.render()))?;
    if !envelope.content_encoding.is_empty() {
        return Err(format!("protobuf bodies with content encoding {:?} are not supported", envelope.content_encoding));
    }
    if !envelope.content_type.is_empty() && envelope.content_type != MEDIA_TYPE {
        return Err(format!("protobuf envelope holds content type {:?}, expected {MEDIA_TYPE}", envelope.content_type));
    }
    if envelope.kind.is_empty() {
        return Err("protobuf envelope has no kind".to_string());
    }
    let Some(descriptor) = descriptor_for(&envelope.api_version, &envelope.kind) else {
        let api_version = if envelope.api_version.is_empty() { "<none>" } else { envelope.api_version.as_str() };
        return Err(format!("protobuf bodies of kind {} (apiVersion {api_version}) are not supported; send JSON", envelope.kind));
    };
    let fields = decode_message(envelope.raw, descriptor)
        .map_err(|e| format!("malformed protobuf {} {}: {}", envelope.api_version, envelope.kind, e.render()))?;
    let mut object = Map::new();
    object.insert("apiVersion".to_string(), Value::String(envelope.api_version));
    object.insert("kind".to_string(), Value::String(envelope.kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// The supported (apiVersion, kind) pairs and their descriptors.
fn descriptor_for(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("v1", "Pod") => POD,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("batch/v1", "CronJob") => CRON_JOB,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------

/// How a field's value is represented on the wire and in JSON.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `string` → JSON string (invalid UTF-8 is replaced, like Go's JSON encoder does).
    Str,
    /// `int32` varint → JSON number.
    I32,
    /// `int64` varint → JSON number.
    I64,
    /// `bool` varint → JSON boolean.
    Bool,
    /// An embedded message → JSON object.
    Msg(&'static [Field]),
    /// An embedded message whose fields are inlined into the parent object (`json:",inline"`).
    Inline(&'static [Field]),
    /// `meta.v1.Time` {1 seconds, 2 nanos} → RFC 3339 string.
    Time,
    /// `intstr.IntOrString` {1 type, 2 intVal, 3 strVal} → number or string.
    IntOrString,
    /// `resource.Quantity` {1 string} → string.
    Quantity,
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>` → values in base64.
    MapBytes,
    /// `map<string, resource.Quantity>`.
    MapQuantity,
}

/// The cardinality of a field and how its zero value shows in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    /// A non-pointer Go field tagged `omitempty`: a zero scalar is omitted.
    Opt,
    /// A pointer Go field, or one without `omitempty`: kept whenever present on the wire.
    Keep,
    /// A repeated field → JSON array.
    Rep,
}

/// One field of a message descriptor.
#[derive(Debug, Clone, Copy)]
struct Field {
    num: u32,
    name: &'static str,
    kind: Kind,
    card: Card,
}

const fn opt(num: u32, name: &'static str, kind: Kind) -> Field {
    Field { num, name, kind, card: Card::Opt }
}

const fn keep(num: u32, name: &'static str, kind: Kind) -> Field {
    Field { num, name, kind, card: Card::Keep }
}

const fn rep(num: u32, name: &'static str, kind: Kind) -> Field {
    Field { num, name, kind, card: Card::Rep }
}

const fn inline(num: u32, name: &'static str, descriptor: &'static [Field]) -> Field {
    Field { num, name, kind: Kind::Inline(descriptor), card: Card::Keep }
}

use Kind::{Bool, I32, I64, IntOrString, MapBytes, MapQuantity, MapStr, Msg, Quantity, Str, Time};

// --- k8s.io/apimachinery/pkg/apis/meta/v1 ---

const OWNER_REFERENCE: &[Field] = &[
    keep(5, "apiVersion", Str),
    keep(1, "kind", Str),
    keep(3, "name", Str),
    keep(4, "uid", Str),
    keep(6, "controller", Bool),
    keep(7, "blockOwnerDeletion", Bool),
];

const OBJECT_META: &[Field] = &[
    opt(1, "name", Str),
    opt(2, "generateName", Str),
    opt(3, "namespace", Str),
    opt(4, "selfLink", Str),
    opt(5, "uid", Str),
    opt(6, "resourceVersion", Str),
    opt(7, "generation", I64),
    opt(8, "creationTimestamp", Time),
    keep(9, "deletionTimestamp", Time),
    keep(10, "deletionGracePeriodSeconds", I64),
    opt(11, "labels", MapStr),
    opt(12, "annotations", MapStr),
    rep(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    rep(14, "finalizers", Str),
    // 17 managedFields: not decoded.
];

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[keep(1, "key", Str), keep(2, "operator", Str), rep(3, "values", Str)];

const LABEL_SELECTOR: &[Field] = &[opt(1, "matchLabels", MapStr), rep(2, "matchExpressions", Msg(LABEL_SELECTOR_REQUIREMENT))];

const FIELD_SELECTOR_REQUIREMENT: &[Field] = &[keep(1, "key", Str), keep(2, "operator", Str), rep(3, "values", Str)];

// --- k8s.io/api/core/v1 ---

const LOCAL_OBJECT_REFERENCE: &[Field] = &[opt(1, "name", Str)];

const OBJECT_REFERENCE: &[Field] = &[
    opt(1, "kind", Str),
    opt(2, "namespace", Str),
    opt(3, "name", Str),
    opt(4, "uid", Str),
    opt(5, "apiVersion", Str),
    opt(6, "resourceVersion", Str),
    opt(7, "fieldPath", Str),
];

const KEY_TO_PATH: &[Field] = &[keep(1, "key", Str), keep(2, "path", Str), keep(3, "mode", I32), keep(4, "user", I64)];

const HOST_PATH_VOLUME_SOURCE: &[Field] = &[keep(1, "path", Str), keep(2, "type", Str)];

const EMPTY_DIR_VOLUME_SOURCE: &[Field] = &[opt(1, "medium", Str), keep(2, "sizeLimit", Quantity), keep(3, "mode", I32)];

const SECRET_VOLUME_SOURCE: &[Field] = &[
    opt(1, "secretName", Str),
    rep(2, "items", Msg(KEY_TO_PATH)),
    keep(3, "defaultMode", I32),
    keep(4, "optional", Bool),
    keep(5, "defaultUser", I64),
];

const CONFIG_MAP_VOLUME_SOURCE: &[Field] = &[
    inline(1, "localObjectReference", LOCAL_OBJECT_REFERENCE),
    rep(2, "items", Msg(KEY_TO_PATH)),
    keep(3, "defaultMode", I32),
    keep(4, "optional", Bool),
    keep(5, "defaultUser", I64),
];

const PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: &[Field] = &[keep(1, "claimName", Str), opt(2, "readOnly", Bool)];

const OBJECT_FIELD_SELECTOR: &[Field] = &[opt(1, "apiVersion", Str), keep(2, "fieldPath", Str)];

const RESOURCE_FIELD_SELECTOR: &[Field] = &[opt(1, "containerName", Str), keep(2, "resource", Str), opt(3, "divisor", Quantity)];

const DOWNWARD_API_VOLUME_FILE: &[Field] = &[
    keep(1, "path", Str),
    keep(2, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    keep(3, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    keep(4, "mode", I32),
    keep(5, "user", I64),
];

const DOWNWARD_API_VOLUME_SOURCE: &[Field] =
    &[rep(1, "items", Msg(DOWNWARD_API_VOLUME_FILE)), keep(2, "defaultMode", I32), keep(3, "defaultUser", I64)];

const VOLUME_SOURCE: &[Field] = &[
    keep(1, "hostPath", Msg(HOST_PATH_VOLUME_SOURCE)),
    keep(2, "emptyDir", Msg(EMPTY_DIR_VOLUME_SOURCE)),
    keep(6, "secret", Msg(SECRET_VOLUME_SOURCE)),
    keep(10, "persistentVolumeClaim", Msg(PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE)),
    keep(16, "downwardAPI", Msg(DOWNWARD_API_VOLUME_SOURCE)),
    keep(19, "configMap", Msg(CONFIG_MAP_VOLUME_SOURCE)),
];

const VOLUME: &[Field] = &[keep(1, "name", Str), inline(2, "volumeSource", VOLUME_SOURCE)];

const CONTAINER_PORT: &[Field] =
    &[opt(1, "name", Str), opt(2, "hostPort", I32), keep(3, "containerPort", I32), opt(4, "protocol", Str), opt(5, "hostIP", Str)];

const CONFIG_MAP_KEY_SELECTOR: &[Field] =
    &[inline(1, "localObjectReference", LOCAL_OBJECT_REFERENCE), keep(2, "key", Str), keep(3, "optional", Bool)];

const SECRET_KEY_SELECTOR: &[Field] =
    &[inline(1, "localObjectReference", LOCAL_OBJECT_REFERENCE), keep(2, "key", Str), keep(3, "optional", Bool)];

const ENV_VAR_SOURCE: &[Field] = &[
    keep(1, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    keep(2, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    keep(3, "configMapKeyRef", Msg(CONFIG_MAP_KEY_SELECTOR)),
    keep(4, "secretKeyRef", Msg(SECRET_KEY_SELECTOR)),
];

const ENV_VAR: &[Field] = &[keep(1, "name", Str), opt(2, "value", Str), keep(3, "valueFrom", Msg(ENV_VAR_SOURCE))];

const CONFIG_MAP_ENV_SOURCE: &[Field] = &[inline(1, "localObjectReference", LOCAL_OBJECT_REFERENCE), keep(2, "optional", Bool)];

const SECRET_ENV_SOURCE: &[Field] = &[inline(1, "localObjectReference", LOCAL_OBJECT_REFERENCE), keep(2, "optional", Bool)];

const ENV_FROM_SOURCE: &[Field] =
    &[opt(1, "prefix", Str), keep(2, "configMapRef", Msg(CONFIG_MAP_ENV_SOURCE)), keep(3, "secretRef", Msg(SECRET_ENV_SOURCE))];

const RESOURCE_CLAIM: &[Field] = &[keep(1, "name", Str), opt(2, "request", Str)];

const RESOURCE_REQUIREMENTS: &[Field] =
    &[opt(1, "limits", MapQuantity), opt(2, "requests", MapQuantity), rep(3, "claims", Msg(RESOURCE_CLAIM))];

const CONTAINER_RESIZE_POLICY: &[Field] = &[keep(1, "resourceName", Str), keep(2, "restartPolicy", Str)];

const VOLUME_MOUNT: &[Field] = &[
    keep(1, "name", Str),
    opt(2, "readOnly", Bool),
    keep(7, "recursiveReadOnly", Str),
    keep(3, "mountPath", Str),
    opt(4, "subPath", Str),
    keep(5, "mountPropagation", Str),
    opt(6, "subPathExpr", Str),
    rep(8, "bindMountOptions", Str),
];

const EXEC_ACTION: &[Field] = &[rep(1, "command", Str)];

const HTTP_HEADER: &[Field] = &[keep(1, "name", Str), keep(2, "value", Str)];

const HTTP_GET_ACTION: &[Field] = &[
    opt(1, "path", Str),
    keep(2, "port", IntOrString),
    opt(3, "host", Str),
    opt(4, "scheme", Str),
    rep(5, "httpHeaders", Msg(HTTP_HEADER)),
    keep(6, "protocol", Str),
];

const TCP_SOCKET_ACTION: &[Field] = &[keep(1, "port", IntOrString), opt(2, "host", Str)];

const GRPC_ACTION: &[Field] = &[keep(1, "port", I32), keep(2, "service", Str), keep(3, "mode", Str)];

const SLEEP_ACTION: &[Field] = &[keep(1, "seconds", I64)];

const PROBE_HANDLER: &[Field] = &[
    keep(1, "exec", Msg(EXEC_ACTION)),
    keep(2, "httpGet", Msg(HTTP_GET_ACTION)),
    keep(3, "tcpSocket", Msg(TCP_SOCKET_ACTION)),
    keep(4, "grpc", Msg(GRPC_ACTION)),
];

const PROBE: &[Field] = &[
    inline(1, "handler", PROBE_HANDLER),
    opt(2, "initialDelaySeconds", I32),
    opt(3, "timeoutSeconds", I32),
    opt(4, "periodSeconds", I32),
    opt(5, "successThreshold", I32),
    opt(6, "failureThreshold", I32),
    keep(7, "terminationGracePeriodSeconds", I64),
];

const LIFECYCLE_HANDLER: &[Field] = &[
    keep(1, "exec", Msg(EXEC_ACTION)),
    keep(2, "httpGet", Msg(HTTP_GET_ACTION)),
    keep(3, "tcpSocket", Msg(TCP_SOCKET_ACTION)),
    keep(4, "sleep", Msg(SLEEP_ACTION)),
];

const LIFECYCLE: &[Field] =
    &[keep(1, "postStart", Msg(LIFECYCLE_HANDLER)), keep(2, "preStop", Msg(LIFECYCLE_HANDLER)), keep(3, "stopSignal", Str)];

const CAPABILITIES: &[Field] = &[rep(1, "add", Str), rep(2, "drop", Str)];

const SE_LINUX_OPTIONS: &[Field] = &[opt(1, "user", Str), opt(2, "role", Str), opt(3, "type", Str), opt(4, "level", Str)];

const SECCOMP_PROFILE: &[Field] = &[keep(1, "type", Str), keep(2, "localhostProfile", Str)];

const SECURITY_CONTEXT: &[Field] = &[
    keep(1, "capabilities", Msg(CAPABILITIES)),
    keep(2, "privileged", Bool),
    keep(3, "seLinuxOptions", Msg(SE_LINUX_OPTIONS)),
    keep(4, "runAsUser", I64),
    keep(8, "runAsGroup", I64),
    keep(5, "runAsNonRoot", Bool),
    keep(6, "readOnlyRootFilesystem", Bool),
    keep(7, "allowPrivilegeEscalation", Bool),
    keep(9, "procMount", Str),
    keep(11, "seccompProfile", Msg(SECCOMP_PROFILE)),
];

const CONTAINER: &[Field] = &[
    keep(1, "name", Str),
    opt(2, "image", Str),
    rep(3, "command", Str),
    rep(4, "args", Str),
    opt(5, "workingDir", Str),
    rep(6, "ports", Msg(CONTAINER_PORT)),
    rep(19, "envFrom", Msg(ENV_FROM_SOURCE)),
    rep(7, "env", Msg(ENV_VAR)),
    opt(8, "resources", Msg(RESOURCE_REQUIREMENTS)),
    rep(23, "resizePolicy", Msg(CONTAINER_RESIZE_POLICY)),
    keep(24, "restartPolicy", Str),
    rep(9, "volumeMounts", Msg(VOLUME_MOUNT)),
    keep(10, "livenessProbe", Msg(PROBE)),
    keep(11, "readinessProbe", Msg(PROBE)),
    keep(22, "startupProbe", Msg(PROBE)),
    keep(12, "lifecycle", Msg(LIFECYCLE)),
    opt(13, "terminationMessagePath", Str),
    opt(20, "terminationMessagePolicy", Str),
    opt(14, "imagePullPolicy", Str),
    keep(15, "securityContext", Msg(SECURITY_CONTEXT)),
    opt(16, "stdin", Bool),
    opt(17, "stdinOnce", Bool),
    opt(18, "tty", Bool),
];

const SYSCTL: &[Field] = &[keep(1, "name", Str), keep(2, "value", Str)];

const POD_SECURITY_CONTEXT: &[Field] = &[
    keep(1, "seLinuxOptions", Msg(SE_LINUX_OPTIONS)),
    keep(2, "runAsUser", I64),
    keep(6, "runAsGroup", I64),
    keep(3, "runAsNonRoot", Bool),
    rep(4, "supplementalGroups", I64),
    keep(12, "supplementalGroupsPolicy", Str),
    keep(5, "fsGroup", I64),
    rep(7, "sysctls", Msg(SYSCTL)),
    keep(9, "fsGroupChangePolicy", Str),
    keep(10, "seccompProfile", Msg(SECCOMP_PROFILE)),
    keep(13, "seLinuxChangePolicy", Str),
];

const TOLERATION: &[Field] =
    &[opt(1, "key", Str), opt(2, "operator", Str), opt(3, "value", Str), opt(4, "effect", Str), keep(5, "tolerationSeconds", I64)];

const HOST_ALIAS: &[Field] = &[keep(1, "ip", Str), rep(2, "hostnames", Str)];

const NODE_SELECTOR_REQUIREMENT: &[Field] = &[keep(1, "key", Str), keep(2, "operator", Str), rep(3, "values", Str)];

const NODE_SELECTOR_TERM: &[Field] =
    &[rep(1, "matchExpressions", Msg(NODE_SELECTOR_REQUIREMENT)), rep(2, "matchFields", Msg(NODE_SELECTOR_REQUIREMENT))];

const NODE_SELECTOR: &[Field] = &[rep(1, "nodeSelectorTerms", Msg(NODE_SELECTOR_TERM))];

const PREFERRED_SCHEDULING_TERM: &[Field] = &[keep(1, "weight", I32), keep(2, "preference", Msg(NODE_SELECTOR_TERM))];

const NODE_AFFINITY: &[Field] = &[
    keep(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(NODE_SELECTOR)),
    rep(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(PREFERRED_SCHEDULING_TERM)),
];

const POD_AFFINITY_TERM: &[Field] = &[
    keep(1, "labelSelector", Msg(LABEL_SELECTOR)),
    rep(2, "namespaces", Str),
    keep(3, "topologyKey", Str),
    keep(4, "namespaceSelector", Msg(LABEL_SELECTOR)),
    rep(5, "matchLabelKeys", Str),
    rep(6, "mismatchLabelKeys", Str),
];

const WEIGHTED_POD_AFFINITY_TERM: &[Field] = &[keep(1, "weight", I32), keep(2, "podAffinityTerm", Msg(POD_AFFINITY_TERM))];

/// PodAffinity and PodAntiAffinity share their layout.
const POD_AFFINITY: &[Field] = &[
    rep(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(POD_AFFINITY_TERM)),
    rep(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(WEIGHTED_POD_AFFINITY_TERM)),
];

const AFFINITY: &[Field] = &[
    keep(1, "nodeAffinity", Msg(NODE_AFFINITY)),
    keep(2, "podAffinity", Msg(POD_AFFINITY)),
    keep(3, "podAntiAffinity", Msg(POD_AFFINITY)),
];

const TOPOLOGY_SPREAD_CONSTRAINT: &[Field] = &[
    keep(1, "maxSkew", I32),
    keep(2, "topologyKey", Str),
    keep(3, "whenUnsatisfiable", Str),
    keep(4, "labelSelector", Msg(LABEL_SELECTOR)),
    keep(5, "minDomains", I32),
    keep(6, "nodeAffinityPolicy", Str),
    keep(7, "nodeTaintsPolicy", Str),
    rep(8, "matchLabelKeys", Str),
];

const POD_DNS_CONFIG_OPTION: &[Field] = &[opt(1, "name", Str), keep(2, "value", Str)];

const POD_DNS_CONFIG: &[Field] = &[rep(1, "nameservers", Str), rep(2, "searches", Str), rep(3, "options", Msg(POD_DNS_CONFIG_OPTION))];

const POD_READINESS_GATE: &[Field] = &[keep(1, "conditionType", Str)];

/// PodOS and PodSchedulingGate: just a name.
const NAME_ONLY: &[Field] = &[keep(1, "name", Str)];

const POD_SPEC: &[Field] = &[
    rep(1, "volumes", Msg(VOLUME)),
    rep(20, "initContainers", Msg(CONTAINER)),
    rep(2, "containers", Msg(CONTAINER)),
    opt(3, "restartPolicy", Str),
    keep(4, "terminationGracePeriodSeconds", I64),
    keep(5, "activeDeadlineSeconds", I64),
    opt(6, "dnsPolicy", Str),
    opt(7, "nodeSelector", MapStr),
    opt(8, "serviceAccountName", Str),
    opt(9, "serviceAccount", Str),
    keep(21, "automountServiceAccountToken", Bool),
    opt(10, "nodeName", Str),
    opt(11, "hostNetwork", Bool),
    opt(12, "hostPID", Bool),
    opt(13, "hostIPC", Bool),
    keep(27, "shareProcessNamespace", Bool),
    keep(14, "securityContext", Msg(POD_SECURITY_CONTEXT)),
    rep(15, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    opt(16, "hostname", Str),
    opt(17, "subdomain", Str),
    keep(18, "affinity", Msg(AFFINITY)),
    opt(19, "schedulerName", Str),
    rep(22, "tolerations", Msg(TOLERATION)),
    rep(23, "hostAliases", Msg(HOST_ALIAS)),
    opt(24, "priorityClassName", Str),
    keep(25, "priority", I32),
    keep(26, "dnsConfig", Msg(POD_DNS_CONFIG)),
    rep(28, "readinessGates", Msg(POD_READINESS_GATE)),
    keep(29, "runtimeClassName", Str),
    keep(30, "enableServiceLinks", Bool),
    keep(31, "preemptionPolicy", Str),
    opt(32, "overhead", MapQuantity),
    rep(33, "topologySpreadConstraints", Msg(TOPOLOGY_SPREAD_CONSTRAINT)),
    keep(35, "setHostnameAsFQDN", Bool),
    keep(36, "os", Msg(NAME_ONLY)),
    keep(37, "hostUsers", Bool),
    rep(38, "schedulingGates", Msg(NAME_ONLY)),
    keep(40, "resources", Msg(RESOURCE_REQUIREMENTS)),
    keep(41, "hostnameOverride", Str),
];

const POD_TEMPLATE_SPEC: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(POD_SPEC))];

const POD: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(POD_SPEC))];

const CONFIG_MAP: &[Field] =
    &[opt(1, "metadata", Msg(OBJECT_META)), keep(4, "immutable", Bool), opt(2, "data", MapStr), opt(3, "binaryData", MapBytes)];

const SECRET: &[Field] = &[
    opt(1, "metadata", Msg(OBJECT_META)),
    keep(5, "immutable", Bool),
    opt(2, "data", MapBytes),
    opt(4, "stringData", MapStr),
    opt(3, "type", Str),
];

const NAMESPACE_SPEC: &[Field] = &[rep(1, "finalizers", Str)];

const NAMESPACE_STATUS: &[Field] = &[opt(1, "phase", Str)];

const NAMESPACE: &[Field] =
    &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(NAMESPACE_SPEC)), opt(3, "status", Msg(NAMESPACE_STATUS))];

const SERVICE_ACCOUNT: &[Field] = &[
    opt(1, "metadata", Msg(OBJECT_META)),
    rep(2, "secrets", Msg(OBJECT_REFERENCE)),
    rep(3, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    keep(4, "automountServiceAccountToken", Bool),
];

const SERVICE_PORT: &[Field] = &[
    opt(1, "name", Str),
    opt(2, "protocol", Str),
    keep(6, "appProtocol", Str),
    keep(3, "port", I32),
    opt(4, "targetPort", IntOrString),
    opt(5, "nodePort", I32),
];

const CLIENT_IP_CONFIG: &[Field] = &[keep(1, "timeoutSeconds", I32)];

const SESSION_AFFINITY_CONFIG: &[Field] = &[keep(1, "clientIP", Msg(CLIENT_IP_CONFIG))];

const SERVICE_SPEC: &[Field] = &[
    rep(1, "ports", Msg(SERVICE_PORT)),
    opt(2, "selector", MapStr),
    opt(3, "clusterIP", Str),
    rep(18, "clusterIPs", Str),
    opt(4, "type", Str),
    rep(5, "externalIPs", Str),
    opt(7, "sessionAffinity", Str),
    opt(8, "loadBalancerIP", Str),
    rep(9, "loadBalancerSourceRanges", Str),
    opt(10, "externalName", Str),
    opt(11, "externalTrafficPolicy", Str),
    opt(12, "healthCheckNodePort", I32),
    opt(13, "publishNotReadyAddresses", Bool),
    keep(14, "sessionAffinityConfig", Msg(SESSION_AFFINITY_CONFIG)),
    rep(19, "ipFamilies", Str),
    keep(17, "ipFamilyPolicy", Str),
    keep(20, "allocateLoadBalancerNodePorts", Bool),
    keep(21, "loadBalancerClass", Str),
    keep(22, "internalTrafficPolicy", Str),
    keep(23, "trafficDistribution", Str),
];

const SERVICE: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(SERVICE_SPEC))];

// --- k8s.io/api/apps/v1 ---

const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[keep(1, "maxUnavailable", IntOrString), keep(2, "maxSurge", IntOrString)];

const DEPLOYMENT_STRATEGY: &[Field] = &[opt(1, "type", Str), keep(2, "rollingUpdate", Msg(ROLLING_UPDATE_DEPLOYMENT))];

const DEPLOYMENT_SPEC: &[Field] = &[
    keep(1, "replicas", I32),
    keep(2, "selector", Msg(LABEL_SELECTOR)),
    keep(3, "template", Msg(POD_TEMPLATE_SPEC)),
    opt(4, "strategy", Msg(DEPLOYMENT_STRATEGY)),
    opt(5, "minReadySeconds", I32),
    keep(6, "revisionHistoryLimit", I32),
    opt(7, "paused", Bool),
    keep(9, "progressDeadlineSeconds", I32),
];

const DEPLOYMENT: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(DEPLOYMENT_SPEC))];

// --- k8s.io/api/batch/v1 ---

const JOB_SPEC: &[Field] = &[
    keep(1, "parallelism", I32),
    keep(2, "completions", I32),
    keep(3, "activeDeadlineSeconds", I64),
    // 11 podFailurePolicy, 16 successPolicy, 17 scheduling: not decoded.
    keep(7, "backoffLimit", I32),
    keep(12, "backoffLimitPerIndex", I32),
    keep(13, "maxFailedIndexes", I32),
    keep(4, "selector", Msg(LABEL_SELECTOR)),
    keep(5, "manualSelector", Bool),
    keep(6, "template", Msg(POD_TEMPLATE_SPEC)),
    keep(8, "ttlSecondsAfterFinished", I32),
    keep(9, "completionMode", Str),
    keep(10, "suspend", Bool),
    keep(14, "podReplacementPolicy", Str),
    keep(15, "managedBy", Str),
];

const JOB: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(JOB_SPEC))];

const JOB_TEMPLATE_SPEC: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(JOB_SPEC))];

const CRON_JOB_SPEC: &[Field] = &[
    keep(1, "schedule", Str),
    keep(8, "timeZone", Str),
    keep(2, "startingDeadlineSeconds", I64),
    opt(3, "concurrencyPolicy", Str),
    keep(4, "suspend", Bool),
    keep(5, "jobTemplate", Msg(JOB_TEMPLATE_SPEC)),
    keep(6, "successfulJobsHistoryLimit", I32),
    keep(7, "failedJobsHistoryLimit", I32),
];

const CRON_JOB: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "spec", Msg(CRON_JOB_SPEC))];

// --- k8s.io/api/authorization/v1 ---

const FIELD_SELECTOR_ATTRIBUTES: &[Field] = &[opt(1, "rawSelector", Str), rep(2, "requirements", Msg(FIELD_SELECTOR_REQUIREMENT))];

const LABEL_SELECTOR_ATTRIBUTES: &[Field] = &[opt(1, "rawSelector", Str), rep(2, "requirements", Msg(LABEL_SELECTOR_REQUIREMENT))];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    opt(1, "namespace", Str),
    opt(2, "verb", Str),
    opt(3, "group", Str),
    opt(4, "version", Str),
    opt(5, "resource", Str),
    opt(6, "subresource", Str),
    opt(7, "name", Str),
    keep(8, "fieldSelector", Msg(FIELD_SELECTOR_ATTRIBUTES)),
    keep(9, "labelSelector", Msg(LABEL_SELECTOR_ATTRIBUTES)),
];

const NON_RESOURCE_ATTRIBUTES: &[Field] = &[opt(1, "path", Str), opt(2, "verb", Str)];

const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] =
    &[keep(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)), keep(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES))];

const SUBJECT_ACCESS_REVIEW_STATUS: &[Field] =
    &[keep(1, "allowed", Bool), opt(4, "denied", Bool), opt(2, "reason", Str), opt(3, "evaluationError", Str)];

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    opt(1, "metadata", Msg(OBJECT_META)),
    keep(2, "spec", Msg(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    opt(3, "status", Msg(SUBJECT_ACCESS_REVIEW_STATUS)),
];

const SELF_SUBJECT_RULES_REVIEW_SPEC: &[Field] = &[opt(1, "namespace", Str)];

const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), keep(2, "spec", Msg(SELF_SUBJECT_RULES_REVIEW_SPEC))];

// --- k8s.io/api/authentication/v1 ---

const USER_INFO: &[Field] = &[
    opt(1, "username", Str),
    opt(2, "uid", Str),
    rep(3, "groups", Str),
    // 4 extra: not decoded.
];

const SELF_SUBJECT_REVIEW_STATUS: &[Field] = &[opt(1, "userInfo", Msg(USER_INFO))];

const SELF_SUBJECT_REVIEW: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), opt(2, "status", Msg(SELF_SUBJECT_REVIEW_STATUS))];

const BOUND_OBJECT_REFERENCE: &[Field] = &[opt(1, "kind", Str), opt(2, "apiVersion", Str), opt(3, "name", Str), opt(4, "uid", Str)];

const TOKEN_REQUEST_SPEC: &[Field] = &[
    rep(1, "audiences", Str),
    keep(4, "expirationSeconds", I64),
    keep(3, "boundObjectRef", Msg(BOUND_OBJECT_REFERENCE)),
    // 5 attestations: not decoded.
];

const TOKEN_REQUEST: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), keep(2, "spec", Msg(TOKEN_REQUEST_SPEC))];

// --- k8s.io/api/rbac/v1 ---

const POLICY_RULE: &[Field] = &[
    rep(1, "verbs", Str),
    rep(2, "apiGroups", Str),
    rep(3, "resources", Str),
    rep(4, "resourceNames", Str),
    rep(5, "nonResourceURLs", Str),
];

const SUBJECT: &[Field] = &[keep(1, "kind", Str), opt(2, "apiGroup", Str), keep(3, "name", Str), opt(4, "namespace", Str)];

const ROLE_REF: &[Field] = &[keep(1, "apiGroup", Str), keep(2, "kind", Str), keep(3, "name", Str)];

const AGGREGATION_RULE: &[Field] = &[rep(1, "clusterRoleSelectors", Msg(LABEL_SELECTOR))];

const ROLE: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), rep(2, "rules", Msg(POLICY_RULE))];

const CLUSTER_ROLE: &[Field] =
    &[opt(1, "metadata", Msg(OBJECT_META)), rep(2, "rules", Msg(POLICY_RULE)), keep(3, "aggregationRule", Msg(AGGREGATION_RULE))];

/// RoleBinding and ClusterRoleBinding share their layout.
const ROLE_BINDING: &[Field] = &[opt(1, "metadata", Msg(OBJECT_META)), rep(2, "subjects", Msg(SUBJECT)), keep(3, "roleRef", Msg(ROLE_REF))];

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/// A decoding error, with the JSON path of the field it happened in (innermost first).
#[derive(Debug)]
struct DecodeError {
    path: Vec<&'static str>,
    message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError { path: Vec::new(), message: message.into() }
    }

    fn within(mut self, name: &'static str) -> Self {
        self.path.push(name);
        self
    }

    fn render(&self) -> String {
        if self.path.is_empty() {
            return self.message.clone();
        }
        let path: Vec<&str> = self.path.iter().rev().copied().collect();
        format!("field {}: {}", path.join("."), self.message)
    }
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// One value read off the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    /// A fixed64 value (no supported field has one; only skipped).
    Fixed64,
    Len(&'a [u8]),
    /// A fixed32 value (no supported field has one; only skipped).
    Fixed32,
}

impl Wire<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "varint",
            Wire::Fixed64 => "fixed64",
            Wire::Len(_) => "length-delimited",
            Wire::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over the fields of one encoded message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::new("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(DecodeError::new("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::new("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or_else(|| DecodeError::new("truncated field"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field number and value, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.at_end() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| DecodeError::new("field number out of range"))?;
        if num == 0 {
            return Err(DecodeError::new("field number 0"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::new("length out of range"))?;
                Wire::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            3 | 4 => return Err(DecodeError::new(format!("field {num} uses the unsupported group wire type"))),
            other => return Err(DecodeError::new(format!("field {num} has invalid wire type {other}"))),
        };
        Ok(Some((num, wire)))
    }
}

fn expect_len<'a>(wire: Wire<'a>) -> Result<&'a [u8]> {
    match wire {
        Wire::Len(bytes) => Ok(bytes),
        other => Err(DecodeError::new(format!("expected a length-delimited value, got {}", other.type_name()))),
    }
}

fn expect_varint(wire: Wire<'_>) -> Result<u64> {
    match wire {
        Wire::Varint(value) => Ok(value),
        other => Err(DecodeError::new(format!("expected a varint, got {}", other.type_name()))),
    }
}

fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `runtime.Unknown` envelope.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = Reader::new(buf);
        while let Some((num, wire)) = reader.field()? {
            match num {
                1 => {
                    let mut type_meta = Reader::new(expect_len(wire).map_err(|e| e.within("typeMeta"))?);
                    while let Some((num, wire)) = type_meta.field().map_err(|e| e.within("typeMeta"))? {
                        match num {
                            1 => envelope.api_version = string(expect_len(wire).map_err(|e| e.within("typeMeta.apiVersion"))?),
                            2 => envelope.kind = string(expect_len(wire).map_err(|e| e.within("typeMeta.kind"))?),
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = expect_len(wire).map_err(|e| e.within("raw"))?,
                3 => envelope.content_encoding = string(expect_len(wire).map_err(|e| e.within("contentEncoding"))?),
                4 => envelope.content_type = string(expect_len(wire).map_err(|e| e.within("contentType"))?),
                _ => {}
            }
        }
        Ok(envelope)
    }
}

// ---------------------------------------------------------------------------------------------
// Messages → JSON
// ---------------------------------------------------------------------------------------------

/// Decodes one message with its descriptor into a JSON object.
fn decode_message(buf: &[u8], descriptor: &'static [Field]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut reader = Reader::new(buf);
    while let Some((num, wire)) = reader.field()? {
        let Some(field) = descriptor.iter().find(|f| f.num == num) else {
            continue;
        };
        decode_field(field, wire, &mut out).map_err(|e| if matches!(field.kind, Kind::Inline(_)) { e } else { e.within(field.name) })?;
    }
    Ok(out)
}

fn decode_field(field: &Field, wire: Wire<'_>, out: &mut Map<String, Value>) -> Result<()> {
    match field.kind {
        Kind::Inline(descriptor) => {
            let inner = decode_message(expect_len(wire)?, descriptor)?;
            out.extend(inner);
        }
        Kind::MapStr | Kind::MapBytes | Kind::MapQuantity => {
            let (key, value) = decode_map_entry(expect_len(wire)?, field.kind)?;
            let entry = out.entry(field.name).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(key, value);
            } else {
                *entry = Value::Object(Map::from_iter([(key, value)]));
            }
        }
        _ if field.card == Card::Rep => {
            let entry = out.entry(field.name).or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(items) = entry {
                match (field.kind, wire) {
                    // Packed repeated scalars.
                    (Kind::I32 | Kind::I64 | Kind::Bool, Wire::Len(bytes)) => {
                        let mut packed = Reader::new(bytes);
                        while !packed.at_end() {
                            items.push(varint_value(field.kind, packed.varint()?));
                        }
                    }
                    _ => {
                        if let Some(value) = decode_value(field.kind, wire)? {
                            items.push(value);
                        }
                    }
                }
            }
        }
        _ => match decode_value(field.kind, wire)? {
            Some(value) if field.card == Card::Opt && is_zero_scalar(field.kind, &value) => {
                out.remove(field.name);
            }
            Some(Value::Object(inner)) => {
                // A non-repeated message seen twice is merged, as protobuf does.
                match out.get_mut(field.name) {
                    Some(Value::Object(existing)) => existing.extend(inner),
                    _ => {
                        out.insert(field.name.to_string(), Value::Object(inner));
                    }
                }
            }
            Some(value) => {
                out.insert(field.name.to_string(), value);
            }
            None => {
                out.remove(field.name);
            }
        },
    }
    Ok(())
}

/// Whether `value` is the zero value of a scalar kind (which `omitempty` drops).
fn is_zero_scalar(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::Str => value.as_str() == Some(""),
        Kind::I32 | Kind::I64 => value.as_i64() == Some(0),
        Kind::Bool => value.as_bool() == Some(false),
        _ => false,
    }
}

fn varint_value(kind: Kind, raw: u64) -> Value {
    match kind {
        // Truncation to 32 bits is how protobuf reads int32 (negative values are sign-extended to 64).
        Kind::I32 => Value::from(raw as i32),
        Kind::Bool => Value::Bool(raw != 0),
        _ => Value::from(raw as i64),
    }
}

/// Decodes a single (non-map, non-inline) value; `None` means "zero time", which is omitted.
fn decode_value(kind: Kind, wire: Wire<'_>) -> Result<Option<Value>> {
    Ok(Some(match kind {
        Kind::Str => Value::String(string(expect_len(wire)?)),
        Kind::I32 | Kind::I64 | Kind::Bool => varint_value(kind, expect_varint(wire)?),
        Kind::Msg(descriptor) => Value::Object(decode_message(expect_len(wire)?, descriptor)?),
        Kind::Time => return decode_time(expect_len(wire)?),
        Kind::IntOrString => decode_int_or_string(expect_len(wire)?)?,
        Kind::Quantity => Value::String(decode_quantity(expect_len(wire)?)?),
        Kind::Inline(_) | Kind::MapStr | Kind::MapBytes | Kind::MapQuantity => {
            return Err(DecodeError::new("internal error: map or inline field decoded as a value"));
        }
    }))
}

/// A map entry message {1 key, 2 value}.
fn decode_map_entry(buf: &[u8], kind: Kind) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(buf);
    while let Some((num, wire)) = reader.field()? {
        match num {
            1 => key = string(expect_len(wire).map_err(|e| e.within("key"))?),
            2 => {
                let bytes = expect_len(wire).map_err(|e| e.within("value"))?;
                value = Some(match kind {
                    Kind::MapBytes => Value::String(STANDARD.encode(bytes)),
                    Kind::MapQuantity => Value::String(decode_quantity(bytes).map_err(|e| e.within("value"))?),
                    _ => Value::String(string(bytes)),
                });
            }
            _ => {}
        }
    }
    let value = value.unwrap_or_else(|| Value::String(if matches!(kind, Kind::MapQuantity) { "0" } else { "" }.to_string()));
    Ok((key, value))
}

/// `meta.v1.Time` {1 seconds, 2 nanos}; like kube-apiserver, only the seconds are kept.
fn decode_time(buf: &[u8]) -> Result<Option<Value>> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut seconds: i64 = 0;
    let mut reader = Reader::new(buf);
    while let Some((num, wire)) = reader.field()? {
        if num == 1 {
            seconds = expect_varint(wire).map_err(|e| e.within("seconds"))? as i64;
        }
    }
    if seconds == GO_ZERO_TIME_SECONDS {
        return Ok(None);
    }
    Ok(Some(Value::String(rfc3339(seconds)?)))
}

/// Formats Unix seconds as `2006-01-02T15:04:05Z`.
fn rfc3339(seconds: i64) -> Result<String> {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return Err(DecodeError::new(format!("time {seconds}s is outside the years 0-9999")));
    }
    Ok(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60))
}

/// `intstr.IntOrString` {1 type (0 int, 1 string), 2 intVal, 3 strVal}.
fn decode_int_or_string(buf: &[u8]) -> Result<Value> {
    let (mut kind, mut int_val, mut str_val) = (0u64, 0i32, String::new());
    let mut reader = Reader::new(buf);
    while let Some((num, wire)) = reader.field()? {
        match num {
            1 => kind = expect_varint(wire).map_err(|e| e.within("type"))?,
            2 => int_val = expect_varint(wire).map_err(|e| e.within("intVal"))? as i32,
            3 => str_val = string(expect_len(wire).map_err(|e| e.within("strVal"))?),
            _ => {}
        }
    }
    match kind {
        0 => Ok(Value::from(int_val)),
        1 => Ok(Value::String(str_val)),
        other => Err(DecodeError::new(format!("invalid IntOrString type {other}"))),
    }
}

/// `resource.Quantity` {1 string}; an absent string is the zero quantity.
fn decode_quantity(buf: &[u8]) -> Result<String> {
    let mut quantity = None;
    let mut reader = Reader::new(buf);
    while let Some((num, wire)) = reader.field()? {
        if num == 1 {
            quantity = Some(string(expect_len(wire).map_err(|e| e.within("string"))?));
        }
    }
    match quantity {
        None => Ok("0".to_string()),
        Some(q) if q.is_empty() => Err(DecodeError::new("empty quantity")),
        Some(q) => Ok(q),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny protobuf encoder for building test messages by hand.
    #[derive(Default, Clone)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Enc(Vec::new())
        }

        fn raw_varint(&mut self, mut v: u64) {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(byte);
                    return;
                }
                self.0.push(byte | 0x80);
            }
        }

        fn key(&mut self, num: u32, wire: u8) {
            self.raw_varint((u64::from(num) << 3) | u64::from(wire));
        }

        fn varint(mut self, num: u32, v: i64) -> Self {
            self.key(num, 0);
            self.raw_varint(v as u64);
            self
        }

        fn bytes(mut self, num: u32, b: &[u8]) -> Self {
            self.key(num, 2);
            self.raw_varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }

        fn str(self, num: u32, s: &str) -> Self {
            self.bytes(num, s.as_bytes())
        }

        fn msg(self, num: u32, m: Enc) -> Self {
            self.bytes(num, &m.0)
        }

        fn fixed32(mut self, num: u32, v: u32) -> Self {
            self.key(num, 5);
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }

        fn fixed64(mut self, num: u32, v: u64) -> Self {
            self.key(num, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }

        fn map_str(self, num: u32, k: &str, v: &str) -> Self {
            self.msg(num, Enc::new().str(1, k).str(2, v))
        }

        fn map_bytes(self, num: u32, k: &str, v: &[u8]) -> Self {
            self.msg(num, Enc::new().str(1, k).bytes(2, v))
        }

        fn map_quantity(self, num: u32, k: &str, q: &str) -> Self {
            self.msg(num, Enc::new().str(1, k).msg(2, Enc::new().str(1, q)))
        }
    }

    /// Wraps an object message in the `k8s\0` + runtime.Unknown envelope.
    fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
        let unknown = Enc::new()
            .msg(1, Enc::new().str(1, api_version).str(2, kind))
            .msg(2, raw)
            .str(3, "") // gogo writes empty strings too
            .str(4, "");
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&unknown.0);
        body
    }

    fn int_or_string_int(v: i64) -> Enc {
        Enc::new().varint(1, 0).varint(2, v).str(3, "")
    }

    fn int_or_string_str(s: &str) -> Enc {
        Enc::new().varint(1, 1).varint(2, 0).str(3, s)
    }

    #[test]
    fn config_map() {
        let meta = Enc::new()
            .str(1, "cm")
            .str(2, "") // empty omitempty strings, as Go sends them, are omitted
            .str(3, "ns")
            .varint(7, 0)
            .msg(8, Enc::new()) // zero creationTimestamp
            .map_str(11, "app", "web")
            .map_str(11, "tier", "fe")
            .map_str(12, "note", "hi")
            .str(14, "f1");
        let raw = Enc::new().msg(1, meta).map_str(2, "k", "v").map_str(2, "k2", "").map_bytes(3, "bin", b"\x00\x01").varint(4, 0);
        let got = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "cm",
                    "namespace": "ns",
                    "labels": {"app": "web", "tier": "fe"},
                    "annotations": {"note": "hi"},
                    "finalizers": ["f1"],
                },
                "data": {"k": "v", "k2": ""},
                "binaryData": {"bin": "AAE="},
                "immutable": false,
            })
        );
    }

    #[test]
    fn object_meta_times_and_owner_references() {
        let owner = Enc::new().str(1, "ReplicaSet").str(3, "rs").str(4, "u-1").str(5, "apps/v1").varint(6, 1).varint(7, 0);
        let meta = Enc::new()
            .str(1, "x")
            .str(5, "uid-1")
            .str(6, "42")
            .varint(7, 3)
            .msg(8, Enc::new().varint(1, 1_136_214_245).varint(2, 999))
            .msg(9, Enc::new().varint(1, 0))
            .varint(10, 30)
            .msg(13, owner);
        let got = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, meta))).unwrap();
        assert_eq!(
            got["metadata"],
            json!({
                "name": "x",
                "uid": "uid-1",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2006-01-02T15:04:05Z",
                "deletionTimestamp": "1970-01-01T00:00:00Z",
                "deletionGracePeriodSeconds": 30,
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-1",
                    "controller": true, "blockOwnerDeletion": false,
                }],
            })
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert!(rfc3339(253_402_300_800).is_err());
    }

    #[test]
    fn secret_bytes_are_base64() {
        let raw = Enc::new()
            .msg(1, Enc::new().str(1, "s"))
            .map_bytes(2, "password", b"hunter2")
            .str(3, "Opaque")
            .map_str(4, "plain", "text")
            .varint(5, 1);
        let got = decode(&envelope("v1", "Secret", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s"},
                "data": {"password": "aHVudGVyMg=="},
                "type": "Opaque",
                "stringData": {"plain": "text"},
                "immutable": true,
            })
        );
    }

    #[test]
    fn self_subject_access_review() {
        let attrs =
            Enc::new().str(1, "default").str(2, "get").str(3, "apps").str(4, "v1").str(5, "deployments").str(6, "scale").str(7, "web");
        let spec = Enc::new().msg(1, attrs);
        let raw = Enc::new().msg(1, Enc::new()).msg(2, spec).msg(3, Enc::new().varint(1, 0).str(2, ""));
        let got = decode(&envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {},
                "spec": {"resourceAttributes": {
                    "namespace": "default", "verb": "get", "group": "apps", "version": "v1",
                    "resource": "deployments", "subresource": "scale", "name": "web",
                }},
                "status": {"allowed": false},
            })
        );

        let raw = Enc::new().msg(2, Enc::new().msg(2, Enc::new().str(1, "/healthz").str(2, "get")));
        let got = decode(&envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)).unwrap();
        assert_eq!(got["spec"], json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}));
    }

    #[test]
    fn self_subject_review_and_namespace() {
        let got = decode(&envelope("authentication.k8s.io/v1", "SelfSubjectReview", Enc::new().msg(1, Enc::new()))).unwrap();
        assert_eq!(got, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}}));

        let raw = Enc::new().msg(1, Enc::new().str(1, "team")).msg(2, Enc::new().str(1, "kubernetes")).msg(3, Enc::new().str(1, "Active"));
        let got = decode(&envelope("v1", "Namespace", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
            })
        );
    }

    #[test]
    fn service_account() {
        let raw = Enc::new()
            .msg(1, Enc::new().str(1, "robot"))
            .msg(2, Enc::new().str(1, "Secret").str(3, "tok"))
            .msg(3, Enc::new().str(1, "regcred"))
            .varint(4, 0);
        let got = decode(&envelope("v1", "ServiceAccount", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"},
                "secrets": [{"kind": "Secret", "name": "tok"}],
                "imagePullSecrets": [{"name": "regcred"}],
                "automountServiceAccountToken": false,
            })
        );
    }

    fn pod_template() -> Enc {
        let port = Enc::new().str(1, "http").varint(2, 0).varint(3, 8080).str(4, "TCP").str(5, "");
        let resources = Enc::new().map_quantity(1, "cpu", "500m").map_quantity(1, "memory", "128Mi").map_quantity(2, "cpu", "100m");
        let mount = Enc::new().str(1, "cfg").varint(2, 1).str(3, "/etc/cfg").str(4, "");
        let env = Enc::new().str(1, "MODE").str(2, "prod");
        let env_from = Enc::new().str(1, "KEY").msg(3, Enc::new().msg(4, Enc::new().msg(1, Enc::new().str(1, "sec")).str(2, "k")));
        let probe = Enc::new().msg(1, Enc::new().msg(2, Enc::new().str(1, "/healthz").msg(2, int_or_string_str("http")))).varint(4, 10);
        let container = Enc::new()
            .str(1, "web")
            .str(2, "nginx:1.27")
            .str(3, "nginx")
            .str(4, "-g")
            .str(4, "daemon off;")
            .str(5, "")
            .msg(6, port)
            .msg(7, env)
            .msg(7, env_from)
            .msg(8, resources)
            .msg(9, mount)
            .msg(11, probe)
            .str(13, "/dev/termination-log")
            .str(14, "IfNotPresent")
            .str(20, "File")
            .varint(16, 0);
        let volumes = [
            Enc::new().str(1, "cfg").msg(2, Enc::new().msg(19, Enc::new().msg(1, Enc::new().str(1, "app-config")).varint(3, 420))),
            Enc::new().str(1, "scratch").msg(2, Enc::new().msg(2, Enc::new().str(1, "Memory").msg(2, Enc::new().str(1, "1Gi")))),
            Enc::new().str(1, "tls").msg(
                2,
                Enc::new().msg(6, Enc::new().str(1, "tls-secret").msg(2, Enc::new().str(1, "tls.crt").str(2, "cert.pem")).varint(3, 256)),
            ),
            Enc::new().str(1, "host").msg(2, Enc::new().msg(1, Enc::new().str(1, "/var/log").str(2, "Directory"))),
        ];
        let toleration = Enc::new().str(1, "dedicated").str(2, "Equal").str(3, "gpu").str(4, "NoExecute").varint(5, 60);
        let mut spec = Enc::new();
        for v in volumes {
            spec = spec.msg(1, v);
        }
        let spec = spec
            .msg(2, container)
            .str(3, "Always")
            .varint(4, 30)
            .varint(5, 600)
            .str(6, "ClusterFirst")
            .map_str(7, "disk", "ssd")
            .str(8, "robot")
            .str(10, "node-1")
            .varint(11, 1)
            .str(19, "default-scheduler")
            .msg(22, toleration)
            .msg(14, Enc::new());
        Enc::new().msg(1, Enc::new().map_str(11, "app", "web")).msg(2, spec)
    }

    fn pod_template_json() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    {"name": "tls", "secret": {"secretName": "tls-secret", "items": [{"key": "tls.crt", "path": "cert.pem"}], "defaultMode": 256}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
                ],
                "containers": [{
                    "name": "web",
                    "image": "nginx:1.27",
                    "command": ["nginx"],
                    "args": ["-g", "daemon off;"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "prod"},
                        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
                    ],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "volumeMounts": [{"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "activeDeadlineSeconds": 600,
                "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"disk": "ssd"},
                "serviceAccountName": "robot",
                "nodeName": "node-1",
                "hostNetwork": true,
                "schedulerName": "default-scheduler",
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute", "tolerationSeconds": 60}],
                "securityContext": {},
            },
        })
    }

    #[test]
    fn deployment() {
        let selector = Enc::new().map_str(1, "app", "web").msg(2, Enc::new().str(1, "tier").str(2, "In").str(3, "fe").str(3, "be"));
        let strategy = Enc::new().str(1, "RollingUpdate").msg(2, Enc::new().msg(1, int_or_string_str("25%")).msg(2, int_or_string_int(1)));
        let spec = Enc::new()
            .varint(1, 3)
            .msg(2, selector)
            .msg(3, pod_template())
            .msg(4, strategy)
            .varint(5, 0)
            .varint(6, 10)
            .varint(7, 0)
            .varint(9, 600);
        let raw = Enc::new().msg(1, Enc::new().str(1, "web").str(3, "default")).msg(2, spec).msg(3, Enc::new().varint(2, 5));
        let got = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}],
                    },
                    "template": pod_template_json(),
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                },
            })
        );
    }

    #[test]
    fn job_and_pod() {
        let spec = Enc::new()
            .varint(1, 2)
            .varint(2, 4)
            .varint(3, 100)
            .varint(7, 6)
            .msg(4, Enc::new().map_str(1, "job", "x"))
            .varint(5, 1)
            .msg(6, pod_template())
            .varint(8, 3600)
            .str(9, "NonIndexed")
            .varint(10, 0);
        let got = decode(&envelope("batch/v1", "Job", Enc::new().msg(1, Enc::new().str(1, "j")).msg(2, spec))).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {
                    "parallelism": 2,
                    "completions": 4,
                    "activeDeadlineSeconds": 100,
                    "backoffLimit": 6,
                    "selector": {"matchLabels": {"job": "x"}},
                    "manualSelector": true,
                    "template": pod_template_json(),
                    "ttlSecondsAfterFinished": 3600,
                    "completionMode": "NonIndexed",
                    "suspend": false,
                },
            })
        );

        let pod = Enc::new().msg(1, Enc::new().str(1, "p")).msg(2, Enc::new().msg(2, Enc::new().str(1, "c").str(2, "busybox")));
        let got = decode(&envelope("v1", "Pod", pod)).unwrap();
        assert_eq!(got["spec"], json!({"containers": [{"name": "c", "image": "busybox"}]}));
    }

    #[test]
    fn service_ports() {
        let http = Enc::new().str(1, "http").str(2, "TCP").varint(3, 80).msg(4, int_or_string_int(8080)).varint(5, 0);
        let named =
            Enc::new().str(1, "metrics").str(2, "TCP").str(6, "http").varint(3, 9090).msg(4, int_or_string_str("metrics")).varint(5, 30090);
        let spec = Enc::new()
            .msg(1, http)
            .msg(1, named)
            .map_str(2, "app", "web")
            .str(3, "10.0.0.10")
            .str(18, "10.0.0.10")
            .str(4, "ClusterIP")
            .str(5, "1.2.3.4")
            .str(7, "None")
            .str(10, "");
        let raw = Enc::new().msg(1, Enc::new().str(1, "web")).msg(2, spec);
        let got = decode(&envelope("v1", "Service", raw)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "ports": [
                        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                        {"name": "metrics", "protocol": "TCP", "appProtocol": "http", "port": 9090, "targetPort": "metrics", "nodePort": 30090},
                    ],
                    "selector": {"app": "web"},
                    "clusterIP": "10.0.0.10",
                    "clusterIPs": ["10.0.0.10"],
                    "type": "ClusterIP",
                    "externalIPs": ["1.2.3.4"],
                    "sessionAffinity": "None",
                },
            })
        );
    }

    #[test]
    fn rbac_and_token_request() {
        let rule = Enc::new().str(1, "get").str(1, "list").str(2, "").str(3, "pods");
        let got =
            decode(&envelope("rbac.authorization.k8s.io/v1", "Role", Enc::new().msg(1, Enc::new().str(1, "r")).msg(2, rule))).unwrap();
        assert_eq!(got["rules"], json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]));

        let binding = Enc::new()
            .msg(2, Enc::new().str(1, "ServiceAccount").str(2, "").str(3, "robot").str(4, "ns"))
            .msg(3, Enc::new().str(1, "rbac.authorization.k8s.io").str(2, "Role").str(3, "r"));
        let got = decode(&envelope("rbac.authorization.k8s.io/v1", "RoleBinding", binding)).unwrap();
        assert_eq!(got["subjects"], json!([{"kind": "ServiceAccount", "name": "robot", "namespace": "ns"}]));
        assert_eq!(got["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}));

        let spec = Enc::new().str(1, "api").varint(4, 3600);
        let got = decode(&envelope("authentication.k8s.io/v1", "TokenRequest", Enc::new().msg(2, spec))).unwrap();
        assert_eq!(got["spec"], json!({"audiences": ["api"], "expirationSeconds": 3600}));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let meta = Enc::new().str(1, "cm").fixed32(90, 7).fixed64(91, 9).varint(92, 1).str(93, "x");
        let raw = Enc::new().msg(1, meta).fixed64(77, 1).map_str(2, "k", "v");
        let got = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
        assert_eq!(got, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}));
    }

    #[test]
    fn packed_and_negative_integers() {
        let mut packed = Enc::new();
        packed.raw_varint(1000);
        packed.raw_varint(2000);
        let security = Enc::new().bytes(4, &packed.0).varint(4, 3000).varint(2, -1);
        let spec = Enc::new().msg(14, security);
        let got = decode(&envelope("v1", "Pod", Enc::new().msg(2, spec))).unwrap();
        assert_eq!(got["spec"]["securityContext"], json!({"supplementalGroups": [1000, 2000, 3000], "runAsUser": -1}));

        let got = decode(&envelope("apps/v1", "Deployment", Enc::new().msg(2, Enc::new().varint(1, -5)))).unwrap();
        assert_eq!(got["spec"]["replicas"], json!(-5));
    }

    #[test]
    fn errors() {
        // Missing magic.
        assert!(decode(b"").unwrap_err().contains("magic"));
        assert!(decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err().contains("magic"));
        // Unknown kind.
        let err = decode(&envelope("v1", "Node", Enc::new())).unwrap_err();
        assert!(err.contains("protobuf bodies of kind Node") && err.contains("send JSON"), "{err}");
        let err = decode(&envelope("v2", "ConfigMap", Enc::new())).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        // No kind at all.
        assert!(decode(MAGIC).unwrap_err().contains("no kind"));
        // Content encoding.
        let mut body = envelope("v1", "ConfigMap", Enc::new());
        body.extend_from_slice(&Enc::new().str(3, "gzip").0);
        assert!(decode(&body).unwrap_err().contains("content encoding"));
        // Wrong wire type for a known field.
        let err = decode(&envelope("v1", "ConfigMap", Enc::new().msg(1, Enc::new().varint(1, 5)))).unwrap_err();
        assert!(err.contains("metadata.name"), "{err}");
        // Invalid IntOrString type.
        let port = Enc::new().varint(3, 80).msg(4, Enc::new().varint(1, 7));
        let err = decode(&envelope("v1", "Service", Enc::new().msg(2, Enc::new().msg(1, port)))).unwrap_err();
        assert!(err.contains("spec.ports.targetPort"), "{err}");
        // Truncated object: every strict prefix of a valid body either decodes or fails, never panics,
        // and cutting inside the raw object fails.
        let raw = Enc::new().msg(1, Enc::new().str(1, "cm").map_str(11, "a", "b")).map_str(2, "k", "v");
        let full = envelope("v1", "ConfigMap", raw);
        for cut in 0..full.len() {
            let _ = decode(&full[..cut]);
        }
        let mut inner = MAGIC.to_vec();
        inner.extend_from_slice(&Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap")).0);
        inner.extend_from_slice(&[0x12, 0x03, 0x0a, 0x10, 0x0a]); // raw: metadata claims 16 bytes, has 1
        assert!(decode(&inner).unwrap_err().contains("truncated"));
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random bytes behind the magic, plus some hand-picked nasties.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let mut body = MAGIC.to_vec();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.push((state >> 24) as u8);
            }
            let _ = decode(&body);
        }
        for nasty in [
            &[0xff; 16][..],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x0b],
            &[0x0f, 0x00],
            &[0x00, 0x00],
            &[0x09, 0x01],
            &[0x0d, 0x01, 0x02],
        ] {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(nasty);
            assert!(decode(&body).is_err(), "{nasty:?}");
        }
    }
}
