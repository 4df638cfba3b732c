//! The Move package (contracts/k8s_gateway) against what CI can check without a Move compiler,
//! which cannot be installed on the CI machines: every source parses with Mysten's Move
//! grammar (tests/ts/parse_move.mjs, run under node with @mysten/prettier-plugin-move), and
//! the structs our decoders read — `StakeRecord` and the package's events — declare exactly
//! the fields, in order and with the types, of the Rust side's `LAYOUT`s, in the modules the
//! Rust side names them by. `scripts/test.sh` installs the parser (`npm ci` in tests/ts);
//! without it the parse test fails and says how to install it.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use daas_chain::events::{K8sApiRequest, SlashEvent, StakeEvent, UnstakeEvent};
use daas_chain::{Address, StakeRecord, stake_record_type};

/// The named address the package is published under (Move.toml `[addresses]`).
const PACKAGE_NAME: &str = "k8s_gateway";

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts/k8s_gateway")
}

fn ts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ts")
}

#[test]
fn every_move_source_parses() {
    for module in ["prettier", "@mysten/prettier-plugin-move"] {
        assert!(
            ts_dir().join("node_modules").join(module).exists(),
            "{module} is not installed: run `npm ci` in {} (scripts/test.sh does)",
            ts_dir().display()
        );
    }
    let out =
        Command::new("node").arg(ts_dir().join("parse_move.mjs")).arg(package_dir()).current_dir(ts_dir()).output().expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Move package does not parse:\n{stdout}{stderr}");
    // The script saw every source (it skips only `build/`, the Sui CLI's output).
    let mut files = Vec::new();
    move_files(&package_dir(), &mut files);
    assert!(files.len() >= 2, "{files:?}");
    assert!(stdout.contains(&format!("parse_move: {} Move files under", files.len())), "expected {} files: {stdout}", files.len());
}

fn move_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "build" && !name.starts_with('.') {
            move_files(&path, out);
        } else if name.ends_with(".move") {
            out.push(path);
        }
    }
}

#[test]
fn move_structs_have_the_layouts_the_rust_decoders_expect() {
    // `module::Struct` as the Rust side names each type (the record's full type ends in it).
    let record_type = stake_record_type(&Address::ZERO);
    let record_name = record_type.split_once("::").unwrap().1.to_string();
    let cases: [(String, &[(&str, &str)]); 5] = [
        (record_name, StakeRecord::LAYOUT),
        (StakeEvent::MOVE_NAME.into(), StakeEvent::LAYOUT),
        (UnstakeEvent::MOVE_NAME.into(), UnstakeEvent::LAYOUT),
        (SlashEvent::MOVE_NAME.into(), SlashEvent::LAYOUT),
        (K8sApiRequest::MOVE_NAME.into(), K8sApiRequest::LAYOUT),
    ];
    let mut problems = Vec::new();
    for (move_name, layout) in cases {
        let (module, name) = move_name.split_once("::").unwrap();
        let path = package_dir().join("sources").join(format!("{module}.move"));
        let source = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let source = strip_comments(&source);
        let (found, want) = (declared_module(&source), format!("{PACKAGE_NAME}::{module}"));
        if found.as_deref() != Some(want.as_str()) {
            problems.push(format!("{}: declares module {found:?}, expected {want}", path.display()));
            continue;
        }
        match struct_fields(&source, name) {
            Ok(fields) => {
                if let Err(e) = compare(&format!("{move_name} ({})", path.display()), &fields, layout) {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

/// A struct's fields as declared: (name, type), the type with all whitespace removed.
type Fields = Vec<(String, String)>;

/// `source` with `//` and `/* */` comments blanked out (newlines kept). String literals
/// (`b"…"`, `x"…"`) are copied as they are, so a `//` inside one is not taken for a comment.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        out.extend(chars.next());
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for s in chars.by_ref() {
                    if prev == '*' && s == '/' {
                        break;
                    }
                    if s == '\n' {
                        out.push('\n');
                    }
                    prev = s;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Identifiers (and numbers) and string literals as one token each, every other non-space
/// character as its own.
fn tokens(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut literal = c.to_string();
            while let Some(s) = chars.next() {
                literal.push(s);
                if s == '\\' {
                    literal.extend(chars.next());
                } else if s == '"' {
                    break;
                }
            }
            out.push(literal);
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                word.push(n);
                chars.next();
            }
            out.push(word);
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// `address::name` from `module address::name;` (or `module address::name {`).
fn declared_module(source: &str) -> Option<String> {
    let t = tokens(source);
    let at = t.iter().position(|w| w == "module")?;
    match t.get(at + 1..at + 5)? {
        [addr, c1, c2, name] if c1 == ":" && c2 == ":" => Some(format!("{addr}::{name}")),
        _ => None,
    }
}

/// The fields of `public struct NAME … { … }` in a comment-free source. An error if there is
/// no such struct, more than one, or it has positional fields.
fn struct_fields(source: &str, name: &str) -> Result<Fields, String> {
    let t = tokens(source);
    let starts: Vec<usize> =
        (0..t.len().saturating_sub(2)).filter(|&i| t[i] == "public" && t[i + 1] == "struct" && t[i + 2] == name).collect();
    let start = match starts.as_slice() {
        [one] => *one + 3,
        [] => return Err(format!("no `public struct {name}`")),
        _ => return Err(format!("`public struct {name}` is declared {} times", starts.len())),
    };
    // Type parameters and abilities, up to the opening brace.
    let open = (start..t.len())
        .find(|&i| matches!(t[i].as_str(), "{" | "(" | ";"))
        .filter(|&i| t[i] == "{")
        .ok_or_else(|| format!("`{name}` has no named fields"))?;
    let mut fields = Fields::new();
    let mut i = open + 1;
    loop {
        match t.get(i).map(String::as_str) {
            Some("}") => return Ok(fields),
            None => return Err(format!("`{name}`: no closing brace")),
            _ => {}
        }
        let field = t[i].clone();
        if t.get(i + 1).map(String::as_str) != Some(":") {
            return Err(format!("`{name}`: expected `:` after field `{field}`"));
        }
        // The type runs to a comma outside angle brackets, or to the closing brace.
        let (mut ty, mut depth) = (String::new(), 0i32);
        i += 2;
        loop {
            match t.get(i).map(String::as_str) {
                None => return Err(format!("`{name}`: no closing brace")),
                Some("}") if depth == 0 => break,
                Some(",") if depth == 0 => {
                    i += 1;
                    break;
                }
                Some(w) => {
                    depth += i32::from(w == "<") - i32::from(w == ">");
                    ty.push_str(w);
                    i += 1;
                }
            }
        }
        if ty.is_empty() {
            return Err(format!("`{name}`: field `{field}` has no type"));
        }
        fields.push((field, ty));
    }
}

/// Ok if the Move fields are the layout exactly; otherwise a message with both sides and the
/// first difference.
fn compare(what: &str, move_fields: &Fields, layout: &[(&str, &str)]) -> Result<(), String> {
    let rust: Fields = layout.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    if *move_fields == rust {
        return Ok(());
    }
    let show = |f: &Fields| f.iter().map(|(n, t)| format!("{n}: {t}")).collect::<Vec<_>>().join(", ");
    let first = (0..move_fields.len().max(rust.len()))
        .find(|&i| move_fields.get(i) != rust.get(i))
        .map(|i| {
            let side = |f: &Fields| f.get(i).map_or("nothing".to_string(), |(n, t)| format!("`{n}: {t}`"));
            format!("field {i}: Move has {}, Rust has {}", side(move_fields), side(&rust))
        })
        .unwrap_or_default();
    Err(format!(
        "{what}: the Move struct and the Rust LAYOUT differ\n  Move: {{ {} }}\n  Rust: {{ {} }}\n  {first}",
        show(move_fields),
        show(&rust)
    ))
}

// The checker itself, on small sources.

const SAMPLE: &str = r#"
/// A doc comment: public struct Fake has drop { x: u8 }
module k8s_gateway::sample;

const URL: vector<u8> = b"https://example.com/a//b /* not a comment */";
const ESCAPED: vector<u8> = b"a \" // still a string";
const DECOY: vector<u8> = b"public struct Thing has drop { decoy: u8 }";

/* public struct Fake has drop { y: u64 } */
public struct Thing<phantom T> has key, store {
    id: UID,
    /// Commented: the field's type follows.
    map: Table<address, vector<u8>>, // trailing comment
    opt: Option < vector < u8 > >,
    name: std::string::String,
}

public struct Pair(u64, u64) has copy, drop;
"#;

#[test]
fn the_checker_reads_fields_past_comments_strings_and_generics() {
    let source = strip_comments(SAMPLE);
    assert_eq!(declared_module(&source).as_deref(), Some("k8s_gateway::sample"));
    let fields = struct_fields(&source, "Thing").unwrap();
    let expect = [("id", "UID"), ("map", "Table<address,vector<u8>>"), ("opt", "Option<vector<u8>>"), ("name", "std::string::String")];
    assert_eq!(fields, expect.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect::<Fields>());
    // Structs that exist only in comments, positional structs and missing ones are errors.
    assert!(struct_fields(&source, "Fake").unwrap_err().contains("no `public struct Fake`"));
    assert!(struct_fields(&source, "Pair").unwrap_err().contains("no named fields"));
    assert!(struct_fields(&source, "Missing").is_err());
    let twice = format!("{source}\npublic struct Thing has drop {{ a: u8 }}");
    assert!(struct_fields(&twice, "Thing").unwrap_err().contains("2 times"));
}

#[test]
fn the_checker_reports_both_sides_of_a_difference() {
    let fields = struct_fields(&strip_comments(SAMPLE), "Thing").unwrap();
    let same = [("id", "UID"), ("map", "Table<address,vector<u8>>"), ("opt", "Option<vector<u8>>"), ("name", "std::string::String")];
    assert_eq!(compare("Thing", &fields, &same), Ok(()));
    let swapped = [("id", "UID"), ("opt", "Option<vector<u8>>"), ("map", "Table<address,vector<u8>>"), ("name", "std::string::String")];
    let e = compare("Thing", &fields, &swapped).unwrap_err();
    assert!(e.contains("Move: { id: UID, map: Table<address,vector<u8>>"), "{e}");
    assert!(e.contains("Rust: { id: UID, opt: Option<vector<u8>>"), "{e}");
    assert!(e.contains("field 1: Move has `map: Table<address,vector<u8>>`, Rust has `opt: Option<vector<u8>>`"), "{e}");
    let e = compare("Thing", &fields, &same[..3]).unwrap_err();
    assert!(e.contains("field 3: Move has `name: std::string::String`, Rust has nothing"), "{e}");
}
