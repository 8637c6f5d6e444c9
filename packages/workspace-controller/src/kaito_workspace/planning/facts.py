"""Inputs to planning besides the Workspace: preset and GPU facts, cluster observations, settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kaito_workspace.planning.model import DEFAULT_RAY_VERSION, DEFAULT_RUNTIME_IMAGE_REPO

NodeProvisioner = Literal["gpu-provisioner", "byo"]


class PresetFacts(BaseModel):
    """What planning needs to know about a model preset (taken from `kaito_workspace.presets`)."""

    name: str
    hf_id: str | None = None
    revision: str | None = None
    inference_gpu_memory_gib: float | None = None
    tuning_gpu_memory_gib: dict[str, float] = Field(default_factory=dict)
    min_gpus: int = 1
    disk_storage: str = "100Gi"
    tuning_supported: bool = True
    download_auth_required: bool = False
    lora_target_modules: list[str] = Field(default_factory=list)


class SkuFacts(BaseModel):
    name: str
    gpu_count: int
    gpu_memory_gib: float
    gpu_model: str = ""
    bf16: bool = True


class ClusterFacts(BaseModel):
    """What the operator observed in the cluster (the CLI renders with the defaults)."""

    #: Ready nodes matching the workspace's labelSelector that no NodeClaim of this workspace created.
    byo_nodes: list[str] = Field(default_factory=list)
    #: GPUs allocatable per BYO node (`nvidia.com/gpu`).
    node_gpus: dict[str, int] = Field(default_factory=dict)
    #: NodeClaims already labelled for this workspace.
    existing_nodeclaims: list[str] = Field(default_factory=list)
    #: accessModes of PVCs the workspace references, by claim name.
    pvc_access_modes: dict[str, list[str]] = Field(default_factory=dict)
    #: The `training_config` mapping from the tuning ConfigMap (or the default template).
    training_config: dict[str, Any] | None = None
    #: The parsed `inference_config.yaml` of the ConfigMap named by `inference.config`.
    inference_config: dict[str, Any] | None = None
    #: True once the tuning RayJob succeeded (serve-after-tuning then adds the RayService).
    tuning_succeeded: bool = False


class PlannerSettings(BaseModel):
    node_provisioner: NodeProvisioner = "gpu-provisioner"
    runtime_image: str = f"{DEFAULT_RUNTIME_IMAGE_REPO}:0.1.0"
    ray_version: str = DEFAULT_RAY_VERSION
    node_class: str = "image-family-ubuntu"
    #: Namespace of the controller, where the default tuning templates live.
    controller_namespace: str = "kaito-workspace"
    tuning_ttl_seconds: int = 3600
    tuning_backoff_limit: int = 2
