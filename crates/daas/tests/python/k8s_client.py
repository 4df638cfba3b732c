"""The official Python `kubernetes` client (PyPI) against `daas server`.

Usage: python3 k8s_client.py KUBECONFIG
Exits 0 when every check holds; otherwise prints what failed and exits 1.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "pyclient"


def expect_status(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected HTTP {code}, got {e.status}: {e.body}"
        return e
    raise AssertionError(f"expected HTTP {code}, the call succeeded")


# Namespaces and CRUD.
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="one", labels={"app": "py", "tier": "a"}), data={"k": "v"}))
assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
core.create_namespaced_config_map(ns, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="two", labels={"app": "py", "tier": "b"}), data={"k": "w"}))
got = core.read_namespaced_config_map("one", ns)
assert got.data == {"k": "v"}, got.data

# Selectors.
names = lambda items: sorted(i.metadata.name for i in items)
assert names(core.list_namespaced_config_map(ns, label_selector="app=py").items) == ["one", "two"]
assert names(core.list_namespaced_config_map(ns, label_selector="tier in (b, c)").items) == ["two"]
assert names(core.list_namespaced_config_map(ns, field_selector="metadata.name=one").items) == ["one"]
e = expect_status(400, core.list_namespaced_config_map, ns, field_selector="data.k=v")
assert "field label not supported" in e.body, e.body

# Paging.
page = core.list_namespaced_config_map(ns, limit=1)
assert len(page.items) == 1 and page.metadata._continue, page.metadata
rest = core.list_namespaced_config_map(ns, limit=1, _continue=page.metadata._continue)
assert names(page.items + rest.items) == ["one", "two"]

# Patch (strategic merge, the client's default for dicts) and optimistic concurrency.
core.patch_namespaced_config_map("one", ns, {"metadata": {"labels": {"patched": "yes"}}, "data": {"x": "y"}})
got = core.read_namespaced_config_map("one", ns)
assert got.metadata.labels["patched"] == "yes" and got.data == {"k": "v", "x": "y"}, got
stale = got
stale.metadata.resource_version = cm.metadata.resource_version
e = expect_status(409, core.replace_namespaced_config_map, "one", ns, stale)
assert "the object has been modified" in e.body, e.body
expect_status(404, core.read_namespaced_config_map, "nope", ns)
expect_status(409, core.create_namespaced_config_map, ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="one")))
expect_status(422, core.create_namespaced_config_map, ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))

# A Deployment through apps/v1, and its scale subresource.
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="python:3.12",
                                                                  command=["python3", "-m", "http.server"])]))))
made = apps.create_namespaced_deployment(ns, dep)
assert made.metadata.generation == 1 and made.spec.strategy.type == "RollingUpdate", made.spec.strategy
apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4

# Watch, resumed from a resourceVersion: sees exactly what happened after it.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="three")))
core.delete_namespaced_config_map("two", ns)
seen = []
w = watch.Watch()
for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
    seen.append((ev["type"], ev["object"].metadata.name))
    if len(seen) == 2:
        w.stop()
assert seen == [("ADDED", "three"), ("DELETED", "two")], seen

# A live watch sees a create made while it runs.
got_live = []
w2 = watch.Watch()
def live():
    for ev in w2.stream(core.list_namespaced_config_map, ns, label_selector="live=1", timeout_seconds=10):
        got_live.append((ev["type"], ev["object"].metadata.name))
        w2.stop()
t = threading.Thread(target=live)
t.start()
import time
time.sleep(0.5)
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="four", labels={"live": "1"})))
t.join(15)
assert got_live == [("ADDED", "four")], got_live

# Namespace deletion empties it.
core.delete_namespace(ns)
deadline = time.time() + 20
while time.time() < deadline:
    try:
        core.read_namespace(ns)
        time.sleep(0.2)
    except ApiException as e:
        assert e.status == 404
        break
else:
    raise AssertionError("the namespace was not removed")
print("python kubernetes client: all checks passed")
