"""The operator against the Kubernetes API emulator (tests/harness), driven the way a user and the
other controllers drive it: Workspaces applied, NodeClaims/Nodes made ready and KubeRay status written
by the test (standing in for the provisioner and KubeRay), `kubectl get workspace` read back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from kaito_workspace.operator.handlers import State
from kaito_workspace.operator.run import run_operator
from kaito_workspace.operator.settings import OperatorSettings
from kaito_workspace.planning.templates import default_training_config
from kube_api_emulator import KubeApiEmulator

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
REF_CRDS = SHARED / "reference" / "crds"
CRDS = [
    REPO / "charts" / "workspace-controller" / "crds",
    REF_CRDS / "karpenter-v1.7.0_karpenter.sh_nodeclaims.yaml",
    REF_CRDS / "kuberay-v1.7.0_ray.io_rayjobs.yaml",
    REF_CRDS / "kuberay-v1.7.0_ray.io_rayservices.yaml",
]
KUBECTL = shutil.which("kubectl", path=str(REPO / ".venv" / "bin")) or shutil.which("kubectl")
NS = "default"
CONTROLLER_NS = "kaito-workspace"

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------ cluster
class Cluster:
    """Direct API access for the test (what the provisioner, KubeRay and kubectl users would do)."""

    def __init__(self, emu: KubeApiEmulator, kubeconfig: Path) -> None:
        self.url = emu.url
        self.kubeconfig = kubeconfig
        self.http = httpx.Client(base_url=emu.url, timeout=10)

    def req(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        r = self.http.request(
            method,
            path,
            content=json.dumps(body) if body is not None else None,
            headers={"Content-Type": ctype},
        )
        if r.status_code == 404 and method == "GET":
            return None
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        api = doc["apiVersion"]
        ns = doc["metadata"].setdefault("namespace", NS)
        plural = {
            "Workspace": "workspaces",
            "ConfigMap": "configmaps",
            "PersistentVolumeClaim": "persistentvolumeclaims",
            "Namespace": "namespaces",
        }[doc["kind"]]
        if doc["kind"] == "Namespace":
            return self.req("POST", "/api/v1/namespaces", doc)
        base = "/api/v1" if api == "v1" else f"/apis/{api}"
        return self.req("POST", f"{base}/namespaces/{ns}/{plural}", doc)

    def workspace(self, name: str) -> dict[str, Any] | None:
        return self.req("GET", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/{name}")

    def nodeclaims(self, ws: str) -> list[dict[str, Any]]:
        return self.req("GET", f"/apis/karpenter.sh/v1/nodeclaims?labelSelector=kaito.sh/workspace%3D{ws}")[
            "items"
        ]

    def get(self, path: str) -> dict[str, Any] | None:
        return self.req("GET", path)

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.req("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.req("GET", f"/api/v1/namespaces/{NS}/events")["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]

    def kubectl(self, *args: str) -> str:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(Path(self.kubeconfig).parent / "kube-cache"),  # not the user's ~/.kube
            "KUBE_FEATURE_WatchListClient": "false",
        }
        out = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    # -- stand-ins for the provisioner and KubeRay --
    def make_nodes_ready(self, ws: str, gpus: int = 1) -> list[str]:
        names = []
        for nc in self.nodeclaims(ws):
            node_name = f"aks-{nc['metadata']['name']}-vmss000000"
            labels = {
                **nc["metadata"]["labels"],
                "node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4",
            }
            self.req(
                "POST",
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name, "labels": labels}},
            )
            self.patch_status(
                f"/api/v1/nodes/{node_name}",
                {
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}
                    ],
                    "allocatable": {"nvidia.com/gpu": str(gpus)},
                    "capacity": {"nvidia.com/gpu": str(gpus)},
                },
            )
            now = "2026-01-01T00:00:00Z"
            conds = [
                {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now}
                for t in ("Launched", "Registered", "Initialized", "Ready")
            ]
            self.patch_status(
                f"/apis/karpenter.sh/v1/nodeclaims/{nc['metadata']['name']}",
                {"conditions": conds, "nodeName": node_name, "providerID": f"azure:///{node_name}"},
            )
            names.append(node_name)
        return names


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def condition(ws: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((ws or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return {}


def columns(table: str) -> dict[str, str]:
    """One row of `kubectl get` output by column, empty cells included (split at the header's offsets)."""
    header, row = table.rstrip("\n").splitlines()[:2]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, bounds, strict=True)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with KubeApiEmulator.in_thread(crds=CRDS, kubeconfig=kubeconfig) as emu:
        c = Cluster(emu, kubeconfig)
        c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NS}})
        yield c


@contextmanager
def running_operator(cluster: Cluster, **overrides: Any) -> Iterator[State]:
    options: dict[str, Any] = {
        "kubeconfig": cluster.kubeconfig,
        "webhook": "off",
        "health_host": "127.0.0.1",
        "health_port": 0,
        "resync_seconds": 0.5,
        "progress_seconds": 0.2,
        "controller_namespace": CONTROLLER_NS,
        "runtime_image": "ghcr.io/kaito-ray/ray-runtime:test",
    }
    settings = OperatorSettings(**{**options, **overrides})
    state = State()
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run_operator(settings, stop_flag=stop, ready_flag=ready, state=state))
        except BaseException as e:  # surfaced by the test
            errors.append(e)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        assert ready.wait(30), f"operator did not start: {errors}"
        yield state
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "operator did not stop"
    assert not errors, errors


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[State]:
    with running_operator(cluster) as state:
        yield state


def inference_ws(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "resource": {
            "instanceType": "Standard_NC24ads_A100_v4",
            "labelSelector": {"matchLabels": {"apps": name}},
        },
        "inference": {"preset": {"name": "phi-3-mini-128k-instruct"}},
        **extra,
    }


def tuning_ws(name: str, url: str = "https://example.com/data.parquet") -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "resource": {
            "instanceType": "Standard_NC24ads_A100_v4",
            "labelSelector": {"matchLabels": {"app": name}},
        },
        "tuning": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "method": "qlora",
            "input": {"urls": [url]},
            "output": {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
        },
    }


# ------------------------------------------------------------------------------------------- tests
def test_inference_lifecycle(cluster: Cluster, operator: State) -> None:
    cluster.apply(inference_ws("phi-inf"))

    # NodeClaims with the contract labels.
    [nc] = wait_for("a NodeClaim", lambda: cluster.nodeclaims("phi-inf"))
    md = nc["metadata"]
    assert md["labels"]["kaito.sh/workspacenamespace"] == NS
    assert md["labels"]["karpenter.sh/nodepool"] == "kaito"
    assert md["labels"]["apps"] == "phi-inf"
    assert md["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert nc["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    ws = wait_for(
        "ResourceReady False",
        lambda: (
            condition(cluster.workspace("phi-inf"), "ResourceReady").get("status") == "False"
            and cluster.workspace("phi-inf")
        ),
    )
    assert ws["status"]["state"] == "Pending"
    assert cluster.get(f"/apis/ray.io/v1/namespaces/{NS}/rayservices/phi-inf") is None

    # Nodes ready -> RayService and Service.
    nodes = cluster.make_nodes_ready("phi-inf")
    svc = wait_for("RayService", lambda: cluster.get(f"/apis/ray.io/v1/namespaces/{NS}/rayservices/phi-inf"))
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Workspace"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == cluster.workspace("phi-inf")["metadata"]["uid"]
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert serve["applications"][0]["import_path"] == "kaito_runtime.serving.app:build_app"
    assert svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "image"
    ] == ("ghcr.io/kaito-ray/ray-runtime:test")
    service = wait_for("Service", lambda: cluster.get(f"/api/v1/namespaces/{NS}/services/phi-inf"))
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {80: 8000, 8265: 8265}
    ws = wait_for(
        "ResourceReady True",
        lambda: (
            condition(cluster.workspace("phi-inf"), "ResourceReady").get("status") == "True"
            and cluster.workspace("phi-inf")
        ),
    )
    assert ws["status"]["workerNodes"] == nodes
    assert condition(ws, "InferenceReady")["status"] == "False"

    # KubeRay reports a failed deployment, then a running one.
    base = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/phi-inf"
    now = "2026-01-01T00:00:00Z"
    cluster.patch_status(
        base,
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Initializing",
                    "message": "",
                    "lastTransitionTime": now,
                }
            ],
            "activeServiceStatus": {
                "applicationStatuses": {"kaito": {"status": "DEPLOY_FAILED", "message": "ImportError: boom"}}
            },
        },
    )
    ws = wait_for(
        "DeployFailed",
        lambda: (
            condition(cluster.workspace("phi-inf"), "InferenceReady").get("reason") == "DeployFailed"
            and cluster.workspace("phi-inf")
        ),
    )
    assert "ImportError: boom" in condition(ws, "InferenceReady")["message"]
    assert ws["status"]["state"] == "Failed"
    cluster.patch_status(
        base,
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "RayServiceReady",
                    "message": "",
                    "lastTransitionTime": now,
                }
            ],
            "activeServiceStatus": {
                "rayClusterName": "phi-inf-abcde",
                "applicationStatuses": {"kaito": {"status": "RUNNING", "message": ""}},
            },
        },
    )
    wait_for(
        "WorkspaceReady",
        lambda: condition(cluster.workspace("phi-inf"), "WorkspaceReady").get("status") == "True",
    )
    # The Service follows the active cluster of the RayService.
    wait_for(
        "selector pinned",
        lambda: (
            cluster.get(f"/api/v1/namespaces/{NS}/services/phi-inf")["spec"]["selector"].get("ray.io/cluster")
            == "phi-inf-abcde"
        ),
    )

    # What the user sees.
    cols = columns(cluster.kubectl("get", "workspace", "phi-inf"))
    assert cols["INSTANCE"] == "Standard_NC24ads_A100_v4"
    assert (
        cols["RESOURCEREADY"] == "True"
        and cols["INFERENCEREADY"] == "True"
        and cols["WORKSPACEREADY"] == "True"
    )
    assert cols["STATE"] == "Ready"
    assert cols["JOBSTARTED"] == "" and cols["WORKSPACESUCCEEDED"] == ""
    reasons = {e["reason"] for e in cluster.events("phi-inf")}
    assert {
        "NodeClaimCreated",
        "RayServiceCreated",
        "ServiceCreated",
        "DeployFailed",
        "InferenceReady",
    } <= reasons

    # A spec change updates the RayService in place (new revision), without a new NodeClaim.
    rev = svc["metadata"]["annotations"]["kaito.sh/revision"]
    cluster.req(
        "PATCH",
        f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/phi-inf",
        {
            "inference": {
                "adapters": [{"source": {"name": "a1", "image": "reg.example.com/a1:1"}, "strength": "0.5"}]
            }
        },
        "application/merge-patch+json",
    )
    updated = wait_for(
        "new revision",
        lambda: (s := cluster.get(base)) and s["metadata"]["annotations"]["kaito.sh/revision"] != rev and s,
    )
    assert "reg.example.com/a1:1" in updated["spec"]["serveConfigV2"]
    assert updated["metadata"]["uid"] == svc["metadata"]["uid"]
    assert len(cluster.nodeclaims("phi-inf")) == 1

    # Deletion: NodeClaims deleted by the finalizer, owned objects collected, workspace gone.
    cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/phi-inf")
    wait_for("workspace gone", lambda: cluster.workspace("phi-inf") is None)
    assert cluster.nodeclaims("phi-inf") == []
    wait_for("RayService collected", lambda: cluster.get(base) is None)
    wait_for("Service collected", lambda: cluster.get(f"/api/v1/namespaces/{NS}/services/phi-inf") is None)


class FakeRayDashboard:
    """The Ray Jobs API's logs endpoint, as a RayJob's head serves it."""

    def __init__(self) -> None:
        self.logs = ""
        self.port = free_port()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> FakeRayDashboard:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    async def _serve(self) -> None:
        async def logs(request: web.Request) -> web.Response:
            return web.json_response({"logs": self.logs})

        app = web.Application()
        app.add_routes([web.get("/api/jobs/{job_id}/logs", logs)])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_tuning_lifecycle_with_progress_and_serving(cluster: Cluster, operator: State) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "out", "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
    )
    cluster.apply(tuning_ws("tune-phi"))
    [nc] = wait_for("a NodeClaim", lambda: cluster.nodeclaims("tune-phi"))

    # The provisioner reports a quota error: the user sees it in ResourceReady.
    now = "2026-01-01T00:00:00Z"
    cluster.patch_status(
        f"/apis/karpenter.sh/v1/nodeclaims/{nc['metadata']['name']}",
        {
            "conditions": [
                {
                    "type": "Launched",
                    "status": "False",
                    "reason": "QuotaExceeded",
                    "message": "Operation could not be completed as it results in exceeding approved "
                    "standardNCADSA100v4Family Cores quota",
                    "lastTransitionTime": now,
                }
            ]
        },
    )
    ws = wait_for(
        "quota reason",
        lambda: (
            condition(cluster.workspace("tune-phi"), "ResourceReady").get("reason") == "QuotaExceeded"
            and cluster.workspace("tune-phi")
        ),
    )
    assert "quota" in condition(ws, "ResourceReady")["message"]
    assert any(e["reason"] == "QuotaExceeded" and e["type"] == "Warning" for e in cluster.events("tune-phi"))

    cluster.make_nodes_ready("tune-phi")
    job_path = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/tune-phi"
    job = wait_for("RayJob", lambda: cluster.get(job_path))
    assert job["spec"]["entrypoint"] == "kaito-runtime tune --config /etc/kaito/tune.yaml"
    cm = cluster.get(f"/api/v1/namespaces/{NS}/configmaps/tune-phi-runtime")
    tune = yaml.safe_load(cm["data"]["tune.yaml"])
    assert tune["training_config"] == default_training_config("qlora")
    assert tune["output"] == {"path": "/mnt/output"}
    ws = cluster.workspace("tune-phi")
    assert condition(ws, "JobStarted")["status"] == "False"

    with FakeRayDashboard() as dash:
        record = {"state": "Running", "step": 12, "total_steps": 40, "loss": 1.5, "eta_seconds": 30}
        dash.logs = f"x\n(TrainController pid=7) KAITO_PROGRESS {json.dumps(record)}\n"
        cluster.patch_status(
            job_path,
            {
                "jobStatus": "RUNNING",
                "jobDeploymentStatus": "Running",
                "jobId": "tune-phi-xyz",
                "dashboardURL": f"127.0.0.1:{dash.port}",
                "rayClusterName": "tune-phi-raycluster-1",
            },
        )
        ws = wait_for(
            "progress",
            lambda: (
                ((cluster.workspace("tune-phi") or {}).get("status", {}).get("tuning") or {}).get("step")
                == 12
                and cluster.workspace("tune-phi")
            ),
        )
        assert ws["status"]["tuning"]["totalSteps"] == 40 and ws["status"]["tuning"]["loss"] == 1.5
        assert condition(ws, "JobStarted")["status"] == "True"
        assert ws["status"]["state"] == "Running"
        assert ws["status"]["dashboardURL"] == f"http://127.0.0.1:{dash.port}"
        wide = cluster.kubectl("get", "workspace", "tune-phi", "-o", "wide")
        assert "12/40 (30%)" in wide
        dash.logs += 'KAITO_PROGRESS {"state": "Running", "step": 20, "total_steps": 40, "loss": 1.2}\n'
        wait_for(
            "progress refresh", lambda: cluster.workspace("tune-phi")["status"]["tuning"].get("step") == 20
        )

    cluster.patch_status(job_path, {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"})
    ws = wait_for(
        "succeeded",
        lambda: (
            condition(cluster.workspace("tune-phi"), "WorkspaceSucceeded").get("status") == "True"
            and cluster.workspace("tune-phi")
        ),
    )
    # Serve-after-tuning: the tuned adapter is served from the output volume.
    svc = wait_for("RayService", lambda: cluster.get(f"/apis/ray.io/v1/namespaces/{NS}/rayservices/tune-phi"))
    args = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert args["adapters"] == [{"name": "tune-phi", "strength": 1.0, "path": "/mnt/output"}]
    cluster.patch_status(
        f"/apis/ray.io/v1/namespaces/{NS}/rayservices/tune-phi",
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "RayServiceReady",
                    "message": "",
                    "lastTransitionTime": now,
                }
            ],
            "activeServiceStatus": {"applicationStatuses": {"kaito": {"status": "RUNNING"}}},
        },
    )
    ws = wait_for(
        "ready",
        lambda: (
            condition(cluster.workspace("tune-phi"), "WorkspaceReady").get("status") == "True"
            and cluster.workspace("tune-phi")
        ),
    )
    assert ws["status"]["state"] == "Ready"
    assert condition(ws, "InferenceReady")["status"] == "True"
    cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/tune-phi")
    wait_for("workspace gone", lambda: cluster.workspace("tune-phi") is None)


def test_failed_job_surfaces_the_message(cluster: Cluster, operator: State) -> None:
    ws = tuning_ws("tune-404", url="https://example.com/missing.parquet")
    ws["metadata"]["annotations"] = {"kaito.sh/serve-after-tuning": "false"}
    cluster.apply(ws)
    wait_for("a NodeClaim", lambda: cluster.nodeclaims("tune-404"))
    cluster.make_nodes_ready("tune-404")
    job_path = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/tune-404"
    wait_for("RayJob", lambda: cluster.get(job_path))
    msg = "Job entrypoint command failed: 404 Not Found: https://example.com/missing.parquet"
    cluster.patch_status(job_path, {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "message": msg})
    ws = wait_for(
        "failed",
        lambda: (
            condition(cluster.workspace("tune-404"), "WorkspaceSucceeded").get("status") == "False"
            and cluster.workspace("tune-404")
        ),
    )
    assert "https://example.com/missing.parquet" in condition(ws, "WorkspaceSucceeded")["message"]
    assert ws["status"]["state"] == "Failed"
    described = cluster.kubectl("describe", "workspace", "tune-404")
    assert "JobFailed" in described
    cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/tune-404")
    wait_for("workspace gone", lambda: cluster.workspace("tune-404") is None)


def test_restart_creates_no_duplicates(cluster: Cluster) -> None:
    ws = inference_ws("phi-restart")
    ws["resource"]["count"] = 2
    with running_operator(cluster):
        cluster.apply(ws)
        first = wait_for(
            "two NodeClaims",
            lambda: len(cluster.nodeclaims("phi-restart")) == 2 and cluster.nodeclaims("phi-restart"),
        )
    # Between the two operators a node becomes ready.
    with running_operator(cluster):
        cluster.make_nodes_ready("phi-restart")
        wait_for(
            "RayService", lambda: cluster.get(f"/apis/ray.io/v1/namespaces/{NS}/rayservices/phi-restart")
        )
        time.sleep(1.0)  # several resync periods: nothing new may appear
        again = cluster.nodeclaims("phi-restart")
        assert sorted(n["metadata"]["name"] for n in again) == sorted(n["metadata"]["name"] for n in first)
        created = [
            e
            for e in cluster.events("phi-restart")
            if e["reason"] in ("NodeClaimCreated", "RayServiceCreated")
        ]
        assert len(created) == 3
        cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/phi-restart")
        wait_for("workspace gone", lambda: cluster.workspace("phi-restart") is None)


def test_invalid_workspace_with_webhook_off(cluster: Cluster, operator: State) -> None:
    bad = tuning_ws("bad-tune")
    bad["tuning"]["method"] = "dora"
    cluster.apply(bad)
    ws = wait_for(
        "invalid condition",
        lambda: (
            condition(cluster.workspace("bad-tune"), "WorkspaceReady").get("reason") == "InvalidWorkspace"
            and cluster.workspace("bad-tune")
        ),
    )
    assert "tuning.method" in condition(ws, "WorkspaceReady")["message"]
    assert ws["status"]["state"] == "Failed"
    assert cluster.nodeclaims("bad-tune") == []
    time.sleep(1.0)  # resyncs do not repeat the event (no crash loop, no event storm)
    events = [e for e in cluster.events("bad-tune") if e["reason"] == "InvalidWorkspace"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    # The operator keeps serving other workspaces.
    cluster.apply(inference_ws("phi-after-bad"))
    wait_for("NodeClaim for the valid one", lambda: cluster.nodeclaims("phi-after-bad"))
    for name in ("bad-tune", "phi-after-bad"):
        cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/{name}")
    wait_for(
        "gone", lambda: cluster.workspace("phi-after-bad") is None and cluster.workspace("bad-tune") is None
    )


def admission_review(
    obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0000-1111",
            "kind": {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"},
            "resource": {"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"},
            "requestKind": {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"},
            "requestResource": {"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"},
            "name": obj["metadata"]["name"],
            "namespace": NS,
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": None,
        },
    }


def test_webhook_and_health(cluster: Cluster) -> None:
    port = free_port()
    with running_operator(
        cluster, webhook="on", webhook_host="127.0.0.1", webhook_port=port, webhook_insecure=True
    ) as st:
        url = f"http://127.0.0.1:{port}/validate-workspace"
        good = inference_ws("ok-ws")
        r = wait_for("webhook up", lambda: _post(url, admission_review(good)))
        assert r["response"]["allowed"] is True
        bad = inference_ws("bad-ws")
        bad["inference"]["adapters"] = [{"source": {"name": "a", "image": "r/a:1"}, "strength": "1.5"}]
        r = _post(url, admission_review(bad))
        assert r["response"]["allowed"] is False
        assert r["response"]["status"]["code"] == 422
        assert "strength" in r["response"]["status"]["message"]
        # Immutable fields on update.
        changed = inference_ws("ok-ws")
        changed["resource"]["instanceType"] = "Standard_NC48ads_A100_v4"
        r = _post(url, admission_review(changed, "UPDATE", old=good))
        assert r["response"]["allowed"] is False and "instanceType" in r["response"]["status"]["message"]

        base = f"http://127.0.0.1:{st.health_port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert 'kaito_workspace_admission_total{allowed="false"}' in metrics


def _post(url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        r = httpx.post(url, json=body, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def test_byo_nodes_and_byo_mode(cluster: Cluster) -> None:
    node = "byo-gpu-1"
    cluster.req(
        "POST",
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"apps": "phi-byo"}}},
    )
    cluster.patch_status(
        f"/api/v1/nodes/{node}",
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}],
            "allocatable": {"nvidia.com/gpu": "2"},
        },
    )
    ws = inference_ws("phi-byo")
    del ws["resource"]["instanceType"]
    waiting = inference_ws("phi-byo-wait")
    del waiting["resource"]["instanceType"]
    with running_operator(cluster, node_provisioner="byo"):
        cluster.apply(ws)
        svc = wait_for(
            "RayService", lambda: cluster.get(f"/apis/ray.io/v1/namespaces/{NS}/rayservices/phi-byo")
        )
        worker = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"  # all GPUs of the BYO node
        got = wait_for(
            "worker nodes", lambda: (cluster.workspace("phi-byo").get("status") or {}).get("workerNodes")
        )
        assert got == [node]
        assert cluster.nodeclaims("phi-byo") == []
        # Without matching nodes, byo mode waits and says so (no NodeClaim).
        cluster.apply(waiting)
        c = wait_for("waiting", lambda: condition(cluster.workspace("phi-byo-wait"), "ResourceReady"))
        assert c["status"] == "False" and "labelSelector" in c["message"]
        assert cluster.nodeclaims("phi-byo-wait") == []
        for name in ("phi-byo", "phi-byo-wait"):
            cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/{name}")
        wait_for(
            "gone", lambda: cluster.workspace("phi-byo") is None and cluster.workspace("phi-byo-wait") is None
        )


def test_tuning_spec_change_recreates_the_rayjob(cluster: Cluster) -> None:
    ws = tuning_ws("tune-rev", url="http://127.0.0.1:9/data.jsonl")  # loopback: allowed in local mode only
    with running_operator(cluster, local=True):
        cluster.apply(ws)
        wait_for("a NodeClaim", lambda: cluster.nodeclaims("tune-rev"))
        cluster.make_nodes_ready("tune-rev")
        job_path = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/tune-rev"
        first = wait_for("RayJob", lambda: cluster.get(job_path))
        cluster.req(
            "PATCH",
            f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/tune-rev",
            {"tuning": {"input": {"urls": ["http://127.0.0.1:9/other.jsonl"]}}},
            "application/merge-patch+json",
        )
        second = wait_for(
            "a new RayJob",
            lambda: (j := cluster.get(job_path)) and j["metadata"]["uid"] != first["metadata"]["uid"] and j,
        )
        assert (
            second["metadata"]["annotations"]["kaito.sh/revision"]
            != first["metadata"]["annotations"]["kaito.sh/revision"]
        )
        cm = cluster.get(f"/api/v1/namespaces/{NS}/configmaps/tune-rev-runtime")
        assert "other.jsonl" in cm["data"]["tune.yaml"]
        assert any(e["reason"] == "RayJobRecreated" for e in cluster.events("tune-rev"))
        cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/tune-rev")
        wait_for("gone", lambda: cluster.workspace("tune-rev") is None)
    # Without local mode the same loopback URL is refused.
    with running_operator(cluster):
        cluster.apply(tuning_ws("tune-loop", url="http://127.0.0.1:9/data.jsonl"))
        c = wait_for(
            "invalid",
            lambda: (
                condition(cluster.workspace("tune-loop"), "WorkspaceReady").get("reason")
                == "InvalidWorkspace"
                and condition(cluster.workspace("tune-loop"), "WorkspaceReady")
            ),
        )
        assert "127.0.0.1" in c["message"] or "loopback" in c["message"]
        cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/tune-loop")
        wait_for("gone", lambda: cluster.workspace("tune-loop") is None)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 like the chart's (openssl; no network)."""
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_cli_operator_with_tls_webhook(cluster: Cluster, tmp_path: Path) -> None:
    """`kaito-workspace operator` as the chart runs it: TLS webhook, health port, SIGTERM stops it."""
    cert, key = _self_signed(tmp_path)
    health, hook = free_port(), free_port()
    exe = REPO / ".venv" / "bin" / "kaito-workspace"
    proc = subprocess.Popen(
        [
            str(exe if exe.exists() else "kaito-workspace"),
            "operator",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--health-host",
            "127.0.0.1",
            "--health-port",
            str(health),
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(hook),
            "--webhook-cert",
            str(cert),
            "--webhook-key",
            str(key),
            "--controller-namespace",
            CONTROLLER_NS,
            "--resync-seconds",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("readyz", ready, timeout=60)
        bad = inference_ws("cli-bad")
        bad["metadata"]["name"] = "Bad_Name"

        def review() -> httpx.Response | None:
            try:
                return httpx.post(
                    f"https://127.0.0.1:{hook}/validate-workspace",
                    json=admission_review(bad),
                    verify=str(cert),
                    timeout=10,
                )
            except httpx.ConnectError:
                return None

        r = review()  # /readyz answers 200 only once the webhook accepts connections
        assert r is not None
        assert r.status_code == 200 and r.json()["response"]["allowed"] is False
        assert "metadata.name" in r.json()["response"]["status"]["message"]
        cluster.apply(inference_ws("cli-ws"))
        wait_for("NodeClaim from the CLI operator", lambda: cluster.nodeclaims("cli-ws"))
        cluster.req("DELETE", f"/apis/kaito.sh/v1beta1/namespaces/{NS}/workspaces/cli-ws")
        wait_for("gone", lambda: cluster.workspace("cli-ws") is None)
    finally:
        proc.terminate()
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0, proc.stdout.read() if proc.stdout else rc
