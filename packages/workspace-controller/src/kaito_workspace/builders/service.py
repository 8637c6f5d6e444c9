"""The Service named after the workspace: port 80 -> Ray Serve (8000), 8265 -> the Ray dashboard."""

from __future__ import annotations

from typing import Any

from kaito_workspace.builders.common import owned_metadata
from kaito_workspace.builders.ray import DASHBOARD_PORT, SERVE_PORT
from kaito_workspace.planning.model import Plan
from kaito_workspace.planning.names import LABEL_RAY_ROLE, workspace_labels


def service_selector(plan: Plan, active_cluster: str | None = None) -> dict[str, str]:
    """Select the head pod of the workspace's Ray cluster by labels we put on our own pod templates.

    The labels survive a RayService upgrade (the new RayCluster's pods carry them too). While an
    upgrade runs, both clusters' heads match; once the RayService reports its active cluster, the
    controller pins the selector to it with `ray.io/cluster` so traffic never reaches a pending one.
    """
    selector = {**workspace_labels(plan.workspace.name, plan.workspace.namespace), LABEL_RAY_ROLE: "head"}
    if active_cluster:
        selector["ray.io/cluster"] = active_cluster
    return selector


def build_service(plan: Plan, active_cluster: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owned_metadata(plan.workspace, plan.workspace.name),
        "spec": {
            "type": "ClusterIP",
            "selector": service_selector(plan, active_cluster),
            "ports": [
                {"name": "http", "port": 80, "targetPort": SERVE_PORT, "protocol": "TCP"},
                {
                    "name": "dashboard",
                    "port": DASHBOARD_PORT,
                    "targetPort": DASHBOARD_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }
