//! A container's environment as the kubelet builds it: `envFrom` (ConfigMaps and Secrets,
//! with `prefix`) first, then `env` in order, where `value` may refer to variables defined
//! before it as `$(NAME)` and `valueFrom` reads a ConfigMap or Secret key, a pod field
//! (`fieldRef`) or a resource (`resourceFieldRef`). The same field lookup serves downward
//! API volumes (see `volumes.rs`). Start at [`container_env`].

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};

use crate::pods::Sources;
use crate::quantity::{self, NodeResources};

/// Why a container's configuration could not be built; reported as the container's waiting
/// reason `CreateContainerConfigError` (env) or a `FailedMount` event (volumes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A ConfigMap or Secret (or one of its keys) that is not optional does not exist.
    #[error("{0}")]
    Missing(String),
    /// The API server could not be asked.
    #[error("fetching {what}: {message}")]
    Source { what: String, message: String },
    /// A reference or volume the agent cannot resolve.
    #[error("{0}")]
    Unsupported(String),
}

/// What `fieldRef` and `resourceFieldRef` can see besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    pub pod: &'a Pod,
    pub node_name: &'a str,
    pub host_ip: &'a str,
    /// Processes share the host's network, so this is the host IP too.
    pub pod_ip: &'a str,
    pub node: &'a NodeResources,
}

impl PodContext<'_> {
    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// ConfigMaps and Secrets of one namespace, each fetched at most once per pod setup.
pub struct Fetcher<'a> {
    sources: &'a dyn Sources,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl<'a> Fetcher<'a> {
    pub fn new(sources: &'a dyn Sources, namespace: &str) -> Fetcher<'a> {
        Fetcher { sources, namespace: namespace.to_string(), config_maps: HashMap::new(), secrets: HashMap::new() }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ConfigMap, or `None` if it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let got = self
                .sources
                .config_map(&self.namespace, name)
                .await
                .map_err(|message| ConfigError::Source { what: format!("configmap {name:?}"), message })?;
            self.config_maps.insert(name.to_string(), got);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    /// The Secret, or `None` if it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let got = self
                .sources
                .secret(&self.namespace, name)
                .await
                .map_err(|message| ConfigError::Source { what: format!("secret {name:?}"), message })?;
            self.secrets.insert(name.to_string(), got);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// A Secret's value for `key` as text (`data`, then `stringData`).
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
}

/// Every key of a Secret with its value.
pub fn secret_entries(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> =
        secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    out.extend(secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    out
}

/// An environment in definition order, a later definition replacing an earlier one in place.
#[derive(Debug, Default, Clone)]
struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// The container's environment: `base` (the runtime's own, such as `PATH` and `HOSTNAME`,
/// which `$(NAME)` cannot see), then `service` (variables the agent adds for every
/// container, visible to `$(NAME)`), then `envFrom`, then `env`. Keys of an `envFrom` source
/// that are not valid variable names are skipped, as the kubelet does.
pub async fn container_env(
    ctx: &PodContext<'_>,
    container: &Container,
    fetch: &mut Fetcher<'_>,
    base: &[(String, String)],
    service: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut defined = EnvList::default();
    for (k, v) in service {
        defined.set(k.clone(), v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            match fetch.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        let name = format!("{prefix}{k}");
                        if valid_env_name(&name) {
                            defined.set(name, v.clone());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::Missing(format!("configmap {:?} not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match fetch.secret(&r.name).await? {
                Some(secret) => {
                    for (k, v) in secret_entries(secret) {
                        let name = format!("{prefix}{k}");
                        if valid_env_name(&name) {
                            defined.set(name, String::from_utf8_lossy(&v).into_owned());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::Missing(format!("secret {:?} not found", r.name))),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match value_from(ctx, container, source, fetch).await? {
                Some(v) => v,
                // An optional reference to something missing defines nothing.
                None => continue,
            },
            None => expand(var.value.as_deref().unwrap_or(""), |name| defined.get(name).map(str::to_string)),
        };
        defined.set(var.name.clone(), value);
    }
    let mut all = EnvList::default();
    for (k, v) in base.iter().chain(defined.vars.iter()) {
        all.set(k.clone(), v.clone());
    }
    Ok(all.vars)
}

/// One `valueFrom`; `None` when an optional source or key is missing.
async fn value_from(
    ctx: &PodContext<'_>,
    container: &Container,
    source: &EnvVarSource,
    fetch: &mut Fetcher<'_>,
) -> Result<Option<String>, ConfigError> {
    let ns = fetch.namespace().to_string();
    if let Some(r) = &source.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match fetch.config_map(&r.name).await? {
            Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError::Missing(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError::Missing(format!("configmap {:?} not found", r.name))),
        };
    }
    if let Some(r) = &source.secret_key_ref {
        let optional = r.optional == Some(true);
        return match fetch.secret(&r.name).await? {
            Some(secret) => match secret_value(secret, &r.key) {
                Some(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
                None if optional => Ok(None),
                None => Err(ConfigError::Missing(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError::Missing(format!("secret {:?} not found", r.name))),
        };
    }
    if let Some(f) = &source.field_ref {
        return field_value(ctx, &f.field_path).map(Some).map_err(ConfigError::Unsupported);
    }
    if let Some(r) = &source.resource_field_ref {
        let target = match r.container_name.as_deref() {
            Some(name) if !name.is_empty() && name != container.name => find_container(ctx.pod, name)
                .ok_or_else(|| ConfigError::Unsupported(format!("resourceFieldRef names an unknown container {name:?}")))?,
            _ => container,
        };
        return quantity::resource_field_value(target, &r.resource, r.divisor.as_ref(), ctx.node)
            .map(Some)
            .map_err(ConfigError::Unsupported);
    }
    Ok(Some(String::new()))
}

/// A container (regular or init) of the pod by name.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// The value of a pod field as `fieldRef` and downward API volumes see it.
pub fn field_value(ctx: &PodContext<'_>, path: &str) -> Result<String, String> {
    let meta = &ctx.pod.metadata;
    let spec = ctx.pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => ctx.namespace().to_string(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_else(|| ctx.node_name.to_string()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.to_string(),
        other => {
            if let Some(key) = subscript(other, "metadata.labels") {
                meta.labels.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
            } else if let Some(key) = subscript(other, "metadata.annotations") {
                meta.annotations.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {other}"));
            }
        }
    })
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")
}

/// Labels or annotations as the downward API writes them: `key="value"` lines, sorted by
/// key, values quoted as Go's `%q` does.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = m.into_iter().flatten().map(|(k, v)| format!("{k}={}", go_quote(v))).collect();
    lines.join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Kubernetes accepts any printable ASCII except `=` in a variable name.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| (' '..='~').contains(&c) && c != '=')
}

/// Expands `$(NAME)` references the way Kubernetes does for `env` values, `command` and
/// `args`: `$$` is a literal `$`, an unknown or unterminated reference stays as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) => {
                    let name = &tail[..end];
                    match lookup(name) {
                        Some(value) if !name.is_empty() => out.push_str(&value),
                        _ => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let look = |n: &str| match n {
            "A" => Some("1".to_string()),
            "B" => Some("two".to_string()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", look), "1-two");
        assert_eq!(expand("$$(A)", look), "$(A)");
        assert_eq!(expand("$(C) stays", look), "$(C) stays");
        assert_eq!(expand("cost $5", look), "cost $5");
        assert_eq!(expand("open $(A", look), "open $(A");
        assert_eq!(expand("end$", look), "end$");
    }

    #[test]
    fn fields_and_maps() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web", "b": "x\"y"}},
            "spec": {"containers": [{"name": "c"}], "serviceAccountName": "sa"}
        }))
        .unwrap();
        let node = NodeResources { cpu_millis: 1000, memory_bytes: 1 << 30, ephemeral_storage_bytes: 0 };
        let ctx = PodContext { pod: &pod, node_name: "n1", host_ip: "10.0.0.1", pod_ip: "10.0.0.1", node: &node };
        assert_eq!(field_value(&ctx, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field_value(&ctx, "metadata.labels['none']").unwrap(), "");
        assert_eq!(field_value(&ctx, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field_value(&ctx, "spec.serviceAccountName").unwrap(), "sa");
        assert_eq!(field_value(&ctx, "metadata.labels").unwrap(), "app=\"web\"\nb=\"x\\\"y\"");
        assert!(field_value(&ctx, "spec.bogus").is_err());
    }
}
