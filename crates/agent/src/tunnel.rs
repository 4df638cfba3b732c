//! The agent's end of the reverse tunnel: the agent dials the master (which may not be able
//! to dial out of its enclave), keeps one WebSocket open, and serves `kubectl logs` and
//! `kubectl exec` requests that arrive over it through a [`PodIo`]. Start with [`run`].
//!
//! The wire format is documented once, in the master's module (`daas_apiserver::tunnel`,
//! "Wire format (version 1)"); this module is a second, independent implementation of it,
//! and `tests/tunnel.rs` drives the two against each other. In short: text messages carry
//! JSON control from master to agent (`logs`, `exec`, `ack`, `cancel`, each with an `id`);
//! binary messages carry `[id: u64 BE][channel: u8][payload]` both ways (0 stdin, 1 stdout or
//! log bytes, 2 stderr, 3 the JSON end of a request); the agent keeps at most [`WINDOW`]
//! unacknowledged output bytes in flight per request.
//!
//! **Invariant:** the agent talks only to the master it attested: TLS is pinned to the CA
//! from the verified attestation report, with no other roots, and the agent authenticates
//! itself with its seal token.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Message};

const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_END: u8 = 3;
const HEADER_LEN: usize = 9;
/// Largest payload of one data frame.
pub const MAX_PAYLOAD: usize = 32 * 1024;
/// Output bytes in flight per request before the master must acknowledge.
pub const WINDOW: u32 = 1024 * 1024;
/// A connection on which nothing arrived for this long is given up (the master pings every
/// 20 s).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Largest stdin an exec may carry (the master enforces the same bound).
pub const MAX_STDIN: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long starts the next back-off from the beginning.
const STABLE: Duration = Duration::from_secs(60);

/// What `kubectl logs` asks for (kube's `PodLogOptions`, validated by the master).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    /// The container; the master has already defaulted and checked it.
    pub container: Option<String>,
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub previous: bool,
    #[serde(default)]
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// A finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Why the node could not serve a request; the master turns it into the matching
/// Kubernetes Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// No such pod or container on this node (404).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served as asked (400): a container still waiting to start, no
    /// previous instance for `--previous`, an unusable option.
    #[error("{0}")]
    BadRequest(String),
    /// Anything else that went wrong on the node (500).
    #[error("{0}")]
    Internal(String),
}

impl TunnelError {
    fn failure(&self) -> Failure {
        let (code, reason) = match self {
            TunnelError::NotFound(_) => (404, "NotFound"),
            TunnelError::BadRequest(_) => (400, "BadRequest"),
            TunnelError::Internal(_) => (500, "InternalError"),
        };
        Failure { code, reason: reason.to_string(), message: self.to_string() }
    }
}

/// A container's log as it is read: chunks of bytes, or why reading stopped.
pub type LogLines = BoxStream<'static, Result<Bytes, String>>;

/// What the tunnel needs from the pod runtime.
pub trait PodIo: Send + Sync {
    /// Opens a container's log. With `follow`, the stream stays open for new output until
    /// dropped (the tunnel drops it when the client goes away).
    fn logs(&self, namespace: &str, pod: &str, query: LogQuery) -> BoxFuture<'_, Result<LogLines, TunnelError>>;

    /// Runs `command` in a container without a terminal, feeding it `stdin` if given, and
    /// returns its whole output and exit code.
    fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<ExecResult, TunnelError>>;
}

/// Why a tunnel connection could not be made or ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("bad master URL: {0}")]
    Url(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {addr}: {message}")]
    Tls { addr: String, message: String },
    #[error("the master refused the tunnel: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("the master sent nothing for 60 s")]
    Silent,
}

/// Keeps the tunnel to `server` (`https://host:port`) open until `stop` turns true:
/// connects with TLS pinned to `ca_der` (the attested cluster CA), authenticates with a fresh
/// `token()` (the seal token) on every attempt, serves requests with `io`, and reconnects
/// after failures with a back-off of 1 s doubling to 30 s, with jitter.
pub async fn run(
    server: &str,
    ca_der: &[u8],
    node: &str,
    token: impl Fn() -> String + Send + Sync,
    io: Arc<dyn PodIo>,
    stop: watch::Receiver<bool>,
) {
    run_with(move || connect_pinned(server, ca_der, node, token()), io, stop).await;
}

/// [`run`] over any way of opening the WebSocket (tests use plain TCP).
pub async fn run_with<C, F, S>(connect: C, io: Arc<dyn PodIo>, mut stop: watch::Receiver<bool>)
where
    C: Fn() -> F + Send + Sync,
    F: Future<Output = Result<WebSocketStream<S>, LinkError>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = async {
                let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect())
                    .await
                    .map_err(|_| LinkError::WebSocket(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))??;
                tracing::info!("tunnel to the master is up");
                serve(ws, io.clone()).await
            } => r,
        };
        match outcome {
            Ok(()) => tracing::info!("tunnel to the master closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "tunnel to the master failed; retrying"),
        }
        if started.elapsed() >= STABLE {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(jitter(backoff)) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// A delay between half of `d` and `d`, so agents that lost the master together do not
/// return together.
fn jitter(d: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let fraction = (random % 1024) as f64 / 1024.0;
    d.mul_f64(0.5 + 0.5 * fraction)
}

/// Opens the WebSocket to `/api/v1/nodes/<node>/tunnel`, trusting only `ca_der`.
async fn connect_pinned(
    server: &str,
    ca_der: &[u8],
    node: &str,
    token: String,
) -> Result<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, LinkError> {
    let (host, port) = parse_server(server)?;
    let server_name = ServerName::try_from(host.clone()).map_err(|e| LinkError::Url(format!("{host:?}: {e}")))?;
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let tls_error = |message: String| LinkError::Tls { addr: addr.clone(), message };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).map_err(|e| tls_error(format!("the attested CA is unusable: {e}")))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The upgrade is an HTTP/1.1 request.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(&addr).await.map_err(|source| LinkError::Connect { addr: addr.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(server_name.to_owned(), tcp).await.map_err(|e| tls_error(e.to_string()))?;
    let uri: Uri = format!("wss://{addr}/api/v1/nodes/{node}/tunnel").parse().map_err(|e| LinkError::Url(format!("{e}")))?;
    let request = ClientRequestBuilder::new(uri).with_header("Authorization", format!("Bearer {token}"));
    let (ws, _) = tokio_tungstenite::client_async(request, tls).await.map_err(handshake_error)?;
    Ok(ws)
}

fn parse_server(server: &str) -> Result<(String, u16), LinkError> {
    let uri: Uri = server.parse().map_err(|e| LinkError::Url(format!("{server:?}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(LinkError::Url(format!("{server:?} must start with https://")));
    }
    let host = uri.host().ok_or_else(|| LinkError::Url(format!("{server:?} has no host")))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), uri.port_u16().unwrap_or(6443)))
}

/// A failed upgrade, with the master's Status message when it sent one (401, 403).
pub fn handshake_error(e: tokio_tungstenite::tungstenite::Error) -> LinkError {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            LinkError::Refused { status: resp.status().as_u16(), body: message }
        }
        other => LinkError::WebSocket(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// The wire format (see the module docs)

/// A control message from the master.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Control {
    Logs {
        id: u64,
        namespace: String,
        pod: String,
        container: Option<String>,
        #[serde(default)]
        follow: bool,
        #[serde(default)]
        previous: bool,
        #[serde(default)]
        timestamps: bool,
        tail_lines: Option<i64>,
        since_seconds: Option<i64>,
        since_time: Option<String>,
        limit_bytes: Option<i64>,
    },
    Exec {
        id: u64,
        namespace: String,
        pod: String,
        container: Option<String>,
        command: Vec<String>,
        #[serde(default)]
        stdin: bool,
    },
    Ack {
        id: u64,
        bytes: u32,
    },
    Cancel {
        id: u64,
    },
}

/// The JSON of a request's end frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct End {
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Failure {
    code: u16,
    reason: String,
    message: String,
}

fn encode_frame(id: u64, channel: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + payload.len());
    b.put_u64(id);
    b.put_u8(channel);
    b.put_slice(payload);
    b.freeze()
}

fn decode_frame(message: &Bytes) -> Option<(u64, u8, Bytes)> {
    if message.len() < HEADER_LEN {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&message[..8]);
    Some((u64::from_be_bytes(id), message[8], message.slice(HEADER_LEN..)))
}

fn end_frame(id: u64, end: &End) -> Message {
    // A struct of plain fields always encodes.
    let json = serde_json::to_vec(end).unwrap_or_else(|_| b"{}".to_vec());
    Message::Binary(encode_frame(id, CHANNEL_END, &json))
}

// ---------------------------------------------------------------------------------------
// Serving one connection

/// A request the agent is serving.
struct Running {
    /// Output bytes the agent may still send before the master acknowledges more.
    window: Arc<Semaphore>,
    /// Where stdin from the master goes; dropped at its end.
    stdin: Option<mpsc::UnboundedSender<Bytes>>,
    task: Option<AbortHandle>,
}

type Requests = Arc<Mutex<HashMap<u64, Running>>>;

/// Aborts every request of a connection when the connection's serving ends.
struct AbortAll(Requests);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for (_, r) in self.0.lock().drain() {
            if let Some(t) = r.task {
                t.abort();
            }
        }
    }
}

/// Serves requests arriving on `ws` until the connection ends.
pub async fn serve<S>(ws: WebSocketStream<S>, io: Arc<dyn PodIo>) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let requests: Requests = Arc::default();
    let _abort = AbortAll(requests.clone());
    let writer = async {
        while let Some(m) = out_rx.recv().await {
            sink.send(m).await.map_err(|e| LinkError::WebSocket(e.to_string()))?;
        }
        Ok::<(), LinkError>(())
    };
    let reader = async {
        let mut check = tokio::time::interval(Duration::from_secs(5));
        let mut last_seen = Instant::now();
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = check.tick() => {
                    if last_seen.elapsed() > SILENCE_LIMIT {
                        return Err(LinkError::Silent);
                    }
                    continue;
                }
            };
            let msg = match msg {
                None => return Ok(()),
                Some(Err(e)) => return Err(LinkError::WebSocket(e.to_string())),
                Some(Ok(m)) => m,
            };
            last_seen = Instant::now();
            match msg {
                Message::Text(t) => on_control(t.as_str(), &io, &out, &requests),
                Message::Binary(b) => on_data(&b, &requests),
                Message::Close(_) => return Ok(()),
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    tokio::select! {
        r = writer => r,
        r = reader => r,
    }
}

fn on_control(text: &str, io: &Arc<dyn PodIo>, out: &mpsc::UnboundedSender<Message>, requests: &Requests) {
    let control = match serde_json::from_str::<Control>(text) {
        Ok(c) => c,
        Err(e) => {
            // A newer master may know ops this agent does not: say so if the request has an id.
            let id = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.get("id").and_then(|i| i.as_u64()));
            tracing::warn!(error = %e, "the master sent a tunnel request this agent does not understand");
            if let Some(id) = id {
                let failure = Failure {
                    code: 400,
                    reason: "BadRequest".into(),
                    message: format!("the agent does not understand this tunnel request: {e}"),
                };
                let _ = out.send(end_frame(id, &End { exit_code: None, error: Some(failure) }));
            }
            return;
        }
    };
    match control {
        Control::Ack { id, bytes } => {
            if let Some(r) = requests.lock().get(&id) {
                r.window.add_permits(bytes as usize);
            }
        }
        Control::Cancel { id } => {
            if let Some(r) = requests.lock().remove(&id)
                && let Some(t) = r.task
            {
                t.abort();
            }
        }
        Control::Logs {
            id,
            namespace,
            pod,
            container,
            follow,
            previous,
            timestamps,
            tail_lines,
            since_seconds,
            since_time,
            limit_bytes,
        } => {
            let query = LogQuery { container, follow, previous, timestamps, tail_lines, since_seconds, since_time, limit_bytes };
            let window = register(requests, id, None);
            let (io, out) = (io.clone(), out.clone());
            let task = tokio::spawn(finish(id, requests.clone(), out.clone(), async move {
                let mut lines = io.logs(&namespace, &pod, query).await?;
                // An empty stdout frame: the stream is open.
                let _ = out.send(Message::Binary(encode_frame(id, CHANNEL_STDOUT, &[])));
                while let Some(chunk) = lines.next().await {
                    let chunk = chunk.map_err(TunnelError::Internal)?;
                    send_output(id, CHANNEL_STDOUT, &chunk, &window, &out).await?;
                }
                Ok::<End, TunnelError>(End::default())
            }));
            attach(requests, id, task.abort_handle());
        }
        Control::Exec { id, namespace, pod, container, command, stdin } => {
            let (stdin_tx, stdin_rx) = if stdin {
                let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let window = register(requests, id, stdin_tx);
            let (io, out) = (io.clone(), out.clone());
            let task = tokio::spawn(finish(id, requests.clone(), out.clone(), async move {
                let mut input = None;
                if let Some(mut rx) = stdin_rx {
                    let mut buf = Vec::new();
                    while let Some(b) = rx.recv().await {
                        if buf.len() + b.len() > MAX_STDIN {
                            return Err(TunnelError::BadRequest(format!("stdin exceeds {} MiB", MAX_STDIN >> 20)));
                        }
                        buf.extend_from_slice(&b);
                    }
                    input = Some(buf);
                }
                let result = io.exec(&namespace, &pod, container.as_deref(), command, input).await?;
                send_output(id, CHANNEL_STDOUT, &result.stdout, &window, &out).await?;
                send_output(id, CHANNEL_STDERR, &result.stderr, &window, &out).await?;
                Ok::<End, TunnelError>(End { exit_code: Some(result.exit_code), error: None })
            }));
            attach(requests, id, task.abort_handle());
        }
    }
}

/// Records a new request (before its task runs, so stdin and acks find it).
fn register(requests: &Requests, id: u64, stdin: Option<mpsc::UnboundedSender<Bytes>>) -> Arc<Semaphore> {
    let window = Arc::new(Semaphore::new(WINDOW as usize));
    let old = requests.lock().insert(id, Running { window: window.clone(), stdin, task: None });
    if let Some(t) = old.and_then(|r| r.task) {
        t.abort();
    }
    window
}

/// Lets a request be cancelled, unless it has finished already.
fn attach(requests: &Requests, id: u64, task: AbortHandle) {
    if let Some(r) = requests.lock().get_mut(&id) {
        r.task = Some(task);
    }
}

/// Runs a request's work, sends its end frame and forgets it.
async fn finish(id: u64, requests: Requests, out: mpsc::UnboundedSender<Message>, work: impl Future<Output = Result<End, TunnelError>>) {
    let end = match work.await {
        Ok(end) => end,
        Err(e) => End { exit_code: None, error: Some(e.failure()) },
    };
    requests.lock().remove(&id);
    let _ = out.send(end_frame(id, &end));
}

/// Sends `data` on `channel` in frames of at most [`MAX_PAYLOAD`], each within the window.
async fn send_output(
    id: u64,
    channel: u8,
    data: &[u8],
    window: &Semaphore,
    out: &mpsc::UnboundedSender<Message>,
) -> Result<(), TunnelError> {
    for chunk in data.chunks(MAX_PAYLOAD) {
        // A chunk is at most MAX_PAYLOAD (32 KiB), so it fits a u32 and the window.
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let permit = window.acquire_many(n).await.map_err(|_| TunnelError::Internal("the tunnel closed".into()))?;
        permit.forget();
        out.send(Message::Binary(encode_frame(id, channel, chunk))).map_err(|_| TunnelError::Internal("the tunnel closed".into()))?;
    }
    Ok(())
}

fn on_data(message: &Bytes, requests: &Requests) {
    let Some((id, channel, payload)) = decode_frame(message) else {
        tracing::debug!("ignoring a malformed frame from the master");
        return;
    };
    if channel != CHANNEL_STDIN {
        return;
    }
    let mut requests = requests.lock();
    let Some(r) = requests.get_mut(&id) else { return };
    if payload.is_empty() {
        // The end of stdin: dropping the sender ends the command's input.
        r.stdin = None;
    } else if let Some(tx) = &r.stdin {
        let _ = tx.send(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_master_layout() {
        let wire = encode_frame(0x0102_0304_0506_0708, CHANNEL_STDERR, b"oops");
        assert_eq!(&wire[..], b"\x01\x02\x03\x04\x05\x06\x07\x08\x02oops");
        assert_eq!(decode_frame(&wire), Some((0x0102_0304_0506_0708, CHANNEL_STDERR, Bytes::from_static(b"oops"))));
        assert_eq!(decode_frame(&encode_frame(7, CHANNEL_STDIN, b"")), Some((7, CHANNEL_STDIN, Bytes::new())));
        assert_eq!(decode_frame(&Bytes::from_static(b"short")), None);
    }

    #[test]
    fn control_messages_parse() {
        let c: Control = serde_json::from_str(
            r#"{"op":"logs","id":1,"namespace":"d","pod":"p","container":"app","follow":true,"previous":false,
                "timestamps":false,"tailLines":10,"sinceSeconds":null,"sinceTime":null,"limitBytes":null}"#,
        )
        .unwrap();
        let Control::Logs { id, follow, tail_lines, since_seconds, .. } = c else { panic!("{c:?}") };
        assert_eq!((id, follow, tail_lines, since_seconds), (1, true, Some(10), None));
        let c: Control = serde_json::from_str(r#"{"op":"exec","id":2,"namespace":"d","pod":"p","command":["ls"]}"#).unwrap();
        assert_eq!(
            c,
            Control::Exec { id: 2, namespace: "d".into(), pod: "p".into(), container: None, command: vec!["ls".into()], stdin: false }
        );
        assert_eq!(serde_json::from_str::<Control>(r#"{"op":"ack","id":3,"bytes":9}"#).unwrap(), Control::Ack { id: 3, bytes: 9 });
        assert!(serde_json::from_str::<Control>(r#"{"op":"portforward","id":4}"#).is_err());
    }

    #[test]
    fn ends_encode_as_documented() {
        assert_eq!(serde_json::to_string(&End::default()).unwrap(), "{}");
        assert_eq!(serde_json::to_string(&End { exit_code: Some(3), error: None }).unwrap(), r#"{"exitCode":3}"#);
        let e = End { exit_code: None, error: Some(TunnelError::NotFound("no pod".into()).failure()) };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"error":{"code":404,"reason":"NotFound","message":"no pod"}}"#);
    }

    #[test]
    fn back_off_has_jitter_within_bounds() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(8));
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(8), "{d:?}");
        }
    }

    #[test]
    fn server_urls_need_https() {
        assert_eq!(parse_server("https://10.0.0.1:6443").unwrap(), ("10.0.0.1".to_string(), 6443));
        assert_eq!(parse_server("https://[::1]").unwrap(), ("::1".to_string(), 6443));
        assert!(parse_server("http://master:6443").is_err());
    }
}
