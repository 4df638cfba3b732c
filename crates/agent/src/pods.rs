//! The pod manager: one worker task per pod bound to this node. A worker sets up the pod's
//! directory and volumes, runs the init containers to completion in order, then supervises
//! every container — restarts with exponential back-off (CrashLoopBackOff), startup,
//! liveness and readiness probes, lifecycle hooks, graceful termination — and keeps a
//! [`PodState`] from which [`PodManager::status`] answers. Start at [`PodManager`].
//!
//! On disk, `root/pods/<uid>/` (mode 0700: it holds resolved env) contains `pod.json` (the
//! pod as last synced), `state.json` (container records with pid, start time and restart
//! count), `volumes/<name>/`, `logs/<container>/<restartCount>.log` (CRI format) and
//! `run/<container>-<restartCount>.exit`. That is enough for [`PodManager::recover`] to
//! re-adopt running containers after an agent restart without asking the API server.
//!
//! **Invariant:** every task that touches a pod's processes is either the pod's worker or
//! registered with its `PodCell`, so [`PodManager::detach`] and [`PodManager::remove`]
//! reach all of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectReference, Pod, PodStatus, Secret};
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};

use crate::env::{self, Fetcher, PodContext};
use crate::logs::{self, InstanceLogFiles, LogOptions, LogStream};
use crate::probes::{self, Outcome, ProbeSpec, Target};
use crate::quantity::{self, NodeResources};
use crate::runtime::process::DEFAULT_PATH;
use crate::runtime::{
    Adoption, ContainerLaunch, ExecOutput, ExecRequest, Exit, InstanceId, PodSandbox, ProcessConfig, ProcessRuntime, Runtime, RuntimeError,
    Started, StopSignal,
};
use crate::status::{Current, PodState, SavedState, Terminated};
use crate::volumes::{self, VolumeInfo};

/// The waiting message of a container without `command`.
pub use crate::runtime::process::NO_COMMAND;

/// The message of a container that ended while no agent watched and left no exit code.
const LOST_MESSAGE: &str = "the container's process ended while no agent was watching it and left no exit code";

/// How long a postStart hook may take before it counts as failed.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// What a container gets after its preStop hook at least, whatever is left of the grace
/// period (the kubelet's minimum).
const MIN_GRACE_AFTER_PRE_STOP: Duration = Duration::from_secs(2);

/// How the pod manager runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The agent's data directory for pods: each pod lives in `root/pods/<uid>/`.
    pub root: PathBuf,
    pub node_name: String,
    /// The node's IP, which is also every pod's IP (processes share the host network).
    pub node_ip: String,
    /// Restart back-off: the first restart is immediate, then this, doubling up to
    /// `backoff_max`; it starts over after a container ran for twice `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Grace period when neither the deletion nor the pod names one.
    pub default_grace: Duration,
    /// What `limits.*` resolve to in a `resourceFieldRef` when a container sets none.
    pub node_resources: NodeResources,
    /// Variables every container gets and `$(NAME)` can see (the agent may put
    /// `KUBERNETES_SERVICE_HOST`/`PORT` here; none by default).
    pub service_env: Vec<(String, String)>,
    /// The slowest a log tailer polls a quiet container's output.
    pub log_poll_max: Duration,
    /// The process runtime's settings (used by [`PodManager::with_config`]).
    pub process: ProcessConfig,
}

impl Config {
    /// The kubelet's defaults: back-off 10 s doubling to 5 min, grace 30 s.
    pub fn new(root: PathBuf, node_name: String, node_ip: String) -> Config {
        Config {
            root,
            node_name,
            node_ip,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            default_grace: Duration::from_secs(30),
            node_resources: NodeResources::measure(),
            service_env: Vec::new(),
            log_poll_max: Duration::from_secs(1),
            process: ProcessConfig::default(),
        }
    }
}

/// ConfigMaps and Secrets for env, envFrom and volumes (the agent implements this with its
/// API client). `Ok(None)` means the object does not exist; `Err` that the API could not be
/// asked (the pod manager retries).
pub trait Sources: Send + Sync {
    fn config_map(&self, ns: &str, name: &str) -> BoxFuture<'_, Result<Option<ConfigMap>, String>>;
    fn secret(&self, ns: &str, name: &str) -> BoxFuture<'_, Result<Option<Secret>, String>>;
}

/// An event about a pod for the agent to post (`involvedObject` is the pod; `field_path`
/// names the container, e.g. `spec.containers{web}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub field_path: Option<String>,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// `Created`, `Started`, `Killing`, `BackOff`, `Unhealthy`, `Failed`, `FailedMount`, …
    pub reason: String,
    pub message: String,
}

impl PodEvent {
    /// The event's `involvedObject`.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            field_path: self.field_path.clone(),
            resource_version: None,
        }
    }
}

/// Errors of [`PodManager::logs`] and [`PodManager::exec`]; the messages are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The pod is not (or no longer) managed by this agent.
    #[error("pod {0} is not on this node")]
    PodNotFound(String),
    /// The pod has no container of that name.
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    /// The container never ran, so there is no log yet.
    #[error("container {container:?} in pod {pod:?} is waiting to start: {reason}")]
    ContainerWaiting { pod: String, container: String, reason: String },
    /// `previous` was asked for a container that has not restarted.
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { pod: String, container: String },
    /// Exec into a container that is not running.
    #[error("container {container:?} in pod {pod:?} is not running")]
    NotRunning { pod: String, container: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Runs the pods bound to this node. See the module documentation.
pub struct PodManager {
    shared: Arc<Shared>,
    pods: Mutex<HashMap<String, PodEntry>>,
    /// Removals under way (see [`PodManager::removals_done`]).
    removals: watch::Sender<usize>,
    /// The pods being removed, by uid.
    removing: Mutex<HashMap<String, Ongoing>>,
}

/// Marks a pod as being removed for as long as it lives.
struct MarkedRemoving<'a> {
    map: &'a Mutex<HashMap<String, Ongoing>>,
    uid: String,
    done: watch::Sender<bool>,
}

/// A removal under way: the pod, and whether the removal has finished.
type Ongoing = (Arc<PodCell>, watch::Receiver<bool>);

impl<'a> MarkedRemoving<'a> {
    fn new(map: &'a Mutex<HashMap<String, Ongoing>>, uid: &str, cell: Arc<PodCell>) -> MarkedRemoving<'a> {
        let (done, rx) = watch::channel(false);
        map.lock().insert(uid.to_string(), (cell, rx));
        MarkedRemoving { map, uid: uid.to_string(), done }
    }
}

impl Drop for MarkedRemoving<'_> {
    fn drop(&mut self) {
        self.map.lock().remove(&self.uid);
        let _ = self.done.send(true);
    }
}

/// Counts one removal under way for as long as it lives (also when its future is dropped).
struct Removing<'a>(&'a watch::Sender<usize>);

impl<'a> Removing<'a> {
    fn new(counter: &'a watch::Sender<usize>) -> Removing<'a> {
        counter.send_modify(|n| *n += 1);
        Removing(counter)
    }
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct PodEntry {
    cell: Arc<PodCell>,
    task: JoinHandle<()>,
}

/// What every pod worker shares.
struct Shared {
    config: Config,
    runtime: Arc<dyn Runtime>,
    sources: Arc<dyn Sources>,
    changes: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    events: Mutex<Vec<mpsc::UnboundedSender<PodEvent>>>,
}

impl Shared {
    fn notify_change(&self, uid: &str) {
        self.changes.lock().retain(|tx| tx.send(uid.to_string()).is_ok());
    }

    fn emit(&self, event: PodEvent) {
        debug!(pod = %event.name, reason = %event.reason, message = %event.message, "pod event");
        self.events.lock().retain(|tx| tx.send(event.clone()).is_ok());
    }
}

impl PodManager {
    /// A pod manager with the process runtime and the kubelet's defaults. `root`: the agent's
    /// data dir for pods (per-pod dirs `root/pods/<uid>/`: volumes, logs, state).
    pub fn new(root: PathBuf, node_name: String, node_ip: String, sources: Arc<dyn Sources>) -> Arc<PodManager> {
        PodManager::with_config(Config::new(root, node_name, node_ip), sources)
    }

    /// A pod manager with the process runtime set up from `config.process`.
    pub fn with_config(config: Config, sources: Arc<dyn Sources>) -> Arc<PodManager> {
        let runtime = Arc::new(ProcessRuntime::new(config.process.clone()));
        PodManager::with_runtime(config, runtime, sources)
    }

    /// A pod manager over any runtime. Logs once what the runtime cannot enforce.
    pub fn with_runtime(config: Config, runtime: Arc<dyn Runtime>, sources: Arc<dyn Sources>) -> Arc<PodManager> {
        for limitation in runtime.limitations() {
            warn!(runtime = runtime.name(), "{limitation}");
        }
        info!(runtime = runtime.name(), root = %config.root.display(), "pod runtime ready");
        Arc::new(PodManager {
            shared: Arc::new(Shared { config, runtime, sources, changes: Mutex::new(Vec::new()), events: Mutex::new(Vec::new()) }),
            pods: Mutex::new(HashMap::new()),
            removals: watch::Sender::new(0),
            removing: Mutex::new(HashMap::new()),
        })
    }

    /// Makes the pod run (idempotent; called on every pod change the agent sees for pods
    /// bound to this node). Returns immediately; the work happens in a per-pod task, so this
    /// must be called inside a Tokio runtime. A pod with a `deletionTimestamp` starts
    /// terminating (its containers get the deletion's grace period); the agent then calls
    /// [`PodManager::remove`] and deletes the object.
    pub fn sync(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            warn!(pod = ?pod.metadata.name, "pod without uid ignored");
            return;
        };
        if !valid_uid(&uid) {
            warn!(%uid, "pod uid not usable as a directory name; ignored");
            return;
        }
        let bound_to = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if bound_to != Some(self.shared.config.node_name.as_str()) {
            debug!(%uid, ?bound_to, "pod not bound to this node; ignored");
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let mut pods = self.pods.lock();
        if let Some(entry) = pods.get(&uid) {
            entry.cell.update_pod(pod.clone());
            if deleting {
                entry.cell.request_stop(entry.cell.grace());
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if deleting || phase == Some("Succeeded") || phase == Some("Failed") {
            // Finished or going away before this agent ran it: nothing to start.
            return;
        }
        let cell = PodCell::new(self.shared.clone(), uid.clone(), PodState::new(pod.clone(), Timestamp::now()));
        let task = tokio::spawn(run_pod(cell.clone()));
        pods.insert(uid, PodEntry { cell, task });
    }

    /// Stops the pod gracefully (preStop hooks, SIGTERM to each container's process group,
    /// `grace` — or the deletion's or the pod's grace period — then SIGKILL) and removes its
    /// processes, cgroups and directory. Resolves when done.
    ///
    /// A second removal of a pod already being removed (a forced delete during a graceful
    /// one, or the same deletion seen again) does not clean up under the first: with grace 0
    /// it kills the pod's containers now; either way it resolves when the first is done.
    pub async fn remove(&self, uid: &str, grace: Option<Duration>) {
        let _counted = Removing::new(&self.removals);
        // Taken out of `pods` and marked as being removed under one lock, so that a
        // concurrent removal sees one or the other.
        let (entry, ongoing, _marked) = {
            let mut pods = self.pods.lock();
            match pods.remove(uid) {
                Some(e) => {
                    let marked = MarkedRemoving::new(&self.removing, uid, e.cell.clone());
                    (Some(e), None, Some(marked))
                }
                None => (None, self.removing.lock().get(uid).cloned(), None),
            }
        };
        if let Some((cell, mut done)) = ongoing {
            if grace.is_some_and(|g| g.is_zero()) {
                cell.kill_everything().await;
            }
            // Resolves once the first removal has cleaned up (so that the agent's final
            // delete comes after it).
            let _ = done.wait_for(|d| *d).await;
            return;
        }
        if let Some(entry) = entry {
            let grace = grace.unwrap_or_else(|| entry.cell.grace());
            entry.cell.request_stop(grace);
            let mut task = entry.task;
            // Hooks and bookkeeping get a margin beyond the grace period.
            if tokio::time::timeout(grace + Duration::from_secs(10), &mut task).await.is_err() {
                warn!(%uid, "pod worker did not stop in time; killing what is left");
                task.abort();
            }
            entry.cell.abort_tasks();
            entry.cell.kill_everything().await;
        }
        self.shared.runtime.cleanup_pod(uid).await;
        if valid_uid(uid) {
            let dir = pod_dir(&self.shared.config.root, uid);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != io::ErrorKind::NotFound
            {
                warn!(dir = %dir.display(), error = %e, "removing the pod directory failed");
            }
        }
    }

    /// Asks the runtime to remove what it holds for pods that are neither in `listed` (a full
    /// list of the node's pods) nor run or being removed by this manager (checked after the
    /// runtime's own listing, so a pod that arrived meanwhile is kept; see [`Runtime::sweep`]).
    pub async fn sweep(&self, listed: &HashSet<String>) {
        let keep = |uid: &str| listed.contains(uid) || self.pods.lock().contains_key(uid) || self.removing.lock().contains_key(uid);
        self.shared.runtime.sweep(&keep).await;
    }

    /// Resolves when no removal is under way (the agent waits for this before it exits, so
    /// that a pod deleted just before leaves no process or container behind).
    pub async fn removals_done(&self) {
        let mut rx = self.removals.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Removes every pod (the agent's shutdown): all stop in parallel.
    pub async fn remove_all(&self, grace: Option<Duration>) {
        let uids: Vec<String> = self.pods.lock().keys().cloned().collect();
        futures::future::join_all(uids.iter().map(|uid| self.remove(uid, grace))).await;
    }

    /// The pod's status as the kubelet reports it: phase, conditions with their transition
    /// times, container and init-container statuses, hostIP/podIP (the node IP: processes
    /// share the host network), startTime. `None` for a pod this manager does not run.
    pub fn status(&self, uid: &str) -> Option<PodStatus> {
        self.cell(uid).ok().map(|c| c.status())
    }

    /// The runtime's `<name>://<version>` (the node's `containerRuntimeVersion`).
    pub fn runtime_version(&self) -> String {
        self.shared.runtime.version()
    }

    /// The uids of the pods this manager runs.
    pub fn uids(&self) -> Vec<String> {
        self.pods.lock().keys().cloned().collect()
    }

    /// How many pods are in phase Running (for heartbeats).
    pub fn running(&self) -> usize {
        let cells: Vec<Arc<PodCell>> = self.pods.lock().values().map(|e| e.cell.clone()).collect();
        cells.iter().filter(|c| c.state.lock().phase() == "Running").count()
    }

    /// The pod's namespace and name.
    pub fn pod_name(&self, uid: &str) -> Option<(String, String)> {
        let cell = self.cell(uid).ok()?;
        let st = cell.state.lock();
        Some((namespace_of(&st.pod), pod_name(&st.pod)))
    }

    /// The uid of the pod `namespace/name` this manager runs (logs and exec arrive by name).
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<String> {
        let cells: Vec<Arc<PodCell>> = self.pods.lock().values().map(|e| e.cell.clone()).collect();
        cells
            .iter()
            .find(|c| {
                let st = c.state.lock();
                namespace_of(&st.pod) == namespace && st.pod.metadata.name.as_deref() == Some(name)
            })
            .map(|c| c.uid.clone())
    }

    /// A channel that yields a pod's uid whenever its status changed, so the agent patches
    /// it. Every call makes a new subscriber; each sees every change after it subscribed.
    pub fn changes(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.changes.lock().push(tx);
        rx
    }

    /// A channel of the pods' events (Created, Started, Killing, BackOff, Unhealthy, …) for
    /// the agent to post. Every call makes a new subscriber.
    pub fn events(&self) -> mpsc::UnboundedReceiver<PodEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.events.lock().push(tx);
        rx
    }

    /// Where each of the pod's volumes is on the host. Without root the process runtime does
    /// not apply `volumeMounts`, and this is the only place a volume is.
    pub fn volume_paths(&self, uid: &str) -> Option<BTreeMap<String, PathBuf>> {
        let cell = self.cell(uid).ok()?;
        let volumes = cell.volumes.lock();
        Some(volumes.iter().map(|(k, v)| (k.clone(), v.host_path.clone())).collect())
    }

    /// A container's log as `kubectl logs` wants it: tail lines, since, timestamps
    /// (RFC 3339 prefix), previous instance, limit, and follow (the stream stays open until
    /// the instance ends). An empty `container` means the pod's default container.
    pub async fn logs(&self, uid: &str, container: &str, opts: LogOptions) -> Result<LogStream, PodError> {
        let cell = self.cell(uid)?;
        let attempt = {
            let st = cell.state.lock();
            let pod = pod_name(&st.pod);
            let container = default_container(&st, container);
            let rec =
                st.record(container).ok_or_else(|| PodError::ContainerNotFound { pod: pod.clone(), container: container.to_string() })?;
            if opts.previous {
                rec.last.as_ref().map(|t| t.attempt).ok_or_else(|| PodError::NoPrevious { pod, container: container.to_string() })?
            } else {
                match &rec.current {
                    Current::Running { attempt, .. } => *attempt,
                    Current::Terminated(t) => t.attempt,
                    // Backing off: the log of the instance that ended last.
                    Current::Waiting { reason, .. } => match &rec.last {
                        Some(t) => t.attempt,
                        None => return Err(PodError::ContainerWaiting { pod, container: container.to_string(), reason: reason.clone() }),
                    },
                }
            }
        };
        let name = default_container(&cell.state.lock(), container).to_string();
        let path = cell.log_files(&name, attempt).log;
        let live_cell = cell.clone();
        Ok(logs::read_log(path, &opts, Box::new(move || live_cell.is_running(&name, attempt))))
    }

    /// Runs a command in the container's context (same env and working directory; its
    /// namespaces and cgroup when the runtime made them), non-interactively: stdin bytes in,
    /// stdout, stderr and exit code out. An empty `container` means the pod's default
    /// container.
    pub async fn exec(&self, uid: &str, container: &str, command: Vec<String>, stdin: Option<Vec<u8>>) -> Result<ExecOutput, PodError> {
        let cell = self.cell(uid)?;
        let (id, launch) = {
            let st = cell.state.lock();
            let pod = pod_name(&st.pod);
            let container = default_container(&st, container);
            let rec =
                st.record(container).ok_or_else(|| PodError::ContainerNotFound { pod: pod.clone(), container: container.to_string() })?;
            let (id, launch) = rec.running().ok_or_else(|| PodError::NotRunning { pod, container: container.to_string() })?;
            (id, launch.clone())
        };
        self.shared.runtime.exec(&id, &launch, ExecRequest { argv: command, stdin, timeout: None }).await.map_err(PodError::from)
    }

    /// Takes back the pods a previous agent left in `root/pods`: running containers are
    /// re-adopted (a pid is trusted only with the start time recorded for it), ended ones
    /// are accounted for and restarted as their policy says. Returns the uids found; the
    /// agent should [`PodManager::remove`] those the API server no longer binds here. Call
    /// it once, inside a Tokio runtime, before the first [`PodManager::sync`].
    pub fn recover(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.shared.config.root.join("pods")) else { return Vec::new() };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().map(str::to_string) else { continue };
            if !valid_uid(&uid) || self.pods.lock().contains_key(&uid) {
                continue;
            }
            let pod_path = entry.path().join("pod.json");
            let pod: Pod =
                match fs::read(&pod_path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(path = %pod_path.display(), error = %e, "cannot read a pod left by a previous agent; skipped");
                        continue;
                    }
                };
            let saved: Option<SavedState> = fs::read(entry.path().join("state.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let state = match saved {
                Some(saved) => PodState::restore(pod, saved),
                None => PodState::new(pod, Timestamp::now()),
            };
            info!(%uid, pod = %pod_name(&state.pod), "recovering a pod from a previous agent");
            let cell = PodCell::new(self.shared.clone(), uid.clone(), state);
            let task = tokio::spawn(run_pod(cell.clone()));
            self.pods.lock().insert(uid.clone(), PodEntry { cell, task });
            found.push(uid);
        }
        found
    }

    /// Stops supervising every pod without stopping it (an agent restart or upgrade): the
    /// processes keep running and the next agent's [`PodManager::recover`] adopts them.
    pub fn detach(&self) {
        for (_, entry) in self.pods.lock().drain() {
            entry.task.abort();
            entry.cell.abort_tasks();
        }
    }

    fn cell(&self, uid: &str) -> Result<Arc<PodCell>, PodError> {
        self.pods.lock().get(uid).map(|e| e.cell.clone()).ok_or_else(|| PodError::PodNotFound(uid.to_string()))
    }
}

/// One pod: its state and what its tasks share.
struct PodCell {
    uid: String,
    dir: PathBuf,
    shared: Arc<Shared>,
    state: Mutex<PodState>,
    /// The status last announced on the changes channel.
    last_status: Mutex<Option<PodStatus>>,
    volumes: Mutex<BTreeMap<String, VolumeInfo>>,
    /// `Some(grace)` once the pod is to stop.
    stop: watch::Sender<Option<Duration>>,
    /// Supervisor tasks, for [`PodManager::detach`].
    tasks: Mutex<Vec<AbortHandle>>,
    /// One-time warnings already logged.
    warned: Mutex<HashSet<String>>,
}

impl PodCell {
    fn new(shared: Arc<Shared>, uid: String, mut state: PodState) -> Arc<PodCell> {
        let dir = pod_dir(&shared.config.root, &uid);
        state.refresh_conditions(Timestamp::now());
        Arc::new(PodCell {
            uid,
            dir,
            shared,
            state: Mutex::new(state),
            last_status: Mutex::new(None),
            volumes: Mutex::new(BTreeMap::new()),
            stop: watch::channel(None).0,
            tasks: Mutex::new(Vec::new()),
            warned: Mutex::new(HashSet::new()),
        })
    }

    fn pod(&self) -> Pod {
        self.state.lock().pod.clone()
    }

    fn restart_policy(&self) -> String {
        self.state.lock().restart_policy().to_string()
    }

    /// `name_namespace(uid)`, as the kubelet names a pod in messages.
    fn pod_ref(&self) -> String {
        let st = self.state.lock();
        format!("{}_{}({})", st.pod.metadata.name.as_deref().unwrap_or_default(), namespace_of(&st.pod), self.uid)
    }

    fn context<'a>(&'a self, pod: &'a Pod) -> PodContext<'a> {
        let c = &self.shared.config;
        PodContext { pod, node_name: &c.node_name, host_ip: &c.node_ip, pod_ip: &c.node_ip, node: &c.node_resources }
    }

    fn status(&self) -> PodStatus {
        self.state.lock().status(&self.shared.config.node_ip)
    }

    /// Changes the state, records condition transitions, persists it, and announces the
    /// pod on the changes channel if its status changed.
    fn update<R>(&self, f: impl FnOnce(&mut PodState) -> R) -> R {
        let (out, changed) = {
            let mut st = self.state.lock();
            let out = f(&mut st);
            st.refresh_conditions(Timestamp::now());
            self.persist(&st);
            let status = st.status(&self.shared.config.node_ip);
            let mut last = self.last_status.lock();
            let changed = last.as_ref() != Some(&status);
            if changed {
                *last = Some(status);
            }
            (out, changed)
        };
        if changed {
            self.shared.notify_change(&self.uid);
        }
        out
    }

    /// A newer version of the pod from the API server.
    fn update_pod(&self, pod: Pod) {
        let (spec_changed, downward_changed) = {
            let st = self.state.lock();
            let old = &st.pod.metadata;
            (
                st.pod.spec != pod.spec || old.deletion_timestamp != pod.metadata.deletion_timestamp,
                old.labels != pod.metadata.labels || old.annotations != pod.metadata.annotations,
            )
        };
        self.update(|s| s.pod = pod);
        if spec_changed || downward_changed {
            self.write_pod_json();
        }
        if downward_changed && self.state.lock().sandbox_ready {
            let pod = self.pod();
            if let Err(e) = volumes::refresh_downward_api(&self.context(&pod), &self.dir.join("volumes")) {
                warn!(pod = %self.pod_ref(), error = %e, "refreshing downward API volumes failed");
            }
        }
    }

    fn persist(&self, st: &PodState) {
        let result = serde_json::to_vec(&st.save()).map_err(io::Error::other).and_then(|b| write_atomic(&self.dir.join("state.json"), &b));
        if let Err(e) = result {
            // Before the sandbox exists and after removal there is no directory to write to.
            debug!(uid = %self.uid, error = %e, "pod state not saved");
        }
    }

    fn write_pod_json(&self) {
        let pod = self.pod();
        let result = serde_json::to_vec(&pod).map_err(io::Error::other).and_then(|b| write_atomic(&self.dir.join("pod.json"), &b));
        if let Err(e) = result {
            debug!(uid = %self.uid, error = %e, "pod.json not saved");
        }
    }

    fn grace(&self) -> Duration {
        let st = self.state.lock();
        let secs =
            st.pod.metadata.deletion_grace_period_seconds.or_else(|| st.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds));
        secs.and_then(|s| u64::try_from(s).ok()).map_or(self.shared.config.default_grace, Duration::from_secs)
    }

    /// Asks every container to stop within `grace` (a shorter grace overrides a longer one,
    /// as a forced deletion does).
    fn request_stop(&self, grace: Duration) {
        self.stop.send_if_modified(|current| {
            if current.is_some_and(|g| g <= grace) {
                false
            } else {
                *current = Some(grace);
                true
            }
        });
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
        let handle = tokio::spawn(fut);
        self.tasks.lock().push(handle.abort_handle());
        handle
    }

    fn abort_tasks(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// SIGKILL to every instance still recorded as running (after the worker is gone).
    async fn kill_everything(&self) {
        let running: Vec<InstanceId> = {
            let st = self.state.lock();
            st.containers.iter().chain(st.init.iter()).filter_map(|rec| rec.running().map(|(id, _)| id)).collect()
        };
        for id in running {
            let _ = self.shared.runtime.signal(&id, StopSignal::Kill).await;
        }
    }

    fn is_running(&self, container: &str, attempt: u32) -> bool {
        self.state.lock().record(container).is_some_and(|r| matches!(r.current, Current::Running { attempt: a, .. } if a == attempt))
    }

    fn log_files(&self, container: &str, attempt: u32) -> InstanceLogFiles {
        InstanceLogFiles::new(&self.dir.join("logs").join(container), attempt)
    }

    fn set_ready(&self, container: &str, ready: bool) {
        self.update(|s| {
            if let Some(r) = s.record_mut(container) {
                r.ready = ready && r.started && r.running().is_some();
            }
        });
    }

    fn event(&self, container: Option<(&str, Role)>, type_: &'static str, reason: &str, message: String) {
        let warning = type_ == "Warning";
        let (namespace, name) = {
            let st = self.state.lock();
            (namespace_of(&st.pod), st.pod.metadata.name.clone().unwrap_or_default())
        };
        self.shared.emit(PodEvent {
            uid: self.uid.clone(),
            namespace,
            name,
            field_path: container.map(|(c, role)| match role {
                Role::Main => format!("spec.containers{{{c}}}"),
                Role::Init | Role::Sidecar => format!("spec.initContainers{{{c}}}"),
            }),
            warning,
            reason: reason.to_string(),
            message,
        });
    }

    /// Logs a weaker-than-asked probe (HTTPS or gRPC checked as TCP) once per container.
    fn note_downgrade(&self, container: &str, outcome: &Outcome) {
        if let Outcome::Warning(message) = outcome
            && self.warned.lock().insert(format!("{container}: {message}"))
        {
            warn!(pod = %self.pod_ref(), %container, "{message}");
        }
    }
}

/// Which list a container is in, and how it restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Init,
    Main,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
}

/// How a supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Succeeded,
    Failed,
    Stopped,
}

/// A supervisor's next move.
enum Step {
    /// Start an instance after `delay` (shown as CrashLoopBackOff while waiting).
    Start { delay: Duration },
    /// Try again after a configuration error, keeping its waiting reason.
    Retry { delay: Duration },
    /// Watch a started or adopted instance (`adopted_at`: when it really started).
    Watch { started: Started, launch: Box<ContainerLaunch>, adopted_at: Option<Timestamp> },
    /// An instance ended with this code: restart or finish.
    Decide { code: i32 },
}

/// Why an instance could not be started.
enum StartFailure {
    /// Env or volume configuration (`CreateContainerConfigError`).
    Config(String),
    /// The runtime cannot run the container as specified (`CreateContainerError`).
    Create(String),
    /// The process did not start (`StartError`, exit 128); uses up an attempt.
    Start(String),
    /// The image is missing and could not be pulled (`ErrImagePull`).
    Image(String),
}

/// Why a container must be killed (a failed liveness or startup probe).
struct Kill {
    message: String,
    grace: Option<Duration>,
}

/// How a watched instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited,
    Killed,
    Stopped,
}

/// The kubelet's restart back-off for one container.
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Option<Duration>,
    last: Option<tokio::time::Instant>,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, current: None, last: None }
    }

    /// The delay before the next restart: none the first time (and after the container ran
    /// for twice the maximum), then `initial`, doubling up to `max`.
    fn next_delay(&mut self) -> Duration {
        let now = tokio::time::Instant::now();
        let expired = self.last.is_some_and(|t| now.saturating_duration_since(t) > self.max * 2);
        if expired {
            self.current = None;
        }
        let delay = self.current.unwrap_or(Duration::ZERO);
        self.current = Some(match self.current {
            None => self.initial,
            Some(d) => (d * 2).min(self.max),
        });
        self.last = Some(now + delay);
        delay
    }
}

/// A pod's worker: sandbox, init containers in order, then every container under its own
/// supervisor; sidecars stop last.
async fn run_pod(cell: Arc<PodCell>) {
    let mut stop = cell.stop.subscribe();
    if !prepare_sandbox(&cell, &mut stop).await {
        return;
    }
    let spec = cell.pod().spec.unwrap_or_default();
    let (sidecar_stop_tx, sidecar_stop_rx) = watch::channel(None);
    let mut sidecars = Vec::new();
    let mut initialized = true;
    for c in spec.init_containers.clone().unwrap_or_default() {
        if stop.borrow().is_some() {
            initialized = false;
            break;
        }
        if c.restart_policy.as_deref() == Some("Always") {
            let name = c.name.clone();
            sidecars.push(cell.spawn(supervise(cell.clone(), c, Role::Sidecar, sidecar_stop_rx.clone())));
            if !wait_started(&cell, &name, &mut stop).await {
                initialized = false;
                break;
            }
            continue;
        }
        // A recovered pod does not run an init container that already succeeded.
        let done_before = cell.state.lock().record(&c.name).and_then(|r| r.terminated()).is_some_and(|t| t.exit_code == 0);
        if done_before {
            continue;
        }
        if supervise(cell.clone(), c, Role::Init, stop.clone()).await != Finish::Succeeded {
            initialized = false;
            break;
        }
    }
    if initialized {
        let handles: Vec<JoinHandle<Finish>> =
            spec.containers.iter().map(|c| cell.spawn(supervise(cell.clone(), c.clone(), Role::Main, stop.clone()))).collect();
        for h in handles {
            let _ = h.await;
        }
    }
    // The regular containers are done (or never ran): sidecars go last.
    let requested = *stop.borrow();
    let _ = sidecar_stop_tx.send(Some(requested.unwrap_or_else(|| cell.grace())));
    for h in sidecars {
        let _ = h.await;
    }
    debug!(pod = %cell.pod_ref(), "pod worker done");
}

/// Directories, runtime state and volumes; retried with back-off until they work or the pod
/// stops (`false`).
async fn prepare_sandbox(cell: &Arc<PodCell>, stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    let config = &cell.shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    loop {
        if stop.borrow().is_some() {
            return false;
        }
        match setup_sandbox(cell).await {
            Ok(warnings) => {
                for w in warnings {
                    cell.event(None, "Warning", "FailedMount", w);
                }
                cell.update(|s| {
                    s.sandbox_ready = true;
                    s.sandbox_message = None;
                });
                return true;
            }
            Err((reason, message)) => {
                warn!(pod = %cell.pod_ref(), "{message}");
                cell.event(None, "Warning", reason, message.clone());
                cell.update(|s| s.sandbox_message = Some(message));
                let delay = backoff.next_delay().max(config.backoff_initial);
                if sleep_or_stop(delay, stop).await {
                    return false;
                }
            }
        }
    }
}

/// Prepares the pod's directories, runtime sandbox and volumes. The error is an event reason
/// and its message, as the kubelet words them.
async fn setup_sandbox(cell: &Arc<PodCell>) -> Result<Vec<String>, (&'static str, String)> {
    let mount_failed = |e: String| ("FailedMount", format!("MountVolume.SetUp failed: {e}"));
    for sub in ["volumes", "logs", "run"] {
        let d = cell.dir.join(sub);
        fs::create_dir_all(&d).map_err(|e| mount_failed(format!("creating {}: {e}", d.display())))?;
    }
    // The directory holds resolved env, which may carry secrets: the agent's eyes only.
    fs::set_permissions(&cell.dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| mount_failed(format!("securing {}: {e}", cell.dir.display())))?;
    cell.write_pod_json();
    let pod = cell.pod();
    let sandbox = PodSandbox {
        uid: cell.uid.clone(),
        name: pod_name(&pod),
        namespace: namespace_of(&pod),
        hostname: hostname_of(&pod),
        log_dir: cell.dir.join("logs"),
    };
    cell.shared
        .runtime
        .prepare_pod(&sandbox)
        .await
        .map_err(|e| ("FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e}")))?;
    let volumes_dir = cell.dir.join("volumes");
    let already = cell.state.lock().sandbox_ready;
    let (vols, warnings) = if already {
        // Re-adopted after an agent restart: the volumes exist, and the API server may not
        // be reachable yet.
        (volumes::volume_paths(&pod, &volumes_dir), Vec::new())
    } else {
        let ctx = cell.context(&pod);
        let ns = namespace_of(&pod);
        let mut fetch = Fetcher::new(cell.shared.sources.as_ref(), &ns);
        volumes::prepare_volumes(&ctx, &volumes_dir, &mut fetch).await.map_err(|e| mount_failed(e.to_string()))?
    };
    let mounts_something = pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.volume_mounts.as_ref().is_some_and(|m| !m.is_empty()))
    });
    if mounts_something && !cell.shared.runtime.mounts_volumes() {
        let map: Vec<String> = vols.iter().map(|(k, v)| format!("{k}={}", v.host_path.display())).collect();
        info!(pod = %cell.pod_ref(), volumes = %map.join(","), "volumeMounts are not applied by this runtime; the volumes are at their host directories");
    }
    *cell.volumes.lock() = vols;
    Ok(warnings)
}

/// Waits until a sidecar has started (`true`) or the pod stops (`false`).
async fn wait_started(cell: &PodCell, name: &str, stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    loop {
        if stop.borrow().is_some() {
            return false;
        }
        if cell.state.lock().record(name).is_some_and(|r| r.started) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Sleeps `delay`; `true` if the pod was asked to stop meanwhile.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => stop.borrow().is_some(),
        _ = wait_stop(stop) => true,
    }
}

/// Resolves with the grace period once the pod is asked to stop.
async fn wait_stop(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        let requested = *stop.borrow_and_update();
        if let Some(grace) = requested {
            return grace;
        }
        if stop.changed().await.is_err() {
            // Nobody can ask any more.
            return std::future::pending().await;
        }
    }
}

/// One container for the pod's life: start, watch, restart as its role and the pod's
/// restartPolicy say.
async fn supervise(cell: Arc<PodCell>, spec: Container, role: Role, mut stop: watch::Receiver<Option<Duration>>) -> Finish {
    let config = &cell.shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut step = resume(&cell, &spec, role).await;
    loop {
        step = match step {
            Step::Start { delay } => {
                if !delay.is_zero() {
                    let message =
                        format!("back-off {} restarting failed container={} pod={}", format_delay(delay), spec.name, cell.pod_ref());
                    cell.update(|s| {
                        if let Some(r) = s.record_mut(&spec.name) {
                            r.set_waiting("CrashLoopBackOff", Some(message));
                        }
                    });
                    cell.event(
                        Some((spec.name.as_str(), role)),
                        "Warning",
                        "BackOff",
                        format!("Back-off restarting failed container {} in pod {}", spec.name, cell.pod_ref()),
                    );
                    if sleep_or_stop(delay, &mut stop).await {
                        return Finish::Stopped;
                    }
                }
                if stop.borrow().is_some() {
                    return Finish::Stopped;
                }
                match start_instance(&cell, &spec).await {
                    Ok((started, launch)) => Step::Watch { started, launch: Box::new(launch), adopted_at: None },
                    Err(StartFailure::Config(message)) => {
                        waiting_error(&cell, &spec, role, "CreateContainerConfigError", message);
                        Step::Retry { delay: backoff.next_delay().max(config.backoff_initial) }
                    }
                    Err(StartFailure::Create(message)) => {
                        waiting_error(&cell, &spec, role, "CreateContainerError", message);
                        Step::Retry { delay: backoff.next_delay().max(config.backoff_initial) }
                    }
                    Err(StartFailure::Image(message)) => {
                        waiting_error(&cell, &spec, role, "ErrImagePull", message);
                        let delay = backoff.next_delay().max(config.backoff_initial);
                        let image = spec.image.clone().unwrap_or_default();
                        cell.update(|s| {
                            if let Some(r) = s.record_mut(&spec.name) {
                                r.set_waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\"")));
                            }
                        });
                        Step::Retry { delay }
                    }
                    Err(StartFailure::Start(message)) => {
                        cell.event(Some((spec.name.as_str(), role)), "Warning", "Failed", format!("Error: {message}"));
                        Step::Decide { code: 128 }
                    }
                }
            }
            Step::Retry { delay } => {
                if sleep_or_stop(delay, &mut stop).await {
                    return Finish::Stopped;
                }
                Step::Start { delay: Duration::ZERO }
            }
            Step::Watch { started, launch, adopted_at } => {
                let (code, ended) = watch_instance(&cell, &spec, role, started, *launch, adopted_at, &mut stop).await;
                if ended == Ended::Stopped {
                    return Finish::Stopped;
                }
                Step::Decide { code }
            }
            Step::Decide { code } => match decide(role, &cell.restart_policy(), code) {
                Some(finish) => return finish,
                None => Step::Start { delay: backoff.next_delay() },
            },
        };
    }
}

/// Whether an ended instance finishes its container (`Some`) or is restarted (`None`).
fn decide(role: Role, policy: &str, code: i32) -> Option<Finish> {
    let outcome = if code == 0 { Finish::Succeeded } else { Finish::Failed };
    match role {
        Role::Sidecar => None,
        Role::Init if code == 0 => Some(Finish::Succeeded),
        Role::Init => (policy == "Never").then_some(Finish::Failed),
        Role::Main => match policy {
            "Never" => Some(outcome),
            "OnFailure" => (code == 0).then_some(Finish::Succeeded),
            _ => None,
        },
    }
}

fn waiting_error(cell: &PodCell, spec: &Container, role: Role, reason: &str, message: String) {
    warn!(pod = %cell.pod_ref(), container = %spec.name, %reason, "{message}");
    cell.update(|s| {
        if let Some(r) = s.record_mut(&spec.name) {
            r.set_waiting(reason, Some(message.clone()));
        }
    });
    cell.event(Some((spec.name.as_str(), role)), "Warning", "Failed", format!("Error: {message}"));
}

/// Where a supervisor picks up: a running instance left by a previous agent is adopted; one
/// that ended meanwhile is accounted for; otherwise start.
async fn resume(cell: &Arc<PodCell>, spec: &Container, role: Role) -> Step {
    let current = cell.state.lock().record(&spec.name).map(|r| r.current.clone());
    match current {
        Some(Current::Running { id, launch, started_at, container_id, .. }) => match cell.shared.runtime.adopt(&launch, &id).await {
            Adoption::Running(started) => {
                info!(pod = %cell.pod_ref(), container = %spec.name, instance = %id, "re-adopted a running container");
                Step::Watch { started, launch, adopted_at: Some(started_at) }
            }
            Adoption::Ended(exit) => {
                info!(pod = %cell.pod_ref(), container = %spec.name, code = exit.code, "a container ended while no agent was watching");
                // What it wrote after the last agent stopped reading goes to its log first.
                if !cell.shared.runtime.writes_logs() {
                    let (_done, done_rx) = watch::channel(true);
                    logs::run_tailer(cell.log_files(&spec.name, launch.attempt), done_rx, cell.shared.config.log_poll_max).await;
                }
                let code = exit.code;
                record_exit(cell, spec, role, &launch, started_at, container_id, &exit);
                Step::Decide { code }
            }
        },
        Some(Current::Terminated(t)) => Step::Decide { code: t.exit_code },
        _ => Step::Start { delay: Duration::ZERO },
    }
}

/// Resolves the container's env, argv and mounts and starts an instance.
async fn start_instance(cell: &Arc<PodCell>, spec: &Container) -> Result<(Started, ContainerLaunch), StartFailure> {
    let pod = cell.pod();
    let config = &cell.shared.config;
    let ctx = cell.context(&pod);
    let mut fetch = Fetcher::new(cell.shared.sources.as_ref(), &namespace_of(&pod));
    let hostname = hostname_of(&pod);
    let run_as = run_as(&pod, spec);
    let base = if cell.shared.runtime.image_env() { Vec::new() } else { base_env(&hostname, run_as) };
    let env =
        env::container_env(&ctx, spec, &mut fetch, &base, &config.service_env).await.map_err(|e| StartFailure::Config(e.to_string()))?;
    let lookup = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let command: Vec<String> = spec.command.iter().flatten().map(|a| env::expand(a, lookup)).collect();
    let args: Vec<String> = spec.args.iter().flatten().map(|a| env::expand(a, lookup)).collect();
    let mounts = {
        let vols = cell.volumes.lock();
        volumes::container_mounts(spec, &vols, &env)
    }
    .map_err(|e| StartFailure::Config(e.to_string()))?;
    let mounts = if cell.shared.runtime.mounts_volumes() { mounts } else { Vec::new() };
    let attempt = cell.state.lock().record(&spec.name).map_or(0, |r| r.starts);
    let files = cell.log_files(&spec.name, attempt);
    if let Some(dir) = files.log.parent() {
        fs::create_dir_all(dir).map_err(|e| StartFailure::Create(format!("creating {}: {e}", dir.display())))?;
    }
    let launch = ContainerLaunch {
        pod_uid: cell.uid.clone(),
        hostname,
        container: spec.name.clone(),
        attempt,
        image: spec.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: spec.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
        limits: quantity::limits_of(spec),
        run_as,
        stdout: files.stdout,
        stderr: files.stderr,
        log: files.log,
        exit_file: cell.dir.join("run").join(format!("{}-{attempt}.exit", spec.name)),
    };
    match cell.shared.runtime.start(launch.clone()).await {
        Ok(started) => Ok((started, launch)),
        Err(RuntimeError::Unsupported(message)) => Err(StartFailure::Create(message)),
        Err(RuntimeError::Image(message)) => Err(StartFailure::Image(message)),
        // The runtime's service failed before anything was created: retried, no attempt used.
        Err(RuntimeError::Service(message)) => Err(StartFailure::Create(message)),
        Err(e) => {
            // As with a container that was created but did not start, the attempt is used up.
            let message = e.to_string();
            let t = Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".to_string(),
                message: Some(message.clone()),
                started_at: None,
                finished_at: Timestamp::now(),
                attempt,
                container_id: None,
            };
            cell.update(|s| {
                if let Some(r) = s.record_mut(&spec.name) {
                    r.starts = attempt + 1;
                    r.set_terminated(t);
                }
            });
            Err(StartFailure::Start(message))
        }
    }
}

/// Watches one instance until it ends: its log tailer, postStart hook and probes run
/// alongside; a failed liveness/startup probe or a stop request terminates it. Returns its
/// exit code and how it ended.
async fn watch_instance(
    cell: &Arc<PodCell>,
    spec: &Container,
    role: Role,
    started: Started,
    launch: ContainerLaunch,
    adopted_at: Option<Timestamp>,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> (i32, Ended) {
    let runtime = cell.shared.runtime.clone();
    let id = started.id.clone();
    let container_id = id.container_id(runtime.name());
    let started_at = adopted_at.unwrap_or_else(Timestamp::now);
    let has_startup = spec.startup_probe.is_some();
    let has_readiness = spec.readiness_probe.is_some();
    cell.update(|s| {
        if let Some(r) = s.record_mut(&spec.name) {
            r.starts = launch.attempt + 1;
            r.set_running(started_at, id.clone(), container_id.clone(), launch.clone());
            if started.image_id.is_some() {
                r.image_id.clone_from(&started.image_id);
            }
            r.started = !has_startup;
            r.ready = !has_startup && !has_readiness && role != Role::Init;
        }
    });
    let who = Some((spec.name.as_str(), role));
    if adopted_at.is_none() {
        cell.event(who, "Normal", "Created", format!("Created container: {}", spec.name));
        cell.event(who, "Normal", "Started", format!("Started container {}", spec.name));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let tailer = async {
        if !runtime.writes_logs() {
            logs::run_tailer(cell.log_files(&spec.name, launch.attempt), done_rx, cell.shared.config.log_poll_max).await;
        }
    };
    let target = Target {
        runtime: runtime.clone(),
        id,
        launch: Arc::new(launch.clone()),
        host: cell.shared.config.node_ip.clone(),
        ports: spec.ports.clone().unwrap_or_default(),
    };
    let post_start = match adopted_at {
        None => spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).map(probes::hook_action),
        Some(_) => None,
    };
    let watcher = async {
        let mut exit = started.exit;
        let result: (Exit, Ended) = 'run: {
            if let Some(action) = post_start {
                tokio::select! {
                    e = &mut exit => break 'run (e, Ended::Exited),
                    outcome = probes::check(&action, &target, POST_START_TIMEOUT) => {
                        if let Outcome::Failure(message) = outcome {
                            cell.event(who, "Warning", "FailedPostStartHook", format!("PostStartHook failed: {message}"));
                            let e = terminate(cell, spec, role, &target, exit, cell.grace()).await;
                            break 'run (e, Ended::Killed);
                        }
                    }
                    grace = wait_stop(stop) => {
                        cell.event(who, "Normal", "Killing", format!("Stopping container {}", spec.name));
                        break 'run (terminate(cell, spec, role, &target, exit, grace).await, Ended::Stopped);
                    }
                }
            }
            let probing = run_probes(cell, spec, role, &target);
            tokio::pin!(probing);
            tokio::select! {
                e = &mut exit => (e, Ended::Exited),
                kill = &mut probing => {
                    cell.event(who, "Normal", "Killing", kill.message);
                    let grace = kill.grace.unwrap_or_else(|| cell.grace());
                    (terminate(cell, spec, role, &target, exit, grace).await, Ended::Killed)
                }
                grace = wait_stop(stop) => {
                    cell.event(who, "Normal", "Killing", format!("Stopping container {}", spec.name));
                    (terminate(cell, spec, role, &target, exit, grace).await, Ended::Stopped)
                }
            }
        };
        // The tailer drains what is left and stops; the instance counts as ended only then,
        // so a log read after that is complete.
        let _ = done_tx.send(true);
        result
    };
    let ((mut exit, ended), ()) = tokio::join!(watcher, tailer);
    if ended != Ended::Exited {
        // We ended it, so it is not lost even if it left no exit code.
        exit.lost = false;
    }
    let code = exit.code;
    record_exit(cell, spec, role, &launch, started_at, container_id, &exit);
    (code, ended)
}

/// Records how an instance ended.
fn record_exit(
    cell: &PodCell,
    spec: &Container,
    role: Role,
    launch: &ContainerLaunch,
    started_at: Timestamp,
    container_id: String,
    exit: &Exit,
) {
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.lost {
        "ContainerStatusUnknown"
    } else if exit.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let message = if exit.lost {
        Some(LOST_MESSAGE.to_string())
    } else if exit.code != 0 && spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        termination_message_from_log(&cell.log_files(&spec.name, launch.attempt).log)
    } else {
        None
    };
    let t = Terminated {
        exit_code: exit.code,
        signal: exit.signal,
        reason: reason.to_string(),
        message,
        started_at: Some(started_at),
        finished_at: exit.finished_at,
        attempt: launch.attempt,
        container_id: Some(container_id),
    };
    cell.update(|s| {
        if let Some(r) = s.record_mut(&spec.name) {
            r.set_terminated(t);
            // A completed init container counts as ready, as the kubelet reports it.
            r.ready = role == Role::Init && exit.code == 0;
        }
    });
}

/// The end of the log (at most 80 lines and 2048 bytes), for `FallbackToLogsOnError`.
fn termination_message_from_log(path: &Path) -> Option<String> {
    let start = logs::tail_offset(path, 80).ok()?;
    let data = fs::read(path).ok()?;
    let mut text = Vec::new();
    for line in data.get(usize::try_from(start).ok()?..)?.split(|&b| b == b'\n') {
        if let Some(entry) = logs::parse_cri(line).filter(|_| !line.is_empty()) {
            text.extend_from_slice(entry.content);
            if entry.full {
                text.push(b'\n');
            }
        }
    }
    let from = text.len().saturating_sub(2048);
    let message = String::from_utf8_lossy(&text[from..]).trim_end().to_string();
    (!message.is_empty()).then_some(message)
}

/// Startup, then liveness and readiness probes side by side. Resolves only when the
/// container must be killed.
async fn run_probes(cell: &PodCell, spec: &Container, role: Role, target: &Target) -> Kill {
    let began = tokio::time::Instant::now();
    let name = spec.name.as_str();
    let who = Some((name, role));
    if let Some(p) = spec.startup_probe.as_ref().map(ProbeSpec::from_probe) {
        tokio::time::sleep_until(began + p.initial_delay).await;
        let mut failures = 0;
        loop {
            match probes::check(&p.action, target, p.timeout).await {
                Outcome::Failure(message) => {
                    failures += 1;
                    cell.event(who, "Warning", "Unhealthy", format!("Startup probe failed: {message}"));
                    if failures >= p.failure_threshold {
                        return Kill {
                            message: format!("Container {name} failed startup probe, will be restarted"),
                            grace: p.termination_grace,
                        };
                    }
                }
                outcome => {
                    cell.note_downgrade(name, &outcome);
                    break;
                }
            }
            tokio::time::sleep(p.period).await;
        }
        let no_readiness = spec.readiness_probe.is_none();
        cell.update(|s| {
            if let Some(r) = s.record_mut(name) {
                r.started = true;
                r.ready = no_readiness && role != Role::Init;
            }
        });
    }
    let liveness = async {
        match spec.liveness_probe.as_ref().map(ProbeSpec::from_probe) {
            Some(p) => liveness_loop(cell, name, role, target, &p, began).await,
            None => std::future::pending().await,
        }
    };
    let readiness = async {
        if let Some(p) = spec.readiness_probe.as_ref().map(ProbeSpec::from_probe) {
            readiness_loop(cell, name, role, target, &p, began).await;
        }
        std::future::pending::<Kill>().await
    };
    tokio::select! {
        kill = liveness => kill,
        kill = readiness => kill,
    }
}

async fn liveness_loop(cell: &PodCell, name: &str, role: Role, target: &Target, p: &ProbeSpec, began: tokio::time::Instant) -> Kill {
    tokio::time::sleep_until(began + p.initial_delay).await;
    let mut failures = 0;
    loop {
        match probes::check(&p.action, target, p.timeout).await {
            Outcome::Failure(message) => {
                failures += 1;
                cell.event(Some((name, role)), "Warning", "Unhealthy", format!("Liveness probe failed: {message}"));
                if failures >= p.failure_threshold {
                    return Kill {
                        message: format!("Container {name} failed liveness probe, will be restarted"),
                        grace: p.termination_grace,
                    };
                }
            }
            outcome => {
                cell.note_downgrade(name, &outcome);
                failures = 0;
            }
        }
        tokio::time::sleep(p.period).await;
    }
}

async fn readiness_loop(cell: &PodCell, name: &str, role: Role, target: &Target, p: &ProbeSpec, began: tokio::time::Instant) {
    tokio::time::sleep_until(began + p.initial_delay).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        match probes::check(&p.action, target, p.timeout).await {
            Outcome::Failure(message) => {
                successes = 0;
                failures += 1;
                cell.event(Some((name, role)), "Warning", "Unhealthy", format!("Readiness probe failed: {message}"));
                if failures >= p.failure_threshold {
                    cell.set_ready(name, false);
                }
            }
            outcome => {
                cell.note_downgrade(name, &outcome);
                failures = 0;
                successes += 1;
                if successes >= p.success_threshold {
                    cell.set_ready(name, true);
                }
            }
        }
        tokio::time::sleep(p.period).await;
    }
}

/// Graceful termination of one instance: preStop hook, SIGTERM to its process group, and
/// SIGKILL when `grace` runs out.
async fn terminate(
    cell: &PodCell,
    spec: &Container,
    role: Role,
    target: &Target,
    mut exit: BoxFuture<'static, Exit>,
    grace: Duration,
) -> Exit {
    let runtime = &cell.shared.runtime;
    cell.set_ready(&spec.name, false);
    let mut deadline = tokio::time::Instant::now() + grace;
    if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        let action = probes::hook_action(hook);
        let who = Some((spec.name.as_str(), role));
        tokio::select! {
            e = &mut exit => return e,
            outcome = tokio::time::timeout_at(deadline, probes::check(&action, target, grace)) => {
                match outcome {
                    Ok(Outcome::Failure(message)) => cell.event(who, "Warning", "FailedPreStopHook", format!("PreStopHook failed: {message}")),
                    Err(_) => cell.event(who, "Warning", "FailedPreStopHook", format!("PreStopHook did not finish within {}s", grace.as_secs())),
                    Ok(_) => {}
                }
                deadline = deadline.max(tokio::time::Instant::now() + MIN_GRACE_AFTER_PRE_STOP);
            }
        }
    }
    if let Err(e) = runtime.signal(&target.id, StopSignal::Term).await {
        debug!(container = %spec.name, error = %e, "SIGTERM not delivered");
    }
    tokio::select! {
        e = &mut exit => e,
        () = tokio::time::sleep_until(deadline) => {
            if let Err(e) = runtime.signal(&target.id, StopSignal::Kill).await {
                debug!(container = %spec.name, error = %e, "SIGKILL not delivered");
            }
            exit.await
        }
    }
}

/// The runtime's own variables, which `$(NAME)` cannot see.
fn base_env(hostname: &str, run_as: Option<(u32, u32)>) -> Vec<(String, String)> {
    let root = match run_as {
        Some((uid, _)) => uid == 0,
        None => rustix::process::geteuid().is_root(),
    };
    let home = if root {
        "/root".to_string()
    } else if run_as.is_some() {
        "/".to_string()
    } else {
        std::env::var("HOME").unwrap_or_else(|_| "/".to_string())
    };
    vec![("PATH".to_string(), DEFAULT_PATH.to_string()), ("HOSTNAME".to_string(), hostname.to_string()), ("HOME".to_string(), home)]
}

/// `runAsUser` / `runAsGroup` of the container, else of the pod (group 0 if only a user is
/// given, as container runtimes do without an image passwd entry).
fn run_as(pod: &Pod, c: &Container) -> Option<(u32, u32)> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let uid = sc.and_then(|s| s.run_as_user).or_else(|| pod_sc.and_then(|s| s.run_as_user))?;
    let gid = sc.and_then(|s| s.run_as_group).or_else(|| pod_sc.and_then(|s| s.run_as_group)).unwrap_or(0);
    Some((u32::try_from(uid).ok()?, u32::try_from(gid).ok()?))
}

/// The container a request without a name means, as the API server picks it: the one named
/// by the `kubectl.kubernetes.io/default-container` annotation, else the first one.
fn default_container<'a>(st: &'a PodState, requested: &'a str) -> &'a str {
    if !requested.is_empty() {
        return requested;
    }
    let annotated = st.pod.metadata.annotations.as_ref().and_then(|a| a.get("kubectl.kubernetes.io/default-container"));
    match annotated {
        Some(name) => name,
        None => st.containers.first().map_or(requested, |r| r.name.as_str()),
    }
}

/// `spec.hostname`, else the pod name, cut to a DNS label's 63 characters.
fn hostname_of(pod: &Pod) -> String {
    let name = pod.spec.as_ref().and_then(|s| s.hostname.clone()).or_else(|| pod.metadata.name.clone()).unwrap_or_default();
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
}

fn namespace_of(pod: &Pod) -> String {
    pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string())
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// A uid from the API becomes a directory name: it must be a plain token.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 128 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `10s`, `1m20s`, `300ms`: how the kubelet's back-off message shows a delay.
fn format_delay(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{secs}s")
    } else {
        let (minutes, rest) = (secs / 60, secs % 60);
        format!("{minutes}m{rest}s")
    }
}

/// Writes a file by renaming a temporary one over it, so a crash never leaves half of it.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use futures::StreamExt as _;
    use serde_json::json;

    use super::*;
    use crate::runtime::Isolation;

    #[derive(Default)]
    struct FakeSources {
        config_maps: HashMap<String, ConfigMap>,
        secrets: HashMap<String, Secret>,
    }

    impl Sources for FakeSources {
        fn config_map(&self, _ns: &str, name: &str) -> BoxFuture<'_, Result<Option<ConfigMap>, String>> {
            let found = self.config_maps.get(name).cloned();
            Box::pin(async move { Ok(found) })
        }

        fn secret(&self, _ns: &str, name: &str) -> BoxFuture<'_, Result<Option<Secret>, String>> {
            let found = self.secrets.get(name).cloned();
            Box::pin(async move { Ok(found) })
        }
    }

    fn manager_with(root: &Path, isolation: Isolation, sources: FakeSources) -> Arc<PodManager> {
        let mut config = Config::new(root.to_path_buf(), "node-1".to_string(), "127.0.0.1".to_string());
        config.backoff_initial = Duration::from_millis(100);
        config.backoff_max = Duration::from_millis(400);
        config.log_poll_max = Duration::from_millis(100);
        config.process.isolation = isolation;
        config.process.adopt_poll = Duration::from_millis(50);
        PodManager::with_config(config, Arc::new(sources))
    }

    fn manager(root: &Path) -> Arc<PodManager> {
        manager_with(root, Isolation::Auto, FakeSources::default())
    }

    fn pod(uid: &str, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["nodeName"] = json!("node-1");
        if spec.get("terminationGracePeriodSeconds").is_none() {
            spec["terminationGracePeriodSeconds"] = json!(2);
        }
        serde_json::from_value(json!({
            "metadata": {"name": format!("pod-{uid}"), "namespace": "default", "uid": uid, "labels": {"app": "demo"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn sh(script: &str) -> serde_json::Value {
        json!(["sh", "-c", script])
    }

    /// `fut`, or a test failure after 15 s.
    async fn bounded<T>(fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(15), fut).await.expect("timed out")
    }

    /// Polls `check` until it holds, for at most 15 s.
    async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn log_text(mgr: &PodManager, uid: &str, container: &str, opts: LogOptions) -> String {
        let chunks: Vec<_> = mgr.logs(uid, container, opts).await.unwrap().collect().await;
        String::from_utf8(chunks.into_iter().flat_map(|c| c.unwrap()).collect()).unwrap()
    }

    async fn wait_for_log(mgr: &PodManager, uid: &str, container: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(stream) = mgr.logs(uid, container, LogOptions::default()).await {
                let chunks: Vec<_> = stream.collect().await;
                let text = String::from_utf8(chunks.into_iter().flat_map(|c| c.unwrap()).collect()).unwrap();
                if text.contains(needle) {
                    return text;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} in the log of {container}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn condition(s: &PodStatus, type_: &str) -> bool {
        s.conditions.iter().flatten().any(|c| c.type_ == type_ && c.status == "True")
    }

    fn phase(mgr: &PodManager, uid: &str) -> String {
        mgr.status(uid).and_then(|s| s.phase).unwrap_or_default()
    }

    fn container(s: &PodStatus, name: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
        s.container_statuses.iter().chain(s.init_container_statuses.iter()).flatten().find(|c| c.name == name).cloned().unwrap()
    }

    fn waiting_reason(mgr: &PodManager, uid: &str, name: &str) -> Option<String> {
        let s = mgr.status(uid)?;
        container(&s, name).state?.waiting?.reason
    }

    /// Live (not zombie) processes running `sleep <marker>`.
    fn sleepers(marker: &str) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|&pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
                let alive = crate::runtime::process::proc_stat(pid).is_some_and(|s| s.state != 'Z');
                alive && args.len() == 2 && args[0].ends_with(b"sleep") && args[1] == marker.as_bytes()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_a_pod_with_logs_exec_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let mut events = mgr.events();
        let mut changes = mgr.changes();
        let uid = "t-run";
        let p =
            pod(uid, json!({"containers": [{"name": "main", "image": "busybox:1.36", "command": sh("echo hi; echo oops >&2; sleep 30")}]}));
        mgr.sync(&p);
        mgr.sync(&p);
        wait_for("Running and Ready", || mgr.status(uid).is_some_and(|s| s.phase.as_deref() == Some("Running") && condition(&s, "Ready")))
            .await;
        let text = wait_for_log(&mgr, uid, "main", "hi").await;
        assert!(text.contains("oops"), "{text}");
        let stamped = log_text(&mgr, uid, "main", LogOptions { timestamps: true, tail_lines: Some(1), ..Default::default() }).await;
        assert!(stamped.split(' ').next().unwrap().parse::<Timestamp>().is_ok(), "{stamped}");

        let out =
            bounded(mgr.exec(uid, "main", vec!["sh".into(), "-c".into(), "echo out; echo err >&2; exit 2".into()], None)).await.unwrap();
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code), (&b"out\n"[..], &b"err\n"[..], 2));
        let out = bounded(mgr.exec(uid, "main", vec!["cat".into()], Some(b"piped".to_vec()))).await.unwrap();
        assert_eq!(out.stdout, b"piped");
        assert!(matches!(mgr.exec(uid, "nope", vec!["true".into()], None).await, Err(PodError::ContainerNotFound { .. })));

        let s = mgr.status(uid).unwrap();
        let c = container(&s, "main");
        assert_eq!((c.image.as_str(), c.restart_count, c.ready, c.started), ("busybox:1.36", 0, true, Some(true)));
        assert_eq!((s.host_ip.as_deref(), s.pod_ip.as_deref()), (Some("127.0.0.1"), Some("127.0.0.1")));
        assert!(s.start_time.is_some() && condition(&s, "Initialized") && condition(&s, "ContainersReady"));
        assert_eq!(changes.try_recv().unwrap(), uid);
        let mut reasons = Vec::new();
        while let Ok(e) = events.try_recv() {
            reasons.push(e.reason);
        }
        assert!(reasons.contains(&"Created".to_string()) && reasons.contains(&"Started".to_string()), "{reasons:?}");

        let began = Instant::now();
        mgr.remove(uid, Some(Duration::from_secs(5))).await;
        assert!(began.elapsed() < Duration::from_secs(4), "SIGTERM should have ended it well before the grace period");
        assert!(mgr.status(uid).is_none());
        assert!(!dir.path().join("pods").join(uid).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_loop_backs_off_and_keeps_previous_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let uid = "t-crash";
        mgr.sync(&pod(uid, json!({"containers": [{"name": "c", "command": sh("echo crashing; exit 3")}]})));
        let mut saw_backoff = false;
        wait_for("restarts with CrashLoopBackOff", || {
            let Some(s) = mgr.status(uid) else { return false };
            let c = container(&s, "c");
            let last_exit = c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).map(|t| (t.exit_code, t.reason.clone()));
            if c.state.as_ref().and_then(|st| st.waiting.as_ref()).and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
                assert_eq!(last_exit, Some((3, Some("Error".to_string()))));
                saw_backoff = true;
            }
            saw_backoff && c.restart_count >= 3
        })
        .await;
        assert_eq!(phase(&mgr, uid), "Running");
        let previous = log_text(&mgr, uid, "c", LogOptions { previous: true, ..Default::default() }).await;
        assert_eq!(previous, "crashing\n");
        mgr.remove(uid, Some(Duration::from_secs(1))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_probe_flips_ready() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let uid = "t-ready";
        let flag = dir.path().join("ready-flag");
        let probe = json!({"exec": {"command": ["test", "-f", flag.to_str().unwrap()]}, "periodSeconds": 1, "failureThreshold": 1});
        mgr.sync(&pod(uid, json!({"containers": [{"name": "c", "command": ["sleep", "30"], "readinessProbe": probe}]})));
        wait_for("Running", || phase(&mgr, uid) == "Running").await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let s = mgr.status(uid).unwrap();
        assert!(!condition(&s, "Ready") && !container(&s, "c").ready);
        fs::write(&flag, "").unwrap();
        wait_for("Ready", || mgr.status(uid).is_some_and(|s| condition(&s, "Ready"))).await;
        fs::remove_file(&flag).unwrap();
        wait_for("not Ready", || mgr.status(uid).is_some_and(|s| !condition(&s, "Ready"))).await;
        assert_eq!(container(&mgr.status(uid).unwrap(), "c").restart_count, 0);
        mgr.remove(uid, Some(Duration::from_secs(1))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn liveness_failure_restarts_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let mut events = mgr.events();
        let uid = "t-live";
        let probe = json!({"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1});
        mgr.sync(&pod(uid, json!({"containers": [{"name": "c", "command": ["sleep", "30"], "livenessProbe": probe}]})));
        wait_for("a restart", || mgr.status(uid).is_some_and(|s| container(&s, "c").restart_count >= 1)).await;
        let last = container(&mgr.status(uid).unwrap(), "c").last_state.unwrap().terminated.unwrap();
        // SIGTERM ended it, well within the grace period.
        assert_eq!((last.exit_code, last.reason.as_deref()), (143, Some("Error")));
        let mut killing = false;
        while let Ok(e) = events.try_recv() {
            killing |= e.reason == "Killing" && e.message.contains("failed liveness probe");
        }
        assert!(killing);
        mgr.remove(uid, Some(Duration::from_secs(1))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removal_kills_the_whole_process_group() {
        for (i, isolation) in [Isolation::Auto, Isolation::None].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mgr = manager_with(dir.path(), isolation, FakeSources::default());
            let uid = format!("t-group-{i}");
            // A number no other test uses: the grandchildren are found by their command line.
            let marker = format!("{}.{}", 2000 + i, std::process::id());
            mgr.sync(&pod(&uid, json!({"containers": [{"name": "c", "command": sh(&format!("sleep {marker} & sleep {marker} & wait"))}]})));
            wait_for("both grandchildren", || sleepers(&marker).len() == 2).await;
            mgr.remove(&uid, Some(Duration::from_secs(2))).await;
            wait_for("no grandchild left", || sleepers(&marker).is_empty()).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forced_removal_hurries_a_graceful_one_without_cleaning_up_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let uid = "t-forced";
        let marker = format!("3000.{}", std::process::id());
        // Ignores SIGTERM: only SIGKILL ends it.
        mgr.sync(&pod(uid, json!({"containers": [{"name": "c", "command": sh(&format!("trap '' TERM; sleep {marker} & wait; wait"))}]})));
        wait_for("the sleeper", || sleepers(&marker).len() == 1).await;
        let began = tokio::time::Instant::now();
        let graceful = {
            let mgr = mgr.clone();
            tokio::spawn(async move { mgr.remove(uid, Some(Duration::from_secs(60))).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!graceful.is_finished(), "the graceful removal waits for its grace period");
        assert!(pod_dir(dir.path(), uid).exists(), "the pod directory stays meanwhile");
        // The forced removal kills now; the graceful one then finishes and cleans up.
        bounded(mgr.remove(uid, Some(Duration::ZERO))).await;
        bounded(graceful).await.unwrap();
        assert!(began.elapsed() < Duration::from_secs(30), "{:?}", began.elapsed());
        assert!(sleepers(&marker).is_empty());
        assert!(!pod_dir(dir.path(), uid).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn env_from_field_refs_config_maps_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = FakeSources::default();
        sources.config_maps.insert(
            "settings".into(),
            serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"color": "blue", "size": "L"}})).unwrap(),
        );
        sources
            .secrets
            .insert("creds".into(), serde_json::from_value(json!({"metadata": {"name": "creds"}, "data": {"user": "YWRtaW4="}})).unwrap());
        let mgr = manager_with(dir.path(), Isolation::Auto, sources);
        let uid = "t-env";
        let script = "echo POD=$POD_NAME NODE=$NODE IP=$IP APP=$APP; echo COLOR=$COLOR SIZE=$CFG_size USER=$DB_USER OPT=${OPT-unset}; \
                      echo EXP=$EXPANDED CPU=$CPU; sleep 30";
        let containers = json!([
            {
                "name": "main",
                "command": sh(script),
                "resources": {"limits": {"cpu": "500m"}},
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                    {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": true}}},
                    {"name": "EXPANDED", "value": "$(COLOR)-$(POD_NAME)"},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}
                ]
            },
            {"name": "broken", "command": ["true"], "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]},
            {"name": "imageonly", "image": "nginx"}
        ]);
        mgr.sync(&pod(uid, json!({"containers": containers})));
        let text = wait_for_log(&mgr, uid, "main", "EXP=").await;
        assert!(text.contains("POD=pod-t-env NODE=node-1 IP=127.0.0.1 APP=demo"), "{text}");
        assert!(text.contains("COLOR=blue SIZE=L USER=admin OPT=unset"), "{text}");
        assert!(text.contains("EXP=blue-pod-t-env CPU=500"), "{text}");
        wait_for("config errors", || {
            waiting_reason(&mgr, uid, "broken").as_deref() == Some("CreateContainerConfigError")
                && waiting_reason(&mgr, uid, "imageonly").as_deref() == Some("CreateContainerError")
        })
        .await;
        let s = mgr.status(uid).unwrap();
        let broken = container(&s, "broken").state.unwrap().waiting.unwrap();
        assert_eq!(broken.message.as_deref(), Some("configmap \"absent\" not found"));
        assert_eq!(container(&s, "imageonly").state.unwrap().waiting.unwrap().message.as_deref(), Some(NO_COMMAND));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        mgr.remove(uid, Some(Duration::from_secs(1))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn init_containers_run_first_and_the_pod_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let uid = "t-init";
        let shared = dir.path().join("handoff");
        let spec = json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "prep", "command": sh(&format!("sleep 0.3; echo ready > {}", shared.display()))}],
            "containers": [{"name": "main", "command": sh(&format!("cat {}", shared.display()))}]
        });
        mgr.sync(&pod(uid, spec));
        wait_for("PodInitializing", || waiting_reason(&mgr, uid, "main").as_deref() == Some("PodInitializing")).await;
        assert_eq!(phase(&mgr, uid), "Pending");
        wait_for("Succeeded", || phase(&mgr, uid) == "Succeeded").await;
        let s = mgr.status(uid).unwrap();
        let prep = container(&s, "prep").state.unwrap().terminated.unwrap();
        assert_eq!((prep.exit_code, prep.reason.as_deref()), (0, Some("Completed")));
        assert!(!condition(&s, "Ready"));
        assert_eq!(log_text(&mgr, uid, "main", LogOptions::default()).await, "ready\n");
        mgr.remove(uid, None).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recover_readopts_a_running_container() {
        let dir = tempfile::tempdir().unwrap();
        let uid = "t-recover";
        let p = pod(uid, json!({"containers": [{"name": "c", "command": sh("echo before; sleep 30")}]}));
        let first = manager(dir.path());
        first.sync(&p);
        wait_for_log(&first, uid, "c", "before").await;
        let id_before = container(&first.status(uid).unwrap(), "c").container_id.unwrap();
        first.detach();

        let second = manager(dir.path());
        assert_eq!(second.recover(), vec![uid.to_string()]);
        wait_for("re-adopted and Ready", || second.status(uid).is_some_and(|s| condition(&s, "Ready"))).await;
        second.sync(&p);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = container(&second.status(uid).unwrap(), "c");
        assert_eq!((c.container_id.as_deref(), c.restart_count), (Some(id_before.as_str()), 0));
        let out = bounded(second.exec(uid, "c", vec!["echo".into(), "still".into()], None)).await.unwrap();
        assert_eq!(out.stdout, b"still\n");
        assert_eq!(log_text(&second, uid, "c", LogOptions::default()).await, "before\n");

        let pid: u32 = id_before.trim_start_matches("process://").parse().unwrap();
        second.remove(uid, Some(Duration::from_secs(2))).await;
        wait_for("the adopted process gone", || crate::runtime::process::proc_stat(pid).is_none_or(|s| s.state == 'Z')).await;
    }

    #[test]
    fn backoff_doubles_and_decisions_follow_the_policy() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(decide(Role::Main, "Always", 0), None);
        assert_eq!(decide(Role::Main, "OnFailure", 0), Some(Finish::Succeeded));
        assert_eq!(decide(Role::Main, "OnFailure", 1), None);
        assert_eq!(decide(Role::Main, "Never", 1), Some(Finish::Failed));
        assert_eq!(decide(Role::Init, "Always", 1), None);
        assert_eq!(decide(Role::Init, "Never", 1), Some(Finish::Failed));
        assert_eq!(decide(Role::Sidecar, "Never", 0), None);
        assert_eq!(format_delay(Duration::from_secs(80)), "1m20s");
        assert_eq!(format_delay(Duration::from_secs(300)), "5m0s");
        assert!(valid_uid("0b5f-aa_1") && !valid_uid("../x") && !valid_uid(""));
    }
}
