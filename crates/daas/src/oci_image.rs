//! `daas dev oci-image`: pack host files into an OCI image archive (an image layout in a tar,
//! as `ctr images import` and `daas agent --image-dir` read it). No registry is needed: the
//! containerd runtime's tests and a machine without network use it to make their images, for
//! example a static busybox with one symlink per applet.
//!
//! The archive holds one uncompressed layer, so its diff id is its digest. File times are the
//! epoch and owners are root: the same inputs give the same image id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

#[derive(clap::Args, Debug)]
pub struct OciImageArgs {
    /// The image reference the archive carries, e.g. k3s-daas.local/busybox:1
    #[arg(long = "ref")]
    reference: String,
    /// Where to write the archive
    #[arg(long)]
    out: PathBuf,
    /// A host file to put in the image, HOST_PATH=IMAGE_PATH (repeatable)
    #[arg(long = "add", value_name = "HOST=IMAGE")]
    add: Vec<String>,
    /// A static busybox to install as /bin/busybox with a symlink in /bin for every applet
    #[arg(long)]
    busybox: Option<PathBuf>,
    /// The image's entrypoint, one argument per flag
    #[arg(long = "entrypoint", allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// The image's default arguments, one per flag
    #[arg(long = "cmd", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// An environment variable, NAME=VALUE (repeatable); PATH defaults to the usual one
    #[arg(long = "env")]
    env: Vec<String>,
    /// The image's working directory
    #[arg(long, default_value = "/")]
    workdir: String,
}

/// One entry of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    /// A directory with other permissions (`/tmp`: 1777).
    DirMode(u32),
    File {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
}

pub fn run(a: OciImageArgs) -> anyhow::Result<()> {
    let (name, tag) = split_reference(&a.reference)?;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for dir in ["bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "var"] {
        entries.insert(dir.to_string(), Entry::Dir);
    }
    entries.insert("tmp".to_string(), Entry::DirMode(0o1777));
    entries.insert("etc/passwd".into(), Entry::File { data: b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), mode: 0o644 });
    entries.insert("etc/group".into(), Entry::File { data: b"root:x:0:\n".to_vec(), mode: 0o644 });
    if let Some(bb) = &a.busybox {
        add_file(&mut entries, bb, "/bin/busybox")?;
        let out = std::process::Command::new(bb).arg("--list").output().with_context(|| format!("running {} --list", bb.display()))?;
        if !out.status.success() {
            bail!("{} --list failed: is it busybox?", bb.display());
        }
        for applet in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty() && *l != "busybox") {
            if applet.contains('/') {
                continue;
            }
            entries.entry(format!("bin/{applet}")).or_insert_with(|| Entry::Symlink("busybox".to_string()));
        }
    }
    for spec in &a.add {
        let (host, image) = spec.split_once('=').with_context(|| format!("--add {spec:?}: expected HOST_PATH=IMAGE_PATH"))?;
        add_file(&mut entries, Path::new(host), image)?;
    }
    let mut env = a.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    }
    if let Some(bad) = env.iter().find(|e| !e.contains('=')) {
        bail!("--env {bad:?}: expected NAME=VALUE");
    }
    let layer = layer_tar(&entries)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": (!a.entrypoint.is_empty()).then_some(&a.entrypoint),
            "Cmd": (!a.cmd.is_empty()).then_some(&a.cmd),
            "WorkingDir": a.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "daas dev oci-image"}],
    }))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": format!("{name}:{tag}"),
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    let mut archive: BTreeMap<String, Entry> = BTreeMap::new();
    archive.insert("blobs".into(), Entry::Dir);
    archive.insert("blobs/sha256".into(), Entry::Dir);
    for (digest, data) in [(&layer_digest, layer), (&config_digest, config), (&manifest_digest, manifest)] {
        archive.insert(format!("blobs/sha256/{}", &digest["sha256:".len()..]), Entry::File { data, mode: 0o644 });
    }
    archive.insert("oci-layout".into(), Entry::File { data: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(), mode: 0o644 });
    archive.insert("index.json".into(), Entry::File { data: index, mode: 0o644 });
    let tar = layer_tar(&archive)?;
    std::fs::write(&a.out, &tar).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{name}:{tag} {manifest_digest} {}", a.out.display());
    Ok(())
}

/// `name[:tag]` → (fully qualified name, tag); the tag defaults to `latest`, and a name
/// without a registry is Docker Hub's, as CRI normalizes it (`busybox` →
/// `docker.io/library/busybox`), so that a pod naming `busybox:1` finds the import. Digests
/// are not accepted: the archive makes its own.
fn split_reference(r: &str) -> anyhow::Result<(String, String)> {
    let (name, tag) = split_tag(r)?;
    let first = name.split('/').next().unwrap_or("");
    let qualified = if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    Ok((qualified, tag))
}

fn split_tag(r: &str) -> anyhow::Result<(String, String)> {
    if r.is_empty() || r.contains('@') || r.chars().any(char::is_whitespace) {
        bail!("--ref {r:?}: expected NAME[:TAG], e.g. k3s-daas.local/busybox:1");
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    match last.rsplit_once(':') {
        Some((_, "")) => bail!("--ref {r:?}: empty tag"),
        Some((_, tag)) => Ok((r[..r.len() - tag.len() - 1].to_string(), tag.to_string())),
        None => Ok((r.to_string(), "latest".to_string())),
    }
}

fn add_file(entries: &mut BTreeMap<String, Entry>, host: &Path, image: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let rel = image.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("{image:?} is not a clean absolute path in the image");
    }
    let meta = std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", host.display());
    }
    let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    let mut parent = String::new();
    for c in rel.split('/').take(rel.split('/').count() - 1) {
        if !parent.is_empty() {
            parent.push('/');
        }
        parent.push_str(c);
        entries.entry(parent.clone()).or_insert(Entry::Dir);
    }
    entries.insert(rel.to_string(), Entry::File { data, mode: meta.permissions().mode() & 0o7777 });
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The architecture as OCI (Go) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A POSIX ustar archive of `entries` (sorted, so parents come before children). Refuses
/// names and link targets ustar cannot hold rather than cutting them short.
fn layer_tar(entries: &BTreeMap<String, Entry>) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (path, entry) in entries {
        let (kind, mode, size, link, data): (u8, u32, usize, &str, &[u8]) = match entry {
            Entry::Dir => (b'5', 0o755, 0, "", &[]),
            Entry::DirMode(mode) => (b'5', *mode, 0, "", &[]),
            Entry::File { data, mode } => (b'0', *mode, data.len(), "", data),
            Entry::Symlink(target) => (b'2', 0o777, 0, target.as_str(), &[]),
        };
        let name = if kind == b'5' { format!("{path}/") } else { path.clone() };
        if link.len() > 100 {
            bail!("the link target of {path} is longer than ustar's 100 bytes");
        }
        let Some((prefix, short)) = split_ustar_name(&name) else {
            bail!("{path} is too long for a ustar name (100 bytes, or a 155-byte directory prefix and 100 bytes)");
        };
        out.extend_from_slice(&ustar_header(prefix, short, kind, mode, size, link));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

fn ustar_header(prefix: &str, name: &str, kind: u8, mode: u32, size: usize, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    put(&mut h[0..100], name.as_bytes());
    put(&mut h[100..108], format!("{mode:07o}").as_bytes());
    put(&mut h[108..116], b"0000000");
    put(&mut h[116..124], b"0000000");
    put(&mut h[124..136], format!("{size:011o}").as_bytes());
    put(&mut h[136..148], b"00000000000");
    h[156] = kind;
    put(&mut h[157..257], link.as_bytes());
    put(&mut h[257..263], b"ustar\0");
    put(&mut h[263..265], b"00");
    put(&mut h[265..297], b"root");
    put(&mut h[297..329], b"root");
    put(&mut h[345..500], prefix.as_bytes());
    // The checksum is computed with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
    h
}

/// (prefix, name): names longer than 100 bytes go into ustar's 155-byte prefix, split at a
/// `/`; `None` when no split fits.
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // A directory's trailing `/` stays with its name.
    let body = name.strip_suffix('/').unwrap_or(name);
    let cut = body[..body.len().min(156)].rfind('/').filter(|&i| i <= 155 && name.len() - i - 1 <= 100)?;
    Some((&name[..cut], &name[cut + 1..]))
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(split_reference("k3s-daas.local/busybox:1").unwrap(), ("k3s-daas.local/busybox".into(), "1".into()));
        assert_eq!(split_reference("localhost:5000/pause").unwrap(), ("localhost:5000/pause".into(), "latest".into()));
        assert_eq!(split_reference("busybox:1").unwrap(), ("docker.io/library/busybox".into(), "1".into()));
        assert_eq!(split_reference("me/app").unwrap(), ("docker.io/me/app".into(), "latest".into()));
        assert!(split_reference("busybox@sha256:00").is_err());
        assert!(split_reference("busybox:").is_err());
    }

    #[test]
    fn tar_headers_carry_checksums_python_accepts() {
        let mut entries = BTreeMap::new();
        entries.insert("bin".to_string(), Entry::Dir);
        entries.insert("bin/hello".to_string(), Entry::File { data: b"hi\n".to_vec(), mode: 0o755 });
        entries.insert("bin/sh".to_string(), Entry::Symlink("hello".to_string()));
        let tar = layer_tar(&entries).unwrap();
        assert_eq!(tar.len() % 512, 0);
        // Checked by an independent reader: Python's tarfile.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar");
        std::fs::write(&path, &tar).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys,tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name, m.type.decode(), oct(m.mode), m.size, m.linkname)",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin 5 0o755 0 \nbin/hello 0 0o755 3 \nbin/sh 2 0o777 0 hello\n");
    }

    #[test]
    fn long_names_use_the_prefix_or_are_refused() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(split_ustar_name(&long), Some((&long[..120], &long[121..])));
        assert_eq!(split_ustar_name(&"x".repeat(101)), None);
        let mut entries = BTreeMap::new();
        entries.insert("y".repeat(101), Entry::Symlink("z".into()));
        assert!(layer_tar(&entries).unwrap_err().to_string().contains("too long"));
    }
}
