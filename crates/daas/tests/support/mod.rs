//! Test harness shared by the end-to-end suites: start and stop `daas server` processes on a free
//! loopback port, and connect gRPC clients to them.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daas_etcd::pb;
use tonic::transport::Channel;

/// A running `daas server`; killed (SIGKILL) when dropped unless stopped first.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Server {
    /// Starts a server on `data_dir` and waits (at most 20 s) until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_daas"))
            .args(["server", "--data-dir"])
            .arg(data_dir)
            .args(["--etcd-listen", &addr, "--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn daas server");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("etcd API on") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("daas server exited early with {status}");
            }
            assert!(Instant::now() < deadline, "daas server did not start listening within 20 s");
        }
        Server { child, addr, data_dir: data_dir.to_owned() }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint()).expect("endpoint").connect_timeout(Duration::from_secs(5)).connect().await.expect("connect")
    }

    pub async fn kv(&self) -> pb::kv_client::KvClient<Channel> {
        pb::kv_client::KvClient::new(self.channel().await)
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (at most 20 s) for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "daas server exited with {status} on SIGTERM");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daas server did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
