"""The internal model of a claim: one shape for NodeClaim (karpenter.sh/v1) and Machine (v1alpha5).

Adapters (``adapters.py``) translate the two API versions into this model and back; the lifecycle only
ever sees a :class:`Claim`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FINALIZER = "karpenter.sh/termination"
LABEL_REGISTERED = "karpenter.sh/registered"
LABEL_INITIALIZED = "karpenter.sh/initialized"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
LABEL_PROVISIONER_NAME = "karpenter.sh/provisioner-name"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_OS = "kubernetes.io/os"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_WORKSPACE = "kaito.sh/workspace"
LABEL_RAGENGINE = "kaito.sh/ragengine"
LABEL_CREATION_TIMESTAMP = "kaito.sh/creation-timestamp"
LABEL_MANAGED_BY = "kaito.sh/managed-by"
MANAGED_BY = "gpu-provisioner"
ANNOTATION_NODE_IMAGE_FAMILY = "kaito.sh/node-image-family"
ANNOTATION_LAUNCH_CHECKPOINT = "kaito.sh/launch-checkpoint"
UNREGISTERED_TAINT_KEY = "karpenter.sh/unregistered"
NODE_CLASS_GROUP = "kaito.sh"
NODE_CLASS_KIND = "KaitoNodeClass"

# Taints the kubelet / cloud provider put on every new node and remove by themselves (Karpenter's list).
EPHEMERAL_TAINT_KEYS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.cloudprovider.kubernetes.io/uninitialized",
        UNREGISTERED_TAINT_KEY,
    }
)
# Resources every node reports; "extended" resources are everything else.
WELL_KNOWN_RESOURCES = frozenset({"cpu", "memory", "pods", "ephemeral-storage", "storage"})

ConditionStatus = Literal["True", "False", "Unknown"]
LAUNCHED, REGISTERED, INITIALIZED, READY = "Launched", "Registered", "Initialized", "Ready"
DEPENDENTS = (LAUNCHED, REGISTERED, INITIALIZED)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Taint(_Model):
    key: str
    effect: str
    value: str | None = None
    time_added: str | None = Field(default=None, alias="timeAdded")

    def matches(self, other: Taint) -> bool:
        """Kubernetes' MatchTaint: same key and effect."""
        return self.key == other.key and self.effect == other.effect

    def to_api(self) -> dict[str, str]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Requirement(_Model):
    key: str
    operator: str
    values: list[str] = Field(default_factory=list)
    min_values: int | None = Field(default=None, alias="minValues")


class NodeClassRef(_Model):
    group: str = ""
    kind: str = ""
    name: str = ""


class Condition(_Model):
    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    observed_generation: int = Field(default=0, alias="observedGeneration")


class Claim(_Model):
    """A NodeClaim or a Machine, version-independent."""

    kind: Literal["NodeClaim", "Machine"]
    api_version: str
    name: str
    uid: str = ""
    generation: int = 1
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    creation_timestamp: datetime = Field(default_factory=utcnow)
    deletion_timestamp: datetime | None = None
    node_class_ref: NodeClassRef | None = None
    requirements: list[Requirement] = Field(default_factory=list)
    taints: list[Taint] = Field(default_factory=list)
    startup_taints: list[Taint] = Field(default_factory=list)
    requests: dict[str, str] = Field(default_factory=dict)
    # status
    provider_id: str = ""
    image_id: str = ""
    node_name: str = ""
    capacity: dict[str, str] = Field(default_factory=dict)
    allocatable: dict[str, str] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        c = self.condition(type_)
        return c is not None and c.status == "True"

    def requirement_values(self, key: str) -> list[str]:
        for r in self.requirements:
            if r.key == key and r.operator == "In":
                return list(r.values)
        return []

    def single_value_labels(self) -> dict[str, str]:
        """Labels implied by requirements with exactly one allowed value (Karpenter's Labels())."""
        out: dict[str, str] = {}
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                out[r.key] = r.values[0]
        return out

    @property
    def instance_type(self) -> str:
        values = self.requirement_values(LABEL_INSTANCE_TYPE)
        return values[0] if values else ""


def is_managed(claim: Claim) -> bool:
    """Only claims for our NodeClass, or created by Kaito (workspace / ragengine labels), are ours."""
    ref = claim.node_class_ref
    if ref is not None and ref.kind == NODE_CLASS_KIND and ref.group in ("", NODE_CLASS_GROUP):
        return True
    return LABEL_WORKSPACE in claim.labels or LABEL_RAGENGINE in claim.labels
