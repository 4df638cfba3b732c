//! What the node is and how loaded it is, measured from the machine: CPUs, memory and disk
//! from /proc, cgroup v2 limits and the filesystem of the data directory; usage from /proc
//! deltas. Nothing here is a constant standing in for a measurement.

use std::path::Path;

use serde_json::{Value, json};

/// The machine as the Node's capacity and nodeInfo report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_bytes: u64,
    pub max_pods: u32,
    pub hostname: String,
    pub kernel: String,
    pub os_image: String,
    pub arch: String,
    pub machine_id: String,
    pub boot_id: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// `MemTotal` (or any /proc/meminfo field) in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// The cgroup v2 directory this process lives in.
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(format!("/sys/fs/cgroup{}", path.trim()))
}

/// CPUs this process may use: online CPUs, capped by a cgroup cpu.max quota.
fn cpus() -> u32 {
    let online = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let quota = own_cgroup().and_then(|cg| read(&format!("{cg}/cpu.max"))).and_then(|s| {
        let mut it = s.split_whitespace();
        let (q, p) = (it.next()?, it.next()?);
        if q == "max" {
            return None;
        }
        let (q, p): (f64, f64) = (q.parse().ok()?, p.parse().ok()?);
        Some((q / p).ceil().max(1.0) as u32)
    });
    quota.map_or(online, |q| q.min(online))
}

/// Memory this process may use: MemTotal, capped by a cgroup memory.max.
fn memory() -> u64 {
    let total = meminfo("MemTotal").unwrap_or(0);
    let limit = own_cgroup().and_then(|cg| read(&format!("{cg}/memory.max"))).and_then(|s| s.parse::<u64>().ok());
    limit.map_or(total, |l| l.min(total))
}

/// (size, available) in bytes of the filesystem holding `path`, from `df`.
pub fn disk(path: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("df").args(["-B1", "--output=size,avail"]).arg(path).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().nth(1)?;
    let mut it = line.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Machine {
    pub fn measure(data_dir: &Path, max_pods: u32) -> Machine {
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
            .unwrap_or_else(|| "linux".into());
        Machine {
            cpus: cpus(),
            memory_bytes: memory(),
            ephemeral_bytes: disk(data_dir).map_or(0, |(size, _)| size),
            max_pods,
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image,
            arch: match std::env::consts::ARCH {
                "x86_64" => "amd64".into(),
                "aarch64" => "arm64".into(),
                other => other.into(),
            },
            machine_id: read("/etc/machine-id").unwrap_or_default(),
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        }
    }

    /// `status.capacity` (allocatable is the same: the agent reserves nothing).
    pub fn capacity(&self) -> Value {
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_bytes / 1024),
            "ephemeral-storage": format!("{}Ki", self.ephemeral_bytes / 1024),
            "pods": self.max_pods.to_string(),
        })
    }

    /// `status.nodeInfo`; `runtime_version` as [`crate::runtime::Runtime::version`] gives it.
    pub fn node_info(&self, runtime_version: &str) -> Value {
        json!({
            "machineID": self.machine_id,
            "systemUUID": self.machine_id,
            "bootID": self.boot_id,
            "kernelVersion": self.kernel,
            "osImage": self.os_image,
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": format!("v1.33.0-daas+{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": self.arch,
        })
    }
}

/// CPU busy share between two samples of /proc/stat's first line.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    fn read() -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let line = text.lines().next()?;
        let nums: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        let idle = nums.get(3)? + nums.get(4).copied().unwrap_or(0);
        Some((idle, nums.iter().sum()))
    }

    /// Percent of all CPUs busy since the last call (None on the first).
    pub fn sample(&mut self) -> Option<f64> {
        let now = Self::read()?;
        let before = self.last.replace(now)?;
        let (idle, total) = (now.0.saturating_sub(before.0), now.1.saturating_sub(before.1));
        (total > 0).then(|| 100.0 * (total - idle) as f64 / total as f64)
    }
}

/// Load as the heartbeat and the node conditions report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub cpu_percent: Option<f64>,
    pub memory_available: u64,
    pub memory_total: u64,
    pub disk_available: u64,
    pub disk_total: u64,
    pub processes: u64,
    pub pid_max: u64,
}

impl Usage {
    pub fn measure(cpu: &mut CpuSampler, data_dir: &Path) -> Usage {
        let (disk_total, disk_available) = disk(data_dir).unwrap_or((0, 0));
        let processes = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count() as u64
            })
            .unwrap_or(0);
        Usage {
            cpu_percent: cpu.sample(),
            memory_available: meminfo("MemAvailable").unwrap_or(0),
            memory_total: meminfo("MemTotal").unwrap_or(0),
            disk_available,
            disk_total,
            processes,
            pid_max: read("/proc/sys/kernel/pid_max").and_then(|s| s.parse().ok()).unwrap_or(32768),
        }
    }

    /// The kubelet's eviction thresholds, used as the pressure conditions: memory.available
    /// < 100Mi, nodefs.available < 10%, free pids < 5%.
    pub fn pressures(&self) -> (bool, bool, bool) {
        let memory = self.memory_total > 0 && self.memory_available < 100 * 1024 * 1024;
        let disk = self.disk_total > 0 && self.disk_available * 10 < self.disk_total;
        let pids = self.pid_max > 0 && (self.pid_max.saturating_sub(self.processes)) * 20 < self.pid_max;
        (memory, disk, pids)
    }

    /// NodeStatus conditions for a live agent at `now`, keeping transition times from `old`.
    pub fn conditions(&self, now: &str, old: &[Value]) -> Vec<Value> {
        let (memory, disk, pids) = self.pressures();
        let cond = |t: &str, bad: bool, ok_reason: &str, bad_reason: &str, ok_msg: &str, bad_msg: &str| {
            let status = if t == "Ready" {
                if bad { "False" } else { "True" }
            } else if bad {
                "True"
            } else {
                "False"
            };
            let transition = old
                .iter()
                .find(|c| c["type"] == t && c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
                .unwrap_or_else(|| now.to_string());
            json!({
                "type": t, "status": status,
                "reason": if bad { bad_reason } else { ok_reason }, "message": if bad { bad_msg } else { ok_msg },
                "lastHeartbeatTime": now, "lastTransitionTime": transition,
            })
        };
        vec![
            cond(
                "MemoryPressure",
                memory,
                "KubeletHasSufficientMemory",
                "KubeletHasInsufficientMemory",
                "agent has sufficient memory available",
                "agent has insufficient memory available",
            ),
            cond(
                "DiskPressure",
                disk,
                "KubeletHasNoDiskPressure",
                "KubeletHasDiskPressure",
                "agent has no disk pressure",
                "agent has disk pressure",
            ),
            cond(
                "PIDPressure",
                pids,
                "KubeletHasSufficientPID",
                "KubeletHasInsufficientPID",
                "agent has sufficient PID available",
                "agent has insufficient PID available",
            ),
            cond("Ready", false, "KubeletReady", "KubeletNotReady", "daas agent is posting ready status", ""),
        ]
    }

    /// The heartbeat body: what the seed's `POST /api/v1/nodes/heartbeat` carried, measured.
    pub fn heartbeat(&self, node: &str, running_pods: usize) -> Value {
        json!({
            "node_id": node,
            "cpu_percent": self.cpu_percent,
            "memory_available_bytes": self.memory_available,
            "memory_total_bytes": self.memory_total,
            "disk_available_bytes": self.disk_available,
            "disk_total_bytes": self.disk_total,
            "processes": self.processes,
            "running_pods": running_pods,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_measured_not_assumed() {
        let m = Machine::measure(Path::new("/"), 110);
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 64 * 1024 * 1024, "{m:?}");
        assert!(m.ephemeral_bytes > 0, "df works on /");
        assert_eq!(m.capacity()["pods"], "110");
        assert!(!m.kernel.is_empty());
        let mut s = CpuSampler::default();
        assert_eq!(s.sample(), None, "the first sample has nothing to compare with");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let p = s.sample().unwrap();
        assert!((0.0..=100.0).contains(&p));
    }

    #[test]
    fn pressure_follows_the_kubelet_thresholds() {
        let mut u = Usage {
            cpu_percent: None,
            memory_available: 8 << 30,
            memory_total: 16 << 30,
            disk_available: 50,
            disk_total: 100,
            processes: 100,
            pid_max: 32768,
        };
        assert_eq!(u.pressures(), (false, false, false));
        u.memory_available = 50 << 20;
        u.disk_available = 5;
        assert_eq!(u.pressures(), (true, true, false));
        let cs = u.conditions("2026-01-01T00:00:00Z", &[]);
        let get = |t: &str| cs.iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!((get("MemoryPressure")["status"].as_str(), get("Ready")["status"].as_str()), (Some("True"), Some("True")));
        // Transition times stay while the status stays.
        let again = u.conditions("2026-01-01T00:01:00Z", &cs);
        assert_eq!(again[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(again[0]["lastHeartbeatTime"], "2026-01-01T00:01:00Z");
    }
}
