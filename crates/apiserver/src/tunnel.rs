//! Reverse tunnels from worker agents: how `kubectl logs` and `kubectl exec` reach a node when
//! the master (perhaps in an enclave that cannot dial out) may not open connections itself.
//! Each agent opens one WebSocket to the master and keeps it; the master multiplexes requests
//! over it. Start with [`Tunnels`]: [`Tunnels::open`] serves the endpoint, [`Tunnels::logs`]
//! and [`Tunnels::exec`] start requests, and a [`Session`] yields their output.
//!
//! # Wire format (version 1)
//!
//! The agent sends `GET /api/v1/nodes/<node>/tunnel` as a WebSocket upgrade (HTTP/1.1) over
//! TLS pinned to the attested cluster CA, authenticated like every API request (its seal token
//! as `Authorization: Bearer …` or `X-Seal-Token`). Only the user `system:node:<node>` in the
//! group `system:nodes` may open the tunnel of `<node>` (403 otherwise). A newer tunnel for the
//! same node replaces the older one, which the master closes.
//!
//! Requests carry an `id` (u64, unique per connection, chosen by the master). Two kinds of
//! WebSocket messages flow:
//!
//! **Control** — text messages, master → agent, one JSON object each, `op` naming it:
//!
//! ```text
//! {"op":"logs","id":1,"namespace":"default","pod":"web-0","container":"app","follow":true,
//!  "previous":false,"timestamps":false,"tailLines":10,"sinceSeconds":null,"sinceTime":null,
//!  "limitBytes":null}
//! {"op":"exec","id":2,"namespace":"default","pod":"web-0","container":"app",
//!  "command":["ls","-l"],"stdin":true}
//! {"op":"ack","id":1,"bytes":262144}     the master consumed this many bytes of request 1
//! {"op":"cancel","id":1}                 the client went away: stop request 1, send no end
//! ```
//!
//! Optional fields may be absent or `null`; booleans default to `false`. An agent answers an
//! op it does not know with an end frame carrying an error, so masters can add ops.
//!
//! **Data** — binary messages, both ways: `[id: 8 bytes, big-endian][channel: 1 byte][payload]`.
//!
//! | channel | direction | payload |
//! | --- | --- | --- |
//! | 0 stdin | master → agent | bytes for the command's stdin; an empty payload ends stdin (EOF). Sent only after an `exec` with `"stdin":true`, which the agent does not start before EOF. |
//! | 1 stdout | agent → master | log bytes, or the command's stdout. An empty payload on a `logs` request means "the stream is open" (sent once, before any data), so the master can answer HTTP 200 before the first log line. |
//! | 2 stderr | agent → master | the command's stderr |
//! | 3 end | agent → master | the request's last frame, JSON: `{}` (logs done), `{"exitCode":n}` (command exited), or `{"error":{"code":404,"reason":"NotFound","message":"…"}}` (codes as in HTTP: 400 bad request such as a container waiting to start, 404 no such pod or container, 500 anything else) |
//!
//! Payloads are at most [`MAX_PAYLOAD`] bytes. **Flow control:** per request, the agent may
//! have at most [`WINDOW`] bytes of channel 1 and 2 payload sent and not yet acknowledged; the
//! master acknowledges with `ack` as its client consumes them. The end frame is not counted.
//! A master cancels a request whose agent overruns the window.
//!
//! **Liveness:** the master sends a WebSocket ping every [`PING_EVERY`]; either side drops a
//! connection on which nothing (data, control, ping or pong) has arrived for [`SILENCE_LIMIT`].
//! The agent then reconnects (back-off 1 s doubling to 30 s, with jitter). Requests in flight
//! when a connection drops fail; they are not resumed. At every ping the master checks again
//! the token the tunnel was opened with: once it is revoked (unstake, slash), the master
//! closes the tunnel (1008) and the agent must come back with a token that is valid.
//!
//! **Invariant:** the master never dials a node; everything reaches a node over the
//! connection that node opened and authenticated.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::k8s::auth::User;

/// Whether the credentials a tunnel was opened with are still good (`Err(why)` otherwise).
pub type Validity = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
use crate::k8s::status::ApiError;

/// Channel of the command's stdin (master → agent).
pub const CHANNEL_STDIN: u8 = 0;
/// Channel of log bytes or the command's stdout (agent → master).
pub const CHANNEL_STDOUT: u8 = 1;
/// Channel of the command's stderr (agent → master).
pub const CHANNEL_STDERR: u8 = 2;
/// Channel of a request's end, a JSON [`End`] (agent → master).
pub const CHANNEL_END: u8 = 3;
/// Bytes before the payload of a data frame: the id and the channel.
pub const HEADER_LEN: usize = 9;
/// Largest payload of one data frame.
pub const MAX_PAYLOAD: usize = 32 * 1024;
/// Bytes of output an agent may have in flight per request before the master acknowledges.
pub const WINDOW: u32 = 1024 * 1024;
/// How often the master pings each tunnel.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A tunnel on which nothing arrived for this long is dropped.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Largest WebSocket message the master accepts from an agent.
const MAX_MESSAGE: usize = 256 * 1024;
/// Buffered output beyond which an agent has ignored its window (the window plus slack for
/// frames in flight when an ack arrives).
const OVERRUN: usize = 2 * WINDOW as usize;

/// One data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u64,
    pub channel: u8,
    pub payload: Bytes,
}

/// A binary message too short to be a data frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tunnel data frame needs at least 9 bytes, this one has {0}")]
pub struct FrameError(pub usize);

impl Frame {
    pub fn new(id: u64, channel: u8, payload: impl Into<Bytes>) -> Self {
        Frame { id, channel, payload: payload.into() }
    }

    pub fn encode(&self) -> Bytes {
        encode_frame(self.id, self.channel, &self.payload)
    }

    /// Splits a binary message into id, channel and payload (without copying the payload).
    pub fn decode(message: Bytes) -> Result<Frame, FrameError> {
        if message.len() < HEADER_LEN {
            return Err(FrameError(message.len()));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&message[..8]);
        Ok(Frame { id: u64::from_be_bytes(id), channel: message[8], payload: message.slice(HEADER_LEN..) })
    }
}

fn encode_frame(id: u64, channel: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + payload.len());
    b.put_u64(id);
    b.put_u8(channel);
    b.put_slice(payload);
    b.freeze()
}

/// A control message (master → agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Control {
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
        /// RFC 3339.
        since_time: Option<String>,
        limit_bytes: Option<i64>,
    },
    Exec {
        id: u64,
        namespace: String,
        pod: String,
        container: Option<String>,
        command: Vec<String>,
        /// Stdin follows on channel 0, ended by an empty frame.
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

/// The end of a request (the JSON of channel 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct End {
    /// The command's exit code (exec only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// Why a request failed, in HTTP terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl End {
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        End { exit_code: None, error: Some(Failure { code, reason: reason.to_string(), message: message.into() }) }
    }
}

/// What `pods/log` asks of the agent (kube's `PodLogOptions`, already validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// A `logs` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub query: LogQuery,
}

/// An `exec` request: run `command` in a container without a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub command: Vec<String>,
    /// The command's whole stdin, if it reads any.
    pub stdin: Option<Vec<u8>>,
}

/// What a request yields, in order: `Opened` (logs only), output, then one `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The agent opened the log stream; output follows.
    Opened,
    Stdout(Bytes),
    Stderr(Bytes),
    End(End),
}

/// The node's agent has no tunnel to this master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the agent on node \"{0}\" is not connected")]
pub struct NotConnected(pub String);

/// The live tunnels, by node name.
pub struct Tunnels {
    nodes: Mutex<HashMap<String, Arc<Tunnel>>>,
    serial: AtomicU64,
    /// How often the master pings (and re-checks credentials); [`PING_EVERY`] unless a test
    /// set another with [`Tunnels::with_ping_interval`].
    ping_every: Duration,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels { nodes: Mutex::new(HashMap::new()), serial: AtomicU64::new(0), ping_every: PING_EVERY }
    }
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels").field("nodes", &self.connected()).finish()
    }
}

impl Tunnels {
    /// Tunnels pinging every `every` (tests; the server uses [`PING_EVERY`]).
    pub fn with_ping_interval(every: Duration) -> Tunnels {
        Tunnels { ping_every: every, ..Tunnels::default() }
    }

    /// Whether `node`'s agent has a tunnel now.
    pub fn is_connected(&self, node: &str) -> bool {
        self.nodes.lock().contains_key(node)
    }

    /// The nodes with a tunnel, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.nodes.lock().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// `GET /api/v1/nodes/<node>/tunnel` from the authenticated `user`: checks that the caller
    /// is that node's agent and upgrades to a WebSocket served by [`Tunnels::attach`].
    /// `valid` is asked again at every ping; the tunnel closes when it fails.
    pub async fn open(self: Arc<Self>, user: &User, node: &str, parts: &mut Parts, valid: Option<Validity>) -> Response {
        let own = user.name.strip_prefix("system:node:") == Some(node) && user.groups.iter().any(|g| g == "system:nodes");
        if !own {
            return ApiError::forbidden(format!(
                "forbidden: User \"{}\" cannot open the tunnel of node \"{node}\": only that node's agent (system:node:{node}) may",
                user.name
            ))
            .into_response();
        }
        let ws = match WebSocketUpgrade::from_request_parts(parts, &()).await {
            Ok(ws) => ws,
            Err(e) => {
                return ApiError::bad_request(format!("the node tunnel is a WebSocket (GET with Upgrade: websocket): {}", e.body_text()))
                    .into_response();
            }
        };
        let node = node.to_string();
        ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| self.attach(node, socket, valid))
    }

    /// Serves an upgraded, already authenticated tunnel for `node` until it ends, replacing
    /// any older tunnel of the node.
    pub async fn attach(self: Arc<Self>, node: String, socket: WebSocket, valid: Option<Validity>) {
        let (out, out_rx) = mpsc::unbounded_channel();
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let tunnel = Arc::new(Tunnel {
            node: node.clone(),
            serial,
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: Notify::new(),
            valid,
        });
        if let Some(old) = self.nodes.lock().insert(node.clone(), tunnel.clone()) {
            tracing::info!(node = %node, "a newer tunnel replaces the agent's previous one");
            old.closed.notify_one();
        }
        tracing::info!(node = %node, "agent tunnel connected");
        let why = tunnel.run(socket, out_rx, self.ping_every).await;
        {
            let mut nodes = self.nodes.lock();
            if nodes.get(&node).is_some_and(|t| t.serial == serial) {
                nodes.remove(&node);
            }
        }
        // Dropping the senders ends every session still waiting on this tunnel.
        tunnel.pending.lock().clear();
        tracing::info!(node = %node, reason = why, "agent tunnel closed");
    }

    /// Starts streaming a container's log from `node`.
    pub fn logs(&self, node: &str, req: LogRequest) -> Result<Session, NotConnected> {
        let tunnel = self.get(node)?;
        let q = req.query;
        Ok(tunnel.start(
            |id| Control::Logs {
                id,
                namespace: req.namespace,
                pod: req.pod,
                container: q.container,
                follow: q.follow,
                previous: q.previous,
                timestamps: q.timestamps,
                tail_lines: q.tail_lines,
                since_seconds: q.since_seconds,
                since_time: q.since_time,
                limit_bytes: q.limit_bytes,
            },
            None,
        ))
    }

    /// Runs a command in a container on `node`.
    pub fn exec(&self, node: &str, req: ExecRequest) -> Result<Session, NotConnected> {
        let tunnel = self.get(node)?;
        let stdin = req.stdin;
        let wants_stdin = stdin.is_some();
        Ok(tunnel.start(
            |id| Control::Exec {
                id,
                namespace: req.namespace,
                pod: req.pod,
                container: req.container,
                command: req.command,
                stdin: wants_stdin,
            },
            stdin.as_deref(),
        ))
    }

    fn get(&self, node: &str) -> Result<Arc<Tunnel>, NotConnected> {
        self.nodes.lock().get(node).cloned().ok_or_else(|| NotConnected(node.to_string()))
    }
}

/// One agent's connection.
struct Tunnel {
    node: String,
    /// Tells this connection from a newer one of the same node.
    serial: u64,
    /// Messages for the socket; the connection's task writes them in order.
    out: mpsc::UnboundedSender<Message>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    /// Notified when a newer tunnel replaces this one.
    closed: Notify,
    /// The opening credentials' check (see [`Validity`]).
    valid: Option<Validity>,
}

/// A request waiting for the agent's frames.
struct Pending {
    events: mpsc::UnboundedSender<Event>,
    /// Output bytes received and not yet taken by the session.
    buffered: Arc<AtomicUsize>,
}

impl Tunnel {
    /// Reads and writes the socket until it ends; returns why.
    async fn run(&self, mut socket: WebSocket, mut out: mpsc::UnboundedReceiver<Message>, every: Duration) -> &'static str {
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                _ = self.closed.notified() => {
                    let frame = CloseFrame { code: 1000, reason: Utf8Bytes::from_static("replaced by a newer tunnel of the same node") };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return "replaced by a newer tunnel";
                }
                incoming = socket.recv() => {
                    let msg = match incoming {
                        Some(Ok(m)) => m,
                        Some(Err(_)) => return "reading the connection failed",
                        None => return "the connection ended",
                    };
                    last_seen = Instant::now();
                    match msg {
                        Message::Binary(b) => self.dispatch(b),
                        Message::Close(_) => return "the agent closed it",
                        Message::Text(_) => tracing::debug!(node = %self.node, "ignoring a text message from the agent"),
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                Some(msg) = out.recv() => {
                    if socket.send(msg).await.is_err() {
                        return "writing to the connection failed";
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > SILENCE_LIMIT {
                        return "the agent was silent for 60 s";
                    }
                    if let Some(Err(why)) = self.valid.as_ref().map(|v| v()) {
                        tracing::warn!(node = %self.node, %why, "closing the agent's tunnel: its token is no longer valid");
                        let frame = CloseFrame { code: 1008, reason: Utf8Bytes::from_static("the tunnel's token is no longer valid") };
                        // An agent that stopped reading must not keep the tunnel alive.
                        let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
                        return "its token is no longer valid";
                    }
                    if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        return "writing to the connection failed";
                    }
                }
            }
        }
    }

    /// Routes one data frame from the agent to its request.
    fn dispatch(&self, message: Bytes) {
        let frame = match Frame::decode(message) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(node = %self.node, error = %e, "ignoring a malformed frame from the agent");
                return;
            }
        };
        let mut pending = self.pending.lock();
        // Frames of cancelled or finished requests are dropped.
        let Some(p) = pending.get(&frame.id) else { return };
        match frame.channel {
            CHANNEL_STDOUT | CHANNEL_STDERR => {
                if frame.payload.is_empty() {
                    if frame.channel == CHANNEL_STDOUT {
                        let _ = p.events.send(Event::Opened);
                    }
                    return;
                }
                let n = frame.payload.len();
                if p.buffered.fetch_add(n, Ordering::Relaxed) + n > OVERRUN {
                    let message = format!("the agent on node \"{}\" sent more than its flow-control window allows", self.node);
                    if let Some(p) = pending.remove(&frame.id) {
                        let _ = p.events.send(Event::End(End::failure(500, "InternalError", message)));
                    }
                    self.control(&Control::Cancel { id: frame.id });
                    return;
                }
                let event = if frame.channel == CHANNEL_STDOUT { Event::Stdout(frame.payload) } else { Event::Stderr(frame.payload) };
                let _ = p.events.send(event);
            }
            CHANNEL_END => {
                let end = serde_json::from_slice::<End>(&frame.payload).unwrap_or_else(|e| {
                    End::failure(500, "InternalError", format!("the agent on node \"{}\" sent an unreadable result: {e}", self.node))
                });
                if let Some(p) = pending.remove(&frame.id) {
                    let _ = p.events.send(Event::End(end));
                }
            }
            other => tracing::debug!(node = %self.node, channel = other, "ignoring a frame on an unknown channel"),
        }
    }

    /// Registers a request, sends its control message and its stdin.
    fn start(self: Arc<Self>, control: impl FnOnce(u64) -> Control, stdin: Option<&[u8]>) -> Session {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        self.pending.lock().insert(id, Pending { events, buffered: buffered.clone() });
        self.control(&control(id));
        if let Some(data) = stdin {
            for chunk in data.chunks(MAX_PAYLOAD) {
                let _ = self.out.send(Message::Binary(encode_frame(id, CHANNEL_STDIN, chunk)));
            }
            let _ = self.out.send(Message::Binary(encode_frame(id, CHANNEL_STDIN, &[])));
        }
        Session { id, tunnel: self, events: rx, buffered, unacked: 0, done: false }
    }

    fn control(&self, c: &Control) {
        match serde_json::to_string(c) {
            Ok(text) => {
                // Fails only when the connection is gone, which ends the request anyway.
                let _ = self.out.send(Message::Text(text.into()));
            }
            Err(e) => tracing::warn!(node = %self.node, error = %e, "encoding a tunnel control message failed"),
        }
    }
}

/// One request in flight. Dropping it before its end cancels the request on the agent.
pub struct Session {
    id: u64,
    tunnel: Arc<Tunnel>,
    events: mpsc::UnboundedReceiver<Event>,
    buffered: Arc<AtomicUsize>,
    /// Output taken and not yet acknowledged to the agent.
    unacked: u32,
    done: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("node", &self.tunnel.node).field("id", &self.id).field("done", &self.done).finish()
    }
}

impl Session {
    /// The next event; `None` after the end. A lost tunnel ends the request with a 503
    /// failure. Cancel-safe.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let event = match self.events.recv().await {
            Some(e) => e,
            None => Event::End(End::failure(
                503,
                "ServiceUnavailable",
                format!("the connection to the agent on node \"{}\" was lost", self.tunnel.node),
            )),
        };
        match &event {
            Event::Stdout(b) | Event::Stderr(b) => self.consumed(b.len()),
            Event::End(_) => self.done = true,
            Event::Opened => {}
        }
        Some(event)
    }

    /// Reads the request to its end: stdout, stderr and the end.
    pub async fn collect(mut self) -> (Vec<u8>, Vec<u8>, End) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(event) = self.next().await {
            match event {
                Event::Stdout(b) => stdout.extend_from_slice(&b),
                Event::Stderr(b) => stderr.extend_from_slice(&b),
                Event::Opened => {}
                Event::End(end) => return (stdout, stderr, end),
            }
        }
        (stdout, stderr, End::default())
    }

    /// Counts `n` bytes as taken and acknowledges them in batches of a quarter window.
    fn consumed(&mut self, n: usize) {
        self.buffered.fetch_sub(n, Ordering::Relaxed);
        // Payloads are at most MAX_PAYLOAD, far below u32::MAX.
        self.unacked = self.unacked.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self.unacked >= WINDOW / 4 {
            self.tunnel.control(&Control::Ack { id: self.id, bytes: self.unacked });
            self.unacked = 0;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let still_pending = self.tunnel.pending.lock().remove(&self.id).is_some();
        if !self.done && still_pending {
            self.tunnel.control(&Control::Cancel { id: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = Frame::new(0x0102_0304_0506_0708, CHANNEL_STDERR, Bytes::from_static(b"oops"));
        let wire = f.encode();
        assert_eq!(&wire[..], b"\x01\x02\x03\x04\x05\x06\x07\x08\x02oops");
        assert_eq!(Frame::decode(wire).unwrap(), f);
        let empty = Frame::new(7, CHANNEL_STDIN, Bytes::new());
        assert_eq!(empty.encode().len(), HEADER_LEN);
        assert_eq!(Frame::decode(empty.encode()).unwrap(), empty);
        assert_eq!(Frame::decode(Bytes::from_static(b"\0\0\0\0\0\0\0\x01")), Err(FrameError(8)));
    }

    #[test]
    fn control_messages_have_the_documented_shape() {
        let logs = Control::Logs {
            id: 1,
            namespace: "default".into(),
            pod: "web-0".into(),
            container: Some("app".into()),
            follow: true,
            previous: false,
            timestamps: false,
            tail_lines: Some(10),
            since_seconds: None,
            since_time: None,
            limit_bytes: None,
        };
        let v = serde_json::to_value(&logs).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op": "logs", "id": 1, "namespace": "default", "pod": "web-0", "container": "app", "follow": true,
                "previous": false, "timestamps": false, "tailLines": 10, "sinceSeconds": null, "sinceTime": null, "limitBytes": null})
        );
        let exec: Control =
            serde_json::from_str(r#"{"op":"exec","id":2,"namespace":"d","pod":"p","command":["ls","-l"],"stdin":true}"#).unwrap();
        assert_eq!(
            exec,
            Control::Exec {
                id: 2,
                namespace: "d".into(),
                pod: "p".into(),
                container: None,
                command: vec!["ls".into(), "-l".into()],
                stdin: true
            }
        );
        assert_eq!(serde_json::to_string(&Control::Ack { id: 3, bytes: 5 }).unwrap(), r#"{"op":"ack","id":3,"bytes":5}"#);
        assert_eq!(serde_json::to_string(&Control::Cancel { id: 4 }).unwrap(), r#"{"op":"cancel","id":4}"#);
    }

    #[test]
    fn end_frames_parse() {
        assert_eq!(serde_json::from_str::<End>("{}").unwrap(), End::default());
        assert_eq!(serde_json::from_str::<End>(r#"{"exitCode":3}"#).unwrap().exit_code, Some(3));
        let e: End = serde_json::from_str(r#"{"error":{"code":404,"reason":"NotFound","message":"no such pod"}}"#).unwrap();
        assert_eq!(e, End::failure(404, "NotFound", "no such pod"));
        assert_eq!(serde_json::to_string(&End { exit_code: Some(0), error: None }).unwrap(), r#"{"exitCode":0}"#);
    }

    /// A tunnel without a socket: what the master would send sits in `out`.
    fn bare_tunnel() -> (Arc<Tunnel>, mpsc::UnboundedReceiver<Message>) {
        let (out, rx) = mpsc::unbounded_channel();
        let t = Tunnel {
            node: "n1".into(),
            serial: 0,
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: Notify::new(),
            valid: None,
        };
        (Arc::new(t), rx)
    }

    fn text(m: Message) -> serde_json::Value {
        match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn sessions_route_frames_ack_and_cancel() {
        let (t, mut out) = bare_tunnel();
        let req = ExecRequest {
            namespace: "d".into(),
            pod: "p".into(),
            container: None,
            command: vec!["cat".into()],
            stdin: Some(b"hello".to_vec()),
        };
        let stdin = req.stdin.clone();
        let mut s = t.clone().start(
            |id| Control::Exec { id, namespace: req.namespace, pod: req.pod, container: None, command: req.command, stdin: true },
            stdin.as_deref(),
        );
        assert_eq!(text(out.recv().await.unwrap())["op"], "exec");
        let Some(Message::Binary(b)) = out.recv().await else { panic!("expected stdin") };
        assert_eq!(Frame::decode(b).unwrap(), Frame::new(1, CHANNEL_STDIN, Bytes::from_static(b"hello")));
        let Some(Message::Binary(b)) = out.recv().await else { panic!("expected the end of stdin") };
        assert_eq!(Frame::decode(b).unwrap(), Frame::new(1, CHANNEL_STDIN, Bytes::new()));

        // A quarter window of output makes the session acknowledge it.
        let chunk = vec![b'x'; MAX_PAYLOAD];
        for _ in 0..(WINDOW as usize / 4 / MAX_PAYLOAD) {
            t.dispatch(Frame::new(1, CHANNEL_STDOUT, chunk.clone()).encode());
            assert_eq!(s.next().await, Some(Event::Stdout(Bytes::from(chunk.clone()))));
        }
        let ack = text(out.recv().await.unwrap());
        assert_eq!((ack["op"].as_str(), ack["bytes"].as_u64()), (Some("ack"), Some(u64::from(WINDOW / 4))));
        t.dispatch(Frame::new(9, CHANNEL_STDOUT, Bytes::from_static(b"stray")).encode());
        t.dispatch(Frame::new(1, CHANNEL_END, Bytes::from_static(br#"{"exitCode":0}"#)).encode());
        assert_eq!(s.next().await, Some(Event::End(End { exit_code: Some(0), error: None })));
        assert_eq!(s.next().await, None);
        drop(s);
        assert!(out.try_recv().is_err(), "a finished session sends no cancel");

        // Dropping a session early cancels it on the agent.
        let s = t.clone().start(|id| Control::Cancel { id }, None);
        let _ = out.recv().await;
        drop(s);
        assert_eq!(text(out.recv().await.unwrap()), serde_json::json!({"op": "cancel", "id": 2}));
        assert!(t.pending.lock().is_empty());
    }

    #[tokio::test]
    async fn a_lost_tunnel_or_an_overrun_ends_the_session() {
        let (t, mut out) = bare_tunnel();
        let mut s = t.clone().start(|id| Control::Cancel { id }, None);
        t.pending.lock().clear();
        let Some(Event::End(end)) = s.next().await else { panic!("expected an end") };
        assert_eq!(end.error.map(|f| f.code), Some(503));

        let mut s = t.clone().start(|id| Control::Cancel { id }, None);
        let _ = out.recv().await;
        let _ = out.recv().await;
        let chunk = vec![0u8; MAX_PAYLOAD];
        for _ in 0..=(OVERRUN / MAX_PAYLOAD) {
            t.dispatch(Frame::new(2, CHANNEL_STDOUT, chunk.clone()).encode());
        }
        let mut last = None;
        while let Some(e) = s.next().await {
            last = Some(e);
        }
        let Some(Event::End(end)) = last else { panic!("expected an end") };
        assert_eq!(end.error.map(|f| f.code), Some(500));
        assert_eq!(text(out.recv().await.unwrap())["op"], "cancel");
    }

    #[tokio::test]
    async fn only_the_node_itself_may_open_its_tunnel() {
        let tunnels = Arc::new(Tunnels::default());
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            method: "seal",
            token: None,
        };
        let req = || axum::http::Request::builder().uri("/api/v1/nodes/n1/tunnel").body(()).unwrap().into_parts().0;
        for (u, code) in [
            (user("system:node:n2", &["system:nodes"]), 403),
            (user("system:node:n1", &[]), 403),
            (user("alice", &["system:masters"]), 403),
            // The right node, but not a WebSocket request.
            (user("system:node:n1", &["system:nodes"]), 400),
        ] {
            let r = tunnels.clone().open(&u, "n1", &mut req(), None).await;
            assert_eq!(r.status().as_u16(), code, "{}", u.name);
        }
    }
}
