//! The containerd runtime (feature `containerd`): every pod is a CRI pod sandbox and every
//! container instance a CRI container created from its image, through containerd's CRI
//! service on its unix socket (`runtime.v1`). containerd and runc do the isolation (their own
//! pid, mount, uts and ipc namespaces, the image's root filesystem, cgroup limits, OOM kill
//! reporting) and containerd writes each instance's CRI log itself.
//!
//! Images come from OCI archives in an image directory, imported with containerd's `ctr`
//! into the `k8s.io` namespace at start-up and again when a pod names an image containerd
//! does not have; only then is a registry pull tried. Pods share the node's network
//! namespace (no CNI), as with the process runtime. Instances are found again by label after
//! an agent restart, so nothing the agent persisted is needed to stop or remove them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use tonic::Code;
use tracing::{debug, info, warn};

use super::cri::{self, CriClient, CriError};
use super::{Adoption, ContainerLaunch, ExecOutput, ExecRequest, Exit, InstanceId, PodSandbox, Runtime, RuntimeError, Started, StopSignal};

/// Labels the agent puts on sandboxes and containers (the kubelet's names, so that `crictl`
/// users find what they expect).
const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
/// Marks what this agent made, so that cleanup never touches other clients' containers.
const LABEL_MANAGED: &str = "k3s-daas.io/managed";
/// The node whose agent made a sandbox (several agents may share one containerd).
const LABEL_NODE: &str = "k3s-daas.io/node";

/// The CFS period the kubelet uses (µs).
const CPU_PERIOD_US: i64 = 100_000;
/// A stop request's own SIGKILL timeout: far beyond any grace period, since the pod manager
/// decides when to kill.
const TERM_TIMEOUT_S: i64 = 24 * 3600;

/// How the containerd runtime is set up.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's socket (`/run/containerd/containerd.sock`).
    pub socket: PathBuf,
    /// OCI image archives (`*.tar`) to import; none when absent.
    pub image_dir: Option<PathBuf>,
    /// containerd's `ctr` (for imports); found on the PATH when absent.
    pub ctr: Option<PathBuf>,
    /// How often a running instance is asked whether it has ended.
    pub exit_poll: Duration,
    /// This agent's node: its sandboxes are labelled with it, and only those are swept.
    pub node: Option<String>,
}

impl ContainerdConfig {
    /// The defaults for `socket`.
    pub fn new(socket: PathBuf) -> ContainerdConfig {
        ContainerdConfig { socket, image_dir: None, ctr: None, exit_poll: Duration::from_millis(250), node: None }
    }
}

/// Container id → the futures waiting for its exit.
type Waiters = HashMap<String, Vec<tokio::sync::oneshot::Sender<Exit>>>;

/// Runs until the runtime is gone: every `poll`, one list of this agent's containers; the
/// exit of each watched container that ended (or vanished) goes to its waiters.
async fn poll_exits(client: CriClient, waiters: std::sync::Weak<Mutex<Waiters>>, poll: Duration) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(poll).await;
        let Some(waiters) = waiters.upgrade() else { return };
        let watched: Vec<String> = waiters.lock().keys().cloned().collect();
        if watched.is_empty() {
            continue;
        }
        let filter = cri::ContainerFilter { label_selector: labels(&[(LABEL_MANAGED, "true")]), ..Default::default() };
        let listed = match client.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await {
            Ok(r) => {
                failures = 0;
                r.containers
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    warn!(error = %e, "asking containerd for its containers failed");
                }
                continue;
            }
        };
        let state: HashMap<&str, i32> = listed.iter().map(|c| (c.id.as_str(), c.state)).collect();
        for id in watched {
            let running = state.get(id.as_str()).is_some_and(|&s| s != cri::ContainerState::ContainerExited as i32);
            if running {
                continue;
            }
            let exit = match client.container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await {
                Ok(r) => match r.status.as_ref().and_then(exit_of) {
                    Some(exit) => exit,
                    None => continue,
                },
                Err(e) if e.is_not_found() => lost(),
                Err(_) => continue,
            };
            for tx in waiters.lock().remove(&id).unwrap_or_default() {
                let _ = tx.send(exit.clone());
            }
        }
    }
}

/// A pod's sandbox as this agent made it.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
}

/// Runs containers through containerd's CRI service. See the module documentation.
pub struct ContainerdRuntime {
    client: CriClient,
    config: ContainerdConfig,
    ctr: Option<PathBuf>,
    version: String,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    /// Who waits for which container to end (see [`ContainerdRuntime::watch_exit`]).
    exits: Arc<Mutex<Waiters>>,
    /// Serializes imports (two pods naming one missing image import it once).
    importing: tokio::sync::Mutex<()>,
    /// Bounds the sandboxes and containers being created at once (two per CPU): a burst of
    /// pods then starts in order instead of all of them slowly together.
    creating: tokio::sync::Semaphore,
    /// One sandbox replacement at a time (a pod's containers restart together).
    replacing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ContainerdRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdRuntime").field("socket", &self.config.socket).field("version", &self.version).finish_non_exhaustive()
    }
}

impl ContainerdRuntime {
    /// Connects to containerd, checks that its CRI service answers, and imports the image
    /// directory. The error says in a sentence why containerd cannot be used.
    pub async fn connect(config: ContainerdConfig) -> Result<ContainerdRuntime, String> {
        let client = CriClient::connect_lazy(&config.socket).map_err(|e| format!("containerd at {}: {e}", config.socket.display()))?;
        let v = client
            .version(cri::VersionRequest { version: "v1".to_string() })
            .await
            .map_err(|s| format!("containerd's CRI service at {} does not answer: {}", config.socket.display(), s.message()))?;
        let version = format!("{}://{}", v.runtime_name, v.runtime_version);
        let ctr = config.ctr.clone().or_else(|| super::process::find_program("ctr"));
        let exits = Arc::new(Mutex::new(Waiters::new()));
        tokio::spawn(poll_exits(client.clone(), Arc::downgrade(&exits), config.exit_poll));
        let rt = ContainerdRuntime {
            client,
            config,
            ctr,
            version,
            sandboxes: Mutex::new(HashMap::new()),
            exits,
            importing: tokio::sync::Mutex::new(()),
            creating: tokio::sync::Semaphore::new(creation_slots()),
            replacing: tokio::sync::Mutex::new(()),
        };
        rt.import_images().await;
        info!(version = %rt.version, socket = %rt.config.socket.display(), "containerd runtime ready");
        Ok(rt)
    }

    /// Imports every `*.tar` of the image directory into containerd's `k8s.io` namespace.
    /// Returns how many imports succeeded.
    async fn import_images(&self) -> usize {
        let (Some(dir), Some(ctr)) = (&self.config.image_dir, &self.ctr) else {
            if self.config.image_dir.is_some() {
                warn!("containerd's ctr is not on the PATH: the image directory is not imported");
            }
            return 0;
        };
        let _one = self.importing.lock().await;
        let mut archives: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "tar")).collect(),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read the image directory");
                return 0;
            }
        };
        archives.sort();
        let mut imported = 0;
        for archive in archives {
            let out = tokio::process::Command::new(ctr)
                .arg("--address")
                .arg(&self.config.socket)
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(&archive)
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {
                    imported += 1;
                    debug!(archive = %archive.display(), "imported");
                }
                Ok(o) => {
                    warn!(archive = %archive.display(), error = %String::from_utf8_lossy(&o.stderr).trim(), "importing an image archive failed")
                }
                Err(e) => warn!(archive = %archive.display(), error = %e, "running ctr failed"),
            }
        }
        imported
    }

    /// The image's id as the status reports it (its repo digest, else its id), if containerd
    /// has it.
    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        let r = self
            .client
            .image_status(cri::ImageStatusRequest { image: Some(image_spec(image)), verbose: false })
            .await
            .map_err(|s| service("asking containerd for an image", &s))?;
        Ok(r.image.map(|i| i.repo_digests.into_iter().next().unwrap_or(i.id)))
    }

    /// Makes sure containerd has `image`: already there, in the image directory, or pulled.
    /// Returns its id.
    async fn ensure_image(&self, image: &str, sandbox: &cri::PodSandboxConfig) -> Result<Option<String>, RuntimeError> {
        if image.is_empty() {
            return Err(RuntimeError::Unsupported("the containerd runtime needs spec.containers[].image".to_string()));
        }
        if let Some(id) = self.image_id(image).await? {
            return Ok(Some(id));
        }
        if self.import_images().await > 0
            && let Some(id) = self.image_id(image).await?
        {
            return Ok(Some(id));
        }
        let pull = cri::PullImageRequest { image: Some(image_spec(image)), sandbox_config: Some(sandbox.clone()) };
        match self.client.pull_image(pull).await {
            Ok(r) => Ok(Some(r.image_ref)),
            Err(s) => Err(RuntimeError::Image(format!(
                "Failed to pull image \"{image}\": {} (not in the image directory{})",
                s.message(),
                self.config.image_dir.as_ref().map(|d| format!(" {}", d.display())).unwrap_or_default()
            ))),
        }
    }

    /// The pod's sandbox, as [`ContainerdRuntime::prepare`] found or made it.
    /// One whose sandbox died (its pause process killed, containerd restarted without it) gets
    /// a new one, as the kubelet does.
    async fn sandbox(&self, pod_uid: &str) -> Result<Sandbox, RuntimeError> {
        let known = self.sandboxes.lock().get(pod_uid).cloned();
        let Some(s) = known else {
            return Err(RuntimeError::Service(format!("pod {pod_uid} has no sandbox on containerd")));
        };
        match self.client.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: s.id.clone(), verbose: false }).await {
            Ok(r) if r.status.as_ref().is_some_and(|st| st.state == cri::PodSandboxState::SandboxReady as i32) => return Ok(s),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(service("asking containerd for a sandbox", &e)),
        }
        let _one = self.replacing.lock().await;
        // Another container of the pod may have replaced it meanwhile.
        let current = self.sandboxes.lock().get(pod_uid).cloned();
        if let Some(c) = current.filter(|c| c.id != s.id) {
            return Ok(c);
        }
        warn!(pod = %pod_uid, sandbox = %short(&s.id), "the pod's sandbox is not ready any more; making a new one");
        self.sandboxes.lock().remove(pod_uid);
        let meta = s.config.metadata.clone().unwrap_or_default();
        let pod = PodSandbox {
            uid: pod_uid.to_string(),
            name: meta.name,
            namespace: meta.namespace,
            hostname: String::new(),
            log_dir: PathBuf::from(&s.config.log_directory),
        };
        self.prepare(&pod).await?;
        self.sandboxes
            .lock()
            .get(pod_uid)
            .cloned()
            .ok_or_else(|| RuntimeError::Service(format!("pod {pod_uid} has no sandbox on containerd")))
    }

    async fn list_sandboxes(&self, pod_uid: &str) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let filter =
            cri::PodSandboxFilter { label_selector: labels(&[(LABEL_POD_UID, pod_uid), (LABEL_MANAGED, "true")]), ..Default::default() };
        let r = self
            .client
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) })
            .await
            .map_err(|s| service("listing pod sandboxes", &s))?;
        Ok(r.items)
    }

    /// Containers of one instance (pod, container name, attempt) this agent made.
    async fn instance_containers(&self, launch: &ContainerLaunch) -> Result<Vec<cri::Container>, RuntimeError> {
        let filter = cri::ContainerFilter {
            label_selector: labels(&[(LABEL_POD_UID, &launch.pod_uid), (LABEL_CONTAINER, &launch.container), (LABEL_MANAGED, "true")]),
            ..Default::default()
        };
        let r = self
            .client
            .list_containers(cri::ListContainersRequest { filter: Some(filter) })
            .await
            .map_err(|s| service("listing containers", &s))?;
        Ok(r.containers.into_iter().filter(|c| c.metadata.as_ref().is_some_and(|m| m.attempt == launch.attempt)).collect())
    }

    fn container_config(&self, launch: &ContainerLaunch, sandbox: &Sandbox) -> cri::ContainerConfig {
        // CRI wants the log path relative to the sandbox's log directory.
        let log_dir = Path::new(&sandbox.config.log_directory);
        let log_path = launch.log.strip_prefix(log_dir).map_or_else(|_| launch.log.clone(), Path::to_path_buf);
        let limits = &launch.limits;
        let resources = cri::LinuxContainerResources {
            cpu_period: if limits.cpu_millis.is_some() { CPU_PERIOD_US } else { 0 },
            cpu_quota: limits.cpu_millis.map_or(0, |m| i64::try_from(m).unwrap_or(i64::MAX / 100).saturating_mul(CPU_PERIOD_US) / 1000),
            // The kubelet's shares: 1024 per CPU requested, at least 2.
            cpu_shares: limits
                .cpu_request_millis
                .map_or(0, |m| (i64::try_from(m).unwrap_or(i64::MAX / 1024).saturating_mul(1024) / 1000).max(2)),
            memory_limit_in_bytes: limits.memory_bytes.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let security = cri::LinuxContainerSecurityContext {
            namespace_options: Some(namespaces()),
            run_as_user: launch.run_as.map(|(u, _)| cri::Int64Value { value: i64::from(u) }),
            run_as_group: launch.run_as.map(|(_, g)| cri::Int64Value { value: i64::from(g) }),
            ..Default::default()
        };
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: launch.container.clone(), attempt: launch.attempt }),
            image: Some(image_spec(&launch.image)),
            command: launch.command.clone(),
            args: launch.args.clone(),
            working_dir: launch.working_dir.clone().unwrap_or_default(),
            envs: launch.env.iter().map(|(k, v)| cri::KeyValue { key: k.clone(), value: v.clone() }).collect(),
            mounts: launch
                .mounts
                .iter()
                .map(|m| cri::Mount {
                    container_path: m.container_path.to_string_lossy().into_owned(),
                    host_path: m.host_path.to_string_lossy().into_owned(),
                    readonly: m.read_only,
                    ..Default::default()
                })
                .collect(),
            labels: labels(&[(LABEL_POD_UID, &launch.pod_uid), (LABEL_CONTAINER, &launch.container), (LABEL_MANAGED, "true")]),
            log_path: log_path.to_string_lossy().into_owned(),
            linux: Some(cri::LinuxContainerConfig { resources: Some(resources), security_context: Some(security) }),
            ..Default::default()
        }
    }

    /// Resolves when the container has ended. One poller asks containerd for all watched
    /// containers at once (a `ListContainers` per `exit_poll`, however many run) and reads the
    /// exit of those that ended.
    fn watch_exit(&self, container_id: String) -> BoxFuture<'static, Exit> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.exits.lock().entry(container_id).or_default().push(tx);
        async move { rx.await.unwrap_or_else(|_| lost()) }.boxed()
    }

    async fn start_instance(&self, launch: ContainerLaunch) -> Result<Started, RuntimeError> {
        let sandbox = self.sandbox(&launch.pod_uid).await?;
        let image_id = self.ensure_image(&launch.image, &sandbox.config).await?;
        // CRI names are unique per (pod, container, attempt): a leftover of the same attempt
        // (an agent that died between create and start) goes first.
        for old in self.instance_containers(&launch).await? {
            self.remove_container(&old.id).await;
        }
        let config = self.container_config(&launch, &sandbox);
        let slot = self.creating.acquire().await.map_err(|_| RuntimeError::Service("the runtime is shutting down".into()))?;
        let created = self
            .client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone()),
            })
            .await
            .map_err(|s| create_error(&launch, &s))?;
        let id = created.container_id;
        let started = self.client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await;
        drop(slot);
        if let Err(s) = started {
            self.remove_container(&id).await;
            return Err(RuntimeError::NotExecutable(format!("starting container {}: {}", launch.container, s.message())));
        }
        let exit = self.watch_exit(id.clone());
        self.remove_old_attempts(&launch).await;
        Ok(Started { id: InstanceId { pid: 0, start_ticks: 0, handle: Some(id) }, image_id, exit })
    }

    /// Removes the instances of a container older than the previous one (kept for `kubectl
    /// logs --previous`), as the kubelet's container garbage collection does: a crash loop
    /// must not pile up exited containers.
    async fn remove_old_attempts(&self, launch: &ContainerLaunch) {
        let filter = cri::ContainerFilter {
            label_selector: labels(&[(LABEL_POD_UID, &launch.pod_uid), (LABEL_CONTAINER, &launch.container), (LABEL_MANAGED, "true")]),
            ..Default::default()
        };
        let Ok(r) = self.client.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await else { return };
        for c in r.containers {
            if c.metadata.as_ref().is_some_and(|m| m.attempt + 1 < launch.attempt) {
                self.remove_container(&c.id).await;
            }
        }
    }

    async fn remove_container(&self, id: &str) {
        let _ = self.client.stop_container(cri::StopContainerRequest { container_id: id.to_string(), timeout: 0 }).await;
        if let Err(s) = self.client.remove_container(cri::RemoveContainerRequest { container_id: id.to_string() }).await
            && !s.is_not_found()
        {
            warn!(container = %short(id), error = %s.message(), "removing a container failed");
        }
    }

    async fn prepare(&self, pod: &PodSandbox) -> Result<(), RuntimeError> {
        if self.sandboxes.lock().contains_key(&pod.uid) {
            return Ok(());
        }
        let existing = self.list_sandboxes(&pod.uid).await?;
        let attempt = existing.iter().filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1)).max().unwrap_or(0);
        let mut config = sandbox_config(pod, attempt);
        if let Some(node) = &self.config.node {
            config.labels.insert(LABEL_NODE.to_string(), node.clone());
        }
        if let Some(ready) = existing.iter().find(|s| s.state == cri::PodSandboxState::SandboxReady as i32) {
            let mut config = config;
            config.metadata = ready.metadata.clone();
            self.sandboxes.lock().insert(pod.uid.clone(), Sandbox { id: ready.id.clone(), config });
            return Ok(());
        }
        // Sandboxes that are not ready any more cannot run containers: replace them.
        for old in &existing {
            self.remove_sandbox(&old.id).await;
        }
        let slot = self.creating.acquire().await.map_err(|_| RuntimeError::Service("the runtime is shutting down".into()))?;
        let r =
            self.client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() }).await;
        drop(slot);
        let r = r.map_err(|s| service(&format!("creating the sandbox of pod {}/{}", pod.namespace, pod.name), &s))?;
        self.sandboxes.lock().insert(pod.uid.clone(), Sandbox { id: r.pod_sandbox_id, config });
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) {
        if let Err(s) = self.client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.to_string() }).await
            && !s.is_not_found()
        {
            warn!(sandbox = %short(id), error = %s.message(), "stopping a pod sandbox failed");
        }
        if let Err(s) = self.client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() }).await
            && !s.is_not_found()
        {
            warn!(sandbox = %short(id), error = %s.message(), "removing a pod sandbox failed");
        }
    }

    async fn adopt_instance(&self, id: &InstanceId) -> Adoption {
        let Some(handle) = id.handle.clone() else {
            // Started by another runtime: nothing here can be watched.
            return Adoption::Ended(lost());
        };
        match self.client.container_status(cri::ContainerStatusRequest { container_id: handle.clone(), verbose: false }).await {
            Ok(r) => match r.status.as_ref().and_then(exit_of) {
                Some(exit) => Adoption::Ended(exit),
                None => {
                    let image_id = r.status.map(|s| s.image_ref).filter(|i| !i.is_empty());
                    Adoption::Running(Started { id: id.clone(), image_id, exit: self.watch_exit(handle) })
                }
            },
            Err(s) if s.is_not_found() => Adoption::Ended(lost()),
            // containerd is still starting: watch; the watcher keeps asking.
            Err(_) => Adoption::Running(Started { id: id.clone(), image_id: None, exit: self.watch_exit(handle) }),
        }
    }

    async fn signal_instance(&self, id: &InstanceId, signal: StopSignal) -> Result<(), RuntimeError> {
        let handle = id.handle.clone().ok_or_else(|| RuntimeError::NotRunning(id.to_string()))?;
        match signal {
            StopSignal::Term => {
                // CRI has no plain signal: a stop sends the image's stop signal (SIGTERM) and
                // waits. It runs on its own; a later Kill cuts it short.
                let client = self.client.clone();
                tokio::spawn(async move {
                    let r =
                        client.stop_container(cri::StopContainerRequest { container_id: handle.clone(), timeout: TERM_TIMEOUT_S }).await;
                    if let Err(s) = r
                        && !s.is_not_found()
                    {
                        debug!(container = %short(&handle), error = %s.message(), "stop (SIGTERM) failed");
                    }
                });
                Ok(())
            }
            StopSignal::Kill => match self.client.stop_container(cri::StopContainerRequest { container_id: handle, timeout: 0 }).await {
                Ok(_) => Ok(()),
                Err(s) if s.is_not_found() => Err(RuntimeError::NotRunning(id.to_string())),
                Err(s) => Err(service("killing a container", &s)),
            },
        }
    }

    async fn exec_instance(&self, id: &InstanceId, request: ExecRequest) -> Result<ExecOutput, RuntimeError> {
        let handle = id.handle.clone().ok_or_else(|| RuntimeError::NotRunning(id.to_string()))?;
        if request.argv.is_empty() {
            return Err(RuntimeError::Unsupported("exec needs a command".to_string()));
        }
        if request.stdin.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(RuntimeError::Unsupported(
                "the containerd runtime runs exec without stdin (CRI ExecSync); pipe the input through a file instead".to_string(),
            ));
        }
        let timeout = request.timeout.map_or(0, |t| i64::try_from(t.as_secs().max(1)).unwrap_or(i64::MAX));
        match self.client.exec_sync(cri::ExecSyncRequest { container_id: handle, cmd: request.argv, timeout }).await {
            Ok(r) => Ok(ExecOutput { stdout: r.stdout, stderr: r.stderr, exit_code: r.exit_code, timed_out: false }),
            Err(s) if s.code() == Some(Code::DeadlineExceeded) => Ok(ExecOutput { exit_code: 137, timed_out: true, ..Default::default() }),
            Err(s) if s.is_not_found() => Err(RuntimeError::NotRunning(id.to_string())),
            Err(s) => Err(service("exec", &s)),
        }
    }

    /// Removes this node's sandboxes whose pod is not in `keep`.
    async fn sweep_sandboxes(&self, keep: &(dyn Fn(&str) -> bool + Sync)) {
        let Some(node) = &self.config.node else { return };
        let filter = cri::PodSandboxFilter { label_selector: labels(&[(LABEL_MANAGED, "true"), (LABEL_NODE, node)]), ..Default::default() };
        let found = match self.client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }).await {
            Ok(r) => r.items,
            Err(e) => {
                warn!(error = %e, "listing sandboxes to sweep failed");
                return;
            }
        };
        for s in found {
            let uid = s.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
            if !keep(&uid) {
                info!(sandbox = %short(&s.id), pod = %uid, "removing the sandbox of a pod this node no longer runs");
                self.sandboxes.lock().remove(&uid);
                self.remove_sandbox(&s.id).await;
            }
        }
    }

    async fn cleanup(&self, pod_uid: &str) {
        self.sandboxes.lock().remove(pod_uid);
        match self.list_sandboxes(pod_uid).await {
            Ok(found) => {
                for s in found {
                    self.remove_sandbox(&s.id).await;
                }
            }
            Err(e) => warn!(pod = %pod_uid, error = %e, "cannot find the pod's sandboxes to remove them"),
        }
    }
}

impl Runtime for ContainerdRuntime {
    fn name(&self) -> &'static str {
        "containerd"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn limitations(&self) -> Vec<String> {
        let mut l = vec![
            "pods share the node's network namespace (no CNI): podIP is the node's IP and ports must not collide".to_string(),
            "exec runs without stdin and its output arrives when the command ends (CRI ExecSync)".to_string(),
        ];
        if self.config.image_dir.is_some() && self.ctr.is_none() {
            l.push("containerd's ctr is not on the PATH: images are only pulled, not imported from the image directory".to_string());
        }
        l
    }

    fn mounts_volumes(&self) -> bool {
        true
    }

    fn writes_logs(&self) -> bool {
        true
    }

    fn image_env(&self) -> bool {
        true
    }

    fn prepare_pod<'a>(&'a self, pod: &'a PodSandbox) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.prepare(pod).boxed()
    }

    fn start(&self, launch: ContainerLaunch) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        self.start_instance(launch).boxed()
    }

    fn adopt<'a>(&'a self, _launch: &'a ContainerLaunch, id: &'a InstanceId) -> BoxFuture<'a, Adoption> {
        self.adopt_instance(id).boxed()
    }

    fn signal<'a>(&'a self, id: &'a InstanceId, signal: StopSignal) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.signal_instance(id, signal).boxed()
    }

    fn exec<'a>(
        &'a self,
        id: &'a InstanceId,
        _launch: &'a ContainerLaunch,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, RuntimeError>> {
        self.exec_instance(id, request).boxed()
    }

    fn cleanup_pod<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()> {
        self.cleanup(pod_uid).boxed()
    }

    fn sweep<'a>(&'a self, keep: &'a (dyn Fn(&str) -> bool + Sync)) -> BoxFuture<'a, ()> {
        self.sweep_sandboxes(keep).boxed()
    }
}

/// How many sandboxes and containers are created at once: two per CPU.
fn creation_slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) * 2
}

/// Pods share the node's network; each container gets its own pid namespace; the pod's
/// containers share ipc.
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn sandbox_config(pod: &PodSandbox, attempt: u32) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: pod.name.clone(), uid: pod.uid.clone(), namespace: pod.namespace.clone(), attempt }),
        // The sandbox shares the node's network and with it the node's UTS namespace, where
        // runc refuses to set a hostname.
        hostname: String::new(),
        log_directory: pod.log_dir.to_string_lossy().into_owned(),
        labels: labels(&[
            (LABEL_POD_UID, &pod.uid),
            (LABEL_POD_NAME, &pod.name),
            (LABEL_POD_NAMESPACE, &pod.namespace),
            (LABEL_MANAGED, "true"),
        ]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.to_string(), ..Default::default() }
}

/// How a container ended, if it has.
fn exit_of(status: &cri::ContainerStatus) -> Option<Exit> {
    if status.state != cri::ContainerState::ContainerExited as i32 {
        return None;
    }
    let code = status.exit_code;
    // runc reports a signal death as 128 + the signal, as Kubernetes does.
    let signal = (code > 128 && code < 128 + 65).then_some(code - 128);
    let finished_at = Timestamp::from_nanosecond(i128::from(status.finished_at)).unwrap_or_else(|_| Timestamp::now());
    Some(Exit { code, signal, oom_killed: status.reason == "OOMKilled", lost: false, finished_at })
}

/// An instance containerd no longer knows.
fn lost() -> Exit {
    Exit { code: 137, signal: None, oom_killed: false, lost: true, finished_at: Timestamp::now() }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn service(what: &str, s: &CriError) -> RuntimeError {
    RuntimeError::Service(format!("{what}: {s}"))
}

/// A refused create: the image is missing (`ErrImagePull`), otherwise a create error.
fn create_error(launch: &ContainerLaunch, s: &CriError) -> RuntimeError {
    if s.is_not_found() && s.message().contains("image") {
        RuntimeError::Image(format!("image \"{}\" is not on this node: {}", launch.image, s.message()))
    } else {
        RuntimeError::Unsupported(format!("creating container {}: {}", launch.container, s.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> ContainerLaunch {
        ContainerLaunch {
            pod_uid: "u1".into(),
            hostname: "web-0".into(),
            container: "web".into(),
            attempt: 2,
            image: "k3s-daas.local/busybox:1".into(),
            command: vec![],
            args: vec!["httpd".into(), "-f".into()],
            env: vec![("A".into(), "1".into())],
            working_dir: Some("/srv".into()),
            mounts: vec![super::super::Mount { host_path: "/data/v".into(), container_path: "/v".into(), read_only: true }],
            limits: super::super::Limits { cpu_millis: Some(250), memory_bytes: Some(64 << 20), cpu_request_millis: Some(100) },
            run_as: Some((1000, 1000)),
            stdout: PathBuf::new(),
            stderr: PathBuf::new(),
            log: "/var/lib/daas/pods/u1/logs/web/2.log".into(),
            exit_file: PathBuf::new(),
        }
    }

    #[tokio::test]
    async fn container_configs_carry_what_the_pod_asked_for() {
        let pod = PodSandbox {
            uid: "u1".into(),
            name: "web-0".into(),
            namespace: "default".into(),
            hostname: "web-0".into(),
            log_dir: "/var/lib/daas/pods/u1/logs".into(),
        };
        let sandbox = Sandbox { id: "s".into(), config: sandbox_config(&pod, 0) };
        // No connection is made until a call.
        let rt = ContainerdRuntime {
            client: CriClient::connect_lazy(Path::new("/nonexistent.sock")).unwrap(),
            config: ContainerdConfig::new("/nonexistent.sock".into()),
            ctr: None,
            version: String::new(),
            sandboxes: Mutex::new(HashMap::new()),
            exits: Arc::new(Mutex::new(Waiters::new())),
            importing: tokio::sync::Mutex::new(()),
            creating: tokio::sync::Semaphore::new(creation_slots()),
            replacing: tokio::sync::Mutex::new(()),
        };
        let c = rt.container_config(&launch(), &sandbox);
        // The log path is relative to the sandbox's log directory, as CRI wants it.
        assert_eq!(c.log_path, "web/2.log");
        assert_eq!((c.command.len(), c.args.as_slice()), (0, &["httpd".to_string(), "-f".to_string()][..]));
        let r = c.linux.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!((r.cpu_period, r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes), (100_000, 25_000, 102, 64 << 20));
        let sc = c.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(1000));
        assert_eq!(sc.namespace_options.unwrap().network, cri::NamespaceMode::Node as i32);
        assert_eq!(c.metadata.unwrap().attempt, 2);
        assert_eq!(c.labels.get(LABEL_POD_UID).map(String::as_str), Some("u1"));
        assert!(c.mounts[0].readonly);
    }

    #[test]
    fn exits_come_from_exited_statuses_only() {
        let mut s = cri::ContainerStatus { state: cri::ContainerState::ContainerRunning as i32, ..Default::default() };
        assert!(exit_of(&s).is_none());
        s.state = cri::ContainerState::ContainerExited as i32;
        s.exit_code = 137;
        s.reason = "OOMKilled".into();
        s.finished_at = 1_700_000_000_000_000_000;
        let e = exit_of(&s).unwrap();
        assert_eq!((e.code, e.signal, e.oom_killed, e.lost), (137, Some(9), true, false));
        assert_eq!(e.finished_at.as_second(), 1_700_000_000);
    }
}
