//! `daas`: the K3s-DaaS binary. `daas server` runs the Nautilus master (for now: the TEE, the
//! sealed store, its etcd face and the HTTPS trust endpoints); `daas attest verify` checks a
//! master's attestation; `daas store …` maintains a store's keys offline; `daas bench …` is
//! the load tool. Only wiring lives here; the crates own the logic.
#![forbid(unsafe_code)]

mod agent_cmd;
mod attest;
mod bench;
mod bench_k8s;
mod bench_podstart;
mod bench_sched;
mod config;
mod dev;
mod inproc;
mod login;
mod oci_image;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc instead of glibc malloc. glibc's per-thread arenas grew and shrank constantly under
/// load (0.6 `mprotect` calls per request); mimalloc returned freed memory to the OS so eagerly
/// that the writer spent a fifth of its time faulting it back in after each checkpoint.
/// jemalloc keeps freed pages for seconds (its default decay), which fits this pattern.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Verify a master's remote attestation (or a bare Nitro document)
    Attest {
        #[command(subcommand)]
        command: attest::AttestCommand,
    },
    /// Run a worker: attest the master, join with a stake, run the pods bound to this node
    Agent(agent_cmd::AgentArgs),
    /// Sign in as a tenant with a Sui key: attest the master, sign its login challenge, and
    /// get a token (in a kubeconfig) whose tier the address's stake decides
    Login(login::LoginArgs),
    /// Print the measurement (SHA-384 of this executable) that the simulated TEE reports
    Measure,
    /// Drive the development ledger (not a blockchain): keys, stakes, unstakes, slashes
    Dev {
        #[command(subcommand)]
        command: dev::DevCommand,
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

/// Builds the async runtime. One thread gives a current-thread runtime: on a small machine it
/// serves gRPC with markedly less CPU per request than a work-stealing pool, because a
/// connection's replies queue up in order and go out in one write (see ARCHITECTURE.md).
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    if let Err(e) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!("daas: invalid setting:\n  {e}");
        return ExitCode::from(2);
    }
    // Settings are resolved before the runtime exists, because they choose its size.
    let (threads, job) = match cli.command {
        Command::Server { config, settings } => match config::resolve(config.as_deref(), settings) {
            Ok(c) => (c.runtime_threads, Job::Server(c)),
            Err(errors) => {
                eprintln!("daas: invalid settings:");
                for e in errors {
                    eprintln!("  {e}");
                }
                return ExitCode::from(2);
            }
        },
        Command::Store { command } => (1, Job::Store(command)),
        Command::Bench { command } => (command.threads(), Job::Bench(command)),
        Command::Attest { command } => (1, Job::Attest(command)),
        Command::Measure => (1, Job::Measure),
        Command::Login(a) => (1, Job::Login(a)),
        Command::Agent(a) => (2, Job::Agent(a)),
        Command::Dev { command } => (1, Job::Dev(command)),
    };
    let rt = match runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("daas: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match job {
            Job::Server(cfg) => server::run(cfg).await,
            Job::Store(command) => server::store_command(command).await,
            Job::Bench(command) => bench::run(command).await,
            Job::Attest(command) => attest::run(command).await,
            Job::Measure => attest::measure(),
            Job::Login(a) => login::run(a).await,
            Job::Agent(a) => agent_cmd::run(a).await,
            Job::Dev(command) => dev::run(command),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A plain line for a person; with `--log-format json`, a JSON record like every other.
            match log_format {
                LogFormat::Text => eprintln!("daas: {e:#}"),
                LogFormat::Json => tracing::error!(error = format!("{e:#}"), "daas stopped on an error"),
            }
            ExitCode::FAILURE
        }
    }
}

enum Job {
    Server(config::ServerConfig),
    Store(server::StoreCommand),
    Bench(bench::BenchCommand),
    Attest(attest::AttestCommand),
    Measure,
    Login(login::LoginArgs),
    Agent(agent_cmd::AgentArgs),
    Dev(dev::DevCommand),
}
