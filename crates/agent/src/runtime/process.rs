//! The process runtime: every container instance is a child process of the agent running the
//! container's `command` + `args` on the host, in its own process group. Start reading at
//! [`ProcessRuntime::new`], which decides once what this machine allows.
//!
//! Each instance runs under a small `sh` wrapper. As root (with util-linux) the wrapper is
//! started by `unshare --pid --fork --kill-child --mount-proc --uts --ipc`, so it is pid 1
//! of a new pid namespace; it joins the container's cgroup, sets the hostname, bind-mounts
//! the volumes, changes to the working directory, drops to `runAsUser` with `setpriv`, and
//! then runs the command as its child. When the command ends the wrapper writes its exit
//! code to the launch's exit file, so that an agent that restarted in between still learns
//! it. The wrapper traps SIGTERM (a handler, which `exec` resets) so that it outlives the
//! command; the command itself sees the signal with its default disposition.
//!
//! Without root there are no namespaces, cgroups, mounts or user switches: the same wrapper
//! runs as a plain process-group leader, and [`Runtime::limitations`] says so.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::sync::watch;

use super::cgroup::Cgroups;
use super::{
    Adoption, ContainerLaunch, ExecOutput, ExecRequest, Exit, InstanceId, Mount, PodSandbox, Runtime, RuntimeError, Started, StopSignal,
};

/// Why a container without `command` cannot run on the process runtime.
pub const NO_COMMAND: &str = "the process runtime needs spec.containers[].command: images are not pulled (it runs the command on the host)";

/// Docker's default `PATH`, used when a container sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// At most this much of an exec's stdout (and as much of its stderr) is kept.
const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// How long an exec's output is still read after the command ended (a background process it
/// left may hold the pipes open).
const EXEC_DRAIN_GRACE: Duration = Duration::from_millis(300);

/// `unshare` flags for a container: pid 1 of new pid, mount (with its own /proc), uts and ipc
/// namespaces, mounts kept private, and everything killed when `unshare` itself dies.
const NS_FLAGS: [&str; 9] = ["--pid", "--fork", "--kill-child", "--mount-proc", "--uts", "--ipc", "--propagation", "private", "--"];

/// How much isolation the process runtime adds around each container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Namespaces, cgroups, volume mounts and `runAsUser` where the agent is root and the
    /// tools exist; plain process groups otherwise.
    #[default]
    Auto,
    /// Plain process groups only, even as root (no namespaces, cgroups or mounts).
    None,
}

/// How the process runtime is set up.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub isolation: Isolation,
    /// Where cgroup v2 is mounted.
    pub cgroup_root: PathBuf,
    /// The cgroup (one directory name under `cgroup_root`) that holds every pod.
    pub cgroup_parent: String,
    /// How often an adopted instance (started by a previous agent, so not our child) is
    /// checked for having ended.
    pub adopt_poll: Duration,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            isolation: Isolation::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "daas".to_string(),
            adopt_poll: Duration::from_millis(500),
        }
    }
}

/// Programs the namespaced mode runs.
#[derive(Debug, Clone)]
struct NsTools {
    unshare: PathBuf,
    nsenter: PathBuf,
    mount: PathBuf,
}

/// Runs containers as host processes. See the module documentation.
#[derive(Debug)]
pub struct ProcessRuntime {
    sh: PathBuf,
    mkdir: PathBuf,
    /// Set when containers get their own pid/mount/uts/ipc namespaces.
    ns: Option<NsTools>,
    /// Set when `runAsUser` can be applied.
    setpriv: Option<PathBuf>,
    /// Set when cpu and memory limits are enforced.
    cgroups: Option<Cgroups>,
    limitations: Vec<String>,
    adopt_poll: Duration,
    /// Instance → the pid whose namespaces an exec enters (found once: probes exec often).
    ns_targets: Mutex<HashMap<InstanceId, u32>>,
}

impl ProcessRuntime {
    /// Looks at the machine once: root or not, util-linux tools, cgroup v2 with cpu and
    /// memory. Whatever is missing becomes a sentence in [`Runtime::limitations`].
    pub fn new(config: ProcessConfig) -> ProcessRuntime {
        let root = rustix::process::geteuid().is_root();
        let auto = config.isolation == Isolation::Auto;
        let sh = find_program("sh").unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let mut limitations = Vec::new();
        let ns = if !auto {
            limitations.push(
                "isolation is off: containers share the host's pid, mount, uts and ipc namespaces, volumeMounts are not applied, \
                 and cpu/memory limits and runAsUser are not enforced"
                    .to_string(),
            );
            None
        } else if !root {
            limitations.push(
                "the agent is not root: containers share the host's pid, mount, uts and ipc namespaces, volumeMounts are not applied \
                 (volumes stay at their host directories), and cpu/memory limits and runAsUser are not enforced"
                    .to_string(),
            );
            None
        } else {
            match (find_program("unshare"), find_program("nsenter"), find_program("mount")) {
                (Some(unshare), Some(nsenter), Some(mount)) if namespaces_work(&unshare, &sh) => Some(NsTools { unshare, nsenter, mount }),
                (Some(_), Some(_), Some(_)) => {
                    limitations.push(
                        "unshare cannot create pid/mount/uts/ipc namespaces here (no CAP_SYS_ADMIN?): containers share the host's \
                         namespaces and volumeMounts are not applied"
                            .to_string(),
                    );
                    None
                }
                _ => {
                    limitations.push(
                        "unshare, nsenter or mount (util-linux) is missing: containers share the host's namespaces and volumeMounts \
                         are not applied"
                            .to_string(),
                    );
                    None
                }
            }
        };
        let cgroups = if auto && root {
            match Cgroups::detect(&config.cgroup_root, &config.cgroup_parent) {
                Ok(c) => Some(c),
                Err(why) => {
                    limitations.push(format!("cpu and memory limits are not enforced and OOM kills are not detected: {why}"));
                    None
                }
            }
        } else {
            None
        };
        let setpriv = if auto && root {
            let found = find_program("setpriv");
            if found.is_none() {
                limitations.push("setpriv (util-linux) is missing: runAsUser and runAsGroup are not applied".to_string());
            }
            found
        } else {
            None
        };
        ProcessRuntime {
            sh,
            mkdir: find_program("mkdir").unwrap_or_else(|| PathBuf::from("mkdir")),
            ns,
            setpriv,
            cgroups,
            limitations,
            adopt_poll: config.adopt_poll,
            ns_targets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether containers get their own namespaces.
    pub fn namespaced(&self) -> bool {
        self.ns.is_some()
    }

    /// Whether cpu and memory limits are enforced.
    pub fn enforces_limits(&self) -> bool {
        self.cgroups.is_some()
    }

    fn spawn(&self, launch: &ContainerLaunch) -> Result<Started, RuntimeError> {
        let Some(program) = launch.command.first() else {
            return Err(RuntimeError::Unsupported(NO_COMMAND.to_string()));
        };
        check_executable(program, &launch.env, &launch.mounts, self.ns.is_some())?;
        let cgroup = match &self.cgroups {
            Some(cg) => Some(cg.prepare_container(&launch.pod_uid, &launch.container, &launch.limits).map_err(|source| {
                RuntimeError::Io { context: format!("setting up the cgroup of container {}", launch.container), source }
            })?),
            None => None,
        };
        let oom_before = cgroup.as_deref().map_or(0, Cgroups::oom_kills);
        let script = self.wrapper_script(launch, cgroup.as_deref());
        let stdout = open_append(&launch.stdout)?;
        let stderr = open_append(&launch.stderr)?;
        // A leftover from an instance with the same attempt number would be misread as this
        // one's exit code.
        let _ = fs::remove_file(&launch.exit_file);

        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new(&ns.unshare);
                c.args(NS_FLAGS).arg(&self.sh);
                c
            }
            None => Command::new(&self.sh),
        };
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .args(launch.argv())
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn { what: format!("container {}", launch.container), source })?;
        let Some(pid) = child.id() else {
            return Err(RuntimeError::NotRunning(launch.container.clone()));
        };
        // Our child is not reaped before `wait`, so its /proc entry exists even if it already
        // ended.
        let start_ticks = proc_stat(pid).map_or(0, |s| s.start_ticks);
        let id = InstanceId { pid, start_ticks, handle: None };
        let exit_file = launch.exit_file.clone();
        let exit = async move {
            let status = child.wait().await;
            // What the command left behind in its process group goes with it, as in a
            // container whose pid 1 ended. Right after the wait the group id cannot have been
            // reused yet.
            kill_group(pid, Signal::KILL);
            let oom = cgroup.as_deref().is_some_and(|d| Cgroups::oom_kills(d) > oom_before);
            exit_from_status(status, &exit_file, oom)
        }
        .boxed();
        Ok(Started { id, image_id: None, exit })
    }

    /// The `sh -c` script every instance runs under; the command follows as `"$@"`.
    fn wrapper_script(&self, launch: &ContainerLaunch, cgroup: Option<&Path>) -> String {
        let mkdir = quote_path(&self.mkdir);
        let mut s = String::new();
        if let Some(cg) = cgroup {
            s.push_str(&format!(
                "echo 0 > {} || {{ echo 'daas: cannot join the container cgroup' >&2; exit 126; }}\n",
                quote_path(&cg.join("cgroup.procs"))
            ));
        }
        if let Some(ns) = &self.ns {
            // Only ever in the new UTS namespace: outside it this would rename the host.
            s.push_str(&format!("printf '%s' {} > /proc/sys/kernel/hostname\n", quote(&launch.hostname)));
            let mount = quote_path(&ns.mount);
            for m in &launch.mounts {
                s.push_str(&mount_line(m, &mount, &mkdir));
            }
        }
        let wd = quote(launch.working_dir.as_deref().unwrap_or("/"));
        s.push_str(&format!("{mkdir} -p {wd} 2>/dev/null; cd {wd} || exit 126\n"));
        s.push_str("trap : TERM INT HUP\n");
        match (launch.run_as, &self.setpriv) {
            (Some((uid, gid)), Some(setpriv)) => {
                s.push_str(&format!("{} --reuid={uid} --regid={gid} --clear-groups -- \"$@\"\n", quote_path(setpriv)));
            }
            _ => s.push_str("\"$@\"\n"),
        }
        s.push_str(&format!("rc=$?\necho \"$rc\" > {}\nexit \"$rc\"\n", quote_path(&launch.exit_file)));
        s
    }

    /// The process whose namespaces an exec enters: the wrapper, pid 1 inside, which is the
    /// child of `unshare` (forked right after the start, so it may take a moment to appear).
    async fn namespace_target(&self, id: &InstanceId) -> Result<u32, RuntimeError> {
        let known = self.ns_targets.lock().get(id).copied();
        if let Some(target) = known {
            return Ok(target);
        }
        for _ in 0..50 {
            if proc_stat(id.pid).map(|s| s.start_ticks) != Some(id.start_ticks) {
                return Err(RuntimeError::NotRunning(id.to_string()));
            }
            if let Some(child) = children_of(id.pid).into_iter().next() {
                let mut known = self.ns_targets.lock();
                if known.len() >= 1024 {
                    known.retain(|k, _| is_alive(k));
                }
                known.insert(id.clone(), child);
                return Ok(child);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(RuntimeError::NotRunning(id.to_string()))
    }

    /// The command an exec runs: `sh -c` joining the cgroup, then (namespaced) `nsenter`
    /// into the namespaces of `target`, then `cd` and the command.
    fn exec_command(
        &self,
        id: &InstanceId,
        target: Option<u32>,
        launch: &ContainerLaunch,
        request: &ExecRequest,
    ) -> Result<Command, RuntimeError> {
        if request.argv.is_empty() {
            return Err(RuntimeError::Unsupported("exec needs a command".to_string()));
        }
        if proc_stat(id.pid).map(|s| s.start_ticks) != Some(id.start_ticks) {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let mut outer = String::new();
        if let Some(cg) = &self.cgroups {
            let procs = cg.container_dir(&launch.pod_uid, &launch.container).join("cgroup.procs");
            outer.push_str(&format!("echo 0 > {} 2>/dev/null\n", quote_path(&procs)));
        }
        let mut inner = String::from("cd \"$1\" || exit 126; shift; exec ");
        if let (Some((uid, gid)), Some(setpriv)) = (launch.run_as, &self.setpriv) {
            inner.push_str(&format!("{} --reuid={uid} --regid={gid} --clear-groups -- ", quote_path(setpriv)));
        }
        inner.push_str("\"$@\"");
        outer.push_str("exec ");
        if let (Some(ns), Some(target)) = (&self.ns, target) {
            outer.push_str(&format!("{} --target {target} --pid --mount --uts --ipc -- ", quote_path(&ns.nsenter)));
        }
        outer.push_str(&format!("{} -c {} sh \"$@\"", quote_path(&self.sh), quote(&inner)));
        let mut cmd = Command::new(&self.sh);
        cmd.arg("-c")
            .arg(outer)
            .arg("sh")
            .arg(launch.working_dir.as_deref().unwrap_or("/"))
            .args(&request.argv)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn limitations(&self) -> Vec<String> {
        self.limitations.clone()
    }

    fn mounts_volumes(&self) -> bool {
        self.ns.is_some()
    }

    fn prepare_pod<'a>(&'a self, pod: &'a PodSandbox) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let result = match &self.cgroups {
            Some(cg) => cg
                .prepare_pod(&pod.uid)
                .map_err(|source| RuntimeError::Io { context: format!("creating the cgroup of pod {}", pod.uid), source }),
            None => Ok(()),
        };
        futures::future::ready(result).boxed()
    }

    fn start(&self, launch: ContainerLaunch) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(async move { self.spawn(&launch) })
    }

    fn adopt<'a>(&'a self, launch: &'a ContainerLaunch, id: &'a InstanceId) -> BoxFuture<'a, Adoption> {
        futures::future::ready(self.adopt_now(launch, id.clone())).boxed()
    }

    fn signal<'a>(&'a self, id: &'a InstanceId, signal: StopSignal) -> BoxFuture<'a, Result<(), RuntimeError>> {
        futures::future::ready(signal_group(id, signal)).boxed()
    }

    fn exec<'a>(
        &'a self,
        id: &'a InstanceId,
        launch: &'a ContainerLaunch,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, RuntimeError>> {
        Box::pin(async move {
            let target = match self.ns {
                Some(_) => Some(self.namespace_target(id).await?),
                None => None,
            };
            let cmd = self.exec_command(id, target, launch, &request)?;
            run_exec(cmd, request.stdin, request.timeout).await
        })
    }

    fn cleanup_pod<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()> {
        let cgroups = self.cgroups.clone();
        let uid = pod_uid.to_string();
        Box::pin(async move {
            // Removing a cgroup waits for its last processes to go: not on an async worker.
            if let Some(cg) = cgroups
                && let Err(e) = tokio::task::spawn_blocking(move || cg.remove_pod(&uid)).await
            {
                tracing::warn!(error = %e, "removing the pod's cgroup failed");
            }
        })
    }
}

impl ProcessRuntime {
    fn adopt_now(&self, launch: &ContainerLaunch, id: InstanceId) -> Adoption {
        let exit_file = launch.exit_file.clone();
        if !is_alive(&id) {
            // The OOM count before it is unknown, so an OOM kill cannot be told apart here.
            return Adoption::Ended(exit_from_file(&exit_file, false));
        }
        let cgroup = self.cgroups.as_ref().map(|c| c.container_dir(&launch.pod_uid, &launch.container));
        let oom_before = cgroup.as_deref().map_or(0, Cgroups::oom_kills);
        let poll = self.adopt_poll;
        let watched = id.clone();
        let exit = async move {
            // Not our child: nothing to wait on but /proc.
            while is_alive(&watched) {
                tokio::time::sleep(poll).await;
            }
            let oom_killed = cgroup.as_deref().is_some_and(|d| Cgroups::oom_kills(d) > oom_before);
            exit_from_file(&exit_file, oom_killed)
        }
        .boxed();
        Adoption::Running(Started { id, image_id: None, exit })
    }
}

/// SIGTERM or SIGKILL to the instance's process group.
fn signal_group(id: &InstanceId, signal: StopSignal) -> Result<(), RuntimeError> {
    // The start time proves the pid (and so the group id) is still the instance's.
    if proc_stat(id.pid).map(|s| s.start_ticks) != Some(id.start_ticks) {
        return Err(RuntimeError::NotRunning(id.to_string()));
    }
    let sig = match signal {
        StopSignal::Term => Signal::TERM,
        StopSignal::Kill => Signal::KILL,
    };
    let pid = i32::try_from(id.pid).ok().and_then(Pid::from_raw).ok_or_else(|| RuntimeError::NotRunning(id.to_string()))?;
    rustix::process::kill_process_group(pid, sig)
        .map_err(|e| RuntimeError::Io { context: format!("signalling process group {}", id.pid), source: io::Error::from(e) })
}

/// Whether `unshare` can make the namespaces containers get (root in a container without
/// CAP_SYS_ADMIN cannot): one trial run at start-up.
fn namespaces_work(unshare: &Path, sh: &Path) -> bool {
    std::process::Command::new(unshare)
        .args(NS_FLAGS)
        .arg(sh)
        .args(["-c", ":"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a prepared exec command: stdin written then closed, stdout and stderr collected, the
/// whole process group killed at the timeout.
async fn run_exec(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Option<Duration>) -> Result<ExecOutput, RuntimeError> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn { what: "exec".to_string(), source })?;
    let pid = child.id();
    let (stop_tx, stop_rx) = watch::channel(false);
    let out = child.stdout.take().map(|r| tokio::spawn(drain(r, stop_rx.clone())));
    let err = child.stderr.take().map(|r| tokio::spawn(drain(r, stop_rx)));
    if let (Some(mut w), Some(bytes)) = (child.stdin.take(), stdin) {
        tokio::spawn(async move {
            // A command that does not read its stdin closes the pipe early; that is not an error.
            let _ = w.write_all(&bytes).await;
            let _ = w.shutdown().await;
        });
    }
    let waited = match timeout {
        Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    let (status, timed_out) = match waited {
        Some(status) => (status, false),
        None => {
            // Nothing of a timed-out command may linger (probes run every few seconds).
            if let Some(pid) = pid {
                kill_group(pid, Signal::KILL);
            }
            (child.wait().await, true)
        }
    };
    tokio::spawn(async move {
        tokio::time::sleep(EXEC_DRAIN_GRACE).await;
        let _ = stop_tx.send(true);
    });
    let stdout = match out {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let stderr = match err {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let status = status.map_err(|source| RuntimeError::Io { context: "waiting for exec".to_string(), source })?;
    let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExecOutput { stdout, stderr, exit_code, timed_out })
}

/// Reads `r` to its end, or until `stop` fires, keeping at most [`MAX_EXEC_OUTPUT`] bytes.
async fn drain<R: AsyncRead + Unpin>(mut r: R, mut stop: watch::Receiver<bool>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_EXEC_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    out
}

/// The [`Exit`] of an instance that was our child.
fn exit_from_status(status: io::Result<std::process::ExitStatus>, exit_file: &Path, oom_killed: bool) -> Exit {
    let (code, signal) = match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (read_exit_file(exit_file).unwrap_or(-1), None),
        },
        Err(_) => (read_exit_file(exit_file).unwrap_or(-1), None),
    };
    Exit { code, signal, oom_killed, lost: false, finished_at: Timestamp::now() }
}

/// The [`Exit`] of an instance that was not our child, from the code its wrapper wrote.
fn exit_from_file(exit_file: &Path, oom_killed: bool) -> Exit {
    match read_exit_file(exit_file) {
        Some(code) => Exit { code, signal: None, oom_killed, lost: false, finished_at: Timestamp::now() },
        // The wrapper was killed before it could write the code: by SIGKILL (ours, or the OOM
        // killer's), or by something nobody saw.
        None => Exit { code: 137, signal: None, oom_killed, lost: !oom_killed, finished_at: Timestamp::now() },
    }
}

/// The code the wrapper wrote when its command ended.
fn read_exit_file(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One bind mount in the wrapper: the mount point is created (a directory, or an empty file
/// for a file) and the host path mounted on it, read-only if asked.
fn mount_line(m: &Mount, mount: &str, mkdir: &str) -> String {
    let src = quote_path(&m.host_path);
    let dst = quote_path(&m.container_path);
    let mut s = if m.host_path.is_dir() {
        format!("{mkdir} -p {dst} && {mount} --bind {src} {dst} || exit 126\n")
    } else {
        let parent = quote_path(m.container_path.parent().unwrap_or(Path::new("/")));
        format!("{{ [ -e {dst} ] || {{ {mkdir} -p {parent} && : > {dst}; }}; }} && {mount} --bind {src} {dst} || exit 126\n")
    };
    if m.read_only {
        s.push_str(&format!("{mount} -o remount,bind,ro {dst} || exit 126\n"));
    }
    s
}

/// Fails like a container runtime when the executable cannot be found, instead of letting
/// the shell report `not found` as an ordinary exit 127. Paths under a volume mount are not
/// checked: they only exist inside the mount namespace.
fn check_executable(program: &str, env: &[(String, String)], mounts: &[Mount], mounted: bool) -> Result<(), RuntimeError> {
    let under_mount = |p: &Path| mounted && mounts.iter().any(|m| p.starts_with(&m.container_path));
    if program.contains('/') {
        let p = Path::new(program);
        if p.is_absolute() && !under_mount(p) && !is_executable(p) {
            return Err(RuntimeError::NotExecutable(format!("exec: \"{program}\": stat {program}: no such file or executable")));
        }
        return Ok(());
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let found = path.split(':').any(|dir| {
        let dir = Path::new(if dir.is_empty() { "." } else { dir });
        under_mount(dir) || is_executable(&dir.join(program))
    });
    if found { Ok(()) } else { Err(RuntimeError::NotExecutable(format!("exec: \"{program}\": executable file not found in $PATH"))) }
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn open_append(path: &Path) -> Result<File, RuntimeError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| RuntimeError::Io { context: format!("opening {}", path.display()), source })
}

/// Sends `sig` to a process group, ignoring a group that is already gone.
fn kill_group(pgid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// The fields of `/proc/<pid>/stat` the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie), …
    pub state: char,
    pub ppid: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

fn parse_stat(s: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5 (pgrp) to 21 come next; field 22 is the start time.
    let start_ticks = fields.nth(17)?.parse().ok()?;
    Some(ProcStat { state, ppid, start_ticks })
}

/// Whether `id` still names a live (not zombie) process.
pub fn is_alive(id: &InstanceId) -> bool {
    proc_stat(id.pid).is_some_and(|s| s.start_ticks == id.start_ticks && s.state != 'Z' && s.state != 'X')
}

/// The pids whose parent is `pid` (one pass over /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&p| proc_stat(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// Finds a program in the agent's `PATH` (or the usual system directories).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

/// Quotes a string for `sh`: single quotes, with embedded single quotes spliced in.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_names() {
        let s = "8549 (a) b (c) R 8542 8542 858 0 -1 4194304 123 0 0 0 0 0 0 0 20 0 1 0 1901949 3133440 394";
        assert_eq!(parse_stat(s), Some(ProcStat { state: 'R', ppid: 8542, start_ticks: 1_901_949 }));
        let me = proc_stat(std::process::id()).unwrap();
        assert!(me.start_ticks > 0);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn missing_executables_are_start_errors() {
        let env = vec![("PATH".to_string(), "/nonexistent".to_string())];
        assert!(matches!(check_executable("sh", &env, &[], false), Err(RuntimeError::NotExecutable(_))));
        assert!(check_executable("sh", &[], &[], false).is_ok());
        assert!(matches!(check_executable("/no/such/prog", &[], &[], false), Err(RuntimeError::NotExecutable(_))));
        let mounts = vec![Mount { host_path: "/tmp".into(), container_path: "/no/such".into(), read_only: false }];
        assert!(check_executable("/no/such/prog", &[], &mounts, true).is_ok());
    }
}
