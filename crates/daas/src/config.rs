//! Server configuration: defaults, then a YAML file (`--config`), then `DAAS_*` environment
//! variables, then flags. Everything is parsed here, once, and every invalid setting is
//! reported together before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Raw settings as they come from one source; names match the flags (kebab-case).
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerSettings {
    /// Where the store keeps its data [default: /var/lib/daas as root, ~/.local/share/daas otherwise]
    #[arg(long, env = "DAAS_DATA_DIR")]
    pub data_dir: Option<String>,
    /// Address of the etcd v3 gRPC listener [default: 127.0.0.1:2379]
    #[arg(long, env = "DAAS_ETCD_LISTEN")]
    pub etcd_listen: Option<String>,
    /// Address of the HTTPS API (attestation, health; Kubernetes API) [default: 0.0.0.0:6443]
    #[arg(long, env = "DAAS_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// Extra names or addresses for the serving certificate, comma-separated
    #[arg(long, env = "DAAS_TLS_SAN")]
    pub tls_san: Option<String>,
    /// Which TEE to use: auto, simulation, aws-nitro, amd-sev-snp, intel-tdx, intel-sgx, arm-trustzone [default: auto]
    #[arg(long, env = "DAAS_TEE")]
    pub tee: Option<String>,
    /// development or production; production refuses the simulated TEE [default: development]
    #[arg(long, env = "DAAS_TEE_MODE")]
    pub tee_mode: Option<String>,
    /// DANGER: run on the simulated TEE even in production mode
    #[arg(long, env = "DAAS_DANGER_ALLOW_SIMULATED_TEE", num_args = 0..=1, default_missing_value = "true")]
    pub danger_allow_simulated_tee: Option<bool>,
    /// PEM certificate for TLS on the etcd listener (with --etcd-key-file)
    #[arg(long, env = "DAAS_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<String>,
    /// PEM private key for TLS on the etcd listener
    #[arg(long, env = "DAAS_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<String>,
    /// PEM CA that etcd clients' certificates must chain to (mutual TLS)
    #[arg(long, env = "DAAS_ETCD_CLIENT_CA_FILE")]
    pub etcd_client_ca_file: Option<String>,
    /// Take the key-encryption key from this file (32 bytes, mode 0600; created if missing)
    /// instead of the TEE's sealing key (for TEEs without one: Nitro, TDX, OP-TEE)
    #[arg(long, env = "DAAS_KEK_FILE")]
    pub kek_file: Option<String>,
    /// Largest request accepted, in bytes [default: 1572864, as etcd]
    #[arg(long, env = "DAAS_MAX_REQUEST_BYTES", allow_hyphen_values = true)]
    pub max_request_bytes: Option<String>,
    /// Most operations per txn branch [default: 128, as etcd]
    #[arg(long, env = "DAAS_MAX_TXN_OPS", allow_hyphen_values = true)]
    pub max_txn_ops: Option<String>,
    /// Rotate the data key after this many values sealed under it [default: 1073741824]
    #[arg(long, env = "DAAS_DEK_ROTATE_AFTER", allow_hyphen_values = true)]
    pub dek_rotate_after: Option<String>,
    /// Interval of watch progress notifications, e.g. 10m, 30s [default: 10m]
    #[arg(long, env = "DAAS_WATCH_PROGRESS_INTERVAL", allow_hyphen_values = true)]
    pub watch_progress_interval: Option<String>,
    /// Threads serving requests: 1 runs a current-thread runtime (cheapest per request on small
    /// machines), more a work-stealing pool [default: 1]
    #[arg(long, env = "DAAS_RUNTIME_THREADS", allow_hyphen_values = true)]
    pub runtime_threads: Option<String>,
    /// Size of a write-ahead log segment in bytes; redb is checkpointed as each fills [default: 16777216]
    #[arg(long, env = "DAAS_WAL_SEGMENT_BYTES", allow_hyphen_values = true)]
    pub wal_segment_bytes: Option<String>,
    /// DANGER: store values in the clear (for measuring what sealing costs; never in production)
    #[arg(long, env = "DAAS_DANGER_UNSEALED_STORAGE", num_args = 0..=1, default_missing_value = "true")]
    pub danger_unsealed_storage: Option<bool>,
    /// Where to write the admin kubeconfig (mode 0600) [default: DATA_DIR/admin.kubeconfig]
    #[arg(long, env = "DAAS_WRITE_KUBECONFIG")]
    pub write_kubeconfig: Option<String>,
    /// IPv4 range Service ClusterIPs are allocated from [default: 10.43.0.0/16]
    #[arg(long, env = "DAAS_SERVICE_CIDR")]
    pub service_cidr: Option<String>,
    /// Bearer tokens: CSV lines token,user,uid,"group1,group2" (kube-apiserver's format)
    #[arg(long, env = "DAAS_TOKEN_AUTH_FILE")]
    pub token_auth_file: Option<String>,
    /// YAML policy of what the stake tiers read, write and admin may do
    #[arg(long, env = "DAAS_AUTHORIZATION_CONFIG")]
    pub authorization_config: Option<String>,
    /// Append a JSON line per mutating Kubernetes API request here [default: DATA_DIR/audit.log]
    #[arg(long, env = "DAAS_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Most Kubernetes API requests served at once (watches excepted); more get 429 [default: 400]
    #[arg(long, env = "DAAS_MAX_REQUESTS_INFLIGHT", allow_hyphen_values = true)]
    pub max_requests_inflight: Option<String>,
    /// Serve only the store (etcd API) and the trust endpoints, without the Kubernetes API
    #[arg(long, env = "DAAS_DISABLE_KUBERNETES_API", num_args = 0..=1, default_missing_value = "true")]
    pub disable_kubernetes_api: Option<bool>,
    /// DANGER: also serve the API over plaintext HTTP on this loopback address (bearer tokens
    /// only: no client certificates without TLS; anonymous requests still get 401)
    #[arg(long, env = "DAAS_DANGER_INSECURE_HTTP_LISTEN")]
    pub danger_insecure_http_listen: Option<String>,
    /// How often the Kubernetes API compacts the store's history, keeping one interval of it
    /// for watches to resume from, as kube-apiserver does; "off" disables it [default: 5m]
    #[arg(long, env = "DAAS_COMPACTION_INTERVAL")]
    pub compaction_interval: Option<String>,
    /// Sui full node (gRPC sui.rpc.v2), e.g. https://fullnode.testnet.sui.io:443; without it
    /// the master runs the embedded development ledger (NOT a blockchain) in DATA_DIR
    #[arg(long, env = "SUI_RPC_ENDPOINT")]
    pub sui_endpoint: Option<String>,
    /// Address of the published k8s_gateway package (required with --sui-endpoint)
    #[arg(long, env = "CONTRACT_ADDRESS")]
    pub sui_package: Option<String>,
    /// Least stake a worker needs, in the stake coin's units [default: 1000]
    #[arg(long, env = "DAAS_MIN_STAKE", allow_hyphen_values = true)]
    pub min_stake: Option<String>,
    /// Stake for the read, write and admin tiers [default: 100,1000,10000]
    #[arg(long, env = "DAAS_STAKE_TIERS")]
    pub stake_tiers: Option<String>,
    /// How long a seal token lives [default: 1h]
    #[arg(long, env = "DAAS_SEAL_TOKEN_TTL")]
    pub seal_token_ttl: Option<String>,
    /// How often the master reads its package's events from the chain; `POST
    /// /api/v1/sui-events` asks it to read at once [default: 1s]
    #[arg(long, env = "DAAS_SUI_POLL_INTERVAL")]
    pub sui_poll_interval: Option<String>,
    /// Controllers to run, in kube-controller-manager's syntax: `*` for all, `-name` to leave
    /// one out (`*,-deployment`), empty for none; names: scheduler, replicaset, deployment
    /// [default: *]
    #[arg(long, env = "DAAS_CONTROLLERS", allow_hyphen_values = true)]
    pub controllers: Option<String>,
    /// Silence after which a node is marked Unknown and tainted unreachable [default: 40s]
    #[arg(long, env = "DAAS_NODE_MONITOR_GRACE_PERIOD")]
    pub node_monitor_grace_period: Option<String>,
    /// tolerationSeconds every pod gets for node.kubernetes.io/unreachable and /not-ready
    /// unless it says otherwise: how long its pods stay on a failed node [default: 300]
    #[arg(long, env = "DAAS_DEFAULT_UNREACHABLE_TOLERATION_SECONDS")]
    pub default_unreachable_toleration_seconds: Option<String>,
    /// How long Events are kept after their last update, as kube-apiserver's `--event-ttl`
    /// [default: 1h]
    #[arg(long, env = "DAAS_EVENT_TTL")]
    pub event_ttl: Option<String>,
}

impl ServerSettings {
    /// `self` overridden by every setting `over` has.
    fn merge(self, over: ServerSettings) -> ServerSettings {
        macro_rules! pick {
            ($($f:ident),*) => { ServerSettings { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            data_dir,
            etcd_listen,
            https_listen,
            tls_san,
            tee,
            tee_mode,
            danger_allow_simulated_tee,
            etcd_cert_file,
            etcd_key_file,
            etcd_client_ca_file,
            kek_file,
            max_request_bytes,
            max_txn_ops,
            dek_rotate_after,
            watch_progress_interval,
            runtime_threads,
            wal_segment_bytes,
            danger_unsealed_storage,
            write_kubeconfig,
            service_cidr,
            token_auth_file,
            authorization_config,
            audit_log,
            max_requests_inflight,
            disable_kubernetes_api,
            danger_insecure_http_listen,
            compaction_interval,
            sui_endpoint,
            sui_package,
            min_stake,
            stake_tiers,
            seal_token_ttl,
            sui_poll_interval,
            controllers,
            node_monitor_grace_period,
            default_unreachable_toleration_seconds,
            event_ttl
        )
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub etcd_listen: SocketAddr,
    pub etcd_tls: Option<daas_etcd::TlsFiles>,
    pub https_listen: SocketAddr,
    pub tls_sans: Vec<String>,
    pub tee: daas_tee::TeeChoice,
    pub tee_production: bool,
    pub danger_allow_simulated_tee: bool,
    pub kek_file: Option<PathBuf>,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub dek_rotate_after: u64,
    pub watch_progress_interval: Duration,
    pub runtime_threads: usize,
    pub wal_segment_bytes: u64,
    pub danger_unsealed_storage: bool,
    pub write_kubeconfig: PathBuf,
    pub service_cidr: (std::net::Ipv4Addr, u8),
    pub token_auth_file: Option<PathBuf>,
    pub authorization: daas_apiserver::k8s::auth::Policy,
    pub audit_log: PathBuf,
    pub max_requests_inflight: usize,
    pub danger_insecure_http_listen: Option<SocketAddr>,
    /// `None`: never compact.
    pub compaction_interval: Option<Duration>,
    /// `None`: the development ledger.
    pub sui_endpoint: Option<String>,
    pub sui_package: Option<daas_chain::Address>,
    pub min_stake: u64,
    /// read, write, admin.
    pub stake_tiers: [u64; 3],
    pub seal_token_ttl: Duration,
    pub sui_poll_interval: Duration,
    /// The controllers that run (empty: none).
    pub controllers: Vec<String>,
    pub node_monitor_grace_period: Duration,
    pub default_unreachable_toleration: Duration,
    pub event_ttl: Duration,
    pub kubernetes_api: bool,
}

/// The default data directory: /var/lib/daas for root, ~/.local/share/daas otherwise.
pub fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/daas");
    }
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("daas"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".local/share/daas"),
    }
}

/// Parses `10m`, `30s`, `500ms`, `2h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (examples: 30s, 10m, 500ms)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!("{s:?} has an unknown unit {unit:?} (use ms, s, m or h)"));
        }
    };
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
}

fn read_file(path: &Path) -> Result<ServerSettings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ServerSettings::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// Resolves the final configuration from a config file (if any) and the flag/env settings.
/// Returns every problem found, one line each.
pub fn resolve(config_file: Option<&Path>, cli: ServerSettings) -> Result<ServerConfig, Vec<String>> {
    let mut errors = Vec::new();
    let file = match config_file {
        Some(p) => read_file(p).unwrap_or_else(|e| {
            errors.push(e);
            ServerSettings::default()
        }),
        None => ServerSettings::default(),
    };
    let s = file.merge(cli);

    fn num<T>(errors: &mut Vec<String>, name: &str, v: &Option<String>, default: T, min: T) -> T
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match v {
            None => default,
            Some(v) => match v.trim().parse::<T>() {
                Ok(n) if n >= min => n,
                Ok(_) => {
                    errors.push(format!("{name}: {v:?} must be at least {min}"));
                    default
                }
                Err(_) => {
                    errors.push(format!("{name}: {v:?} is not a whole number"));
                    default
                }
            },
        }
    }

    /// A duration setting: `default` when absent, an error (and `default`) when it does not
    /// parse or is below `min`.
    fn duration(errors: &mut Vec<String>, name: &str, v: Option<&str>, default: Duration, min: Duration) -> Duration {
        match v.map(parse_duration) {
            None => default,
            Some(Ok(d)) if d >= min => d,
            Some(Ok(_)) => {
                errors.push(format!("{name}: must be at least {min:?}"));
                default
            }
            Some(Err(e)) => {
                errors.push(format!("{name}: {e}"));
                default
            }
        }
    }

    let data_dir = s.data_dir.as_deref().map(PathBuf::from).unwrap_or_else(default_data_dir);
    if data_dir.as_os_str().is_empty() {
        errors.push("data-dir: must not be empty".into());
    }
    let etcd_listen = match s.etcd_listen.as_deref().unwrap_or("127.0.0.1:2379").parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            errors.push(format!("etcd-listen: {:?} is not an address like 127.0.0.1:2379", s.etcd_listen.as_deref().unwrap_or_default()));
            SocketAddr::from(([127, 0, 0, 1], 2379))
        }
    };
    let https_listen = match s.https_listen.as_deref().unwrap_or("0.0.0.0:6443").parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            errors.push(format!("https-listen: {:?} is not an address like 0.0.0.0:6443", s.https_listen.as_deref().unwrap_or_default()));
            SocketAddr::from(([0, 0, 0, 0], 6443))
        }
    };
    let tls_sans: Vec<String> =
        s.tls_san.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect();
    let tee = match s.tee.as_deref().unwrap_or("auto") {
        "auto" => daas_tee::TeeChoice::Auto,
        other => match daas_tee::TeeType::parse(other) {
            Some(t) => daas_tee::TeeChoice::Exactly(t),
            None => {
                errors.push(format!(
                    "tee: {other:?} is not one of auto, simulation, aws-nitro, amd-sev-snp, intel-tdx, intel-sgx, arm-trustzone"
                ));
                daas_tee::TeeChoice::Auto
            }
        },
    };
    let tee_production = match s.tee_mode.as_deref().unwrap_or("development") {
        "development" => false,
        "production" => true,
        other => {
            errors.push(format!("tee-mode: {other:?} is not development or production"));
            true
        }
    };
    let mut check_file = |name: &str, v: &Option<String>| -> Option<PathBuf> {
        let p = PathBuf::from(v.as_ref()?);
        if !p.is_file() {
            errors.push(format!("{name}: {} does not exist or is not a file", p.display()));
        }
        Some(p)
    };
    let cert = check_file("etcd-cert-file", &s.etcd_cert_file);
    let key = check_file("etcd-key-file", &s.etcd_key_file);
    let client_ca = check_file("etcd-client-ca-file", &s.etcd_client_ca_file);
    let token_auth_file = check_file("token-auth-file", &s.token_auth_file);
    let authorization_path = check_file("authorization-config", &s.authorization_config);
    let etcd_tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(daas_etcd::TlsFiles { cert, key, client_ca }),
        (None, None) => {
            if client_ca.is_some() {
                errors.push("etcd-client-ca-file: needs --etcd-cert-file and --etcd-key-file".into());
            }
            None
        }
        _ => {
            errors.push("etcd-cert-file and etcd-key-file must be given together".into());
            None
        }
    };
    let max_request_bytes = num(&mut errors, "max-request-bytes", &s.max_request_bytes, 1_572_864usize, 1024);
    let max_txn_ops = num(&mut errors, "max-txn-ops", &s.max_txn_ops, 128usize, 1);
    let dek_rotate_after = num(&mut errors, "dek-rotate-after", &s.dek_rotate_after, daas_store::DEFAULT_ROTATE_AFTER, 1);
    if dek_rotate_after > 1 << 32 {
        errors.push(format!("dek-rotate-after: {dek_rotate_after} exceeds 2^32, the AES-GCM limit for random nonces"));
    }
    let watch_progress_interval =
        duration(&mut errors, "watch-progress-interval", s.watch_progress_interval.as_deref(), Duration::from_secs(600), Duration::ZERO);
    let compaction_interval = match s.compaction_interval.as_deref() {
        None => Some(Duration::from_secs(300)),
        Some("off" | "0") => None,
        Some(v) => Some(parse_duration(v).unwrap_or_else(|e| {
            errors.push(format!("compaction-interval: {e}"));
            Duration::from_secs(300)
        })),
    };
    let sui_package = match s.sui_package.as_deref() {
        None => None,
        Some(p) => match p.parse::<daas_chain::Address>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!("sui-package: {p:?} is not a Sui address (0x followed by up to 64 hex digits)"));
                None
            }
        },
    };
    if s.sui_endpoint.is_some() && s.sui_package.is_none() {
        errors.push("sui-package: required with sui-endpoint (the address the k8s_gateway package is published at)".into());
    }
    let min_stake = num(&mut errors, "min-stake", &s.min_stake, 1000u64, 0);
    let stake_tiers = match s.stake_tiers.as_deref() {
        None => [100, 1000, 10_000],
        Some(t) => match t.split(',').map(|x| x.trim().parse::<u64>()).collect::<Result<Vec<_>, _>>().as_deref() {
            Ok([r, w, a]) if r <= w && w <= a => [*r, *w, *a],
            _ => {
                errors.push(format!("stake-tiers: {t:?} is not three non-decreasing amounts like 100,1000,10000 (read,write,admin)"));
                [100, 1000, 10_000]
            }
        },
    };
    let seal_token_ttl = duration(&mut errors, "seal-token-ttl", s.seal_token_ttl.as_deref(), Duration::from_secs(3600), Duration::ZERO);
    let sui_poll_interval =
        duration(&mut errors, "sui-poll-interval", s.sui_poll_interval.as_deref(), Duration::from_secs(1), Duration::from_millis(1));
    let controllers = daas_controllers::parse_controllers(s.controllers.as_deref().unwrap_or("*")).unwrap_or_else(|e| {
        errors.push(format!("controllers: {e}"));
        Vec::new()
    });
    let node_monitor_grace_period =
        duration(&mut errors, "node-monitor-grace-period", s.node_monitor_grace_period.as_deref(), Duration::from_secs(40), Duration::ZERO);
    let toleration_secs = num(&mut errors, "default-unreachable-toleration-seconds", &s.default_unreachable_toleration_seconds, 300u64, 0);
    let mut event_ttl = duration(&mut errors, "event-ttl", s.event_ttl.as_deref(), Duration::from_secs(3600), Duration::from_secs(1));
    if event_ttl > Duration::from_secs(365 * 24 * 3600) {
        errors.push("event-ttl: must be at most a year (8760h)".into());
        event_ttl = Duration::from_secs(3600);
    }
    let runtime_threads = num(&mut errors, "runtime-threads", &s.runtime_threads, 1usize, 1);
    let wal_segment_bytes = num(&mut errors, "wal-segment-bytes", &s.wal_segment_bytes, 16u64 << 20, 64 << 10);
    let kek_file = s.kek_file.as_deref().map(PathBuf::from);
    let write_kubeconfig = s.write_kubeconfig.as_deref().map(PathBuf::from).unwrap_or_else(|| data_dir.join("admin.kubeconfig"));
    let audit_log = s.audit_log.as_deref().map(PathBuf::from).unwrap_or_else(|| data_dir.join("audit.log"));
    let service_cidr = daas_apiserver::k8s::parse_cidr(s.service_cidr.as_deref().unwrap_or("10.43.0.0/16")).unwrap_or_else(|e| {
        errors.push(format!("service-cidr: {e}"));
        (std::net::Ipv4Addr::new(10, 43, 0, 0), 16)
    });
    let authorization = match authorization_path {
        Some(p) => daas_apiserver::k8s::auth::Policy::load(&p).unwrap_or_else(|e| {
            errors.push(format!("authorization-config: {e}"));
            Default::default()
        }),
        None => Default::default(),
    };
    let danger_insecure_http_listen = match s.danger_insecure_http_listen.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(a)) if a.ip().is_loopback() => Some(a),
        Some(Ok(a)) => {
            errors
                .push(format!("danger-insecure-http-listen: {a} is not a loopback address; plaintext is only served on 127.0.0.1 or ::1"));
            None
        }
        Some(Err(_)) => {
            errors.push(format!(
                "danger-insecure-http-listen: {:?} is not an address like 127.0.0.1:8080",
                s.danger_insecure_http_listen.as_deref().unwrap_or_default()
            ));
            None
        }
    };
    let max_requests_inflight = num(&mut errors, "max-requests-inflight", &s.max_requests_inflight, 400usize, 1);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ServerConfig {
        data_dir,
        etcd_listen,
        etcd_tls,
        https_listen,
        tls_sans,
        tee,
        tee_production,
        danger_allow_simulated_tee: s.danger_allow_simulated_tee.unwrap_or(false),
        kek_file,
        max_request_bytes,
        max_txn_ops,
        dek_rotate_after,
        watch_progress_interval,
        runtime_threads,
        wal_segment_bytes,
        danger_unsealed_storage: s.danger_unsealed_storage.unwrap_or(false),
        write_kubeconfig,
        service_cidr,
        token_auth_file,
        authorization,
        audit_log,
        max_requests_inflight,
        danger_insecure_http_listen,
        compaction_interval,
        sui_endpoint: s.sui_endpoint.clone(),
        sui_package,
        min_stake,
        stake_tiers,
        seal_token_ttl,
        sui_poll_interval,
        controllers,
        node_monitor_grace_period,
        default_unreachable_toleration: Duration::from_secs(toleration_secs),
        event_ttl,
        kubernetes_api: !s.disable_kubernetes_api.unwrap_or(false),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_all_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "etcd-listen: 127.0.0.1:1111\ndata-dir: /tmp/x\nmax-txn-ops: 7\n").unwrap();
        let cfg = resolve(Some(&f), ServerSettings { etcd_listen: Some("127.0.0.1:2222".into()), ..Default::default() }).unwrap();
        assert_eq!(cfg.etcd_listen.port(), 2222);
        assert_eq!(cfg.max_txn_ops, 7);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        let errs = resolve(
            None,
            ServerSettings {
                etcd_listen: Some("nowhere".into()),
                max_txn_ops: Some("-3".into()),
                watch_progress_interval: Some("5 parsecs".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "etcd-lisen: 127.0.0.1:1111\n").unwrap();
        let errs = resolve(Some(&f), ServerSettings::default()).unwrap_err();
        assert!(errs[0].contains("etcd-lisen"), "{errs:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}
