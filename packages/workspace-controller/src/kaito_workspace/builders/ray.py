"""KubeRay RayJob (tuning) and RayService (inference) manifests, ray.io/v1."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import yaml

from kaito_workspace.builders.common import owned_metadata
from kaito_workspace.builders.configmap import CONFIG_DIR
from kaito_workspace.planning.model import Plan
from kaito_workspace.planning.names import (
    ANNOTATION_REVISION,
    GPU_RESOURCE,
    GPU_TAINT,
    LABEL_HOSTNAME,
    LABEL_RAY_ROLE,
    config_map_name,
    ray_name,
    workspace_labels,
)

SERVE_IMPORT_PATH = "kaito_runtime.serving.app:build_app"
SERVE_PORT = 8000
DASHBOARD_PORT = 8265
SHM_SIZE = "16Gi"


def revision(spec: dict[str, Any]) -> str:
    """A short stable hash of a spec: a changed revision means the Ray object must change."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def _tolerations() -> list[dict[str, Any]]:
    return [
        {"key": GPU_TAINT["key"], "operator": "Equal", "value": GPU_TAINT["value"], "effect": "NoSchedule"},
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
    ]


def _node_selector_term(plan: Plan) -> dict[str, Any]:
    exprs: list[dict[str, Any]] = [
        {"key": k, "operator": "In", "values": [v]} for k, v in sorted(plan.nodes.match_labels.items())
    ]
    exprs.extend(copy.deepcopy(e) for e in plan.nodes.match_expressions)
    return {"matchExpressions": exprs}


def _affinity(plan: Plan, *, role: str) -> dict[str, Any]:
    term = _node_selector_term(plan)
    if role == "head":
        # The head needs no GPU: prefer the workspace's nodes, but any node will do.
        node_affinity: dict[str, Any] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]
        }
        return {"nodeAffinity": node_affinity}
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}},
        # One worker pod per node: each requests all of its node's GPUs.
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchLabels": {
                            **workspace_labels(plan.workspace.name, plan.workspace.namespace),
                            LABEL_RAY_ROLE: "worker",
                        }
                    },
                    "topologyKey": LABEL_HOSTNAME,
                }
            ]
        },
    }


def _volumes_and_mounts(
    plan: Plan, *, with_config: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if with_config:
        volumes.append({"name": "kaito-config", "configMap": {"name": config_map_name(plan.workspace.name)}})
        mounts.append({"name": "kaito-config", "mountPath": CONFIG_DIR, "readOnly": True})
    seen: set[str] = {"dshm", "kaito-config"}
    for m in plan.mounts:
        name = m.volume["name"]
        if name not in seen:
            volumes.append(copy.deepcopy(m.volume))
            seen.add(name)
        mount: dict[str, Any] = {"name": name, "mountPath": m.mount_path}
        if m.read_only:
            mount["readOnly"] = True
        if m.sub_path:
            mount["subPath"] = m.sub_path
        mounts.append(mount)
    return volumes, mounts


def _env(plan: Plan) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "KAITO_WORKSPACE", "value": plan.workspace.name},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    for s in plan.secret_env:
        ref: dict[str, Any] = {"name": s.secret, "key": s.key}
        if s.optional:
            ref["optional"] = True
        env.append({"name": s.env, "valueFrom": {"secretKeyRef": ref}})
    return env


def _pod_template(plan: Plan, *, role: str, with_config: bool) -> dict[str, Any]:
    volumes, mounts = _volumes_and_mounts(plan, with_config=with_config)
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": plan.runtime_image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(plan),
        "volumeMounts": mounts,
    }
    if role == "head":
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
        container["resources"] = {"requests": {"cpu": "1", "memory": "4Gi"}}
    else:
        gpus = str(plan.nodes.gpus_per_node)
        container["ports"] = [{"containerPort": SERVE_PORT, "name": "serve"}]
        container["resources"] = {"requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}}
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "tolerations": _tolerations(),
        "affinity": _affinity(plan, role=role),
    }
    if plan.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in plan.image_pull_secrets]
    labels = {**workspace_labels(plan.workspace.name, plan.workspace.namespace), LABEL_RAY_ROLE: role}
    return {"metadata": {"labels": labels}, "spec": spec}


def build_ray_cluster_spec(plan: Plan, *, with_config: bool) -> dict[str, Any]:
    """A head without GPUs and one worker group with one pod per node, each taking all of its GPUs."""
    count = plan.nodes.target_count
    return {
        "rayVersion": plan.ray_version,
        "headGroupSpec": {
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
            "template": _pod_template(plan, role="head", with_config=with_config),
        },
        "workerGroupSpecs": [
            {
                "groupName": "gpu",
                "replicas": count,
                "minReplicas": count,
                "maxReplicas": count,
                "rayStartParams": {"num-gpus": str(plan.nodes.gpus_per_node)},
                "template": _pod_template(plan, role="worker", with_config=with_config),
            }
        ],
    }


def build_rayjob(plan: Plan) -> dict[str, Any]:
    """The tuning RayJob: `kaito-runtime tune` with the config from the workspace's ConfigMap."""
    if plan.tuning is None:
        raise ValueError(f"workspace {plan.workspace.name!r} has no tuning plan")
    t = plan.tuning
    spec: dict[str, Any] = {
        "entrypoint": f"kaito-runtime tune --config {CONFIG_DIR}/{t.config_file}",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": t.ttl_seconds_after_finished,
        "backoffLimit": t.backoff_limit,
        "submissionMode": "K8sJobMode",
        "rayClusterSpec": build_ray_cluster_spec(plan, with_config=True),
    }
    if t.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = t.active_deadline_seconds
    meta = owned_metadata(plan.workspace, ray_name(plan.workspace.name))
    # The config travels in a ConfigMap, so it is part of the job's revision too.
    meta["annotations"] = {ANNOTATION_REVISION: revision({"spec": spec, "config": t.config})}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta, "spec": spec}


def serve_config_v2(plan: Plan) -> str:
    """KubeRay's serveConfigV2: one application importing the ray-runtime Serve app with resolved args."""
    if plan.serving is None:
        raise ValueError(f"workspace {plan.workspace.name!r} has no serving plan")
    doc = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [
            {
                "name": "kaito",
                "route_prefix": "/",
                "import_path": SERVE_IMPORT_PATH,
                "args": plan.serving.config,
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def build_rayservice(plan: Plan) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serveConfigV2": serve_config_v2(plan),
        "rayClusterConfig": build_ray_cluster_spec(plan, with_config=False),
    }
    meta = owned_metadata(plan.workspace, ray_name(plan.workspace.name))
    meta["annotations"] = {ANNOTATION_REVISION: revision(spec)}
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": meta, "spec": spec}
