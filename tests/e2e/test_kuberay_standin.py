"""The KubeRay stand-in against the Kubernetes API emulator and a real local Ray: RayJobs and RayServices
created by hand run, and their status is what KubeRay v1.7 writes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from kaito_devcluster.kube import Kube
from kaito_devcluster.rayhead import start_ray_head
from kaito_devcluster.standin import KubeRayStandin, StandinSettings
from kaito_devcluster.testing import KUBERAY_CRDS, free_port, wait_for
from kube_api_emulator import KubeApiEmulator

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NS = "default"
WORKER_GPU = {"nvidia.com/gpu": "1"}


class Api:
    """Plain HTTP against the emulator (what a client sees)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, path: str) -> dict[str, Any] | None:
        r = self.http.get(path)
        return r.json() if r.status_code == 200 else None

    def delete(self, path: str) -> None:
        self.http.delete(path)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.http.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]


class StandinThread:
    def __init__(self, server: str, settings: StandinSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = settings
        self.server = server
        self.standin: KubeRayStandin | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            kube = Kube(self.server)
            self.standin = KubeRayStandin(kube, self.settings)
            try:
                await self.standin.run()
            finally:
                await kube.close()

        self.loop.run_until_complete(main())

    def __enter__(self) -> StandinThread:
        self.thread.start()
        wait_for(lambda: self.standin is not None, 10, "the stand-in to start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.standin is not None
        self.loop.call_soon_threadsafe(self.standin.stop)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the stand-in did not stop"
        self.loop.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, StandinThread]]:
    if not KUBERAY_CRDS:
        pytest.skip("KubeRay reference CRDs not found (set KAITO_SHARED_DIR)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    state = tmp_path_factory.mktemp("standin")
    ray = start_ray_head(state / "ray.log", num_cpus=4)
    try:
        with KubeApiEmulator.in_thread(crds=KUBERAY_CRDS) as emu:
            settings = StandinSettings(
                dashboard_url=ray.dashboard_url, serve_port=free_port(), state_dir=state, interval=0.5
            )
            with StandinThread(emu.url, settings) as standin:
                yield Api(emu.url), standin
    finally:
        ray.stop()


def gpu_node(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"nvidia.com/gpu": "1", "cpu": "8"},
            "allocatable": {"nvidia.com/gpu": "1", "cpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def template(
    role: str,
    app: str,
    *,
    gpu: bool,
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": f"ray-{role}",
                "image": "example.com/runtime:1",
                "env": env or [],
                "volumeMounts": mounts,
                "resources": {"requests": WORKER_GPU, "limits": WORKER_GPU} if gpu else {},
            }
        ],
        "volumes": volumes,
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    }
    if gpu:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "apps", "operator": "In", "values": [app]}]}
                    ]
                }
            }
        }
    return {"metadata": {"labels": {"app": app, "role": role}}, "spec": spec}


def cluster_spec(
    app: str,
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": template("head", app, gpu=False, mounts=mounts, volumes=volumes, env=env),
        },
        "workerGroupSpecs": [
            {
                "groupName": "gpu",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 1,
                "rayStartParams": {},
                "template": template("worker", app, gpu=True, mounts=mounts, volumes=volumes, env=env),
            }
        ],
    }


JOB_SCRIPT = """
import os, pathlib, yaml
cfg = yaml.safe_load(open(os.environ["CFG"]))
out = pathlib.Path(cfg["output"])
out.mkdir(parents=True, exist_ok=True)
(out / "result.txt").write_text(cfg["greeting"] + " " + os.environ["TOKEN"][:3])
print("wrote", out / "result.txt")
"""


def test_rayjob_waits_for_nodes_then_runs_and_reports_like_kuberay(
    cluster: tuple[Api, StandinThread],
) -> None:
    api, standin = cluster
    api.create(
        f"/api/v1/namespaces/{NS}/configmaps",
        {
            "metadata": {"name": "job-config"},
            "data": {
                "job.yaml": yaml.safe_dump({"output": "/mnt/out/run1", "greeting": "hello"}),
                "job.py": JOB_SCRIPT,
            },
        },
    )
    api.create(
        f"/api/v1/namespaces/{NS}/secrets",
        {
            "metadata": {"name": "job-secret"},
            "data": {"token": base64.b64encode(b"s3cr3t-value").decode()},
        },
    )
    api.create(
        f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
        {
            "metadata": {"name": "job-out"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    mounts = [
        {"name": "cfg", "mountPath": "/etc/job", "readOnly": True},
        {"name": "out", "mountPath": "/mnt/out"},
    ]
    volumes = [
        {"name": "cfg", "configMap": {"name": "job-config"}},
        {"name": "out", "persistentVolumeClaim": {"claimName": "job-out"}},
    ]
    env = [
        {"name": "CFG", "value": "/etc/job/job.yaml"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "job-secret", "key": "token"}}},
    ]
    api.create(
        f"/apis/ray.io/v1/namespaces/{NS}/rayjobs",
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "hello"},
            "spec": {
                "entrypoint": "python /etc/job/job.py",
                "shutdownAfterJobFinishes": True,
                "ttlSecondsAfterFinished": 3600,
                "rayClusterSpec": cluster_spec("hello", mounts, volumes, env),
            },
        },
    )
    path = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/hello"

    # No node carries the worker's label and GPU: the job waits, as pods would stay Pending.
    def initializing() -> dict[str, Any] | None:
        st = (api.get(path) or {}).get("status") or {}
        return st if st.get("jobDeploymentStatus") == "Initializing" else None

    st = wait_for(initializing, 30, "Initializing")
    assert st["rayClusterName"].startswith("hello-") and st["jobId"].startswith("hello-")
    assert st["dashboardURL"] == standin.settings.dashboard_url.split("://")[1]
    assert st["startTime"]
    warning = wait_for(
        lambda: [e for e in api.events("hello") if e["reason"] == "PodsUnschedulable"],
        20,
        "an Unschedulable event",
    )
    assert "worker group gpu: 0/1" in warning[0]["message"] and warning[0]["type"] == "Warning"
    assert api.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{st['rayClusterName']}") is not None
    assert api.get(f"/api/v1/namespaces/{NS}/services/{st['rayClusterName']}-head-svc") is not None

    api.create("/api/v1/nodes", gpu_node("gpu-node-1", {"apps": "hello"}))

    def finished() -> dict[str, Any] | None:
        s = (api.get(path) or {}).get("status") or {}
        return s if s.get("jobDeploymentStatus") in ("Complete", "Failed") else None

    st = wait_for(finished, 120, "the RayJob to finish")
    assert st["jobStatus"] == "SUCCEEDED", json.dumps(st)[-3000:]
    assert st["jobDeploymentStatus"] == "Complete"
    assert st["endTime"] and st["rayJobInfo"]["startTime"] and st["rayJobInfo"]["endTime"]
    assert st["succeeded"] == 1
    # The container paths in the ConfigMap were rewritten: the PVC's local directory holds the output.
    result = standin.settings.state_dir / "claims" / NS / "job-out" / "run1" / "result.txt"
    assert result.read_text() == "hello s3c"
    reasons = [e["reason"] for e in api.events("hello")]
    assert {"Scheduled", "LocalExecution", "Submitted", "Completed"} <= set(reasons)
    local = next(e for e in api.events("hello") if e["reason"] == "LocalExecution")["message"]
    assert "GPU requests (nvidia.com/gpu: 1 in all) not honoured" in local
    # The secret value never shows in status, events, or the Ray job record.
    job = httpx.get(f"{standin.settings.dashboard_url}/api/jobs/{st['jobId']}").json()
    assert "s3cr3t" not in json.dumps(job) and "s3cr3t" not in json.dumps(api.events("hello"))


def test_failed_rayjob_reports_the_message(cluster: tuple[Api, StandinThread]) -> None:
    api, _ = cluster
    api.create(
        f"/apis/ray.io/v1/namespaces/{NS}/rayjobs",
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": "broken"},
            "spec": {
                "entrypoint": (
                    "python -c \"raise SystemExit('dataset http://127.0.0.1:9/x.jsonl returned 404')\""
                ),
                "backoffLimit": 0,
                "rayClusterSpec": {
                    "headGroupSpec": {"template": template("head", "b", gpu=False, mounts=[], volumes=[])}
                },
            },
        },
    )
    path = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/broken"
    st = wait_for(
        lambda: (
            ((api.get(path) or {}).get("status") or {}).get("jobDeploymentStatus") == "Failed"
            and api.get(path)["status"]
        ),
        90,
        "the RayJob to fail",
    )
    assert st["jobStatus"] == "FAILED" and st["reason"] == "AppFailed" and st["failed"] == 1
    assert "http://127.0.0.1:9/x.jsonl returned 404" in st["message"]


def serve_app_config(name: str) -> str:
    args = {
        "name": name,
        "model": {"id": "kaito-builtin/tiny-random-llama"},
        "deployment": {"num_replicas": 1, "ray_actor_options": {"num_gpus": 1}},
        "http": {"host": "0.0.0.0", "port": 8000},
    }
    return yaml.safe_dump(
        {
            "proxy_location": "EveryNode",
            "http_options": {"host": "0.0.0.0", "port": 8000},
            "applications": [
                {
                    "name": "kaito",
                    "route_prefix": "/",
                    "import_path": "kaito_runtime.serving.app:build_app",
                    "args": args,
                }
            ],
        }
    )


def test_rayservice_serves_through_the_forwarded_service(cluster: tuple[Api, StandinThread]) -> None:
    api, standin = cluster
    api.create("/api/v1/nodes", gpu_node("gpu-node-2", {"apps": "chat"}))
    api.create(
        f"/apis/ray.io/v1/namespaces/{NS}/rayservices",
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayService",
            "metadata": {"name": "chat"},
            "spec": {
                "serveConfigV2": serve_app_config("chat"),
                "rayClusterConfig": cluster_spec("chat", [], []),
            },
        },
    )
    # The Service a controller creates: selects the head pods by the template's labels.
    api.create(
        f"/api/v1/namespaces/{NS}/services",
        {
            "metadata": {"name": "chat"},
            "spec": {
                "selector": {"app": "chat", "role": "head"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8000},
                    {"name": "dashboard", "port": 8265, "targetPort": 8265},
                ],
            },
        },
    )
    path = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/chat"

    def ready() -> dict[str, Any] | None:
        st = (api.get(path) or {}).get("status") or {}
        cond = {c["type"]: c for c in st.get("conditions") or []}
        return st if cond.get("Ready", {}).get("status") == "True" else None

    st = wait_for(ready, 240, "the RayService to be Ready")
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Ready"]["reason"] == "NonZeroServeEndpoints"
    assert cond["UpgradeInProgress"]["status"] == "False"
    active = st["activeServiceStatus"]
    assert active["applicationStatuses"]["kaito"]["status"] == "RUNNING"
    assert st["serviceStatus"] == "Running" and st["numServeEndpoints"] == 1
    assert not (st.get("pendingServiceStatus") or {}).get("rayClusterName")
    assert api.get(f"/api/v1/namespaces/{NS}/services/chat-serve-svc") is not None
    assert api.get(f"/api/v1/namespaces/{NS}/services/chat-head-svc") is not None

    svc = wait_for(
        lambda: (
            (api.get(f"/api/v1/namespaces/{NS}/services/chat") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("kaito.sh/local-url")
        ),
        20,
        "local-url",
    )
    answer = wait_for(
        lambda: (
            (
                r := httpx.post(f"{svc}/chat", json={"prompt": "hi", "max_new_tokens": 4}, timeout=60)
            ).status_code
            == 200
            and r.json()
        ),
        60,
        "/chat",
    )
    assert answer
    dash = api.get(f"/api/v1/namespaces/{NS}/services/chat")["metadata"]["annotations"][
        "kaito.sh/local-dashboard-url"
    ]
    assert httpx.get(f"{dash}/api/version").json()["ray_version"]

    api.delete(path)
    wait_for(
        lambda: (
            "default--chat--kaito"
            not in (
                httpx.get(f"{standin.settings.dashboard_url}/api/serve/applications/")
                .json()
                .get("applications")
                or {}
            )
        ),
        60,
        "the Serve application to be removed",
    )
