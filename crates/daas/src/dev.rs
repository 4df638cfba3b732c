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

pub fn run(cmd: DevCommand) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    match cmd {
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
        DevCommand::Slash { ledger, stake, reason } => {
            let id = parse_id(&stake)?;
            ledger.open()?.slash(&id, &reason)?;
            println!("{id} slashed");
        }
    }
    Ok(())
}
