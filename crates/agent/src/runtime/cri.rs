//! A small client for the Kubernetes Container Runtime Interface (CRI), API `runtime.v1`, as
//! containerd (1.6 and later) serves it on its unix socket.
//!
//! The messages are written by hand: no `protoc`, no build script. Each one carries only the
//! fields this agent sets or reads, under the field number and wire type that
//! `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto` gives it; fields left out here are skipped when a
//! response is decoded. Timestamps (`created_at`, `started_at`, `finished_at`) are nanoseconds
//! since the Unix epoch.
//!
//! [`CriClient`] makes one unary call per method of the two services,
//! `runtime.v1.RuntimeService` and `runtime.v1.ImageService`. Every call has a deadline, sent to
//! the runtime as `grpc-timeout` and enforced locally as well:
//!
//! * [`QUERY_TIMEOUT`] (10 s) for `Version` and every status and list call;
//! * [`LIFECYCLE_TIMEOUT`] (2 min) for running, stopping and removing sandboxes and for creating,
//!   starting and removing containers;
//! * `StopContainer`: the request's grace period plus [`LIFECYCLE_TIMEOUT`];
//! * `ExecSync`: the request's timeout plus [`QUERY_TIMEOUT`], or a day when the
//!   request has none (0);
//! * [`PULL_TIMEOUT`] (30 min) for `PullImage`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};

/// Deadline of `Version` and of the status and list calls.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of the sandbox and container lifecycle calls (run, create, start, stop, remove).
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Deadline of `PullImage`.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The longest grace period or exec timeout (in seconds) turned into a deadline; larger values
/// are clamped so the deadline stays representable in `grpc-timeout`.
const MAX_REQUEST_SECONDS: u64 = 24 * 60 * 60;

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/// Which namespace a container or sandbox uses (`runtime.v1.NamespaceMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NamespaceMode {
    /// Shared by all containers of the pod.
    Pod = 0,
    /// Private to the container.
    Container = 1,
    /// The host's namespace.
    Node = 2,
    /// The namespace of the container named by `target_id`.
    Target = 3,
}

/// Mount propagation of a [`Mount`] (`runtime.v1.MountPropagation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MountPropagation {
    /// No propagation (`rprivate`).
    PropagationPrivate = 0,
    /// Host mounts show up in the container (`rslave`).
    PropagationHostToContainer = 1,
    /// Both ways (`rshared`).
    PropagationBidirectional = 2,
}

/// State of a pod sandbox (`runtime.v1.PodSandboxState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    /// Running, with its network set up.
    SandboxReady = 0,
    /// Stopped, or not fully set up.
    SandboxNotready = 1,
}

/// State of a container (`runtime.v1.ContainerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    /// Created, not started yet.
    ContainerCreated = 0,
    /// Running.
    ContainerRunning = 1,
    /// Ended.
    ContainerExited = 2,
    /// The runtime does not know.
    ContainerUnknown = 3,
}

// ---------------------------------------------------------------------------------------------
// Shared messages
// ---------------------------------------------------------------------------------------------

/// A name and value pair, used for environment variables.
///
/// `value` is a `string` as in containerd 1.6's copy of the API; newer cri-api declares it
/// `bytes`, which has the same encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// An `int64` that can be absent (wrapper message).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64Value {
    /// The value.
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// Which namespaces a sandbox or container uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    /// Network namespace.
    #[prost(enumeration = "NamespaceMode", tag = "1")]
    pub network: i32,
    /// PID namespace.
    #[prost(enumeration = "NamespaceMode", tag = "2")]
    pub pid: i32,
    /// IPC namespace.
    #[prost(enumeration = "NamespaceMode", tag = "3")]
    pub ipc: i32,
    /// The container whose namespaces [`NamespaceMode::Target`] refers to.
    #[prost(string, tag = "4")]
    pub target_id: String,
}

/// An image reference.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    /// Name, tag or digest reference of the image (`docker.io/library/nginx:1.27`).
    #[prost(string, tag = "1")]
    pub image: String,
    /// Annotations for the runtime.
    #[prost(map = "string, string", tag = "2")]
    pub annotations: HashMap<String, String>,
}

/// A bind mount into a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    /// Path inside the container.
    #[prost(string, tag = "1")]
    pub container_path: String,
    /// Path on the host.
    #[prost(string, tag = "2")]
    pub host_path: String,
    /// Mount read-only.
    #[prost(bool, tag = "3")]
    pub readonly: bool,
    /// Relabel for SELinux.
    #[prost(bool, tag = "4")]
    pub selinux_relabel: bool,
    /// Propagation mode.
    #[prost(enumeration = "MountPropagation", tag = "5")]
    pub propagation: i32,
}

// ---------------------------------------------------------------------------------------------
// Version
// ---------------------------------------------------------------------------------------------

/// Request of `RuntimeService/Version`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    /// The kubelet's CRI API version.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// Response of `RuntimeService/Version`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    /// Version of the kubelet runtime API.
    #[prost(string, tag = "1")]
    pub version: String,
    /// Name of the runtime (`containerd`).
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// Version of the runtime.
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// CRI API version the runtime serves (`v1`).
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

// ---------------------------------------------------------------------------------------------
// Pod sandboxes
// ---------------------------------------------------------------------------------------------

/// What identifies a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    /// Pod name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Pod UID.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// Pod namespace.
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// How many sandboxes were created for this pod before this one.
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// Linux security settings of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    /// Namespaces of the sandbox.
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
    /// UID the sandbox process runs as.
    #[prost(message, optional, tag = "3")]
    pub run_as_user: Option<Int64Value>,
    /// Run the sandbox privileged.
    #[prost(bool, tag = "6")]
    pub privileged: bool,
}

/// Linux settings of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    /// Parent cgroup of the sandbox.
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    /// Security settings.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
    /// Namespaced sysctls.
    #[prost(map = "string, string", tag = "3")]
    pub sysctls: HashMap<String, String>,
}

/// How to create a sandbox; also passed again to `CreateContainer` and `PullImage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    /// What identifies the sandbox.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Hostname of the sandbox.
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// Host directory that container log paths are relative to.
    #[prost(string, tag = "3")]
    pub log_directory: String,
    /// Labels, for filtering.
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    /// Annotations, opaque to the runtime unless it knows them.
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    /// Linux settings.
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

/// Request of `RuntimeService/RunPodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    /// The sandbox to run.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    /// Runtime handler (empty: the default one).
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

/// Response of `RuntimeService/RunPodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    /// ID of the new sandbox.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Request of `RuntimeService/StopPodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopPodSandboxRequest {
    /// The sandbox.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Response of `RuntimeService/StopPodSandbox` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopPodSandboxResponse {}

/// Request of `RuntimeService/RemovePodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemovePodSandboxRequest {
    /// The sandbox.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Response of `RuntimeService/RemovePodSandbox` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemovePodSandboxResponse {}

/// Request of `RuntimeService/PodSandboxStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    /// The sandbox.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Ask for extra runtime information.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// Status of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    /// Sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// What identifies the sandbox.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// State.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time, nanoseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Labels.
    #[prost(map = "string, string", tag = "7")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "8")]
    pub annotations: HashMap<String, String>,
}

/// Response of `RuntimeService/PodSandboxStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    /// The status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
}

/// A sandbox state to filter on (wrapper message, so "any state" can be expressed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStateValue {
    /// The state.
    #[prost(enumeration = "PodSandboxState", tag = "1")]
    pub state: i32,
}

/// Which sandboxes `ListPodSandbox` returns; all conditions must hold.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    /// Sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// State.
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
    /// Labels that must all match.
    #[prost(map = "string, string", tag = "3")]
    pub label_selector: HashMap<String, String>,
}

/// Request of `RuntimeService/ListPodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    /// Filter; absent lists all sandboxes.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// A sandbox in a `ListPodSandbox` response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    /// Sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// What identifies the sandbox.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// State.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time, nanoseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Labels.
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
}

/// Response of `RuntimeService/ListPodSandbox`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    /// The sandboxes.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

/// What identifies a container within its sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    /// Container name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many times this container was created in the sandbox before.
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// Linux resource limits of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerResources {
    /// CFS period in microseconds.
    #[prost(int64, tag = "1")]
    pub cpu_period: i64,
    /// CFS quota in microseconds per period.
    #[prost(int64, tag = "2")]
    pub cpu_quota: i64,
    /// Relative CPU weight (cgroup v1 shares).
    #[prost(int64, tag = "3")]
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    #[prost(int64, tag = "4")]
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment.
    #[prost(int64, tag = "5")]
    pub oom_score_adj: i64,
}

/// Linux security settings of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    /// Run the container privileged.
    #[prost(bool, tag = "2")]
    pub privileged: bool,
    /// Namespaces of the container.
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
    /// UID the container's processes run as.
    #[prost(message, optional, tag = "5")]
    pub run_as_user: Option<Int64Value>,
    /// Mount the root filesystem read-only.
    #[prost(bool, tag = "7")]
    pub readonly_rootfs: bool,
    /// Set `no_new_privs`.
    #[prost(bool, tag = "11")]
    pub no_new_privs: bool,
    /// GID the container's processes run as.
    #[prost(message, optional, tag = "12")]
    pub run_as_group: Option<Int64Value>,
}

/// Linux settings of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    /// Resource limits.
    #[prost(message, optional, tag = "1")]
    pub resources: Option<LinuxContainerResources>,
    /// Security settings.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

/// How to create a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    /// What identifies the container.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    /// Image to run.
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    /// Entrypoint (replaces the image's).
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    /// Arguments (replace the image's).
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    /// Working directory.
    #[prost(string, tag = "5")]
    pub working_dir: String,
    /// Environment variables.
    #[prost(message, repeated, tag = "6")]
    pub envs: Vec<KeyValue>,
    /// Bind mounts.
    #[prost(message, repeated, tag = "7")]
    pub mounts: Vec<Mount>,
    /// Labels, for filtering.
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "10")]
    pub annotations: HashMap<String, String>,
    /// Log file, relative to the sandbox's `log_directory`.
    #[prost(string, tag = "11")]
    pub log_path: String,
    /// Keep stdin open.
    #[prost(bool, tag = "12")]
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    #[prost(bool, tag = "13")]
    pub stdin_once: bool,
    /// Allocate a terminal.
    #[prost(bool, tag = "14")]
    pub tty: bool,
    /// Linux settings.
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

/// Request of `RuntimeService/CreateContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    /// Sandbox to create the container in.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// The container.
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    /// The config the sandbox was run with.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// Response of `RuntimeService/CreateContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    /// ID of the new container.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// Request of `RuntimeService/StartContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartContainerRequest {
    /// The container.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// Response of `RuntimeService/StartContainer` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartContainerResponse {}

/// Request of `RuntimeService/StopContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    /// The container.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Grace period in seconds before the container is killed (0: kill at once).
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// Response of `RuntimeService/StopContainer` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerResponse {}

/// Request of `RuntimeService/RemoveContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveContainerRequest {
    /// The container.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// Response of `RuntimeService/RemoveContainer` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveContainerResponse {}

/// A container state to filter on (wrapper message, so "any state" can be expressed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStateValue {
    /// The state.
    #[prost(enumeration = "ContainerState", tag = "1")]
    pub state: i32,
}

/// Which containers `ListContainers` returns; all conditions must hold.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerFilter {
    /// Container ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// State.
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerStateValue>,
    /// Sandbox ID.
    #[prost(string, tag = "3")]
    pub pod_sandbox_id: String,
    /// Labels that must all match.
    #[prost(map = "string, string", tag = "4")]
    pub label_selector: HashMap<String, String>,
}

/// Request of `RuntimeService/ListContainers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersRequest {
    /// Filter; absent lists all containers.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

/// A container in a `ListContainers` response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    /// Container ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Sandbox ID.
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// What identifies the container.
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    /// Image as requested.
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    /// Image the container actually runs (ID or digest).
    #[prost(string, tag = "5")]
    pub image_ref: String,
    /// State.
    #[prost(enumeration = "ContainerState", tag = "6")]
    pub state: i32,
    /// Creation time, nanoseconds since the epoch.
    #[prost(int64, tag = "7")]
    pub created_at: i64,
    /// Labels.
    #[prost(map = "string, string", tag = "8")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "9")]
    pub annotations: HashMap<String, String>,
}

/// Response of `RuntimeService/ListContainers`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersResponse {
    /// The containers.
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

/// Request of `RuntimeService/ContainerStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusRequest {
    /// The container.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Ask for extra runtime information (in `info`).
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// Status of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    /// Container ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// What identifies the container.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    /// State.
    #[prost(enumeration = "ContainerState", tag = "3")]
    pub state: i32,
    /// Creation time, nanoseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Start time, nanoseconds since the epoch (0: not started).
    #[prost(int64, tag = "5")]
    pub started_at: i64,
    /// End time, nanoseconds since the epoch (0: not ended).
    #[prost(int64, tag = "6")]
    pub finished_at: i64,
    /// Exit code, meaningful once exited.
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
    /// Image as requested.
    #[prost(message, optional, tag = "8")]
    pub image: Option<ImageSpec>,
    /// Image the container actually runs (ID or digest).
    #[prost(string, tag = "9")]
    pub image_ref: String,
    /// Short reason for the state (`Completed`, `Error`, `OOMKilled`).
    #[prost(string, tag = "10")]
    pub reason: String,
    /// Longer explanation of the state.
    #[prost(string, tag = "11")]
    pub message: String,
    /// Labels.
    #[prost(map = "string, string", tag = "12")]
    pub labels: HashMap<String, String>,
    /// Annotations.
    #[prost(map = "string, string", tag = "13")]
    pub annotations: HashMap<String, String>,
    /// Log file on the host.
    #[prost(string, tag = "15")]
    pub log_path: String,
}

/// Response of `RuntimeService/ContainerStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    /// The status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
    /// Extra runtime information (only when `verbose` was asked).
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// Request of `RuntimeService/ExecSync`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncRequest {
    /// The container.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Command and arguments.
    #[prost(string, repeated, tag = "2")]
    pub cmd: Vec<String>,
    /// Timeout in seconds (0: none).
    #[prost(int64, tag = "3")]
    pub timeout: i64,
}

/// Response of `RuntimeService/ExecSync`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncResponse {
    /// Standard output (the runtime may cap it).
    #[prost(bytes = "vec", tag = "1")]
    pub stdout: Vec<u8>,
    /// Standard error (the runtime may cap it).
    #[prost(bytes = "vec", tag = "2")]
    pub stderr: Vec<u8>,
    /// Exit code of the command.
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// An image on the node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Image ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Tags naming it.
    #[prost(string, repeated, tag = "2")]
    pub repo_tags: Vec<String>,
    /// Digests naming it.
    #[prost(string, repeated, tag = "3")]
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    #[prost(uint64, tag = "4")]
    pub size: u64,
}

/// Request of `ImageService/ImageStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageStatusRequest {
    /// The image.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    /// Ask for extra runtime information.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// Response of `ImageService/ImageStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageStatusResponse {
    /// The image; absent when it is not on the node.
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
}

/// Request of `ImageService/PullImage` (without registry credentials).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageRequest {
    /// The image.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    /// Config of the sandbox the image is pulled for.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// Response of `ImageService/PullImage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageResponse {
    /// Reference (ID or digest) of the pulled image.
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Errors of [`CriClient`].
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket path given to [`CriClient::connect_lazy`] is not absolute.
    #[error("the CRI socket path {} is not absolute", .0.display())]
    SocketPath(PathBuf),
    /// A call failed: the runtime answered with an error, could not be reached
    /// (`Unavailable`) or did not answer in time (`DeadlineExceeded`, `Cancelled`).
    #[error("CRI call {method}: {}: {}", .status.code(), .status.message())]
    Rpc {
        /// gRPC path of the method (`/runtime.v1.RuntimeService/StartContainer`).
        method: &'static str,
        /// What the call returned.
        #[source]
        status: tonic::Status,
    },
}

impl CriError {
    /// The gRPC status code of a failed call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CriError::SocketPath(_) => None,
            CriError::Rpc { status, .. } => Some(status.code()),
        }
    }

    /// What the runtime said (or why the call was not made).
    pub fn message(&self) -> String {
        match self {
            CriError::SocketPath(_) => self.to_string(),
            CriError::Rpc { status, .. } => status.message().to_string(),
        }
    }

    /// Whether the runtime said the sandbox, container or image does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }
}

/// A CRI `runtime.v1` client on a unix socket. Cheap to clone; clones share one HTTP/2
/// connection, which is (re)established on demand.
#[derive(Clone, Debug)]
pub struct CriClient {
    channel: Channel,
}

impl CriClient {
    /// Prepares a client for the unix socket at `path` (`/run/containerd/containerd.sock`)
    /// without connecting: the socket is dialled on the first call, and again after the
    /// connection breaks, so the runtime may start later than the agent.
    ///
    /// Must be called within a Tokio runtime (the channel spawns its worker task).
    pub fn connect_lazy(path: &Path) -> Result<CriClient, CriError> {
        if !path.is_absolute() {
            return Err(CriError::SocketPath(path.to_path_buf()));
        }
        let path = path.to_path_buf();
        // The URI only supplies the `:authority` header; the connector ignores it.
        let channel = Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }));
        Ok(CriClient { channel })
    }

    /// One unary call to the method at `path`, with `timeout` as its deadline (sent as
    /// `grpc-timeout` and enforced here too, connecting included).
    async fn unary<Req, Resp>(&self, path: &'static str, req: Req, timeout: Duration) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let call = async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("the CRI socket is not ready: {e}")))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            let mut request = tonic::Request::new(req);
            request.set_timeout(timeout);
            grpc.unary(request, PathAndQuery::from_static(path), codec).await.map(tonic::Response::into_inner)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_elapsed| Err(tonic::Status::deadline_exceeded(format!("no answer within {timeout:?}"))))
    }

    /// [`Self::unary`] with the error naming the method.
    async fn call<Req, Resp>(&self, path: &'static str, req: Req, timeout: Duration) -> Result<Resp, CriError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.unary(path, req, timeout).await.map_err(|status| CriError::Rpc { method: path, status })
    }

    /// `RuntimeService/Version` ([`QUERY_TIMEOUT`]).
    pub async fn version(&self, req: VersionRequest) -> Result<VersionResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/Version", req, QUERY_TIMEOUT).await
    }

    /// `RuntimeService/RunPodSandbox` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn run_pod_sandbox(&self, req: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/RunPodSandbox", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/StopPodSandbox` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn stop_pod_sandbox(&self, req: StopPodSandboxRequest) -> Result<StopPodSandboxResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/StopPodSandbox", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/RemovePodSandbox` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn remove_pod_sandbox(&self, req: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/RemovePodSandbox", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/PodSandboxStatus` ([`QUERY_TIMEOUT`]).
    pub async fn pod_sandbox_status(&self, req: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/PodSandboxStatus", req, QUERY_TIMEOUT).await
    }

    /// `RuntimeService/ListPodSandbox` ([`QUERY_TIMEOUT`]).
    pub async fn list_pod_sandbox(&self, req: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/ListPodSandbox", req, QUERY_TIMEOUT).await
    }

    /// `RuntimeService/CreateContainer` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn create_container(&self, req: CreateContainerRequest) -> Result<CreateContainerResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/CreateContainer", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/StartContainer` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn start_container(&self, req: StartContainerRequest) -> Result<StartContainerResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/StartContainer", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/StopContainer` (the grace period `req.timeout` plus [`LIFECYCLE_TIMEOUT`]).
    pub async fn stop_container(&self, req: StopContainerRequest) -> Result<StopContainerResponse, CriError> {
        let deadline = seconds(req.timeout).saturating_add(LIFECYCLE_TIMEOUT);
        self.call("/runtime.v1.RuntimeService/StopContainer", req, deadline).await
    }

    /// `RuntimeService/RemoveContainer` ([`LIFECYCLE_TIMEOUT`]).
    pub async fn remove_container(&self, req: RemoveContainerRequest) -> Result<RemoveContainerResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/RemoveContainer", req, LIFECYCLE_TIMEOUT).await
    }

    /// `RuntimeService/ListContainers` ([`QUERY_TIMEOUT`]).
    pub async fn list_containers(&self, req: ListContainersRequest) -> Result<ListContainersResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/ListContainers", req, QUERY_TIMEOUT).await
    }

    /// `RuntimeService/ContainerStatus` ([`QUERY_TIMEOUT`]).
    pub async fn container_status(&self, req: ContainerStatusRequest) -> Result<ContainerStatusResponse, CriError> {
        self.call("/runtime.v1.RuntimeService/ContainerStatus", req, QUERY_TIMEOUT).await
    }

    /// `RuntimeService/ExecSync` (`req.timeout` plus [`QUERY_TIMEOUT`]; [`LIFECYCLE_TIMEOUT`]
    /// when `req.timeout` is 0, so set one for commands that may run longer).
    pub async fn exec_sync(&self, req: ExecSyncRequest) -> Result<ExecSyncResponse, CriError> {
        // Without a timeout a command runs as long as it likes (`kubectl exec` waits too);
        // a day bounds a lost connection.
        let deadline = if req.timeout > 0 { seconds(req.timeout).saturating_add(QUERY_TIMEOUT) } else { Duration::from_secs(24 * 3600) };
        self.call("/runtime.v1.RuntimeService/ExecSync", req, deadline).await
    }

    /// `ImageService/ImageStatus` ([`QUERY_TIMEOUT`]).
    pub async fn image_status(&self, req: ImageStatusRequest) -> Result<ImageStatusResponse, CriError> {
        self.call("/runtime.v1.ImageService/ImageStatus", req, QUERY_TIMEOUT).await
    }

    /// `ImageService/PullImage` ([`PULL_TIMEOUT`]).
    pub async fn pull_image(&self, req: PullImageRequest) -> Result<PullImageResponse, CriError> {
        self.call("/runtime.v1.ImageService/PullImage", req, PULL_TIMEOUT).await
    }
}

/// A request's seconds field as a duration: negative counts as 0, and values above
/// [`MAX_REQUEST_SECONDS`] are clamped.
fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0).min(MAX_REQUEST_SECONDS))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The expected encodings are built with the small protobuf writer below, independent of
    //! prost, so a wrong tag or wire type in a message definition fails these tests.

    use prost::Message;

    use super::*;

    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let low = u8::try_from(value & 0x7f).unwrap();
            value >>= 7;
            if value == 0 {
                out.push(low);
                return out;
            }
            out.push(low | 0x80);
        }
    }

    /// A varint field (wire type 0).
    fn vi(tag: u64, value: u64) -> Vec<u8> {
        [varint(tag << 3), varint(value)].concat()
    }

    /// A length-delimited field (wire type 2).
    fn ld(tag: u64, bytes: &[u8]) -> Vec<u8> {
        [varint((tag << 3) | 2), varint(u64::try_from(bytes.len()).unwrap()), bytes.to_vec()].concat()
    }

    fn map_entry(tag: u64, key: &str, value: &str) -> Vec<u8> {
        ld(tag, &[ld(1, key.as_bytes()), ld(2, value.as_bytes())].concat())
    }

    #[test]
    fn container_config_encoding() {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "app".into(), attempt: 1 }),
            image: Some(ImageSpec { image: "nginx".into(), ..Default::default() }),
            command: vec!["sh".into()],
            args: vec!["-c".into()],
            working_dir: "/w".into(),
            envs: vec![KeyValue { key: "A".into(), value: "b".into() }],
            mounts: vec![Mount {
                container_path: "/d".into(),
                host_path: "/h".into(),
                readonly: true,
                propagation: MountPropagation::PropagationBidirectional.into(),
                ..Default::default()
            }],
            labels: HashMap::from([("k".to_string(), "v".to_string())]),
            log_path: "app/0.log".into(),
            stdin_once: true,
            tty: true,
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources { memory_limit_in_bytes: 1024, ..Default::default() }),
                security_context: Some(LinuxContainerSecurityContext {
                    privileged: true,
                    no_new_privs: true,
                    run_as_group: Some(Int64Value { value: 7 }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let bytes = config.encode_to_vec();
        // metadata: field 1, length-delimited.
        assert_eq!(&bytes[..4], &[0x0a, 0x07, 0x0a, 0x03]);
        let expected = [
            ld(1, &[ld(1, b"app"), vi(2, 1)].concat()),
            ld(2, &ld(1, b"nginx")),
            ld(3, b"sh"),
            ld(4, b"-c"),
            ld(5, b"/w"),
            ld(6, &[ld(1, b"A"), ld(2, b"b")].concat()),
            ld(7, &[ld(1, b"/d"), ld(2, b"/h"), vi(3, 1), vi(5, 2)].concat()),
            map_entry(9, "k", "v"),
            ld(11, b"app/0.log"),
            vi(13, 1),
            vi(14, 1),
            ld(15, &[ld(1, &vi(4, 1024)), ld(2, &[vi(2, 1), vi(11, 1), ld(12, &vi(1, 7))].concat())].concat()),
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(ContainerConfig::decode(bytes.as_slice()).unwrap(), config);
    }

    #[test]
    fn pod_sandbox_config_encoding() {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "default".into(), attempt: 1 }),
            hostname: "web".into(),
            log_directory: "/l".into(),
            labels: HashMap::from([("app".to_string(), "web".to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/k".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node.into(),
                        pid: NamespaceMode::Container.into(),
                        ..Default::default()
                    }),
                    // Zero is still sent: the wrapper message is present, only empty.
                    run_as_user: Some(Int64Value { value: 0 }),
                    privileged: true,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = config.encode_to_vec();
        // Written out by hand once, as a cross-check of the writer above.
        #[rustfmt::skip]
        let literal: [u8; 61] = [
            0x0a, 0x14, 0x0a, 0x03, 0x77, 0x65, 0x62, 0x12, 0x02, 0x75, 0x31, 0x1a, 0x07, 0x64, 0x65, 0x66,
            0x61, 0x75, 0x6c, 0x74, 0x20, 0x01, 0x12, 0x03, 0x77, 0x65, 0x62, 0x1a, 0x02, 0x2f, 0x6c, 0x32,
            0x0a, 0x0a, 0x03, 0x61, 0x70, 0x70, 0x12, 0x03, 0x77, 0x65, 0x62, 0x42, 0x10, 0x0a, 0x02, 0x2f,
            0x6b, 0x12, 0x0a, 0x0a, 0x04, 0x08, 0x02, 0x10, 0x01, 0x1a, 0x00, 0x30, 0x01,
        ];
        assert_eq!(bytes, literal);
        let expected = [
            ld(1, &[ld(1, b"web"), ld(2, b"u1"), ld(3, b"default"), vi(4, 1)].concat()),
            ld(2, b"web"),
            ld(3, b"/l"),
            map_entry(6, "app", "web"),
            ld(8, &[ld(1, b"/k"), ld(2, &[ld(1, &[vi(1, 2), vi(2, 1)].concat()), ld(3, b""), vi(6, 1)].concat())].concat()),
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn request_field_tags() {
        let sandbox = PodSandboxConfig { hostname: "h".into(), ..Default::default() };
        let cases = [
            (RunPodSandboxRequest { runtime_handler: "r".into(), ..Default::default() }.encode_to_vec(), ld(2, b"r")),
            (PodSandboxStatusRequest { pod_sandbox_id: "p".into(), verbose: true }.encode_to_vec(), [ld(1, b"p"), vi(2, 1)].concat()),
            (
                CreateContainerRequest { pod_sandbox_id: "p".into(), sandbox_config: Some(sandbox.clone()), ..Default::default() }
                    .encode_to_vec(),
                [ld(1, b"p"), ld(3, &ld(2, b"h"))].concat(),
            ),
            (StopContainerRequest { container_id: "c".into(), timeout: 30 }.encode_to_vec(), [ld(1, b"c"), vi(2, 30)].concat()),
            (
                ExecSyncRequest { container_id: "c".into(), cmd: vec!["ls".into()], timeout: 5 }.encode_to_vec(),
                [ld(1, b"c"), ld(2, b"ls"), vi(3, 5)].concat(),
            ),
            (
                ListContainersRequest {
                    filter: Some(ContainerFilter {
                        state: Some(ContainerStateValue { state: ContainerState::ContainerRunning.into() }),
                        pod_sandbox_id: "p".into(),
                        label_selector: HashMap::from([("a".to_string(), "b".to_string())]),
                        ..Default::default()
                    }),
                }
                .encode_to_vec(),
                ld(1, &[ld(2, &vi(1, 1)), ld(3, b"p"), map_entry(4, "a", "b")].concat()),
            ),
            (
                ListPodSandboxRequest {
                    filter: Some(PodSandboxFilter {
                        id: "i".into(),
                        state: Some(PodSandboxStateValue { state: PodSandboxState::SandboxNotready.into() }),
                        ..Default::default()
                    }),
                }
                .encode_to_vec(),
                ld(1, &[ld(1, b"i"), ld(2, &vi(1, 1))].concat()),
            ),
            (
                PullImageRequest { image: Some(ImageSpec { image: "x".into(), ..Default::default() }), sandbox_config: Some(sandbox) }
                    .encode_to_vec(),
                [ld(1, &ld(1, b"x")), ld(3, &ld(2, b"h"))].concat(),
            ),
            (
                LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        ipc: NamespaceMode::Target.into(),
                        target_id: "t".into(),
                        ..Default::default()
                    }),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    readonly_rootfs: true,
                    ..Default::default()
                }
                .encode_to_vec(),
                [ld(3, &[vi(3, 3), ld(4, b"t")].concat()), ld(5, &vi(1, 1000)), vi(7, 1)].concat(),
            ),
            (
                LinuxContainerResources { cpu_period: 100_000, cpu_quota: 50_000, cpu_shares: 512, oom_score_adj: 3, ..Default::default() }
                    .encode_to_vec(),
                [vi(1, 100_000), vi(2, 50_000), vi(3, 512), vi(5, 3)].concat(),
            ),
        ];
        for (i, (got, want)) in cases.iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn container_status_response_decoding() {
        let created: u64 = 1_700_000_000_123_456_789;
        let status = [
            ld(1, b"c1"),
            ld(2, &[ld(1, b"app"), vi(2, 2)].concat()),
            vi(3, 2),
            vi(4, created),
            vi(5, created + 1),
            vi(6, created + 2),
            vi(7, 137),
            ld(8, &ld(1, b"nginx")),
            ld(9, b"sha256:abc"),
            ld(10, b"Error"),
            ld(11, b"killed"),
            map_entry(12, "io.kubernetes.pod.name", "web"),
            map_entry(13, "note", "x"),
            // Field 14 (mounts) is not modelled here and must be skipped.
            ld(14, &ld(1, b"/data")),
            ld(15, b"/var/log/pods/x/app/0.log"),
            // Field 16 (resources) likewise.
            ld(16, &ld(1, &vi(4, 1))),
        ]
        .concat();
        let bytes = [ld(1, &status), map_entry(2, "info", "{}")].concat();
        let response = ContainerStatusResponse::decode(bytes.as_slice()).unwrap();
        let status = response.status.unwrap();
        assert_eq!(status.id, "c1");
        assert_eq!(status.metadata, Some(ContainerMetadata { name: "app".into(), attempt: 2 }));
        assert_eq!(status.state(), ContainerState::ContainerExited);
        assert_eq!(status.created_at, 1_700_000_000_123_456_789);
        assert_eq!(status.started_at, 1_700_000_000_123_456_790);
        assert_eq!(status.finished_at, 1_700_000_000_123_456_791);
        assert_eq!(status.exit_code, 137);
        assert_eq!(status.image.unwrap().image, "nginx");
        assert_eq!(status.image_ref, "sha256:abc");
        assert_eq!(status.reason, "Error");
        assert_eq!(status.message, "killed");
        assert_eq!(status.labels.get("io.kubernetes.pod.name").map(String::as_str), Some("web"));
        assert_eq!(status.annotations.get("note").map(String::as_str), Some("x"));
        assert_eq!(status.log_path, "/var/log/pods/x/app/0.log");
        assert_eq!(response.info.get("info").map(String::as_str), Some("{}"));
    }

    #[test]
    fn response_decoding() {
        let bytes = [ld(1, b"0.1.0"), ld(2, b"containerd"), ld(3, b"v1.6.24"), ld(4, b"v1")].concat();
        let version = VersionResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!((version.runtime_name.as_str(), version.runtime_api_version.as_str()), ("containerd", "v1"));

        // A negative int32 is sent as a ten-byte varint.
        let bytes = [ld(1, b"out"), ld(2, b"err"), vi(3, u64::MAX)].concat();
        let exec = ExecSyncResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!((exec.stdout.as_slice(), exec.stderr.as_slice(), exec.exit_code), (&b"out"[..], &b"err"[..], -1));

        let image = [ld(1, b"sha256:1"), ld(2, b"nginx:1"), ld(3, b"nginx@sha256:2"), vi(4, 4096)].concat();
        let response = ImageStatusResponse::decode(ld(1, &image).as_slice()).unwrap();
        assert_eq!(
            response.image,
            Some(Image {
                id: "sha256:1".into(),
                repo_tags: vec!["nginx:1".into()],
                repo_digests: vec!["nginx@sha256:2".into()],
                size: 4096
            })
        );
        assert_eq!(ImageStatusResponse::decode(&b""[..]).unwrap().image, None);

        let sandbox = [
            ld(1, b"s1"),
            ld(2, &[ld(1, b"web"), ld(2, b"u1"), ld(3, b"default")].concat()),
            vi(3, 1),
            vi(4, 5),
            map_entry(5, "l", "1"),
            map_entry(6, "a", "2"),
            ld(7, b"runc"),
        ]
        .concat();
        let list = ListPodSandboxResponse::decode(ld(1, &sandbox).as_slice()).unwrap();
        assert_eq!(list.items.len(), 1);
        let item = &list.items[0];
        assert_eq!((item.id.as_str(), item.state(), item.created_at), ("s1", PodSandboxState::SandboxNotready, 5));
        assert_eq!(item.metadata.as_ref().unwrap().namespace, "default");
        assert_eq!((item.labels.get("l").cloned(), item.annotations.get("a").cloned()), (Some("1".to_string()), Some("2".to_string())));

        let container = [
            ld(1, b"c1"),
            ld(2, b"s1"),
            ld(3, &ld(1, b"app")),
            ld(4, &ld(1, b"nginx")),
            ld(5, b"sha256:3"),
            vi(6, 1),
            vi(7, 9),
            map_entry(8, "l", "1"),
            map_entry(9, "a", "2"),
        ]
        .concat();
        let list = ListContainersResponse::decode(ld(1, &container).as_slice()).unwrap();
        let item = &list.containers[0];
        assert_eq!((item.id.as_str(), item.pod_sandbox_id.as_str(), item.image_ref.as_str()), ("c1", "s1", "sha256:3"));
        assert_eq!((item.state(), item.created_at), (ContainerState::ContainerRunning, 9));
        assert_eq!(item.metadata.as_ref().unwrap().name, "app");
        assert_eq!((item.labels.get("l").cloned(), item.annotations.get("a").cloned()), (Some("1".to_string()), Some("2".to_string())));

        let status = [ld(1, b"s1"), ld(2, &ld(1, b"web")), vi(3, 0), vi(4, 7), map_entry(7, "l", "1"), map_entry(8, "a", "2")].concat();
        let response = PodSandboxStatusResponse::decode(ld(1, &status).as_slice()).unwrap();
        let status = response.status.unwrap();
        assert_eq!((status.id.as_str(), status.state(), status.created_at), ("s1", PodSandboxState::SandboxReady, 7));
        assert_eq!((status.labels.get("l").cloned(), status.annotations.get("a").cloned()), (Some("1".to_string()), Some("2".to_string())));

        assert_eq!(RunPodSandboxResponse::decode(ld(1, b"s").as_slice()).unwrap().pod_sandbox_id, "s");
        assert_eq!(CreateContainerResponse::decode(ld(1, b"c").as_slice()).unwrap().container_id, "c");
        assert_eq!(PullImageResponse::decode(ld(1, b"r").as_slice()).unwrap().image_ref, "r");
    }

    #[test]
    fn relative_socket_path_is_refused() {
        assert!(matches!(CriClient::connect_lazy(Path::new("containerd.sock")), Err(CriError::SocketPath(_))));
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let client = CriClient::connect_lazy(&dir.path().join("none.sock")).unwrap();
        let error = client.version(VersionRequest { version: "v1".into() }).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::Unavailable), "{error}");
        assert!(error.to_string().contains("/runtime.v1.RuntimeService/Version"), "{error}");
    }

    #[test]
    fn request_seconds() {
        assert_eq!(seconds(-5), Duration::ZERO);
        assert_eq!(seconds(30), Duration::from_secs(30));
        assert_eq!(seconds(i64::MAX), Duration::from_secs(MAX_REQUEST_SECONDS));
    }
}
