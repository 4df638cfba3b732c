//! OpenAPI v3 (`/openapi/v3` and one document per group/version): the schemas of every served
//! type, from k8s-openapi's definitions, with the `x-kubernetes-group-version-kind` and patch
//! merge extensions kubectl reads, and the paths with their operations and parameters, so
//! `kubectl explain` works and `kubectl apply` leaves field validation to the server.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::registry::{RESOURCES, ResourceType};

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
        for sub in r.subresources.iter().filter(|s| matches!(s, super::registry::Sub::Status)) {
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
}
