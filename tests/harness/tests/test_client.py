"""Conformance: the official `kubernetes` client (and raw HTTP where the client has no call for it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kube_api_emulator import KubeApiEmulator
from kube_api_emulator.testing import wait_for

DATA = Path(__file__).parent / "data"
G, V, P = "test.example.com", "v1", "widgets"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiEmulator]:
    kc = tmp_path_factory.mktemp("client") / "kubeconfig"
    with KubeApiEmulator.in_thread(crds=[DATA / "widgets-crd.yaml"], kubeconfig=kc) as e:
        yield e


@pytest.fixture(scope="module")
def api(emu: KubeApiEmulator) -> Iterator[client.ApiClient]:
    assert emu.kubeconfig is not None
    c = config.new_client_from_config(str(emu.kubeconfig))
    yield c
    c.close()


@pytest.fixture(scope="module")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def co(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def http(
    emu: KubeApiEmulator,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    accept: str = "application/json",
) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        emu.url + path, data=data, method=method, headers={"Content-Type": content_type, "Accept": accept}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (raw.decode() if "watch=" in path else json.loads(raw)), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def status_of(e: ApiException) -> dict[str, Any]:
    return json.loads(e.body)


def widget(name: str, size: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "Widget",
        "metadata": {"name": name, **extra},
        "spec": {"size": size},
    }


def test_metadata_semantics(core: client.CoreV1Api) -> None:
    a = core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "gen-"}, "data": {"k": "v"}}
    )
    assert a.metadata.name.startswith("gen-") and len(a.metadata.name) == 9
    assert a.metadata.uid and a.metadata.creation_timestamp
    b = core.create_namespaced_secret("default", {"metadata": {"name": "s1"}, "stringData": {"p": "x"}})
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)  # cluster-wide counter
    assert b.data == {"p": "eA=="} and b.type == "Opaque"
    lst = core.list_namespaced_config_map("default")
    assert lst.kind == "ConfigMapList" and lst.api_version == "v1"
    assert int(lst.metadata.resource_version) >= int(b.metadata.resource_version)


def test_errors_have_status_shape(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    st = status_of(e.value)
    assert (e.value.status, st["kind"], st["reason"], st["code"]) == (409, "Status", "AlreadyExists", 409)
    assert st["details"] == {"name": "dup", "group": "", "kind": "configmaps"}
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("nope", "default")
    assert e.value.status == 404 and status_of(e.value)["message"] == 'configmaps "nope" not found'
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    assert e.value.status == 404 and 'namespaces "no-such-ns" not found' in status_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    assert e.value.status == 422 and status_of(e.value)["details"]["causes"][0]["field"] == "metadata.name"


def test_update_conflict_and_generation(co: client.CustomObjectsApi) -> None:
    w = co.create_namespaced_custom_object(G, V, "default", P, widget("gen"))
    assert w["metadata"]["generation"] == 1 and w["spec"]["color"] == "red"
    w["spec"]["size"] = 2
    w2 = co.replace_namespaced_custom_object(G, V, "default", P, "gen", w)
    assert w2["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        co.replace_namespaced_custom_object(G, V, "default", P, "gen", w)  # stale resourceVersion
    assert e.value.status == 409 and status_of(e.value)["reason"] == "Conflict"
    w3 = co.patch_namespaced_custom_object(G, V, "default", P, "gen", {"metadata": {"labels": {"a": "b"}}})
    assert w3["metadata"]["generation"] == 2
    w4 = co.patch_namespaced_custom_object_status(G, V, "default", P, "gen", {"status": {"phase": "Up"}})
    assert w4["metadata"]["generation"] == 2 and w4["status"] == {"phase": "Up"}
    same = co.patch_namespaced_custom_object(G, V, "default", P, "gen", {"metadata": {"labels": {"a": "b"}}})
    assert same["metadata"]["resourceVersion"] == w4["metadata"]["resourceVersion"]  # no-op writes nothing


def test_json_patch_test_failure_is_422(emu: KubeApiEmulator, co: client.CustomObjectsApi) -> None:
    w = co.create_namespaced_custom_object(G, V, "default", P, widget("jp"))
    rv = w["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    code, body, _ = http(
        emu, "PATCH", f"/apis/{G}/{V}/namespaces/default/{P}/jp", ops, "application/json-patch+json"
    )
    assert code == 422 and body["kind"] == "Status"
    ops[0]["value"] = rv
    code, body, _ = http(
        emu, "PATCH", f"/apis/{G}/{V}/namespaces/default/{P}/jp", ops, "application/json-patch+json"
    )
    assert code == 200 and body["metadata"]["finalizers"] == ["x/y"]


def test_schema_validation_defaults_and_pruning(emu: KubeApiEmulator, co: client.CustomObjectsApi) -> None:
    bad = widget("bad", size="big")  # type: ignore[arg-type]
    bad["spec"]["items"] = [{"value": "x"}, {"name": "a"}, {"name": "a"}]
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(G, V, "default", P, bad)
    st = status_of(e.value)
    assert st["reason"] == "Invalid" and st["code"] == 422
    fields = {c["field"]: c for c in st["details"]["causes"]}
    assert fields["spec.size"]["reason"] == "FieldValueTypeInvalid"
    assert fields["spec.items[0].name"]["reason"] == "FieldValueRequired"
    assert fields["spec.items[2]"]["reason"] == "FieldValueDuplicate"
    assert st["message"].startswith('Widget.test.example.com "bad" is invalid: [')
    ok = widget("good")
    ok["spec"].update(
        {
            "port": "http",
            "note": None,
            "extra": {"any": {"thing": 1}},
            "tags": {"a": "b"},
            "items": [{"name": "a"}],
            "unknown": 1,
        }
    )
    ok["status"] = {"phase": "ignored on create"}
    code, body, headers = http(emu, "POST", f"/apis/{G}/{V}/namespaces/default/{P}", ok)
    assert code == 201
    assert body["spec"]["items"] == [{"name": "a", "value": "v"}]  # default inside a list item
    assert body["spec"]["note"] is None and body["spec"]["extra"] == {"any": {"thing": 1}}
    assert "unknown" not in body["spec"] and "status" not in body
    assert 'unknown field \\"spec.unknown\\"' in headers.get("Warning", "") or "spec.unknown" in headers.get(
        "Warning", ""
    )
    code, body, _ = http(
        emu,
        "POST",
        f"/apis/{G}/{V}/namespaces/default/{P}?fieldValidation=Strict",
        {**ok, "metadata": {"name": "strict"}},
    )
    assert code == 400 and 'unknown field "spec.unknown"' in body["message"]
    port = widget("port")
    port["spec"]["port"] = 8080
    assert co.create_namespaced_custom_object(G, V, "default", P, port)["spec"]["port"] == 8080
    port2 = widget("port2")
    port2["spec"]["port"] = [1]
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(G, V, "default", P, port2)
    assert status_of(e.value)["details"]["causes"][0]["field"] == "spec.port"


def test_selectors_and_pagination(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map(
            "default",
            {
                "metadata": {
                    "name": f"sel-{i}",
                    "labels": {
                        "app": "sel",
                        "tier": ["a", "b", "c"][i % 3],
                        **({"extra": "1"} if i == 0 else {}),
                    },
                }
            },
        )

    def names(**kw: Any) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map("default", **kw).items]

    assert names(label_selector="app=sel,tier==a") == ["sel-0", "sel-3"]
    assert names(label_selector="app=sel,tier!=a") == ["sel-1", "sel-2", "sel-4"]
    assert names(label_selector="app=sel,tier in (b, c)") == ["sel-1", "sel-2", "sel-4"]
    assert names(label_selector="app=sel,tier notin (b,c)") == ["sel-0", "sel-3"]
    assert names(label_selector="app=sel,extra") == ["sel-0"]
    assert names(label_selector="app=sel,!extra") == ["sel-1", "sel-2", "sel-3", "sel-4"]
    assert names(field_selector="metadata.name=sel-2") == ["sel-2"]
    assert names(
        label_selector="app=sel", field_selector="metadata.namespace=default,metadata.name!=sel-2"
    ) == ["sel-0", "sel-1", "sel-3", "sel-4"]
    with pytest.raises(ApiException) as e:
        names(field_selector="spec.bogus=1")
    assert e.value.status == 400
    got, token = [], None
    while True:
        page = core.list_namespaced_config_map("default", label_selector="app=sel", limit=2, _continue=token)
        got += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert got == [f"sel-{i}" for i in range(5)]
    core.create_node({"metadata": {"name": "n1"}, "spec": {"providerID": "azure:///x/1"}})
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "p-on-n1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        },
    )
    assert [n.metadata.name for n in core.list_node(field_selector="spec.providerID=azure:///x/1").items] == [
        "n1"
    ]
    assert [
        p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1").items
    ] == ["p-on-n1"]


def test_watch_from_resource_version(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "w-a", "labels": {"w": "1"}}})
    core.patch_namespaced_config_map("w-a", "default", {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w-a", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "w-other"}})
    events = [
        (ev["type"], ev["object"].metadata.name)
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="w=1",
            resource_version=start,
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "w-a"), ("MODIFIED", "w-a"), ("DELETED", "w-a")]


def test_watch_too_old_is_gone(tmp_path: Path) -> None:
    with KubeApiEmulator.in_thread(history_limit=3, kubeconfig=tmp_path / "kc") as small:
        c = config.new_client_from_config(str(tmp_path / "kc"))
        core = client.CoreV1Api(c)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"o{i}"}})
        with pytest.raises(ApiException) as e:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
                )
            )
        assert e.value.status == 410
        _, body, _ = http(small, "GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}")
        first = json.loads(body.splitlines()[0])
        assert (
            first["type"] == "ERROR"
            and first["object"]["code"] == 410
            and first["object"]["reason"] == "Expired"
        )
        c.close()


def test_watch_list_initial_events_and_bookmark(emu: KubeApiEmulator, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "wl", "labels": {"wl": "1"}}})
    q = (
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        "&timeoutSeconds=1&labelSelector=wl%3D1"
    )
    _, body, _ = http(emu, "GET", f"/api/v1/namespaces/default/configmaps?{q}")
    evs = [json.loads(line) for line in body.splitlines()]
    assert [e["type"] for e in evs] == ["ADDED", "BOOKMARK"]
    assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_strategic_merge_patch_builtins(core: client.CoreV1Api, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    dep = {
        "metadata": {"name": "d", "finalizers": ["a/one"]},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "main:1", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "side:1"},
                    ]
                },
            },
        },
    }
    apps.create_namespaced_deployment("default", dep)
    patch = {
        "metadata": {"finalizers": ["b/two"]},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "main", "image": "main:2", "env": [{"name": "B", "value": "2"}]}]
                }
            }
        },
    }
    got = apps.patch_namespaced_deployment("d", "default", patch)  # the client sends strategic merge
    cs = {c.name: c for c in got.spec.template.spec.containers}
    assert cs["main"].image == "main:2" and cs["side"].image == "side:1"
    assert [e.name for e in cs["main"].env] == ["A", "B"]
    assert got.metadata.finalizers == ["a/one", "b/two"]
    got = apps.patch_namespaced_deployment(
        "d",
        "default",
        {
            "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one"]},
        },
    )
    assert [c.name for c in got.spec.template.spec.containers] == ["main"]
    assert got.metadata.finalizers == ["b/two"]


def test_server_side_apply(emu: KubeApiEmulator) -> None:
    path = "/api/v1/namespaces/default/configmaps/ssa1?fieldManager=tester"
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa1\ndata:\n  a: '1'\n  b: '2'\n"
    code, body, _ = http(emu, "PATCH", path, doc.encode(), "application/apply-patch+yaml")
    assert code == 201 and body["data"] == {"a": "1", "b": "2"}
    assert body["metadata"]["managedFields"][0]["manager"] == "tester"
    code, body, _ = http(
        emu,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa1",
        {"data": {"c": "3"}},
        "application/merge-patch+json",
    )
    code, body, _ = http(
        emu, "PATCH", path, doc.replace("  b: '2'\n", "").encode(), "application/apply-patch+yaml"
    )
    assert code == 200 and body["data"] == {"a": "1", "c": "3"}  # b dropped by its manager; c kept
    code, body, _ = http(
        emu,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa1",
        doc.encode(),
        "application/apply-patch+yaml",
    )
    assert code == 422 and "fieldManager" in body["message"]


def test_status_subresource_isolation(co: client.CustomObjectsApi) -> None:
    co.create_namespaced_custom_object(G, V, "default", P, widget("st"))
    w = co.patch_namespaced_custom_object_status(
        G, V, "default", P, "st", {"status": {"phase": "A"}, "spec": {"size": 9}}
    )
    assert w["spec"]["size"] == 1 and w["status"]["phase"] == "A"
    w = co.patch_namespaced_custom_object(
        G, V, "default", P, "st", {"status": {"phase": "B"}, "spec": {"size": 2}}
    )
    assert w["spec"]["size"] == 2 and w["status"]["phase"] == "A"


def test_garbage_collection(core: client.CoreV1Api) -> None:
    def owned(name: str, owner: Any, finalizers: list[str] | None = None) -> None:
        core.create_namespaced_config_map(
            "default",
            {
                "metadata": {
                    "name": name,
                    "finalizers": finalizers or [],
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": owner.metadata.name,
                            "uid": owner.metadata.uid,
                            "blockOwnerDeletion": True,
                        }
                    ],
                }
            },
        )

    def exists(name: str) -> bool:
        try:
            core.read_namespaced_config_map(name, "default")
        except ApiException as e:
            assert e.status == 404
            return False
        return True

    bg = core.create_namespaced_config_map("default", {"metadata": {"name": "gc-bg"}})
    owned("gc-bg-child", bg)
    core.delete_namespaced_config_map("gc-bg", "default")
    wait_for(lambda: not exists("gc-bg-child"), what="background GC")

    orphan = core.create_namespaced_config_map("default", {"metadata": {"name": "gc-or"}})
    owned("gc-or-child", orphan)
    core.delete_namespaced_config_map("gc-or", "default", propagation_policy="Orphan")
    wait_for(lambda: not exists("gc-or"), what="orphaning owner gone")
    assert not core.read_namespaced_config_map("gc-or-child", "default").metadata.owner_references

    fg = core.create_namespaced_config_map("default", {"metadata": {"name": "gc-fg"}})
    owned("gc-fg-child", fg, finalizers=["test/hold"])
    core.delete_namespaced_config_map("gc-fg", "default", propagation_policy="Foreground")
    owner = core.read_namespaced_config_map("gc-fg", "default")
    assert owner.metadata.deletion_timestamp and "foregroundDeletion" in owner.metadata.finalizers
    assert core.read_namespaced_config_map("gc-fg-child", "default").metadata.deletion_timestamp
    core.patch_namespaced_config_map("gc-fg-child", "default", {"metadata": {"finalizers": None}})
    wait_for(lambda: not exists("gc-fg") and not exists("gc-fg-child"), what="foreground deletion")

    ghost = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="ghost", uid="00000000-dead-beef-0000-000000000000")
    )
    owned("gc-ghost-child", ghost)
    wait_for(lambda: not exists("gc-ghost-child"), what="GC of a dependent whose owner does not exist")


def test_namespace_deletion(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "held", "finalizers": ["t/hold"]}})
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert e.value.status == 403
    core.patch_namespaced_config_map(
        "held", "default" if False else "doomed", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as e:
        core.read_namespace("doomed")
    assert e.value.status == 404


def test_tables_and_media_types(emu: KubeApiEmulator, co: client.CustomObjectsApi) -> None:
    co.create_namespaced_custom_object(G, V, "default", P, widget("tbl", size=4))
    co.patch_namespaced_custom_object_status(
        G,
        V,
        "default",
        P,
        "tbl",
        {
            "status": {
                "phase": "Ready",
                "conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}],
            }
        },
    )
    code, body, _ = http(
        emu,
        "GET",
        f"/apis/{G}/{V}/namespaces/default/{P}/tbl",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    assert code == 200 and body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Size", "Phase", "Ready", "Age"]
    assert body["rows"][0]["cells"][:4] == ["tbl", 4, "Ready", "True"]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    code, body, _ = http(
        emu,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        b"\x6b\x38\x73\x00",
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert code == 415 and "application/vnd.kubernetes.protobuf" in body["message"]
    code, body, _ = http(emu, "GET", "/api/v1/namespaces", accept="application/vnd.kubernetes.protobuf")
    assert code == 406
    code, body, _ = http(emu, "GET", "/api/v1/namespaces/default/pods/x/log")
    assert code == 501 and "not implemented" in body["message"]


def test_discovery(emu: KubeApiEmulator) -> None:
    _, groups, _ = http(emu, "GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io", G} <= names
    _, res, _ = http(emu, "GET", f"/apis/{G}/{V}")
    by_name = {r["name"]: r for r in res["resources"]}
    assert by_name["widgets"]["kind"] == "Widget" and by_name["widgets"]["shortNames"] == ["wg"]
    assert by_name["widgets"]["categories"] == ["testing"] and by_name["widgets"]["namespaced"] is True
    assert "widgets/status" in by_name and "watch" in by_name["widgets"]["verbs"]
    _, core_res, _ = http(emu, "GET", "/api/v1")
    assert {"pods", "pods/status", "nodes", "services", "secrets", "events", "namespaces"} <= {
        r["name"] for r in core_res["resources"]
    }
    _, idx, _ = http(emu, "GET", "/openapi/v3")
    url = idx["paths"][f"apis/{G}/{V}"]["serverRelativeURL"]
    _, doc, _ = http(emu, "GET", url)
    assert any(
        s.get("x-kubernetes-group-version-kind") == [{"group": G, "version": V, "kind": "Widget"}]
        for s in doc["components"]["schemas"].values()
    )


def test_crd_deletion_removes_resources(
    emu: KubeApiEmulator, co: client.CustomObjectsApi, api: client.ApiClient
) -> None:
    ext = client.ApiextensionsV1Api(api)
    crd = ext.read_custom_resource_definition("widgets.test.example.com")
    assert {c.type: c.status for c in crd.status.conditions} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    import yaml

    doc = yaml.safe_load((DATA / "widgets-crd.yaml").read_text())
    doc["metadata"]["name"] = "gizmos.test.example.com"
    doc["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo"}
    ext.create_custom_resource_definition(doc)
    co.create_namespaced_custom_object(
        G,
        V,
        "default",
        "gizmos",
        {"apiVersion": f"{G}/{V}", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"size": 1}},
    )
    ext.delete_custom_resource_definition("gizmos.test.example.com")
    code, _, _ = http(emu, "GET", f"/apis/{G}/{V}/namespaces/default/gizmos/g")
    assert code == 404
    with pytest.raises(ApiException) as e:
        ext.create_custom_resource_definition({**doc, "metadata": {"name": "wrong.test.example.com"}})
    assert e.value.status == 422 and "metadata.name" in status_of(e.value)["message"]


def test_pod_spec_immutable_and_binding(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "imm"}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}}
    )
    p = core.patch_namespaced_pod(
        "imm", "default", {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}
    )
    assert p.spec.containers[0].image == "img:2"
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("imm", "default", {"spec": {"nodeName": "n1"}})
    assert e.value.status == 422 and "pod updates may not change fields" in status_of(e.value)["message"]
    core.create_namespaced_pod_binding(
        "imm",
        "default",
        {"metadata": {"name": "imm"}, "target": {"kind": "Node", "name": "n1"}},
        _preload_content=False,
    )
    assert core.read_namespaced_pod("imm", "default").spec.node_name == "n1"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod_binding(
            "imm",
            "default",
            {"metadata": {"name": "imm"}, "target": {"kind": "Node", "name": "n2"}},
            _preload_content=False,
        )
    assert e.value.status == 409


def test_create_with_resource_version_fails_like_real_server(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "rv", "resourceVersion": "5"}})
    assert e.value.status == 500 and "resourceVersion should not be set" in status_of(e.value)["message"]


def test_server_side_apply_conflicts(emu: KubeApiEmulator) -> None:
    base = "/api/v1/namespaces/default/configmaps/own1"
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own1\ndata:\n  x: '1'\n  y: '1'\n"
    code, _, _ = http(
        emu, "PATCH", base + "?fieldManager=alice", doc.encode(), "application/apply-patch+yaml"
    )
    assert code == 201
    code, _, _ = http(
        emu, "PATCH", base + "?fieldManager=bob", {"data": {"x": "2"}}, "application/merge-patch+json"
    )
    assert code == 200
    code, body, _ = http(
        emu, "PATCH", base + "?fieldManager=alice", doc.encode(), "application/apply-patch+yaml"
    )
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "bob" using v1: .data.x'
    assert body["details"]["causes"] == [
        {"type": "FieldManagerConflict", "message": 'conflict with "bob" using v1', "field": ".data.x"}
    ]
    # the same value is no conflict: carol co-owns y
    same = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own1\ndata:\n  y: '1'\n"
    code, _, _ = http(
        emu, "PATCH", base + "?fieldManager=carol", same.encode(), "application/apply-patch+yaml"
    )
    assert code == 200
    code, body, _ = http(
        emu, "PATCH", base + "?fieldManager=alice&force=true", doc.encode(), "application/apply-patch+yaml"
    )
    assert code == 200 and body["data"] == {"x": "1", "y": "1"}
    owners = {e["manager"]: e["fieldsV1"] for e in body["metadata"]["managedFields"]}
    assert owners["alice"] == {"f:data": {"f:x": {}, "f:y": {}}}
    assert "bob" not in owners and owners["carol"] == {"f:data": {"f:y": {}}}
    # alice stops applying y: it stays, carol still owns it; x goes
    only_nothing = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own1\ndata: {}\n"
    code, body, _ = http(
        emu, "PATCH", base + "?fieldManager=alice", only_nothing.encode(), "application/apply-patch+yaml"
    )
    assert code == 200 and body["data"] == {"y": "1"}
