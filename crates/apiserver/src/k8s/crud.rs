//! The verbs on stored objects: get, list, create, update, patch, delete, deletecollection,
//! and the status, scale and binding subresources. Every write is a compare-and-swap on the
//! key's store revision, so concurrent writers never lose each other's changes.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use daas_store::{Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeySpan, PutRequest, RangeRequest, RequestOp, TxnRequest};
use serde_json::{Value, json};

use super::auth::User;
use super::managed;
use super::patch::{self, PatchType};
use super::registry::{Kind, ResourceType, Sub, by_kind};
use super::request::{Output, Query, RequestInfo};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{self, ApiError, ApiResult};
use super::{Api, encode, meta, strategy, table};

/// What every verb needs besides the target.
pub struct Ctx<'a> {
    pub user: &'a User,
    pub authz: &'a super::auth::Authorizer,
    pub q: &'a Query,
    pub headers: &'a HeaderMap,
    pub output: Output,
    /// tolerationSeconds the DefaultTolerationSeconds admission gives (not-ready, unreachable).
    pub tolerations: (i64, i64),
}

impl Ctx<'_> {
    fn dry_run(&self) -> bool {
        self.q.get("dryRun").is_some_and(|v| v == "All")
    }

    /// The field manager of a write: `?fieldManager=`, else derived from the User-Agent as
    /// kube-apiserver does (`kubectl/v1.33.1 (…)` → `kubectl`).
    fn manager(&self) -> String {
        match self.q.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => managed::manager_from_user_agent(self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")),
        }
    }

    /// Records `manager`'s ownership of what a create or update changed.
    fn track(&self, rt: &ResourceType, old: Option<&Value>, new: Value, sub: Option<Sub>) -> Value {
        managed::update(
            old,
            new,
            &self.manager(),
            &rt.api_version(),
            sub.map(Sub::name),
            rt.subresources.contains(&Sub::Status),
            &meta::now_rfc3339(),
        )
    }
}

/// Checks the write options every write shares: `fieldManager` (at most 128 printable
/// characters) and `force` (apply only).
fn check_write_options(ctx: &Ctx<'_>, apply: bool) -> ApiResult<()> {
    if let Some(m) = ctx.q.get("fieldManager") {
        if m.len() > 128 {
            return Err(ApiError::new(422, "Invalid", "fieldManager: Too long: may not be more than 128 bytes"));
        }
        if m.chars().any(|c| c.is_control()) {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("fieldManager: Invalid value: {m:?}: must only contain printable characters"),
            ));
        }
    }
    if apply && ctx.q.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    if !apply && ctx.q.contains_key("force") {
        return Err(ApiError::new(422, "Invalid", "force: Forbidden: may not be specified for non-apply patch"));
    }
    Ok(())
}

pub async fn dispatch(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>, body: Bytes) -> ApiResult<Response> {
    if let Some(d) = ctx.q.get("dryRun")
        && d != "All"
        && !d.is_empty()
    {
        return Err(ApiError::bad_request(format!("Invalid dry run value: \"{d}\"; supported values: All")));
    }
    if info.rt.is_virtual() {
        return review(info, ctx, &body);
    }
    let rt = info.rt;
    match (info.verb, info.sub) {
        ("list", _) => list(api, info, ctx).await,
        ("get", None | Some(Sub::Status)) => {
            if let Some(node) = ctx.user.node_name()
                && matches!(rt.id, Kind::Secret | Kind::ConfigMap)
            {
                api.node_may_read(node, rt, info.namespace.as_deref().unwrap_or(""), name(info)?)?;
            }
            let (obj, _) = api.read(rt, info.namespace.as_deref(), name(info)?).await?;
            Ok(one(rt, StatusCode::OK, &obj, ctx))
        }
        ("get", Some(Sub::Scale)) => {
            let (obj, _) = api.read(rt, info.namespace.as_deref(), name(info)?).await?;
            Ok(encode(StatusCode::OK, &scale_of(&obj), ctx.output))
        }
        ("get", Some(Sub::Log)) | ("create" | "get", Some(Sub::Exec)) => {
            let (pod, _) = api.read(rt, info.namespace.as_deref(), name(info)?).await?;
            match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                None => Err(ApiError::bad_request(format!("pod \"{}\" is not scheduled to a node yet", meta::name(&pod)))),
                Some(node) => {
                    Err(ApiError::unavailable(format!("node \"{node}\" has no agent connection to serve {}", info.resource_path())))
                }
            }
        }
        ("create", Some(Sub::Binding)) => bind(api, info, ctx, &body).await,
        ("create", None) => {
            check_write_options(ctx, false)?;
            let obj = decode_body(ctx.headers, &body)?;
            let (created, warnings) = admit_new(rt, info.namespace.as_deref(), obj, ctx)?;
            let created = ctx.track(rt, None, created, None);
            if ctx.dry_run() {
                // A dry run answers what the real create would, including AlreadyExists.
                if api.try_read(rt, info.namespace.as_deref(), meta::name(&created)).await?.is_some() {
                    return Err(ApiError::already_exists(rt, meta::name(&created)));
                }
                return Ok(with_warnings(one(rt, StatusCode::CREATED, &created, ctx), &warnings));
            }
            let stored = api.insert(rt, info.namespace.as_deref(), created).await?;
            Ok(with_warnings(one(rt, StatusCode::CREATED, &stored, ctx), &warnings))
        }
        ("update", sub) => {
            check_write_options(ctx, false)?;
            let new = decode_body(ctx.headers, &body)?;
            update(api, info, ctx, sub, Change::Replace(new)).await
        }
        ("patch", sub) => {
            let ct = ctx.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let pt = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::unsupported_media(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got {ct}"
                ))
            })?;
            check_write_options(ctx, pt == PatchType::Apply)?;
            let p: Value = if pt == PatchType::Apply {
                // The applied configuration, in YAML (of which JSON is a subset).
                let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the apply patch is not UTF-8"))?;
                let v: Value = serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !v.is_object() {
                    return Err(ApiError::bad_request("the apply patch must be an object"));
                }
                if v.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
                    return Err(ApiError::bad_request("metadata.managedFields must be nil"));
                }
                v
            } else {
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            update(api, info, ctx, sub, Change::Patch(pt, p)).await
        }
        ("delete", None) => delete(api, info, ctx, &body).await,
        ("deletecollection", None) => delete_collection(api, info, ctx, &body).await,
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}

fn name(info: &RequestInfo) -> ApiResult<&str> {
    info.name.as_deref().ok_or_else(|| ApiError::bad_request("a resource name is required"))
}

/// One object in the requested form.
fn one(rt: &ResourceType, code: StatusCode, obj: &Value, ctx: &Ctx<'_>) -> Response {
    if ctx.output == Output::Table {
        let rv = meta::meta_str(obj, "resourceVersion").unwrap_or("").to_string();
        let include = ctx.q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
        return encode(code, &table::table(rt, std::slice::from_ref(obj), &rv, None, include, true), Output::Json);
    }
    encode(code, obj, ctx.output)
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

/// Parses a JSON or YAML request body into an object.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match media {
        "application/json" | "" | "*/*" => {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?
        }
        super::protobuf::MEDIA_TYPE => {
            super::protobuf::decode(body).map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))?
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {other}"
            )));
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

/// Checks apiVersion/kind against the URL, decodes into the typed schema, and applies the
/// request's field validation. Returns the canonical object and any warnings.
fn typed(rt: &ResourceType, mut obj: Value, ctx: &Ctx<'_>) -> ApiResult<(Value, Vec<String>)> {
    let want_av = rt.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(rt.kind),
        Some(k) if k == rt.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", rt.kind))),
    }
    strategy::normalize_quantities(&mut obj);
    let mut unknown = Vec::new();
    let out = (rt.codec)(&obj, &mut unknown)
        .map_err(|e| ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {e}", rt.kind, rt.version, rt.kind)))?;
    let mode = ctx.q.get("fieldValidation").map(String::as_str).unwrap_or("Warn");
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match mode {
            "Strict" => {
                let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                return Err(ApiError::bad_request(format!("strict decoding error: {}", list.join(", "))));
            }
            "Warn" => warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
            "Ignore" => {}
            other => return Err(ApiError::bad_request(format!("fieldValidation must be one of Ignore, Warn, Strict; got {other}"))),
        }
    }
    Ok((out, warnings))
}

/// A new object as it will be stored: typed, named, defaulted and validated.
fn admit_new(rt: &ResourceType, namespace: Option<&str>, obj: Value, ctx: &Ctx<'_>) -> ApiResult<(Value, Vec<String>)> {
    let (mut obj, warnings) = typed(rt, obj, ctx)?;
    restrict_node(rt, &mut obj, ctx)?;
    prepare_new(rt, namespace, &mut obj, ctx.tolerations)?;
    Ok((obj, warnings))
}

/// The label that tells a worker node's stake tier (read, write, admin).
pub const STAKE_TIER_LABEL: &str = "k3s-daas.io/stake-tier";

/// NodeRestriction, as kube-apiserver's admission plugin: a worker writes only its own Node;
/// and that Node carries the stake tier its seal token names, whatever the worker sends, so
/// a workload can demand a minimum stake with a node selector or affinity.
fn restrict_node(rt: &ResourceType, obj: &mut Value, ctx: &Ctx<'_>) -> ApiResult<()> {
    if rt.id != Kind::Node || !ctx.user.groups.iter().any(|g| g == "system:nodes") {
        return Ok(());
    }
    let Some(node) = ctx.user.name.strip_prefix("system:node:") else { return Ok(()) };
    if meta::name(obj) != node {
        return Err(ApiError::forbidden(format!("node \"{node}\" is not allowed to modify node \"{}\"", meta::name(obj))));
    }
    if let Some(tier) = ctx.user.groups.iter().find_map(|g| g.strip_prefix("daas:tier:")) {
        let m = meta::metadata_mut(obj);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(STAKE_TIER_LABEL.into(), json!(tier));
        }
    }
    Ok(())
}

/// Whether a pod refers to the secret (`secret`) or configmap called `name`.
fn pod_refers_to(pod: &Value, secret: bool, name: &str) -> bool {
    let is = |v: Option<&Value>| v.and_then(Value::as_str) == Some(name);
    let spec = &pod["spec"];
    let empty = Vec::new();
    let list = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    if secret && list(&spec["imagePullSecrets"]).iter().any(|s| is(s.get("name"))) {
        return true;
    }
    let (volume_key, volume_name, source_key, key_ref, from_ref) = if secret {
        ("secret", "secretName", "secret", "secretKeyRef", "secretRef")
    } else {
        ("configMap", "name", "configMap", "configMapKeyRef", "configMapRef")
    };
    for v in list(&spec["volumes"]) {
        if is(v.get(volume_key).and_then(|s| s.get(volume_name))) {
            return true;
        }
        if list(&v["projected"]["sources"]).iter().any(|s| is(s.get(source_key).and_then(|s| s.get("name")))) {
            return true;
        }
    }
    ["containers", "initContainers", "ephemeralContainers"].iter().flat_map(|k| list(&spec[*k])).any(|c| {
        list(&c["env"]).iter().any(|e| is(e.pointer("/valueFrom").and_then(|f| f.get(key_ref)).and_then(|r| r.get("name"))))
            || list(&c["envFrom"]).iter().any(|e| is(e.get(from_ref).and_then(|r| r.get("name"))))
    })
}

fn prepare_new(rt: &ResourceType, namespace: Option<&str>, obj: &mut Value, tolerations: (i64, i64)) -> ApiResult<()> {
    {
        let m = meta::metadata_mut(obj);
        if m.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
        }
        if rt.namespaced {
            let ns = namespace.ok_or_else(|| ApiError::bad_request("the namespace of the object must be given in the request path"))?;
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let has_name = m.get("name").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        if !has_name {
            match m.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(g) => {
                    let n = format!("{}{}", truncate(g, 58), meta::name_suffix());
                    m.insert("name".into(), json!(n));
                }
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        vec![status::FieldError::required("metadata.name", "name or generateName is required")],
                    ));
                }
            }
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            m.remove(k);
        }
    }
    strategy::apply_defaults(rt, obj);
    strategy::prepare_create(rt, obj, tolerations);
    let errs = strategy::validate(rt, obj, None);
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, meta::name(obj), errs));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n { s } else { &s[..s.char_indices().take_while(|(i, _)| *i < n).last().map_or(0, |(i, c)| i + c.len_utf8())] }
}

/// What an update does to the stored object.
enum Change {
    Replace(Value),
    Patch(PatchType, Value),
}

impl Api {
    /// The stored object and its revision; 404 if absent.
    pub(crate) async fn read(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<(Value, i64)> {
        self.try_read(rt, ns, name).await?.ok_or_else(|| ApiError::not_found(rt, name))
    }

    async fn try_read(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Option<(Value, i64)>> {
        let key = rt.key(ns, name);
        let r = self.store.range_now(&RangeRequest::new(KeySpan::Single(Bytes::from(key))))?;
        match r.kvs.into_iter().next() {
            None => Ok(None),
            Some(kv) => {
                let v: Value =
                    serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object does not decode: {e}")))?;
                let mut v = rt.from_storage(v);
                meta::set_resource_version(&mut v, kv.mod_revision);
                Ok(Some((v, kv.mod_revision)))
            }
        }
    }

    /// Compare-and-swap: writes `obj` at `key` if the key's revision is `expect` (0 = absent).
    /// Returns the new revision, or None if the comparison failed.
    async fn cas(&self, rt: &ResourceType, key: &str, obj: Option<&Value>, expect: i64, extra: Vec<RequestOp>) -> ApiResult<Option<i64>> {
        let kb = Bytes::from(key.to_string());
        // Events expire with a store lease (`--event-ttl`); every write renews it.
        let lease = match obj {
            Some(_) if matches!(rt.id, Kind::Event | Kind::EventV1) => self.event_lease().await?,
            _ => 0,
        };
        let mut ops = vec![match obj {
            Some(o) => {
                let mut o = rt.to_storage(o).into_owned();
                meta::metadata_mut(&mut o).remove("resourceVersion");
                let value = serde_json::to_vec(&o).map_err(|e| ApiError::internal(e.to_string()))?;
                RequestOp::Put(PutRequest { key: kb.clone(), value: Bytes::from(value), lease, ..Default::default() })
            }
            None => RequestOp::DeleteRange(DeleteRangeRequest { span: KeySpan::Single(kb.clone()), prev_kv: false }),
        }];
        ops.extend(extra);
        let rider = super::Rider::pending().map(|(r, more)| {
            ops.extend(more);
            r
        });
        let txn = TxnRequest {
            compare: vec![Compare { span: KeySpan::Single(kb), result: CompareResult::Equal, target: CompareTarget::Mod(expect) }],
            success: ops,
            failure: vec![],
        };
        let r = match self.store.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                // The shared event lease is gone (revoked by hand, or expired during a stall):
                // this write fails, the next one gets a new lease.
                if lease != 0 && matches!(e, daas_store::StoreError::LeaseNotFound) {
                    self.forget_event_lease().await;
                }
                return Err(e.into());
            }
        };
        if r.succeeded
            && let Some(rider) = rider
        {
            rider.land(r.revision);
        }
        Ok(r.succeeded.then_some(r.revision))
    }

    /// The Node authorizer's graph, for secrets and configmaps: a node may read one only if a
    /// pod bound to it refers to it (volumes, projected volumes, env, envFrom, image pull
    /// secrets). Otherwise 403, worded as kube-apiserver words it.
    pub(crate) fn node_may_read(&self, node: &str, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
        let prt = by_kind(Kind::Pod);
        let prefix = prt.prefix(Some(ns));
        let r = self.store.range_now(&RangeRequest::new(super::prefix_span(&prefix)))?;
        let secret = rt.id == Kind::Secret;
        for kv in r.kvs {
            let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            if pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node) && pod_refers_to(&pod, secret, name) {
                return Ok(());
            }
        }
        let what = if secret { "secret" } else { "configmap" };
        Err(ApiError::forbidden(format!(
            "{}s \"{name}\" is forbidden: User \"system:node:{node}\" cannot get resource \"{}s\" in API group \"\" in the namespace \"{ns}\": no relationship found between node '{node}' and this object",
            what, what
        ))
        .with_details(json!({"name": name, "kind": rt.plural})))
    }

    async fn namespace_ready(&self, ns: &str) -> ApiResult<()> {
        let nrt = by_kind(Kind::Namespace);
        match self.try_read(nrt, None, ns).await? {
            None => Err(ApiError::not_found(nrt, ns)),
            Some((v, _)) if meta::is_deleting(&v) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))
            .with_details(json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))),
            Some(_) => Ok(()),
        }
    }

    /// Stores a new, admitted object. 409 AlreadyExists if the name is taken.
    async fn insert(&self, rt: &ResourceType, ns: Option<&str>, mut obj: Value) -> ApiResult<Value> {
        if rt.namespaced
            && let Some(ns) = ns
        {
            self.namespace_ready(ns).await?;
        }
        let generated = meta::meta_str(&obj, "generateName").is_some_and(|g| !g.is_empty() && meta::name(&obj).starts_with(g));
        for attempt in 0..8 {
            let mut extra = Vec::new();
            if rt.id == Kind::Service {
                if self.try_read(rt, ns, meta::name(&obj)).await?.is_some() {
                    return Err(ApiError::already_exists(rt, meta::name(&obj)));
                }
                extra = self.allocate_service_ip(&mut obj).await?;
            }
            let key = rt.key(ns, meta::name(&obj));
            match self.cas(rt, &key, Some(&obj), 0, extra).await? {
                Some(rev) => {
                    meta::set_resource_version(&mut obj, rev);
                    return Ok(obj);
                }
                None if generated && attempt < 7 => {
                    let g = meta::meta_str(&obj, "generateName").unwrap_or("").to_string();
                    meta::metadata_mut(&mut obj).insert("name".into(), json!(format!("{}{}", truncate(&g, 58), meta::name_suffix())));
                }
                None if rt.id == Kind::Service && self.try_read(rt, ns, meta::name(&obj)).await?.is_none() => {
                    // Lost a race for the ClusterIP: pick another.
                    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("clusterIP");
                        spec.remove("clusterIPs");
                    }
                }
                None => return Err(ApiError::already_exists(rt, meta::name(&obj))),
            }
        }
        Err(ApiError::already_exists(rt, meta::name(&obj)))
    }

    /// Creates an object from a manifest (used by bootstrap and tests).
    pub async fn create_object(&self, rt: &ResourceType, ns: Option<&str>, obj: Value) -> ApiResult<Value> {
        let mut unknown = Vec::new();
        let mut obj = (rt.codec)(&obj, &mut unknown).map_err(ApiError::bad_request)?;
        prepare_new(rt, ns, &mut obj, self.config.default_tolerations)?;
        self.insert(rt, ns, obj).await
    }

    /// Picks a free ClusterIP (or checks a requested one) and returns the txn op that reserves
    /// it; the reservation key makes two services never share an address.
    async fn allocate_service_ip(&self, svc: &mut Value) -> ApiResult<Vec<RequestOp>> {
        let requested = svc.pointer("/spec/clusterIP").and_then(Value::as_str).map(str::to_string);
        let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if ty == "ExternalName" || requested.as_deref() == Some("None") {
            if requested.as_deref() == Some("None") {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            return Ok(Vec::new());
        }
        let (base, bits) = self.config.service_cidr;
        let size = 1u32 << (32 - bits);
        let base = u32::from(base);
        let ip = match requested.filter(|s| !s.is_empty()) {
            Some(r) => {
                let ip: std::net::Ipv4Addr = r.parse().map_err(|_| {
                    ApiError::invalid(
                        by_kind(Kind::Service),
                        meta::name(svc),
                        vec![status::FieldError::invalid("spec.clusterIPs[0]", &json!(r), "must be a valid IP address")],
                    )
                })?;
                let n = u32::from(ip);
                if n <= base || n >= base + size - 1 {
                    return Err(ApiError::invalid(
                        by_kind(Kind::Service),
                        meta::name(svc),
                        vec![status::FieldError::invalid(
                            "spec.clusterIPs[0]",
                            &json!(r),
                            format!(
                                "provided IP is not in the valid range. The range of valid IPs is {}/{bits}",
                                std::net::Ipv4Addr::from(base)
                            ),
                        )],
                    ));
                }
                if self.ip_taken(ip).await? {
                    return Err(ApiError::invalid(
                        by_kind(Kind::Service),
                        meta::name(svc),
                        vec![status::FieldError::invalid("spec.clusterIPs[0]", &json!(r), "provided IP is already allocated")],
                    ));
                }
                ip
            }
            None => {
                let mut found = None;
                for _ in 0..64 {
                    let off = rand::Rng::random_range(&mut rand::rng(), 2..size - 1);
                    let ip = std::net::Ipv4Addr::from(base + off);
                    if !self.ip_taken(ip).await? {
                        found = Some(ip);
                        break;
                    }
                }
                found.ok_or_else(|| ApiError::internal("failed to allocate a service IP: range is full"))?
            }
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        let key = Bytes::from(format!("/registry/ranges/serviceips/{ip}"));
        let owner = format!("{}/{}", meta::namespace(svc).unwrap_or(""), meta::name(svc));
        // Only take the address if nobody holds it: a nested txn guards the reservation.
        Ok(vec![RequestOp::Txn(TxnRequest {
            compare: vec![Compare { span: KeySpan::Single(key.clone()), result: CompareResult::Equal, target: CompareTarget::Mod(0) }],
            success: vec![RequestOp::Put(PutRequest { key, value: Bytes::from(owner), ..Default::default() })],
            failure: vec![],
        })])
    }

    async fn ip_taken(&self, ip: std::net::Ipv4Addr) -> ApiResult<bool> {
        let key = Bytes::from(format!("/registry/ranges/serviceips/{ip}"));
        Ok(self.store.range_now(&RangeRequest::new(KeySpan::Single(key)))?.count > 0)
    }

    fn release_ops(rt: &ResourceType, obj: &Value) -> Vec<RequestOp> {
        if rt.id != Kind::Service {
            return Vec::new();
        }
        match obj.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| *ip != "None" && !ip.is_empty()) {
            Some(ip) => vec![RequestOp::DeleteRange(DeleteRangeRequest {
                span: KeySpan::Single(Bytes::from(format!("/registry/ranges/serviceips/{ip}"))),
                prev_kv: false,
            })],
            None => Vec::new(),
        }
    }

    /// Deletes the object now (compare-and-swap on `rev`).
    async fn remove(&self, rt: &ResourceType, obj: &Value, rev: i64) -> ApiResult<Option<i64>> {
        let key = rt.key(meta::namespace(obj), meta::name(obj));
        self.cas(rt, &key, None, rev, Self::release_ops(rt, obj)).await
    }
}

/// Merges an applied configuration into `current` (or into nothing, to create), with field
/// ownership; conflicts with other managers are a 409 unless `?force=true`.
fn server_side_apply(rt: &ResourceType, current: Option<&Value>, cfg: &Value, sub: Option<Sub>, ctx: &Ctx<'_>) -> ApiResult<Value> {
    let force = match ctx.q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("force: invalid boolean {other:?}"))),
    };
    let av = rt.api_version();
    match cfg.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == av => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({av})")));
        }
        None => return Err(ApiError::bad_request("apiVersion must be set in an apply patch")),
    }
    match cfg.get("kind").and_then(Value::as_str) {
        Some(k) if k == rt.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", rt.kind))),
        None => return Err(ApiError::bad_request("kind must be set in an apply patch")),
    }
    let mut cfg = cfg.clone();
    strategy::normalize_quantities(&mut cfg);
    managed::apply(
        current,
        &cfg,
        &ctx.manager(),
        &av,
        sub.map(Sub::name),
        force,
        rt.subresources.contains(&Sub::Status),
        &meta::now_rfc3339(),
    )
    .map_err(|conflicts| {
        ApiError::new(409, "Conflict", managed::conflict_message(&conflicts, &av)).with_details(managed::conflict_details(&conflicts, &av))
    })
}

/// Builds the new object of an update or patch from the current one.
fn apply_change(rt: &ResourceType, sub: Option<Sub>, current: &Value, change: &Change, ctx: &Ctx<'_>) -> ApiResult<(Value, Vec<String>)> {
    let base = if sub == Some(Sub::Scale) { scale_of(current) } else { current.clone() };
    let proposed = match change {
        Change::Replace(v) => v.clone(),
        Change::Patch(PatchType::Json, p) => patch::json_patch(&base, p).map_err(|e| ApiError::new(422, "Invalid", e))?,
        Change::Patch(PatchType::Merge, p) => patch::merge_patch(&base, p),
        Change::Patch(PatchType::Strategic, p) => patch::strategic_merge(&base, p).map_err(ApiError::bad_request)?,
        Change::Patch(PatchType::Apply, p) => {
            if sub == Some(Sub::Scale) {
                return Err(ApiError::unsupported_media("apply patches are not supported on the scale subresource"));
            }
            server_side_apply(rt, Some(current), p, sub, ctx)?
        }
    };
    if !proposed.is_object() {
        return Err(ApiError::bad_request("the patched object is not a JSON object"));
    }
    if sub == Some(Sub::Scale) {
        let replicas = proposed.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
                    meta::name(current)
                ),
            ));
        }
        if let Some(rv) = meta::meta_str(&proposed, "resourceVersion").filter(|s| !s.is_empty())
            && Some(rv) != meta::meta_str(current, "resourceVersion")
        {
            return Err(ApiError::stale(rt, meta::name(current)));
        }
        let mut out = current.clone();
        out["spec"]["replicas"] = json!(replicas);
        strategy::prepare_update(rt, &mut out, current);
        return Ok((out, Vec::new()));
    }
    let (mut new, warnings) = typed(rt, proposed, ctx)?;
    let m = meta::metadata_mut(&mut new);
    let want_name = meta::name(current).to_string();
    match m.get("name").and_then(Value::as_str) {
        Some(n) if n != want_name => {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({want_name})")));
        }
        _ => {
            m.insert("name".into(), json!(want_name));
        }
    }
    if let Some(ns) = meta::namespace(current) {
        match m.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    }
    if let Some(uid) = m.get("uid").and_then(Value::as_str)
        && !uid.is_empty()
        && Some(uid) != meta::meta_str(current, "uid")
    {
        return Err(ApiError::conflict(
            rt,
            meta::name(current),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::meta_str(current, "uid").unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = m.get("resourceVersion").and_then(Value::as_str)
        && !rv.is_empty()
        && Some(rv) != meta::meta_str(current, "resourceVersion")
    {
        return Err(ApiError::stale(rt, meta::name(current)));
    }
    if sub == Some(Sub::Status) {
        let mut out = strategy::status_update(&new, current);
        strategy::prepare_update(rt, &mut out, current);
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if out["status"].is_null() {
            meta::ensure_object(&mut out).remove("status");
        }
        return Ok((out, warnings));
    }
    strategy::apply_defaults(rt, &mut new);
    strategy::prepare_update(rt, &mut new, current);
    restrict_node(rt, &mut new, ctx)?;
    Ok((new, warnings))
}

async fn update(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>, sub: Option<Sub>, change: Change) -> ApiResult<Response> {
    let rt = info.rt;
    let ns = info.namespace.as_deref();
    let nm = name(info)?;
    if sub.is_some_and(|s| !matches!(s, Sub::Status | Sub::Scale)) {
        return Err(ApiError::method_not_allowed("not supported on this subresource"));
    }
    for _ in 0..16 {
        let Some((current, rev)) = api.try_read(rt, ns, nm).await? else {
            if let (Change::Replace(v), None, Kind::Lease | Kind::Endpoints | Kind::Event) = (&change, sub, rt.id) {
                let (obj, warnings) = admit_new(rt, ns, v.clone(), ctx)?;
                let obj = ctx.track(rt, None, obj, None);
                if meta::name(&obj) != nm {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({nm})",
                        meta::name(&obj)
                    )));
                }
                if ctx.dry_run() {
                    return Ok(with_warnings(one(rt, StatusCode::CREATED, &obj, ctx), &warnings));
                }
                let stored = api.insert(rt, ns, obj).await?;
                return Ok(with_warnings(one(rt, StatusCode::CREATED, &stored, ctx), &warnings));
            }
            if let (Change::Patch(PatchType::Apply, p), None) = (&change, sub) {
                // Applying an object that does not exist creates it.
                let mut cfg = p.clone();
                meta::metadata_mut(&mut cfg).entry("name").or_insert_with(|| json!(nm));
                let obj = server_side_apply(rt, None, &cfg, None, ctx)?;
                let (obj, warnings) = admit_new(rt, ns, obj, ctx)?;
                if meta::name(&obj) != nm {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({nm})",
                        meta::name(&obj)
                    )));
                }
                if ctx.dry_run() {
                    return Ok(with_warnings(one(rt, StatusCode::CREATED, &obj, ctx), &warnings));
                }
                match api.insert(rt, ns, obj).await {
                    Ok(stored) => return Ok(with_warnings(one(rt, StatusCode::CREATED, &stored, ctx), &warnings)),
                    // Someone created it meanwhile: apply to theirs.
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            return Err(ApiError::not_found(rt, nm));
        };
        let (new, warnings) = apply_change(rt, sub, &current, &change, ctx)?;
        let new = match &change {
            Change::Patch(PatchType::Apply, _) => new,
            _ => ctx.track(rt, Some(&current), new, sub),
        };
        let errs = strategy::validate(rt, &new, Some(&current));
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, nm, errs));
        }
        let unchanged = {
            let strip = |v: &Value| {
                let mut v = v.clone();
                meta::metadata_mut(&mut v).remove("resourceVersion");
                v
            };
            strip(&new) == strip(&current)
        };
        let respond = |obj: &Value| {
            let out = if sub == Some(Sub::Scale) { scale_of(obj) } else { obj.clone() };
            if sub == Some(Sub::Scale) {
                return with_warnings(encode(StatusCode::OK, &out, ctx.output), &warnings);
            }
            with_warnings(one(rt, StatusCode::OK, &out, ctx), &warnings)
        };
        if unchanged || ctx.dry_run() {
            return Ok(respond(&new));
        }
        // The last finalizer of an object being deleted is gone: delete it now.
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() {
            match api.remove(rt, &new, rev).await? {
                Some(_) => return Ok(respond(&new)),
                None => continue,
            }
        }
        let key = rt.key(ns, nm);
        match api.cas(rt, &key, Some(&new), rev, Vec::new()).await? {
            Some(r) => {
                let mut new = new;
                meta::set_resource_version(&mut new, r);
                return Ok(respond(&new));
            }
            None => {
                // A precondition from the client means its view is stale: tell it. Otherwise
                // re-read and re-apply, as kube-apiserver's update loop does.
                let explicit_rv = match &change {
                    Change::Replace(v) => meta::meta_str(v, "resourceVersion").is_some_and(|s| !s.is_empty()),
                    Change::Patch(..) => false,
                };
                if explicit_rv {
                    return Err(ApiError::stale(rt, nm));
                }
            }
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {} \"{nm}\": too many concurrent writers", rt.qualified()),
    ))
}

/// `autoscaling/v1` Scale of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let selector =
        obj.pointer("/spec/selector").and_then(|s| LabelSelector::from_object(s).ok()).map(|s| s.to_string()).unwrap_or_default();
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

async fn bind(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>, body: &[u8]) -> ApiResult<Response> {
    let rt = info.rt;
    let nm = name(info)?;
    let b = decode_body(ctx.headers, body)?;
    let target = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(422, "Invalid", format!("Binding \"{nm}\" is invalid: target.name: Required value")))?;
    if let Some(kind) = b.pointer("/target/kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "Node"
    {
        return Err(ApiError::new(422, "Invalid", format!("Binding \"{nm}\" is invalid: target.kind: Unsupported value: \"{kind}\"")));
    }
    loop {
        let (mut pod, rev) = api.read(rt, info.namespace.as_deref(), nm).await?;
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict(rt, nm, &format!("pod {nm} is already assigned to node \"{node}\"")));
        }
        if meta::is_deleting(&pod) {
            return Err(ApiError::conflict(rt, nm, &format!("pod {nm} is being deleted, cannot be assigned to a host")));
        }
        pod["spec"]["nodeName"] = json!(target);
        let conds = meta::ensure_object(&mut pod["status"]).entry("conditions").or_insert_with(|| json!([]));
        if let Value::Array(c) = conds {
            c.retain(|x| x.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            c.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
        }
        if ctx.dry_run() {
            break;
        }
        if api.cas(rt, &rt.key(info.namespace.as_deref(), nm), Some(&pod), rev, Vec::new()).await?.is_some() {
            break;
        }
    }
    Ok(encode(StatusCode::CREATED, &status::success(None), Output::Json))
}

/// DeleteOptions from the body and the query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    rv: Option<String>,
}

fn delete_options(ctx: &Ctx<'_>, body: &[u8]) -> ApiResult<DeleteOptions> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { decode_body(ctx.headers, body)? };
    let grace =
        b.get("gracePeriodSeconds").and_then(Value::as_i64).or_else(|| ctx.q.get("gracePeriodSeconds").and_then(|s| s.parse().ok()));
    let propagation =
        b.get("propagationPolicy").and_then(Value::as_str).map(str::to_string).or_else(|| ctx.q.get("propagationPolicy").cloned()).or_else(
            || match b.get("orphanDependents").and_then(Value::as_bool).or_else(|| ctx.q.get("orphanDependents").map(|s| s == "true")) {
                Some(true) => Some("Orphan".to_string()),
                _ => None,
            },
        );
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    if grace.is_some_and(|g| g < 0) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "DeleteOptions.meta.k8s.io \"\" is invalid: gracePeriodSeconds: Invalid value: must be >= 0",
        ));
    }
    let pre = b.get("preconditions");
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: pre.and_then(|p| p.get("uid")).and_then(Value::as_str).map(str::to_string),
        rv: pre.and_then(|p| p.get("resourceVersion")).and_then(Value::as_str).map(str::to_string),
    })
}

async fn delete(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_options(ctx, body)?;
    let nm = name(info)?;
    let outcome = delete_one(api, info.rt, info.namespace.as_deref(), nm, &opts, ctx.dry_run()).await?;
    Ok(match outcome {
        Deleted::Now(obj) => {
            let uid = meta::meta_str(&obj, "uid").unwrap_or("").to_string();
            let mut d = json!({"name": nm, "kind": info.rt.plural, "uid": uid});
            if !info.rt.group.is_empty() {
                d["group"] = json!(info.rt.group);
            }
            if info.rt.id == Kind::Pod || info.rt.id == Kind::Namespace {
                one(info.rt, StatusCode::OK, &obj, ctx)
            } else {
                encode(StatusCode::OK, &status::success(Some(d)), Output::Json)
            }
        }
        Deleted::Pending(obj) => one(info.rt, StatusCode::OK, &obj, ctx),
    })
}

enum Deleted {
    /// Gone from the store.
    Now(Value),
    /// Marked with deletionTimestamp; finalizers or a graceful pod stop still run.
    Pending(Value),
}

async fn delete_one(
    api: &Arc<Api>,
    rt: &ResourceType,
    ns: Option<&str>,
    nm: &str,
    opts: &DeleteOptions,
    dry_run: bool,
) -> ApiResult<Deleted> {
    loop {
        let (current, rev) = api.read(rt, ns, nm).await?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta::meta_str(&current, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                nm,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::meta_str(&current, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(want) = &opts.rv
            && Some(want.as_str()) != meta::meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(
                rt,
                nm,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    meta::meta_str(&current, "resourceVersion").unwrap_or("")
                ),
            ));
        }
        let mut next = current.clone();
        let mut finalizers = meta::finalizers(&current);
        match opts.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => finalizers.push("foregroundDeletion".into()),
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        let graceful_pod = rt.id == Kind::Pod
            && current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty())
            && !matches!(current.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let grace =
            opts.grace.unwrap_or_else(|| current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30));
        let pending = rt.id == Kind::Namespace || !finalizers.is_empty() || (graceful_pod && grace > 0);
        if !pending {
            if dry_run {
                return Ok(Deleted::Now(current));
            }
            match api.remove(rt, &current, rev).await? {
                Some(_) => return Ok(Deleted::Now(current)),
                None => continue,
            }
        }
        if meta::is_deleting(&current) && rt.id != Kind::Pod {
            // Already on its way out; a second delete changes nothing.
            return Ok(Deleted::Pending(current));
        }
        {
            let m = meta::metadata_mut(&mut next);
            if !m.contains_key("deletionTimestamp") || graceful_pod {
                let when = if graceful_pod { meta::now_secs() + grace } else { meta::now_secs() };
                let keep_earlier = m.get("deletionTimestamp").and_then(Value::as_str).and_then(meta::parse_time).is_some_and(|t| t <= when);
                if !keep_earlier {
                    m.insert("deletionTimestamp".into(), json!(meta::format_time(when)));
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(if graceful_pod { grace } else { 0 }));
            }
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
        }
        if rt.id == Kind::Namespace {
            next["status"]["phase"] = json!("Terminating");
        }
        // A repeated delete that changes nothing writes nothing (no new resourceVersion, no
        // watch event), as kube-apiserver answers it.
        if next == current {
            return Ok(Deleted::Pending(current));
        }
        if dry_run {
            return Ok(Deleted::Pending(next));
        }
        if let Some(r) = api.cas(rt, &rt.key(ns, nm), Some(&next), rev, Vec::new()).await? {
            meta::set_resource_version(&mut next, r);
            if rt.id == Kind::Namespace {
                api.clone().spawn_namespace_cleanup(nm.to_string());
            }
            return Ok(Deleted::Pending(next));
        }
    }
}

async fn delete_collection(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_options(ctx, body)?;
    let rt = info.rt;
    let labels = LabelSelector::parse(ctx.q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(ctx.q.get("fieldSelector").map(String::as_str).unwrap_or(""), rt)?;
    let r = api.store.range_now(&RangeRequest::new(super::prefix_span(&rt.prefix(info.namespace.as_deref()))))?;
    let mut items = Vec::new();
    for kv in r.kvs {
        let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        let v = rt.from_storage(v);
        if !labels.matches(meta::labels(&v)) || !fields.matches(rt, &v) {
            continue;
        }
        match delete_one(api, rt, meta::namespace(&v), meta::name(&v), &opts, ctx.dry_run()).await {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => items.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": api.store.current_revision().to_string()}, "items": items});
    Ok(encode(StatusCode::OK, &list, ctx.output))
}

impl Api {
    /// Deletes everything in a terminating namespace, waits for finalizers, then removes the
    /// namespace itself.
    pub(crate) fn spawn_namespace_cleanup(self: Arc<Self>, ns: String) {
        tokio::spawn(async move {
            let opts = DeleteOptions { grace: Some(0), propagation: None, uid: None, rv: None };
            for round in 0u64.. {
                let mut left = 0usize;
                for rt in super::registry::RESOURCES.iter().filter(|r| r.namespaced && !r.is_virtual()) {
                    let r = match self.store.range_now(&RangeRequest::new(super::prefix_span(&rt.prefix(Some(&ns))))) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(namespace = %ns, error = %e, "namespace cleanup: listing failed");
                            left += 1;
                            continue;
                        }
                    };
                    for kv in r.kvs {
                        left += 1;
                        let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else { continue };
                        if let Err(e) = delete_one(&self, rt, Some(&ns), meta::name(&v), &opts, false).await
                            && e.code != 404
                        {
                            tracing::warn!(namespace = %ns, error = %e, "namespace cleanup: delete failed");
                        }
                    }
                }
                if left == 0 {
                    let nrt = by_kind(Kind::Namespace);
                    match self.try_read(nrt, None, &ns).await {
                        Ok(Some((v, rev))) => match self.remove(nrt, &v, rev).await {
                            Ok(Some(_)) => {
                                tracing::info!(namespace = %ns, "namespace deleted");
                                return;
                            }
                            Ok(None) => continue,
                            Err(e) => tracing::warn!(namespace = %ns, error = %e, "namespace cleanup: removing the namespace failed"),
                        },
                        Ok(None) => return,
                        Err(e) => tracing::warn!(namespace = %ns, error = %e, "namespace cleanup: reading the namespace failed"),
                    }
                }
                let wait = if round < 10 { 100 } else { 1000 };
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
        });
    }
}

/// The continue token: where a paged list resumes, at which revision.
fn encode_continue(rv: i64, start: &str) -> String {
    let t = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(t.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: the token does not decode");
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
    }
    let rv = v.get("rv").and_then(Value::as_i64).filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start.to_string()))
}

async fn list(api: &Arc<Api>, info: &RequestInfo, ctx: &Ctx<'_>) -> ApiResult<Response> {
    // Reading, decoding and encoding a large list is CPU work of many milliseconds: it runs on
    // the blocking pool so the runtime thread keeps answering everything else meanwhile.
    let (api, rt, ns, q, output) = (api.clone(), info.rt, info.namespace.clone(), ctx.q.clone(), ctx.output);
    tokio::task::spawn_blocking(move || list_blocking(&api, rt, ns.as_deref(), &q, output))
        .await
        .map_err(|e| ApiError::internal(format!("the list task failed: {e}")))?
}

/// Just the labels of a stored object.
#[derive(serde::Deserialize)]
struct LabelsOnly {
    #[serde(default)]
    metadata: LabelsOnlyMeta,
}

#[derive(serde::Deserialize, Default)]
struct LabelsOnlyMeta {
    #[serde(default)]
    labels: Option<serde_json::Map<String, Value>>,
}

fn list_blocking(api: &Api, rt: &'static ResourceType, namespace: Option<&str>, q: &Query, output: Output) -> ApiResult<Response> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""), rt)?;
    let limit: i64 = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("limit: invalid value {l}")))?,
        None => 0,
    };
    let prefix = rt.prefix(namespace);
    let (rev, start) = match q.get("continue").filter(|s| !s.is_empty()) {
        Some(c) => {
            let (rv, start) = decode_continue(c)?;
            (rv, format!("{prefix}{start}"))
        }
        None => {
            let rv = match q.get("resourceVersion").filter(|s| !s.is_empty() && *s != "0") {
                Some(s) => s
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\": must be an integer")))?,
                None => 0,
            };
            let current = api.store.current_revision();
            if rv > current {
                return Err(ApiError::new(504, "Timeout", format!("Too large resource version: {rv}, current: {current}")));
            }
            let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
            (if exact && rv > 0 { rv } else { current }, prefix.clone())
        }
    };
    let end = match super::prefix_span(&prefix) {
        KeySpan::Range { end, .. } => end,
        KeySpan::Single(_) => None,
    };
    let filtered = !labels.is_empty() || !fields.is_empty();
    let mut items = ListSink::new(output, q.get("includeObject").map(String::as_str).unwrap_or("Metadata"), rt);
    let mut next_start = Bytes::from(start);
    let mut more = false;
    let mut remaining: Option<i64> = None;
    loop {
        let chunk = if limit > 0 { (limit - items.len() as i64).max(1) + if filtered { 64 } else { 0 } } else { 0 };
        let mut req = RangeRequest::new(KeySpan::Range { start: next_start.clone(), end: end.clone() });
        req.revision = rev;
        req.limit = chunk;
        let r = api.store.range_now(&req).map_err(|e| match e {
            daas_store::StoreError::Compacted { .. } if !q.contains_key("continue") => {
                ApiError::gone("The resourceVersion for the provided list is too old.")
            }
            daas_store::StoreError::Compacted { .. } => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            other => other.into(),
        })?;
        let n = r.kvs.len();
        let chunk_last = r.kvs.last().map(|kv| kv.key.clone());
        let mut stopped_at: Option<Bytes> = None;
        for (i, kv) in r.kvs.into_iter().enumerate() {
            // Most objects of a selective list do not match: look at their labels alone first,
            // which skips over the rest of the JSON instead of building it.
            if !labels.is_empty()
                && let Ok(head) = serde_json::from_slice::<LabelsOnly>(&kv.value)
                && !labels.matches(head.metadata.labels.as_ref())
            {
                continue;
            }
            let v: Value =
                serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object does not decode: {e}")))?;
            let mut v = rt.from_storage(v);
            if filtered && (!labels.matches(meta::labels(&v)) || !fields.matches(rt, &v)) {
                continue;
            }
            meta::set_resource_version(&mut v, kv.mod_revision);
            items.push(v)?;
            if limit > 0 && items.len() as i64 >= limit {
                if i + 1 < n || r.more {
                    stopped_at = Some(kv.key.clone());
                    if !filtered {
                        remaining = Some(r.count - (i as i64 + 1));
                    }
                }
                break;
            }
        }
        if let Some(k) = stopped_at {
            let mut s = k.to_vec();
            s.push(0);
            next_start = Bytes::from(s);
            more = true;
            break;
        }
        if !r.more || limit == 0 {
            break;
        }
        // The chunk ran out before the page filled: continue after its last key.
        match chunk_last {
            Some(k) => {
                let mut s = k.to_vec();
                s.push(0);
                next_start = Bytes::from(s);
            }
            None => break,
        }
    }
    let cont = if more {
        let rel = String::from_utf8_lossy(&next_start[prefix.len()..]).into_owned();
        Some(encode_continue(rev, &rel))
    } else {
        None
    };
    let mut md = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        md["continue"] = json!(c);
        if let Some(r) = remaining.filter(|r| *r > 0 && output != Output::Table) {
            md["remainingItemCount"] = json!(r);
        }
    }
    Ok(items.finish(rt, md))
}

/// Where the items of a list go as they are read: each is turned into its output form at once
/// (JSON bytes, or a Table row), so a list of 10,000 pods never holds 10,000 decoded objects.
enum ListSink {
    /// Serialized items, comma-separated.
    Json {
        buf: Vec<u8>,
        n: usize,
    },
    Rows {
        rows: Vec<Value>,
        include: String,
        now: i64,
        rt: &'static ResourceType,
    },
    /// YAML is encoded from the whole list.
    Values(Vec<Value>),
}

impl ListSink {
    fn new(output: Output, include: &str, rt: &'static ResourceType) -> ListSink {
        match output {
            Output::Json => ListSink::Json { buf: Vec::with_capacity(64 * 1024), n: 0 },
            Output::Table => ListSink::Rows { rows: Vec::new(), include: include.to_string(), now: meta::now_secs(), rt },
            Output::Yaml => ListSink::Values(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            ListSink::Json { n, .. } => *n,
            ListSink::Rows { rows, .. } => rows.len(),
            ListSink::Values(v) => v.len(),
        }
    }

    fn push(&mut self, v: Value) -> ApiResult<()> {
        match self {
            ListSink::Json { buf, n } => {
                if *n > 0 {
                    buf.push(b',');
                }
                serde_json::to_writer(&mut *buf, &v).map_err(|e| ApiError::internal(format!("encoding a list item: {e}")))?;
                *n += 1;
            }
            ListSink::Rows { rows, include, now, rt } => rows.push(table::row(rt, &v, include, *now)),
            ListSink::Values(vs) => vs.push(v),
        }
        Ok(())
    }

    fn finish(self, rt: &ResourceType, md: Value) -> Response {
        let kind = format!("{}List", rt.kind);
        match self {
            ListSink::Json { buf, .. } => {
                let head = json!({"kind": kind, "apiVersion": rt.api_version(), "metadata": md});
                // `{"apiVersion":…,"kind":…,"metadata":{…}` + `,"items":[…]}`.
                let mut out = serde_json::to_vec(&head).unwrap_or_else(|_| b"{}".to_vec());
                out.pop();
                out.extend_from_slice(b",\"items\":[");
                out.extend_from_slice(&buf);
                out.extend_from_slice(b"]}");
                let mut r = Response::new(axum::body::Body::from(out));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            ListSink::Rows { rows, .. } => {
                let rv = md["resourceVersion"].as_str().unwrap_or("").to_string();
                let t = table::from_rows(rt, rows, &rv, md["continue"].as_str(), true);
                encode(StatusCode::OK, &t, Output::Json)
            }
            ListSink::Values(items) => {
                let list = json!({"kind": kind, "apiVersion": rt.api_version(), "metadata": md, "items": items});
                encode(StatusCode::OK, &list, Output::Yaml)
            }
        }
    }
}

/// SelfSubjectAccessReview and SelfSubjectReview: answered from the caller's identity.
fn review(info: &RequestInfo, ctx: &Ctx<'_>, body: &[u8]) -> ApiResult<Response> {
    let mut obj = decode_body(ctx.headers, body)?;
    let user = ctx.user;
    match info.rt.id {
        Kind::SelfSubjectReview => {
            obj["status"] = json!({"userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups}});
        }
        _ => {
            let ra = obj.pointer("/spec/resourceAttributes").cloned();
            let (allowed, reason) = match ra {
                Some(ra) => {
                    let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let (verb, group, resource, sub, ns, nm) =
                        (s("verb"), s("group"), s("resource"), s("subresource"), s("namespace"), s("name"));
                    let namespaced =
                        super::registry::RESOURCES.iter().find(|r| r.group == group && r.plural == resource).is_none_or(|r| r.namespaced);
                    let a = super::auth::Attributes {
                        verb: &verb,
                        group: &group,
                        resource: &resource,
                        subresource: (!sub.is_empty()).then_some(sub.as_str()),
                        namespace: (!ns.is_empty()).then_some(ns.as_str()),
                        name: (!nm.is_empty()).then_some(nm.as_str()),
                        namespaced,
                    };
                    match ctx.authz.check(user, &a) {
                        Ok(()) => (true, String::new()),
                        Err(why) => (false, why),
                    }
                }
                None => (true, String::new()),
            };
            let mut st = json!({"allowed": allowed});
            if !allowed {
                st["reason"] = json!(reason);
            }
            obj["status"] = st;
        }
    }
    obj["apiVersion"] = json!(info.rt.api_version());
    obj["kind"] = json!(info.rt.kind);
    Ok(encode(StatusCode::CREATED, &obj, ctx.output))
}
