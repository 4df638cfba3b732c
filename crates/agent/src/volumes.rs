//! Pod volumes for the process runtime, each a host directory: `emptyDir`, `configMap`,
//! `secret`, `downwardAPI` and `projected` (of those three) live under
//! `<pod dir>/volumes/<name>`; a `hostPath` is the host path itself. Start at
//! [`prepare_volumes`]; [`container_mounts`] turns a container's `volumeMounts` into
//! [`Mount`]s, which the runtime bind-mounts where it can (root) — otherwise a volume is only
//! at its host directory.
//!
//! Differences from the kubelet, on purpose or by necessity: secret files are mode 0400
//! unless `defaultMode`/`mode` says otherwise (the kubelet uses 0644); `emptyDir` with
//! `medium: Memory` is a plain directory; ConfigMap and Secret contents are written when the
//! pod starts and not refreshed while it runs (downward API files are refreshed when labels
//! or annotations change); `serviceAccountToken` and `clusterTrustBundle` projections are
//! skipped with a warning.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use crate::env::{self, ConfigError, Fetcher, PodContext};
use crate::runtime::Mount;

/// Default file modes, as octal permission bits.
const CONFIG_MAP_MODE: u32 = 0o644;
const SECRET_MODE: u32 = 0o400;
const DOWNWARD_MODE: u32 = 0o644;

/// Where a volume is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub host_path: PathBuf,
    /// ConfigMap, Secret, downward API and projected volumes are always mounted read-only.
    pub read_only: bool,
}

/// One file of a ConfigMap, Secret or downward API volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VolumeFile {
    path: PathBuf,
    data: Vec<u8>,
    mode: u32,
}

/// Sets up every volume of the pod under `dir` (the pod's `volumes` directory). Returns the
/// host path of each volume and warnings about what was skipped.
pub async fn prepare_volumes(
    ctx: &PodContext<'_>,
    dir: &Path,
    fetch: &mut Fetcher<'_>,
) -> Result<(BTreeMap<String, VolumeInfo>, Vec<String>), ConfigError> {
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    let volumes = ctx.pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        let info = prepare_one(ctx, v, dir, fetch, &mut warnings).await?;
        out.insert(v.name.clone(), info);
    }
    Ok((out, warnings))
}

async fn prepare_one(
    ctx: &PodContext<'_>,
    v: &Volume,
    dir: &Path,
    fetch: &mut Fetcher<'_>,
    warnings: &mut Vec<String>,
) -> Result<VolumeInfo, ConfigError> {
    let target = dir.join(safe_relative(&v.name)?);
    let io_err = |e: io::Error| ConfigError::Unsupported(format!("volume {:?}: {e}", v.name));
    if v.empty_dir.is_some() {
        fs::create_dir_all(&target).map_err(io_err)?;
        return Ok(VolumeInfo { host_path: target, read_only: false });
    }
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        check_host_path(&path, hp.type_.as_deref().unwrap_or(""))?;
        return Ok(VolumeInfo { host_path: path, read_only: false });
    }
    let files = if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.map_or(CONFIG_MAP_MODE, to_mode);
        config_map_files(fetch, &cm.name, cm.items.as_ref(), cm.optional == Some(true), mode).await?
    } else if let Some(s) = &v.secret {
        let mode = s.default_mode.map_or(SECRET_MODE, to_mode);
        let name = s.secret_name.as_deref().unwrap_or_default();
        secret_files(fetch, name, s.items.as_ref(), s.optional == Some(true), mode).await?
    } else if let Some(d) = &v.downward_api {
        downward_files(ctx, d.items.as_ref(), d.default_mode.map_or(DOWNWARD_MODE, to_mode))?
    } else if let Some(p) = &v.projected {
        let mut files = Vec::new();
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let mode = p.default_mode.map_or(CONFIG_MAP_MODE, to_mode);
                files.extend(config_map_files(fetch, &cm.name, cm.items.as_ref(), cm.optional == Some(true), mode).await?);
            }
            if let Some(s) = &source.secret {
                let mode = p.default_mode.map_or(SECRET_MODE, to_mode);
                files.extend(secret_files(fetch, &s.name, s.items.as_ref(), s.optional == Some(true), mode).await?);
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward_files(ctx, d.items.as_ref(), p.default_mode.map_or(DOWNWARD_MODE, to_mode))?);
            }
            if let Some(t) = &source.service_account_token {
                warnings.push(format!(
                    "volume {:?}: the serviceAccountToken projection ({}) is not written: the agent cannot request tokens",
                    v.name, t.path
                ));
            }
            if source.cluster_trust_bundle.is_some() {
                warnings.push(format!("volume {:?}: clusterTrustBundle projections are not supported", v.name));
            }
        }
        files
    } else {
        return Err(ConfigError::Unsupported(format!(
            "volume {:?}: the process runtime supports emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes only",
            v.name
        )));
    };
    write_files(&target, &files).map_err(io_err)?;
    Ok(VolumeInfo { host_path: target, read_only: true })
}

/// Where each volume is, without setting anything up: for a pod re-adopted after an agent
/// restart, whose volumes exist already.
pub fn volume_paths(pod: &Pod, dir: &Path) -> BTreeMap<String, VolumeInfo> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let info = match &v.host_path {
                Some(hp) => VolumeInfo { host_path: PathBuf::from(&hp.path), read_only: false },
                None => VolumeInfo { host_path: dir.join(safe_relative(&v.name).ok()?), read_only: v.empty_dir.is_none() },
            };
            Some((v.name.clone(), info))
        })
        .collect()
}

/// Rewrites the downward API files (plain and projected) after the pod's labels or
/// annotations changed.
pub fn refresh_downward_api(ctx: &PodContext<'_>, dir: &Path) -> Result<(), ConfigError> {
    let volumes = ctx.pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        let mut files = Vec::new();
        if let Some(d) = &v.downward_api {
            files.extend(downward_files(ctx, d.items.as_ref(), d.default_mode.map_or(DOWNWARD_MODE, to_mode))?);
        }
        if let Some(p) = &v.projected {
            for d in p.sources.iter().flatten().filter_map(|s| s.downward_api.as_ref()) {
                files.extend(downward_files(ctx, d.items.as_ref(), p.default_mode.map_or(DOWNWARD_MODE, to_mode))?);
            }
        }
        if !files.is_empty() {
            let target = dir.join(safe_relative(&v.name)?);
            write_files(&target, &files).map_err(|e| ConfigError::Unsupported(format!("volume {:?}: {e}", v.name)))?;
        }
    }
    Ok(())
}

/// The container's `volumeMounts` as host → container paths, `subPath` and
/// `subPathExpr` (expanded with the container's env) resolved.
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, VolumeInfo>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, ConfigError> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let info = volumes
            .get(&vm.name)
            .ok_or_else(|| ConfigError::Unsupported(format!("volumeMount {:?} names no volume of the pod", vm.name)))?;
        let sub = match (vm.sub_path.as_deref(), vm.sub_path_expr.as_deref()) {
            (Some(s), _) if !s.is_empty() => Some(s.to_string()),
            (_, Some(e)) if !e.is_empty() => Some(env::expand(e, |name| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))),
            _ => None,
        };
        let host_path = match sub {
            Some(s) => {
                let p = info.host_path.join(safe_relative(&s)?);
                // The kubelet creates a missing subPath as a directory.
                if !p.exists() && !info.read_only {
                    fs::create_dir_all(&p).map_err(|e| ConfigError::Unsupported(format!("subPath {s:?}: {e}")))?;
                }
                p
            }
            None => info.host_path.clone(),
        };
        mounts.push(Mount {
            host_path,
            container_path: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only == Some(true) || info.read_only,
        });
    }
    Ok(mounts)
}

async fn config_map_files(
    fetch: &mut Fetcher<'_>,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    mode: u32,
) -> Result<Vec<VolumeFile>, ConfigError> {
    let Some(cm) = fetch.config_map(name).await? else {
        return if optional { Ok(Vec::new()) } else { Err(ConfigError::Missing(format!("configmap {name:?} not found"))) };
    };
    let mut all: BTreeMap<String, Vec<u8>> = cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    all.extend(cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    project(&all, items, optional, mode, "configmap references non-existent config key")
}

async fn secret_files(
    fetch: &mut Fetcher<'_>,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    mode: u32,
) -> Result<Vec<VolumeFile>, ConfigError> {
    let Some(secret) = fetch.secret(name).await? else {
        return if optional { Ok(Vec::new()) } else { Err(ConfigError::Missing(format!("secret {name:?} not found"))) };
    };
    let all = env::secret_entries(secret);
    project(&all, items, optional, mode, "references non-existent secret key")
}

/// Keys to files: every key under its own name, or the listed `items` only.
fn project(
    all: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    mode: u32,
    missing: &str,
) -> Result<Vec<VolumeFile>, ConfigError> {
    let mut files = Vec::new();
    match items {
        None => {
            for (k, v) in all {
                files.push(VolumeFile { path: safe_relative(k)?, data: v.clone(), mode });
            }
        }
        Some(items) => {
            for item in items {
                match all.get(&item.key) {
                    Some(v) => {
                        files.push(VolumeFile { path: safe_relative(&item.path)?, data: v.clone(), mode: item.mode.map_or(mode, to_mode) })
                    }
                    None if optional => {}
                    None => return Err(ConfigError::Missing(format!("{missing}: {}", item.key))),
                }
            }
        }
    }
    Ok(files)
}

fn downward_files(ctx: &PodContext<'_>, items: Option<&Vec<DownwardAPIVolumeFile>>, mode: u32) -> Result<Vec<VolumeFile>, ConfigError> {
    let mut files = Vec::new();
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            env::field_value(ctx, &f.field_path).map_err(ConfigError::Unsupported)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = env::find_container(ctx.pod, name).ok_or_else(|| {
                ConfigError::Unsupported(format!("downward API file {:?} names an unknown container {name:?}", item.path))
            })?;
            crate::quantity::resource_field_value(c, &r.resource, r.divisor.as_ref(), ctx.node).map_err(ConfigError::Unsupported)?
        } else {
            String::new()
        };
        files.push(VolumeFile { path: safe_relative(&item.path)?, data: value.into_bytes(), mode: item.mode.map_or(mode, to_mode) });
    }
    Ok(files)
}

/// Writes each file atomically (a temporary file renamed over it) with its mode.
fn write_files(target: &Path, files: &[VolumeFile]) -> io::Result<()> {
    fs::create_dir_all(target)?;
    for f in files {
        let path = target.join(&f.path);
        let parent = path.parent().unwrap_or(target);
        fs::create_dir_all(parent)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".{name}.tmp"));
        fs::write(&tmp, &f.data)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(f.mode))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// What the `type` of a `hostPath` volume asks for.
fn check_host_path(path: &Path, kind: &str) -> Result<(), ConfigError> {
    let failed = |what: &str| ConfigError::Unsupported(format!("hostPath type check failed: {} is not a {what}", path.display()));
    let meta = fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                fs::create_dir_all(path).map_err(|e| ConfigError::Unsupported(format!("creating hostPath {}: {e}", path.display())))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| ConfigError::Unsupported(format!("creating hostPath {}: {e}", path.display())))?;
                return Ok(());
            }
            if meta.is_ok_and(|m| m.is_dir()) { Ok(()) } else { Err(failed("directory")) }
        }
        "Directory" => {
            if meta.is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                Err(failed("directory"))
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|_| fs::set_permissions(path, fs::Permissions::from_mode(0o644)))
                    .map_err(|e| ConfigError::Unsupported(format!("creating hostPath {}: {e}", path.display())))?;
                return Ok(());
            }
            if meta.is_ok_and(|m| m.is_file()) { Ok(()) } else { Err(failed("file")) }
        }
        "File" => {
            if meta.is_ok_and(|m| m.is_file()) {
                Ok(())
            } else {
                Err(failed("file"))
            }
        }
        "Socket" => {
            if meta.is_ok_and(|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                Err(failed("socket"))
            }
        }
        "CharDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                Err(failed("character device"))
            }
        }
        "BlockDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                Err(failed("block device"))
            }
        }
        other => Err(ConfigError::Unsupported(format!("unknown hostPath type {other:?}"))),
    }
}

fn to_mode(mode: i32) -> u32 {
    mode.unsigned_abs() & 0o777
}

/// A path that stays inside the directory it is joined to: relative, no `..`, no `.`.
pub fn safe_relative(p: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(p);
    if p.is_empty() || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ConfigError::Unsupported(format!("invalid path {p:?}: it must be relative and must not contain '..'")));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    use super::*;
    use crate::pods::Sources;
    use crate::quantity::NodeResources;

    struct Fixed;

    impl Sources for Fixed {
        fn config_map(&self, _ns: &str, name: &str) -> BoxFuture<'_, Result<Option<ConfigMap>, String>> {
            let found = (name == "cm")
                .then(|| serde_json::from_value(serde_json::json!({"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}})).unwrap());
            Box::pin(async move { Ok(found) })
        }

        fn secret(&self, _ns: &str, name: &str) -> BoxFuture<'_, Result<Option<Secret>, String>> {
            let found = (name == "s")
                .then(|| serde_json::from_value(serde_json::json!({"metadata": {"name": "s"}, "data": {"token": "c2VjcmV0"}})).unwrap());
            Box::pin(async move { Ok(found) })
        }
    }

    #[tokio::test]
    async fn writes_config_secret_and_downward_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/s", "subPath": "x"}]}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "b", "path": "sub/b.txt", "mode": 0o600}]}},
                    {"name": "sec", "secret": {"secretName": "s"}},
                    {"name": "opt", "configMap": {"name": "absent", "optional": true}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        let node = NodeResources { cpu_millis: 1000, memory_bytes: 1 << 30, ephemeral_storage_bytes: 0 };
        let ctx = PodContext { pod: &pod, node_name: "n", host_ip: "10.0.0.1", pod_ip: "10.0.0.1", node: &node };
        let sources: Arc<dyn Sources> = Arc::new(Fixed);
        let mut fetch = Fetcher::new(sources.as_ref(), "ns");
        let (vols, warnings) = prepare_volumes(&ctx, dir.path(), &mut fetch).await.unwrap();
        assert!(warnings.is_empty());
        let b = dir.path().join("cfg/sub/b.txt");
        assert_eq!(fs::read_to_string(&b).unwrap(), "2");
        assert_eq!(fs::metadata(&b).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("cfg/a").exists());
        let token = dir.path().join("sec/token");
        assert_eq!(fs::read_to_string(&token).unwrap(), "secret");
        assert_eq!(fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o400);
        assert_eq!(fs::read_to_string(dir.path().join("info/labels")).unwrap(), "app=\"web\"");
        assert!(vols["opt"].read_only && vols["opt"].host_path.is_dir());

        let c = &pod.spec.as_ref().unwrap().containers[0];
        let mounts = container_mounts(c, &vols, &[]).unwrap();
        assert_eq!(mounts[0].container_path, PathBuf::from("/etc/cfg"));
        assert!(mounts[0].read_only);
        assert_eq!(mounts[1].host_path, dir.path().join("scratch/x"));
        assert!(mounts[1].host_path.is_dir());

        // A missing, non-optional ConfigMap fails the setup.
        let mut bad = pod.clone();
        bad.spec.as_mut().unwrap().volumes.as_mut().unwrap()[2].config_map.as_mut().unwrap().optional = None;
        let ctx = PodContext { pod: &bad, ..ctx };
        let err = prepare_volumes(&ctx, dir.path(), &mut fetch).await.unwrap_err();
        assert_eq!(err, ConfigError::Missing("configmap \"absent\" not found".to_string()));
    }

    #[test]
    fn paths_must_stay_inside() {
        assert!(safe_relative("a/b").is_ok());
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("a/../../b").is_err());
        assert!(safe_relative("").is_err());
    }
}
