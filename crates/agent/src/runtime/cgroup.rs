//! The process runtime's cgroup v2 tree: `<root>/<parent>/pod<uid>/<container>`, with
//! `cpu.max` and `cpu.weight` from the container's cpu limit and request, `memory.max` from
//! its memory limit, and the OOM-kill count read from `memory.events`. Plain file writes;
//! the container joins its cgroup itself (the launch wrapper writes `0` to `cgroup.procs`
//! before it runs the command), so no process ever runs outside it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, warn};

use super::Limits;

/// The `cpu.max` period in microseconds: the kernel's default, and what the kubelet uses.
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts.
const MIN_CPU_QUOTA_US: u64 = 1_000;

/// The cgroup v2 directory that holds every pod of this agent.
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Checks that `root` is a cgroup v2 hierarchy offering the cpu and memory controllers,
    /// creates `root/parent` (one path component) and delegates both controllers down to it.
    /// The error says, in a sentence, why limits cannot be enforced.
    pub fn detect(root: &Path, parent: &str) -> Result<Cgroups, String> {
        if parent.is_empty() || parent.contains('/') || parent == "." || parent == ".." {
            return Err(format!("the cgroup parent {parent:?} must be one directory name"));
        }
        let controllers = fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|_| format!("{} is not a cgroup v2 (unified) hierarchy", root.display()))?;
        for c in ["cpu", "memory"] {
            if !controllers.split_whitespace().any(|x| x == c) {
                return Err(format!("the cgroup v2 hierarchy at {} does not offer the {c} controller", root.display()));
            }
        }
        enable_controllers(root).map_err(|e| format!("cannot delegate cpu and memory below {}: {e}", root.display()))?;
        let base = root.join(parent);
        fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        enable_controllers(&base).map_err(|e| format!("cannot delegate cpu and memory below {}: {e}", base.display()))?;
        Ok(Cgroups { base })
    }

    /// The pod's cgroup.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.base.join(format!("pod{pod_uid}"))
    }

    /// A container's cgroup (a leaf: processes live only here).
    pub fn container_dir(&self, pod_uid: &str, container: &str) -> PathBuf {
        self.pod_dir(pod_uid).join(container)
    }

    /// Creates the pod's cgroup and delegates cpu and memory to its containers.
    pub fn prepare_pod(&self, pod_uid: &str) -> io::Result<()> {
        let dir = self.pod_dir(pod_uid);
        fs::create_dir_all(&dir)?;
        enable_controllers(&dir)
    }

    /// Creates (or reuses, on a restart) the container's cgroup and writes its limits.
    pub fn prepare_container(&self, pod_uid: &str, container: &str, limits: &Limits) -> io::Result<PathBuf> {
        self.prepare_pod(pod_uid)?;
        let dir = self.container_dir(pod_uid, container);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::write(dir.join("cpu.max"), cpu_max(limits.cpu_millis))?;
        fs::write(dir.join("memory.max"), limits.memory_bytes.map_or_else(|| "max".to_string(), |b| b.to_string()))?;
        if let Some(millis) = limits.cpu_request_millis {
            fs::write(dir.join("cpu.weight"), cpu_weight(millis).to_string())?;
        }
        // Kubernetes nodes run without swap by default; a memory limit that swap can dodge
        // would not be one. Kernels without swap accounting lack the file.
        if limits.memory_bytes.is_some()
            && let Err(e) = fs::write(dir.join("memory.swap.max"), "0")
        {
            debug!(dir = %dir.display(), error = %e, "memory.swap.max not set");
        }
        Ok(dir)
    }

    /// How many times the kernel's OOM killer has killed a process in the cgroup at `dir`.
    pub fn oom_kills(dir: &Path) -> u64 {
        fs::read_to_string(dir.join("memory.events"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok())))
            .unwrap_or(0)
    }

    /// Kills whatever is left in the pod's cgroups and removes them.
    pub fn remove_pod(&self, pod_uid: &str) {
        let pod = self.pod_dir(pod_uid);
        let Ok(entries) = fs::read_dir(&pod) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                kill_all(&path);
                remove_cgroup(&path);
            }
        }
        remove_cgroup(&pod);
    }
}

/// `cpu.max` for a cpu limit in millicores: quota and period in microseconds, or no limit.
pub fn cpu_max(limit_millis: Option<u64>) -> String {
    match limit_millis {
        Some(m) => format!("{} {CPU_PERIOD_US}", (m.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_CPU_QUOTA_US)),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// `cpu.weight` for a cpu request, as the kubelet converts cpu shares (1024 per cpu) to the
/// cgroup v2 weight range 1..=10000.
pub fn cpu_weight(request_millis: u64) -> u64 {
    let shares = (request_millis.saturating_mul(1024) / 1000).clamp(2, 262_144);
    (1 + ((shares - 2) * 9999) / 262_142).clamp(1, 10_000)
}

/// Turns on the cpu and memory controllers for the children of `dir`.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&file)?;
    for c in ["cpu", "memory"] {
        if !current.split_whitespace().any(|x| x == c) {
            fs::write(&file, format!("+{c}"))?;
        }
    }
    Ok(())
}

/// Kills every process in the cgroup: `cgroup.kill` where the kernel has it (5.14+),
/// otherwise each pid in `cgroup.procs`.
fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            // A process that already exited is fine.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Removes a cgroup directory; the kernel refuses while killed processes are still exiting,
/// so it retries for a moment.
fn remove_cgroup(dir: &Path) {
    for _ in 0..25 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    warn!(dir = %dir.display(), "could not remove cgroup (processes still in it?)");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_from_limits() {
        assert_eq!(cpu_max(None), "max 100000");
        assert_eq!(cpu_max(Some(500)), "50000 100000");
        assert_eq!(cpu_max(Some(2000)), "200000 100000");
        // Below the kernel's minimum quota.
        assert_eq!(cpu_max(Some(1)), "1000 100000");
    }

    #[test]
    fn cpu_weight_from_requests() {
        assert_eq!(cpu_weight(0), 1);
        // One cpu = 1024 shares, which the kubelet maps to weight 39.
        assert_eq!(cpu_weight(1000), 39);
        assert_eq!(cpu_weight(1_000_000), 10_000);
    }

    #[test]
    fn oom_kills_parses_memory_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(Cgroups::oom_kills(dir.path()), 2);
        assert_eq!(Cgroups::oom_kills(&dir.path().join("missing")), 0);
    }

    #[test]
    fn detect_refuses_a_v1_or_missing_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cgroups::detect(dir.path(), "daas").unwrap_err().contains("not a cgroup v2"));
        std::fs::write(dir.path().join("cgroup.controllers"), "cpuset io\n").unwrap();
        assert!(Cgroups::detect(dir.path(), "daas").unwrap_err().contains("cpu controller"));
        assert!(Cgroups::detect(dir.path(), "a/b").is_err());
    }
}
