//! `daas`: the K3s-DaaS binary. `daas server` runs the Nautilus master (for now: the sealed
//! store and its etcd face); `daas store …` maintains a store's keys offline; `daas bench …`
//! is the load tool. Only wiring lives here; the crates own the logic.

mod bench;
mod config;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of glibc malloc: with per-request allocations on several threads, glibc's
/// arenas grew and shrank constantly (0.6 `mprotect` calls per request, measured with strace).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "daas", version, about = "K3s-DaaS: Kubernetes as a decentralized service")]
struct Cli {
    /// Log format
    #[arg(long, global = true, env = "DAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (error, warn, info, debug, trace, or e.g. "info,daas_store=debug")
    #[arg(long, global = true, env = "DAAS_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Nautilus master: the sealed store and its etcd v3 API
    Server {
        /// YAML file with settings (keys named like the flags, e.g. `etcd-listen: 127.0.0.1:2379`)
        #[arg(long, env = "DAAS_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: config::ServerSettings,
    },
    /// Maintain a store's data keys (run while the server is stopped)
    Store {
        #[command(subcommand)]
        command: server::StoreCommand,
    },
    /// Load tools
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!("daas: invalid setting:\n  {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("daas: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Server { config, settings } => {
                let cfg = match config::resolve(config.as_deref(), settings) {
                    Ok(c) => c,
                    Err(errors) => {
                        eprintln!("daas: invalid settings:");
                        for e in errors {
                            eprintln!("  {e}");
                        }
                        return Ok(ExitCode::from(2));
                    }
                };
                server::run(cfg).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Store { command } => server::store_command(command).await.map(|()| ExitCode::SUCCESS),
            Command::Bench { command } => bench::run(command).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("daas: {e:#}");
            ExitCode::FAILURE
        }
    }
}
