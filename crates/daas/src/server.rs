//! Wiring of `daas server` and the offline `daas store` commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use daas_apiserver::{Pki, TrustState};
use daas_store::{KeyFileProvider, KeyProvider, ProvidedKeyProvider, Store, StoreConfig};
use daas_tee::{Attester, EnclaveIdentity, TeeProvider};

use crate::config::ServerConfig;

/// Detects the TEE the configuration asks for.
fn tee(cfg: &ServerConfig) -> anyhow::Result<Arc<dyn TeeProvider>> {
    let tc = daas_tee::TeeConfig {
        choice: cfg.tee,
        production: cfg.tee_production,
        danger_allow_simulation: cfg.danger_allow_simulated_tee,
        simulation_key_file: cfg.data_dir.join("simulated-tee.key"),
        devices: daas_tee::DevicePaths::default(),
    };
    if cfg.tee_production && cfg.danger_allow_simulated_tee {
        tracing::warn!("DANGER: --danger-allow-simulated-tee is set: production mode will run on a SIMULATED TEE if no hardware is found");
    }
    Ok(daas_tee::detect(&tc)?)
}

/// The store's key provider: the TEE's sealing key, or a key file when one is configured.
fn key_provider(cfg: &ServerConfig, tee: &dyn TeeProvider) -> anyhow::Result<Arc<dyn KeyProvider>> {
    if let Some(path) = &cfg.kek_file {
        tracing::warn!(
            kek_file = %path.display(),
            tee = %tee.tee_type(),
            "the key-encryption key comes from a key file, not the TEE's sealing key: it protects the data file only as well as the key file is protected"
        );
        return Ok(Arc::new(KeyFileProvider::open_or_create(path)?));
    }
    let key = tee.sealing_key().with_context(|| format!("the {} TEE cannot provide the store's key-encryption key", tee.tee_type()))?;
    Ok(Arc::new(ProvidedKeyProvider::new(format!("tee-sealing:{}", tee.tee_type()), &key)?))
}

/// Opens the store the configuration names, creating the data dir on first start.
fn open_store(cfg: &ServerConfig, provider: Arc<dyn KeyProvider>) -> anyhow::Result<Store> {
    let mut sc = StoreConfig::new(&cfg.data_dir);
    sc.max_request_bytes = cfg.max_request_bytes;
    sc.max_txn_ops = cfg.max_txn_ops;
    sc.rotate_after_writes = cfg.dek_rotate_after;
    sc.wal_segment_bytes = cfg.wal_segment_bytes;
    sc.sealing = !cfg.danger_unsealed_storage;
    if cfg.danger_unsealed_storage {
        tracing::warn!("DANGER: --danger-unsealed-storage is set: values are written to disk IN THE CLEAR (benchmark mode)");
    }
    Ok(Store::open(sc, provider)?)
}

fn create_data_dir(cfg: &ServerConfig) -> anyhow::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))
}

/// The key provider and store, for the offline `daas store` commands.
fn open_offline_with_provider(cfg: &ServerConfig) -> anyhow::Result<(Store, Arc<dyn KeyProvider>)> {
    create_data_dir(cfg)?;
    let tee = tee(cfg)?;
    let provider = key_provider(cfg, tee.as_ref())?;
    Ok((open_store(cfg, provider.clone())?, provider))
}

fn open_offline(cfg: &ServerConfig) -> anyhow::Result<Store> {
    Ok(open_offline_with_provider(cfg)?.0)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives right after startup is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    // A large list briefly needs tens of MiB on a blocking-pool thread; jemalloc's background
    // thread hands such pages back to the OS after its decay time (10 s) even when that arena
    // sees no further allocations, so the server's RSS settles back after a burst.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(error = %e, "jemalloc background purging is unavailable");
    }
    tracing::info!(data_dir = %cfg.data_dir.display(), "starting daas server");
    create_data_dir(&cfg)?;
    let tee = tee(&cfg)?;
    let provider = key_provider(&cfg, tee.as_ref())?;
    let store = open_store(&cfg, provider.clone())?;

    // The enclave's identity and TLS: a fresh signing key per boot, the sealed cluster CA, and
    // a serving certificate issued by it.
    let identity = Arc::new(EnclaveIdentity::generate()?);
    let pki = Pki::load_or_create(&cfg.data_dir, provider.as_ref())?;
    let sans = daas_apiserver::pki::default_sans(cfg.https_listen, &cfg.tls_sans);
    let tls = pki.serving_config(&sans)?;
    let attester = Arc::new(Attester::new(tee.clone(), identity.clone(), pki.ca_sha256()));
    tracing::info!(
        tee = %tee.tee_type(),
        security_level = tee.security_level().0,
        enclave_public_key = %hex::encode(identity.public_key()),
        tls_ca_sha256 = %hex::encode(pki.ca_sha256()),
        "enclave identity ready"
    );
    let trust = Arc::new(TrustState {
        attester,
        components: {
            let mut c: Vec<String> = vec!["store".into(), "etcd-api".into(), "https-api".into(), "attestation".into()];
            if cfg.kubernetes_api {
                c.push("kubernetes-api".into());
                // The stake source, named for what it is.
                c.push(if cfg.sui_endpoint.is_some() { "sui-chain".into() } else { "development-ledger (not a blockchain)".into() });
            }
            c
        },
        key_provider: provider.name(),
        store_sealed: !cfg.danger_unsealed_storage,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower_stop = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let signal = shutdown_signal()?;
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });

    // The Kubernetes API. Bind first, so the kubeconfig names the real port.
    let https_socket =
        tokio::net::TcpListener::bind(cfg.https_listen).await.with_context(|| format!("listening on {}", cfg.https_listen))?;
    let https_addr = https_socket.local_addr()?;
    let local_url = {
        let ip = if https_addr.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { https_addr.ip() };
        format!("https://{}", std::net::SocketAddr::new(ip, https_addr.port()))
    };
    let pki = Arc::new(pki);
    let seal = if cfg.kubernetes_api { Some(start_chain(&cfg, &identity, stopped()).await?) } else { None };
    let authn = match &cfg.token_auth_file {
        Some(p) => daas_apiserver::k8s::auth::Authenticator::with_token_file(p).map_err(anyhow::Error::msg)?,
        None => daas_apiserver::k8s::auth::Authenticator::default(),
    };
    let authn = match &seal {
        Some(s) => authn.with_seal_tokens(s.verifier.clone()),
        None => authn,
    };
    let api_config = {
        let t = i64::try_from(cfg.default_unreachable_toleration.as_secs()).unwrap_or(300);
        daas_apiserver::k8s::ApiConfig {
            service_cidr: cfg.service_cidr,
            max_in_flight: cfg.max_requests_inflight,
            default_tolerations: (t, t),
            event_ttl: cfg.event_ttl,
            ..Default::default()
        }
    };
    let authz = daas_apiserver::k8s::auth::Authorizer { policy: cfg.authorization.clone() };
    let api = daas_apiserver::k8s::Api::new(store.clone(), authn, authz, api_config)
        .with_audit_log(&cfg.audit_log)
        .with_context(|| format!("opening the audit log {}", cfg.audit_log.display()))?
        .with_kubeconfigs(daas_apiserver::k8s::KubeconfigSource { pki: pki.clone(), server: local_url.clone() });
    let api = match (&seal, cfg.kubernetes_api) {
        (Some(s), true) => api.with_seal(s.clone()),
        (_, true) => api,
        (_, false) => api.disabled(),
    };
    let api = Arc::new(api);
    if cfg.kubernetes_api {
        api.bootstrap().await.map_err(|e| anyhow::anyhow!("creating the system namespaces: {e}"))?;
        if let Some(every) = cfg.compaction_interval {
            api.clone().spawn_compactor(every);
        }
        if let Some(seal) = &seal {
            daas_apiserver::chain::Follower::new(api.clone(), seal.clone(), cfg.sui_poll_interval).spawn(follower_stop.clone());
        }
        if !cfg.controllers.is_empty() {
            let client = crate::inproc::client(api.clone(), "system:kube-controller-manager");
            let mut id = [0u8; 6];
            rand_fill(&mut id);
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "daas".into());
            let ccfg = daas_controllers::Config {
                enabled: cfg.controllers.clone(),
                identity: format!("{host}_{}", hex::encode(id)),
                lease_duration: std::time::Duration::from_secs(15),
                renew_period: std::time::Duration::from_secs(2),
                nodes: daas_controllers::nodelifecycle::Settings {
                    grace: cfg.node_monitor_grace_period,
                    period: (cfg.node_monitor_grace_period / 8)
                        .clamp(std::time::Duration::from_millis(200), std::time::Duration::from_secs(5)),
                    default_toleration: cfg.default_unreachable_toleration,
                },
            };
            tokio::spawn(daas_controllers::run(client, ccfg, follower_stop.clone()));
        }
        write_admin_kubeconfig(&cfg.write_kubeconfig, &pki, &local_url)?;
    } else {
        tracing::info!("the Kubernetes API is disabled (--disable-kubernetes-api)");
    }
    let router = daas_apiserver::router(trust, api);
    let plaintext = match cfg.danger_insecure_http_listen {
        Some(listen) => {
            let socket = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
            let (addr, serving) = daas_apiserver::serve_plaintext_on(socket, router.clone(), stopped())?;
            tracing::warn!(%addr, "DANGER: the API is also served over plaintext HTTP (--danger-insecure-http-listen); bearer tokens only");
            Some((addr, tokio::spawn(serving)))
        }
        None => None,
    };
    let (https_addr, https) = daas_apiserver::serve_on(https_socket, tls, router, stopped())?;
    tracing::info!(addr = %https_addr, "HTTPS API listening");
    let https = tokio::spawn(https);
    println!("daas: https API on https://{https_addr}");
    if let Some((addr, _)) = &plaintext {
        println!("daas: DANGER plaintext API on http://{addr}");
    }
    if cfg.kubernetes_api {
        println!("daas: admin kubeconfig written to {}", cfg.write_kubeconfig.display());
    }

    let mut ecfg = daas_etcd::EtcdConfig::new(cfg.etcd_listen);
    ecfg.tls = cfg.etcd_tls.clone();
    ecfg.max_request_bytes = cfg.max_request_bytes;
    ecfg.progress_interval = cfg.watch_progress_interval;
    let (addr, serving) = daas_etcd::serve(store.clone(), ecfg, stopped()).await?;
    if !addr.ip().is_loopback() && cfg.etcd_tls.is_none() {
        tracing::warn!(%addr, "the etcd API listens beyond loopback without TLS");
    }
    tracing::info!(%addr, tls = cfg.etcd_tls.is_some(), "etcd v3 API listening");
    // A line on stdout that scripts can wait for.
    println!("daas: etcd API on {}://{addr}", if cfg.etcd_tls.is_some() { "https" } else { "http" });
    serving.await?;
    let _ = https.await;
    if let Some((_, serving)) = plaintext {
        let _ = serving.await;
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// The stake side: the chain client (of a Sui full node, or of the embedded development
/// ledger, served here on loopback), the challenges and the seal tokens.
async fn start_chain(
    cfg: &ServerConfig,
    identity: &Arc<EnclaveIdentity>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Arc<daas_apiserver::seal::Seal>> {
    let (endpoint, package, chain_name) = match (&cfg.sui_endpoint, cfg.sui_package) {
        (Some(e), Some(p)) => (e.clone(), p, "Sui".to_string()),
        (Some(_), None) => anyhow::bail!("--sui-package is required with --sui-endpoint"),
        (None, _) => {
            let path = cfg.data_dir.join("dev-ledger.json");
            let ledger = daas_chain::DevLedger::open(&path)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let (addr, serving) = ledger.serve(listener, shutdown)?;
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the development ledger stopped serving");
                }
            });
            tracing::warn!(
                %addr,
                path = %path.display(),
                "DEVELOPMENT LEDGER: stakes come from a local file, not from a blockchain (set --sui-endpoint for Sui)"
            );
            println!("daas: development ledger on http://{addr} (not a blockchain; package {})", ledger.package());
            (format!("http://{addr}"), ledger.package(), "the development ledger".to_string())
        }
    };
    let chain = daas_chain::ChainClient::new(&endpoint, package)?;
    let issuer = daas_chain::TokenIssuer::new(identity.clone(), cfg.seal_token_ttl);
    let verifier = Arc::new(daas_chain::TokenVerifier::new(issuer.public_key()));
    let [read, write, admin] = cfg.stake_tiers;
    Ok(Arc::new(daas_apiserver::seal::Seal {
        challenges: daas_chain::Challenges::new(&identity.public_key(), std::time::Duration::from_secs(300), 10_000),
        issuer,
        verifier,
        chain,
        min_stake: cfg.min_stake,
        tiers: daas_apiserver::seal::TierThresholds { read, write, admin },
        chain_name,
        wake: tokio::sync::Notify::new(),
        keys: daas_apiserver::chain::Keys::new(&package),
        metrics: Default::default(),
    }))
}

/// Random bytes for identities that only need to be unique.
fn rand_fill(b: &mut [u8]) {
    use std::io::Read as _;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(b);
    }
}

/// Writes a kubeconfig with a fresh `system:admin` (group `system:masters`) client
/// certificate, mode 0600, as k3s writes its k3s.yaml.
fn write_admin_kubeconfig(path: &std::path::Path, pki: &Pki, server: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (cert_pem, key_pem) = pki.client_certificate("system:admin", &["system:masters".to_string()], 365)?;
    let text = daas_apiserver::pki::kubeconfig(
        server,
        &pki.ca_pem(),
        "k3s-daas",
        "system:admin",
        &daas_apiserver::pki::Credentials::ClientCertificate { cert_pem, key_pem },
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Start a new data key for new writes (old values stay readable)
    RotateDek(StoreArgs),
    /// Re-seal every value under the active data key and drop unused data keys
    Reencrypt(StoreArgs),
    /// Wrap the data keys under a new key-encryption key file (created if missing)
    Rewrap {
        #[command(flatten)]
        args: StoreArgs,
        /// The new key-encryption key file; start the server with --kek-file pointing to it
        #[arg(long)]
        new_kek_file: PathBuf,
    },
    /// Print the store's status as JSON
    Status(StoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// YAML settings file (as for `daas server`)
    #[arg(long, env = "DAAS_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: crate::config::ServerSettings,
}

fn resolve(args: StoreArgs) -> anyhow::Result<ServerConfig> {
    crate::config::resolve(args.config.as_deref(), args.settings)
        .map_err(|errs| anyhow::anyhow!("invalid settings:\n  {}", errs.join("\n  ")))
}

pub async fn store_command(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::RotateDek(a) => {
            let store = open_offline(&resolve(a)?)?;
            let id = store.rotate_dek().await?;
            println!("active data key is now {id}");
        }
        StoreCommand::Reencrypt(a) => {
            let store = open_offline(&resolve(a)?)?;
            let n = store.reencrypt().await?;
            println!("re-sealed {n} values under data key {}", store.status().active_dek);
        }
        StoreCommand::Rewrap { args, new_kek_file } => {
            let cfg = resolve(args)?;
            let (store, old) = open_offline_with_provider(&cfg)?;
            let new = Arc::new(KeyFileProvider::open_or_create(&new_kek_file)?);
            let n = store.rewrap(new.clone()).await?;
            // The sealed cluster CA moves with the data keys.
            if Pki::rewrap(&cfg.data_dir, old.as_ref(), new.as_ref())? {
                println!("re-sealed the cluster CA");
            }
            println!("re-wrapped {n} data keys; start the server with --kek-file {}", new_kek_file.display());
        }
        StoreCommand::Status(a) => {
            let store = open_offline(&resolve(a)?)?;
            let s = store.status();
            let json = serde_json::json!({
                "revision": s.revision,
                "compact_revision": s.compact_revision,
                "db_size": s.db_size,
                "sealed": s.sealed,
                "key_provider": s.key_provider,
                "active_dek": s.active_dek,
            });
            println!("{json}");
        }
    }
    Ok(())
}
