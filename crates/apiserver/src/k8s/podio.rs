//! `pods/log` and `pods/exec`: the Kubernetes face of the node tunnels ([`crate::tunnel`]).
//! Both validate what kube-apiserver validates (the container, the log options), find the
//! pod's node, and relay to its agent: logs as a chunked `text/plain` body, exec over the
//! WebSocket remote-command protocol (`v5.channel.k8s.io`, or `v4.channel.k8s.io`). Start
//! with [`serve`].
//!
//! What is supported: `kubectl logs` with `-c`, `-f`, `--previous`, `--timestamps`,
//! `--tail`, `--since`, `--since-time`, `--limit-bytes`; `kubectl exec` without a terminal,
//! with or without `-i` (stdin is read to its end before the command starts, at most
//! [`MAX_STDIN`] bytes). Refused with a clear message: `-t` (no terminal), SPDY (kubectl
//! before 1.30 or `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), and stdin over `v4`, which
//! cannot signal the end of stdin.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::registry::Sub;
use super::request::{Query, RequestInfo, flag};
use super::status::{ApiError, ApiResult};
use super::{Api, meta};
use crate::tunnel::{End, Event, ExecRequest, Failure, LogQuery, LogRequest, Session, Tunnels};

/// Largest stdin `kubectl exec -i` may send.
pub const MAX_STDIN: usize = 16 * 1024 * 1024;
/// How long an agent may take to open a log stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest WebSocket message accepted from an exec client.
const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;
/// Remote-command channels (kube's `v4`/`v5.channel.k8s.io`).
const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_ERROR: u8 = 3;
/// v5: `[255, channel]` closes the client's side of a channel (stdin's end).
const CHANNEL_CLOSE: u8 = 255;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// Serves an authorized `pods/log` (GET) or `pods/exec` (GET or POST with a WebSocket
/// upgrade) request.
pub(super) async fn serve(api: &Arc<Api>, info: &RequestInfo, parts: Parts, q: &Query) -> Response {
    let r = match info.sub {
        Some(Sub::Exec) => exec(api, info, parts).await,
        _ => logs(api, info, q).await,
    };
    r.unwrap_or_else(|e| e.into_response())
}

/// The pod and the node it is bound to.
async fn bound_pod(api: &Api, info: &RequestInfo) -> ApiResult<(Value, String)> {
    let name = info.name.as_deref().ok_or_else(|| ApiError::bad_request("a resource name is required"))?;
    let (pod, _) = api.read(info.rt, info.namespace.as_deref(), name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod \"{name}\" is not scheduled to a node yet")))?
        .to_string();
    Ok((pod, node))
}

fn not_connected(node: &str) -> ApiError {
    ApiError::unavailable(format!(
        "the agent on node \"{node}\" is not connected (it keeps a tunnel to the master while it runs; check that `daas agent` is up on that node)"
    ))
}

/// An agent's failure as the Status kube-apiserver would answer.
fn api_error(f: Failure) -> ApiError {
    match f.code {
        400 => ApiError::bad_request(f.message),
        404 => ApiError::new(404, "NotFound", f.message),
        413 => ApiError::too_large(f.message),
        503 => ApiError::unavailable(f.message),
        _ => ApiError::internal(f.message),
    }
}

fn names<'a>(pod: &'a Value, list: &str) -> Vec<&'a str> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect())
        .unwrap_or_default()
}

/// The container a request means, as kube-apiserver's `validateContainer`: the one asked
/// for, which must exist, or the pod's only container.
fn resolve_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let pod_name = meta::name(pod);
    let lists = ["containers", "initContainers", "ephemeralContainers"];
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if lists.iter().any(|l| names(pod, l).contains(&c)) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {pod_name}"))),
        None => match names(pod, "containers").as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(ApiError::bad_request(format!("pod {pod_name} does not have a container"))),
            _ => {
                let all: Vec<&str> = lists.iter().flat_map(|l| names(pod, l)).collect();
                Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    }
}

// ---------------------------------------------------------------------------------------
// pods/log

async fn logs(api: &Arc<Api>, info: &RequestInfo, q: &Query) -> ApiResult<Response> {
    let (pod, node) = bound_pod(api, info).await?;
    let container = resolve_container(&pod, q.get("container").map(String::as_str))?;
    let query = log_query(q, meta::name(&pod), container)?;
    check_log_state(&pod, query.container.as_deref().unwrap_or(""), query.previous)?;
    let req = LogRequest { namespace: info.namespace.clone().unwrap_or_default(), pod: meta::name(&pod).to_string(), query };
    let mut session = api.tunnels.logs(&node, req).map_err(|_| not_connected(&node))?;
    // The status line waits for the agent to open the stream, so that a missing container or
    // log file is a proper error rather than an empty 200.
    let first = match tokio::time::timeout(OPEN_TIMEOUT, session.next()).await {
        Err(_) => {
            return Err(ApiError::new(
                504,
                "Timeout",
                format!("the agent on node \"{node}\" did not open the log stream within {} s", OPEN_TIMEOUT.as_secs()),
            ));
        }
        Ok(Some(Event::Stdout(b) | Event::Stderr(b))) => Some(b),
        Ok(Some(Event::End(End { error: Some(f), .. }))) => return Err(api_error(f)),
        Ok(Some(Event::End(_)) | None) => return Ok(text_response(Body::empty())),
        Ok(Some(Event::Opened)) => None,
    };
    // Streams until the agent ends the log (always, without follow) or the client goes away,
    // which drops the session and so cancels the stream on the agent.
    let stream = futures_util::stream::unfold((first, Some(session)), |(first, session)| async move {
        let mut s: Session = session?;
        if let Some(b) = first {
            return Some((Ok::<Bytes, std::io::Error>(b), (None, Some(s))));
        }
        loop {
            match s.next().await {
                Some(Event::Stdout(b) | Event::Stderr(b)) => return Some((Ok(b), (None, Some(s)))),
                Some(Event::Opened) => {}
                // Headers are sent: an error now can only cut the response short.
                Some(Event::End(End { error: Some(f), .. })) => return Some((Err(std::io::Error::other(f.message)), (None, None))),
                Some(Event::End(_)) | None => return None,
            }
        }
    });
    Ok(text_response(Body::from_stream(stream)))
}

fn text_response(body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// kube's `PodLogOptions` from the query, validated as kube-apiserver does.
fn log_query(q: &Query, pod_name: &str, container: String) -> ApiResult<LogQuery> {
    let int = |key: &str| -> ApiResult<Option<i64>> {
        match q.get(key).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("{key}: invalid value \"{v}\": not an integer"))),
        }
    };
    let (tail_lines, since_seconds, limit_bytes) = (int("tailLines")?, int("sinceSeconds")?, int("limitBytes")?);
    let since_time = q.get("sinceTime").filter(|t| !t.is_empty()).cloned();
    if let Some(t) = &since_time
        && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(ApiError::bad_request(format!("sinceTime: invalid value \"{t}\": not an RFC 3339 time")));
    }
    let mut invalid = Vec::new();
    if let Some(n) = tail_lines.filter(|n| *n < 0) {
        invalid.push(format!("tailLines: Invalid value: {n}: must be greater than or equal to 0"));
    }
    if let Some(n) = limit_bytes.filter(|n| *n < 1) {
        invalid.push(format!("limitBytes: Invalid value: {n}: must be greater than 0"));
    }
    if let Some(n) = since_seconds.filter(|n| *n < 1) {
        invalid.push(format!("sinceSeconds: Invalid value: {n}: must be greater than 0"));
    }
    if since_seconds.is_some() && since_time.is_some() {
        invalid.push("sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".to_string());
    }
    match invalid.len() {
        0 => {}
        1 => return Err(ApiError::new(422, "Invalid", format!("PodLogOptions \"{pod_name}\" is invalid: {}", invalid[0]))),
        _ => return Err(ApiError::new(422, "Invalid", format!("PodLogOptions \"{pod_name}\" is invalid: [{}]", invalid.join(", ")))),
    }
    Ok(LogQuery {
        container: Some(container),
        follow: flag(q, "follow"),
        previous: flag(q, "previous"),
        timestamps: flag(q, "timestamps"),
        tail_lines,
        since_seconds,
        since_time,
        limit_bytes,
    })
}

/// Refuses, from the pod's recorded status, what the kubelet would refuse: a container that
/// has not started, or `previous` for one that never terminated. A container without a status
/// yet is left to the agent.
fn check_log_state(pod: &Value, container: &str, previous: bool) -> ApiResult<()> {
    let pod_name = meta::name(pod);
    let status = ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/status/{k}")).and_then(Value::as_array))
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(s) = status else { return Ok(()) };
    let present = |p: &str| s.pointer(p).is_some_and(|v| !v.is_null());
    let last_terminated = present("/lastState/terminated");
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found")));
        }
        return Ok(());
    }
    if present("/state/running") || present("/state/terminated") || last_terminated {
        return Ok(());
    }
    match s.pointer("/state/waiting/reason").and_then(Value::as_str) {
        Some(reason) => {
            Err(ApiError::bad_request(format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}")))
        }
        None if present("/state/waiting") => {
            Err(ApiError::bad_request(format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start - no logs yet")))
        }
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// pods/exec

/// kube's `PodExecOptions` (`command` may repeat, so the raw query is parsed again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ExecOptions {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl ExecOptions {
    fn parse(raw: Option<&str>) -> Self {
        let mut o = ExecOptions::default();
        let on = |v: &str| v == "true" || v == "1";
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "container" if !v.is_empty() => o.container = Some(v.into_owned()),
                "stdin" => o.stdin = on(v.as_ref()),
                "stdout" => o.stdout = on(v.as_ref()),
                "stderr" => o.stderr = on(v.as_ref()),
                "tty" => o.tty = on(v.as_ref()),
                _ => {}
            }
        }
        o
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V4,
    V5,
}

/// Picks v5 if offered, else v4.
fn pick_protocol<'a>(offered: impl Iterator<Item = &'a HeaderValue>) -> ApiResult<Protocol> {
    let offered: Vec<&str> = offered.filter_map(|v| v.to_str().ok()).map(str::trim).collect();
    if offered.contains(&V5) {
        Ok(Protocol::V5)
    } else if offered.contains(&V4) {
        Ok(Protocol::V4)
    } else {
        Err(ApiError::bad_request(format!(
            "none of the offered WebSocket subprotocols [{}] is supported: this server speaks {V5} and {V4}",
            offered.join(", ")
        )))
    }
}

fn wants_spdy(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|u| u.to_ascii_lowercase().contains("spdy"))
}

async fn exec(api: &Arc<Api>, info: &RequestInfo, mut parts: Parts) -> ApiResult<Response> {
    let opts = ExecOptions::parse(parts.uri.query());
    let (pod, node) = bound_pod(api, info).await?;
    if let Some(phase @ ("Succeeded" | "Failed")) = pod.pointer("/status/phase").and_then(Value::as_str) {
        return Err(ApiError::bad_request(format!("cannot exec into a container in a completed pod; current phase is {phase}")));
    }
    let container = resolve_container(&pod, opts.container.as_deref())?;
    if opts.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least one command for the container"));
    }
    if !(opts.stdin || opts.stdout || opts.stderr) {
        return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    if !api.tunnels.is_connected(&node) {
        return Err(not_connected(&node));
    }
    if wants_spdy(&parts.headers) {
        return Err(ApiError::bad_request(format!(
            "this server serves pods/exec over WebSocket ({V5} or {V4}) only, not SPDY: use kubectl 1.30 or newer and leave KUBECTL_REMOTE_COMMAND_WEBSOCKETS unset"
        )));
    }
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &()).await.map_err(|e| {
        ApiError::bad_request(format!("pods/exec needs a WebSocket upgrade with the subprotocol {V5} or {V4}: {}", e.body_text()))
    })?;
    let protocol = pick_protocol(ws.requested_protocols())?;
    let chosen = match protocol {
        Protocol::V5 => V5,
        Protocol::V4 => V4,
    };
    let req = ExecRequest {
        namespace: info.namespace.clone().unwrap_or_default(),
        pod: meta::name(&pod).to_string(),
        container: Some(container),
        command: opts.command.clone(),
        stdin: None,
    };
    let tunnels = api.tunnels.clone();
    Ok(ws
        .protocols([chosen])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run_exec(socket, protocol, tunnels, node, req, opts)))
}

/// One exec over an upgraded client socket: refuse what is not supported, read stdin to its
/// end, run the command through the node's tunnel, relay its output, send the Status.
async fn run_exec(mut socket: WebSocket, protocol: Protocol, tunnels: Arc<Tunnels>, node: String, mut req: ExecRequest, opts: ExecOptions) {
    if opts.tty {
        let e = ApiError::bad_request(
            "a terminal (tty, kubectl exec -t) is not supported: this server runs commands without one; run `kubectl exec -i POD -- COMMAND` instead",
        );
        return finish(&mut socket, &e.status()).await;
    }
    if opts.stdin {
        if protocol == Protocol::V4 {
            let e = ApiError::bad_request(format!("stdin needs {V5}, which can signal its end; this client speaks only {V4}"));
            return finish(&mut socket, &e.status()).await;
        }
        match read_stdin(&mut socket).await {
            Stdin::Complete(bytes) => req.stdin = Some(bytes),
            Stdin::ClientGone => return,
            Stdin::TooLarge => {
                let e = ApiError::too_large(format!(
                    "stdin exceeds {} MiB: this server buffers stdin and runs the command when it ends",
                    MAX_STDIN >> 20
                ));
                return finish(&mut socket, &e.status()).await;
            }
        }
    }
    let mut session = match tunnels.exec(&node, req) {
        Ok(s) => s,
        Err(e) => return finish(&mut socket, &not_connected(&e.0).status()).await,
    };
    loop {
        tokio::select! {
            event = session.next() => match event {
                Some(Event::Stdout(b)) if opts.stdout => {
                    if send_channel(&mut socket, CHANNEL_STDOUT, &b).await.is_err() {
                        return;
                    }
                }
                Some(Event::Stderr(b)) if opts.stderr => {
                    if send_channel(&mut socket, CHANNEL_STDERR, &b).await.is_err() {
                        return;
                    }
                }
                Some(Event::End(end)) => return finish(&mut socket, &exec_status(end)).await,
                Some(_) => {}
                None => return,
            },
            incoming = socket.recv() => match incoming {
                // The client went away: dropping the session cancels the request on the agent.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Resize, late stdin, pings.
                Some(Ok(_)) => {}
            },
        }
    }
}

enum Stdin {
    Complete(Vec<u8>),
    ClientGone,
    TooLarge,
}

/// Reads channel 0 until the client closes it (v5's `[255, 0]`).
async fn read_stdin(socket: &mut WebSocket) -> Stdin {
    let mut buf = Vec::new();
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Stdin::ClientGone,
            Some(Ok(Message::Binary(b))) => match b.first() {
                Some(&CHANNEL_STDIN) => {
                    if buf.len() + b.len() - 1 > MAX_STDIN {
                        return Stdin::TooLarge;
                    }
                    buf.extend_from_slice(&b[1..]);
                }
                Some(&CHANNEL_CLOSE) if b.get(1) == Some(&CHANNEL_STDIN) => return Stdin::Complete(buf),
                _ => {}
            },
            Some(Ok(_)) => {}
        }
    }
}

async fn send_channel(socket: &mut WebSocket, channel: u8, data: &[u8]) -> Result<(), axum::Error> {
    let mut frame = Vec::with_capacity(1 + data.len());
    frame.push(channel);
    frame.extend_from_slice(data);
    socket.send(Message::Binary(Bytes::from(frame))).await
}

/// The Status the kubelet writes on the error channel when a command ends.
fn exec_status(end: End) -> Value {
    match (end.error, end.exit_code) {
        (Some(f), _) => api_error(f).status(),
        (None, None | Some(0)) => json!({"metadata": {}, "status": "Success"}),
        (None, Some(code)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
    }
}

/// Sends `status` on the error channel and closes the socket, as the kubelet does: clients
/// read the error channel to its end, which is the socket's.
async fn finish(socket: &mut WebSocket, status: &Value) {
    let body = serde_json::to_vec(status).unwrap_or_default();
    if send_channel(socket, CHANNEL_ERROR, &body).await.is_err() {
        return;
    }
    let close = CloseFrame { code: 1000, reason: Utf8Bytes::from_static("") };
    if socket.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // Let the client answer the close, so the last frames are not lost to a reset.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "side"}], "initContainers": [{"name": "init"}]},
            "status": {"containerStatuses": [
                {"name": "app", "state": {"running": {}}, "lastState": {}},
                {"name": "side", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}},
            ]},
        })
    }

    #[test]
    fn containers_resolve_as_kube_does() {
        let p = pod();
        assert_eq!(resolve_container(&p, Some("init")).unwrap(), "init");
        assert_eq!(resolve_container(&p, Some("nope")).unwrap_err().message, "container nope is not valid for pod web");
        assert_eq!(
            resolve_container(&p, None).unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [app side init]"
        );
        let one = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(resolve_container(&one, Some("")).unwrap(), "only");
    }

    #[test]
    fn log_state_follows_the_kubelet() {
        let p = pod();
        assert!(check_log_state(&p, "app", false).is_ok());
        assert_eq!(
            check_log_state(&p, "side", false).unwrap_err().message,
            "container \"side\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        assert_eq!(check_log_state(&p, "app", true).unwrap_err().message, "previous terminated container \"app\" in pod \"web\" not found");
        assert!(check_log_state(&p, "init", false).is_ok(), "no status yet: the agent decides");
    }

    #[test]
    fn log_options_are_validated() {
        let q = |pairs: &[(&str, &str)]| -> Query { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let ok = log_query(&q(&[("follow", "true"), ("tailLines", "10"), ("timestamps", "1")]), "web", "app".into()).unwrap();
        assert_eq!(
            ok,
            LogQuery { container: Some("app".into()), follow: true, timestamps: true, tail_lines: Some(10), ..Default::default() }
        );
        assert_eq!(log_query(&q(&[("tailLines", "x")]), "web", "app".into()).unwrap_err().code, 400);
        let e = log_query(&q(&[("tailLines", "-1"), ("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")]), "web", "app".into())
            .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with("PodLogOptions \"web\" is invalid: [tailLines: Invalid value: -1"), "{}", e.message);
        assert_eq!(log_query(&q(&[("sinceTime", "yesterday")]), "web", "app".into()).unwrap_err().code, 400);
    }

    #[test]
    fn exec_options_keep_every_command_word() {
        let o = ExecOptions::parse(Some("command=sh&command=-c&command=echo%20hi&container=app&stdout=true&stderr=true&tty=false"));
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert_eq!((o.container.as_deref(), o.stdin, o.stdout, o.stderr, o.tty), (Some("app"), false, true, true, false));
    }

    #[test]
    fn protocols_prefer_v5() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(pick_protocol([h(V4), h(V5)].iter()).unwrap(), Protocol::V5);
        assert_eq!(pick_protocol([h(V4)].iter()).unwrap(), Protocol::V4);
        assert_eq!(pick_protocol([h("channel.k8s.io")].iter()).unwrap_err().code, 400);
    }

    #[test]
    fn exit_codes_become_kubelet_statuses() {
        assert_eq!(exec_status(End { exit_code: Some(0), error: None }), json!({"metadata": {}, "status": "Success"}));
        let s = exec_status(End { exit_code: Some(3), error: None });
        assert_eq!((s["reason"].as_str(), s["details"]["causes"][0]["message"].as_str()), (Some("NonZeroExitCode"), Some("3")));
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        let s = exec_status(End::failure(404, "NotFound", "container \"x\" not found"));
        assert_eq!((s["status"].as_str(), s["code"].as_u64()), (Some("Failure"), Some(404)));
    }
}
