"""The Workspace CRD behind a Kubernetes API (the project's emulator) driven by the real kubectl:
every example applies with strict field validation, and `kubectl get workspace` shows Kaito's columns."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

kube_api_emulator = pytest.importorskip("kube_api_emulator")
testing = pytest.importorskip("kube_api_emulator.testing")

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
CRD = REPO / "charts/workspace-controller/crds/kaito.sh_workspaces.yaml"


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.Kubectl]:
    home = tmp_path_factory.mktemp("kubectl")
    with kube_api_emulator.KubeApiEmulator.in_thread(crds=[CRD], kubeconfig=home / "kubeconfig") as emu:
        yield testing.Kubectl(emu.kubeconfig, home)


def example_workspaces() -> list[dict]:
    files = sorted((SHARED / "reference/kaito-examples").glob("*.yaml")) + sorted(
        (REPO / "examples").rglob("*.yaml")
    )
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "Workspace"]
    # Several examples share a name; give each its own object.
    for i, d in enumerate(docs):
        d["metadata"]["name"] = f"{d['metadata']['name'][:50]}-{i}"
    return docs


def test_every_example_applies_strictly(kubectl, tmp_path):
    docs = example_workspaces()
    f = tmp_path / "all.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    kubectl.run("apply", "--validate=strict", "-f", str(f))
    listed = json.loads(kubectl.run("get", "workspaces", "-o", "json").stdout)["items"]
    assert len(listed) == len(docs)
    stored = {w["metadata"]["name"]: w for w in listed}
    for d in docs:
        w = stored[d["metadata"]["name"]]
        for section in ("resource", "inference", "tuning"):
            if section in d:
                expected = dict(d[section])
                if section == "resource":
                    expected.setdefault("count", 1)  # the CRD's default
                assert w[section] == expected


def test_unknown_fields_are_rejected_by_strict_validation(kubectl):
    doc = {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": "typo"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}, "adapter": []},
    }
    out = kubectl.run("apply", "--validate=strict", "-f", "-", input=json.dumps(doc), check=False)
    assert out.returncode != 0 and "adapter" in out.stderr


def test_printer_columns_and_short_names(kubectl):
    doc = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "tuning-demo"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"app": "demo"}}},
        "tuning": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "method": "qlora",
            "input": {"urls": ["https://example.com/d.parquet"]},
            "output": {"volumeSource": {"emptyDir": {}}},
        },
    }
    kubectl.run("apply", "-f", "-", input=json.dumps(doc))
    status = {
        "status": {
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": "Test",
                    "message": "",
                    "lastTransitionTime": "2026-11-28T20:00:00Z",
                }
                for t, s in (
                    ("ResourceReady", "True"),
                    ("JobStarted", "True"),
                    ("WorkspaceSucceeded", "Unknown"),
                )
            ],
            "state": "Running",
            "tuning": {"step": 120, "totalSteps": 500, "progress": "120/500 (24%)"},
        }
    }
    kubectl.run(
        "patch", "workspace", "tuning-demo", "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    table = kubectl.run("get", "wk", "tuning-demo").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "JOBSTARTED",
        "WORKSPACESUCCEEDED",
        "WORKSPACEREADY",
        "STATE",
        "AGE",
    ]
    # cut the row at the header's column starts (empty cells stay empty)
    starts = [table[0].index(h) for h in table[0].split()]
    cells = [table[1][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    row = dict(zip(table[0].split(), cells, strict=True))
    assert row["NAME"] == "tuning-demo" and row["INSTANCE"] == "Standard_NC6s_v3"
    assert (row["RESOURCEREADY"], row["INFERENCEREADY"], row["JOBSTARTED"]) == ("True", "", "True")
    assert (row["WORKSPACESUCCEEDED"], row["WORKSPACEREADY"], row["STATE"]) == ("Unknown", "", "Running")
    wide = kubectl.run("get", "wks", "tuning-demo", "-o", "wide").stdout
    assert "PROGRESS" in wide and "120/500 (24%)" in wide
    # v1alpha1 serves the same object
    alpha = json.loads(kubectl.run("get", "workspaces.v1alpha1.kaito.sh", "tuning-demo", "-o", "json").stdout)
    assert alpha["apiVersion"] == "kaito.sh/v1alpha1" and alpha["status"]["state"] == "Running"
