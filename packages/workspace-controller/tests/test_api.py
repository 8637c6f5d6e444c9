"""The Workspace models parse every real Kaito manifest, keep what they read, report what they don't know."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kaito_workspace.api import (
    Problem,
    TuningProgress,
    Workspace,
    WorkspaceStatus,
    parse_workspace,
)

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
KAITO_EXAMPLES = SHARED / "reference" / "kaito-examples"


def workspace_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Workspace"]


def all_example_workspaces() -> list[tuple[str, dict]]:
    files = sorted(KAITO_EXAMPLES.glob("*.yaml")) + sorted((REPO / "examples").rglob("*.yaml"))
    return [(f"{f.parent.name}/{f.name}#{i}", d) for f in files for i, d in enumerate(workspace_docs(f))]


EXAMPLES = all_example_workspaces()


def test_reference_examples_are_there():
    assert len(list(KAITO_EXAMPLES.glob("*.yaml"))) >= 40
    assert len(EXAMPLES) >= 45


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_example_parses_and_round_trips(name, doc):
    ws, problems = parse_workspace(doc)
    assert problems == []
    assert ws is not None
    out = ws.to_dict()
    # What we write back is what we read (plus the defaulted node count).
    expected = yaml.safe_load(yaml.safe_dump(doc))
    expected.setdefault("resource", {}).setdefault("count", 1)
    assert out == expected


def test_v1alpha1_seed_example_keeps_its_version():
    ws, problems = parse_workspace(
        yaml.safe_load((REPO / "examples/fine-tuning/kaito_workspace_tuning_phi_3.yaml").read_text())
    )
    assert problems == [] and ws is not None
    assert ws.api_version == "kaito.sh/v1alpha1" and ws.version == "v1alpha1"
    assert ws.workload == "tuning"
    assert ws.tuning.method == "qlora"
    assert ws.tuning.preset.name == "phi-3-mini-128k-instruct"
    assert ws.resource.instance_type == "Standard_NC6s_v3"
    assert ws.resource.label_selector.match_labels == {"app": "tuning-phi-3"}
    assert ws.tuning.output.image_push_secret == "ACR_REGISTRY_SECRET_HERE"
    assert ws.namespace == "default"


def test_fields_are_typed():
    doc = workspace_docs(KAITO_EXAMPLES / "inference__kaito_workspace_phi_3_with_adapters.yaml")[0]
    ws = Workspace.from_dict(doc)
    assert ws.inference.adapters[0].source.image == "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"
    assert ws.inference.adapters[0].strength == "1.0"
    pvc = workspace_docs(KAITO_EXAMPLES / "fine-tuning__kaito_workspace_tuning_phi_3_with_pvc_volume.yaml")[0]
    ws = Workspace.from_dict(pvc)
    assert ws.tuning.input.volume_source == {"persistentVolumeClaim": {"claimName": "pvc-azurefile-input"}}
    acc = Workspace.from_dict(
        workspace_docs(KAITO_EXAMPLES / "inference__kaito_workspace_accelerator.yaml")[0]
    )
    assert acc.resource.partition.mode == "accelerator" and acc.resource.partition.count == 2
    assert acc.resource.instance_type is None
    assert acc.inference.preset.preset_options.model_access_secret == "hf-token"


def test_unknown_fields_are_reported_with_their_path():
    doc = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws", "lables": {"a": "b"}},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"a": "b"}},
            "cnt": 2,
        },
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct", "acessMode": "public"}, "adapter": []},
        "spec": {},
    }
    ws, problems = parse_workspace(doc)
    assert ws is not None
    paths = {p.path for p in problems}
    assert paths == {
        "metadata.lables",
        "resource.cnt",
        "inference.preset.acessMode",
        "inference.adapter",
        "spec",
    }
    hint = next(p.hint for p in problems if p.path == "inference.adapter")
    assert "adapters" in hint


def test_type_errors_are_problems_not_exceptions():
    doc = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws"},
        "resource": {"count": "2", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "x", "accessMode": "secret"}, "adapters": [{"strength": 0.5}]},
    }
    ws, problems = parse_workspace(doc)
    assert ws is None
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {"resource.count", "inference.preset.accessMode", "inference.adapters[0].strength"}
    assert "quote" in by_path["inference.adapters[0].strength"].hint


def test_required_fields_and_wrong_kind():
    ws, problems = parse_workspace({"apiVersion": "kaito.sh/v2", "kind": "Pod", "resource": {}})
    assert ws is None
    assert {p.path for p in problems} == {"apiVersion", "kind", "resource.labelSelector"}
    assert parse_workspace("not a mapping")[0] is None


def test_problem_str():
    assert str(Problem("a.b", "bad", "fix it")) == "a.b: bad (hint: fix it)"
    assert str(Problem("", "bad")) == "<document>: bad"


def test_status_with_tuning_progress_from_runtime_file():
    progress = {
        "state": "Running",
        "step": 120,
        "total_steps": 500,
        "epoch": 0.48,
        "loss": 1.234,
        "learning_rate": 0.0002,
        "tokens_per_second": 1800.5,
        "eta_seconds": 600,
        "updated_at": "2026-11-28T20:00:00Z",
        "message": None,
    }
    block = TuningProgress.from_progress_file(progress)
    assert block.progress == "120/500 (24%)"
    out = block.to_dict()
    assert out["totalSteps"] == 500 and out["tokensPerSecond"] == 1800.5 and out["etaSeconds"] == 600
    status = WorkspaceStatus.model_validate(
        {
            "conditions": [
                {
                    "type": "ResourceReady",
                    "status": "True",
                    "reason": "NodesReady",
                    "message": "",
                    "lastTransitionTime": "2026-11-28T20:00:00Z",
                }
            ],
            "workerNodes": ["n1"],
            "state": "Running",
            "tuning": out,
            "dashboardURL": "http://ws-head:8265",
        }
    )
    assert status.condition("ResourceReady").status == "True"
    assert status.condition("JobStarted") is None
    assert status.tuning.step == 120
    assert status.to_dict()["dashboardURL"] == "http://ws-head:8265"
    assert TuningProgress(state="Pending").summary() == "Pending"
