//! `daas dev …`: drive the development ledger (NOT a blockchain) that `daas server` embeds
//! when no Sui endpoint is configured. The commands edit DATA_DIR/dev-ledger.json; a running
//! server picks the change up on its next read. Keys are Sui keys in the Sui CLI's formats.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use daas_chain::{Address, DevLedger, SuiKey};

#[derive(clap::Subcommand, Debug)]
pub enum DevCommand {
    /// Make a Sui key (suiprivkey) and print its address
    Keygen {
        /// ed25519, secp256k1 or secp256r1
        #[arg(long, default_value = "ed25519")]
        scheme: String,
        /// Write the key here (mode 0600) instead of printing it
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Stake for a worker node on the development ledger; prints the stake object id
    Stake {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The staker's key file (suiprivkey, base64, or a sui.keystore)
        #[arg(long)]
        key: PathBuf,
        /// The node the stake backs
        #[arg(long)]
        node: String,
        #[arg(long)]
        amount: u64,
    },
    /// Request the unstake of one's own stake (the node loses its backing)
    Unstake {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        stake: String,
    },
    /// Submit a Kubernetes API request to the development ledger as a K8sAPIRequest event sent
    /// by KEY's address; the master applies it as that address. Prints <tx digest>/<event index>
    Request {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        key: PathBuf,
        /// The manifest (YAML or JSON, one object); the path and namespace come from it
        #[arg(short = 'f', long = "filename")]
        file: Option<PathBuf>,
        /// POST (create, the default), PUT, PATCH (merge patch), DELETE or GET
        #[arg(long, default_value = "POST")]
        method: String,
        /// The API path, instead of the one derived from the manifest
        #[arg(long)]
        path: Option<String>,
    },
    /// Slash a stake (the development ledger's stand-in for the admin capability)
    Slash {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[arg(long)]
        stake: String,
        /// Why (recorded in the SlashEvent)
        #[arg(long, default_value = "slashed by the development ledger's operator")]
        reason: String,
    },
    /// Pack host files into an OCI image archive for `daas agent --image-dir` (no registry
    /// needed), e.g. a static busybox with its applets
    OciImage(crate::oci_image::OciImageArgs),
}

#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    /// The server's data directory (the ledger is DATA_DIR/dev-ledger.json)
    #[arg(long, env = "DAAS_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl LedgerArgs {
    fn open(&self) -> anyhow::Result<DevLedger> {
        let dir = self.data_dir.clone().unwrap_or_else(crate::config::default_data_dir);
        if !dir.is_dir() {
            bail!("{} is not a data directory (start `daas server --data-dir {}` once, or pass --data-dir)", dir.display(), dir.display());
        }
        Ok(DevLedger::open(&dir.join("dev-ledger.json"))?)
    }
}

fn parse_id(s: &str) -> anyhow::Result<Address> {
    s.parse().map_err(|_| anyhow::anyhow!("{s:?} is not an object id (0x followed by hex)"))
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The path, namespace and resource a manifest's request goes to: the collection for POST,
/// the object otherwise.
fn request_path(m: &serde_json::Value, method: &str) -> anyhow::Result<(String, String, String)> {
    let api_version = m["apiVersion"].as_str().context("the manifest has no apiVersion")?;
    let kind = m["kind"].as_str().context("the manifest has no kind")?;
    let rt = daas_apiserver::k8s::registry::by_api_version_kind(api_version, kind)
        .with_context(|| format!("the API server does not serve {kind} in {api_version}"))?;
    let name = m.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or("");
    let namespace = if rt.namespaced { m.pointer("/metadata/namespace").and_then(|v| v.as_str()).unwrap_or("default") } else { "" };
    let base = if rt.group.is_empty() { format!("/api/{}", rt.version) } else { format!("/apis/{}/{}", rt.group, rt.version) };
    let mut path = if rt.namespaced { format!("{base}/namespaces/{namespace}/{}", rt.plural) } else { format!("{base}/{}", rt.plural) };
    if method != "POST" {
        if name.is_empty() {
            bail!("{method} needs metadata.name in the manifest");
        }
        path = format!("{path}/{name}");
    }
    Ok((path, namespace.to_string(), rt.plural.to_string()))
}

pub fn run(cmd: DevCommand) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    match cmd {
        DevCommand::OciImage(args) => crate::oci_image::run(args)?,
        DevCommand::Keygen { scheme, out } => {
            let key = SuiKey::generate(&scheme)?;
            let text = key.to_suiprivkey()?;
            match out {
                Some(path) => {
                    write_secret(&path, &format!("{text}\n"))?;
                    println!("{}", key.address());
                }
                None => println!("{text}\n{}", key.address()),
            }
        }
        DevCommand::Stake { ledger, key, node, amount } => {
            let key = SuiKey::read(&key)?;
            let rec = ledger.open()?.stake(key.address(), &node, amount, now_ms)?;
            println!("{}", rec.id);
        }
        DevCommand::Unstake { ledger, key, stake } => {
            let key = SuiKey::read(&key)?;
            let l = ledger.open()?;
            let id = parse_id(&stake)?;
            // Only the staker may unstake.
            let current = l.stake_record(&id)?;
            if current.staker != key.address() {
                bail!("stake {id} belongs to {}, not to {}", current.staker, key.address());
            }
            l.unstake(&id, now_ms)?;
            println!("{id} unstaking");
        }
        DevCommand::Request { ledger, key, file, method, path } => {
            let key = SuiKey::read(&key)?;
            let method = method.to_ascii_uppercase();
            let manifest: Option<serde_json::Value> = match &file {
                Some(f) => {
                    let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                    Some(serde_saphyr::from_str(&text).with_context(|| format!("{} is not a YAML or JSON object", f.display()))?)
                }
                None => None,
            };
            let (path, namespace, resource) = match (path, &manifest) {
                (Some(p), _) => {
                    let ns = p.split('/').skip_while(|s| *s != "namespaces").nth(1).unwrap_or("").to_string();
                    (p, ns, String::new())
                }
                (None, Some(m)) => request_path(m, &method)?,
                (None, None) => bail!("give -f MANIFEST or --path"),
            };
            let req = daas_chain::K8sApiRequest {
                method,
                path,
                namespace,
                resource_type: resource,
                payload: manifest.map(|m| m.to_string().into_bytes()).unwrap_or_default(),
                sender: key.address(),
                timestamp: now_ms,
            };
            let (digest, index) = ledger.open()?.submit_request(&req)?;
            println!("{digest}/{index}");
        }
        DevCommand::Slash { ledger, stake, reason } => {
            let id = parse_id(&stake)?;
            ledger.open()?.slash(&id, &reason)?;
            println!("{id} slashed");
        }
    }
    Ok(())
}
