//! Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`, in the
//! legacy form and the aggregated `apidiscovery.k8s.io/v2` form kubectl asks for first.

use serde_json::{Value, json};

use super::registry::{self, RESOURCES, ResourceType};

/// The Kubernetes API version we serve (the k8s-openapi schema in use).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+daas-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("DAAS_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn api_resource(r: &ResourceType) -> Value {
    let mut v = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

/// `APIResourceList` of one group/version, or None if we do not serve it.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rows: Vec<&ResourceType> = RESOURCES.iter().filter(|r| r.group == group && r.version == version).collect();
    if rows.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rows {
        resources.push(api_resource(r));
        for s in r.subresources {
            let kind = match s {
                registry::Sub::Scale => "Scale",
                registry::Sub::Binding => "Binding",
                registry::Sub::Log | registry::Sub::Exec => "PodExecOptions",
                _ => r.kind,
            };
            resources.push(json!({
                "name": format!("{}/{}", r.plural, s.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if *s == registry::Sub::Log { "Pod" } else { kind },
                "verbs": s.verbs(),
            }));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/api`.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn api_group(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = registry::groups().into_iter().map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(group: &str) -> Option<Value> {
    registry::groups().contains(&group).then(|| {
        let mut g = api_group(group);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn aggregated_group(group: &str, version_name: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group)
        .map(|r| {
            let mut v = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs(),
            });
            if !r.short_names.is_empty() {
                v["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                v["categories"] = json!(r.categories);
            }
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    let kind = match s {
                        registry::Sub::Scale => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
                        registry::Sub::Binding => json!({"group": "", "version": "v1", "kind": "Binding"}),
                        registry::Sub::Exec => json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
                        _ => json!({"group": r.group, "version": r.version, "kind": r.kind}),
                    };
                    json!({"subresource": s.name(), "responseKind": kind, "verbs": s.verbs()})
                })
                .collect();
            if !subs.is_empty() {
                v["subresources"] = Value::Array(subs);
            }
            v
        })
        .collect();
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": [{"version": version_name, "resources": resources, "freshness": "Current"}],
    })
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every named group).
pub fn aggregated(core: bool, disco_version: &str) -> Value {
    let items: Vec<Value> =
        if core { vec![aggregated_group("", "v1")] } else { registry::groups().into_iter().map(|g| aggregated_group(g, "v1")).collect() };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{disco_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_every_row_once() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"namespaces/finalize"));
        assert!(resource_list("apps", "v2").is_none());
        let groups = group_list();
        let gs: Vec<&str> = groups["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
        assert_eq!(
            gs,
            vec![
                "apps",
                "batch",
                "coordination.k8s.io",
                "events.k8s.io",
                "discovery.k8s.io",
                "authorization.k8s.io",
                "authentication.k8s.io"
            ]
        );
        let agg = aggregated(false, "v2");
        let apps = &agg["items"][0]["versions"][0]["resources"];
        let deploy = apps.as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["subresources"][1]["responseKind"]["kind"], "Scale");
    }
}
