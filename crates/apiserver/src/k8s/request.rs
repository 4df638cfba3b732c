//! What a request asks for: the resource, namespace, name and subresource from the path, the
//! verb from the method and query, and the media types from the headers.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method, header};

use super::registry::{self, ResourceType, Sub};
use super::status::ApiError;

/// The parsed target of a resource request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Sub>,
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
}

impl RequestInfo {
    pub fn resource_path(&self) -> String {
        match self.sub {
            Some(s) => format!("{}/{}", self.rt.plural, s.name()),
            None => self.rt.plural.to_string(),
        }
    }
}

/// Query parameters (the last value of each wins).
pub type Query = HashMap<String, String>;

pub fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect()
}

/// `true`, `1` and the like.
pub fn flag(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`. `Ok(None)` when the path is not a
/// resource path (discovery and the like).
pub fn parse(method: &Method, path: &str, q: &Query) -> Result<Option<RequestInfo>, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let mut watch = false;
    if rest[0] == "watch" {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.len() >= 2 && rest[0] == "namespaces" && group.is_empty() {
        // namespaces/{ns}/{resource}/... unless the third part is a namespace subresource.
        if rest.len() >= 3 && rest[2] != "status" && rest[2] != "finalize" {
            namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        }
    } else if rest.len() >= 3 && rest[0] == "namespaces" {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    let plural = rest[0];
    let rt = registry::lookup(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    let name = rest.get(1).map(|s| s.to_string());
    let sub = match rest.get(2) {
        None => None,
        Some(s) => Some(rt.subresources.iter().copied().find(|x| x.name() == *s).ok_or_else(ApiError::path_not_found)?),
    };
    if rest.len() > 3 {
        return Err(ApiError::path_not_found());
    }
    let watch = watch || flag(q, "watch");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", false) => "create",
        ("POST", true) if sub.is_some() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({m})")));
        }
    };
    if !rt.verbs().contains(&verb) && sub.is_none() {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    if let Some(s) = sub
        && !s.verbs().contains(&verb)
    {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    Ok(Some(RequestInfo { rt, namespace, name, sub, verb }))
}

/// How the response should be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `meta.k8s.io/v1` Table (kubectl get); `v1beta1` is answered with the same shape.
    Table,
}

/// Picks the response form from `Accept`. 406 if nothing offered can be produced.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for item in accept.split(',') {
        let mut params = item.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<(&str, &str)> = params.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        match media {
            "application/json" | "application/*" | "*/*" => match get("as") {
                Some("Table") if get("g") == Some("meta.k8s.io") => return Ok(Output::Table),
                Some(_) => continue,
                None => return Ok(Output::Json),
            },
            "application/yaml" if get("as").is_none() => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml; the request accepts {accept}"
    )))
}

/// True when the client asked for aggregated discovery (`as=APIGroupDiscoveryList`).
pub fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for item in accept.split(',') {
        let item: String = item.chars().filter(|c| !c.is_whitespace()).collect();
        if item.starts_with("application/json") && item.contains("as=APIGroupDiscoveryList") && item.contains("g=apidiscovery.k8s.io") {
            if item.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if item.contains("v=v2") {
                return Some("v2");
            }
        } else if item.starts_with("application/json") && !item.contains("as=") {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, path: &str) -> RequestInfo {
        parse(&m, path, &Query::new()).unwrap().unwrap()
    }

    #[test]
    fn paths_map_to_resources_and_verbs() {
        let r = p(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!((r.rt.plural, r.namespace.as_deref(), r.verb), ("pods", Some("default"), "list"));
        let r = p(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!((r.rt.plural, r.name.as_deref(), r.verb), ("namespaces", Some("kube-system"), "get"));
        let r = p(Method::PUT, "/api/v1/namespaces/x/status");
        assert_eq!((r.rt.plural, r.name.as_deref(), r.sub), ("namespaces", Some("x"), Some(Sub::Status)));
        let r = p(Method::PATCH, "/apis/apps/v1/namespaces/d/deployments/web/scale");
        assert_eq!((r.rt.kind, r.verb, r.sub), ("Deployment", "patch", Some(Sub::Scale)));
        let r = p(Method::GET, "/api/v1/watch/namespaces/d/pods");
        assert_eq!(r.verb, "watch");
        let r = p(Method::GET, "/api/v1/pods");
        assert_eq!((r.namespace, r.verb), (None, "list"));
        let r = p(Method::POST, "/api/v1/namespaces/d/pods/a/binding");
        assert_eq!((r.verb, r.sub), ("create", Some(Sub::Binding)));
        assert!(parse(&Method::GET, "/api/v1/namespaces/d/bogus", &Query::new()).is_err());
        assert!(parse(&Method::GET, "/api/v1/namespaces/d/nodes", &Query::new()).is_err());
        assert!(parse(&Method::POST, "/api/v1/namespaces/d/pods/a", &Query::new()).is_err());
        assert!(parse(&Method::GET, "/api/v1", &Query::new()).unwrap().is_none());
    }

    #[test]
    fn accept_headers_pick_the_form() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), Output::Table);
        h.insert(header::ACCEPT, "application/vnd.kubernetes.protobuf, */*".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap(), Output::Json);
        h.insert(header::ACCEPT, "application/vnd.kubernetes.protobuf".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap_err().code, 406);
        h.insert(header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json".parse().unwrap());
        assert_eq!(wants_aggregated(&h), Some("v2"));
    }
}
