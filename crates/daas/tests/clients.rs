//! Client libraries other than kubectl against `daas server`: the official Python `kubernetes`
//! client (PyPI) and the Rust `kube` crate (client and runtime), each doing CRUD, selectors,
//! paging, conflicts and watches resumed from a resourceVersion.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Server;
use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

#[test]
fn python_kubernetes_client() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/k8s_client.py");
    let has_client = std::process::Command::new("python3").args(["-c", "import kubernetes"]).output().is_ok_and(|o| o.status.success());
    assert!(has_client, "the Python `kubernetes` package is missing: `pip install kubernetes` (scripts/test.sh installs it)");
    let s = Server::start_k8s(&[]);
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(s.kubeconfig());
    common::run_command(cmd, "python3 k8s_client.py", Duration::from_secs(120)).ok();
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>()},
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn names(items: &[ConfigMap]) -> Vec<String> {
    let mut n: Vec<String> = items.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_crate_client_and_runtime() {
    let s = Server::start_k8s(&[]);
    let kubeconfig = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(info.major, "1");

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let one = api.create(&PostParams::default(), &cm("one", &[("app", "kube"), ("tier", "a")])).await.unwrap();
    api.create(&PostParams::default(), &cm("two", &[("app", "kube"), ("tier", "b")])).await.unwrap();
    assert!(one.metadata.uid.is_some() && one.metadata.resource_version.is_some());

    // Selectors and paging.
    assert_eq!(names(&api.list(&ListParams::default().labels("app=kube")).await.unwrap().items), ["one", "two"]);
    assert_eq!(names(&api.list(&ListParams::default().labels("tier notin (a)")).await.unwrap().items), ["two"]);
    assert_eq!(names(&api.list(&ListParams::default().fields("metadata.name=two")).await.unwrap().items), ["two"]);
    let page = api.list(&ListParams::default().labels("app=kube").limit(1)).await.unwrap();
    let token = page.metadata.continue_.clone().unwrap();
    let rest = api.list(&ListParams::default().labels("app=kube").limit(1).continue_token(&token)).await.unwrap();
    assert_eq!(names(&[page.items, rest.items].concat()), ["one", "two"]);

    // Patch, then a replace carrying the old resourceVersion is a 409 Conflict.
    let patched = api.patch("one", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"x": "y"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap().get("x").map(String::as_str), Some("y"));
    match api.replace("one", &PostParams::default(), &one).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"), "{e:?}"),
        other => panic!("a stale replace was not refused: {other:?}"),
    }
    match api.get("missing").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (404, "NotFound")),
        other => panic!("{other:?}"),
    }

    // A watch resumed from a list's resourceVersion sees exactly what came after.
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("three", &[("app", "kube")])).await.unwrap();
    api.delete("two", &DeleteParams::default()).await.unwrap();
    let events: Vec<_> = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().take(2).try_collect().await.unwrap();
    let seen: Vec<(&str, String)> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => ("ADDED", o.metadata.name.clone().unwrap()),
            WatchEvent::Deleted(o) => ("DELETED", o.metadata.name.clone().unwrap()),
            other => ("OTHER", format!("{other:?}")),
        })
        .collect();
    assert_eq!(seen, [("ADDED", "three".to_string()), ("DELETED", "two".to_string())]);

    // The runtime's watcher (list, then watch with bookmarks) sees the initial state and a live change.
    let mut stream = watcher(api.clone(), watcher::Config::default().labels("app=kube")).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap() {
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => initial.push(o),
            watcher::Event::InitDone => break,
            other => panic!("unexpected before InitDone: {other:?}"),
        }
    }
    assert_eq!(names(&initial), ["one", "three"]);
    api.create(&PostParams::default(), &cm("four", &[("app", "kube")])).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap() {
        watcher::Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some("four")),
        other => panic!("expected the new configmap, got {other:?}"),
    }
}
