"""`kaito-workspace render`: every reference Kaito example renders into valid objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kaito_workspace.cli import main

SHARED = Path(os.environ.get("KAITO_SHARED_DIR", Path(__file__).resolve().parents[3].parent / "shared"))
EXAMPLES = sorted((SHARED / "reference" / "kaito-examples").glob("*.yaml"))
WORKSPACE_EXAMPLES = [p for p in EXAMPLES if "kind: Workspace" in p.read_text()]


def render(capsys, *argv: str) -> tuple[int, list[dict], str]:
    rc = main(["render", *argv])
    out, err = capsys.readouterr()
    return rc, [d for d in yaml.safe_load_all(out) if d], err


def test_examples_found() -> None:
    assert len(WORKSPACE_EXAMPLES) >= 20, f"reference examples not found under {SHARED}"


@pytest.mark.parametrize("path", WORKSPACE_EXAMPLES, ids=lambda p: p.stem)
def test_reference_examples_render(capsys, path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    ws = next(d for d in docs if d.get("kind") == "Workspace")
    byo = [] if ws["resource"].get("instanceType") else ["--byo-node", "gpu-node-1", "--byo-node-gpus", "1"]
    rc, objs, err = render(capsys, "-f", str(path), *byo)
    assert rc == 0, err
    kinds = [o["kind"] for o in objs]
    assert "Service" in kinds
    assert ("RayJob" in kinds) == ("tuning" in ws)
    assert ("NodeClaim" in kinds) == bool(ws["resource"].get("instanceType"))
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["metadata"]["name"] == ws["metadata"]["name"]


def test_quickstart_with_configmap_in_same_file(capsys, tmp_path: Path) -> None:
    cm = (
        SHARED / "reference" / "kaito-examples" / "fine-tuning__kaito_configmap_tuning_phi_3.yaml"
    ).read_text()
    ws = (
        SHARED / "reference" / "kaito-examples" / "fine-tuning__kaito_workspace_tuning_phi_3.yaml"
    ).read_text()
    doc = yaml.safe_load(ws)
    doc["tuning"]["config"] = "optimized-phi3-tuning"
    f = tmp_path / "ws.yaml"
    f.write_text(cm + "\n---\n" + yaml.safe_dump(doc))
    rc, objs, err = render(capsys, "-f", str(f))
    assert rc == 0, err
    cfgmap = next(o for o in objs if o["kind"] == "ConfigMap")
    tune = yaml.safe_load(cfgmap["data"]["tune.yaml"])
    assert tune["training_config"]["LoraConfig"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert tune["training_config"]["TrainingArguments"]["per_device_train_batch_size"] == 2


def test_invalid_workspace_is_reported(capsys, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: bad}\n"
        "resource: {instanceType: Standard_NC6s_v3, labelSelector: {matchLabels: {a: b}}}\n"
        "tuning: {preset: {name: phi-3-mini-128k-instruct}, method: dora,"
        " input: {urls: ['https://example.com/x']}, output: {volumeSource: {emptyDir: {}}}}\n"
    )
    rc, objs, err = render(capsys, "-f", str(f))
    assert rc == 1 and objs == []
    assert "tuning.method" in err


def test_byo_workspace_without_nodes_names_the_fix(capsys) -> None:
    path = SHARED / "reference" / "kaito-examples" / "inference__kaito_workspace_accelerator.yaml"
    rc, _, err = render(capsys, "-f", str(path))
    assert rc == 1
    assert "resource.instanceType" in err and "labelSelector" in err and "--byo-node" in err
