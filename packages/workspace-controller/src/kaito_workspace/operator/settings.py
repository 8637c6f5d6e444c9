"""Operator settings (from `kaito-workspace operator` flags / the chart's values)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from kaito_workspace.planning.facts import NodeProvisioner, PlannerSettings
from kaito_workspace.planning.model import DEFAULT_RAY_VERSION, default_runtime_image


class OperatorSettings(BaseModel):
    node_provisioner: NodeProvisioner = "gpu-provisioner"
    runtime_image: str = Field(default_factory=default_runtime_image)
    ray_version: str = DEFAULT_RAY_VERSION
    #: Namespaces whose Workspaces are served; empty = cluster-wide.
    namespaces: list[str] = Field(default_factory=list)
    #: Where the default tuning templates (qlora-params-template, lora-params-template) live.
    controller_namespace: str = "kaito-workspace"
    webhook: Literal["on", "off"] = "on"
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 9443
    webhook_cert: Path | None = None
    webhook_key: Path | None = None
    #: Plain-HTTP webhook server (tests, or behind a TLS-terminating proxy).
    webhook_insecure: bool = False
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    #: Level-triggered resync of every workspace, seconds.
    resync_seconds: float = 10.0
    #: How often tuning progress is fetched from the Ray dashboard while a job runs, seconds.
    progress_seconds: float = 15.0
    node_class: str = "image-family-ubuntu"
    #: The user's own machine (the dev cluster): loopback data URLs and hostPath volumes are allowed.
    local: bool = False
    kubeconfig: Path | None = None

    def planner(self) -> PlannerSettings:
        return PlannerSettings(
            node_provisioner=self.node_provisioner,
            runtime_image=self.runtime_image,
            ray_version=self.ray_version,
            node_class=self.node_class,
            controller_namespace=self.controller_namespace,
        )
