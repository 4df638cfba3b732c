//! What runs containers: the [`Runtime`] trait and the plain data it works on.
//!
//! A runtime knows nothing of Kubernetes objects: the pod manager resolves env, volumes and
//! limits into a [`ContainerLaunch`] and asks the runtime to start, signal, adopt or exec in
//! it. [`ProcessRuntime`] (in `process.rs`) is the default; [`containerd::CriRuntime`] (feature
//! `containerd`) runs the same launches as OCI containers through containerd's CRI service.

pub mod cgroup;
#[cfg(feature = "containerd")]
pub mod containerd;
#[cfg(feature = "containerd")]
pub mod cri;
pub mod process;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use process::{Isolation, ProcessConfig, ProcessRuntime};

/// What runs containers. The process runtime (default) runs every container as a child
/// process on the host; the containerd runtime runs it from its image through CRI.
///
/// Methods that wait return boxed futures so the trait stays object safe
/// (`Arc<dyn Runtime>`).
pub trait Runtime: Send + Sync {
    /// A short name for logs and `containerID` prefixes (`process`, `containerd`).
    fn name(&self) -> &'static str;

    /// `<name>://<version>` for the node's `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> String {
        format!("{}://{}", self.name(), env!("CARGO_PKG_VERSION"))
    }

    /// What this runtime cannot enforce on this machine, one sentence each. The pod manager
    /// logs them once at start-up.
    fn limitations(&self) -> Vec<String>;

    /// Whether `volumeMounts` are applied at their `mountPath`. When false, a volume is only
    /// at its host directory (see [`crate::PodManager::volume_paths`]).
    fn mounts_volumes(&self) -> bool;

    /// Whether the runtime writes each instance's CRI log at [`ContainerLaunch::log`] itself
    /// (containerd does); otherwise the pod manager converts [`ContainerLaunch::stdout`] and
    /// [`ContainerLaunch::stderr`] into it.
    fn writes_logs(&self) -> bool {
        false
    }

    /// Whether containers get PATH and HOME from their image (and HOSTNAME from the runtime);
    /// otherwise the pod manager sets them.
    fn image_env(&self) -> bool {
        false
    }

    /// Sets up what the pod's containers share (the process runtime: the pod's cgroup;
    /// containerd: the pod sandbox). Idempotent: an agent restart calls it again.
    fn prepare_pod<'a>(&'a self, pod: &'a PodSandbox) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Starts one instance of a container.
    fn start(&self, launch: ContainerLaunch) -> BoxFuture<'_, Result<Started, RuntimeError>>;

    /// Takes over an instance a previous agent started: [`Adoption::Running`] if `id` still
    /// names that live process (its [`Started::exit`] resolves when it ends), otherwise how it
    /// ended while no agent watched.
    fn adopt<'a>(&'a self, launch: &'a ContainerLaunch, id: &'a InstanceId) -> BoxFuture<'a, Adoption>;

    /// Sends `signal` to every process of the instance (its process group; containerd: a
    /// stop, whose own SIGKILL timeout is far beyond any grace period).
    fn signal<'a>(&'a self, id: &'a InstanceId, signal: StopSignal) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Runs a command in the context of a running instance (same env and working
    /// directory; same namespaces and cgroup where the runtime made them).
    fn exec<'a>(
        &'a self,
        id: &'a InstanceId,
        launch: &'a ContainerLaunch,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, RuntimeError>>;

    /// Removes what [`Runtime::prepare_pod`] set up, once every container has ended.
    fn cleanup_pod<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()>;

    /// Removes what this node's agent left in the runtime for pods `keep` says no (asked
    /// after the runtime has listed what it holds), e.g. after a cleanup that failed. Nothing
    /// by default.
    fn sweep<'a>(&'a self, keep: &'a (dyn Fn(&str) -> bool + Sync)) -> BoxFuture<'a, ()> {
        let _ = keep;
        Box::pin(async {})
    }
}

/// What a runtime learns about a pod when it prepares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    /// The directory holding the pod's container logs (`<container>/<attempt>.log`).
    pub log_dir: PathBuf,
}

/// A host directory made visible at a path inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// Resource limits a runtime may enforce, already converted from Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
    /// `limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `requests.cpu` in millicores (relative weight).
    pub cpu_request_millis: Option<u64>,
}

/// Everything a runtime needs to start one instance of a container, resolved by the pod
/// manager (env values, volume paths, limits). Persisted with the pod so that a later agent
/// can adopt or exec into the instance without asking the API server again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLaunch {
    pub pod_uid: String,
    /// The pod's hostname (its own UTS namespace only).
    pub hostname: String,
    pub container: String,
    /// The restart count this instance runs as.
    pub attempt: u32,
    /// The container's `image` (the process runtime only records it).
    #[serde(default)]
    pub image: String,
    /// `command`, `$(VAR)` references expanded; empty means the image's entrypoint. (State
    /// written before `args` existed has `argv`, command and args together.)
    #[serde(default, alias = "argv")]
    pub command: Vec<String>,
    /// `args`, `$(VAR)` references expanded; empty with an empty `command` means the image's
    /// default arguments.
    #[serde(default)]
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    /// `runAsUser` / `runAsGroup`, applied when the runtime can (root).
    pub run_as: Option<(u32, u32)>,
    /// Where the instance's stdout and stderr go (raw bytes; the pod manager turns them into
    /// the CRI log).
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The instance's CRI log, written by the runtime when [`Runtime::writes_logs`].
    #[serde(default)]
    pub log: PathBuf,
    /// Where the instance's exit code is written when it ends, so that a later agent learns
    /// it too.
    pub exit_file: PathBuf,
}

impl ContainerLaunch {
    /// `command` followed by `args`.
    pub fn argv(&self) -> Vec<String> {
        self.command.iter().chain(&self.args).cloned().collect()
    }
}

/// Which container instance this is. The process runtime: its pid and the start time
/// `/proc/<pid>/stat` gave for it (clock ticks since boot), so that a reused pid is never
/// mistaken for it. A CRI runtime: the runtime's container id (`handle`; pid and ticks 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstanceId {
    pub pid: u32,
    pub start_ticks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

impl InstanceId {
    /// The instance's `containerID` as pod status reports it (`<runtime>://<id>`).
    pub fn container_id(&self, runtime: &str) -> String {
        match &self.handle {
            Some(h) => format!("{runtime}://{h}"),
            None => format!("{runtime}://{}", self.pid),
        }
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.handle {
            Some(h) => f.write_str(h.get(..12).unwrap_or(h)),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code as Kubernetes reports it: the status, or 128 + the signal.
    pub code: i32,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (cgroup `memory.events`).
    pub oom_killed: bool,
    /// It ended while nobody watched and left no exit code (reported as
    /// `ContainerStatusUnknown`).
    pub lost: bool,
    pub finished_at: Timestamp,
}

impl Exit {
    /// A normal exit with `code`, now.
    pub fn with_code(code: i32) -> Exit {
        Exit { code, signal: None, oom_killed: false, lost: false, finished_at: Timestamp::now() }
    }
}

/// A started (or adopted) instance.
pub struct Started {
    pub id: InstanceId,
    /// The image the instance runs, as the runtime names it (`repo@sha256:…`), for the
    /// status's `imageID`; `None` where the runtime has no images.
    pub image_id: Option<String>,
    /// Resolves once when the instance has ended.
    pub exit: BoxFuture<'static, Exit>,
}

/// What [`Runtime::adopt`] found.
pub enum Adoption {
    Running(Started),
    Ended(Exit),
}

/// The two signals termination uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: asks the processes to stop.
    Term,
    /// SIGKILL: ends them.
    Kill,
}

/// A command to run in a container's context.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Bytes written to the command's stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// Killed (its whole process group) after this long; `None` waits for ever.
    pub timeout: Option<Duration>,
}

/// What a non-interactive exec returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit code (128 + signal when a signal ended it).
    pub exit_code: i32,
    /// The command was killed because it ran past [`ExecRequest::timeout`].
    pub timed_out: bool,
}

/// Errors of a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container cannot run on this runtime as specified; retrying will not help until
    /// the spec changes (reported as `CreateContainerError`).
    #[error("{0}")]
    Unsupported(String),
    /// The executable is missing or not executable (reported as `StartError`, exit 128).
    #[error("{0}")]
    NotExecutable(String),
    /// Starting a process failed.
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The image is not on this node and could not be pulled (reported as `ErrImagePull`).
    #[error("{0}")]
    Image(String),
    /// The instance is not running any more.
    #[error("the container {0} is not running")]
    NotRunning(String),
    /// The runtime's service failed or is unreachable.
    #[error("{0}")]
    Service(String),
    /// A file or cgroup operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
