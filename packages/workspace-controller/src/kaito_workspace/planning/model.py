"""The resolved plan: everything the builders need, as plain typed data.

The planner turns a Workspace (plus its preset and a few cluster facts) into a `Plan`; the builders turn
a `Plan` into Kubernetes manifests. Neither step talks to a cluster, so both are tested by value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RUNTIME_IMAGE_REPO = "ghcr.io/kaito-ray/ray-runtime"
DEFAULT_RAY_VERSION = "2.60.0"


def default_runtime_image() -> str:
    """`ghcr.io/kaito-ray/ray-runtime:<version of the kaito-ray-runtime package>`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tag = version("kaito-ray-runtime")
    except PackageNotFoundError:
        from kaito_workspace import __version__ as tag
    return f"{DEFAULT_RUNTIME_IMAGE_REPO}:{tag}"


class WorkspaceRef(BaseModel):
    """Identity of the Workspace that owns the generated objects."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    api_version: str = "kaito.sh/v1beta1"
    kind: str = "Workspace"


class NodeClaimPlan(BaseModel):
    """One NodeClaim to create (or keep)."""

    name: str
    instance_type: str
    storage: str = "100Gi"
    labels: dict[str, str] = Field(default_factory=dict)
    node_class: str = "image-family-ubuntu"
    node_image_family: str = "ubuntu"


class NodePlan(BaseModel):
    """Where the workload runs: the target count, BYO nodes and NodeClaims to fill the rest."""

    target_count: int
    instance_type: str | None = None
    gpus_per_node: int = 1
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[dict[str, Any]] = Field(default_factory=list)
    byo_nodes: list[str] = Field(default_factory=list)
    nodeclaims: list[NodeClaimPlan] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Mount(BaseModel):
    """A pod volume (a Kubernetes `Volume` dict) and where the runtime containers mount it."""

    volume: dict[str, Any]
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


class SecretEnv(BaseModel):
    """An environment variable filled from a Secret key (never written into a ConfigMap)."""

    env: str
    secret: str
    key: str
    optional: bool = False


class TuningPlan(BaseModel):
    config: dict[str, Any]
    config_file: str = "tune.yaml"
    backoff_limit: int = 2
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: int | None = None


class ServingPlan(BaseModel):
    config: dict[str, Any]
    num_replicas: int = 1
    gpus_per_replica: int = 1


class Plan(BaseModel):
    """Everything the operator would create for one Workspace, fully resolved."""

    workspace: WorkspaceRef
    mode: Literal["tuning", "inference"]
    nodes: NodePlan
    runtime_image: str = f"{DEFAULT_RUNTIME_IMAGE_REPO}:0.1.0"
    ray_version: str = DEFAULT_RAY_VERSION
    image_pull_secrets: list[str] = Field(default_factory=list)
    mounts: list[Mount] = Field(default_factory=list)
    secret_env: list[SecretEnv] = Field(default_factory=list)
    tuning: TuningPlan | None = None
    serving: ServingPlan | None = None
    #: True when this inference plan serves the adapter produced by the workspace's own tuning job.
    serve_after_tuning: bool = False
    notes: list[str] = Field(default_factory=list)
