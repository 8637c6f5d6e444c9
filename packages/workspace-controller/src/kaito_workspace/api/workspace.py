"""Typed models of the Kaito Workspace (kaito.sh/v1alpha1 and kaito.sh/v1beta1).

Both versions share one shape (v1beta1 adds `resource.partition` and `presetOptions.modelAccessSecret`),
so both parse into `Workspace`; `api_version` records which one the document used. A Workspace has no
`spec`: `resource`, `inference` and `tuning` sit at the top level, as in Kaito.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from .base import ApiModel, unknown_fields
from .problems import Problem, problems_from_validation_error
from .status import WorkspaceStatus

GROUP = "kaito.sh"
VERSIONS = ("v1alpha1", "v1beta1")
API_VERSIONS = tuple(f"{GROUP}/{v}" for v in VERSIONS)
STORAGE_VERSION = "v1beta1"
KIND = "Workspace"

ANNOTATION_BYPASS_RESOURCE_CHECKS = "kaito.sh/bypass-resource-checks"
ANNOTATION_PERFORMANCE_MODE = "kaito.sh/performance-mode"
ANNOTATION_NODE_IMAGE_FAMILY = "kaito.sh/node-image-family"


class ObjectMeta(ApiModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(ApiModel):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class PartitionSpec(ApiModel):
    """GPU partitioning on BYO nodes: `mig` (one MIG slice, `profile`) or `accelerator` (`count` GPUs)."""

    mode: str
    profile: str | None = None
    count: int | None = Field(default=None, ge=1)


class ResourceSpec(ApiModel):
    count: int = Field(default=1, ge=1)
    instance_type: str | None = None
    label_selector: LabelSelector
    preferred_nodes: list[str] | None = None
    partition: PartitionSpec | None = None


class PresetOptions(ApiModel):
    image: str | None = None
    image_pull_secrets: list[str] | None = None
    model_access_secret: str | None = None


class PresetSpec(ApiModel):
    name: str
    access_mode: Literal["public", "private"] | None = None
    preset_options: PresetOptions | None = None


class DataSource(ApiModel):
    """Where data comes from: exactly one of `urls`, `image`, `volumeSource` (a Kubernetes volume source)."""

    name: str | None = None
    urls: list[str] | None = None
    image: str | None = None
    image_pull_secrets: list[str] | None = None
    volume_source: dict[str, Any] | None = None


class DataDestination(ApiModel):
    """Where tuning output goes: exactly one of `image` (+ `imagePushSecret`) or `volumeSource`."""

    image: str | None = None
    image_push_secret: str | None = None
    volume_source: dict[str, Any] | None = None


class AdapterSpec(ApiModel):
    source: DataSource | None = None
    # A string in Kaito's API ("language agnostic"); validation parses it as a float in [0, 1].
    strength: str | None = None


class InferenceSpec(ApiModel):
    preset: PresetSpec | None = None
    template: dict[str, Any] | None = None
    config: str | None = None
    adapters: list[AdapterSpec] | None = None


class TuningSpec(ApiModel):
    preset: PresetSpec | None = None
    method: str | None = None
    config: str | None = None
    input: DataSource
    output: DataDestination


class Workspace(ApiModel):
    api_version: str = f"{GROUP}/{STORAGE_VERSION}"
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpec | None = None
    inference: InferenceSpec | None = None
    tuning: TuningSpec | None = None
    status: WorkspaceStatus | None = None

    # -- convenience accessors used by the controller and the CLI --
    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.metadata.annotations or {})

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def workload(self) -> Literal["inference", "tuning"] | None:
        if self.tuning is not None and self.inference is None:
            return "tuning"
        if self.inference is not None and self.tuning is None:
            return "inference"
        return None

    @property
    def preset(self) -> PresetSpec | None:
        spec = self.tuning if self.tuning is not None else self.inference
        return spec.preset if spec is not None else None

    @property
    def bypass_resource_checks(self) -> bool:
        return ANNOTATION_BYPASS_RESOURCE_CHECKS in self.annotations

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Workspace:
        """Parse a Workspace document; raises pydantic.ValidationError on type errors."""
        return cls.model_validate(doc)

    def unknown_fields(self) -> list[Problem]:
        """Fields in the document that the API does not define (status excluded: the controller owns it)."""
        problems = []
        for p in unknown_fields(self):
            if not p.path.startswith("status"):
                problems.append(p)
        return problems


def parse_workspace(doc: Any) -> tuple[Workspace | None, list[Problem]]:
    """Parse a document into a Workspace. Returns (workspace, problems): the workspace is None when the
    document's types are wrong; unknown fields are returned as problems but do not stop parsing."""
    if not isinstance(doc, dict):
        return None, [Problem("", "a Workspace document must be a mapping", "check the YAML indentation")]
    problems: list[Problem] = []
    api_version = doc.get("apiVersion")
    if api_version not in API_VERSIONS:
        problems.append(
            Problem(
                "apiVersion",
                f"unsupported apiVersion {api_version!r}",
                f"use one of {', '.join(API_VERSIONS)}",
            )
        )
    if doc.get("kind") != KIND:
        problems.append(
            Problem("kind", f"kind must be {KIND!r}, got {doc.get('kind')!r}", f"set kind: {KIND}")
        )
    try:
        ws = Workspace.from_dict(doc)
    except ValidationError as err:
        return None, problems + problems_from_validation_error(err)
    return ws, problems + ws.unknown_fields()
