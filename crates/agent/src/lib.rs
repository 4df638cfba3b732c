//! The worker's pod runtime: what `daas agent` uses to run the pods bound to its node.
//!
//! Start at [`pods::PodManager`]: the agent calls [`PodManager::sync`] for every pod it sees
//! bound to its node, [`PodManager::remove`] when one goes away, patches
//! [`PodManager::status`] whenever [`PodManager::changes`] names a pod, posts what
//! [`PodManager::events`] yields, and serves `kubectl logs` / `kubectl exec` with
//! [`PodManager::logs`] and [`PodManager::exec`]. After a restart it calls
//! [`PodManager::recover`] before anything else.
//!
//! Containers are started by a [`runtime::Runtime`]. The default, [`runtime::ProcessRuntime`],
//! runs each container's `command` + `args` **on the host** as a child process; the image is
//! only recorded. As root it adds pid/mount/uts/ipc namespaces (through `unshare(1)`) and a
//! cgroup v2 per pod that enforces cpu and memory limits; without root it degrades and says
//! so once at start-up (see [`runtime::Runtime::limitations`]).
//!
//! **Invariant:** a container's stdout and stderr go to files under the pod directory, never
//! to a pipe held by the agent, so an agent restart neither kills nor blocks a container.
//!
//! **Invariant:** a pid is trusted only together with the start time `/proc/<pid>/stat`
//! reported when the process was started, so a reused pid is never adopted or signalled.
//!
//! Security note: the process runtime is *not* a sandbox. Commands run with the agent's
//! user (or `runAsUser` when the agent is root), see the host's filesystem, and share the
//! host's network. Use it for trusted workloads or behind a CRI runtime.
#![forbid(unsafe_code)]

pub mod agent;
pub mod env;
pub mod logs;
pub mod node;
pub mod podio;
pub mod pods;
pub mod probes;
pub mod quantity;
pub mod runtime;
pub mod status;
pub mod tunnel;
pub mod volumes;

pub use logs::{LogOptions, LogStream};
pub use pods::{PodError, PodEvent, PodManager, Sources};
pub use runtime::{ExecOutput, Runtime};
