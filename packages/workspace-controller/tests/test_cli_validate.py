"""`kaito-workspace validate -f FILE...`: output, exit codes, multi-document files, ConfigMaps, others."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaito_workspace.cli import build_parser, main
from kaito_workspace.commands.validate import validate_documents

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
KAITO_EXAMPLES = SHARED / "reference/kaito-examples"

VALID = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: ws-ok
resource:
  instanceType: Standard_NC24ads_A100_v4
  labelSelector:
    matchLabels: {app: ws}
inference:
  preset: {name: phi-3-mini-4k-instruct}
"""
INVALID = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: Bad_Name
resource:
  instanceType: Standard_NC6s_v3
  labelSelector:
    matchLabels: {app: ws}
tuning:
  preset: {name: phi-3-mini-4k-instruct}
  method: qlora
  config: params
  input:
    urls: ["http://169.254.169.254/latest"]
  output:
    image: myacr.azurecr.io/out:1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: params
data:
  training_config.yaml: |
    training_config:
      QuantizationConfig: {load_in_4bit: false}
---
apiVersion: v1
kind: Secret
metadata:
  name: hf-token
type: Opaque
"""


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_all_kaito_examples_are_valid(capsys):
    code, out = run_cli(capsys, "-f", str(KAITO_EXAMPLES))
    assert code == 0, out
    assert "INVALID" not in out
    assert (
        "SKIPPED  " in out and "Secret/hf-token" in out and "PersistentVolumeClaim/pvc-azurefile-input" in out
    )
    assert "ConfigMap/optimized-phi3-tuning" in out  # a training_config.yaml ConfigMap on its own is checked


def test_repo_examples_are_valid(capsys):
    code, out = run_cli(
        capsys,
        "-f",
        str(REPO / "examples/fine-tuning/kaito_workspace_tuning_phi_3.yaml"),
        str(REPO / "examples/inference"),
    )
    assert code == 0, out
    assert "VALID    " in out and "Workspace/workspace-tuning-phi-3" in out
    local = REPO / "examples/local"
    if local.is_dir():
        assert run_cli(capsys, "--local", "-f", str(local))[0] == 0


def test_invalid_file_prints_every_problem_and_exits_1(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(INVALID)
    code, out = run_cli(capsys, "-f", str(f))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("INVALID") and "Workspace/Bad_Name" in lines[0]
    for expected in (
        "  - metadata.name: workspace name 'Bad_Name' is not a valid DNS-1123 label",
        "  - tuning.input.urls[0]: URL 'http://169.254.169.254/latest' targets a link-local",
        "  - tuning.output.imagePushSecret: an output image needs imagePushSecret",
        "  - ConfigMap/params.data[training_config.yaml].training_config.QuantizationConfig: method qlora",
    ):
        assert any(line.startswith(expected) for line in lines), expected
    assert any(line.startswith("    hint: ") for line in lines)
    assert any(
        line.startswith("INVALID") and "ConfigMap/params (problems listed under Workspace/Bad_Name)" in line
        for line in lines
    )
    assert "SKIPPED" in out and "Secret/hf-token" in out
    assert lines[-1] == "2 checked, 2 invalid, 1 skipped"


def test_mixed_files_exit_1_if_any_is_invalid(tmp_path, capsys):
    (tmp_path / "ok.yaml").write_text(VALID)
    (tmp_path / "bad.yaml").write_text(INVALID)
    assert run_cli(capsys, "-f", str(tmp_path / "ok.yaml"))[0] == 0
    assert run_cli(capsys, "-f", str(tmp_path / "ok.yaml"), str(tmp_path / "bad.yaml"))[0] == 1
    assert run_cli(capsys, "-f", str(tmp_path / "ok.yaml"), "-f", str(tmp_path / "bad.yaml"))[0] == 1


def test_standalone_configmaps_are_checked(tmp_path, capsys):
    f = tmp_path / "cm.yaml"
    f.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n"
        "  inference_config.yaml: |\n    vllm:\n      gpu-memory-utilization: 2\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"
    )
    code, out = run_cli(capsys, "-f", str(f))
    assert code == 1
    assert "data[inference_config.yaml].vllm.gpu-memory-utilization" in out
    assert "ConfigMap/plain (no training/inference config in it)" in out


def test_unreadable_and_malformed_files(tmp_path, capsys):
    code, out = run_cli(capsys, "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read file" in out
    (tmp_path / "broken.yaml").write_text("kind: Workspace\n  metadata: [\n")
    code, out = run_cli(capsys, "-f", str(tmp_path / "broken.yaml"))
    assert code == 1 and "invalid YAML" in out


def test_local_switch_allows_loopback(tmp_path, capsys):
    f = tmp_path / "local.yaml"
    f.write_text(
        INVALID.split("---")[0]
        .replace("Bad_Name", "ws")
        .replace("169.254.169.254", "127.0.0.1:9000")
        .replace("  config: params\n", "")
        .replace("image: myacr.azurecr.io/out:1", "volumeSource: {emptyDir: {}}")
    )
    code, out = run_cli(capsys, "-f", str(f))
    assert code == 1 and "loopback" in out
    assert run_cli(capsys, "--local", "-f", str(f))[0] == 0


def test_json_output(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(INVALID)
    code, out = run_cli(capsys, "-o", "json", "-f", str(tmp_path / "bad.yaml"))
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    ws = report["results"][0]
    assert ws["kind"] == "Workspace" and ws["status"] == "invalid"
    assert any(
        p["path"] == "tuning.output.imagePushSecret" and p["message"] and p["hint"] for p in ws["problems"]
    )
    assert [r["status"] for r in report["results"]] == ["invalid", "invalid", "skipped"]


def test_stdin(capsys):
    results = validate_documents(["-"], stdin=io.StringIO(VALID))
    assert [(r.label, r.status) for r in results] == [("Workspace/ws-ok", "valid")]


def test_rich_output_on_a_terminal(tmp_path):
    """On a terminal the output is coloured by rich; the same problems are shown."""
    from kaito_workspace.commands import validate as cmd

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    (tmp_path / "bad.yaml").write_text(INVALID)
    out = Tty()
    cmd._print_rich(validate_documents([str(tmp_path / "bad.yaml")]), out)
    text = out.getvalue()
    assert "✗ invalid" in text and "tuning.output.imagePushSecret" in text and "hint:" in text


def test_parser_lists_subcommands_and_requires_files(capsys):
    parser = build_parser()
    assert "validate" in parser.format_help()
    with pytest.raises(SystemExit) as e:
        main(["validate"])
    assert e.value.code == 2


def test_console_script(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text(VALID)
    out = subprocess.run(
        [sys.executable, "-m", "kaito_workspace.cli", "validate", "-f", str(f)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "VALID" in out.stdout and "1 checked, 0 invalid, 0 skipped" in out.stdout
