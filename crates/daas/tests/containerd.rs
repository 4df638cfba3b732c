//! `daas agent --runtime containerd`, end to end on one machine: a private containerd (Debian's
//! containerd and runc) with images made by `daas dev oci-image` from a static busybox and
//! imported from the agent's image directory (no registry is reachable here). A Deployment
//! runs from its image (the image's filesystem, not the host's), is Ready by an exec probe,
//! shows its logs and answers exec; a memory limit is enforced and reported as OOMKilled; a
//! missing image is ErrImagePull/ImagePullBackOff; an agent restart re-adopts the running
//! containers; a deleted pod leaves no container behind.
//!
//! Skips, saying why, where containerd cannot run (not root, packages missing, no overlay
//! support).
#![cfg(feature = "containerd")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, Server, daas_command, daas_ok, eventually, pod_ready, spawn_command, staked_worker};

/// A containerd of the test's own (state, socket and images in a temporary directory),
/// stopped when dropped.
struct Containerd {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Containerd {
    /// Why containerd cannot run here, or a running one.
    fn start(dir: &Path) -> Result<Containerd, String> {
        if !is_root() {
            return Err("not root (containerd and runc need it)".to_string());
        }
        for tool in ["containerd", "runc", "ctr"] {
            if which(tool).is_none() {
                return Err(format!("{tool} is not installed (Debian: apt-get install containerd runc)"));
            }
        }
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.toml");
        let socket = dir.join("containerd.sock");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"k3s-daas.local/pause:1\"\n  restrict_oom_score_adj = true\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd does not start: {e}"))?;
        let mut c = Containerd { child, socket, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.answers() {
            if Instant::now() > deadline || c.child.try_wait().ok().flatten().is_some() {
                return Err(format!("containerd did not come up: {}", c.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr").arg("--address").arg(&self.socket).args(["--namespace", "k8s.io"]).args(args).output().unwrap()
    }

    fn answers(&self) -> bool {
        self.socket.exists() && self.ctr(&["version"]).status.success()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The ids of the containers containerd has in the `k8s.io` namespace.
    fn containers(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.ctr(&["containers", "list", "--quiet"]).stdout).lines().map(str::to_string).collect()
    }

    /// The containers (sandbox included) of one pod.
    fn containers_of(&self, pod_uid: &str) -> Vec<String> {
        let filter = format!("labels.\"io.kubernetes.pod.uid\"=={pod_uid}");
        String::from_utf8_lossy(&self.ctr(&["containers", "list", "--quiet", &filter]).stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Containers first (their shims outlive containerd), then containerd itself.
        for id in self.containers() {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
        }
        std::thread::sleep(Duration::from_millis(300));
        for id in self.containers() {
            let _ = self.ctr(&["tasks", "delete", "--force", &id]);
            let _ = self.ctr(&["containers", "delete", &id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Overlay mounts left under root would keep the temporary directory from going.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let root = self.dir.to_string_lossy().to_string();
            for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&root)) {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
}

fn is_root() -> bool {
    // The effective uid, from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

/// A statically linked busybox (Debian's busybox-static), which runs in an image of its own.
fn static_busybox() -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let candidates: Vec<PathBuf> = path.split(':').chain(["/bin"]).map(|d| Path::new(d).join("busybox")).filter(|p| p.is_file()).collect();
    candidates
        .iter()
        .find(|p| std::fs::read(p).is_ok_and(|data| is_static_elf64(&data)))
        .cloned()
        .ok_or_else(|| format!("no static busybox among {candidates:?} (Debian: apt-get install busybox-static)"))
}

/// A 64-bit little-endian ELF without a program interpreter (`PT_INTERP`): statically linked.
fn is_static_elf64(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let u64_at = |o: usize| elf.get(o..o + 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok());
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else { return false };
    (0..count).all(|i| elf.get(phoff + i * size..phoff + i * size + 4).is_some_and(|t| t != 3u32.to_le_bytes()))
}

fn agent(s: &Server, dir: &Path, ctd: &Containerd, key: &Path, stake: &str) -> Running {
    let mut cmd = daas_command();
    cmd.args(["agent", "--server", s.https_url(), "--node-name", "ctd", "--sui-key"]).arg(key);
    cmd.args(["--stake-object", stake, "--danger-accept-simulation", "--heartbeat", "1s", "--runtime", "containerd"]);
    cmd.arg("--containerd-socket").arg(&ctd.socket).arg("--image-dir").arg(dir.join("images")).arg("--data-dir").arg(dir.join("agent"));
    spawn_command(cmd, "daas agent --runtime containerd".to_string(), None)
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: k3s-daas.local/busybox:1
        args: ["sh", "-c", "echo hello from $POD_NAME; echo ok > /tmp/ready; exec sleep 3600"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        readinessProbe:
          exec: {command: ["cat", "/tmp/ready"]}
          periodSeconds: 1
"#;

const HOG: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: k3s-daas.local/busybox:1
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    resources:
      limits: {memory: 16Mi}
"#;

#[test]
fn containerd_runs_pods_from_images_with_limits_logs_exec_and_readoption() {
    let dir = tempfile::tempdir().unwrap();
    let busybox = match static_busybox() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: the containerd runtime test needs a static busybox for its images: {why}");
            return;
        }
    };
    let ctd = match Containerd::start(&dir.path().join("containerd")) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: containerd cannot run here: {why}");
            return;
        }
    };
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let bb = busybox.to_str().unwrap();
    daas_ok(&[
        "dev",
        "oci-image",
        "--ref",
        "k3s-daas.local/busybox:1",
        "--busybox",
        bb,
        "--cmd",
        "sh",
        "--env",
        "PATH=/bin:/opt/bin",
        "--out",
        images.join("busybox.tar").to_str().unwrap(),
    ]);
    daas_ok(&[
        "dev",
        "oci-image",
        "--ref",
        "k3s-daas.local/pause:1",
        "--busybox",
        bb,
        "--entrypoint",
        "/bin/sleep",
        "--cmd",
        "2147483647",
        "--out",
        images.join("pause.tar").to_str().unwrap(),
    ]);

    let data = dir.path().join("data");
    let s = Server::start_k8s_in(&data, &["--controllers", "*"]);
    let (key, stake) = staked_worker(dir.path(), &data, "ctd");
    let a = agent(&s, dir.path(), &ctd, &key, &stake);
    let node = eventually(Duration::from_secs(60), "the node Ready", || {
        let n = s.try_kubectl_json(&["get", "node", "ctd", "-o", "json"])?;
        n["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(n)
    });
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().to_string();
    assert!(runtime.starts_with("containerd://"), "{runtime}");

    // A Deployment from its image: Ready by an exec probe inside the container.
    s.kubectl_stdin(&["apply", "-f", "-"], WEB).ok();
    let running = || -> Vec<(String, String)> {
        let ps = s.kubectl_json(&["get", "pods", "-l", "app=web", "-o", "json"])["items"].as_array().cloned().unwrap_or_default();
        let mut v: Vec<(String, String)> = ps
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && pod_ready(p))
            .map(|p| {
                let c = &p["status"]["containerStatuses"][0];
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    format!("{} {}", c["containerID"].as_str().unwrap(), c["restartCount"]),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = eventually(Duration::from_secs(90), "2 web pods Running and Ready", || {
        let v = running();
        (v.len() == 2).then_some(v)
    });
    assert!(before[0].1.starts_with("containerd://"), "{before:?}");
    // The image as containerd resolved it.
    let image_id = s.kubectl(&["get", "pod", &before[0].0, "-o", "jsonpath={.status.containerStatuses[0].imageID}"]).ok();
    assert!(image_id.contains("sha256:"), "{image_id}");
    let pod = before[0].0.clone();
    let logs = eventually(Duration::from_secs(20), "the pod's log", || {
        let o = s.kubectl(&["logs", &pod]);
        (o.code == Some(0) && !o.stdout.is_empty()).then_some(o.stdout)
    });
    assert_eq!(logs, format!("hello from {pod}\n"));
    // exec runs in the container: the image's files, not the host's.
    assert_eq!(s.kubectl(&["exec", &pod, "--", "cat", "/etc/passwd"]).ok(), "root:x:0:0:root:/root:/bin/sh\n");
    // The image's environment, not the agent's.
    assert_eq!(s.kubectl(&["exec", &pod, "--", "sh", "-c", "echo $PATH"]).ok(), "/bin:/opt/bin\n");
    let o = s.kubectl(&["exec", &pod, "--", "ls", "/work"]);
    assert_ne!(o.code, Some(0), "the host's /work is not in the container: {}", o.stdout);
    let o = s.kubectl(&["exec", &pod, "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);

    // Its sandbox and container are killed behind the agent's back: the container is
    // restarted in a new sandbox.
    let uid = s.kubectl(&["get", "pod", &pod, "-o", "jsonpath={.metadata.uid}"]).ok();
    let ids = ctd.containers_of(&uid);
    assert_eq!(ids.len(), 2, "a sandbox and its container: {ids:?}");
    for id in &ids {
        ctd.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
    }
    eventually(Duration::from_secs(90), "the pod running again in a new sandbox", || {
        let p = s.kubectl_json(&["get", "pod", &pod, "-o", "json"]);
        let c = &p["status"]["containerStatuses"][0];
        (c["restartCount"].as_i64()? >= 1 && c["state"]["running"].is_object() && pod_ready(&p)).then_some(())
    });
    let now = ctd.containers_of(&uid);
    assert!(now.iter().filter(|id| !ids.contains(id)).count() >= 2, "a new sandbox and container: {ids:?} → {now:?}");
    assert_eq!(s.kubectl(&["exec", &pod, "--", "cat", "/tmp/ready"]).ok(), "ok\n");
    let before = eventually(Duration::from_secs(30), "2 web pods Running and Ready", || {
        let v = running();
        (v.len() == 2).then_some(v)
    });

    // A memory limit is enforced and reported.
    s.kubectl_stdin(&["apply", "-f", "-"], HOG).ok();
    let hog = eventually(Duration::from_secs(60), "the hog terminated", || {
        let p = s.kubectl_json(&["get", "pod", "hog", "-o", "json"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let t = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((t["reason"].as_str(), t["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{hog}");

    // An image nobody has: ErrImagePull, then ImagePullBackOff.
    s.kubectl(&["run", "ghost", "--image=k3s-daas.local/ghost:1", "--restart=Never"]).ok();
    let reason = eventually(Duration::from_secs(60), "an image pull error", || {
        let p = s.kubectl_json(&["get", "pod", "ghost", "-o", "json"]);
        let reason = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str()?.to_string();
        (reason != "ContainerCreating").then_some(reason)
    });
    assert!(reason == "ErrImagePull" || reason == "ImagePullBackOff", "{reason}");

    // The agent restarts: the same containers are re-adopted (same ids, no restarts). A pod
    // force-deleted while it was away is removed with its sandbox.
    let hog_uid = s.kubectl(&["get", "pod", "hog", "-o", "jsonpath={.metadata.uid}"]).ok();
    assert!(!ctd.containers_of(&hog_uid).is_empty());
    a.kill();
    s.kubectl(&["delete", "pod", "hog", "--force", "--grace-period=0"]);
    let a = agent(&s, dir.path(), &ctd, &key, &stake);
    std::thread::sleep(Duration::from_secs(3));
    let after = eventually(Duration::from_secs(60), "the web pods re-adopted", || {
        let v = running();
        (v == before).then_some(v)
    });
    assert_eq!(after, before);
    assert_eq!(s.kubectl(&["logs", &pod]).ok(), logs, "logs kept across the agent restart");
    eventually(Duration::from_secs(30), "the force-deleted pod's containers removed", || {
        ctd.containers_of(&hog_uid).is_empty().then_some(())
    });

    // Deleting the pods removes their containers.
    let count_before = ctd.containers().len();
    s.kubectl(&["delete", "deployment", "web", "--wait=false"]).ok();
    // `sleep` as pid 1 ignores SIGTERM: a short grace period ends it with SIGKILL.
    s.kubectl(&["delete", "pods", "--all", "--grace-period=2", "--wait=false"]).ok();
    eventually(Duration::from_secs(60), "the pods gone", || {
        s.kubectl_json(&["get", "pods", "-o", "json"])["items"].as_array()?.is_empty().then_some(())
    });
    let left = eventually(Duration::from_secs(30), "their containers removed", || {
        let c = ctd.containers();
        c.is_empty().then_some(c)
    });
    assert!(left.is_empty() && count_before > 0, "{count_before} containers before, {left:?} after");
    let out = a.terminate(Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
