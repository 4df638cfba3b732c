//! `daas agent`: flags into the agent's configuration, the pod manager, signals. The work is
//! in `daas-agent`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use daas_chain::SuiKey;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The master's HTTPS address, e.g. https://10.0.0.5:6443
    #[arg(long)]
    server: String,
    /// This node's name (a DNS subdomain); the stake must name it
    #[arg(long)]
    node_name: String,
    /// The staker's Sui key (suiprivkey as the Sui CLI writes it, base64, or a sui.keystore)
    #[arg(long)]
    sui_key: PathBuf,
    /// The stake object (0x…) that backs this node
    #[arg(long)]
    stake_object: String,
    /// YAML attestation policy (expect-pcrs, expect-measurement, simulated-platform-keys, danger-accept-simulation)
    #[arg(long)]
    attestation_policy: Option<PathBuf>,
    /// DANGER: accept a master that runs on the SIMULATED TEE (no hardware protection)
    #[arg(long)]
    danger_accept_simulation: bool,
    /// Where pods, their logs and the agent's token live
    #[arg(long, default_value = "/var/lib/daas-agent")]
    data_dir: PathBuf,
    /// Health endpoint (`/healthz`), e.g. 127.0.0.1:10248; off when absent
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Node status, Lease and heartbeat period
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_duration)]
    heartbeat: Duration,
    /// Most pods this node runs
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// What runs containers: `process` (each container a host process running its command)
    /// or `containerd` (OCI containers from their images, through containerd's CRI; only in
    /// builds with the `containerd` feature)
    #[arg(long, default_value = "process")]
    runtime: String,
    /// containerd's socket (runtime containerd)
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd_socket: PathBuf,
    /// A directory of OCI image archives (*.tar) imported into containerd at start and when a
    /// pod names a missing image (runtime containerd)
    #[arg(long)]
    image_dir: Option<PathBuf>,
}

/// ConfigMaps and Secrets for pods, read through the agent's client once it has joined.
#[derive(Default)]
struct ApiSources {
    client: parking_lot::RwLock<Option<kube::Client>>,
}

impl ApiSources {
    fn client(&self) -> Result<kube::Client, String> {
        self.client.read().clone().ok_or_else(|| "the agent has not joined the cluster yet".to_string())
    }
}

impl daas_agent::pods::Sources for ApiSources {
    fn config_map(&self, ns: &str, name: &str) -> BoxFuture<'_, Result<Option<ConfigMap>, String>> {
        let (ns, name) = (ns.to_string(), name.to_string());
        Box::pin(async move {
            let api: kube::Api<ConfigMap> = kube::Api::namespaced(self.client()?, &ns);
            api.get_opt(&name).await.map_err(|e| e.to_string())
        })
    }

    fn secret(&self, ns: &str, name: &str) -> BoxFuture<'_, Result<Option<Secret>, String>> {
        let (ns, name) = (ns.to_string(), name.to_string());
        Box::pin(async move {
            let api: kube::Api<Secret> = kube::Api::namespaced(self.client()?, &ns);
            api.get_opt(&name).await.map_err(|e| e.to_string())
        })
    }
}

#[cfg(feature = "containerd")]
async fn containerd_runtime(a: &AgentArgs) -> anyhow::Result<Arc<dyn daas_agent::runtime::Runtime>> {
    use daas_agent::runtime::containerd::{ContainerdConfig, ContainerdRuntime};
    let mut config = ContainerdConfig::new(a.containerd_socket.clone());
    config.image_dir.clone_from(&a.image_dir);
    config.node = Some(a.node_name.clone());
    Ok(Arc::new(ContainerdRuntime::connect(config).await.map_err(anyhow::Error::msg)?))
}

#[cfg(not(feature = "containerd"))]
async fn containerd_runtime(_: &AgentArgs) -> anyhow::Result<Arc<dyn daas_agent::runtime::Runtime>> {
    anyhow::bail!("--runtime containerd: this daas was built without the containerd feature (cargo build --features containerd)")
}

pub async fn run(a: AgentArgs) -> anyhow::Result<()> {
    let key = Arc::new(SuiKey::read(&a.sui_key)?);
    let mut policy = daas_tee::Policy::default();
    if let Some(f) = &a.attestation_policy {
        daas_attest::load_policy(f, &mut policy)?;
    }
    policy.danger_accept_simulation |= a.danger_accept_simulation;
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating {}", a.data_dir.display()))?;
    let sources = Arc::new(ApiSources::default());
    let pod_config = daas_agent::pods::Config::new(a.data_dir.clone(), a.node_name.clone(), "127.0.0.1".into());
    let pods = match a.runtime.as_str() {
        "process" => daas_agent::pods::PodManager::with_config(pod_config, sources.clone()),
        "containerd" => daas_agent::pods::PodManager::with_runtime(pod_config, containerd_runtime(&a).await?, sources.clone()),
        other => anyhow::bail!("--runtime {other:?}: expected process or containerd"),
    };
    let cfg = daas_agent::agent::Config {
        server: a.server.trim_end_matches('/').to_string(),
        node: a.node_name.clone(),
        key,
        stake_object: a.stake_object.clone(),
        policy,
        data_dir: a.data_dir.clone(),
        heartbeat: a.heartbeat,
        max_pods: a.max_pods,
        timeout: Duration::from_secs(10),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        }
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = a.listen {
        let socket = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = socket.accept().await else { continue };
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt as _;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        .await;
                });
            }
        });
    }
    let client_slot = sources.clone();
    daas_agent::agent::run(cfg, pods, stop_rx, move |c| *client_slot.client.write() = Some(c)).await.map_err(|e| anyhow::anyhow!("{e}"))
}
