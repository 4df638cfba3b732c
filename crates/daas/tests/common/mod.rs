//! Harness for end-to-end tests that drive real client binaries against a `daas server` the
//! test starts itself. Start with [`Server::start`]; [`Server::etcdctl`] runs the real
//! `etcdctl` (3.4, `ETCDCTL_API=3`) against it and [`Server::spawn_etcdctl`] starts a
//! long-running one (`watch`, `lease keep-alive`) as a [`Running`] child.
//! [`Server::start_with`] adds flags; [`daas_command`], [`Server::start_command`] and
//! [`run_command`] run the binary with any arguments and environment; [`etcdctl_at`] runs
//! etcdctl against endpoints of the test's choosing (such as `https://…`).
//!
//! Every child process is bounded in time: commands are killed after [`COMMAND_TIMEOUT`], the
//! server must announce itself within [`STARTUP_TIMEOUT`], and dropping a [`Server`] or a
//! [`Running`] kills the process.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long the server may take to print its `daas: etcd API on …` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one ordinary `etcdctl` command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of the line the server prints once it listens; `http://ADDR` or `https://ADDR`
/// follows.
const READY_PREFIX: &str = "daas: etcd API on ";
/// The line before it, announcing the HTTPS API.
const HTTPS_PREFIX: &str = "daas: https API on ";

pub use daas_store::test_util::scratch;

/// The `etcdctl` binary on PATH. Missing is a failure, never a skip: the project's test
/// command installs it, and a silently skipped compatibility suite proves nothing.
pub fn etcdctl_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let found =
            std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("etcdctl")).find(|p| p.is_file()));
        match found {
            Some(p) => p,
            None => panic!(
                "`etcdctl` (3.4, Debian package etcd-client) is not on PATH. These end-to-end \
                 tests need the real client: run the README's test command, \
                 `bash scripts/test.sh`, which installs it."
            ),
        }
    })
}

/// A `daas server` child process on a loopback port the kernel picked; killed on drop.
pub struct Server {
    child: Child,
    addr: String,
    /// `http` or `https`, as announced.
    scheme: String,
    /// `https://ADDR` of the HTTPS API.
    https_url: String,
    data_dir: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    // Declared last so that it is removed after the process is gone (fields drop after
    // `Drop::drop` has killed the child).
    _owned_dir: Option<TempDir>,
}

impl Server {
    /// Starts a server on a fresh scratch data directory that lives as long as the server.
    pub fn start() -> Server {
        let dir = scratch();
        let mut s = Server::start_in(dir.path());
        s._owned_dir = Some(dir);
        s
    }

    /// Starts a server on `data_dir` (created if missing), which the caller keeps alive; use
    /// this to restart a server on the same data.
    pub fn start_in(data_dir: &Path) -> Server {
        Server::start_in_with(data_dir, &[])
    }

    /// Starts a server on a fresh scratch data directory with `args` added after the
    /// harness's own (`server --etcd-listen 127.0.0.1:0 --data-dir DIR`).
    pub fn start_with(args: &[&str]) -> Server {
        let dir = scratch();
        let mut s = Server::start_in_with(dir.path(), args);
        s._owned_dir = Some(dir);
        s
    }

    /// [`Server::start_in`] with `args` added after the harness's own. The Kubernetes API is
    /// off (its bootstrap writes keys the etcd suites do not expect); see [`Server::start_k8s`].
    pub fn start_in_with(data_dir: &Path, args: &[&str]) -> Server {
        let mut all = vec!["--disable-kubernetes-api"];
        all.extend_from_slice(args);
        Server::start_raw(data_dir, &all)
    }

    /// A server with the Kubernetes API, on a fresh scratch directory, with `args` added.
    pub fn start_k8s(args: &[&str]) -> Server {
        let dir = scratch();
        let mut s = Server::start_raw(dir.path(), args);
        s._owned_dir = Some(dir);
        s
    }

    /// A server with the Kubernetes API on `data_dir`, which the caller keeps (for restarts).
    pub fn start_k8s_in(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_raw(data_dir, args)
    }

    fn start_raw(data_dir: &Path, args: &[&str]) -> Server {
        let mut cmd = daas_command();
        // Port 0: the server binds whatever the kernel gives it and prints the real address,
        // so parallel tests never race for a port.
        cmd.args(["server", "--etcd-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(args);
        // The API alone unless a test asks for controllers: suites that count objects or
        // create pods with no nodes do not want a scheduler answering them.
        if !args.iter().any(|a| a.starts_with("--controllers")) {
            cmd.args(["--controllers", ""]);
        }
        Server::start_command(cmd, data_dir)
    }

    /// Starts `cmd` (normally from [`daas_command`], with every argument set) as a server
    /// using `data_dir`, and waits for it to announce its address.
    pub fn start_command(mut cmd: Command, data_dir: &Path) -> Server {
        // Fail with the install hint before anything else happens.
        etcdctl_path();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the daas binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = Some(drain_into(child.stderr.take().expect("stderr is piped"), stderr.clone()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut https = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(HTTPS_PREFIX) {
                    https = rest.to_string();
                }
                if let Some(rest) = line.strip_prefix(READY_PREFIX)
                    && let Some((scheme, addr)) = rest.split_once("://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((scheme.to_string(), addr.to_string(), std::mem::take(&mut https)));
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            scheme: String::new(),
            https_url: String::new(),
            data_dir: data_dir.to_path_buf(),
            stderr,
            stderr_reader,
            _owned_dir: None,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok((scheme, addr, https)) => {
                server.scheme = scheme;
                server.addr = addr;
                server.https_url = https;
            }
            Err(e) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                panic!("daas server did not print {READY_PREFIX:?} ({e}); its stderr:\n{}", server.stderr_text());
            }
        }
        server
    }

    /// `127.0.0.1:PORT`, the form etcdctl's `--endpoints` takes and echoes back.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://ADDR` or `https://ADDR`, as the server announced it.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// `https://127.0.0.1:PORT` of the HTTPS API (attestation, health).
    pub fn https_url(&self) -> &str {
        &self.https_url
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A gRPC channel to the server's etcd API.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .expect("a valid endpoint")
            .connect_timeout(COMMAND_TIMEOUT)
            .connect()
            .await
            .expect("the server accepts gRPC connections")
    }

    /// An etcd KV client (the generated one from `daas-etcd`).
    pub async fn kv(&self) -> daas_etcd::pb::kv_client::KvClient<tonic::transport::Channel> {
        daas_etcd::pb::kv_client::KvClient::new(self.channel().await)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the server has logged so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("not poisoned")).into_owned()
    }

    /// Runs `etcdctl ARGS` to completion (killed after [`COMMAND_TIMEOUT`]).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.spawn(args, None).wait_exit(COMMAND_TIMEOUT)
    }

    /// Runs `etcdctl ARGS` with `stdin` fed to it.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> Output {
        self.spawn(args, Some(stdin.into())).wait_exit(COMMAND_TIMEOUT)
    }

    /// Starts `etcdctl ARGS` and leaves it running (for `watch` and friends).
    pub fn spawn_etcdctl(&self, args: &[&str]) -> Running {
        self.spawn(args, None)
    }

    fn spawn(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Running {
        spawn_etcdctl_at(&self.addr, args, stdin)
    }

    /// Stops the server with SIGTERM, as an operator would, and waits (bounded) for it to exit.
    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    /// Runs the real `kubectl --kubeconfig <admin kubeconfig> ARGS` (killed after the command
    /// timeout).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.spawn_kubectl(args, None).wait_exit(COMMAND_TIMEOUT)
    }

    /// `kubectl … -o json` (ARGS must ask for JSON) parsed; panics if kubectl fails.
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.kubectl(args).ok()).expect("kubectl printed JSON")
    }

    /// [`Server::kubectl_json`], or `None` while kubectl fails (an object not there yet).
    pub fn try_kubectl_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let o = self.kubectl(args);
        if o.code == Some(0) { serde_json::from_str(&o.stdout).ok() } else { None }
    }

    /// [`Server::kubectl`] with `stdin` (manifests for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.spawn_kubectl(args, Some(stdin.as_bytes().to_vec())).wait_exit(COMMAND_TIMEOUT)
    }

    /// Starts kubectl and returns while it runs (`get -w`).
    pub fn spawn_kubectl(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Running {
        let mut cmd = Command::new("kubectl");
        cmd.env_remove("KUBECONFIG").arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        spawn_command(cmd, format!("kubectl {}", shell_words(args)), stdin)
    }

    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill(1) runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid works") {
                return status;
            }
            assert!(Instant::now() < deadline, "daas server ignored SIGTERM for {STARTUP_TIMEOUT:?}; stderr:\n{}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Server::stop`], then everything the server logged, up to its last line.
    pub fn stop_with_stderr(mut self) -> (ExitStatus, String) {
        let reader = self.stderr_reader.take();
        let stderr = self.stderr.clone();
        let status = self.stop();
        // The process is gone, so its end of the pipe is closed and the reader finishes.
        if let Some(r) = reader {
            let _ = r.join();
        }
        let text = String::from_utf8_lossy(&stderr.lock().expect("not poisoned")).into_owned();
        (status, text)
    }

    /// Kills the server with SIGKILL (a crash: nothing gets to flush).
    pub fn crash(mut self) {
        self.child.kill().expect("the server can be killed");
        self.child.wait().expect("waitpid works");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `daas` binary with every `DAAS_*` variable of the developer's environment removed, so
/// that only the settings a test gives reach it.
/// Polls `f` every 100 ms until it returns `Some`; panics naming `what` after `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a pod (as JSON) has the condition Ready=True.
pub fn pod_ready(p: &serde_json::Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Runs `daas ARGS`, which must succeed within 60 s; returns its stdout.
pub fn daas_ok(args: &[&str]) -> String {
    let mut cmd = daas_command();
    cmd.args(args);
    run_command(cmd, &format!("daas {}", args.join(" ")), Duration::from_secs(60)).ok()
}

/// A new Sui key at `dir/<node>.key` and a 5000 stake for `node` on the development ledger of
/// the server whose data dir is `data`: (key file, stake object id).
pub fn staked_worker(dir: &Path, data: &Path, node: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{node}.key"));
    daas_ok(&["dev", "keygen", "--out", key.to_str().expect("UTF-8 path")]);
    let stake = daas_ok(&[
        "dev",
        "stake",
        "--data-dir",
        data.to_str().expect("UTF-8 path"),
        "--key",
        key.to_str().expect("UTF-8 path"),
        "--node",
        node,
        "--amount",
        "5000",
    ]);
    (key, stake.trim().to_string())
}

pub fn daas_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_daas"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DAAS_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd` to completion, killed after `within`; `label` names it in failure messages.
pub fn run_command(cmd: Command, label: &str, within: Duration) -> Output {
    spawn_command(cmd, label.to_string(), None).wait_exit(within)
}

/// Runs `etcdctl --endpoints ENDPOINTS ARGS` to completion (killed after [`COMMAND_TIMEOUT`]),
/// for endpoints a [`Server`] does not know, such as `https://…`.
pub fn etcdctl_at(endpoints: &str, args: &[&str]) -> Output {
    spawn_etcdctl_at(endpoints, args, None).wait_exit(COMMAND_TIMEOUT)
}

fn spawn_etcdctl_at(endpoints: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Running {
    let mut cmd = Command::new(etcdctl_path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(endpoints).args(args);
    spawn_command(cmd, format!("etcdctl {}", shell_words(args)), stdin)
}

/// Starts `cmd` with its output collected as it arrives and `stdin` (if any) fed to it.
pub fn spawn_command(mut cmd: Command, command: String, stdin: Option<Vec<u8>>) -> Running {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("`{command}` starts: {e}"));
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A writer thread: a large input must not deadlock against unread output, and a
        // child that exits without reading (EPIPE) is not our concern here.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        drain_into(child.stdout.take().expect("stdout is piped"), stdout.clone()),
        drain_into(child.stderr.take().expect("stderr is piped"), stderr.clone()),
    ];
    Running { child, stdout, stderr, readers, command }
}

/// What a finished (or killed) command printed.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// True when the harness killed it because it was still running at the deadline.
    pub killed: bool,
}

impl Output {
    /// Asserts a clean exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(self.code == Some(0) && !self.killed, "`{}` did not succeed:\n{self}", self.command);
        self.stdout
    }

    /// The last non-empty line of stderr (etcdctl's `Error: …` line).
    pub fn last_stderr_line(&self) -> &str {
        self.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n--- exit: {:?}{}\n--- stdout:\n{}--- stderr:\n{}",
            self.command,
            self.code,
            if self.killed { " (killed at deadline)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// A child process still running; its output is collected as it arrives. Killed on drop.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    command: String,
}

impl Running {
    /// Everything the child has written to stdout so far.
    pub fn stdout_now(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("not poisoned")).into_owned()
    }

    /// Everything the child has written to stderr so far (a daas process's log).
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("not poisoned")).into_owned()
    }

    /// Polls stdout until `pred` holds or `within` passes; returns whether it held.
    pub fn wait_for_stdout(&self, pred: impl Fn(&str) -> bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.stdout_now()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `within` for the child to exit, kills it if it has not, and returns what it
    /// printed.
    pub fn wait_exit(mut self, within: Duration) -> Output {
        let deadline = Instant::now() + within;
        let mut killed = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waitpid works") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                killed = true;
                break self.child.wait().expect("waitpid works");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.collect(status, killed)
    }

    /// SIGTERM, then up to `within` for it to exit (killed after that).
    pub fn terminate(self, within: Duration) -> Output {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait_exit(within)
    }

    /// Kills the child now and returns what it printed.
    pub fn kill(self) -> Output {
        self.wait_exit(Duration::ZERO)
    }

    fn collect(&mut self, status: ExitStatus, killed: bool) -> Output {
        // The pipes close with the process, so the readers finish promptly.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().expect("not poisoned")).into_owned();
        Output { command: self.command.clone(), stdout: text(&self.stdout), stderr: text(&self.stderr), code: status.code(), killed }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies everything `from` produces into `into` on a background thread.
fn drain_into(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().expect("not poisoned").extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// The arguments as a shell would show them (for failure messages only).
fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') { format!("{a:?}") } else { (*a).to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Standard base64 with padding, as etcdctl's `-w json` prints keys and values.
pub fn b64(data: impl AsRef<[u8]>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = data.as_ref();
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
