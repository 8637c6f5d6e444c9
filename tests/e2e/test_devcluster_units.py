"""The dev cluster's pure pieces, by value: RequestInfo of API calls, scheduling checks, localization."""

from __future__ import annotations

from pathlib import Path

from kaito_devcluster.audit import ApiCall, granted, request_info, used
from kaito_devcluster.localize import (
    localize_entrypoint,
    localize_serve_app,
    localize_tune_scaling,
    tune_config_path,
)
from kaito_devcluster.scheduling import check_cluster, why_not
from kaito_devcluster.status import application_statuses, job_info_status, service_conditions


def test_request_info_matches_the_api_server() -> None:
    assert request_info("GET", "/apis/ray.io/v1/namespaces/ns/rayjobs", {"watch": "true"}) == ApiCall(
        "watch", "ray.io", "rayjobs", namespace="ns"
    )
    assert request_info("GET", "/api/v1/nodes", {}) == ApiCall("list", "", "nodes")
    assert request_info("PATCH", "/apis/kaito.sh/v1beta1/namespaces/d/workspaces/w/status", {}) == ApiCall(
        "patch", "kaito.sh", "workspaces", "status", "d", "w"
    )
    assert request_info("DELETE", "/api/v1/namespaces/d/events", {}).verb == "deletecollection"
    assert request_info("GET", "/apis/ray.io/v1", {}) is None
    assert request_info("GET", "/version", {}) is None
    calls = [request_info("PATCH", "/apis/kaito.sh/v1beta1/namespaces/d/workspaces/w/status", {})]
    assert used([c for c in calls if c]) == {("kaito.sh", "workspaces/status", "patch")}
    rules = [{"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["get", "patch"]}]
    assert ("", "nodes/status", "patch") in granted(rules)


GPU_NODE = {
    "metadata": {"name": "n1", "labels": {"apps": "x"}},
    "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
    "status": {"allocatable": {"nvidia.com/gpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]},
}
WORKER = {
    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "apps", "operator": "In", "values": ["x"]}]}
                ]
            }
        }
    },
    "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
}


def test_scheduling_filters_like_the_scheduler() -> None:
    assert why_not(WORKER, GPU_NODE) is None
    assert "taint sku=gpu:NoSchedule" in (why_not({**WORKER, "tolerations": []}, GPU_NODE) or "")
    other = {**GPU_NODE, "metadata": {"name": "n2", "labels": {"apps": "y"}}}
    assert "node affinity" in (why_not(WORKER, other) or "")
    two_gpus = {**WORKER, "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
    assert "nvidia.com/gpu: 1 allocatable < 2 requested" in (why_not(two_gpus, GPU_NODE) or "")
    not_ready = {**GPU_NODE, "status": {**GPU_NODE["status"], "conditions": []}}
    assert why_not(WORKER, not_ready) == "node not Ready"
    anti = {
        **WORKER,
        "affinity": {
            **WORKER["affinity"],
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname"}]
            },
        },
    }
    spec = {
        "headGroupSpec": {"template": {"spec": {"tolerations": WORKER["tolerations"]}}},
        "workerGroupSpecs": [{"groupName": "gpu", "replicas": 2, "template": {"spec": anti}}],
    }
    head, workers = check_cluster(spec, [GPU_NODE])
    assert head.ok and not workers.ok and "1/2" in workers.describe()


def test_entrypoint_and_configs_are_localized() -> None:
    dirs = {"/etc/kaito": Path("/l/cfg"), "/mnt/output": Path("/l/out")}
    entry = localize_entrypoint("kaito-runtime tune --config /etc/kaito/tune.yaml --out=/mnt/output/a", dirs)
    assert entry == "kaito-runtime tune --config /l/cfg/tune.yaml --out=/l/out/a"
    assert tune_config_path(entry) == "/l/cfg/tune.yaml"
    assert tune_config_path("python x.py --config a") is None
    config, notes = localize_tune_scaling(
        {"scaling": {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 1}}}, local_gpus=0
    )
    assert config["scaling"] == {"num_workers": 1, "use_gpu": False, "resources_per_worker": {"CPU": 1}}
    assert "this machine has 0 GPU(s)" in notes[0]
    same, none = localize_tune_scaling({"scaling": {"use_gpu": True, "num_workers": 1}}, local_gpus=1)
    assert same["scaling"]["use_gpu"] and not none
    app = {
        "name": "kaito",
        "route_prefix": "/",
        "import_path": "kaito_runtime.serving.app:build_app",
        "args": {"adapters": [{"path": "/mnt/output"}], "deployment": {"ray_actor_options": {"num_gpus": 1}}},
    }
    local, notes = localize_serve_app(
        app, namespace="d", name="ws", directories=dirs, serve_port=9000, local_gpus=0, env={"A": "1"}
    )
    assert local["name"] == "d--ws--kaito" and local["route_prefix"] == "/d/ws"
    assert local["args"]["adapters"][0]["path"] == "/l/out"
    assert local["args"]["http"] == {"host": "127.0.0.1", "port": 9000, "route_prefix": "/d/ws"}
    assert local["args"]["deployment"]["ray_actor_options"] == {"num_cpus": 1}
    assert local["runtime_env"]["env_vars"] == {"A": "1"} and notes


def test_status_shapes_are_kuberays() -> None:
    st = job_info_status(
        {
            "status": "FAILED",
            "message": "boom",
            "start_time": 1_700_000_000_000,
            "end_time": 1_700_000_005_000,
        }
    )
    assert st == {
        "jobStatus": "FAILED",
        "message": "boom",
        "rayJobInfo": {"startTime": "2023-11-14T22:13:20Z", "endTime": "2023-11-14T22:13:25Z"},
    }
    conds = service_conditions(ready=False, upgrading=False, now="t1", generation=1, previous=None)
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [
        ("Ready", "False", "Initializing"),
        ("UpgradeInProgress", "False", "NoPendingCluster"),
    ]
    ready = service_conditions(ready=True, upgrading=False, now="t2", generation=1, previous=conds)
    assert ready[0]["reason"] == "NonZeroServeEndpoints" and ready[0]["lastTransitionTime"] == "t2"
    assert ready[1]["lastTransitionTime"] == "t1"  # unchanged status keeps its transition time
    lost = service_conditions(ready=False, upgrading=False, now="t3", generation=1, previous=ready)
    assert lost[0]["reason"] == "ZeroServeEndpoints"
    apps = application_statuses(
        {
            "d--ws--kaito": {
                "status": "DEPLOY_FAILED",
                "message": "bad",
                "deployments": {"KaitoChat": {"status": "UNHEALTHY", "message": "oom"}},
            }
        },
        {"d--ws--kaito": "kaito", "d--ws--other": "other"},
    )
    assert apps == {
        "kaito": {
            "status": "DEPLOY_FAILED",
            "message": "bad",
            "serveDeploymentStatuses": {"KaitoChat": {"status": "UNHEALTHY", "message": "oom"}},
        },
        "other": {"status": "NOT_STARTED"},
    }


def test_minimal_kuberay_crds_store_ray_objects(tmp_path: Path) -> None:
    """Without KubeRay's CRDs the dev cluster installs open-schema ones: objects and status are stored."""
    import httpx
    import yaml

    from kaito_devcluster.crds import minimal_kuberay_crds
    from kube_api_emulator import KubeApiEmulator

    crd_file = tmp_path / "crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(minimal_kuberay_crds()))
    with KubeApiEmulator.in_thread(crds=[crd_file]) as emu:
        base = f"{emu.url}/apis/ray.io/v1/namespaces/default"
        for plural, kind in (
            ("rayjobs", "RayJob"),
            ("rayservices", "RayService"),
            ("rayclusters", "RayCluster"),
        ):
            body = {"apiVersion": "ray.io/v1", "kind": kind, "metadata": {"name": "x"}, "spec": {"any": 1}}
            assert httpx.post(f"{base}/{plural}", json=body).status_code == 201
        r = httpx.patch(
            f"{base}/rayjobs/x/status",
            json={"status": {"jobStatus": "RUNNING"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200 and r.json()["status"]["jobStatus"] == "RUNNING"
        assert r.json()["spec"] == {"any": 1}
