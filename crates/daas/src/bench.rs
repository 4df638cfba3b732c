//! `daas bench etcd`: a load tool for any etcd v3 endpoint (ours or a real etcd), printing
//! throughput and latency percentiles. Every run is bounded by `--total` operations and a
//! `--timeout`, and stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use daas_etcd::pb;
use hdrhistogram::Histogram;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Load an etcd v3 endpoint with puts, single-key ranges or txns
    Etcd(EtcdBench),
    /// Load a Kubernetes API server (ours or any other) through a kubeconfig
    K8s {
        #[command(subcommand)]
        mode: crate::bench_k8s::K8sBench,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    Put,
    Range,
    Txn,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EtcdBench {
    /// Comma-separated endpoints, e.g. http://127.0.0.1:2379
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrent clients (each has one request in flight)
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// gRPC connections shared by the clients
    #[arg(long, default_value_t = 1)]
    conns: usize,
    #[arg(long, value_enum, default_value_t = Op::Put)]
    op: Op,
    /// Key size in bytes
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Operations in all
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Distinct keys used (default: --total); range reads keys written by an earlier put run
    #[arg(long)]
    key_space: Option<u64>,
    /// Key prefix
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Runtime threads of the load tool (1 = a current-thread runtime, the cheapest per request)
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl BenchCommand {
    /// Runtime threads the load tool asks for.
    pub fn threads(&self) -> usize {
        match self {
            BenchCommand::Etcd(b) => b.threads,
            BenchCommand::K8s { .. } => 1,
        }
    }
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Etcd(b) => etcd(b).await,
        BenchCommand::K8s { mode } => crate::bench_k8s::run(mode).await,
    }
}

fn key_for(prefix: &str, i: u64, size: usize) -> Bytes {
    let mut k = format!("{prefix}{i:0width$}", width = size.saturating_sub(prefix.len()).max(1)).into_bytes();
    if k.len() > size && size > 0 {
        // Keep the distinguishing digits when the prefix does not fit.
        k.drain(..k.len() - size);
    }
    Bytes::from(k)
}

struct Outcome {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn etcd(b: EtcdBench) -> anyhow::Result<()> {
    if b.clients == 0 || b.conns == 0 || b.total == 0 {
        bail!("--clients, --conns and --total must be at least 1");
    }
    if b.endpoints.is_empty() {
        bail!("--endpoints names no endpoint");
    }
    let mut conns = Vec::with_capacity(b.conns);
    for i in 0..b.conns {
        let url = &b.endpoints[i % b.endpoints.len()];
        conns.push(GrpcConn::connect(url).await.with_context(|| format!("connecting to {url}"))?);
    }
    let key_space = b.key_space.unwrap_or(b.total).max(1);
    let value = Bytes::from(vec![b'v'; b.val_size]);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.clients {
        let conn = conns[c % conns.len()].clone();
        let (next, value, b2) = (next.clone(), value.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut out =
                Outcome { hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds"), errors: 0, first_error: None };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= b2.total {
                    break;
                }
                // Spread keys over the key space so writes do not all hit one key.
                let k = key_for(&b2.prefix, i.wrapping_mul(2_654_435_761) % key_space, b2.key_size);
                let t = Instant::now();
                let r = match b2.op {
                    Op::Put => {
                        conn.unary("/etcdserverpb.KV/Put", &pb::PutRequest { key: k, value: value.clone(), ..Default::default() }).await
                    }
                    Op::Range => conn.unary("/etcdserverpb.KV/Range", &pb::RangeRequest { key: k, ..Default::default() }).await,
                    Op::Txn => {
                        let txn = pb::TxnRequest {
                            compare: vec![pb::Compare {
                                result: pb::compare::CompareResult::Greater as i32,
                                target: pb::compare::CompareTarget::Mod as i32,
                                key: k.clone(),
                                target_union: Some(pb::compare::TargetUnion::ModRevision(-1)),
                                range_end: Bytes::new(),
                            }],
                            success: vec![pb::RequestOp {
                                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                                    key: k,
                                    value: value.clone(),
                                    ..Default::default()
                                })),
                            }],
                            failure: vec![],
                        };
                        conn.unary("/etcdserverpb.KV/Txn", &txn).await
                    }
                };
                let us = t.elapsed().as_micros() as u64;
                match r {
                    Ok(()) => {
                        let _ = out.hist.record(us.max(1));
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            out
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut first_error = None;
    let joined = tokio::time::timeout(Duration::from_secs(b.timeout), futures_join(tasks)).await.context("the run exceeded --timeout")?;
    for o in joined {
        let o = o?;
        hist.add(&o.hist)?;
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = hist.len();
    let ops = ok as f64 / elapsed;
    let ms = |us: u64| us as f64 / 1000.0;
    let (p50, p99, max) = (ms(hist.value_at_quantile(0.5)), ms(hist.value_at_quantile(0.99)), ms(hist.max()));
    if b.json {
        println!(
            "{}",
            serde_json::json!({
                "op": format!("{:?}", b.op).to_lowercase(), "clients": b.clients, "conns": b.conns,
                "total": b.total, "ok": ok, "errors": errors, "elapsed_s": elapsed, "ops_per_s": ops,
                "p50_ms": p50, "p99_ms": p99, "max_ms": max, "first_error": first_error,
            })
        );
    } else {
        println!(
            "op={:?} clients={} conns={} ok={ok} errors={errors} elapsed={elapsed:.2}s ops/s={ops:.0} p50={p50:.2}ms p99={p99:.2}ms max={max:.2}ms",
            b.op, b.clients, b.conns
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
    if errors > 0 && ok == 0 {
        bail!("every request failed");
    }
    Ok(())
}

/// A minimal gRPC client on one HTTP/2 connection: unary calls only, no middleware. The load
/// tool shares the machine with the server it measures, so its own cost per request matters;
/// this costs about half of a tonic channel's (measured with /usr/bin/time).
#[derive(Clone)]
struct GrpcConn {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl GrpcConn {
    async fn connect(url: &str) -> anyhow::Result<GrpcConn> {
        let uri: http::Uri = url.parse().with_context(|| format!("endpoint {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("endpoint {url:?}: the load tool speaks plaintext HTTP/2 only (http://host:port)");
        }
        let authority = uri.authority().map(|a| a.to_string()).context("endpoint has no host:port")?;
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&authority))
            .await
            .context("connect timed out")??;
        tcp.set_nodelay(true)?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(tcp)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(GrpcConn { send, authority })
    }

    /// Sends one request message and reads the reply; a non-zero grpc-status is an error.
    async fn unary(&self, path: &str, msg: &impl prost::Message) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(5 + msg.encoded_len());
        frame.push(0);
        frame.extend_from_slice(&(msg.encoded_len() as u32).to_be_bytes());
        msg.encode(&mut frame)?;
        let req = http::Request::post(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (resp, mut stream) = send.send_request(req, false)?;
        stream.send_data(Bytes::from(frame), true)?;
        let resp = resp.await?;
        let mut status = resp.headers().get("grpc-status").cloned();
        let mut message = resp.headers().get("grpc-message").cloned();
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        if let Some(trailers) = body.trailers().await? {
            status = trailers.get("grpc-status").cloned().or(status);
            message = trailers.get("grpc-message").cloned().or(message);
        }
        match status.as_ref().map(|s| s.as_bytes()) {
            Some(b"0") => Ok(()),
            Some(code) => bail!(
                "grpc-status {}: {}",
                String::from_utf8_lossy(code),
                message.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()).unwrap_or_default()
            ),
            None => bail!("the reply carried no grpc-status"),
        }
    }
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size() {
        assert_eq!(key_for("bench/", 7, 8).len(), 8);
        assert_eq!(key_for("", 7, 8).as_ref(), b"00000007");
        assert_eq!(key_for("bench/", 123456, 8).len(), 8);
        assert_ne!(key_for("bench/", 1, 8), key_for("bench/", 2, 8));
    }
}
