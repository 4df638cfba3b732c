//! Who is calling and what they may do. Authentication: client certificates issued by the
//! cluster CA (CN = user, O = groups; rustls has already verified the chain), and bearer
//! tokens from a token file (kube-apiserver's `--token-auth-file` CSV). Authorization: the
//! `system:masters` group may do anything; stake tiers (`daas:tier:read|write|admin`) map to
//! verbs and resources by a configurable policy; every denial says who, what and why.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::request::RequestInfo;
use super::status::ApiError;

/// The verified client certificate chain of a TLS connection, put on each request.
#[derive(Clone, Debug)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// How the caller proved it: `x509`, `token`.
    pub method: &'static str,
    /// The bearer token, when that is how the caller authenticated (for `/kubectl/config`).
    pub token: Option<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// A worker node's identity (`system:node:<name>` in `system:nodes`): its node name.
    pub fn node_name(&self) -> Option<&str> {
        self.name.strip_prefix("system:node:").filter(|_| self.groups.iter().any(|g| g == "system:nodes"))
    }

    /// Whether this is a worker node's identity.
    pub fn is_node(&self) -> bool {
        self.node_name().is_some()
    }

    pub fn tier(&self) -> Option<Tier> {
        self.groups.iter().filter_map(|g| g.strip_prefix("daas:tier:")).filter_map(Tier::parse).max()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Read,
    Write,
    Admin,
}

impl Tier {
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "read" => Some(Tier::Read),
            "write" => Some(Tier::Write),
            "admin" => Some(Tier::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Read => "read",
            Tier::Write => "write",
            Tier::Admin => "admin",
        }
    }
}

struct TokenEntry {
    user: String,
    uid: String,
    groups: Vec<String>,
}

/// Turns request credentials into a [`User`].
#[derive(Default)]
pub struct Authenticator {
    tokens: HashMap<String, TokenEntry>,
    /// Checks stake-backed seal tokens (`seal_…`), when the chain side is on.
    seal: Option<Arc<daas_chain::TokenVerifier>>,
}

impl Authenticator {
    /// The seal token verifier, when stake-backed tokens are accepted.
    pub fn seal_verifier(&self) -> Option<Arc<daas_chain::TokenVerifier>> {
        self.seal.clone()
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("tokens", &self.tokens.len()).finish()
    }
}

impl Authenticator {
    /// Also accepts seal tokens checked by `verifier`.
    pub fn with_seal_tokens(mut self, verifier: Arc<daas_chain::TokenVerifier>) -> Self {
        self.seal = Some(verifier);
        self
    }

    /// [`Authenticator::authenticate`] from a request's headers: `Authorization: Bearer …`, or
    /// the seed's `X-Seal-Token`.
    pub fn authenticate_headers(&self, peer: Option<&PeerCerts>, headers: &axum::http::HeaderMap) -> Result<Option<User>, ApiError> {
        let authorization = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match (authorization, headers.get("x-seal-token").and_then(|v| v.to_str().ok())) {
            (None, Some(seal)) => self.authenticate(peer, Some(&format!("Bearer {}", seal.trim()))),
            _ => self.authenticate(peer, authorization),
        }
    }

    /// Reads a token file: one `token,user,uid[,"group1,group2"]` per line; `#` comments.
    pub fn with_token_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(4, ',');
            let (token, user, uid) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if token.is_empty() || user.is_empty() {
                return Err(format!("{} line {}: expected token,user,uid[,\"groups\"]", path.display(), n + 1));
            }
            let groups = parts
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            tokens.insert(token.to_string(), TokenEntry { user: user.to_string(), uid: uid.to_string(), groups });
        }
        Ok(Authenticator { tokens, seal: None })
    }

    /// `Ok(None)` for an anonymous request; 401 for credentials that do not check out.
    /// (Only chains the TLS layer verified against the cluster CA reach here as `peer`.)
    pub fn authenticate(&self, peer: Option<&PeerCerts>, authorization: Option<&str>) -> Result<Option<User>, ApiError> {
        // As kube-apiserver: a verified client certificate authenticates first, whatever else
        // the request carries; then a bearer token.
        if let Some(leaf) = peer.and_then(|p| p.0.first()) {
            let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|_| ApiError::unauthorized())?;
            let subject = cert.subject();
            let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).ok_or_else(ApiError::unauthorized)?;
            let mut groups: Vec<String> = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
            groups.push("system:authenticated".into());
            return Ok(Some(User { name: cn.to_string(), uid: String::new(), groups, method: "x509", token: None }));
        }
        if let Some(h) = authorization {
            let token = h.strip_prefix("Bearer ").map(str::trim).ok_or_else(ApiError::unauthorized)?;
            if token.starts_with("seal_")
                && let Some(v) = &self.seal
            {
                let now = super::meta::now_unix();
                let c = v.verify(token, now).map_err(|e| {
                    let mut err = ApiError::unauthorized();
                    err.message = format!("Unauthorized: {e}");
                    err
                })?;
                let mut groups = vec![format!("daas:tier:{}", c.tier), "daas:stakers".to_string()];
                let name = match &c.node {
                    Some(node) => {
                        groups.push("system:nodes".into());
                        format!("system:node:{node}")
                    }
                    None => c.sub.clone(),
                };
                groups.push("system:authenticated".into());
                return Ok(Some(User { name, uid: c.sub.clone(), groups, method: "seal", token: Some(token.to_string()) }));
            }
            let e = self.tokens.get(token).ok_or_else(ApiError::unauthorized)?;
            let mut groups = e.groups.clone();
            groups.push("system:authenticated".into());
            return Ok(Some(User { name: e.user.clone(), uid: e.uid.clone(), groups, method: "token", token: Some(token.to_string()) }));
        }
        Ok(None)
    }
}

/// What one tier may do. `resources` entries are `plural` or `group/plural`, `*` for all;
/// `deny` wins over `resources`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    pub verbs: Vec<String>,
    #[serde(default = "star")]
    pub resources: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// May act on cluster-scoped resources (nodes, namespaces) with write verbs.
    #[serde(default, rename = "clusterScoped")]
    pub cluster_scoped: bool,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

/// The tier policy (`--authorization-config`, YAML with keys `read`, `write`, `admin`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub read: TierRule,
    pub write: TierRule,
    pub admin: TierRule,
}

impl Default for Policy {
    fn default() -> Self {
        let read_verbs: Vec<String> = ["get", "list", "watch"].iter().map(|s| s.to_string()).collect();
        let mut write_verbs = read_verbs.clone();
        write_verbs.extend(["create", "update", "patch", "delete", "deletecollection"].iter().map(|s| s.to_string()));
        Policy {
            read: TierRule { verbs: read_verbs, resources: star(), deny: vec!["secrets".into()], cluster_scoped: false },
            write: TierRule { verbs: write_verbs.clone(), resources: star(), deny: vec![], cluster_scoped: false },
            admin: TierRule { verbs: vec!["*".into()], resources: star(), deny: vec![], cluster_scoped: true },
        }
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn rule(&self, t: Tier) -> &TierRule {
        match t {
            Tier::Read => &self.read,
            Tier::Write => &self.write,
            Tier::Admin => &self.admin,
        }
    }
}

/// A request to authorize, as SubjectAccessReview names it.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub namespaced: bool,
}

impl<'a> Attributes<'a> {
    pub fn of(info: &'a RequestInfo) -> Self {
        Attributes {
            verb: info.verb,
            group: info.rt.group,
            resource: info.rt.plural,
            subresource: info.sub.map(|s| s.name()),
            namespace: info.namespace.as_deref(),
            name: info.name.as_deref(),
            namespaced: info.rt.namespaced,
        }
    }
}

/// Decides requests under a [`Policy`].
#[derive(Debug, Default)]
pub struct Authorizer {
    pub policy: Policy,
}

impl Authorizer {
    /// `Err(reason)` when `user` may not do `a`.
    pub fn check(&self, user: &User, a: &Attributes<'_>) -> Result<(), String> {
        if user.is_admin() {
            return Ok(());
        }
        if matches!(a.resource, "selfsubjectaccessreviews" | "selfsubjectreviews") && a.verb == "create" {
            return Ok(());
        }
        if user.is_node() {
            // A worker's token names its stake tier (for the node's label), but the node
            // identity is authorized as a node only: tenants use their own login.
            return if node_allows(user, a) { Ok(()) } else { Err("a node may only do what running its pods needs".into()) };
        }
        let Some(tier) = user.tier() else {
            return Err("no RBAC policy matched: the user is neither an administrator nor holds a stake tier".into());
        };
        let rule = self.policy.rule(tier);
        let full = if a.group.is_empty() { a.resource.to_string() } else { format!("{}/{}", a.group, a.resource) };
        let named = |list: &[String]| list.iter().any(|r| r == "*" || *r == full || r == a.resource);
        if !rule.verbs.iter().any(|v| v == "*" || v == a.verb) {
            return Err(format!("stake tier \"{}\" allows only the verbs {}", tier.name(), rule.verbs.join(", ")));
        }
        if named(&rule.deny) {
            return Err(format!("stake tier \"{}\" may not access {full}", tier.name()));
        }
        if !named(&rule.resources) {
            return Err(format!("stake tier \"{}\" may access only {}", tier.name(), rule.resources.join(", ")));
        }
        let read_only = matches!(a.verb, "get" | "list" | "watch");
        if !a.namespaced && !read_only && !rule.cluster_scoped {
            return Err(format!("stake tier \"{}\" may not change cluster-scoped resources", tier.name()));
        }
        Ok(())
    }
}

/// What a worker node (`system:node:<name>` in `system:nodes`, from its seal token) may do to
/// run its pods, after kube-apiserver's Node authorizer: its own Node and Lease, pods and
/// their status, events, and getting secrets and configmaps by name — which the API then
/// limits to those a pod bound to the node refers to (`crud::node_may_read`). Admission keeps
/// it to writing its own Node.
fn node_allows(user: &User, a: &Attributes<'_>) -> bool {
    let Some(node) = user.node_name() else { return false };
    let read = matches!(a.verb, "get" | "list" | "watch");
    let own = a.name.is_none_or(|n| n == node);
    match (a.group, a.resource, a.subresource) {
        ("", "nodes", None) => read || (matches!(a.verb, "create" | "update" | "patch") && own),
        ("", "nodes", Some("status")) => matches!(a.verb, "get" | "update" | "patch") && own,
        ("coordination.k8s.io", "leases", None) => {
            a.namespace == Some("kube-node-lease") && own && matches!(a.verb, "get" | "create" | "update" | "patch" | "watch" | "list")
        }
        ("", "pods", None) => read || a.verb == "delete",
        ("", "pods", Some("status")) => matches!(a.verb, "get" | "update" | "patch"),
        ("", "events", None) | ("events.k8s.io", "events", None) => matches!(a.verb, "create" | "update" | "patch"),
        ("", "configmaps" | "secrets", None) => a.verb == "get",
        ("", "services" | "endpoints", None) => read,
        _ => false,
    }
}

/// kube-apiserver's denial message.
pub fn forbidden(user: &User, a: &Attributes<'_>, why: &str) -> ApiError {
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let target = match a.name {
        Some(n) => format!("{resource} \"{n}\" is forbidden"),
        None => format!("{resource} is forbidden"),
    };
    let scope = match a.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None if a.namespaced => String::new(),
        None => " at the cluster scope".to_string(),
    };
    let mut e = ApiError::forbidden(format!(
        "{target}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}: {why}",
        user.name, a.verb, a.group
    ));
    let mut details = serde_json::json!({"kind": a.resource});
    if let Some(n) = a.name {
        details["name"] = serde_json::json!(n);
    }
    if !a.group.is_empty() {
        details["group"] = serde_json::json!(a.group);
    }
    e.details = Some(details);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> User {
        User {
            name: "alice".into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            method: "token",
            token: None,
        }
    }

    fn attrs<'a>(verb: &'a str, resource: &'a str, namespaced: bool) -> Attributes<'a> {
        Attributes { verb, group: "", resource, subresource: None, namespace: namespaced.then_some("default"), name: None, namespaced }
    }

    #[test]
    fn tiers_map_to_verbs_and_resources() {
        let z = Authorizer::default();
        let read = user(&["daas:tier:read"]);
        assert!(z.check(&read, &attrs("list", "pods", true)).is_ok());
        assert!(z.check(&read, &attrs("create", "pods", true)).unwrap_err().contains("allows only the verbs get, list, watch"));
        assert!(z.check(&read, &attrs("get", "secrets", true)).unwrap_err().contains("may not access secrets"));
        let write = user(&["daas:tier:write"]);
        assert!(z.check(&write, &attrs("create", "pods", true)).is_ok());
        assert!(z.check(&write, &attrs("delete", "nodes", false)).unwrap_err().contains("cluster-scoped"));
        assert!(z.check(&user(&["daas:tier:admin"]), &attrs("delete", "nodes", false)).is_ok());
        assert!(z.check(&user(&["system:masters"]), &attrs("delete", "nodes", false)).is_ok());
        assert!(z.check(&user(&[]), &attrs("get", "pods", true)).is_err());
        assert!(z.check(&user(&[]), &attrs("create", "selfsubjectaccessreviews", false)).is_ok());
    }

    #[test]
    fn a_node_is_authorized_as_a_node_whatever_its_tier() {
        let z = Authorizer::default();
        let mut node = user(&["daas:tier:admin", "system:nodes"]);
        node.name = "system:node:n1".into();
        let a = |verb, group, resource, name| Attributes {
            verb,
            group,
            resource,
            subresource: None,
            namespace: Some("default"),
            name,
            namespaced: resource != "nodes",
        };
        assert!(z.check(&node, &a("get", "", "secrets", Some("s"))).is_ok(), "by name; the API checks the pod graph");
        assert!(z.check(&node, &a("list", "", "secrets", None)).is_err());
        assert!(z.check(&node, &a("create", "apps", "deployments", None)).unwrap_err().contains("a node may only"));
        assert!(z.check(&node, &a("patch", "", "nodes", Some("n1"))).is_ok());
        assert!(z.check(&node, &a("patch", "", "nodes", Some("n2"))).is_err());
        // The same tier without the node identity is a tenant's.
        assert!(z.check(&user(&["daas:tier:admin"]), &a("create", "apps", "deployments", None)).is_ok());
    }

    #[test]
    fn denial_names_who_what_and_why() {
        let e = forbidden(&user(&[]), &attrs("list", "pods", true), "because");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\": because"
        );
    }

    #[test]
    fn token_file_and_bad_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.csv");
        std::fs::write(&p, "# comment\nsecret1,bob,1001,\"daas:tier:read,devs\"\n").unwrap();
        let a = Authenticator::with_token_file(&p).unwrap();
        let u = a.authenticate(None, Some("Bearer secret1")).unwrap().unwrap();
        assert_eq!((u.name.as_str(), u.tier()), ("bob", Some(Tier::Read)));
        assert!(u.groups.contains(&"devs".to_string()));
        assert_eq!(a.authenticate(None, Some("Bearer nope")).unwrap_err().code, 401);
        assert_eq!(a.authenticate(None, Some("Basic x")).unwrap_err().code, 401);
        assert!(a.authenticate(None, None).unwrap().is_none());
    }
}
