//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
//! merge patch, whose lists merge by key where the Kubernetes types say so (containers by
//! name, ports by port, conditions by type, ...) and which carries `$patch`, `$retainKeys`,
//! `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives, as kubectl apply,
//! edit, label and annotate send them.

use serde_json::{Map, Value};

/// The patch formats of the `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 6902 patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    MergeByKey(&'static str),
    MergePrimitive,
}

/// How the list field `field` merges, given the fields above it (`[]` marks list items).
fn list_strategy(path: &[String], field: &str) -> ListStrategy {
    let parent = path.iter().rev().find(|p| p.as_str() != "[]").map(String::as_str).unwrap_or("");
    let in_status = path.iter().any(|p| p == "status");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "addresses" if in_status && parent == "status" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitive,
        "ports" if matches!(parent, "containers" | "initContainers" | "ephemeralContainers") => ListStrategy::MergeByKey("containerPort"),
        "ports" if parent == "spec" => ListStrategy::MergeByKey("port"),
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to `doc`.
pub fn strategic_merge(doc: &Value, patch: &Value) -> Result<Value, String> {
    let mut path = Vec::new();
    Ok(merge_value(Some(doc), patch, &mut path)?.unwrap_or(Value::Null))
}

/// Returns None when the patch deletes the value.
fn merge_value(orig: Option<&Value>, patch: &Value, path: &mut Vec<String>) -> Result<Option<Value>, String> {
    let Value::Object(p) = patch else {
        return Ok(if patch.is_null() { None } else { Some(patch.clone()) });
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            return Ok(Some(Value::Object(m)));
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    let mut out: Map<String, Value> = match orig {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in p {
        if k == "$patch" {
            continue;
        }
        if k == "$retainKeys" {
            retain = Some(v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect());
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = v.as_array().into_iter().flatten().collect();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|x| !remove.contains(&x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match v {
            Value::Array(items) => merge_list(out.get(k), items, path, k)?,
            Value::Object(_) => {
                path.push(k.clone());
                let r = merge_value(out.get(k), v, path);
                path.pop();
                r?
            }
            _ => Some(v.clone()),
        };
        match merged {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => {
                out.remove(k);
            }
        }
    }
    for (field, order) in orders {
        let strategy = list_strategy(path, &field);
        if let Some(Value::Array(list)) = out.get_mut(&field) {
            reorder(list, &order, strategy);
        }
    }
    if let Some(keep) = retain {
        out.retain(|k, _| keep.iter().any(|x| x == k));
    }
    Ok(Some(Value::Object(out)))
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn merge_list(orig: Option<&Value>, items: &[Value], path: &mut Vec<String>, field: &str) -> Result<Option<Value>, String> {
    let strategy = list_strategy(path, field);
    let orig_list: Vec<Value> = orig.and_then(Value::as_array).cloned().unwrap_or_default();
    match strategy {
        ListStrategy::Replace => Ok(Some(Value::Array(items.iter().map(strip_directives).collect()))),
        ListStrategy::MergePrimitive => {
            let mut out = orig_list;
            for it in items {
                if !out.contains(it) {
                    out.push(it.clone());
                }
            }
            Ok(Some(Value::Array(out)))
        }
        ListStrategy::MergeByKey(key) => {
            if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
                let kept: Vec<Value> = items.iter().filter(|i| i.get("$patch").is_none()).map(strip_directives).collect();
                return Ok(Some(Value::Array(kept)));
            }
            let mut out = orig_list;
            path.push(field.to_string());
            path.push("[]".to_string());
            for it in items {
                let Some(k) = key_of(it, key).cloned() else {
                    path.truncate(path.len() - 2);
                    return Err(format!("map: {it} does not contain declared merge key: {key}"));
                };
                let pos = out.iter().position(|o| key_of(o, key) == Some(&k));
                if it.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = pos {
                        out.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        let merged = merge_value(Some(&out[i]), it, path)?;
                        match merged {
                            Some(m) => out[i] = m,
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_value(None, it, path)? {
                            out.push(m);
                        }
                    }
                }
            }
            path.truncate(path.len() - 2);
            Ok(Some(Value::Array(out)))
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Orders `list` as `order` says; items not named keep their relative order after the named.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| -> usize {
        let pos = match strategy {
            ListStrategy::MergeByKey(key) => order.iter().position(|o| o.get(key).is_some() && o.get(key) == item.get(key)),
            _ => order.iter().position(|o| o == item),
        };
        pos.unwrap_or(usize::MAX)
    };
    let mut ranked: Vec<(usize, usize, Value)> = list.drain(..).enumerate().map(|(i, v)| (rank(&v), i, v)).collect();
    ranked.sort_by_key(|(r, i, _)| (*r, *i));
    list.extend(ranked.into_iter().map(|(_, _, v)| v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "b", "image": "b:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "3"}, {"name": "X", "$patch": "delete"}]}]}}}});
        let out = strategic_merge(&doc, &patch).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(cs[0]["env"], json!([{"name": "Y", "value": "3"}]));
        assert_eq!(cs[1]["image"], "b:1");
    }

    #[test]
    fn directives_from_kubectl_apply() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}], "tolerations": [{"key": "k"}]}});
        let patch = json!({"metadata": {"labels": {"b": null, "c": "3"}, "finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}], "ports": [{"port": 80, "name": "web"}], "tolerations": [{"key": "t"}]}});
        let out = strategic_merge(&doc, &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(out["spec"]["ports"], json!([{"port": 443, "name": "https"}, {"port": 80, "name": "web"}]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "t"}]));
    }

    #[test]
    fn retain_keys_and_replace() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(strategic_merge(&doc, &patch).unwrap(), json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let patch = json!({"spec": {"$patch": "replace", "x": 1}});
        assert_eq!(strategic_merge(&doc, &patch).unwrap(), json!({"spec": {"x": 1}}));
        let bad = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(strategic_merge(&doc, &bad).unwrap_err().contains("merge key"));
    }

    #[test]
    fn json_and_merge_patches() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        assert_eq!(
            json_patch(&doc, &json!([{"op": "replace", "path": "/a/b", "value": 2}, {"op": "add", "path": "/l/-", "value": 3}])).unwrap(),
            json!({"a": {"b": 2}, "l": [1, 2, 3]})
        );
        assert!(json_patch(&doc, &json!([{"op": "test", "path": "/a/b", "value": 9}])).is_err());
        assert_eq!(merge_patch(&doc, &json!({"a": null, "l": [9]})), json!({"l": [9]}));
    }
}
