//! The agent's end of the reverse tunnel against the master's: a real WebSocket over loopback
//! TCP between `daas_agent::tunnel::run_with` and `daas_apiserver::tunnel::Tunnels`, with a
//! fake `PodIo`. Checks that the two implementations of the wire format agree: logs larger
//! than the flow-control window, agent-side errors, cancellation, exec with stdin, and
//! reconnection after the master was unreachable.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Path, State, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use daas_agent::tunnel::{self, ExecResult, LinkError, LogLines, LogQuery, PodIo, TunnelError};
use daas_apiserver::tunnel::{End, Event, ExecRequest, LogRequest, Tunnels};

/// Three flow-control windows: this arrives only if the master acknowledges as it reads.
const BIG: usize = 3 * 1024 * 1024;

/// Pods whose logs and commands are made up: `missing` does not exist, `big` logs `BIG`
/// bytes, anything else logs one line (and then waits, with follow).
struct FakePods {
    follow_dropped: Arc<AtomicBool>,
}

/// Sets its flag when dropped: shows that the agent let go of a follow stream.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl PodIo for FakePods {
    fn logs(&self, namespace: &str, pod: &str, query: LogQuery) -> BoxFuture<'_, Result<LogLines, TunnelError>> {
        let head = format!("{namespace}/{pod}/{} tail={:?}\n", query.container.as_deref().unwrap_or(""), query.tail_lines);
        let pod = pod.to_string();
        let flag = self.follow_dropped.clone();
        async move {
            match pod.as_str() {
                "missing" => Err(TunnelError::NotFound(format!("pods \"{pod}\" not found on this node"))),
                "big" => Ok(futures::stream::iter([Ok(Bytes::from(head)), Ok(Bytes::from(vec![b'x'; BIG]))]).boxed()),
                _ if query.follow => {
                    let guard = DropFlag(flag);
                    let lines = futures::stream::iter([Ok(Bytes::from(head))]).chain(futures::stream::pending::<Result<Bytes, String>>());
                    Ok(lines
                        .map(move |item| {
                            let _alive = &guard;
                            item
                        })
                        .boxed())
                }
                _ => Ok(futures::stream::iter([Ok(Bytes::from(head))]).boxed()),
            }
        }
        .boxed()
    }

    fn exec(
        &self,
        _namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<ExecResult, TunnelError>> {
        let pod = pod.to_string();
        let container = container.unwrap_or("").to_string();
        async move {
            if pod == "missing" {
                return Err(TunnelError::NotFound(format!("pods \"{pod}\" not found on this node")));
            }
            let mut stdout = stdin.unwrap_or_default();
            stdout.extend_from_slice(format!("{container}: {}", command.join(" ")).as_bytes());
            Ok(ExecResult { stdout, stderr: b"warning\n".to_vec(), exit_code: 3 })
        }
        .boxed()
    }
}

/// The master's tunnel endpoint without authentication (the real one, `Tunnels::open`,
/// admits only `system:node:<node>`).
async fn tunnel_route(State(tunnels): State<Arc<Tunnels>>, Path(node): Path<String>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| tunnels.attach(node, socket, None))
}

/// Serves the tunnel endpoint on `listener` with the API server's own connection loop.
fn master(listener: TcpListener) -> Arc<Tunnels> {
    let tunnels = Arc::new(Tunnels::default());
    let app = axum::Router::new().route("/api/v1/nodes/{node}/tunnel", axum::routing::get(tunnel_route)).with_state(tunnels.clone());
    let (_, serving) = daas_apiserver::serve_plaintext_on(listener, app, std::future::pending()).unwrap();
    tokio::spawn(serving);
    tunnels
}

/// An agent for `node` dialling `addr` over plain TCP until `stop`.
fn agent(addr: SocketAddr, node: &'static str, io: Arc<dyn PodIo>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let connect = move || async move {
        let tcp = TcpStream::connect(addr).await.map_err(|source| LinkError::Connect { addr: addr.to_string(), source })?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/api/v1/nodes/{node}/tunnel"), tcp)
            .await
            .map_err(tunnel::handshake_error)?;
        Ok::<_, LinkError>(ws)
    };
    tokio::spawn(tunnel::run_with(connect, io, stop))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn logs(pod: &str, follow: bool) -> LogRequest {
    LogRequest {
        namespace: "d".into(),
        pod: pod.into(),
        query: daas_apiserver::tunnel::LogQuery { container: Some("app".into()), follow, tail_lines: Some(5), ..Default::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_cross_the_tunnel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = master(listener);
    let dropped = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let task = agent(addr, "n1", Arc::new(FakePods { follow_dropped: dropped.clone() }), stop_rx);
    wait_for("the agent's tunnel", || tunnels.is_connected("n1")).await;
    assert_eq!(tunnels.connected(), ["n1"]);

    // Three windows of log: arrives whole only if acknowledgements flow back.
    let (out, err, end) = tunnels.logs("n1", logs("big", false)).unwrap().collect().await;
    assert_eq!(end, End::default());
    let head = b"d/big/app tail=Some(5)\n";
    assert_eq!(&out[..head.len()], head);
    assert_eq!(out.len(), head.len() + BIG);
    assert!(out[head.len()..].iter().all(|b| *b == b'x'));
    assert!(err.is_empty());

    // The agent's errors keep their code.
    let (_, _, end) = tunnels.logs("n1", logs("missing", false)).unwrap().collect().await;
    let failure = end.error.unwrap();
    assert_eq!((failure.code, failure.reason.as_str()), (404, "NotFound"));
    assert_eq!(failure.message, "pods \"missing\" not found on this node");

    // A follow stream opens, streams, and is let go on the agent when the reader leaves.
    let mut session = tunnels.logs("n1", logs("web", true)).unwrap();
    assert_eq!(session.next().await, Some(Event::Opened));
    assert_eq!(session.next().await, Some(Event::Stdout(Bytes::from_static(b"d/web/app tail=Some(5)\n"))));
    assert!(!dropped.load(Ordering::SeqCst));
    drop(session);
    wait_for("the agent to drop the cancelled log stream", || dropped.load(Ordering::SeqCst)).await;

    // Exec with stdin larger than one frame, then without stdin.
    let input = vec![b'i'; 100 * 1024];
    let req = ExecRequest {
        namespace: "d".into(),
        pod: "web".into(),
        container: Some("app".into()),
        command: vec!["cat".into(), "-".into()],
        stdin: Some(input.clone()),
    };
    let (out, err, end) = tunnels.exec("n1", req).unwrap().collect().await;
    let mut expected = input;
    expected.extend_from_slice(b"app: cat -");
    assert_eq!(out, expected);
    assert_eq!(err, b"warning\n");
    assert_eq!(end, End { exit_code: Some(3), error: None });
    let req = ExecRequest { namespace: "d".into(), pod: "web".into(), container: None, command: vec!["true".into()], stdin: None };
    let (out, _, end) = tunnels.exec("n1", req).unwrap().collect().await;
    assert_eq!((out.as_slice(), end.exit_code), (&b": true"[..], Some(3)));
    let req = ExecRequest { namespace: "d".into(), pod: "missing".into(), container: None, command: vec!["true".into()], stdin: None };
    let (_, _, end) = tunnels.exec("n1", req).unwrap().collect().await;
    assert_eq!(end.error.map(|f| f.code), Some(404));

    // Requests run concurrently over the one connection.
    let (a, b) = tokio::join!(
        tunnels.logs("n1", logs("big", false)).unwrap().collect(),
        tunnels.logs("n1", logs("small", false)).unwrap().collect()
    );
    assert_eq!((a.0.len(), b.0.as_slice()), (head.len() + BIG, &b"d/small/app tail=Some(5)\n"[..]));

    assert_eq!(tunnels.logs("n2", logs("web", false)).unwrap_err().to_string(), "the agent on node \"n2\" is not connected");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    wait_for("the master to notice the agent left", || !tunnels.is_connected("n1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_dialling_until_the_master_is_up() {
    // Take a free port, leave it closed for a while, then serve on it.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = agent(addr, "n1", Arc::new(FakePods { follow_dropped: Arc::default() }), stop_rx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tunnels = master(TcpListener::bind(addr).await.unwrap());
    wait_for("the agent to retry", || tunnels.is_connected("n1")).await;
    let (out, _, _) = tunnels.logs("n1", logs("web", false)).unwrap().collect().await;
    assert_eq!(out, b"d/web/app tail=Some(5)\n");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// A master whose tunnel credentials can be revoked: once `revoked`, new tunnels are refused
/// (as authentication refuses a revoked token) and open ones fail their check at the next ping.
fn revocable_master(listener: TcpListener, revoked: Arc<AtomicBool>) -> Arc<Tunnels> {
    let tunnels = Arc::new(Tunnels::with_ping_interval(Duration::from_millis(100)));
    let route = {
        let (tunnels, revoked) = (tunnels.clone(), revoked.clone());
        move |Path(node): Path<String>, ws: WebSocketUpgrade| {
            let (tunnels, revoked) = (tunnels.clone(), revoked.clone());
            async move {
                use axum::response::IntoResponse as _;
                if revoked.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::UNAUTHORIZED.into_response();
                }
                let valid: daas_apiserver::tunnel::Validity =
                    Arc::new(move || if revoked.load(Ordering::SeqCst) { Err("revoked".to_string()) } else { Ok(()) });
                ws.on_upgrade(move |socket| tunnels.attach(node, socket, Some(valid)))
            }
        }
    };
    let app = axum::Router::new().route("/api/v1/nodes/{node}/tunnel", axum::routing::get(route));
    let (_, serving) = daas_apiserver::serve_plaintext_on(listener, app, std::future::pending()).unwrap();
    tokio::spawn(serving);
    tunnels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_closes_a_tunnel_whose_token_was_revoked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let revoked = Arc::new(AtomicBool::new(false));
    let tunnels = revocable_master(listener, revoked.clone());
    let (stop, stop_rx) = watch::channel(false);
    let task = agent(addr, "n1", Arc::new(FakePods { follow_dropped: Arc::new(AtomicBool::new(false)) }), stop_rx);
    wait_for("the agent's tunnel", || tunnels.is_connected("n1")).await;
    // Pings come and go; the tunnel stays while the token is good.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tunnels.is_connected("n1"));
    // The agent keeps its end open (as a misbehaving one would); the master closes it anyway.
    revoked.store(true, Ordering::SeqCst);
    wait_for("the tunnel closed by the master", || !tunnels.is_connected("n1")).await;
    // The agent's reconnection attempts are refused: it stays closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!tunnels.is_connected("n1"));
    stop.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
