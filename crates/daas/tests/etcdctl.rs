//! End-to-end compatibility suite: the real `etcdctl` 3.4 against a `daas server` started by
//! each test, asserting on what etcdctl prints and its exit codes.
//!
//! The expected outputs are those real etcd 3.4.23 gives for the same commands (ids, hashes,
//! sizes, versions and timings aside). Revisions are checked relative to the revision the
//! test read first, so the suite does not depend on where a fresh store starts counting
//! (see `fresh_store_starts_at_revision_one`). Where our server differs from etcd, the test
//! still asserts etcd's behaviour.
//!
//! The harness (server process, bounded etcdctl runs) is in `common/mod.rs`.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Output, Running, Server, b64};

// ---- helpers ------------------------------------------------------------------------------

#[track_caller]
fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("etcdctl printed invalid JSON ({e}):\n{text}"))
}

/// The store's current revision, from a range's response header (absent means 0).
fn revision(s: &Server) -> i64 {
    let v = json(&s.etcdctl(&["get", "revision-probe", "-w", "json"]).ok());
    v["header"]["revision"].as_i64().unwrap_or(0)
}

#[track_caller]
fn put(s: &Server, key: &str, value: &str) {
    assert_eq!(s.etcdctl(&["put", key, value]).ok(), "OK\n");
}

#[track_caller]
fn get(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    s.etcdctl(&all).ok()
}

/// `etcdctl txn` with `stdin` (which must end every section with a blank line).
fn txn(s: &Server, stdin: &str, json: bool) -> Output {
    let args: &[&str] = if json { &["txn", "-w", "json"] } else { &["txn"] };
    s.etcdctl_stdin(args, stdin)
}

/// Asserts how etcdctl reports a server error: nothing on stdout, exit 1, the retry
/// interceptor's warn line carrying the gRPC code, then `Error: DESC` (or `error_line`).
#[track_caller]
fn assert_grpc_error(out: &Output, code: &str, desc: &str, error_line: Option<&str>) {
    let want_line = match error_line {
        Some(l) => l.to_string(),
        None => format!("Error: {desc}"),
    };
    assert!(
        out.code == Some(1)
            && !out.killed
            && out.stdout.is_empty()
            && out.last_stderr_line() == want_line
            && out.stderr.contains(&format!("rpc error: code = {code} desc = {desc}")),
        "expected gRPC {code} {desc:?} and {want_line:?}, got:\n{out}"
    );
}

/// Parses `lease 0123456789abcdef granted with TTL(Ns)` into (hex id, N).
#[track_caller]
fn parse_grant(line: &str) -> (String, i64) {
    let rest = line.strip_prefix("lease ").unwrap_or_else(|| panic!("not a grant line: {line:?}"));
    let (id, rest) = rest.split_once(' ').expect("id then text");
    assert_eq!(id.len(), 16, "lease ids are printed as 16 hex digits: {line:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{line:?}");
    let ttl =
        rest.strip_prefix("granted with TTL(").and_then(|r| r.strip_suffix("s)\n")).unwrap_or_else(|| panic!("not a grant line: {line:?}"));
    (id.to_string(), ttl.parse().expect("a number of seconds"))
}

fn grant(s: &Server, ttl: &str) -> String {
    parse_grant(&s.etcdctl(&["lease", "grant", ttl]).ok()).0
}

fn lease_decimal(hex: &str) -> i64 {
    i64::from_str_radix(hex, 16).expect("a hex lease id")
}

/// Starts `etcdctl ARGS` and returns once it demonstrably delivers live events, with the
/// length of stdout to skip (the pings). It puts `ping_key` (which ARGS must watch) with
/// values `ping-N` until the newest ping shows up: a watcher has no "created" output.
fn established_watch(s: &Server, args: &[&str], ping_key: &str, json: bool) -> (Running, usize) {
    let w = s.spawn_etcdctl(args);
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        let value = format!("ping-{i}");
        put(s, ping_key, &value);
        let needle = if json { format!("\"value\":\"{}\"", b64(&value)) } else { format!("{ping_key}\n{value}\n") };
        if w.wait_for_stdout(|o| o.contains(&needle), Duration::from_millis(300)) {
            let out = w.stdout_now();
            let at = out.find(&needle).expect("just seen");
            let cut = if json { at + out[at..].find('\n').map_or(out.len() - at, |n| n + 1) } else { at + needle.len() };
            return (w, cut);
        }
        if Instant::now() > deadline {
            panic!("`etcdctl {}` saw no ping within 10 s:\n{}", args.join(" "), w.kill());
        }
    }
    unreachable!("the loop returns or panics")
}

// ---- put / get ----------------------------------------------------------------------------

#[test]
fn get_single_prefix_range_and_from_key() {
    let s = Server::start();
    for (k, v) in [("foo", "bar"), ("fab", "1"), ("fz", "2"), ("a", "1"), ("b", "2"), ("x1", "v"), ("x2", "v"), ("z", "zz")] {
        put(&s, k, v);
    }
    assert_eq!(get(&s, &["foo"]), "foo\nbar\n");
    assert_eq!(get(&s, &["nokey"]), "");
    assert_eq!(get(&s, &["--prefix", "f"]), "fab\n1\nfoo\nbar\nfz\n2\n");
    assert_eq!(get(&s, &["a", "z"]), "a\n1\nb\n2\nfab\n1\nfoo\nbar\nfz\n2\nx1\nv\nx2\nv\n", "[a, z) excludes z");
    assert_eq!(get(&s, &["--prefix", "f", "--keys-only"]), "fab\n\nfoo\n\nfz\n\n");
    assert_eq!(get(&s, &["--prefix", "f", "--print-value-only"]), "1\nbar\n2\n");
    assert_eq!(get(&s, &["--from-key", "a"]), "a\n1\nb\n2\nfab\n1\nfoo\nbar\nfz\n2\nx1\nv\nx2\nv\nz\nzz\n");
    assert_eq!(get(&s, &["--from-key", "fz", "--keys-only"]), "fz\n\nx1\n\nx2\n\nz\n\n");

    // A range whose end sorts before its start is empty, not an error.
    let rev = revision(&s);
    assert_eq!(get(&s, &["b", "a"]), "");
    let v = json(&get(&s, &["b", "a", "-w", "json"]));
    assert_eq!(v["header"]["revision"], rev);
    assert!(v.get("kvs").is_none() && v.get("count").is_none(), "empty results omit kvs and count: {v}");
}

#[test]
fn get_limit_sort_and_order() {
    let s = Server::start();
    let r0 = revision(&s);
    // Versions: fab 2, foo 3, fz 1. Creation order: fab, foo, fz. Last change: fz, foo, fab.
    put(&s, "fab", "1");
    put(&s, "foo", "bar");
    put(&s, "fz", "2");
    put(&s, "foo", "bar2");
    put(&s, "foo", "bar3");
    put(&s, "fab", "11");

    assert_eq!(get(&s, &["--prefix", "f", "--limit", "1"]), "fab\n11\n");
    let v = json(&get(&s, &["--prefix", "f", "--limit", "1", "-w", "json"]));
    assert_eq!(v["header"]["revision"], r0 + 6);
    assert_eq!(v["kvs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["kvs"][0]["key"], b64("fab"));
    assert_eq!(v["more"], true, "{v}");
    assert_eq!(v["count"], 3, "count ignores the limit: {v}");
    let v = json(&get(&s, &["--prefix", "f", "--limit", "3", "-w", "json"]));
    assert!(v.get("more").is_none(), "more is omitted when false: {v}");
    assert_eq!(v["count"], 3);

    assert_eq!(get(&s, &["--prefix", "f", "--sort-by=MODIFY", "--order=DESCEND"]), "fab\n11\nfoo\nbar3\nfz\n2\n");
    assert_eq!(get(&s, &["--prefix", "f", "--sort-by=VERSION"]), "fz\n2\nfab\n11\nfoo\nbar3\n");
    assert_eq!(get(&s, &["--prefix", "f", "--sort-by=VALUE", "--order=DESCEND"]), "foo\nbar3\nfz\n2\nfab\n11\n");
    assert_eq!(get(&s, &["--prefix", "f", "--sort-by=CREATE", "--order=DESCEND"]), "fz\n2\nfoo\nbar3\nfab\n11\n");
    assert_eq!(get(&s, &["--prefix", "", "--order=DESCEND", "--keys-only"]), "fz\n\nfoo\n\nfab\n\n");
    let v = json(&get(&s, &["--prefix", "f", "--sort-by=CREATE", "--order=ASCEND", "--limit", "1", "-w", "json"]));
    assert_eq!(v["kvs"][0]["key"], b64("fab"));
    assert_eq!(v["kvs"][0]["create_revision"], r0 + 1);
    assert_eq!((&v["more"], &v["count"]), (&Value::from(true), &Value::from(3)));
}

#[test]
fn get_at_historical_revision() {
    let s = Server::start();
    let r0 = revision(&s);
    put(&s, "h", "1");
    put(&s, "h", "2");
    assert_eq!(s.etcdctl(&["del", "h"]).ok(), "1\n");
    assert_eq!(get(&s, &["h"]), "");
    assert_eq!(get(&s, &["h", "--rev", &(r0 + 1).to_string()]), "h\n1\n");
    let v = json(&get(&s, &["h", "--rev", &(r0 + 2).to_string(), "-w", "json"]));
    assert_eq!(v["header"]["revision"], r0 + 3, "the header has the current revision");
    let kv = &v["kvs"][0];
    assert_eq!(kv["key"], b64("h"));
    assert_eq!(kv["value"], b64("2"));
    assert_eq!(
        (&kv["create_revision"], &kv["mod_revision"], &kv["version"]),
        (&Value::from(r0 + 1), &Value::from(r0 + 2), &Value::from(2))
    );
    assert_eq!(v["count"], 1);
    // A negative revision means "latest", like 0.
    assert_eq!(get(&s, &["h", "--rev", "-1"]), "");
}

#[test]
fn json_fields_follow_revisions() {
    let s = Server::start();
    let r0 = revision(&s);
    let v = json(&s.etcdctl(&["put", "j", "v1", "-w", "json"]).ok());
    assert_eq!(v["header"]["revision"], r0 + 1);
    assert!(v.get("prev_kv").is_none(), "{v}");
    for key in ["cluster_id", "member_id", "raft_term"] {
        assert!(v["header"][key].as_u64().is_some(), "header.{key}: {v}");
    }

    let v = json(&get(&s, &["j", "-w", "json"]));
    assert_eq!(v["header"]["revision"], r0 + 1);
    assert_eq!(
        v["kvs"][0],
        serde_json::json!({
            "key": b64("j"), "create_revision": r0 + 1, "mod_revision": r0 + 1,
            "version": 1, "value": b64("v1"),
        }),
        "no lease field for a key without a lease"
    );
    assert_eq!(v["count"], 1);
    assert!(v.get("more").is_none());

    put(&s, "j", "v2");
    let kv = json(&get(&s, &["j", "-w", "json"]))["kvs"][0].clone();
    assert_eq!(
        (&kv["create_revision"], &kv["mod_revision"], &kv["version"]),
        (&Value::from(r0 + 1), &Value::from(r0 + 2), &Value::from(2))
    );

    // A deleted key comes back as a new generation: version 1, new create revision.
    assert_eq!(s.etcdctl(&["del", "j"]).ok(), "1\n");
    put(&s, "j", "v3");
    let kv = json(&get(&s, &["j", "-w", "json"]))["kvs"][0].clone();
    assert_eq!(
        (&kv["create_revision"], &kv["mod_revision"], &kv["version"]),
        (&Value::from(r0 + 4), &Value::from(r0 + 4), &Value::from(1))
    );
}

#[test]
fn put_prev_kv_ignore_value_and_value_from_stdin() {
    let s = Server::start();
    put(&s, "foo", "bar");
    assert_eq!(s.etcdctl(&["put", "foo", "baz", "--prev-kv"]).ok(), "OK\nfoo\nbar\n");
    let v = json(&s.etcdctl(&["put", "foo", "qux", "--prev-kv", "-w", "json"]).ok());
    assert_eq!(v["prev_kv"]["key"], b64("foo"));
    assert_eq!(v["prev_kv"]["value"], b64("baz"));
    assert_eq!(v["prev_kv"]["version"], 2);
    assert_eq!(s.etcdctl(&["put", "fresh", "x", "--prev-kv"]).ok(), "OK\n", "no previous value, nothing after OK");

    assert_eq!(s.etcdctl(&["put", "foo", "--ignore-value"]).ok(), "OK\n");
    let kv = json(&get(&s, &["foo", "-w", "json"]))["kvs"][0].clone();
    assert_eq!((&kv["value"], &kv["version"]), (&Value::from(b64("qux")), &Value::from(4)));

    // With one argument the value is read from stdin, trailing newline included.
    assert_eq!(s.etcdctl_stdin(&["put", "viastdin"], "v\n").ok(), "OK\n");
    assert_eq!(get(&s, &["viastdin"]), "viastdin\nv\n\n");
}

// ---- del ----------------------------------------------------------------------------------

#[test]
fn del_single_prefix_prev_kv_and_empty_ranges() {
    let s = Server::start();
    for (k, v) in [("a", "1"), ("b", "2"), ("foo", "bar"), ("x1", "v"), ("x2", "v")] {
        put(&s, k, v);
    }
    assert_eq!(s.etcdctl(&["del", "foo"]).ok(), "1\n");
    let rev = revision(&s);
    assert_eq!(s.etcdctl(&["del", "foo"]).ok(), "0\n");
    let v = json(&s.etcdctl(&["del", "foo", "-w", "json"]).ok());
    assert!(v.get("deleted").is_none(), "deleted is omitted when 0: {v}");
    assert_eq!(v["header"]["revision"], rev, "deleting nothing keeps the revision");

    assert_eq!(s.etcdctl(&["del", "--prefix", "x", "--prev-kv"]).ok(), "2\nx1\nv\nx2\nv\n");
    assert_eq!(s.etcdctl(&["del", "--prefix", "x", "--prev-kv"]).ok(), "0\n");
    put(&s, "x1", "v");
    put(&s, "x2", "w");
    let r = revision(&s);
    let v = json(&s.etcdctl(&["del", "--prefix", "x", "--prev-kv", "-w", "json"]).ok());
    assert_eq!(v["header"]["revision"], r + 1, "one delete, one revision");
    assert_eq!(v["deleted"], 2);
    let prev: Vec<_> = v["prev_kvs"]
        .as_array()
        .expect("prev_kvs")
        .iter()
        .map(|kv| (kv["key"].clone(), kv["value"].clone(), kv["mod_revision"].clone()))
        .collect();
    assert_eq!(
        prev,
        vec![
            (Value::from(b64("x1")), Value::from(b64("v")), Value::from(r - 1)),
            (Value::from(b64("x2")), Value::from(b64("w")), Value::from(r)),
        ]
    );

    // range_end before key: deletes nothing, bumps nothing.
    let rev = revision(&s);
    assert_eq!(s.etcdctl(&["del", "b", "a"]).ok(), "0\n");
    let v = json(&s.etcdctl(&["del", "b", "a", "-w", "json"]).ok());
    assert_eq!(v["header"]["revision"], rev);
    assert!(v.get("deleted").is_none(), "{v}");
    assert_eq!(get(&s, &["a"]), "a\n1\n");
    assert_eq!(get(&s, &["b"]), "b\n2\n");
    assert_eq!(s.etcdctl(&["del", "--from-key", "zz"]).ok(), "0\n");
    assert_eq!(s.etcdctl(&["del", "--prefix", "nothing"]).ok(), "0\n");
    assert_eq!(revision(&s), rev);
}

// ---- txn ----------------------------------------------------------------------------------

#[test]
fn txn_success_and_failure_branches() {
    let s = Server::start();
    put(&s, "foo", "bar");
    let ok = "mod(\"foo\") > \"0\"\n\nput foo ok\nget foo\n\nput foo fail\n\n";
    assert_eq!(txn(&s, ok, false).ok(), "SUCCESS\n\nOK\n\nfoo\nok\n");
    let fail = "mod(\"foo\") = \"0\"\n\nput foo ok\n\nput foo fail\nget foo\n\n";
    assert_eq!(txn(&s, fail, false).ok(), "FAILURE\n\nOK\n\nfoo\nfail\n");

    let r = revision(&s);
    let v = json(&txn(&s, ok, true).ok());
    assert_eq!(v["succeeded"], true);
    assert_eq!(v["header"]["revision"], r + 1);
    let put_resp = &v["responses"][0]["Response"]["ResponsePut"];
    assert_eq!(put_resp["header"], serde_json::json!({"revision": r + 1}), "nested headers carry only the revision");
    let range = &v["responses"][1]["Response"]["ResponseRange"];
    assert_eq!(range["kvs"][0]["value"], b64("ok"));
    assert_eq!(range["kvs"][0]["mod_revision"], r + 1);
    assert_eq!(range["count"], 1);

    let v = json(&txn(&s, fail, true).ok());
    assert!(v.get("succeeded").is_none(), "succeeded is omitted when false: {v}");
    assert_eq!(v["header"]["revision"], r + 2);
    assert_eq!(v["responses"][1]["Response"]["ResponseRange"]["kvs"][0]["value"], b64("fail"));

    // A put with --prev-kv inside a txn, and a delete of nothing.
    let v = json(&txn(&s, "value(\"foo\") = \"fail\"\n\nput foo v2 --prev-kv\ndel nonexist\n\n\n", true).ok());
    assert_eq!(v["succeeded"], true);
    let resp = &v["responses"][0]["Response"]["ResponsePut"];
    assert_eq!(resp["prev_kv"]["value"], b64("fail"));
    assert_eq!(v["responses"][1]["Response"]["ResponseDeleteRange"], serde_json::json!({"header": {"revision": r + 3}}));
}

#[test]
fn txn_value_compares_and_read_only_branches() {
    let s = Server::start();
    put(&s, "t1", "a");
    put(&s, "t2", "b");
    let rev = revision(&s);
    let cases = [
        ("value(\"t1\") = \"a\"\n\nget t1\n\nget t2\n\n", "SUCCESS\n\nt1\na\n"),
        ("val(\"t1\") != \"zzz\"\n\nget t1\n\n\n", "SUCCESS\n\nt1\na\n"),
        ("value(\"t1\") > \"a\"\n\nget t1\n\n\n", "FAILURE\n"),
        ("value(\"t1\") < \"a\"\n\nget t1\n\nget t2\n\n", "FAILURE\n\nt2\nb\n"),
        // A value compare against a missing key is false, even against "".
        ("value(\"nokey\") = \"\"\n\nget t1\n\nget t2\n\n", "FAILURE\n\nt2\nb\n"),
        ("version(\"nokey\") = \"0\"\n\nget t1\n\nget t2\n\n", "SUCCESS\n\nt1\na\n"),
        ("mod(\"nokey\") = \"0\"\n\nget t1\n\nget t2\n\n", "SUCCESS\n\nt1\na\n"),
        ("ver(\"t1\") = \"1\"\nc(\"t1\") > \"0\"\nm(\"t1\") < \"1000\"\n\nget --prefix t\n\n\n", "SUCCESS\n\nt1\na\nt2\nb\n"),
        ("ver(\"t1\") = \"2\"\n\nget t1\n\n\n", "FAILURE\n"),
    ];
    for (stdin, want) in cases {
        assert_eq!(txn(&s, stdin, false).ok(), want, "txn stdin:\n{stdin}");
    }
    // Read-only and empty branches do not write.
    let v = json(&txn(&s, "value(\"t1\") = \"nomatch\"\n\nput x y\n\n\n", true).ok());
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "header only: {v}");
    assert_eq!(v["header"]["revision"], rev);
    assert_eq!(revision(&s), rev);
    assert_eq!(get(&s, &["x"]), "");

    // Two deletes of one key are fine: the second sees it gone.
    assert_eq!(txn(&s, "\ndel t1\ndel t1\n\n\n", false).ok(), "SUCCESS\n\n1\n\n0\n");
    // The same key in different branches is fine.
    assert_eq!(txn(&s, "\nput t1 a\n\nput t1 b\n\n", false).ok(), "SUCCESS\n\nOK\n");
}

// ---- watch --------------------------------------------------------------------------------

#[test]
fn watch_live_events() {
    let s = Server::start();
    let (w, cut) = established_watch(&s, &["watch", "foo"], "foo", false);
    put(&s, "foo", "w1");
    put(&s, "other", "x");
    put(&s, "foo", "w2");
    assert_eq!(s.etcdctl(&["del", "foo"]).ok(), "1\n");
    let done = w.wait_for_stdout(|o| o[cut..].contains("DELETE"), Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "the delete never arrived:\n{out}");
    assert!(out.killed, "watch keeps running until killed:\n{out}");
    assert_eq!(&out.stdout[cut..], "PUT\nfoo\nw1\nPUT\nfoo\nw2\nDELETE\nfoo\n\n", "{out}");
}

#[test]
fn watch_prefix_sees_a_txn_as_one_revision() {
    let s = Server::start();
    let (w, cut) = established_watch(&s, &["watch", "--prefix", "t", "-w", "json"], "tping", true);
    let r = revision(&s);
    assert_eq!(txn(&s, "\nput t1 x\nput t2 y\nput u1 z\n\n\n", false).ok(), "SUCCESS\n\nOK\n\nOK\n\nOK\n");
    let done = w.wait_for_stdout(|o| o[cut..].contains('\n'), Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "no event arrived:\n{out}");
    let lines: Vec<_> = out.stdout[cut..].lines().collect();
    assert_eq!(lines.len(), 1, "one response for one revision:\n{out}");
    let v = json(lines[0]);
    assert_eq!(v["Header"]["revision"], r + 1);
    let events = v["Events"].as_array().expect("events");
    let keys: Vec<_> = events.iter().map(|e| e["kv"]["key"].clone()).collect();
    assert_eq!(keys, vec![Value::from(b64("t1")), Value::from(b64("t2"))], "u1 is outside the prefix");
    for e in events {
        assert!(e.get("type").is_none(), "PUT is type 0, omitted: {e}");
        assert_eq!(e["kv"]["mod_revision"], r + 1);
    }
    assert_eq!((&v["CompactRevision"], &v["Canceled"], &v["Created"]), (&Value::from(0), &Value::from(false), &Value::from(false)));

    // The same in text form.
    let (w, cut) = established_watch(&s, &["watch", "--prefix", "t"], "tping", false);
    txn(&s, "\nput t1 x2\nput t2 y2\nput u1 z2\n\n\n", false).ok();
    let done = w.wait_for_stdout(|o| o[cut..].contains("t2\ny2\n"), Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "{out}");
    assert_eq!(&out.stdout[cut..], "PUT\nt1\nx2\nPUT\nt2\ny2\n");
}

#[test]
fn watch_prev_kv() {
    let s = Server::start();
    let (w, cut) = established_watch(&s, &["watch", "foo", "--prev-kv", "-w", "json"], "foo", true);
    let r = revision(&s);
    put(&s, "foo", "p1");
    assert_eq!(s.etcdctl(&["del", "foo"]).ok(), "1\n");
    let done = w.wait_for_stdout(|o| o[cut..].lines().count() >= 2, Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "{out}");
    let lines: Vec<_> = out.stdout[cut..].lines().map(json).collect();
    assert_eq!(lines.len(), 2, "{out}");

    let put_ev = &lines[0]["Events"][0];
    assert_eq!(lines[0]["Header"]["revision"], r + 1);
    assert_eq!(put_ev["kv"]["value"], b64("p1"));
    assert_eq!(put_ev["kv"]["mod_revision"], r + 1);
    let prev = &put_ev["prev_kv"];
    assert_eq!(prev["mod_revision"], r, "prev_kv is the last ping");
    assert_eq!(put_ev["kv"]["create_revision"], prev["create_revision"]);
    assert_eq!(put_ev["kv"]["version"].as_i64(), prev["version"].as_i64().map(|v| v + 1));

    let del_ev = &lines[1]["Events"][0];
    assert_eq!(lines[1]["Header"]["revision"], r + 2);
    assert_eq!(del_ev["type"], 1);
    assert_eq!(
        del_ev["kv"],
        serde_json::json!({"key": b64("foo"), "mod_revision": r + 2}),
        "a DELETE event's kv has only key and mod_revision"
    );
    assert_eq!(del_ev["prev_kv"]["value"], b64("p1"));
    assert_eq!(del_ev["prev_kv"]["mod_revision"], r + 1);

    // Text form: the previous key/value comes before the new one.
    let (w, cut) = established_watch(&s, &["watch", "foo", "--prev-kv"], "foo", false);
    put(&s, "foo", "p2");
    s.etcdctl(&["del", "foo"]).ok();
    let done = w.wait_for_stdout(|o| o[cut..].contains("DELETE"), Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "{out}");
    let ping = out.stdout[..cut].rsplit("foo\n").next().expect("the last ping's value").trim_end().to_string();
    assert_eq!(&out.stdout[cut..], format!("PUT\nfoo\n{ping}\nfoo\np2\nDELETE\nfoo\np2\nfoo\n\n"), "{out}");
}

#[test]
fn watch_replays_history_from_rev_1() {
    let s = Server::start();
    put(&s, "h/a", "1");
    put(&s, "h/b", "2");
    put(&s, "h/a", "3");
    assert_eq!(s.etcdctl(&["del", "h/a"]).ok(), "1\n");
    put(&s, "other", "x");
    put(&s, "h/c", "4");
    assert_eq!(s.etcdctl(&["del", "--prefix", "h/"]).ok(), "2\n");
    let current = revision(&s);

    let want = "PUT\nh/a\n1\nPUT\nh/b\n2\nPUT\nh/a\n3\nDELETE\nh/a\n\n\
                PUT\nh/c\n4\nDELETE\nh/b\n\nDELETE\nh/c\n\n";
    let w = s.spawn_etcdctl(&["watch", "--prefix", "h/", "--rev", "1"]);
    let done = w.wait_for_stdout(|o| o.ends_with("DELETE\nh/c\n\n"), Duration::from_secs(10));
    let out = w.kill();
    assert!(done && out.killed, "{out}");
    assert_eq!(out.stdout, want);

    let w = s.spawn_etcdctl(&["watch", "--prefix", "h/", "--rev", "1", "-w", "json"]);
    let count_events = |o: &str| {
        o.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).map(|v| v["Events"].as_array().map_or(0, Vec::len)).sum::<usize>()
    };
    let done = w.wait_for_stdout(|o| count_events(o) >= 7, Duration::from_secs(10));
    let out = w.kill();
    assert!(done, "{out}");
    let mut events = Vec::new();
    for line in out.stdout.lines() {
        let v = json(line);
        assert_eq!(v["Header"]["revision"], current, "history arrives with the current revision in the header: {line}");
        events.extend(v["Events"].as_array().expect("events").iter().cloned());
    }
    let summary: Vec<_> = events.iter().map(|e| (e["type"].as_i64().unwrap_or(0), e["kv"]["mod_revision"].as_i64().unwrap_or(0))).collect();
    // Revisions relative to the last one: the puts/deletes above, minus `other`.
    let c = current;
    assert_eq!(summary, vec![(0, c - 6), (0, c - 5), (0, c - 4), (1, c - 3), (0, c - 1), (1, c), (1, c)]);
}

#[test]
fn watch_at_compacted_revision_and_empty_range_are_canceled() {
    let s = Server::start();
    let r0 = revision(&s);
    put(&s, "k", "1");
    put(&s, "k", "2");
    put(&s, "k", "3");
    let compact = (r0 + 3).to_string();
    assert_eq!(s.etcdctl(&["compaction", &compact]).ok(), format!("compacted revision {compact}\n"));
    let start = (r0 + 1).to_string();
    let out = s.spawn_etcdctl(&["watch", "k", "--rev", &start]).wait_exit(Duration::from_secs(10));
    assert!(
        out.code == Some(5)
            && !out.killed
            && out.stdout.is_empty()
            && out.stderr.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)\n")
            && out.last_stderr_line() == "Error: watch is canceled by the server",
        "{out}"
    );
    let out = s.spawn_etcdctl(&["watch", "k", "--rev", &start, "-w", "json"]).wait_exit(Duration::from_secs(10));
    assert_eq!(out.code, Some(5), "{out}");
    let v = json(&out.stdout);
    assert_eq!(v["CompactRevision"], r0 + 3);
    assert_eq!(v["Canceled"], true);
    assert_eq!(v["Events"], serde_json::json!([]));
    assert!(v["Header"].get("revision").is_none(), "the cancel response's header has no revision: {v}");

    let out = s.spawn_etcdctl(&["watch", "b", "a"]).wait_exit(Duration::from_secs(10));
    assert!(
        out.code == Some(5)
            && out.stderr.contains("watch was canceled (mvcc: watcher range is empty)\n")
            && out.last_stderr_line() == "Error: watch is canceled by the server",
        "{out}"
    );
}

// ---- lease --------------------------------------------------------------------------------

#[test]
fn lease_grant_attach_keepalive_revoke() {
    let s = Server::start();
    let out = s.etcdctl(&["lease", "grant", "30"]).ok();
    let (id, ttl) = parse_grant(&out);
    assert_eq!(ttl, 30);
    let (_, ttl) = parse_grant(&s.etcdctl(&["lease", "grant", "1"]).ok());
    assert_eq!(ttl, 2, "TTLs below the minimum are raised to 2 s");
    let v = json(&s.etcdctl(&["lease", "grant", "10", "-w", "json"]).ok());
    assert_eq!((&v["TTL"], &v["Error"]), (&Value::from(10), &Value::from("")));
    let ten = format!("{:016x}", v["ID"].as_i64().expect("ID"));

    let lease_flag = format!("--lease={id}");
    assert_eq!(s.etcdctl(&["put", "lk1", "v", &lease_flag]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["put", "lk2", "v", &lease_flag]).ok(), "OK\n");
    let v = json(&get(&s, &["lk1", "-w", "json"]));
    assert_eq!(v["kvs"][0]["lease"], lease_decimal(&id));

    let out = s.etcdctl(&["lease", "timetolive", &id]).ok();
    let prefix = format!("lease {id} granted with TTL(30s), remaining(");
    let remaining: i64 = out
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix("s)\n"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("unexpected timetolive output {out:?}"));
    assert!((20..=30).contains(&remaining), "{out}");
    let out = s.etcdctl(&["lease", "timetolive", &id, "--keys"]).ok();
    assert!(out.starts_with(&prefix) && out.ends_with("s), attached keys([lk1 lk2])\n"), "{out}");
    let v = json(&s.etcdctl(&["lease", "timetolive", &id, "--keys", "-w", "json"]).ok());
    assert_eq!(v["id"], lease_decimal(&id));
    assert_eq!(v["granted-ttl"], 30);
    assert_eq!(v["keys"], serde_json::json!([b64("lk1"), b64("lk2")]));

    assert_eq!(s.etcdctl(&["lease", "keep-alive", "--once", &id]).ok(), format!("lease {id} keepalived with TTL(30)\n"));

    let out = s.etcdctl(&["lease", "list"]).ok();
    let mut lines = out.lines();
    let n: usize = lines
        .next()
        .and_then(|l| l.strip_prefix("found ")?.strip_suffix(" leases")?.parse().ok())
        .unwrap_or_else(|| panic!("unexpected lease list {out:?}"));
    let listed: Vec<_> = lines.collect();
    assert_eq!(listed.len(), n, "{out}");
    for l in [&id, &ten] {
        assert!(listed.contains(&l.as_str()), "{l} missing from {out}");
    }

    // Revoking deletes the attached keys (in one revision).
    let rev = revision(&s);
    assert_eq!(s.etcdctl(&["lease", "revoke", &id]).ok(), format!("lease {id} revoked\n"));
    assert_eq!(get(&s, &["--prefix", "lk"]), "");
    assert_eq!(revision(&s), rev + 1);
    assert_eq!(s.etcdctl(&["lease", "timetolive", &id]).ok(), format!("lease {id} already expired\n"));
    let out = s.etcdctl(&["put", "lk3", "v", &lease_flag]);
    assert_grpc_error(&out, "NotFound", "etcdserver: requested lease not found", None);
    assert_eq!(get(&s, &["lk3"]), "");

    // Revoking a lease without keys writes nothing.
    let rev = revision(&s);
    s.etcdctl(&["lease", "revoke", &ten]).ok();
    assert_eq!(revision(&s), rev);
}

#[test]
fn lease_unknown_ids_and_limits() {
    let s = Server::start();
    assert_eq!(s.etcdctl(&["lease", "timetolive", "1234abcd"]).ok(), "lease 000000001234abcd already expired\n");
    let v = json(&s.etcdctl(&["lease", "timetolive", "1234abcd", "-w", "json"]).ok());
    assert_eq!((&v["ttl"], &v["granted-ttl"]), (&Value::from(-1), &Value::from(0)));

    let out = s.etcdctl(&["lease", "revoke", "1234abcd"]);
    assert_grpc_error(
        &out,
        "NotFound",
        "etcdserver: requested lease not found",
        Some("Error: failed to revoke lease (etcdserver: requested lease not found)"),
    );

    let out = s.etcdctl(&["lease", "keep-alive", "--once", "1234abcd"]);
    assert!(
        out.code == Some(2) && out.stdout.is_empty() && out.last_stderr_line() == "Error: etcdserver: requested lease not found",
        "{out}"
    );
    let out = s.spawn_etcdctl(&["lease", "keep-alive", "1234abcd"]).wait_exit(Duration::from_secs(10));
    assert!(out.code == Some(0) && out.stdout == "lease 000000001234abcd expired or revoked.\n", "{out}");

    let out = s.etcdctl(&["lease", "grant", "9999999999"]);
    assert_grpc_error(
        &out,
        "OutOfRange",
        "etcdserver: too large lease TTL",
        Some("Error: failed to grant lease (etcdserver: too large lease TTL)"),
    );
    assert_eq!(parse_grant(&s.etcdctl(&["lease", "grant", "9000000000"]).ok()).1, 9_000_000_000);
}

#[test]
fn lease_expiry_deletes_attached_keys() {
    let s = Server::start();
    let id = grant(&s, "1");
    s.etcdctl(&["put", "exp1", "v", &format!("--lease={id}")]).ok();
    let started = Instant::now();
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(8) {
        if get(&s, &["exp1"]).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gone, "a key on a 2 s lease outlived 8 s");
    assert!(started.elapsed() >= Duration::from_millis(500), "the key vanished before its lease could have expired");
    assert_eq!(s.etcdctl(&["lease", "timetolive", &id]).ok(), format!("lease {id} already expired\n"));
}

// ---- compaction ---------------------------------------------------------------------------

#[test]
fn compaction() {
    let s = Server::start();
    let r0 = revision(&s);
    put(&s, "c", "1");
    put(&s, "c", "2");
    put(&s, "c", "3");
    let n = r0 + 2;
    assert_eq!(s.etcdctl(&["compaction", &n.to_string()]).ok(), format!("compacted revision {n}\n"));
    assert_eq!(get(&s, &["c", "--rev", &n.to_string()]), "c\n2\n", "the compaction revision itself stays readable");
    let compacted = "etcdserver: mvcc: required revision has been compacted";
    let future = "etcdserver: mvcc: required revision is a future revision";
    let out = s.etcdctl(&["get", "c", "--rev", &(n - 1).to_string()]);
    assert_grpc_error(&out, "OutOfRange", compacted, None);
    for again in [n, n - 1, 0] {
        let out = s.etcdctl(&["compaction", &again.to_string()]);
        assert_grpc_error(&out, "OutOfRange", compacted, None);
    }
    let out = s.etcdctl(&["compaction", "999999"]);
    assert_grpc_error(&out, "OutOfRange", future, None);
    let out = s.etcdctl(&["endpoint", "hashkv", "--rev", &(n - 1).to_string()]);
    assert_grpc_error(&out, "OutOfRange", compacted, None);
    assert!(out.stderr.contains(&format!("Failed to get the hash of endpoint {} ({compacted})", s.addr())));

    let rev = revision(&s);
    assert_eq!(
        s.etcdctl(&["compaction", "--physical", &rev.to_string()]).ok(),
        format!("compacted revision {rev}\n"),
        "compacting at the current revision is fine"
    );
    assert_eq!(revision(&s), rev, "compaction does not write a revision");
    assert_eq!(get(&s, &["c"]), "c\n3\n");
}

// ---- endpoint / member --------------------------------------------------------------------

#[test]
fn endpoint_status_hashkv_health_and_member_list() {
    let s = Server::start();
    put(&s, "a", "1");
    let rev = revision(&s);

    let v = json(&s.etcdctl(&["endpoint", "status", "-w", "json"]).ok());
    let st = &v[0];
    assert_eq!(st["Endpoint"], s.addr());
    let status = &st["Status"];
    assert!(status["version"].as_str().is_some_and(|v| v.starts_with("3.")), "{v}");
    assert!(status["dbSize"].as_i64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(status["header"]["revision"], rev);
    assert_eq!(status["leader"], status["header"]["member_id"], "a single member leads itself");
    let member_id = status["header"]["member_id"].as_u64().expect("member id");

    let out = s.etcdctl(&["endpoint", "status"]).ok();
    let fields: Vec<_> = out.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{out:?}");
    assert_eq!(fields[0], s.addr());
    assert_eq!(fields[1], format!("{member_id:x}"));
    assert_eq!((fields[4], fields[5]), ("true", "false"), "leader, not learner: {out}");
    assert_eq!(fields[9], "", "no errors column: {out:?}");

    let hash = |s: &Server| {
        let out = s.etcdctl(&["endpoint", "hashkv"]).ok();
        let h = out
            .strip_prefix(&format!("{}, ", s.addr()))
            .and_then(|h| h.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("unexpected hashkv output {out:?}"));
        h.parse::<u32>().expect("a 32-bit hash")
    };
    let h1 = hash(&s);
    assert_eq!(hash(&s), h1, "no writes, same hash");
    put(&s, "b", "2");
    assert_ne!(hash(&s), h1, "a put changes the hash");
    let v = json(&s.etcdctl(&["endpoint", "hashkv", "-w", "json"]).ok());
    assert_eq!(v[0]["Endpoint"], s.addr());
    assert!(v[0]["HashKV"]["hash"].as_u64().is_some(), "{v}");

    let out = s.etcdctl(&["endpoint", "health"]);
    assert!(
        out.code == Some(0)
            && out.stdout.is_empty()
            && out.stderr.starts_with(&format!("{} is healthy: successfully committed proposal: took = ", s.addr())),
        "{out}"
    );

    // Name and peer URLs are not compared: etcd prints its --name and peer listener, which
    // a single daas member does not have.
    let out = s.etcdctl(&["member", "list"]).ok();
    let fields: Vec<_> = out.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 6, "{out:?}");
    assert_eq!(fields[0], format!("{member_id:x}"));
    assert_eq!(fields[1], "started");
    assert_eq!(fields[4], format!("http://{}", s.addr()));
    assert_eq!(fields[5], "false", "not a learner");
    let v = json(&s.etcdctl(&["member", "list", "-w", "json"]).ok());
    assert!(v["header"].get("revision").is_none(), "MemberList has no revision: {v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["members"][0]["ID"], member_id);
    assert_eq!(v["members"][0]["clientURLs"], serde_json::json!([format!("http://{}", s.addr())]));
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn errors_leave_the_store_unchanged() {
    let s = Server::start();
    put(&s, "existing", "v");
    let rev = revision(&s);
    let check_unchanged = |what: &str| {
        assert_eq!(revision(&s), rev, "{what} changed the revision");
        assert_eq!(get(&s, &["--prefix", "", "--keys-only"]), "existing\n\n", "{what} stored something");
    };

    for args in [&["put", "", "v"][..], &["get", ""], &["del", ""]] {
        let out = s.etcdctl(args);
        assert_grpc_error(&out, "InvalidArgument", "etcdserver: key is not provided", None);
    }
    check_unchanged("an empty key");

    let out = s.etcdctl(&["put", "k", "v", "--lease=1234abcd"]);
    assert_grpc_error(&out, "NotFound", "etcdserver: requested lease not found", None);
    let out = txn(&s, "\nput k v --lease=1234abcd\n\n\n", false);
    assert_grpc_error(&out, "NotFound", "etcdserver: requested lease not found", None);
    check_unchanged("an unknown lease");

    let out = s.etcdctl(&["put", "nokey", "--ignore-value"]);
    assert_grpc_error(&out, "InvalidArgument", "etcdserver: key not found", None);
    check_unchanged("--ignore-value on a missing key");

    let future = (rev + 1000).to_string();
    let out = s.etcdctl(&["get", "existing", "--rev", &future]);
    assert_grpc_error(&out, "OutOfRange", "etcdserver: mvcc: required revision is a future revision", None);

    let puts = |n: usize| -> String {
        let mut stdin = String::from("\n");
        for i in 0..n {
            stdin.push_str(&format!("put many{i} v\n"));
        }
        stdin + "\n\n"
    };
    let out = txn(&s, &puts(129), false);
    assert_grpc_error(&out, "InvalidArgument", "etcdserver: too many operations in txn request", None);
    let mut compares = String::new();
    for _ in 0..129 {
        compares.push_str("version(\"existing\") = \"1\"\n");
    }
    let out = txn(&s, &format!("{compares}\n\n\n"), false);
    assert_grpc_error(&out, "InvalidArgument", "etcdserver: too many operations in txn request", None);
    check_unchanged("a txn with 129 operations");

    for stdin in ["\nput t1 a\nput t1 b\n\n\n", "\nput t1 a\ndel t1\n\n\n", "\nput t1 a\ndel --prefix t\n\n\n"] {
        let out = txn(&s, stdin, false);
        assert_grpc_error(&out, "InvalidArgument", "etcdserver: duplicate key given in txn request", None);
    }
    check_unchanged("a txn with a duplicate key");

    // 1.6 MB is over the 1.5 MiB request limit but under gRPC's 2 MiB message limit, so the
    // server's own check answers. (Too long for argv: etcdctl reads it from stdin.)
    let out = s.etcdctl_stdin(&["put", "big"], vec![b'a'; 1_600_000]);
    assert_grpc_error(&out, "InvalidArgument", "etcdserver: request is too large", None);
    check_unchanged("a request over 1.5 MiB");

    // Within the limits, 128 operations in one branch are fine.
    let out = txn(&s, &puts(128), false).ok();
    assert!(out.starts_with("SUCCESS\n\nOK\n"), "{out}");
    assert_eq!(revision(&s), rev + 1, "one txn, one revision");
}

// ---- restart ------------------------------------------------------------------------------

#[test]
fn data_and_revision_survive_restarts() {
    let dir = common::scratch();
    let data_dir = dir.path().join("data");
    let s = Server::start_in(&data_dir);
    for i in 0..5 {
        put(&s, &format!("k{i}"), &format!("v{i}"));
    }
    put(&s, "k1", "v1b");
    assert_eq!(s.etcdctl(&["del", "k4"]).ok(), "1\n");
    let compact = revision(&s) - 2;
    s.etcdctl(&["compaction", &compact.to_string()]).ok();
    let rev = revision(&s);
    let before = get(&s, &["--prefix", "k", "-w", "json"]);
    assert!(s.stop().success(), "a clean SIGTERM shutdown exits 0");

    let s = Server::start_in(&data_dir);
    assert_eq!(revision(&s), rev);
    let after = get(&s, &["--prefix", "k", "-w", "json"]);
    assert_eq!(json(&after)["kvs"], json(&before)["kvs"]);
    assert_eq!(get(&s, &["--prefix", "k"]), "k0\nv0\nk1\nv1b\nk2\nv2\nk3\nv3\n");
    let out = s.etcdctl(&["get", "k1", "--rev", &(compact - 1).to_string()]);
    assert_grpc_error(&out, "OutOfRange", "etcdserver: mvcc: required revision has been compacted", None);
    assert_eq!(get(&s, &["k1", "--rev", &compact.to_string()]), "k1\nv1\n");

    // An acknowledged write survives a crash too.
    put(&s, "after-restart", "yes");
    s.crash();
    let s = Server::start_in(&data_dir);
    assert_eq!(revision(&s), rev + 1);
    assert_eq!(get(&s, &["after-restart"]), "after-restart\nyes\n");
    assert_eq!(get(&s, &["--prefix", "k", "--keys-only"]), "k0\n\nk1\n\nk2\n\nk3\n\n");
}

#[test]
fn leases_survive_restart() {
    let dir = common::scratch();
    let data_dir = dir.path().join("data");
    let s = Server::start_in(&data_dir);
    let id = grant(&s, "600");
    s.etcdctl(&["put", "leased", "v", &format!("--lease={id}")]).ok();
    assert!(s.stop().success());

    let s = Server::start_in(&data_dir);
    let out = s.etcdctl(&["lease", "timetolive", &id, "--keys"]).ok();
    assert!(
        out.starts_with(&format!("lease {id} granted with TTL(600s), remaining(")) && out.ends_with("s), attached keys([leased])\n"),
        "{out}"
    );
    assert!(s.etcdctl(&["lease", "list"]).ok().contains(&id));
    assert_eq!(s.etcdctl(&["lease", "revoke", &id]).ok(), format!("lease {id} revoked\n"));
    assert_eq!(get(&s, &["leased"]), "");
}

// ---- known differences from etcd ----------------------------------------------------------

/// etcd starts a fresh store at revision 1, so the first write is revision 2.
#[test]
fn fresh_store_starts_at_revision_one() {
    let s = Server::start();
    let v = json(&get(&s, &["nokey", "-w", "json"]));
    assert_eq!(v["header"]["revision"], 1, "{v}");
    put(&s, "first", "v");
    let v = json(&get(&s, &["first", "-w", "json"]));
    assert_eq!(v["kvs"][0]["create_revision"], 2, "{v}");
}

/// etcd measures its 1.5 MiB limit on the whole raft request: with a 2-byte key, a
/// 1572838-byte value fits and 1572839 bytes do not.
#[test]
fn request_size_limit_boundary_matches_etcd() {
    let s = Server::start();
    assert_eq!(s.etcdctl_stdin(&["put", "bx"], vec![b'a'; 1_572_838]).ok(), "OK\n");
    let rev = revision(&s);
    let out = s.etcdctl_stdin(&["put", "bx"], vec![b'a'; 1_572_839]);
    assert_grpc_error(&out, "InvalidArgument", "etcdserver: request is too large", None);
    assert_eq!(revision(&s), rev);
}
