//! Wiring of `daas server` and the offline `daas store` commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use daas_store::{KeyFileProvider, KeyProvider, Store, StoreConfig};

use crate::config::ServerConfig;

/// Opens the store the configuration names, creating data dir and key file on first start.
fn open_store(cfg: &ServerConfig) -> anyhow::Result<Store> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let provider: Arc<dyn KeyProvider> = Arc::new(KeyFileProvider::open_or_create(&cfg.kek_file)?);
    tracing::warn!(
        kek_file = %cfg.kek_file.display(),
        "the key-encryption key comes from a local key file (no TEE sealing provider yet): sealing protects the data file, not against whoever can read the key file"
    );
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
    tracing::info!(data_dir = %cfg.data_dir.display(), "starting daas server");
    let store = open_store(&cfg)?;
    let mut ecfg = daas_etcd::EtcdConfig::new(cfg.etcd_listen);
    ecfg.tls = cfg.etcd_tls.clone();
    ecfg.max_request_bytes = cfg.max_request_bytes;
    ecfg.progress_interval = cfg.watch_progress_interval;
    let (addr, serving) = daas_etcd::serve(store.clone(), ecfg, shutdown_signal()?).await?;
    if !addr.ip().is_loopback() && cfg.etcd_tls.is_none() {
        tracing::warn!(%addr, "the etcd API listens beyond loopback without TLS");
    }
    tracing::info!(%addr, tls = cfg.etcd_tls.is_some(), "etcd v3 API listening");
    // A line on stdout that scripts can wait for.
    println!("daas: etcd API on {}://{addr}", if cfg.etcd_tls.is_some() { "https" } else { "http" });
    serving.await?;
    drop(store);
    tracing::info!("stopped");
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
            let store = open_store(&resolve(a)?)?;
            let id = store.rotate_dek().await?;
            println!("active data key is now {id}");
        }
        StoreCommand::Reencrypt(a) => {
            let store = open_store(&resolve(a)?)?;
            let n = store.reencrypt().await?;
            println!("re-sealed {n} values under data key {}", store.status().active_dek);
        }
        StoreCommand::Rewrap { args, new_kek_file } => {
            let store = open_store(&resolve(args)?)?;
            let new = Arc::new(KeyFileProvider::open_or_create(&new_kek_file)?);
            let n = store.rewrap(new).await?;
            println!("re-wrapped {n} data keys; start the server with --kek-file {}", new_kek_file.display());
        }
        StoreCommand::Status(a) => {
            let store = open_store(&resolve(a)?)?;
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
