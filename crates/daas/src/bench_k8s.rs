//! `daas bench k8s …`: load tools for any Kubernetes API server reachable with a kubeconfig
//! (ours, or kube-apiserver/k3s for comparison). Each mode is bounded in time and count and
//! stops by itself:
//! - `mixed`: clients creating, getting, listing, patching and deleting configmaps and pods at
//!   a fixed total rate (open loop: latency counts from when a request was due, so a stalled
//!   server cannot hide behind clients that stopped sending), plus a few watchers;
//! - `pods`: creates N pods, then times full lists (JSON, Table, and 500-item pages as kubectl
//!   reads them);
//! - `watch`: opens many watches, creates objects, and checks every watcher saw every event;
//! - `schedule`: hollow nodes and a large Deployment, timed until every pod is bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

#[derive(clap::Subcommand, Debug)]
pub enum K8sBench {
    /// Mixed create/get/list/patch/delete of configmaps and pods at a fixed rate
    Mixed(Mixed),
    /// Create N pods, then time full lists
    Pods(Pods),
    /// Many concurrent watches; checks every watcher receives every event
    Watch(Watch),
    /// N hollow (simulated) nodes and an R-replica Deployment: time until every pod is bound
    Schedule(crate::bench_sched::Schedule),
    /// N pods bound to one node: time from creation until its agent reports them Running
    Podstart(crate::bench_podstart::PodStart),
}

#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Kubeconfig of the server to load (its current context; client certificate or token)
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// HTTP/2 connections shared by the clients
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Namespace the load works in (created if missing)
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Mixed {
    #[command(flatten)]
    target: Target,
    /// Requests per second, all clients together
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of load
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Concurrent clients
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Watches open on the namespace's configmaps and pods during the load
    #[arg(long, default_value_t = 8)]
    watchers: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Pods {
    #[command(flatten)]
    target: Target,
    /// Pods in the namespace before the lists are timed (created as needed)
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Concurrent creating clients
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Timed repetitions of each list (0: only create)
    #[arg(long, default_value_t = 5)]
    lists: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Watch {
    #[command(flatten)]
    target: Target,
    /// Concurrent watches
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Objects created while they watch
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Objects created per second
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

pub async fn run(cmd: K8sBench) -> anyhow::Result<()> {
    match cmd {
        K8sBench::Mixed(m) => mixed(m).await,
        K8sBench::Pods(p) => pods(p).await,
        K8sBench::Watch(w) => watch(w).await,
        K8sBench::Schedule(s) => crate::bench_sched::run(s).await,
        K8sBench::Podstart(p) => crate::bench_podstart::run(p).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// The parts of a kubeconfig the load tool needs.
struct Kubeconfig {
    server: http::Uri,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl Kubeconfig {
    fn load(path: &std::path::Path) -> anyhow::Result<Kubeconfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value = serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
        let current = doc["current-context"].as_str().context("the kubeconfig has no current-context")?;
        let named = |list: &str, name: &str| -> anyhow::Result<Value> {
            doc[list]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"].as_str() == Some(name)))
                .cloned()
                .with_context(|| format!("the kubeconfig has no {list} entry named {name:?}"))
        };
        let ctx = named("contexts", current)?;
        let cluster = named("clusters", ctx["context"]["cluster"].as_str().unwrap_or(""))?;
        let user = named("users", ctx["context"]["user"].as_str().unwrap_or(""))?;
        let b64 = |v: &Value, what: &str| -> anyhow::Result<Option<Vec<u8>>> {
            v.as_str()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()).with_context(|| format!("{what} is not base64")))
                .transpose()
        };
        let server: http::Uri = cluster["cluster"]["server"].as_str().context("the cluster has no server")?.parse()?;
        if server.scheme_str() != Some("https") {
            bail!("server {server}: the load tool speaks HTTPS only");
        }
        let mut roots = rustls::RootCertStore::empty();
        let ca = b64(&cluster["cluster"]["certificate-authority-data"], "certificate-authority-data")?
            .context("the cluster has no certificate-authority-data")?;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.context("certificate-authority-data holds a bad certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots);
        let u = &user["user"];
        let mut tls = match (b64(&u["client-certificate-data"], "client-certificate-data")?, b64(&u["client-key-data"], "client-key-data")?)
        {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert).collect::<Result<Vec<_>, _>>().context("client certificate")?;
                let key = PrivateKeyDer::from_pem_slice(&key).context("client key")?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Kubeconfig { server, tls: Arc::new(tls), token: u["token"].as_str().map(str::to_string) })
    }
}

/// One HTTP/2 connection to the API server.
#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
    token: Option<Arc<str>>,
}

/// An answer: status code and body.
struct Reply {
    status: u16,
    body: Bytes,
}

impl Conn {
    async fn connect(kc: &Kubeconfig) -> anyhow::Result<Conn> {
        let authority = kc.server.authority().context("the server URL has no host:port")?.to_string();
        let host = kc.server.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
        let port = kc.server.port_u16().unwrap_or(443);
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .context("connect timed out")??;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(host.clone()).context("server name")?;
        let tls = tokio_rustls::TlsConnector::from(kc.tls.clone()).connect(name, tcp).await.context("TLS handshake")?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("the server did not agree to HTTP/2");
        }
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(4 << 20)
            .initial_connection_window_size(32 << 20)
            .handshake::<_, Bytes>(tls)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { send, authority, token: kc.token.as_deref().map(Arc::from) })
    }

    fn request(&self, method: &str, path: &str, content_type: Option<&str>, accept: &str) -> anyhow::Result<http::Request<()>> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("accept", accept)
            .header("user-agent", "daas-bench/k8s");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        Ok(req.body(())?)
    }

    /// One request and its whole reply.
    async fn call(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<Bytes>) -> anyhow::Result<Reply> {
        self.call_accept(method, path, content_type, body, "application/json").await
    }

    async fn call_accept(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Bytes>,
        accept: &str,
    ) -> anyhow::Result<Reply> {
        let req = self.request(method, path, content_type, accept)?;
        let mut send = self.send.clone().ready().await?;
        let (resp, mut stream) = send.send_request(req, body.is_none())?;
        if let Some(b) = body {
            stream.send_data(b, true)?;
        }
        let resp = resp.await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok(Reply { status, body: out.freeze() })
    }

    /// Opens a watch; the stream yields the raw chunks.
    async fn watch(&self, path: &str) -> anyhow::Result<h2::RecvStream> {
        let req = self.request("GET", path, None, "application/json")?;
        let mut send = self.send.clone().ready().await?;
        let (resp, _) = send.send_request(req, true)?;
        let resp = resp.await?;
        if resp.status() != 200 {
            bail!("watch {path}: HTTP {}", resp.status());
        }
        Ok(resp.into_body())
    }
}

async fn connect_all(t: &Target) -> anyhow::Result<Vec<Conn>> {
    let kc = Kubeconfig::load(&t.kubeconfig)?;
    let mut conns = Vec::new();
    for _ in 0..t.conns.max(1) {
        conns.push(Conn::connect(&kc).await?);
    }
    Ok(conns)
}

/// Creates the namespace unless it exists.
async fn ensure_namespace(c: &Conn, ns: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let r = c.call("POST", "/api/v1/namespaces", Some("application/json"), Some(Bytes::from(body.to_string()))).await?;
    match r.status {
        201 | 409 => Ok(()),
        s => bail!("creating namespace {ns}: HTTP {s}: {}", String::from_utf8_lossy(&r.body)),
    }
}

fn configmap(name: &str, i: u64) -> Bytes {
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": format!("s{}", i % 16)}},
        "data": {"value": format!("{i:0>200}"), "sent": now_micros().to_string()},
    });
    Bytes::from(body.to_string())
}

fn pod(name: &str, i: u64) -> Bytes {
    let body = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": format!("s{}", i % 16)}},
        "spec": {"containers": [{
            "name": "app", "image": "registry.k8s.io/pause:3.10",
            "command": ["python3", "-m", "http.server", "8080"],
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }]},
    });
    Bytes::from(body.to_string())
}

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to 10 minutes.
    #[allow(clippy::unwrap_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

fn summary(h: &Histogram<u64>, errors: u64) -> Value {
    json!({
        "count": h.len(), "errors": errors,
        "p50_ms": ms(h, 0.5), "p99_ms": ms(h, 0.99), "max_ms": ms(h, 1.0),
    })
}

fn print(json_out: bool, v: &Value) {
    if json_out {
        println!("{v}");
    } else {
        // Text: one "key: value" line per field, nested objects indented.
        fn walk(v: &Value, indent: usize) {
            if let Some(m) = v.as_object() {
                for (k, x) in m {
                    if x.is_object() {
                        println!("{:indent$}{k}:", "");
                        walk(x, indent + 2);
                    } else {
                        println!("{:indent$}{k}: {x}", "");
                    }
                }
            }
        }
        walk(v, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// mixed

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verb {
    Create,
    Get,
    List,
    Patch,
    Delete,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
    fn mutating(self) -> bool {
        matches!(self, Verb::Create | Verb::Patch | Verb::Delete)
    }
}

/// The request mix, repeated: of 20 requests, 9 reads by name, 2 lists (one page of 50 by label),
/// 4 creates, 3 patches and 2 deletes; every fourth round works on pods, the rest on configmaps.
const MIX: [Verb; 20] = {
    use Verb::*;
    [Get, Create, Get, Patch, Get, List, Get, Create, Delete, Get, Patch, Get, Create, Get, List, Get, Create, Patch, Delete, Get]
};

struct Stats {
    hist: BTreeMap<Verb, Histogram<u64>>,
    errors: BTreeMap<Verb, u64>,
    first_error: Option<String>,
}

impl Stats {
    fn new() -> Stats {
        Stats { hist: BTreeMap::new(), errors: BTreeMap::new(), first_error: None }
    }
    fn record(&mut self, verb: Verb, latency: Duration, ok: Result<(), String>) {
        let h = self.hist.entry(verb).or_insert_with(histogram);
        let _ = h.record((latency.as_micros() as u64).max(1));
        if let Err(e) = ok {
            *self.errors.entry(verb).or_default() += 1;
            self.first_error.get_or_insert(e);
        }
    }
}

async fn mixed(m: Mixed) -> anyhow::Result<()> {
    let conns = connect_all(&m.target).await?;
    let ns = m.target.namespace.clone();
    ensure_namespace(&conns[0], &ns).await?;
    let clients = m.clients.max(1);
    let rate = m.rate.max(1);
    let total = rate * m.duration;
    let deadline = Instant::now() + Duration::from_secs(m.target.timeout);

    // Watchers count what they see; they end with the run.
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut watchers = Vec::new();
    for w in 0..m.watchers {
        let c = conns[w % conns.len()].clone();
        let kind = if w % 2 == 0 { "configmaps" } else { "pods" };
        let path = format!("/api/v1/namespaces/{ns}/{kind}?watch=1&allowWatchBookmarks=true");
        let stream = c.watch(&path).await?;
        let (seen, stop) = (seen.clone(), stop.clone());
        watchers.push(tokio::spawn(async move {
            let mut stream = stream;
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    chunk = stream.data() => match chunk {
                        Some(Ok(b)) => {
                            let _ = stream.flow_control().release_capacity(b.len());
                            seen.fetch_add(b.iter().filter(|&&c| c == b'\n').count() as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    },
                }
            }
        }));
    }

    let start = Instant::now() + Duration::from_millis(200);
    let run_id = now_micros() % 1_000_000;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let c = conns[client % conns.len()].clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut mine: Vec<(bool, String)> = Vec::new(); // (is pod, name)
            let mut made = 0u64;
            let mut slot = client as u64;
            while slot < total && Instant::now() < deadline {
                let due = start + Duration::from_micros(slot * 1_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                let verb = MIX[(slot / clients as u64 % 20) as usize];
                // Every fourth round of the mix works on pods.
                let pods = (slot / clients as u64 / 20) % 4 == 3;
                let kind = if pods { "pods" } else { "configmaps" };
                let base = format!("/api/v1/namespaces/{ns}/{kind}");
                // Reads, patches and deletes need an object of this client's; create one first.
                let verb = if matches!(verb, Verb::Get | Verb::Patch | Verb::Delete) && !mine.iter().any(|(p, _)| *p == pods) {
                    Verb::Create
                } else {
                    verb
                };
                let pick =
                    |mine: &Vec<(bool, String)>| mine.iter().rev().find(|(p, _)| *p == pods).map(|(_, n)| n.clone()).unwrap_or_default();
                let res = match verb {
                    Verb::Create => {
                        let name = format!("b{run_id}-{client}-{made}");
                        made += 1;
                        let body = if pods { pod(&name, made) } else { configmap(&name, made) };
                        let r = c.call("POST", &base, Some("application/json"), Some(body)).await;
                        if matches!(&r, Ok(r) if r.status == 201) {
                            mine.push((pods, name));
                        }
                        r.map(|r| (r, 201))
                    }
                    Verb::Get => c.call("GET", &format!("{base}/{}", pick(&mine)), None, None).await.map(|r| (r, 200)),
                    Verb::List => c
                        .call("GET", &format!("{base}?labelSelector=app%3Dbench,shard%3Ds{}&limit=50", slot % 16), None, None)
                        .await
                        .map(|r| (r, 200)),
                    Verb::Patch => {
                        let body = json!({"metadata": {"annotations": {"bench/slot": slot.to_string()}}});
                        c.call(
                            "PATCH",
                            &format!("{base}/{}", pick(&mine)),
                            Some("application/merge-patch+json"),
                            Some(Bytes::from(body.to_string())),
                        )
                        .await
                        .map(|r| (r, 200))
                    }
                    Verb::Delete => {
                        let i = mine.iter().rposition(|(p, _)| *p == pods).unwrap_or(0);
                        let (_, name) = mine.remove(i);
                        // Pods are not bound to a node here, so they go at once.
                        c.call("DELETE", &format!("{base}/{name}"), None, None).await.map(|r| (r, 200))
                    }
                };
                let latency = due.elapsed();
                let ok = match res {
                    Ok((r, want)) if r.status == want => Ok(()),
                    Ok((r, _)) => Err(format!("{} {kind}: HTTP {}: {}", verb.name(), r.status, String::from_utf8_lossy(&r.body))),
                    Err(e) => Err(format!("{} {kind}: {e:#}", verb.name())),
                };
                stats.record(verb, latency, ok);
                slot += clients as u64;
            }
            stats
        }));
    }
    let mut all = Stats::new();
    for t in tasks {
        let s = t.await?;
        for (v, h) in s.hist {
            all.hist.entry(v).or_insert_with(histogram).add(&h)?;
        }
        for (v, e) in s.errors {
            *all.errors.entry(v).or_default() += e;
        }
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.notify_waiters();
    for w in watchers {
        let _ = w.await;
    }
    let mut mutating = histogram();
    let mut reads = histogram();
    let mut by_verb = serde_json::Map::new();
    let mut done = 0;
    for (v, h) in &all.hist {
        done += h.len();
        if v.mutating() {
            mutating.add(h)?
        } else {
            reads.add(h)?
        }
        by_verb.insert(v.name().into(), summary(h, all.errors.get(v).copied().unwrap_or(0)));
    }
    let errors: u64 = all.errors.values().sum();
    let get = all.hist.get(&Verb::Get).cloned().unwrap_or_else(histogram);
    let out = json!({
        "mode": "mixed", "target_rate": rate, "clients": clients, "conns": conns.len(), "watchers": m.watchers,
        "requests": done, "errors": errors, "req_per_s": done as f64 / elapsed,
        "mutating_p50_ms": ms(&mutating, 0.5), "mutating_p99_ms": ms(&mutating, 0.99),
        "get_p50_ms": ms(&get, 0.5), "get_p99_ms": ms(&get, 0.99),
        "read_p99_ms": ms(&reads, 0.99),
        "watch_events_seen": seen.load(Ordering::Relaxed),
        "by_verb": by_verb,
        "first_error": all.first_error,
    });
    print(m.target.json, &out);
    if errors > 0 && errors == done {
        bail!("every request failed");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// pods

async fn pods(p: Pods) -> anyhow::Result<()> {
    let conns = connect_all(&p.target).await?;
    let ns = p.target.namespace.clone();
    ensure_namespace(&conns[0], &ns).await?;
    let deadline = Instant::now() + Duration::from_secs(p.target.timeout);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..p.clients.max(1) {
        let (c, next, ns, count) = (conns[client % conns.len()].clone(), next.clone(), ns.clone(), p.count as u64);
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let r = c
                    .call("POST", &format!("/api/v1/namespaces/{ns}/pods"), Some("application/json"), Some(pod(&format!("pod-{i:05}"), i)))
                    .await;
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                match r {
                    Ok(r) if r.status == 201 || r.status == 409 => {}
                    Ok(r) => {
                        errors += 1;
                        first_error.get_or_insert(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                    }
                }
            }
            (h, errors, first_error)
        }));
    }
    let mut create = histogram();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (h, e, f) = t.await?;
        create.add(&h)?;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let create_s = started.elapsed().as_secs_f64();

    if p.lists == 0 {
        let out = json!({
            "mode": "pods", "created": p.count as u64 - errors, "created_in_s": create_s, "create_errors": errors,
            "create_p50_ms": ms(&create, 0.5), "create_p99_ms": ms(&create, 0.99), "first_error": first_error,
        });
        print(p.target.json, &out);
        return Ok(());
    }
    let c = &conns[0];
    let base = format!("/api/v1/namespaces/{ns}/pods");
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let mut full = Vec::new();
    let mut as_table = Vec::new();
    let mut paged = Vec::new();
    let mut items = 0;
    let mut bytes = 0;
    for _ in 0..p.lists {
        let t = Instant::now();
        let r = c.call("GET", &base, None, None).await?;
        full.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.status != 200 {
            bail!("list: HTTP {}", r.status);
        }
        bytes = r.body.len();
        let v: Value = serde_json::from_slice(&r.body)?;
        items = v["items"].as_array().map_or(0, Vec::len);

        let t = Instant::now();
        let r = c.call_accept("GET", &base, None, None, table).await?;
        as_table.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.status != 200 {
            bail!("table list: HTTP {}", r.status);
        }

        // As kubectl get reads: Table pages of 500.
        let t = Instant::now();
        let mut cont = String::new();
        let mut paged_items = 0;
        loop {
            let r = c.call_accept("GET", &format!("{base}?limit=500&continue={cont}"), None, None, table).await?;
            if r.status != 200 {
                bail!("paged list: HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
            }
            let v: Value = serde_json::from_slice(&r.body)?;
            paged_items += v["rows"].as_array().map_or(0, Vec::len);
            match v["metadata"]["continue"].as_str().filter(|s| !s.is_empty()) {
                Some(next) => cont = next.to_string(),
                None => break,
            }
        }
        paged.push(t.elapsed().as_secs_f64() * 1000.0);
        if paged_items != items {
            bail!("paged list saw {paged_items} pods, the full list {items}");
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let out = json!({
        "mode": "pods", "pods": items, "created_in_s": create_s, "create_errors": errors,
        "create_p50_ms": ms(&create, 0.5), "create_p99_ms": ms(&create, 0.99),
        "list_json_ms": median(&mut full), "list_json_bytes": bytes,
        "list_table_ms": median(&mut as_table), "list_paged_500_ms": median(&mut paged),
        "first_error": first_error,
    });
    print(p.target.json, &out);
    if items < p.count {
        bail!("the namespace holds {items} pods, fewer than {}", p.count);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// watch

async fn watch(w: Watch) -> anyhow::Result<()> {
    let conns = connect_all(&w.target).await?;
    let ns = w.target.namespace.clone();
    ensure_namespace(&conns[0], &ns).await?;
    let deadline = Instant::now() + Duration::from_secs(w.target.timeout);
    let label = format!("w{}", now_micros() % 1_000_000);
    // Start every watch from the current revision, so each sees exactly the new objects.
    let r = conns[0].call("GET", &format!("/api/v1/namespaces/{ns}/configmaps?limit=1"), None, None).await?;
    let list: Value = serde_json::from_slice(&r.body)?;
    let rv = list["metadata"]["resourceVersion"].as_str().context("list without resourceVersion")?.to_string();

    let opened = Instant::now();
    let mut streams = Vec::new();
    for i in 0..w.watchers {
        let path = format!("/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&labelSelector=run%3D{label}");
        streams.push(conns[i % conns.len()].watch(&path).await.with_context(|| format!("opening watch {i}"))?);
    }
    let open_s = opened.elapsed().as_secs_f64();
    let events = w.events;
    let mut tasks = Vec::new();
    for mut s in streams {
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut buf = Vec::new();
            let mut added = 0usize;
            while added < events && Instant::now() < deadline {
                let chunk = match tokio::time::timeout_at(deadline.into(), s.data()).await {
                    Ok(Some(Ok(c))) => c,
                    _ => break,
                };
                let _ = s.flow_control().release_capacity(chunk.len());
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let Ok(ev) = serde_json::from_slice::<Value>(&line) else { continue };
                    if ev["type"] == "ADDED" {
                        added += 1;
                        if let Some(sent) = ev["object"]["data"]["sent"].as_str().and_then(|s| s.parse::<u128>().ok()) {
                            let _ = h.record((now_micros().saturating_sub(sent) as u64).max(1));
                        }
                    }
                }
            }
            (added, h)
        }));
    }
    let rate = w.rate.max(1);
    let start = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until((start + Duration::from_micros(i as u64 * 1_000_000 / rate)).into()).await;
        let name = format!("{label}-{i}");
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"run": label}},
            "data": {"sent": now_micros().to_string()},
        });
        let r = conns[0]
            .call("POST", &format!("/api/v1/namespaces/{ns}/configmaps"), Some("application/json"), Some(Bytes::from(body.to_string())))
            .await?;
        if r.status != 201 {
            bail!("create: HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
    let mut complete = 0;
    let mut least = usize::MAX;
    let mut delivery = histogram();
    for t in tasks {
        let (added, h) = t.await?;
        if added == events {
            complete += 1;
        }
        least = least.min(added);
        delivery.add(&h)?;
    }
    let out = json!({
        "mode": "watch", "watchers": w.watchers, "conns": conns.len(), "events": events,
        "opened_in_s": open_s,
        "watchers_with_every_event": complete, "fewest_events_seen": if least == usize::MAX { 0 } else { least },
        "delivery_p50_ms": ms(&delivery, 0.5), "delivery_p99_ms": ms(&delivery, 0.99), "delivery_max_ms": ms(&delivery, 1.0),
    });
    print(w.target.json, &out);
    if complete < w.watchers {
        bail!("{} of {} watchers missed events", w.watchers - complete, w.watchers);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_as_documented() {
        let mutating = MIX.iter().filter(|v| v.mutating()).count();
        assert_eq!(mutating, 9);
        assert_eq!(MIX.iter().filter(|v| **v == Verb::Get).count(), 9);
    }

    #[test]
    fn generated_objects_are_valid_json() {
        let p: Value = serde_json::from_slice(&pod("p", 3)).unwrap();
        assert_eq!(p["metadata"]["labels"]["shard"], "s3");
        let c: Value = serde_json::from_slice(&configmap("c", 17)).unwrap();
        assert_eq!(c["data"]["value"].as_str().unwrap().len(), 200);
    }
}
