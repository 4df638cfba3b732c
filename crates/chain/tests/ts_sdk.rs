//! Cross-implementation: Mysten's official TypeScript SDK (@mysten/sui from npm, pinned in
//! tests/ts/package.json, run under node) and our Rust code must agree on Sui keys and
//! personal-message signatures in both directions, for every scheme. `scripts/test.sh`
//! installs the SDK (`npm ci`); without it this test fails and says how to install it.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use daas_chain::{SuiKey, verify_personal_message};
use serde_json::{Value, json};

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ts")
}

fn node(args: &[&str], stdin: &str) -> Vec<Value> {
    assert!(
        sdk_dir().join("node_modules/@mysten/sui").exists(),
        "the TypeScript SDK is not installed: run `npm ci` in {} (scripts/test.sh does)",
        sdk_dir().display()
    );
    let mut child = Command::new("node")
        .arg("sdk.mjs")
        .args(args)
        .current_dir(sdk_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node sdk.mjs {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn keys_and_signatures_from_the_typescript_sdk_are_accepted() {
    let message = "K3s-DaaS register-worker\nnonce: 00ff\nexpires: 1900000000\nenclave: abcd";
    let signed = node(&["sign", message], "");
    assert_eq!(signed.len(), 3);
    for s in &signed {
        let (scheme, address, signature) =
            (s["scheme"].as_str().unwrap(), s["address"].as_str().unwrap(), s["signature"].as_str().unwrap());
        let signer = verify_personal_message(message.as_bytes(), signature).unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(signer.to_string(), address, "{scheme}");
        assert!(verify_personal_message(b"another message", signature).is_err(), "{scheme}");
        // The SDK's exported key is the same account for us.
        let key = SuiKey::parse(s["suiprivkey"].as_str().unwrap()).unwrap();
        assert_eq!((key.scheme(), key.address().to_string()), (scheme, address.to_string()));
    }
}

#[test]
fn our_signatures_verify_with_the_typescript_sdk() {
    let message = "K3s-DaaS login\nnonce: 1234\nexpires: 1900000000\nenclave: abcd";
    let mut lines = String::new();
    let mut expect = Vec::new();
    for scheme in ["ed25519", "secp256k1", "secp256r1"] {
        // Several keys per ECDSA scheme (their signatures vary more than Ed25519's).
        for _ in 0..if scheme == "secp256r1" { 6 } else { 2 } {
            let key = SuiKey::generate(scheme).unwrap();
            let sig = key.sign_personal_message(message.as_bytes()).unwrap();
            let addr = key.address().to_string();
            lines += &format!("{}\n", json!({"message": message, "signature": sig, "address": addr}));
            expect.push((scheme, true));
            // The SDK refuses it for another message and for another address.
            lines += &format!("{}\n", json!({"message": "tampered", "signature": sig, "address": addr}));
            expect.push((scheme, false));
            lines += &format!("{}\n", json!({"message": message, "signature": sig, "address": format!("0x{}", "00".repeat(32))}));
            expect.push((scheme, false));
        }
    }
    let answers = node(&["verify"], &lines);
    assert_eq!(answers.len(), expect.len());
    for (i, ((scheme, ok), a)) in expect.iter().zip(&answers).enumerate() {
        assert_eq!(a["ok"].as_bool(), Some(*ok), "case {i} ({scheme}): {a}");
    }
}
