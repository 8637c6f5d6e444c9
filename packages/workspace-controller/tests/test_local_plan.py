"""Local mode planning: documents in, the operator's plan, localized to this machine's directories."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from kaito_workspace.api import parse_workspace
from kaito_workspace.local.documents import DocumentError, load_documents
from kaito_workspace.local.localize import LocalizeError, LocalMachine, localize
from kaito_workspace.planning import ClusterFacts
from kaito_workspace.planning.catalog import plan_with_catalog
from kaito_workspace.planning.templates import inference_config_for

ROOT = Path(__file__).resolve().parents[3]
LOCAL_TUNING = ROOT / "examples" / "local" / "tuning-smollm2.yaml"


def _plan(doc: dict, training_config: dict | None = None):
    ws, problems = parse_workspace(doc)
    assert ws is not None and not problems
    return plan_with_catalog(ws, facts=ClusterFacts(training_config=training_config))


def test_documents_split_by_kind_and_decode_secrets(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"}},
                {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}},
                {
                    "kind": "Secret",
                    "metadata": {"name": "push"},
                    "data": {".dockerconfigjson": base64.b64encode(b'{"auths": {}}').decode()},
                    "stringData": {"token": "t0k"},
                },
                {"kind": "Service", "metadata": {"name": "svc"}},
            ]
        )
    )
    docs = load_documents([path])
    assert docs.workspace()["metadata"]["name"] == "w"
    assert docs.config_maps == {"cfg": {"a": "b"}}
    assert docs.secrets["push"] == {".dockerconfigjson": '{"auths": {}}', "token": "t0k"}
    assert docs.skipped == ["Service/svc"]


def test_documents_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(DocumentError, match=r"bad.yaml document 1: not a Kubernetes object"):
        load_documents([path])
    path.write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(DocumentError, match="exactly one Workspace"):
        load_documents([path]).workspace()


def test_local_tuning_example_maps_volumes_to_directories(tmp_path: Path) -> None:
    docs = load_documents([LOCAL_TUNING])
    doc = docs.workspace()
    training = yaml.safe_load(docs.config_maps["smollm2-qlora-config"]["training_config.yaml"])
    plan = _plan(doc, training["training_config"])
    machine = LocalMachine(work_dir=tmp_path / "work", base_dir=LOCAL_TUNING.parent)
    steps = localize(plan, machine)

    assert steps.tune is not None and steps.serve is not None
    # The operator's config, with container paths swapped for local ones.
    assert steps.tune["input"] == {"path": str((LOCAL_TUNING.parent / "data").resolve())}
    output_dir = tmp_path / "work" / "volumes" / "tuning-smollm2-output"
    assert steps.tune["output"] == {"path": str(output_dir.resolve())}
    assert output_dir.is_dir()
    assert steps.tune["progress_file"] == str(tmp_path / "work" / "progress.json")
    assert steps.tune["scaling"] == {"num_workers": 1, "use_gpu": False, "resources_per_worker": {"CPU": 1}}
    assert steps.tune["training_config"]["TrainingArguments"]["max_steps"] == 30
    # Serve-after-tuning: the adapter the tuning writes, on loopback.
    assert steps.serve["adapters"][0]["path"] == str(output_dir.resolve())
    assert steps.serve["http"] == {"host": "127.0.0.1", "port": 8000}
    assert steps.serve["deployment"]["num_replicas"] == 1
    assert "GPU" not in json.dumps(steps.serve["deployment"])


def test_local_gpus_scale_workers(tmp_path: Path) -> None:
    docs = load_documents([LOCAL_TUNING])
    plan = _plan(docs.workspace())
    steps = localize(plan, LocalMachine(work_dir=tmp_path, base_dir=LOCAL_TUNING.parent, gpus=2))
    assert steps.tune is not None
    assert steps.tune["scaling"] == {"num_workers": 2, "use_gpu": True, "resources_per_worker": {"GPU": 1}}


def test_input_claim_without_a_directory_says_how_to_fix(tmp_path: Path) -> None:
    doc = yaml.safe_load(LOCAL_TUNING.read_text().split("---")[0])
    doc["tuning"]["input"]["volumeSource"] = {"persistentVolumeClaim": {"claimName": "dataset"}}
    plan = _plan(doc)
    with pytest.raises(LocalizeError, match="--volume dataset=DIR"):
        localize(plan, LocalMachine(work_dir=tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    steps = localize(plan, LocalMachine(work_dir=tmp_path, volumes={"dataset": data}))
    assert steps.tune is not None and steps.tune["input"] == {"path": str(data.resolve())}


def test_push_secret_written_privately_and_never_in_the_config(tmp_path: Path) -> None:
    doc = yaml.safe_load(LOCAL_TUNING.read_text().split("---")[0])
    doc["tuning"]["output"] = {"image": "127.0.0.1:5000/adapters/x:1", "imagePushSecret": "push"}
    plan = _plan(doc)
    secret = '{"auths": {"127.0.0.1:5000": {"auth": "c2VjcmV0"}}}'
    machine = LocalMachine(work_dir=tmp_path, base_dir=LOCAL_TUNING.parent)
    with pytest.raises(LocalizeError, match="Secret 'push'"):
        localize(plan, machine)
    steps = localize(plan, machine, {"push": {".dockerconfigjson": secret}})
    assert steps.tune is not None
    auth_file = Path(steps.tune["registry_auth_file"])
    assert auth_file.read_text() == secret
    assert auth_file.stat().st_mode & 0o077 == 0
    assert "c2VjcmV0" not in json.dumps(steps.tune)


def test_local_run_applies_the_inference_config_generation_defaults(tmp_path: Path) -> None:
    workspace = yaml.safe_load((ROOT / "examples" / "local" / "inference-smollm2.yaml").read_text())
    workspace["inference"]["config"] = "gen"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "gen"},
        "data": {"inference_config.yaml": "generation:\n  max_new_tokens: 7\n"},
    }
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump_all([workspace, config_map]))
    docs = load_documents([path])
    ws, _ = parse_workspace(docs.workspace())
    assert ws is not None
    facts = ClusterFacts(inference_config=inference_config_for(ws, docs.config_maps))
    steps = localize(plan_with_catalog(ws, facts=facts), LocalMachine(work_dir=tmp_path))
    assert steps.serve is not None
    assert steps.serve["generation"]["max_new_tokens"] == 7
