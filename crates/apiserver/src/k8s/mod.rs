//! The Kubernetes API, served natively over the sealed store: discovery, CRUD on every row of
//! [`registry::RESOURCES`], list/watch, patches, tables, authentication and authorization.
//! Objects are JSON under `/registry/...` keys like kube-apiserver's; `resourceVersion` is the
//! store revision. Start with [`Api::handle`].

pub mod auth;
pub mod convert;
mod crud;
pub mod discovery;
pub mod managed;
pub mod meta;
pub mod metrics;
pub mod openapi;
mod openapi_pb;
pub mod patch;
mod podio;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod selector;
pub mod status;
pub mod strategy;
pub mod table;
mod watch;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use daas_store::Store;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use auth::{Authenticator, Authorizer, PeerCerts, User};
use request::Output;
use status::ApiError;

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Settings of the Kubernetes API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Service ClusterIPs come from here (`--service-cidr`, IPv4).
    pub service_cidr: (Ipv4Addr, u8),
    /// Most requests served at once (watches excepted); more get 429.
    pub max_in_flight: usize,
    /// How often an idle watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Events buffered per watch before a slow watcher is ended (it relists).
    pub watch_buffer: usize,
    /// tolerationSeconds that pods get for node.kubernetes.io/not-ready and /unreachable
    /// (kube-apiserver's `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`).
    pub default_tolerations: (i64, i64),
    /// How long an Event lives after its last write (kube-apiserver's `--event-ttl`): events
    /// are stored under a store lease that expires them.
    pub event_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            max_in_flight: 400,
            bookmark_interval: Duration::from_secs(30),
            watch_buffer: 1024,
            default_tolerations: (300, 300),
            event_ttl: Duration::from_secs(3600),
        }
    }
}

/// Parses `10.43.0.0/16`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, bits) = s.split_once('/').ok_or_else(|| format!("{s}: expected an IPv4 CIDR like 10.43.0.0/16"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s}: {ip} is not an IPv4 address"))?;
    let bits: u8 = bits.parse().map_err(|_| format!("{s}: bad prefix length"))?;
    if !(8..=30).contains(&bits) {
        return Err(format!("{s}: prefix length must be between 8 and 30"));
    }
    let mask = u32::MAX << (32 - bits);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// The Kubernetes API state shared by every request.
pub struct Api {
    pub store: Store,
    pub authn: Authenticator,
    pub authz: Authorizer,
    pub config: ApiConfig,
    inflight: Arc<Semaphore>,
    audit: Option<parking_lot::Mutex<std::fs::File>>,
    kubeconfigs: Option<KubeconfigSource>,
    enabled: bool,
    pub metrics: metrics::Metrics,
    seal: Option<Arc<crate::seal::Seal>>,
    /// The agents' reverse tunnels, which serve `pods/log` and `pods/exec`.
    pub tunnels: Arc<crate::tunnel::Tunnels>,
    /// The lease Events are written under, and when it was granted (see `event_lease`).
    event_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
}

/// What `/kubectl/config` needs to issue kubeconfigs.
#[derive(Debug, Clone)]
pub struct KubeconfigSource {
    pub pki: Arc<crate::Pki>,
    /// The URL clients reach this server at.
    pub server: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("config", &self.config).finish_non_exhaustive()
    }
}

const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

impl Api {
    pub fn new(store: Store, authn: Authenticator, authz: Authorizer, config: ApiConfig) -> Self {
        let inflight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Api {
            store,
            authn,
            authz,
            config,
            inflight,
            audit: None,
            kubeconfigs: None,
            enabled: true,
            metrics: Default::default(),
            seal: None,
            tunnels: Default::default(),
            event_lease: tokio::sync::Mutex::new(None),
        }
    }

    /// The store lease for an Event written now. As kube-apiserver does, one lease serves
    /// every event written within a reuse window (a tenth of the TTL, at most a minute) and
    /// lives the TTL plus that window, so each event lives at least the TTL after its last
    /// write and the store holds few leases.
    /// Drops the cached event lease (the store no longer has it).
    pub(crate) async fn forget_event_lease(&self) {
        *self.event_lease.lock().await = None;
    }

    pub(crate) async fn event_lease(&self) -> Result<i64, ApiError> {
        let ttl = self.config.event_ttl;
        let reuse = (ttl / 10).min(Duration::from_secs(60));
        let mut current = self.event_lease.lock().await;
        if let Some((id, granted)) = *current
            && granted.elapsed() < reuse
        {
            return Ok(id);
        }
        let secs = i64::try_from(ttl.saturating_add(reuse).as_secs_f64().ceil() as u64).unwrap_or(i64::MAX).max(1);
        let grant = self.store.lease_grant(0, secs).await?;
        *current = Some((grant.id, std::time::Instant::now()));
        Ok(grant.id)
    }

    /// Appends one JSON line per mutating request to `path`.
    pub fn with_audit_log(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        self.audit = Some(parking_lot::Mutex::new(f));
        Ok(self)
    }

    /// Serves the stake endpoints (challenge, register-worker) with `seal`.
    pub fn with_seal(mut self, seal: Arc<crate::seal::Seal>) -> Self {
        self.seal = Some(seal);
        self
    }

    /// Turns the Kubernetes API off (a bare etcd-compatible store): every Kubernetes path
    /// answers 404.
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    /// Lets `/kubectl/config` issue kubeconfigs signed by `source.pki`.
    pub fn with_kubeconfigs(mut self, source: KubeconfigSource) -> Self {
        self.kubeconfigs = Some(source);
        self
    }

    /// `GET /kubectl/config`: a kubeconfig for the caller: its own token, or a fresh client
    /// certificate for the same identity (CN and groups), valid for a year.
    fn kubeconfig_for(&self, user: &User) -> Response {
        let Some(src) = &self.kubeconfigs else {
            return ApiError::unavailable("this server does not issue kubeconfigs").into_response();
        };
        let creds = match &user.token {
            Some(t) => crate::pki::Credentials::Token(t.clone()),
            None => {
                let groups: Vec<String> = user.groups.iter().filter(|g| *g != "system:authenticated").cloned().collect();
                match src.pki.client_certificate(&user.name, &groups, 365) {
                    Ok((cert_pem, key_pem)) => crate::pki::Credentials::ClientCertificate { cert_pem, key_pem },
                    Err(e) => return ApiError::internal(e.to_string()).into_response(),
                }
            }
        };
        let text = crate::pki::kubeconfig(&src.server, &src.pki.ca_pem(), "k3s-daas", &user.name, &creds);
        let mut r = (StatusCode::OK, text).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        r
    }

    /// Creates what a cluster has from its first start: the four system namespaces and the
    /// `default/kubernetes` service. Idempotent.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), ApiError> {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create_object(registry::by_kind(registry::Kind::Namespace), None, obj).await {
                Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        let first = Ipv4Addr::from(u32::from(self.config.service_cidr.0) + 1).to_string();
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": first, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
        match self.create_object(registry::by_kind(registry::Kind::Service), Some("default"), svc).await {
            Ok(_) | Err(ApiError { reason: "AlreadyExists", .. }) => {}
            Err(e) => return Err(e),
        }
        // Namespaces whose deletion was under way when the server stopped.
        let nss =
            self.store.range_now(&daas_store::RangeRequest::new(prefix_span(registry::by_kind(registry::Kind::Namespace).storage)))?;
        for kv in nss.kvs {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value)
                && meta::is_deleting(&v)
            {
                self.clone().spawn_namespace_cleanup(meta::name(&v).to_string());
            }
        }
        Ok(())
    }

    /// Compacts the store's history every `every`, up to the revision current one interval
    /// earlier: watches and paged lists can resume from anything younger than that, older
    /// ones get 410 Gone and relist (kube-apiserver's scheme, with its 5-minute default).
    pub fn spawn_compactor(self: Arc<Self>, every: std::time::Duration) {
        tokio::spawn(async move {
            let mut previous = None;
            loop {
                tokio::time::sleep(every).await;
                if let Some(rev) = previous
                    && rev > self.store.compact_revision()
                {
                    match self.store.compact(rev).await {
                        Ok(_) => tracing::info!(revision = rev, "compacted the store's history"),
                        Err(e) => tracing::warn!(revision = rev, error = %e, "compacting the store's history failed"),
                    }
                }
                previous = Some(self.store.current_revision());
            }
        });
    }

    /// Serves one request of the Kubernetes API (and the health/version endpoints).
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        let started = std::time::Instant::now();
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let q = request::parse_query(parts.uri.query());
        if PUBLIC_PATHS.iter().any(|p| path == *p || path.starts_with(&format!("{p}/"))) {
            return public(&path);
        }
        // Stake endpoints: their callers have no credentials yet; the signature and the stake are
        // the proof.
        if let Some(seal) = &self.seal {
            match (parts.method.as_str(), path.as_str()) {
                ("GET", "/api/v1/challenge") => return seal.challenge(q.get("purpose").map(String::as_str)),
                ("POST", "/api/v1/register-worker") => {
                    return match axum::body::to_bytes(body, 64 * 1024).await {
                        Ok(b) => seal.register_worker(&self.store, &b).await,
                        Err(_) => ApiError::too_large("the request body exceeds 64 KiB").into_response(),
                    };
                }
                ("POST", "/api/v1/login") => {
                    return match axum::body::to_bytes(body, 64 * 1024).await {
                        Ok(b) => seal.login(&self.store, &b).await,
                        Err(_) => ApiError::too_large("the request body exceeds 64 KiB").into_response(),
                    };
                }
                // Only a hint to read the chain now: nothing in the request is used, so it
                // needs no credentials.
                ("POST", "/api/v1/sui-events") => {
                    seal.wake.notify_one();
                    return json_response(
                        StatusCode::ACCEPTED,
                        &json!({"status": "polling", "message": format!("the master reads events from {} itself; this request carried nothing it uses", seal.chain_name)}),
                    );
                }
                _ => {}
            }
        }
        if !self.enabled {
            return ApiError::new(404, "NotFound", "the Kubernetes API is disabled on this server (--disable-kubernetes-api)")
                .into_response();
        }
        // In-process callers (the controllers) carry their identity as a request extension,
        // which nothing arriving over the network can set.
        let user = match parts.extensions.get::<InternalUser>() {
            Some(InternalUser(u)) => u.clone(),
            None => match self.authn.authenticate_headers(parts.extensions.get::<PeerCerts>(), &parts.headers) {
                Ok(Some(u)) => u,
                Ok(None) => {
                    drain(body).await;
                    return ApiError::unauthorized().into_response();
                }
                Err(e) => {
                    drain(body).await;
                    return e.into_response();
                }
            },
        };
        // An agent's reverse tunnel (see `crate::tunnel`): only that node may open it.
        if let Some(node) = path.strip_prefix("/api/v1/nodes/").and_then(|rest| rest.strip_suffix("/tunnel"))
            && !node.is_empty()
            && !node.contains('/')
        {
            // A seal token is checked again for as long as the tunnel lives: revocation (unstake,
            // slash) ends the tunnel. Its expiry does not: the agent refreshes its token, and a
            // connection, once authenticated, does not expire (`kubectl logs -f` goes on).
            let valid: Option<crate::tunnel::Validity> = match (&user.token, self.authn.seal_verifier()) {
                (Some(token), Some(verifier)) if user.method == "seal" => {
                    let token = token.clone();
                    Some(Arc::new(
                        move || {
                            if verifier.is_revoked(&token) { Err(daas_chain::TokenError::Revoked.to_string()) } else { Ok(()) }
                        },
                    ))
                }
                _ => None,
            };
            return self.tunnels.clone().open(&user, node, &mut parts, valid).await;
        }
        if let Some(seal) = &self.seal {
            if parts.method == axum::http::Method::POST && path == "/api/v1/nodes/heartbeat" {
                return match (&user.token, user.method) {
                    (Some(token), "seal") => seal.heartbeat(token).await,
                    _ => ApiError::forbidden(format!(
                        "forbidden: User \"{}\" cannot send heartbeats: they come from workers, with the seal token register-worker issued",
                        user.name
                    ))
                    .into_response(),
                };
            }
            if parts.method == axum::http::Method::GET
                && let Some(rest) = path.strip_prefix("/api/v1/chain-requests/")
            {
                return crate::chain::chain_request(&self.store, &seal.keys, &user, rest);
            }
        }
        match path.as_str() {
            "/kubectl/config" => return self.kubeconfig_for(&user),
            "/metrics" => {
                if !(user.is_admin() || user.tier() == Some(auth::Tier::Admin)) {
                    return ApiError::new(
                        403,
                        "Forbidden",
                        format!("forbidden: User \"{}\" cannot get path \"/metrics\": only admins read metrics", user.name),
                    )
                    .into_response();
                }
                let mut text = self.metrics.render(self.store.current_revision());
                if let Some(seal) = &self.seal {
                    seal.metrics.render(&mut text);
                }
                let mut r = Response::new(axum::body::Body::from(text));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                return r;
            }
            "/openapi/v2" => {
                return match openapi::swagger(&parts.headers) {
                    Ok(d) => {
                        let mut r = bytes_response(d.body);
                        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(d.content_type));
                        r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                        r
                    }
                    Err(e) => e.into_response(),
                };
            }
            "/openapi/v3" => return bytes_response(openapi::index()),
            p if p.starts_with("/openapi/v3/") => {
                return match openapi::group_version(&p["/openapi/v3/".len()..]) {
                    Some(d) => bytes_response(d),
                    None => ApiError::path_not_found().into_response(),
                };
            }
            "/kubectl/health" => {
                let rev = self.store.current_revision();
                return json_response(
                    StatusCode::OK,
                    &json!({"status": "healthy", "kubernetes_api": "native", "version": discovery::version()["gitVersion"], "store_revision": rev, "user": user.name}),
                );
            }
            _ => {}
        }
        self.serve_resource(user, parts, body, &path, &q, started).await
    }

    /// Executes a request of the resource API as `user`, who is already authenticated: the
    /// chain follower runs on-chain requests through here, under the same authorization,
    /// admission and audit as any other caller. The body must be complete (no watches).
    pub(crate) async fn execute_as(
        self: &Arc<Self>,
        user: User,
        method: &str,
        uri: &str,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Response {
        let req =
            match axum::http::Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, content_type).body(Body::empty()) {
                Ok(r) => r,
                Err(e) => return ApiError::bad_request(format!("not a valid request: {e}")).into_response(),
            };
        let (parts, _) = req.into_parts();
        let path = parts.uri.path().to_string();
        let q = request::parse_query(parts.uri.query());
        self.clone().serve_resource(user, parts, Body::from(body), &path, &q, std::time::Instant::now()).await
    }

    async fn serve_resource(
        self: Arc<Self>,
        user: User,
        parts: axum::http::request::Parts,
        body: Body,
        path: &str,
        q: &request::Query,
        started: std::time::Instant,
    ) -> Response {
        let mut info = match request::parse(&parts.method, path, q) {
            Ok(Some(i)) => i,
            Ok(None) => return discovery_response(path, &parts.headers),
            Err(e) => return e.into_response(),
        };
        // As kube-apiserver: exec is `create pods/exec` whatever the method (a WebSocket
        // upgrade is a GET), so read-only callers cannot run commands.
        if info.sub == Some(registry::Sub::Exec) {
            info.verb = "create";
        }
        let attrs = auth::Attributes::of(&info);
        if let Err(why) = self.authz.check(&user, &attrs) {
            let e = auth::forbidden(&user, &attrs, &why);
            self.audit(&user, &info, e.code);
            drain(body).await;
            return e.into_response();
        }
        let labels = metrics::Labels {
            verb: info.verb,
            group: info.rt.group,
            version: info.rt.version,
            resource: info.rt.plural,
            subresource: info.sub.map(|s| s.name()).unwrap_or(""),
            namespaced: info.namespace.is_some(),
        };
        // Logs and exec are relayed to the node's agent. Long-running, like watches, they hold
        // no in-flight permit; their bodies are plain text or a WebSocket, not negotiated.
        if matches!(info.sub, Some(registry::Sub::Log | registry::Sub::Exec)) {
            let r = podio::serve(&self, &info, parts, q).await;
            if info.sub == Some(registry::Sub::Exec) {
                self.audit(&user, &info, r.status().as_u16());
            }
            self.metrics.record(labels, r.status().as_u16(), started.elapsed());
            return r;
        }
        let output = match request::negotiate(&parts.headers) {
            Ok(o) => o,
            Err(e) => return e.into_response(),
        };
        if info.verb == "watch" {
            let r = watch::watch(self.clone(), info, q.clone(), output).await.unwrap_or_else(IntoResponse::into_response);
            self.metrics.record(labels, r.status().as_u16(), started.elapsed());
            return r;
        }
        let Ok(_permit) = self.inflight.clone().try_acquire_owned() else {
            self.metrics.dropped();
            self.metrics.record(labels, 429, started.elapsed());
            return ApiError::too_many_requests("Too many requests, please try again later.", 1).into_response();
        };
        let _inflight = self.metrics.inflight();
        let body = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => return ApiError::too_large("the request body exceeds the 3 MiB limit").into_response(),
        };
        let ctx =
            crud::Ctx { user: &user, authz: &self.authz, q, headers: &parts.headers, output, tolerations: self.config.default_tolerations };
        let result = crud::dispatch(&self, &info, &ctx, body).await;
        let code = match &result {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.code,
        };
        if !matches!(info.verb, "get" | "list") {
            self.audit(&user, &info, code);
        }
        self.metrics.record(labels, code, started.elapsed());
        result.unwrap_or_else(IntoResponse::into_response)
    }

    fn audit(&self, user: &User, info: &request::RequestInfo, code: u16) {
        let Some(f) = &self.audit else { return };
        let line = json!({
            "ts": meta::now_rfc3339(),
            "user": user.name,
            "groups": user.groups,
            "auth": user.method,
            "verb": info.verb,
            "group": info.rt.group,
            "resource": info.resource_path(),
            "namespace": info.namespace,
            "name": info.name,
            "code": code,
            "result": if code < 400 { "allowed" } else { "failed" },
        });
        use std::io::Write as _;
        let mut f = f.lock();
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
}

/// Reads and drops a request body the answer does not need (bounded in size and time): over
/// HTTP/2, answering while the client is still sending makes the server reset the stream,
/// and some clients (curl) report that reset instead of the answer.
async fn drain(body: Body) {
    let _ = tokio::time::timeout(Duration::from_millis(500), axum::body::to_bytes(body, 1 << 20)).await;
}

/// The identity of an in-process caller, set as a request extension by the in-process client
/// (`daas` wires the controllers' kube client to [`Api::handle`] directly).
#[derive(Debug, Clone)]
pub struct InternalUser(pub User);

/// Store writes that ride with a request's first successful write, in the same store
/// transaction: the chain follower's cursor and outcome record travel with the effect of an
/// on-chain request, so the effect and "this event is done" commit together or not at all.
#[derive(Debug)]
pub(crate) struct Rider {
    ops: Vec<daas_store::RequestOp>,
    /// The revision of the write the ops rode with, once they did.
    landed: parking_lot::Mutex<Option<i64>>,
}

impl Rider {
    pub(crate) fn new(ops: Vec<daas_store::RequestOp>) -> Arc<Rider> {
        Arc::new(Rider { ops, landed: parking_lot::Mutex::new(None) })
    }

    pub(crate) fn landed(&self) -> Option<i64> {
        *self.landed.lock()
    }

    /// The ops to add to a write, if they have not landed yet.
    pub(crate) fn pending() -> Option<(Arc<Rider>, Vec<daas_store::RequestOp>)> {
        RIDER.try_with(|r| r.clone()).ok().filter(|r| r.landed().is_none()).map(|r| {
            let ops = r.ops.clone();
            (r, ops)
        })
    }

    pub(crate) fn land(&self, revision: i64) {
        *self.landed.lock() = Some(revision);
    }
}

tokio::task_local! {
    pub(crate) static RIDER: Arc<Rider>;
}

/// The store span of every key under `prefix`.
pub(crate) fn prefix_span(prefix: &str) -> daas_store::KeySpan {
    let start = bytes::Bytes::copy_from_slice(prefix.as_bytes());
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    daas_store::KeySpan::Range { start, end: Some(bytes::Bytes::from(end)) }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn bytes_response(b: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, b).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn public(path: &str) -> Response {
    if path == "/version" {
        return json_response(StatusCode::OK, &discovery::version());
    }
    let mut r = (StatusCode::OK, "ok").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn discovery_response(path: &str, headers: &axum::http::HeaderMap) -> Response {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let agg = request::wants_aggregated(headers);
    let v = match (parts.as_slice(), agg) {
        (["api"], Some(dv)) | (["apis"], Some(dv)) => {
            let mut r = json_response(StatusCode::OK, &discovery::aggregated(parts[0] == "api", dv));
            let ct = format!("application/json;g=apidiscovery.k8s.io;v={dv};as=APIGroupDiscoveryList");
            if let Ok(h) = HeaderValue::from_str(&ct) {
                r.headers_mut().insert(header::CONTENT_TYPE, h);
            }
            return r;
        }
        (["api"], None) => Some(discovery::api_versions()),
        (["apis"], None) => Some(discovery::group_list()),
        (["api", v], _) => discovery::resource_list("", v),
        (["apis", g], _) => discovery::group(g),
        (["apis", g, v], _) => discovery::resource_list(g, v),
        _ => None,
    };
    match v {
        Some(v) => json_response(StatusCode::OK, &v),
        None => ApiError::path_not_found().into_response(),
    }
}

/// Encodes `v` as the client asked (JSON or YAML; tables are built by the caller).
pub(crate) fn encode(code: StatusCode, v: &Value, output: Output) -> Response {
    if output == Output::Yaml
        && let Ok(text) = serde_saphyr::to_string(v)
    {
        let mut r = (code, text).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        return r;
    }
    json_response(code, v)
}

/// axum entry point.
pub async fn handler(State(api): State<Arc<Api>>, req: Request<Body>) -> Response {
    api.handle(req).await
}
