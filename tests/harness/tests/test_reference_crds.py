"""The project's Workspace CRD and the upstream reference CRDs load, accept real manifests and reject
invalid objects with field paths."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_api_emulator import ApiError, KubeApiEmulator, WriteOptions

REFERENCE_FILES = [
    "kuberay-v1.7.0_ray.io_rayclusters.yaml",
    "kuberay-v1.7.0_ray.io_rayjobs.yaml",
    "kuberay-v1.7.0_ray.io_rayservices.yaml",
    "karpenter-v1.7.0_karpenter.sh_nodeclaims.yaml",
    "karpenter-v0.31.0_karpenter.sh_machines.yaml",
]


@pytest.fixture(scope="module")
def emu(reference_crds: Path, workspace_crd: Path) -> Iterator[KubeApiEmulator]:
    emu = KubeApiEmulator(crds=[workspace_crd, *(reference_crds / f for f in REFERENCE_FILES)])
    emu.load_crds(emu.crd_paths)  # no server needed: exercise the cluster directly
    yield emu


def create(emu: KubeApiEmulator, obj: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    c = emu.cluster
    group, _, version = obj["apiVersion"].rpartition("/")
    info = next(i for i in c.infos() if i.group == group and i.kind == obj["kind"])
    return c.create(
        info, version, ns if info.namespaced else "", copy.deepcopy(obj), WriteOptions(field_manager="t")
    )


def causes(emu: KubeApiEmulator, obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ApiError) as e:
        create(emu, obj)
    assert e.value.code == 422 and e.value.reason == "Invalid"
    return {c["field"]: c["message"] for c in e.value.details["causes"]}  # type: ignore[index]


def test_all_crds_served(emu: KubeApiEmulator) -> None:
    kinds = {(i.group, i.kind): i for i in emu.cluster.infos() if not i.builtin}
    assert set(kinds) == {
        ("kaito.sh", "Workspace"),
        ("ray.io", "RayCluster"),
        ("ray.io", "RayJob"),
        ("ray.io", "RayService"),
        ("karpenter.sh", "NodeClaim"),
        ("karpenter.sh", "Machine"),
    }
    assert kinds[("karpenter.sh", "NodeClaim")].namespaced is False
    assert kinds[("ray.io", "RayJob")].status_subresource


def test_kaito_example_workspaces_are_accepted(emu: KubeApiEmulator, reference_crds: Path) -> None:
    examples = sorted((reference_crds.parent / "kaito-examples").glob("*.yaml"))
    accepted = 0
    for f in examples:
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Workspace":
                doc["metadata"]["name"] = f"ex{accepted}"
                out = create(emu, doc)
                assert out["metadata"]["uid"]
                accepted += 1
    assert accepted >= 5


def test_workspace_invalid_rejected(emu: KubeApiEmulator) -> None:
    ws = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "bad-ws"},
        "resource": {"count": "two", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-3", "accessMode": "sideways"}},
    }
    got = causes(emu, ws)
    assert "resource.count" in got and "must be of type integer" in got["resource.count"]
    assert got["inference.preset.accessMode"].startswith('Unsupported value: "sideways"')


def test_nodeclaim_invalid_rejected(emu: KubeApiEmulator) -> None:
    nc = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "nc"},
        "spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "Sideways"}]},
    }
    got = causes(emu, nc)
    assert got["spec.nodeClassRef"] == "Required value"
    assert "spec.requirements[0].operator" in got
    ok = copy.deepcopy(nc)
    ok["spec"] = {
        "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
        "requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]}
        ],
        "resources": {"requests": {"storage": "120Gi"}},
    }
    out = create(emu, ok)
    assert out["spec"]["expireAfter"] == "720h"  # schema default


def test_machine_invalid_rejected(emu: KubeApiEmulator) -> None:
    m = {
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Machine",
        "metadata": {"name": "m"},
        "spec": {"machineTemplateRef": {"kind": "X"}, "requirements": [{"key": "a"}]},
    }
    got = causes(emu, m)
    assert got == {
        "spec.machineTemplateRef.name": "Required value",
        "spec.requirements[0].operator": "Required value",
    }


def test_ray_objects_invalid_rejected(emu: KubeApiEmulator) -> None:
    rc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "rc"},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"image": "ray"}]}}}
        },
    }
    assert causes(emu, rc) == {"spec.headGroupSpec.template.spec.containers[0].name": "Required value"}
    rs = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "rs"}, "spec": {}}
    assert causes(emu, rs) == {"spec.rayClusterConfig": "Required value"}
    rj = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "rj"},
        "spec": {"entrypoint": "python x.py", "shutdownAfterJobFinishes": "yes"},
    }
    assert "spec.shutdownAfterJobFinishes" in causes(emu, rj)
    rj["spec"]["shutdownAfterJobFinishes"] = True
    rj["spec"]["rayClusterSpec"] = rc["spec"]
    rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] = "head"
    assert create(emu, rj)["spec"]["entrypoint"] == "python x.py"


def test_cel_rules_of_reference_crds(emu: KubeApiEmulator) -> None:
    """NodeClaim's x-kubernetes-validations: requirement rules, restricted label domains, immutable spec."""
    base = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "cel"},
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []}],
        },
    }
    got = causes(emu, base)
    assert any("requirements with operator 'In' must have a value defined" in m for m in got.values()), got
    restricted = copy.deepcopy(base)
    restricted["spec"]["requirements"] = [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["x"]}
    ]
    got = causes(emu, restricted)
    assert got == {
        "spec.requirements[0].key": 'Invalid value: "string": label "kubernetes.io/hostname" is restricted'
    }
    ok = copy.deepcopy(base)
    ok["spec"]["requirements"][0]["values"] = ["Standard_NC6s_v3"]
    created = create(emu, ok)
    c = emu.cluster
    info = next(i for i in c.infos() if i.kind == "NodeClaim")
    changed = copy.deepcopy(created)
    changed["spec"]["requirements"][0]["values"] = ["Standard_NC12s_v3"]
    with pytest.raises(ApiError) as e:
        c.update(info, "v1", "", "cel", changed, None, WriteOptions(field_manager="t"))
    assert e.value.code == 422 and "spec is immutable" in e.value.message
    status = copy.deepcopy(created)
    status["status"] = {"providerID": "azure:///x"}
    assert c.update(info, "v1", "", "cel", status, "status", WriteOptions(field_manager="t"))["status"][
        "providerID"
    ]
