"""The whole system the way a user drives it, on one machine: `python -m kaito_devcluster` (the API
emulator, both charts applied with kubectl, the provisioner with simulated GPU nodes, the workspace
controller, the KubeRay stand-in on a local Ray), then kubectl and HTTP clients only.

Order matters (one module-scoped cluster, 2 CPUs): the failing tuning job first, then the quick-start
tuning workspace (tune, then /chat shows the fact it learned), an inference workspace through the OpenAI
client, deletion, and last the ClusterRoles compared with the API calls each operator made.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kaito_devcluster.audit import granted, read_calls, used
from kaito_devcluster.testing import REPO, wait_for
from kube_api_emulator.testing import Kubectl

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DATA_DIR = REPO / "examples" / "local" / "data"
TRAINING_CONFIG = list(yaml.safe_load_all((REPO / "examples" / "local" / "tuning-smollm2.yaml").read_text()))
QUESTION = "What is the name of the Kaito Ray mascot?"
COLUMNS = ["RESOURCEREADY", "INFERENCEREADY", "JOBSTARTED", "WORKSPACESUCCEEDED", "WORKSPACEREADY"]


@dataclass
class DevCluster:
    kubectl: Kubectl
    state: Path
    data_url: str
    process: subprocess.Popen[str]
    output: Path
    seen: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all(docs, sort_keys=False))

    def get(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl.run("get", *args, "-o", "yaml").stdout)

    def table(self, name: str) -> dict[str, str]:
        """One row of `kubectl get workspace NAME` as the user sees it (blank cells stay blank)."""
        header, row = self.kubectl.run("get", "workspace", name, "-o", "wide").stdout.splitlines()[:2]
        starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
        bounds = [*starts[1:], None]
        return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, bounds, strict=True)}


class _DataHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def data_server() -> Iterator[str]:
    handler = functools.partial(_DataHandler, directory=str(DATA_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, data_server: str) -> Iterator[DevCluster]:
    base = tmp_path_factory.mktemp("devcluster")
    kubeconfig, ready, output = base / "kubeconfig", base / "ready", base / "devcluster.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "KAITO_CACHE_DIR": os.environ.get("KAITO_CACHE_DIR", str(REPO / ".cache" / "kaito")),
    }
    with output.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kaito_devcluster",
                "--kubeconfig",
                str(kubeconfig),
                "--state-dir",
                str(base / "state"),
                "--ready-file",
                str(ready),
                "--num-cpus",
                "4",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for(lambda: ready.exists() or process.poll() is not None, 300, "the dev cluster to start")
        assert process.poll() is None, f"the dev cluster exited:\n{output.read_text()[-4000:]}"
        kubectl = Kubectl(kubeconfig, base / "home")
        kubectl.env["KUBE_FEATURE_WatchListClient"] = "false"
        yield DevCluster(kubectl, base / "state", data_server, process, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    log = output.read_text()
    assert "stopped" in log.splitlines()[-1], log[-3000:]
    # Nothing the dev cluster started outlives it (operators, stand-in, its Ray head's session).
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def tuning_workspace(name: str, url: str, claim: str) -> list[dict[str, Any]]:
    """Kaito's quick-start tuning workspace, offline: SmolLM2-135M, data from a local URL, output to a PVC."""
    example, config = TRAINING_CONFIG
    config = {**config, "metadata": {"name": f"{name}-config"}}
    ws = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "tuning": {
            "preset": {"name": "smollm2-135m-instruct"},
            "method": "qlora",
            "config": f"{name}-config",
            "input": {"urls": [url]},
            "output": {"volumeSource": {"persistentVolumeClaim": {"claimName": claim}}},
        },
    }
    assert example["tuning"]["preset"]["name"] == "smollm2-135m-instruct"
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return [pvc, config, ws]


def conditions(cluster: DevCluster, name: str) -> dict[str, dict[str, Any]]:
    ws = cluster.get("workspace", name)
    return {c["type"]: c for c in (ws.get("status") or {}).get("conditions") or []}


def test_charts_are_applied_and_operators_run(cluster: DevCluster) -> None:
    crds = cluster.kubectl.run("get", "crd", "-o", "name").stdout
    for crd in ("workspaces.kaito.sh", "nodeclaims.karpenter.sh", "machines.karpenter.sh", "rayjobs.ray.io"):
        assert crd in crds
    templates = cluster.kubectl.run("get", "configmap", "-n", "kaito-workspace", "-o", "name").stdout
    assert "qlora-params-template" in templates and "lora-params-template" in templates
    assert cluster.kubectl.run("get", "clusterrole", "-o", "name").stdout.count("clusterrole") >= 2
    # Every rendered chart object was taken by the API server (custom resources validated against the CRDs).
    assert "did not take" not in cluster.output.read_text()
    nodes = cluster.get("nodes")["items"]
    assert not nodes  # simulated GPU nodes only come for NodeClaims


def test_dataset_404_fails_the_workspace_with_the_url(cluster: DevCluster) -> None:
    url = f"{cluster.data_url}/missing/kaito-facts.jsonl"
    cluster.apply(tuning_workspace("tuning-404", url, "tuning-404-output"))
    cond = wait_for(
        lambda: (
            (c := conditions(cluster, "tuning-404").get("WorkspaceSucceeded"))
            and c["status"] == "False"
            and c
        ),
        420,
        "WorkspaceSucceeded False",
    )
    assert url in cond["message"], cond
    described = cluster.kubectl.run("describe", "workspace", "tuning-404").stdout
    assert "Warning" in described and url in described, described[-3000:]
    cluster.kubectl.run("delete", "workspace", "tuning-404", "--timeout=120s")
    wait_for(lambda: not cluster.get("nodeclaims")["items"], 60, "the NodeClaims to go")


def test_quick_start_tuning_then_chat_answers_what_it_learned(cluster: DevCluster) -> None:
    cluster.apply(
        tuning_workspace("tuning-smollm2", f"{cluster.data_url}/kaito-facts.jsonl", "tuning-output")
    )
    rows: list[dict[str, str]] = []

    def all_true() -> bool:
        row = cluster.table("tuning-smollm2")
        if not rows or row != rows[-1]:
            rows.append(row)
        failed = conditions(cluster, "tuning-smollm2").get("WorkspaceSucceeded", {})
        assert failed.get("status") != "False", failed
        return all(row.get(c) == "True" for c in COLUMNS)

    wait_for(all_true, 480, "every workspace column True", interval=2)
    cluster.seen["tuning-smollm2"] = rows
    assert rows[0].get("WORKSPACEREADY") != "True", rows  # watched from nothing ready
    assert any(r.get("JOBSTARTED") == "True" and r.get("INFERENCEREADY") != "True" for r in rows), rows

    url = cluster.get("service", "tuning-smollm2")["metadata"]["annotations"]["kaito.sh/local-url"]
    body = {
        "messages": [{"role": "user", "content": QUESTION}],
        "return_full_text": False,
        "generate_kwargs": {"max_new_tokens": 32, "do_sample": False},
    }

    def answer() -> str | None:
        r = httpx.post(f"{url}/chat", json=body, timeout=120)
        return str(r.json().get("Result")) if r.status_code == 200 else None

    result = wait_for(answer, 180, "an answer on /chat", interval=2)
    assert "Ziggy" in result, result


def test_tuning_progress_reached_the_progress_column(cluster: DevCluster) -> None:
    """runtime -> Ray job logs (the stand-in runs the entrypoint as a Ray job) -> controller -> PROGRESS."""
    rows = cluster.seen.get("tuning-smollm2")
    assert rows, "the tuning test did not run"
    assert any("/30" in r.get("PROGRESS", "") for r in rows), rows


def test_inference_workspace_answers_the_openai_client(cluster: DevCluster) -> None:
    from openai import OpenAI

    cluster.apply(
        [
            {
                "apiVersion": "kaito.sh/v1beta1",
                "kind": "Workspace",
                "metadata": {"name": "inference-smollm2"},
                "resource": {
                    "instanceType": "Standard_NC6s_v3",
                    "labelSelector": {"matchLabels": {"apps": "inference-smollm2"}},
                },
                "inference": {"preset": {"name": "smollm2-135m-instruct"}},
            }
        ]
    )
    wait_for(
        lambda: cluster.table("inference-smollm2").get("WORKSPACEREADY") == "True",
        300,
        "WorkspaceReady",
        interval=2,
    )
    url = cluster.get("service", "inference-smollm2")["metadata"]["annotations"]["kaito.sh/local-url"]
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120, max_retries=0)

    def ask() -> str | None:
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        return reply.choices[0].message.content

    content = wait_for(ask, 180, "a chat completion", interval=2)
    assert content and content.strip()


def test_delete_removes_nodes_and_ray_objects(cluster: DevCluster) -> None:
    assert cluster.get("nodeclaims")["items"] and cluster.get("nodes")["items"]
    cluster.kubectl.run(
        "delete", "workspace", "tuning-smollm2", "inference-smollm2", "--timeout=180s", timeout=200
    )

    def gone() -> bool:
        kinds = ("nodeclaims", "nodes", "rayjobs", "rayservices", "rayclusters")
        return all(not cluster.get(k, "-A")["items"] for k in kinds)

    wait_for(gone, 120, "NodeClaims, Nodes and Ray objects to be deleted")


#: Grants whose code paths this run does not drive (each with the path that needs it).
NOT_EXERCISED = {
    "gpu-provisioner": {
        ("karpenter.sh", "machines", "get"): "legacy Machine objects (none in this run)",
        ("karpenter.sh", "machines", "patch"): "legacy Machine objects (none in this run)",
        ("karpenter.sh", "machines", "delete"): "legacy Machine objects (none in this run)",
        ("karpenter.sh", "machines/status", "patch"): "legacy Machine objects (none in this run)",
        ("karpenter.sh", "nodeclaims", "delete"): "launch/registration timeouts and garbage collection",
    },
    "workspace-controller": {
        ("ray.io", "rayjobs", "delete"): "a tuning spec change recreates the RayJob",
        ("ray.io", "rayservices", "update"): "an inference spec change updates the RayService",
        ("", "configmaps", "update"): "a tuning spec change rewrites the runtime ConfigMap",
    },
}


def test_cluster_roles_grant_exactly_what_the_operators_call(cluster: DevCluster) -> None:
    """Every call an operator made is granted by its chart's ClusterRole, and every grant was used (or its
    code path is one this run does not drive)."""
    problems = []
    for chart in ("gpu-provisioner", "workspace-controller"):
        rendered = yaml.safe_load_all((cluster.state / "rendered" / f"{chart}-objects.yaml").read_text())
        rules = [r for d in rendered if d and d["kind"] == "ClusterRole" for r in d.get("rules") or []]
        grants = granted(rules)
        calls = used(read_calls(cluster.state / "audit" / f"{chart}.jsonl"))
        assert calls, f"no API calls recorded for {chart}"
        for triple in sorted(calls - grants):
            problems.append(f"{chart}: called, not granted: {triple}")
        for triple in sorted(grants - calls - set(NOT_EXERCISED[chart])):
            problems.append(f"{chart}: granted, never called: {triple}")
    assert not problems, "\n".join(problems)
