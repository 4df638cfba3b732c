//! Probes (startup, liveness, readiness) and lifecycle hooks (postStart, preStop): one check
//! of an `exec`, `httpGet`, `tcpSocket`, `grpc` or `sleep` action against a container
//! instance. When and how often they run, and what a result changes, is the pod manager's
//! business (`pods.rs`); this file only performs a check. Start at [`check`].
//!
//! Processes share the host's network, so probes go to the node IP (or `host`). The agent has
//! no TLS or gRPC client: an `HTTPS` httpGet and a `grpc` probe are checked as TCP connects,
//! which [`check`] notes in its warning.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::runtime::{ContainerLaunch, ExecRequest, InstanceId, Runtime};

/// The most of an exec probe's output kept in a failure message (the kubelet's limit).
const MAX_PROBE_OUTPUT: usize = 10 * 1024;

/// One action, normalised from a `Probe` or a `LifecycleHandler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Http {
        host: Option<String>,
        port: IntOrString,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: IntOrString,
    },
    Grpc {
        port: i32,
    },
    Sleep(Duration),
    /// A probe or hook with no action: always succeeds.
    Nothing,
}

/// A probe with the Kubernetes defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of a failed liveness or startup probe.
    pub termination_grace: Option<Duration>,
}

impl ProbeSpec {
    /// Defaults: period 10 s, timeout 1 s, success 1, failure 3.
    pub fn from_probe(p: &Probe) -> ProbeSpec {
        let secs =
            |v: Option<i32>, default: u64, min: u64| Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default).max(min));
        let count = |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0).unwrap_or(default);
        let action = if let Some(e) = &p.exec {
            Action::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(h) = &p.http_get {
            http_action(h)
        } else if let Some(t) = &p.tcp_socket {
            Action::Tcp { host: t.host.clone(), port: t.port.clone() }
        } else if let Some(g) = &p.grpc {
            Action::Grpc { port: g.port }
        } else {
            Action::Nothing
        };
        ProbeSpec {
            action,
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
            termination_grace: p.termination_grace_period_seconds.and_then(|s| u64::try_from(s).ok()).map(Duration::from_secs),
        }
    }
}

fn http_action(h: &k8s_openapi::api::core::v1::HTTPGetAction) -> Action {
    let path = h.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".to_string());
    Action::Http {
        host: h.host.clone().filter(|h| !h.is_empty()),
        port: h.port.clone(),
        path: if path.starts_with('/') { path } else { format!("/{path}") },
        https: h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
        headers: h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect(),
    }
}

/// The action of a lifecycle hook.
pub fn hook_action(h: &LifecycleHandler) -> Action {
    if let Some(e) = &h.exec {
        Action::Exec(e.command.clone().unwrap_or_default())
    } else if let Some(g) = &h.http_get {
        http_action(g)
    } else if let Some(t) = &h.tcp_socket {
        Action::Tcp { host: t.host.clone(), port: t.port.clone() }
    } else if let Some(s) = &h.sleep {
        Action::Sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)))
    } else {
        Action::Nothing
    }
}

/// What a probe or hook runs against.
#[derive(Clone)]
pub struct Target {
    pub runtime: Arc<dyn Runtime>,
    pub id: InstanceId,
    pub launch: Arc<ContainerLaunch>,
    /// Where network checks go when the action names no host: the node IP.
    pub host: String,
    pub ports: Vec<ContainerPort>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with the message the `Unhealthy` event carries.
    Failure(String),
    /// Succeeded, but only as a weaker check than asked for (HTTPS or gRPC as a TCP connect).
    Warning(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failure(_))
    }
}

/// Runs `action` once against `target`, giving up after `timeout`.
pub async fn check(action: &Action, target: &Target, timeout: Duration) -> Outcome {
    match action {
        Action::Nothing => Outcome::Success,
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Outcome::Success
        }
        Action::Exec(argv) => exec(argv, target, timeout).await,
        Action::Http { host, port, path, https, headers } => {
            let port = match resolve_port(port, &target.ports) {
                Ok(p) => p,
                Err(e) => return Outcome::Failure(e),
            };
            let host = host.as_deref().unwrap_or(&target.host);
            if *https {
                return match tcp(host, port, timeout).await {
                    Outcome::Success => {
                        Outcome::Warning(format!("HTTPS probe of {host}:{port}{path} checked as a TCP connect (no TLS client)"))
                    }
                    other => other,
                };
            }
            http_get(host, port, path, headers, timeout).await
        }
        Action::Tcp { host, port } => match resolve_port(port, &target.ports) {
            Ok(p) => tcp(host.as_deref().unwrap_or(&target.host), p, timeout).await,
            Err(e) => Outcome::Failure(e),
        },
        Action::Grpc { port } => {
            let Ok(port) = u16::try_from(*port) else { return Outcome::Failure(format!("invalid port {port}")) };
            match tcp(&target.host, port, timeout).await {
                Outcome::Success => Outcome::Warning(format!("gRPC probe of port {port} checked as a TCP connect (no gRPC client)")),
                other => other,
            }
        }
    }
}

async fn exec(argv: &[String], target: &Target, timeout: Duration) -> Outcome {
    let request = ExecRequest { argv: argv.to_vec(), stdin: None, timeout: Some(timeout) };
    match target.runtime.exec(&target.id, &target.launch, request).await {
        Ok(out) if out.timed_out => Outcome::Failure(format!("command {:?} timed out", argv.join(" "))),
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) => {
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            text.truncate(MAX_PROBE_OUTPUT);
            let text = String::from_utf8_lossy(&text).trim().to_string();
            if text.is_empty() {
                Outcome::Failure(format!("command {:?} exited with {}", argv.join(" "), out.exit_code))
            } else {
                Outcome::Failure(text)
            }
        }
        Err(e) => Outcome::Failure(e.to_string()),
    }
}

/// `host:port` with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A plain HTTP/1.1 GET; 200–399 is success, as for the kubelet (which also counts a
/// redirect as success).
async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)], timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    let url = format!("http://{addr}{path}");
    let host_header = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")).map_or_else(|| addr.clone(), |(_, v)| v.clone());
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("user-agent")) {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    let attempt = async {
        let mut stream = TcpStream::connect(&addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(status_code(&head))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::Failure(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
        Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
        Ok(Ok(None)) => Outcome::Failure(format!("Get \"{url}\": malformed HTTP response")),
        Ok(Ok(Some(code))) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(Some(code))) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// The status code of an HTTP/1.x status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A probe port: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let found = match port {
        IntOrString::Int(p) => Some(*p),
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())).map(|p| p.container_port),
        },
    };
    match found {
        Some(p) => u16::try_from(p).ok().filter(|&p| p != 0).ok_or_else(|| format!("invalid port number: {p}")),
        None => Err(format!("couldn't find port {port:?} among the container's ports")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn defaults_and_ports() {
        let p: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"port": "web", "path": "healthz"}})).unwrap();
        let spec = ProbeSpec::from_probe(&p);
        assert_eq!(
            (spec.period, spec.timeout, spec.success_threshold, spec.failure_threshold),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        match &spec.action {
            Action::Http { path, port, .. } => {
                assert_eq!(path, "/healthz");
                let ports = vec![ContainerPort { name: Some("web".into()), container_port: 8080, ..Default::default() }];
                assert_eq!(resolve_port(port, &ports), Ok(8080));
                assert!(resolve_port(port, &[]).is_err());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"garbage"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_checks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(http_get("127.0.0.1", port, "/", &[], t).await, Outcome::Success);
        assert_eq!(http_get("127.0.0.1", port, "/", &[], t).await, Outcome::Failure("HTTP probe failed with statuscode: 503".into()));
        // Nothing listens any more.
        server.await.unwrap();
        assert!(!tcp("127.0.0.1", port, t).await.is_success());
    }
}
