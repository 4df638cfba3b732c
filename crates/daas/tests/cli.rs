//! The `daas` command line as an operator meets it: invalid settings are all reported at once
//! with exit code 2 before anything starts; a YAML `--config` file, `DAAS_*` variables and flags
//! override each other in that order; `--log-format json` logs JSON; `daas store status` reads
//! a stopped server's data directory.
//!
//! Every run is a real child process of the built binary, bounded in time, with the
//! developer's `DAAS_*` variables removed (see `common::daas_command`).

mod common;

use std::net::TcpListener;
use std::path::Path;

use serde_json::Value;

use common::{COMMAND_TIMEOUT, Output, Server, daas_command, run_command, scratch};

/// The exit code `daas` uses for invalid settings (as clap does for usage errors).
const USAGE_EXIT: i32 = 2;

/// Runs `daas ARGS` with only the `DAAS_*` variables in `env` set.
fn daas(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = daas_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, &format!("daas {}", args.join(" ")), COMMAND_TIMEOUT)
}

/// Asserts that `out` is a refusal to start: exit 2 at once, no listening announcement, and
/// `data_dir` (which the server would create first thing) untouched.
#[track_caller]
fn assert_refused(out: &Output, data_dir: &Path) {
    assert!(!out.killed && out.code == Some(USAGE_EXIT), "expected exit code {USAGE_EXIT}:\n{out}");
    assert!(!out.stdout.contains("etcd API on"), "a refused server announced a listener:\n{out}");
    assert!(!data_dir.exists(), "a refused server created its data dir {}:\n{out}", data_dir.display());
}

/// `n` distinct loopback ports that were free a moment ago (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("not HOST:PORT: {addr:?}"))
}

#[track_caller]
fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

// ---- invalid settings -----------------------------------------------------------------------

/// Three invalid settings at once, with the negative number as a separate word (as an operator
/// types it) and attached by `=`: every problem is reported, not just the first.
#[test]
fn several_invalid_settings_are_all_reported() {
    for txn_ops in [&["--max-txn-ops", "-3"][..], &["--max-txn-ops=-3"]] {
        let dir = scratch();
        let data_dir = dir.path().join("data");
        let mut args = vec!["server", "--data-dir", data_dir.to_str().expect("utf-8 path"), "--etcd-listen", "nowhere"];
        args.extend_from_slice(txn_ops);
        args.extend_from_slice(&["--watch-progress-interval", "5 parsecs"]);
        let out = daas(&args, &[]);
        assert_refused(&out, &data_dir);
        assert_three_problems(&out);
    }
}

/// The same three problems from the environment, the other way settings arrive.
#[test]
fn several_invalid_settings_from_the_environment_are_all_reported() {
    let dir = scratch();
    let data_dir = dir.path().join("data");
    let out = daas(
        &["server"],
        &[
            ("DAAS_DATA_DIR", data_dir.to_str().expect("utf-8 path")),
            ("DAAS_ETCD_LISTEN", "nowhere"),
            ("DAAS_MAX_TXN_OPS", "-3"),
            ("DAAS_WATCH_PROGRESS_INTERVAL", "5 parsecs"),
        ],
    );
    assert_refused(&out, &data_dir);
    assert_three_problems(&out);
}

#[track_caller]
fn assert_three_problems(out: &Output) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    for (setting, value) in [("etcd-listen", "nowhere"), ("max-txn-ops", "-3"), ("watch-progress-interval", "5 parsecs")] {
        assert!(
            lines.iter().any(|l| l.contains(setting) && l.contains(value)),
            "stderr does not name {setting} with its value {value:?} on one line:\n{out}"
        );
    }
}

#[test]
fn plaintext_api_beyond_loopback_is_refused() {
    let dir = scratch();
    let data_dir = dir.path().join("data");
    let d = data_dir.to_str().expect("utf-8 path");
    let out = daas(&["server", "--data-dir", d, "--etcd-listen", "127.0.0.1:0", "--danger-insecure-http-listen", "0.0.0.0:8080"], &[]);
    assert_refused(&out, &data_dir);
    assert!(out.stderr.contains("danger-insecure-http-listen: 0.0.0.0:8080 is not a loopback address"), "{out}");
}

#[test]
fn unknown_key_in_config_file_is_named() {
    let dir = scratch();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("daas.yaml");
    std::fs::write(&config, format!("data-dir: {}\netcd-listen: 127.0.0.1:0\nmax-txn-opps: 64\n", data_dir.display()))
        .expect("write config");
    let out = daas(&["server", "--config", config.to_str().expect("utf-8 path")], &[]);
    assert_refused(&out, &data_dir);
    assert!(out.stderr.contains("max-txn-opps"), "stderr does not name the unknown key:\n{out}");
    assert!(out.stderr.contains(config.to_str().expect("utf-8 path")), "stderr does not name the config file:\n{out}");
}

#[test]
fn cert_file_without_key_file_is_refused() {
    let dir = scratch();
    let data_dir = dir.path().join("data");
    // The file exists, so the only problem is the missing key.
    let cert = dir.path().join("server.pem");
    std::fs::write(&cert, "not checked before the pairing\n").expect("write cert");
    let out = daas(
        &[
            "server",
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--etcd-listen",
            "127.0.0.1:0",
            "--etcd-cert-file",
            cert.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_refused(&out, &data_dir);
    let problems: Vec<&str> = out.stderr.lines().filter(|l| l.contains("etcd-key-file")).collect();
    assert!(
        problems.len() == 1 && problems[0].contains("etcd-cert-file"),
        "expected one line saying --etcd-cert-file needs --etcd-key-file:\n{out}"
    );
}

// ---- precedence -----------------------------------------------------------------------------

/// Starts `daas server --config CONFIG --data-dir DATA_DIR` with `DAAS_ETCD_LISTEN` and
/// `--etcd-listen` set when given, checks that it serves where it says it listens, and returns
/// the port it announced. The server is killed afterwards: a clean stop is not what this checks
/// (see `sigterm_right_after_the_ready_line_stops_cleanly`).
fn announced_port(config: &Path, data_dir: &Path, env_port: Option<u16>, flag_port: Option<u16>) -> u16 {
    let mut cmd = daas_command();
    cmd.arg("server").arg("--config").arg(config).arg("--data-dir").arg(data_dir);
    if let Some(p) = env_port {
        cmd.env("DAAS_ETCD_LISTEN", format!("127.0.0.1:{p}"));
    }
    if let Some(p) = flag_port {
        cmd.arg("--etcd-listen").arg(format!("127.0.0.1:{p}"));
    }
    let server = Server::start_command(cmd, data_dir);
    assert_eq!(server.etcdctl(&["put", "k", "v"]).ok(), "OK\n", "the server does not serve on its announced address");
    port_of(server.addr())
}

#[test]
fn flag_beats_environment_beats_config_file() {
    let dir = scratch();
    let ports = free_ports(3);
    let (a, b, c) = (ports[0], ports[1], ports[2]);
    let config = dir.path().join("daas.yaml");
    std::fs::write(&config, format!("etcd-listen: 127.0.0.1:{a}\n")).expect("write config");

    let data = |n: &str| dir.path().join(n);
    assert_eq!(announced_port(&config, &data("1"), Some(b), Some(c)), c, "the flag must win over env and file");
    assert_eq!(announced_port(&config, &data("2"), Some(b), None), b, "the environment must win over the file");
    assert_eq!(announced_port(&config, &data("3"), None, None), a, "the file's setting must apply");
}

// ---- life cycle -----------------------------------------------------------------------------

/// The ready line is what scripts and supervisors wait for, so once it is printed a SIGTERM
/// must lead to the orderly shutdown (final checkpoint, exit 0).
#[test]
fn sigterm_right_after_the_ready_line_stops_cleanly() {
    // The window is narrow; a few rounds make a miss unlikely.
    for _ in 0..20 {
        let server = Server::start();
        let (status, stderr) = server.stop_with_stderr();
        assert!(status.success(), "SIGTERM right after the ready line: {status}, not a clean exit; stderr:\n{stderr}");
        assert!(stderr.contains("stopped"), "no orderly shutdown logged:\n{stderr}");
    }
}

/// A fatal error names its cause once, in one line an operator can read.
#[test]
fn fatal_error_names_its_cause_once() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = taken.local_addr().expect("bound").to_string();
    let dir = scratch();
    let data_dir = dir.path().join("data");
    let out = daas(
        &["server", "--data-dir", data_dir.to_str().expect("utf-8 path"), "--etcd-listen", &addr, "--https-listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!out.killed && out.code == Some(1), "expected exit code 1 for a port in use:\n{out}");
    let last = out.last_stderr_line();
    assert!(last.starts_with("daas: ") && last.contains(&addr), "the last line does not report the address:\n{out}");
    assert_eq!(last.matches("os error").count(), 1, "the cause is repeated: {last:?}");
}

// ---- logging --------------------------------------------------------------------------------

#[test]
fn json_log_format_logs_only_json() {
    let server = Server::start_with(&["--log-format", "json"]);
    assert_eq!(server.etcdctl(&["put", "k", "v"]).ok(), "OK\n");
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "the server did not stop cleanly ({status}):\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Start (and its key-file warning), listening, shutting down, stopped.
    assert!(lines.len() >= 4, "expected the whole life cycle in the log:\n{stderr}");
    let mut levels = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}\nwhole log:\n{stderr}"));
        let level = v["level"].as_str().unwrap_or_else(|| panic!("log line has no \"level\" string: {line:?}"));
        levels.push(level.to_string());
    }
    assert!(levels.iter().any(|l| l == "INFO") && levels.iter().any(|l| l == "WARN"), "levels seen: {levels:?}\n{stderr}");
    assert!(stderr.contains("stopped"), "the last line (\"stopped\") is missing:\n{stderr}");
}

/// A server that cannot start reports why; with `--log-format json` that report must be JSON
/// too, or a log pipeline loses exactly the line that matters.
#[test]
fn json_log_format_covers_fatal_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = taken.local_addr().expect("bound").to_string();
    let dir = scratch();
    let data_dir = dir.path().join("data");
    let out = daas(
        &[
            "server",
            "--log-format",
            "json",
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--etcd-listen",
            &addr,
            "--https-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.killed && out.code == Some(1), "expected exit code 1 for a port in use:\n{out}");
    assert!(out.stderr.contains(&addr), "the error does not name the address:\n{out}");
    for line in out.stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}\n{out}"));
        assert!(v["level"].is_string(), "stderr line has no \"level\": {line:?}");
    }
}

// ---- offline store tools --------------------------------------------------------------------

#[test]
fn store_status_reads_a_stopped_servers_data_dir() {
    let dir = scratch();
    let server = Server::start_in(dir.path());
    let mut last = 0;
    for i in 0..3 {
        let out = json(&server.etcdctl(&["put", &format!("k{i}"), "v", "-w", "json"]).ok());
        last = out["header"]["revision"].as_i64().expect("put reports a revision");
    }
    assert!(last >= 3, "three puts, yet revision {last}");
    let status = server.stop();
    assert!(status.success(), "the server did not stop cleanly: {status}");

    let out = daas(&["store", "status", "--data-dir", dir.path().to_str().expect("utf-8 path")], &[]);
    assert!(!out.killed && out.code == Some(0), "`daas store status` failed:\n{out}");
    let v = json(&out.stdout);
    assert_eq!(v["sealed"], Value::Bool(true), "{out}");
    assert_eq!(v["revision"].as_i64(), Some(last), "{out}");
}

/// The offline key tools as an operator runs them between two server starts: a new data key,
/// every value re-sealed under it, then every data key wrapped under a new key file. The data
/// stays readable throughout, and afterwards only the new key file opens it.
#[test]
fn key_rotation_reencryption_and_rewrap_keep_the_data_readable() {
    let dir = scratch();
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let server = Server::start_in(dir.path());
    for i in 0..5 {
        server.etcdctl(&["put", &format!("k{i}"), &format!("value {i}")]).ok();
    }
    assert!(server.stop().success());
    let status = |extra: &[&str]| {
        let mut args = vec!["store", "status", "--data-dir", &data];
        args.extend_from_slice(extra);
        json(&daas(&args, &[]).ok())
    };
    assert_eq!(status(&[])["active_dek"], 1);

    let out = daas(&["store", "rotate-dek", "--data-dir", &data], &[]).ok();
    assert!(out.contains("active data key is now 2"), "{out}");
    let out = daas(&["store", "reencrypt", "--data-dir", &data], &[]).ok();
    assert!(out.contains("re-sealed 5 values under data key 2"), "{out}");

    let new_kek = dir.path().join("kek-2.key");
    let new_kek = new_kek.to_str().expect("utf-8 path");
    let out = daas(&["store", "rewrap", "--data-dir", &data, "--new-kek-file", new_kek], &[]).ok();
    assert!(out.contains("re-wrapped"), "{out}");
    assert_eq!(status(&["--kek-file", new_kek])["active_dek"], 2);

    // The old key file no longer opens the store.
    let out = daas(&["store", "status", "--data-dir", &data], &[]);
    assert_eq!(out.code, Some(1), "the old key file must not open the store:\n{out}");
    assert!(out.stderr.contains("does not unwrap"), "{out}");

    // With the new one, every value reads back.
    let server = Server::start_in_with(dir.path(), &["--kek-file", new_kek]);
    for i in 0..5 {
        assert_eq!(server.etcdctl(&["get", &format!("k{i}"), "--print-value-only"]).ok(), format!("value {i}\n"));
    }
}
