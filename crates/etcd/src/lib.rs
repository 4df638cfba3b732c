//! etcd v3 gRPC face over any [`daas_store::KvBackend`]: KV, Watch, Lease, Maintenance and
//! Cluster.MemberList, so `etcdctl` and etcd client libraries work against the daas store.
//!
//! A thin adapter: each RPC validates, converts to store types ([`convert`]), delegates, and
//! maps errors through the one table in [`status`]. It holds no state of its own beyond open
//! streams. Entry point: [`serve`]. The generated client in [`pb`] is used by the load tool.
#![forbid(unsafe_code)]

pub mod convert;
mod kv;
mod lease;
mod maintenance;
pub mod status;
mod unsupported;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use daas_store::KvBackend;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// Messages and services generated from `proto/` (etcd's field numbers).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub use etcdserverpb::*;
}

/// The version reported by Maintenance.Status: the etcd API level this face implements.
pub const API_VERSION: &str = "3.4.0";

/// gRPC framing allowance above the largest request, as etcd grants (512 KiB); a message over
/// `max_request_bytes` plus this is refused as RESOURCE_EXHAUSTED, as grpc-go refuses it for etcd.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// TLS material for the etcd listener.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// How the etcd face listens and answers.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Largest request accepted, as etcd's `--max-request-bytes` (default 1.5 MiB).
    pub max_request_bytes: usize,
    /// Interval of progress notifications for watches that asked for them (etcd: 10 min).
    pub progress_interval: Duration,
    /// Member name reported by MemberList.
    pub member_name: String,
}

impl EtcdConfig {
    pub fn new(listen: SocketAddr) -> Self {
        EtcdConfig {
            listen,
            tls: None,
            max_request_bytes: 3 * 1024 * 1024 / 2,
            progress_interval: Duration::from_secs(600),
            member_name: "daas".into(),
        }
    }

    /// The client URL this member advertises.
    pub fn client_url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.listen)
    }
}

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading TLS file {path}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    #[error("etcd listener")]
    Transport(#[from] tonic::transport::Error),
    #[error("reading store status: {0}")]
    Backend(String),
    #[error("binding {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile { path: path.clone(), source })
}

/// Binds the listener; returns the address actually bound (useful with port 0) and a future
/// that serves until `shutdown` resolves.
pub async fn serve<B: KvBackend>(
    backend: B,
    config: EtcdConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = Result<(), ServeError>>), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let mut builder =
        Server::builder().tcp_nodelay(true).http2_keepalive_interval(Some(Duration::from_secs(30))).layer(unsupported::ExplainLayer);
    if let Some(tls) = &config.tls {
        let mut t = ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(t)?;
    }
    let max = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut cfg = config.clone();
    cfg.listen = local;
    let status = backend.status().await.map_err(|e| ServeError::Backend(e.to_string()))?;
    let face = kv::Face::new(backend, cfg, status.cluster_id, status.member_id);
    use pb::cluster_server::ClusterServer;
    use pb::kv_server::KvServer;
    use pb::lease_server::LeaseServer;
    use pb::maintenance_server::MaintenanceServer;
    use pb::watch_server::WatchServer;
    let router = builder
        // KV requests may be larger than the gRPC limit up to a hard cap, so that the handler can
        // refuse them with etcd's RESOURCE_EXHAUSTED rather than tonic's decoder error.
        .add_service(KvServer::new(face.clone()).max_decoding_message_size(4 * max))
        .add_service(WatchServer::new(face.clone()).max_decoding_message_size(max))
        .add_service(LeaseServer::new(face.clone()).max_decoding_message_size(max))
        .add_service(MaintenanceServer::new(face.clone()).max_decoding_message_size(max))
        .add_service(ClusterServer::new(face).max_decoding_message_size(max));
    // Request/response RPCs must not wait on Nagle's algorithm.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let fut = async move {
        router.serve_with_incoming_shutdown(incoming, shutdown).await?;
        Ok(())
    };
    Ok((local, fut))
}
