"""Two thin adapters: NodeClaim (karpenter.sh/v1) and Machine (karpenter.sh/v1alpha5) <-> :class:`Claim`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from .model import (
    DEPENDENTS,
    INITIALIZED,
    LAUNCHED,
    READY,
    REGISTERED,
    Claim,
    Condition,
    NodeClassRef,
    Requirement,
    Taint,
)


def format_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Adapter:
    """Maps one API version of a claim kind onto the internal model."""

    group: ClassVar[str] = "karpenter.sh"
    version: ClassVar[str]
    plural: ClassVar[str]
    kind: ClassVar[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def parse(self, obj: dict[str, Any]) -> Claim:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        created = parse_time(meta.get("creationTimestamp"))
        claim = Claim(
            kind=self.kind,  # type: ignore[arg-type]
            api_version=self.api_version,
            name=meta["name"],
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 1),
            resource_version=meta.get("resourceVersion", ""),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            finalizers=list(meta.get("finalizers") or []),
            deletion_timestamp=parse_time(meta.get("deletionTimestamp")),
            node_class_ref=self._node_class_ref(spec),
            requirements=[Requirement.model_validate(r) for r in spec.get("requirements") or []],
            taints=[Taint.model_validate(t) for t in spec.get("taints") or []],
            startup_taints=[Taint.model_validate(t) for t in spec.get("startupTaints") or []],
            requests={k: str(v) for k, v in ((spec.get("resources") or {}).get("requests") or {}).items()},
            provider_id=status.get("providerID", ""),
            image_id=status.get("imageID", ""),
            node_name=status.get("nodeName", ""),
            capacity={k: str(v) for k, v in (status.get("capacity") or {}).items()},
            allocatable={k: str(v) for k, v in (status.get("allocatable") or {}).items()},
        )
        if created is not None:
            claim.creation_timestamp = created
        claim.conditions = self._parse_conditions(status.get("conditions") or [], claim.generation)
        return claim

    def status(self, claim: Claim) -> dict[str, Any]:
        """The ``status`` body to write back (a merge patch of the status subresource)."""
        out: dict[str, Any] = {"conditions": self._render_conditions(claim)}
        if claim.provider_id:
            out["providerID"] = claim.provider_id
        if claim.node_name:
            out["nodeName"] = claim.node_name
        if claim.capacity:
            out["capacity"] = dict(claim.capacity)
        if claim.allocatable:
            out["allocatable"] = dict(claim.allocatable)
        if claim.image_id and self.kind == "NodeClaim":
            out["imageID"] = claim.image_id
        return out

    def owner_reference(self, claim: Claim) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": claim.name,
            "uid": claim.uid,
            "blockOwnerDeletion": True,
        }

    # per-version hooks
    def _node_class_ref(self, spec: dict[str, Any]) -> NodeClassRef | None:
        raise NotImplementedError

    def _parse_conditions(self, raw: list[dict[str, Any]], generation: int) -> list[Condition]:
        raise NotImplementedError

    def _render_conditions(self, claim: Claim) -> list[dict[str, Any]]:
        raise NotImplementedError


class NodeClaimAdapter(Adapter):
    version = "v1"
    plural = "nodeclaims"
    kind = "NodeClaim"

    def _node_class_ref(self, spec: dict[str, Any]) -> NodeClassRef | None:
        ref = spec.get("nodeClassRef")
        return NodeClassRef.model_validate(ref) if ref else None

    def _parse_conditions(self, raw: list[dict[str, Any]], generation: int) -> list[Condition]:
        return [Condition.model_validate(c) for c in raw if c.get("lastTransitionTime")]

    def _render_conditions(self, claim: Claim) -> list[dict[str, Any]]:
        return [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": format_time(c.last_transition_time),
                "observedGeneration": c.observed_generation,
            }
            for c in claim.conditions
        ]


# Machine (v0.31) condition types, and the knative "living" Ready derivation it used.
MACHINE_TYPES = {
    LAUNCHED: "MachineLaunched",
    REGISTERED: "MachineRegistered",
    INITIALIZED: "MachineInitialized",
    READY: READY,
}
_FROM_MACHINE = {v: k for k, v in MACHINE_TYPES.items()}


def machine_ready(claim: Claim) -> tuple[str, str, str]:
    """knative's living condition set: Ready mirrors the first False dependent, else the first Unknown."""
    deps = [claim.condition(t) for t in DEPENDENTS]
    for status in ("False", "Unknown"):
        for c in deps:
            if c is None:
                if status == "Unknown":
                    return "Unknown", "", ""
                continue
            if c.status == status:
                return status, c.reason, c.message
    return "True", "", ""


class MachineAdapter(Adapter):
    version = "v1alpha5"
    plural = "machines"
    kind = "Machine"

    def _node_class_ref(self, spec: dict[str, Any]) -> NodeClassRef | None:
        ref = spec.get("machineTemplateRef")
        if not ref:
            return None
        group = (ref.get("apiVersion") or "").split("/")[0] if "/" in (ref.get("apiVersion") or "") else ""
        return NodeClassRef(group=group, kind=ref.get("kind", ""), name=ref.get("name", ""))

    def _parse_conditions(self, raw: list[dict[str, Any]], generation: int) -> list[Condition]:
        out = []
        for c in raw:
            internal = _FROM_MACHINE.get(c.get("type", ""))
            ltt = parse_time(c.get("lastTransitionTime"))
            if internal is None or ltt is None:
                continue
            out.append(
                Condition(
                    type=internal,
                    status=c["status"],
                    reason=c.get("reason", ""),
                    message=c.get("message", ""),
                    lastTransitionTime=ltt,
                    observedGeneration=generation,
                )
            )
        return out

    def _render_conditions(self, claim: Claim) -> list[dict[str, Any]]:
        out = []
        ready_status, ready_reason, ready_message = machine_ready(claim)
        for c in claim.conditions:
            status: str = c.status
            reason, message = c.reason, c.message
            if c.type == READY:
                status, reason, message = ready_status, ready_reason, ready_message
            item = {
                "type": MACHINE_TYPES[c.type],
                "status": status,
                "severity": "" if status == "True" else "Error",
                "lastTransitionTime": format_time(c.last_transition_time),
            }
            if reason:
                item["reason"] = reason
            if message:
                item["message"] = message
            out.append(item)
        return out


ADAPTERS: dict[str, Adapter] = {"NodeClaim": NodeClaimAdapter(), "Machine": MachineAdapter()}


def adapter_for(claim: Claim) -> Adapter:
    return ADAPTERS[claim.kind]
