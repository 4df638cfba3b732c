//! OpenAPI v3 (`/openapi/v3` and one document per group/version): the schemas of every served
//! type, from k8s-openapi's definitions, with the `x-kubernetes-group-version-kind` and patch
//! merge extensions kubectl reads, and the paths with their operations and parameters, so
//! `kubectl explain` works and `kubectl apply` leaves field validation to the server.
//!
//! OpenAPI v2 (`/openapi/v2`, see [`swagger`]): the same schemas and operations as one Swagger
//! 2.0 document, for older kubectl and the client generators that still read it, in JSON or in
//! gnostic's protobuf form (see [`super::openapi_pb`]), which client-go's `OpenAPISchema()` asks for.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use super::registry::{Kind, RESOURCES, ResourceType, Sub};
use super::status::ApiError;

struct Docs {
    /// "api/v1" or "apis/apps/v1" → (hash, document bytes)
    by_gv: BTreeMap<String, (String, Vec<u8>)>,
    index: Vec<u8>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(build)
}

/// `GET /openapi/v3`.
pub fn index() -> &'static [u8] {
    &docs().index
}

/// `GET /openapi/v3/<gv path>`.
pub fn group_version(path: &str) -> Option<&'static [u8]> {
    docs().by_gv.get(path).map(|(_, d)| d.as_slice())
}

fn gv_path(r: &ResourceType) -> String {
    if r.group.is_empty() { format!("api/{}", r.version) } else { format!("apis/{}/{}", r.group, r.version) }
}

fn build() -> Docs {
    let mut gvs: BTreeMap<String, Vec<&ResourceType>> = BTreeMap::new();
    for r in RESOURCES {
        gvs.entry(gv_path(r)).or_default().push(r);
    }
    let mut by_gv = BTreeMap::new();
    let mut paths = Map::new();
    for (gv, rows) in gvs {
        let doc = gv_document(&rows);
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = hex::encode(&ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()[..16]).to_uppercase();
        paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}));
        by_gv.insert(gv, (hash, bytes));
    }
    let index = serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default();
    Docs { by_gv, index }
}

/// Patch strategy of list fields, by schema and field, as Kubernetes' types declare it.
fn patch_meta(schema: &str, field: &str) -> Option<(&'static str, Option<&'static str>)> {
    let t = schema.rsplit('.').next().unwrap_or("");
    Some(match (t, field) {
        (_, "containers" | "initContainers" | "ephemeralContainers" | "env" | "imagePullSecrets" | "schedulingGates") => {
            ("merge", Some("name"))
        }
        (_, "volumes") | ("PodSpec", "resourceClaims") => ("merge,retainKeys", Some("name")),
        (_, "volumeMounts") => ("merge", Some("mountPath")),
        (_, "volumeDevices") => ("merge", Some("devicePath")),
        (_, "hostAliases" | "podIPs" | "hostIPs") => ("merge", Some("ip")),
        (_, "topologySpreadConstraints") => ("merge", Some("topologyKey")),
        (_, "conditions") => ("merge", Some("type")),
        ("ObjectMeta", "ownerReferences") => ("merge", Some("uid")),
        ("ObjectMeta", "finalizers") => ("merge", None),
        ("Container" | "EphemeralContainer", "ports") => ("merge", Some("containerPort")),
        ("ServiceSpec", "ports") => ("merge", Some("port")),
        ("NodeStatus", "addresses") => ("merge", Some("type")),
        _ => return None,
    })
}

fn annotate(name: &str, schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, prop) in props.iter_mut() {
        if prop.get("type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        if let Some((strategy, key)) = patch_meta(name, field) {
            prop["x-kubernetes-patch-strategy"] = json!(strategy);
            if let Some(k) = key {
                prop["x-kubernetes-patch-merge-key"] = json!(k);
            }
        }
    }
}

fn param(name: &str, desc: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}})
}

fn operation(r: &ResourceType, action: &str, op_id: &str, params: Vec<Value>, body: Option<Vec<&str>>, reference: &str) -> Value {
    let mut op = json!({
        "operationId": op_id,
        "description": format!("{action} {}", r.kind),
        "tags": [r.api_version().replace(['/', '.'], "_")],
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": reference}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if let Some(types) = body {
        let mut content = Map::new();
        for t in types {
            let schema = if t.contains("patch") { json!({"type": "object"}) } else { json!({"$ref": reference}) };
            content.insert(t.to_string(), json!({"schema": schema}));
        }
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn gv_document(rows: &[&ResourceType]) -> Value {
    let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut refs: Vec<(&ResourceType, String)> = Vec::new();
    for r in rows {
        let s = (r.schema)(&mut g);
        let reference = s.as_value().get("$ref").and_then(Value::as_str).unwrap_or_default().to_string();
        refs.push((r, reference));
    }
    let mut schemas = g.take_definitions(true);
    for (name, schema) in schemas.iter_mut() {
        annotate(name, schema);
    }
    for (r, reference) in &refs {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(s) = schemas.get_mut(name) {
            s["x-kubernetes-group-version-kind"] = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        }
    }
    let field_validation = param(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict.",
        "string",
    );
    let dry_run = param("dryRun", "When present, indicates that modifications should not be persisted. Valid value: All.", "string");
    let field_manager =
        param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes.", "string");
    let list_params = || {
        vec![
            param("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
            param("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
            param("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
            param("continue", "The continue option should be set when retrieving more results from the server.", "string"),
            param("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
            param(
                "watch",
                "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
                "boolean",
            ),
            param("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
            param("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
        ]
    };
    let mut paths = Map::new();
    for (r, reference) in &refs {
        let base = if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
        let coll = if r.namespaced { format!("{base}/namespaces/{{namespace}}/{}", r.plural) } else { format!("{base}/{}", r.plural) };
        let kind = r.kind;
        let writes = vec![dry_run.clone(), field_manager.clone(), field_validation.clone()];
        if r.is_virtual() {
            paths.insert(coll, json!({"post": operation(r, "post", &format!("create{kind}"), writes.clone(), Some(vec!["application/json", "application/yaml"]), reference)}));
            continue;
        }
        paths.insert(
            coll.clone(),
            json!({
                "get": operation(r, "list", &format!("list{kind}"), list_params(), None, reference),
                "post": operation(r, "post", &format!("create{kind}"), writes.clone(), Some(vec!["application/json", "application/yaml"]), reference),
                "delete": operation(r, "deletecollection", &format!("deleteCollection{kind}"), list_params(), None, reference),
            }),
        );
        let item = format!("{coll}/{{name}}");
        let patch_types = vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let mut patch_params = writes.clone();
        patch_params.push(param("force", "Force is going to \"force\" Apply requests.", "boolean"));
        paths.insert(
            item.clone(),
            json!({
                "get": operation(r, "get", &format!("read{kind}"), vec![], None, reference),
                "put": operation(r, "put", &format!("replace{kind}"), writes.clone(), Some(vec!["application/json", "application/yaml"]), reference),
                "patch": operation(r, "patch", &format!("patch{kind}"), patch_params.clone(), Some(patch_types.clone()), reference),
                "delete": operation(r, "delete", &format!("delete{kind}"), vec![dry_run.clone()], None, reference),
            }),
        );
        for sub in r.subresources.iter().filter(|s| matches!(s, Sub::Status)) {
            paths.insert(
                format!("{item}/{}", sub.name()),
                json!({
                    "get": operation(r, "get", &format!("read{kind}Status"), vec![], None, reference),
                    "put": operation(r, "put", &format!("replace{kind}Status"), writes.clone(), Some(vec!["application/json"]), reference),
                    "patch": operation(r, "patch", &format!("patch{kind}Status"), patch_params.clone(), Some(patch_types.clone()), reference),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", super::discovery::KUBE_MAJOR, super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}}},
    })
}

// OpenAPI v2 (Swagger 2.0), in JSON and, like kube-apiserver, in gnostic's protobuf form. The
// document is built from the same k8s-openapi schemas as v3, rewritten into what Swagger 2.0
// allows, and from the same table of resources; the protobuf form is converted from the JSON.

/// The protobuf form as client-go asks for it; kube-openapi calls this name deprecated and still
/// answers it.
const SWAGGER_PB_REQUESTED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The protobuf form's current name, which kube-apiserver answers with for either request.
const SWAGGER_PB: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// What the read and write operations return (we encode no protobuf).
const PRODUCES: &[&str] = &["application/json", "application/yaml"];

/// What list and watch operations return.
const PRODUCES_WATCH: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];

/// The request bodies a patch accepts.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The v2 document in the form a request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Swagger {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

/// `GET /openapi/v2`: the whole API as one Swagger 2.0 document, in JSON or in protobuf, as the
/// `Accept` header prefers (JSON when it allows both equally, or says nothing); 406 Not
/// Acceptable when it allows neither.
pub fn swagger(headers: &HeaderMap) -> Result<Swagger, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    match negotiate(accept) {
        Some(SwaggerForm::Json) => Ok(Swagger { body: swagger_document(), content_type: "application/json" }),
        Some(SwaggerForm::Protobuf) => Ok(Swagger { body: swagger_protobuf(), content_type: SWAGGER_PB }),
        None => Err(ApiError::not_acceptable(format!(
            "/openapi/v2 is served as application/json or {SWAGGER_PB_REQUESTED}; the request accepts {accept}"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwaggerForm {
    Json,
    Protobuf,
}

/// The form the `Accept` header prefers, as kube-openapi picks it: clauses by weight, then the
/// named type before `application/*` before `*/*`, then in the order given; a wildcard is
/// answered with JSON. Unlike kube-openapi, a type named with `q=0` is never served.
fn negotiate(accept: &str) -> Option<SwaggerForm> {
    if accept.trim().is_empty() {
        return Some(SwaggerForm::Json);
    }
    let forms = |media: &str| -> &'static [SwaggerForm] {
        match media {
            "application/json" => &[SwaggerForm::Json],
            SWAGGER_PB_REQUESTED | SWAGGER_PB => &[SwaggerForm::Protobuf],
            "application/*" | "*/*" => &[SwaggerForm::Json, SwaggerForm::Protobuf],
            _ => &[],
        }
    };
    let mut clauses: Vec<(String, f32)> = accept
        .split(',')
        .map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "q")
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (media, q)
        })
        .collect();
    let refused: Vec<SwaggerForm> =
        clauses.iter().filter(|(m, q)| *q <= 0.0 && !m.contains('*')).flat_map(|(m, _)| forms(m)).copied().collect();
    let specificity = |media: &str| match media {
        "*/*" => 0,
        m if m.ends_with("/*") => 1,
        _ => 2,
    };
    // Stable: clauses of equal weight and specificity keep their order.
    clauses.sort_by(|(a, qa), (b, qb)| qb.total_cmp(qa).then(specificity(b).cmp(&specificity(a))));
    clauses.iter().filter(|(_, q)| *q > 0.0).flat_map(|(m, _)| forms(m)).find(|f| !refused.contains(f)).copied()
}

/// The protobuf form, converted from the JSON document on first use.
fn swagger_protobuf() -> &'static [u8] {
    static PB: OnceLock<Vec<u8>> = OnceLock::new();
    PB.get_or_init(|| {
        let started = std::time::Instant::now();
        // The JSON bytes we serve, parsed back, so that both forms say the same.
        let doc: Value = serde_json::from_slice(swagger_document()).unwrap_or_default();
        let encoded = super::openapi_pb::encode(&doc);
        if !encoded.dropped.is_empty() {
            tracing::warn!(dropped = ?encoded.dropped, "the protobuf OpenAPI v2 document leaves out values it has no field for");
        }
        tracing::debug!(
            bytes = encoded.bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built the protobuf OpenAPI v2 document"
        );
        encoded.bytes
    })
}

/// The serialized document, built on first use: it is large and never changes while we run.
fn swagger_document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        let started = std::time::Instant::now();
        let bytes = serde_json::to_vec(&build_swagger()).unwrap_or_default();
        tracing::debug!(bytes = bytes.len(), elapsed_ms = started.elapsed().as_millis() as u64, "built the OpenAPI v2 document");
        bytes
    })
}

/// Definition names (`io.k8s.api.core.v1.Pod`) of the types operations refer to, besides kinds.
struct Common {
    status: String,
    delete_options: String,
    watch_event: String,
    patch: String,
    scale: String,
    binding: String,
}

/// Adds `T`'s definition (and what it refers to) to the generator; returns its name.
fn define<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

fn def_ref(name: &str) -> String {
    format!("#/definitions/{name}")
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn build_swagger() -> Value {
    let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
    let kinds: Vec<(&ResourceType, String)> = RESOURCES
        .iter()
        .map(|r| {
            let s = (r.schema)(&mut g);
            let name = s.as_value().get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).unwrap_or_default();
            (r, name.to_string())
        })
        .collect();
    let list_meta = define::<metav1::ListMeta>(&mut g);
    let common = Common {
        status: define::<metav1::Status>(&mut g),
        delete_options: define::<metav1::DeleteOptions>(&mut g),
        // The schema of a watch event does not depend on the object type.
        watch_event: define::<metav1::WatchEvent<k8s_openapi::api::core::v1::Pod>>(&mut g),
        patch: define::<metav1::Patch>(&mut g),
        scale: define::<k8s_openapi::api::autoscaling::v1::Scale>(&mut g),
        binding: define::<k8s_openapi::api::core::v1::Binding>(&mut g),
    };
    let discovery = [
        define::<metav1::APIVersions>(&mut g),
        define::<metav1::APIGroupList>(&mut g),
        define::<metav1::APIGroup>(&mut g),
        define::<metav1::APIResourceList>(&mut g),
        define::<k8s_openapi::apimachinery::pkg::version::Info>(&mut g),
    ];

    let mut defs = Map::new();
    for (name, mut schema) in g.take_definitions(true) {
        to_swagger(&mut schema);
        annotate(&name, &mut schema);
        defs.insert(name, schema);
    }
    // k8s-openapi leaves the type of these two open (they are written as numbers or strings);
    // kube-apiserver's v2 document calls them strings, and so do we.
    if let Some(s) = defs.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString") {
        s["type"] = json!("string");
        s["format"] = json!("int-or-string");
    }
    if let Some(s) = defs.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
        s["type"] = json!("string");
    }

    let mut kinds_of: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (r, name) in &kinds {
        kinds_of.entry(name.clone()).or_default().push(gvk(r.group, r.version, r.kind));
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
        if !r.is_virtual() {
            let list = format!("{name}List");
            defs.entry(list.clone()).or_insert_with(|| list_definition(r, name, &list_meta));
            kinds_of.entry(list).or_default().push(gvk(r.group, r.version, &format!("{}List", r.kind)));
        }
    }
    for (group, version) in &gvs {
        kinds_of.entry(common.delete_options.clone()).or_default().push(gvk(group, version, "DeleteOptions"));
        kinds_of.entry(common.watch_event.clone()).or_default().push(gvk(group, version, "WatchEvent"));
    }
    kinds_of.entry(common.status.clone()).or_default().push(gvk("", "v1", "Status"));
    kinds_of.entry(common.scale.clone()).or_default().push(gvk("autoscaling", "v1", "Scale"));
    kinds_of.entry(common.binding.clone()).or_default().push(gvk("", "v1", "Binding"));
    for (name, list) in kinds_of {
        if let Some(s) = defs.get_mut(&name) {
            s["x-kubernetes-group-version-kind"] = Value::Array(list);
        }
    }

    let mut paths = Map::new();
    discovery_paths(&mut paths, &gvs, &discovery);
    for (r, name) in &kinds {
        resource_paths(&mut paths, r, name, &common);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::discovery::version()["gitVersion"]},
        "paths": paths,
        "definitions": defs,
        "securityDefinitions": {
            "BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"},
        },
        "security": [{"BearerToken": []}],
    })
}

/// Rewrites an OpenAPI 3.0 schema (as schemars writes it) into what Swagger 2.0 allows:
/// references under `#/definitions/`, no `nullable`, `oneOf`, `anyOf` or `not`, one `type`,
/// and `$ref` with its description beside it rather than wrapped in a one-element `allOf`.
fn to_swagger(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(variants)) = obj.remove(key) else { continue };
        let mut variants: Vec<Value> = variants.into_iter().filter(|v| v.get("type").and_then(Value::as_str) != Some("null")).collect();
        let types: Vec<&str> = variants.iter().filter_map(|v| v.get("type").and_then(Value::as_str)).collect();
        if types.len() == 2 && types.contains(&"integer") && types.contains(&"string") {
            obj.entry("type").or_insert(json!("string"));
            obj.entry("format").or_insert(json!("int-or-string"));
        } else if variants.len() == 1
            && let Some(Value::Object(only)) = variants.pop()
        {
            // A nullable or single-choice schema: the one choice is the schema. It is rewritten
            // with the rest of this object below.
            for (k, v) in only {
                obj.entry(k).or_insert(v);
            }
        }
        // Other choices stay unconstrained, as Swagger 2.0 cannot say "one of".
    }
    if let Some(Value::Array(all)) = obj.get("allOf")
        && let [only] = all.as_slice()
        && only.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("$ref"))
        && !obj.contains_key("$ref")
    {
        let r = only["$ref"].clone();
        obj.remove("allOf");
        obj.insert("$ref".into(), r);
    }
    if let Some(Value::String(r)) = obj.get_mut("$ref")
        && let Some(name) = r.strip_prefix("#/components/schemas/")
    {
        *r = def_ref(name);
    }
    for key in ["nullable", "not", "writeOnly", "deprecated", "$schema"] {
        obj.remove(key);
    }
    if let Some(Value::Array(types)) = obj.get("type") {
        match types.iter().filter_map(Value::as_str).find(|t| *t != "null") {
            Some(t) => obj.insert("type".into(), json!(t)),
            None => obj.remove("type"),
        };
    }
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), json!([c]));
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = obj.get_mut(key) {
            children.values_mut().for_each(to_swagger);
        }
    }
    for key in ["items", "additionalProperties", "allOf"] {
        match obj.get_mut(key) {
            Some(Value::Array(children)) => children.iter_mut().for_each(to_swagger),
            Some(child) => to_swagger(child),
            None => {}
        }
    }
}

/// The `<Kind>List` definition kube-apiserver publishes for every listable kind.
fn list_definition(r: &ResourceType, item: &str, list_meta: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {"description": format!("List of {}.", r.plural), "type": "array", "items": {"$ref": def_ref(item)}},
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "$ref": def_ref(list_meta),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
    })
}

/// How kube-apiserver names a group and a group/version in operation ids (`Core`, `CoreV1`,
/// `Coordination`, `CoordinationV1`) and tags (`core`, `core_v1`); `rbac.authorization.k8s.io`
/// would give `RbacAuthorizationV1` and `rbacAuthorization_v1`.
struct GvNames {
    group_id: String,
    id: String,
    group_tag: String,
    tag: String,
}

impl GvNames {
    fn new(group: &str, version: &str) -> Self {
        fn capitalized(w: &str) -> String {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        }
        let short = if group.is_empty() { "core" } else { group.strip_suffix(".k8s.io").unwrap_or(group) };
        let words: Vec<&str> = short.split('.').collect();
        let group_id: String = words.iter().map(|w| capitalized(w)).collect();
        let group_tag: String = words.iter().enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { capitalized(w) }).collect();
        GvNames { id: format!("{group_id}{}", capitalized(version)), tag: format!("{group_tag}_{version}"), group_id, group_tag }
    }
}

fn query(name: &str, ty: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "type": ty, "uniqueItems": true})
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "type": "string", "uniqueItems": true})
}

fn body(reference: &str, required: bool) -> Value {
    json!({"name": "body", "in": "body", "required": required, "schema": {"$ref": def_ref(reference)}})
}

/// `{"200": {"description": "OK", "schema": ...}, ..., "401": Unauthorized}`.
fn responses(codes: &[&str], reference: &str) -> Value {
    let mut out = Map::new();
    for code in codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        out.insert(code.to_string(), json!({"description": description, "schema": {"$ref": def_ref(reference)}}));
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

/// The query parameters Swagger documents for each kind of operation.
struct Params;

impl Params {
    fn pretty() -> Value {
        query("pretty", "string", "If 'true', then the output is pretty printed.")
    }

    fn writes() -> Vec<Value> {
        vec![
            query(
                "dryRun",
                "string",
                "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
            ),
            query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
            query(
                "fieldValidation",
                "string",
                "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default), Strict.",
            ),
        ]
    }

    fn patch() -> Vec<Value> {
        let mut p = Self::writes();
        p.push(query(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
        ));
        p
    }

    fn list() -> Vec<Value> {
        vec![
            query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
            query("continue", "string", "The continue option should be set when retrieving more results from the server."),
            query(
                "fieldSelector",
                "string",
                "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
            ),
            query(
                "labelSelector",
                "string",
                "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
            ),
            query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
            query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
            query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
            query(
                "sendInitialEvents",
                "boolean",
                "`sendInitialEvents=true` may be set together with `watch=true`: the watch starts with synthetic events for the current state.",
            ),
            query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
            query(
                "watch",
                "boolean",
                "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            ),
        ]
    }

    fn deletes() -> Vec<Value> {
        vec![
            query(
                "dryRun",
                "string",
                "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
            ),
            query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
            query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
            query("propagationPolicy", "string", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
        ]
    }

    fn delete_collection() -> Vec<Value> {
        let mut p = Self::deletes();
        p.extend(Self::list().into_iter().filter(|q| !matches!(q["name"].as_str(), Some("allowWatchBookmarks" | "watch"))));
        p
    }
}

/// What an operation consumes and produces.
#[derive(Clone, Copy)]
enum Media {
    Plain,
    Watch,
    Patch,
}

/// Operations on the resource (or subresource) with group/version/kind `gvk`.
struct Op<'a> {
    tag: &'a str,
    gvk: &'a Value,
}

impl Op<'_> {
    fn build(&self, action: &str, id: String, description: String, params: Vec<Value>, resp: Value, media: Media) -> Value {
        let (consumes, produces) = match media {
            Media::Plain => (&["*/*"][..], PRODUCES),
            Media::Watch => (&["*/*"][..], PRODUCES_WATCH),
            Media::Patch => (PATCH_TYPES, PRODUCES),
        };
        let mut op = json!({
            "description": description,
            "operationId": id,
            "consumes": consumes,
            "produces": produces,
            "schemes": ["https"],
            "tags": [self.tag],
            "responses": resp,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        op
    }
}

/// The discovery endpoints: `/api/`, `/api/v1/`, `/apis/`, each group and group/version, `/version/`.
fn discovery_paths(paths: &mut Map<String, Value>, gvs: &[(&str, &str)], [versions, groups, group, resources, info]: &[String; 5]) {
    let get = |id: String, description: &str, tag: &str, reference: &str| {
        json!({"get": {
            "description": description,
            "operationId": id,
            "consumes": ["application/json", "application/yaml"],
            "produces": PRODUCES,
            "schemes": ["https"],
            "tags": [tag],
            "responses": responses(&["200"], reference),
        }})
    };
    paths.insert("/api/".into(), get("getCoreAPIVersions".into(), "get available API versions", "core", versions));
    paths.insert("/apis/".into(), get("getAPIVersions".into(), "get available API versions", "apis", groups));
    paths.insert("/version/".into(), get("getCodeVersion".into(), "get the code version", "version", info));
    for (g, v) in gvs {
        let n = GvNames::new(g, v);
        let resources_path = if g.is_empty() { format!("/api/{v}/") } else { format!("/apis/{g}/{v}/") };
        paths.insert(resources_path, get(format!("get{}APIResources", n.id), "get available resources", &n.tag, resources));
        if !g.is_empty() {
            paths.insert(
                format!("/apis/{g}/"),
                get(format!("get{}APIGroup", n.group_id), "get information of a group", &n.group_tag, group),
            );
        }
    }
}

/// Every operation kube-apiserver documents for one resource that we also serve: CRUD, list and
/// watch (in a namespace and across namespaces), and the status, scale and binding subresources.
fn resource_paths(paths: &mut Map<String, Value>, r: &ResourceType, kind_def: &str, c: &Common) {
    let GvNames { id: gv_id, tag, .. } = GvNames::new(r.group, r.version);
    let base = if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
    let (scope_path, scope) = if r.namespaced { ("/namespaces/{namespace}", "Namespaced") } else { ("", "") };
    let kind = r.kind;
    let this = gvk(r.group, r.version, kind);
    let op = Op { tag: &tag, gvk: &this };
    let coll = format!("{base}{scope_path}/{}", r.plural);
    let mut coll_params = Vec::new();
    if r.namespaced {
        coll_params.push(path_param("namespace", "object name and auth scope, such as for teams and projects"));
    }
    coll_params.push(Params::pretty());
    let mut item_params = vec![path_param("name", &format!("name of the {kind}"))];
    item_params.extend(coll_params.iter().cloned());
    let with_body = |reference: &str, rest: Vec<Value>| {
        let mut p = vec![body(reference, true)];
        p.extend(rest);
        p
    };
    let create = op.build(
        "post",
        format!("create{gv_id}{scope}{kind}"),
        format!("create a {kind}"),
        with_body(kind_def, Params::writes()),
        responses(&["200", "201", "202"], kind_def),
        Media::Plain,
    );
    if r.is_virtual() {
        paths.insert(coll, json!({"post": create, "parameters": coll_params}));
        return;
    }
    let list_def = format!("{kind_def}List");
    let mut delete_collection_params = vec![body(&c.delete_options, false)];
    delete_collection_params.extend(Params::delete_collection());
    paths.insert(
        coll.clone(),
        json!({
            "get": op.build("list", format!("list{gv_id}{scope}{kind}"), format!("list or watch objects of kind {kind}"), Params::list(), responses(&["200"], &list_def), Media::Watch),
            "post": create,
            "delete": op.build("deletecollection", format!("delete{gv_id}Collection{scope}{kind}"), format!("delete collection of {kind}"), delete_collection_params, responses(&["200"], &c.status), Media::Plain),
            "parameters": coll_params,
        }),
    );

    // Deleting a pod or a namespace answers with the object (it may linger while it terminates);
    // everything else answers with a Status.
    let deleted = if matches!(r.id, Kind::Pod | Kind::Namespace) { kind_def } else { c.status.as_str() };
    let mut delete_params = vec![body(&c.delete_options, false)];
    delete_params.extend(Params::deletes());
    let item = format!("{coll}/{{name}}");
    paths.insert(
        item.clone(),
        json!({
            "get": op.build("get", format!("read{gv_id}{scope}{kind}"), format!("read the specified {kind}"), vec![], responses(&["200"], kind_def), Media::Plain),
            "put": op.build("put", format!("replace{gv_id}{scope}{kind}"), format!("replace the specified {kind}"), with_body(kind_def, Params::writes()), responses(&["200", "201"], kind_def), Media::Plain),
            "patch": op.build("patch", format!("patch{gv_id}{scope}{kind}"), format!("partially update the specified {kind}"), with_body(&c.patch, Params::patch()), responses(&["200", "201"], kind_def), Media::Patch),
            "delete": op.build("delete", format!("delete{gv_id}{scope}{kind}"), format!("delete a {kind}"), delete_params, responses(&["200", "202"], deleted), Media::Plain),
            "parameters": item_params,
        }),
    );

    // Status and scale are read, replaced and patched like the object; binding is created.
    let scale_gvk = gvk("autoscaling", "v1", "Scale");
    let binding_gvk = gvk("", "v1", "Binding");
    for sub in r.subresources {
        let (suffix, reference, sub_gvk, what) = match sub {
            Sub::Status => ("Status", kind_def, &this, "status of"),
            Sub::Scale => ("Scale", c.scale.as_str(), &scale_gvk, "scale of"),
            Sub::Binding => {
                let bind = Op { tag: &tag, gvk: &binding_gvk };
                let post = bind.build(
                    "post",
                    format!("create{gv_id}{scope}{kind}Binding"),
                    format!("create binding of a {kind}"),
                    with_body(&c.binding, Params::writes()),
                    responses(&["200", "201", "202"], &c.binding),
                    Media::Plain,
                );
                paths.insert(format!("{item}/binding"), json!({"post": post, "parameters": item_params}));
                continue;
            }
            // Logs and exec need a node agent, and finalize is not served; kube-apiserver's
            // document lists them, ours does not promise them.
            Sub::Log | Sub::Exec | Sub::Finalize => continue,
        };
        let sub_op = Op { tag: &tag, gvk: sub_gvk };
        let id = |verb: &str| format!("{verb}{gv_id}{scope}{kind}{suffix}");
        paths.insert(
            format!("{item}/{}", sub.name()),
            json!({
                "get": sub_op.build("get", id("read"), format!("read {what} the specified {kind}"), vec![], responses(&["200"], reference), Media::Plain),
                "put": sub_op.build("put", id("replace"), format!("replace {what} the specified {kind}"), with_body(reference, Params::writes()), responses(&["200", "201"], reference), Media::Plain),
                "patch": sub_op.build("patch", id("patch"), format!("partially update {what} the specified {kind}"), with_body(&c.patch, Params::patch()), responses(&["200", "201"], reference), Media::Patch),
                "parameters": item_params,
            }),
        );
    }

    // Lists across namespaces, and the deprecated `/watch/` paths kube-apiserver still serves.
    let list_only: Vec<Value> = Params::list();
    if r.namespaced {
        paths.insert(
            format!("{base}/{}", r.plural),
            json!({
                "get": op.build("list", format!("list{gv_id}{kind}ForAllNamespaces"), format!("list or watch objects of kind {kind}"), list_only.clone(), responses(&["200"], &list_def), Media::Watch),
                "parameters": [Params::pretty()],
            }),
        );
        paths.insert(
            format!("{base}/watch/{}", r.plural),
            json!({
                "get": op.build("watchlist", format!("watch{gv_id}{kind}ListForAllNamespaces"), format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), list_only.clone(), responses(&["200"], &c.watch_event), Media::Watch),
                "parameters": [Params::pretty()],
            }),
        );
    }
    paths.insert(
        format!("{base}/watch{scope_path}/{}", r.plural),
        json!({
            "get": op.build("watchlist", format!("watch{gv_id}{scope}{kind}List"), format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."), list_only.clone(), responses(&["200"], &c.watch_event), Media::Watch),
            "parameters": coll_params,
        }),
    );
    paths.insert(
        format!("{base}/watch{scope_path}/{}/{{name}}", r.plural),
        json!({
            "get": op.build("watch", format!("watch{gv_id}{scope}{kind}"), format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."), list_only, responses(&["200"], &c.watch_event), Media::Watch),
            "parameters": item_params,
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_kinds_patch_meta_and_field_validation() {
        let idx: Value = serde_json::from_slice(index()).unwrap();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc: Value = serde_json::from_slice(group_version("apis/apps/v1").unwrap()).unwrap();
        let d = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        let c = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(group_version("api/v1").is_some());
    }

    /// Every `$ref` string anywhere in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }

    /// Every object key anywhere in `v`.
    fn keys<'a>(v: &'a Value, out: &mut std::collections::BTreeSet<&'a str>) {
        match v {
            Value::Object(o) => {
                for (k, c) in o {
                    out.insert(k);
                    keys(c, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| keys(c, out)),
            _ => {}
        }
    }

    fn v2() -> Value {
        serde_json::from_slice(swagger(&HeaderMap::new()).unwrap().body).unwrap()
    }

    #[test]
    fn v2_has_definitions_with_kinds_and_patch_meta() {
        let doc = v2();
        assert_eq!(doc["swagger"], "2.0");
        assert_eq!(doc["info"]["title"], "Kubernetes");
        assert!(doc["info"]["version"].as_str().unwrap().starts_with("v1."));
        assert_eq!(doc["security"][0]["BearerToken"], json!([]));
        let defs = &doc["definitions"];
        assert_eq!(
            defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert_eq!(defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert_eq!(defs["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"], "DeploymentList");
        assert_eq!(defs["io.k8s.api.core.v1.PodList"]["properties"]["items"]["items"]["$ref"], "#/definitions/io.k8s.api.core.v1.Pod");
        assert_eq!(
            defs["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(
            (&containers["x-kubernetes-patch-merge-key"], &containers["x-kubernetes-patch-strategy"]),
            (&json!("name"), &json!("merge"))
        );
        assert_eq!(defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"], "int-or-string");
        assert!(
            defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]["x-kubernetes-group-version-kind"].as_array().unwrap().len() > 3
        );
    }

    #[test]
    fn v2_is_swagger_2_and_every_reference_resolves() {
        let bytes = swagger(&HeaderMap::new()).unwrap().body;
        assert!(!String::from_utf8_lossy(bytes).contains("#/components/"));
        let doc = v2();
        assert!(doc.get("components").is_none() && doc.get("openapi").is_none());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 500, "{} references", found.len());
        for r in found {
            let name = r.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{r} is not under #/definitions/"));
            assert!(doc["definitions"].get(name).is_some(), "{r} refers to no definition");
        }
        let mut seen = std::collections::BTreeSet::new();
        keys(&doc["definitions"], &mut seen);
        for banned in ["oneOf", "anyOf", "nullable", "not", "const", "requestBody", "content"] {
            assert!(!seen.contains(banned), "a definition uses {banned}");
        }
        // Swagger 2.0 wants one type per schema, and non-body parameters typed inline.
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params = if method == "parameters" { op } else { &op["parameters"] };
                for p in params.as_array().into_iter().flatten() {
                    if p["in"] == "body" {
                        assert!(p["schema"]["$ref"].is_string(), "{path} {method}");
                    } else {
                        assert!(p["type"].is_string() && p.get("schema").is_none(), "{path} {method} {p}");
                    }
                }
                if method != "parameters" {
                    let id = op["operationId"].as_str().unwrap();
                    assert!(ids.insert(id.to_string()), "{id} is not unique");
                }
            }
        }
    }

    #[test]
    fn v2_paths_cover_namespaced_and_cluster_scoped_resources() {
        let doc = v2();
        let paths = &doc["paths"];
        let pod = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pod["get"]["operationId"], "readCoreV1NamespacedPod");
        assert_eq!(pod["get"]["x-kubernetes-action"], "get");
        assert_eq!(pod["get"]["x-kubernetes-group-version-kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(pod["get"]["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.core.v1.Pod");
        let names: Vec<&str> = pod["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["name", "namespace", "pretty"]);
        assert!(pod["patch"]["consumes"].as_array().unwrap().contains(&json!("application/strategic-merge-patch+json")));
        assert_eq!(
            pod["patch"]["parameters"][0],
            json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}})
        );
        assert!(pod["put"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let pods = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(pods["get"]["x-kubernetes-action"], "list");
        assert_eq!(pods["get"]["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodList");
        assert_eq!(pods["post"]["parameters"][0]["schema"]["$ref"], "#/definitions/io.k8s.api.core.v1.Pod");
        assert!(pods["get"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "labelSelector"));
        assert_eq!(pods["delete"]["x-kubernetes-action"], "deletecollection");
        assert_eq!(paths["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
        assert_eq!(paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"], "watch");
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]["x-kubernetes-group-version-kind"]["kind"],
            "Binding"
        );

        let nodes = &paths["/api/v1/nodes"];
        assert_eq!(nodes["get"]["operationId"], "listCoreV1Node");
        assert_eq!(nodes["parameters"].as_array().unwrap().len(), 1, "a cluster-scoped collection has no namespace");
        assert_eq!(paths["/api/v1/nodes/{name}/status"]["patch"]["operationId"], "patchCoreV1NodeStatus");
        assert!(paths.get("/api/v1/namespaces/{namespace}/nodes").is_none());

        let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
        assert_eq!(scale["operationId"], "replaceAppsV1NamespacedDeploymentScale");
        assert_eq!(scale["x-kubernetes-group-version-kind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert_eq!(paths["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["get"]["tags"], json!(["coordination_v1"]));
        assert_eq!(paths["/apis/events.k8s.io/v1/namespaces/{namespace}/events"]["get"]["operationId"], "listEventsV1NamespacedEvent");
        let review = &paths["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
        assert_eq!(review["post"]["operationId"], "createAuthorizationV1SelfSubjectAccessReview");
        assert!(review.get("get").is_none());
        assert_eq!(paths["/apis/apps/"]["get"]["operationId"], "getAppsAPIGroup");
        assert_eq!(paths["/api/v1/"]["get"]["operationId"], "getCoreV1APIResources");
    }

    #[test]
    fn v2_is_served_as_json_or_protobuf_as_accept_prefers() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, accept.parse().unwrap());
            swagger(&h).map(|d| d.content_type).map_err(|e| e.code)
        };
        const JSON: &str = "application/json";
        // What client-go's OpenAPISchema() sends, and the name kube-openapi prefers now.
        let pb = SWAGGER_PB_REQUESTED;
        assert_eq!(with(pb), Ok(SWAGGER_PB));
        assert_eq!(with(SWAGGER_PB), Ok(SWAGGER_PB));
        assert_eq!(with(&pb.to_uppercase()), Ok(SWAGGER_PB));
        assert_eq!(with(&format!("{pb}, application/json")), Ok(SWAGGER_PB));
        assert_eq!(with(&format!("application/json, {pb}")), Ok(JSON));
        assert_eq!(with(&format!("application/json;q=0.5, {pb}")), Ok(SWAGGER_PB));
        assert_eq!(with(&format!("{pb};q=0.5, application/json")), Ok(JSON));
        assert_eq!(with(&format!("{pb}, */*;q=0.1")), Ok(SWAGGER_PB));
        assert_eq!(with(&format!("*/*, {pb}")), Ok(SWAGGER_PB), "a named type before a wildcard of the same weight");
        assert_eq!(with(&format!("{pb};q=0, */*")), Ok(JSON));
        assert_eq!(with("application/json;q=0, */*"), Ok(SWAGGER_PB));
        assert_eq!(with(&format!("application/json;q=0, {pb};q=0, */*")), Err(406));
        assert_eq!(with(&format!("{pb};q=0")), Err(406));
        assert_eq!(with("application/json;q=0"), Err(406));
        assert_eq!(with("application/yaml"), Err(406));
        assert_eq!(with("application/vnd.kubernetes.protobuf"), Err(406));
        assert_eq!(with("*/*"), Ok(JSON));
        assert_eq!(with("application/*"), Ok(JSON));
        assert_eq!(with("Application/JSON"), Ok(JSON));
        assert_eq!(with("application/json, */*"), Ok(JSON));
        assert_eq!(swagger(&HeaderMap::new()).unwrap().content_type, JSON);
    }

    #[test]
    fn v2_protobuf_is_the_json_document_converted_without_loss() {
        let doc = v2();
        let encoded = super::super::openapi_pb::encode(&doc);
        assert_eq!(encoded.dropped, Vec::<String>::new());
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, SWAGGER_PB_REQUESTED.parse().unwrap());
        assert_eq!(swagger(&h).unwrap().body, encoded.bytes.as_slice(), "served as built from the JSON we serve");
    }

    /// Size and build time of the v2 document: `cargo test -p daas-apiserver --lib v2_size -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn v2_size() {
        let started = std::time::Instant::now();
        let doc = build_swagger();
        let built = started.elapsed();
        let bytes = serde_json::to_vec(&doc).unwrap();
        let serialized = started.elapsed() - built;
        let pb = super::super::openapi_pb::encode(&doc).bytes;
        eprintln!(
            "openapi/v2: {} bytes of JSON, {} of protobuf, {} definitions, {} paths; built in {built:?}, serialized in {serialized:?}, encoded in {:?}",
            bytes.len(),
            pb.len(),
            doc["definitions"].as_object().unwrap().len(),
            doc["paths"].as_object().unwrap().len(),
            started.elapsed() - built - serialized
        );
    }
}
