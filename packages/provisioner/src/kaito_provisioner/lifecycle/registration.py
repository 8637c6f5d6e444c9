"""Registration: find the Node with the claim's providerID and make it the claim's (Karpenter semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..adapters import Adapter
from ..conditions import ConditionSet
from ..kube import node_path
from ..metrics import REGISTRATION_SECONDS
from ..model import FINALIZER, LABEL_REGISTERED, LAUNCHED, REGISTERED, UNREGISTERED_TAINT_KEY, Claim, Taint
from .context import Context, Result


@dataclass
class Registration:
    status: str
    reason: str
    message: str = ""
    node_name: str = ""
    node_patch: dict[str, Any] | None = None


def plan(claim: Claim, nodes: list[dict[str, Any]], adapter: Adapter) -> Registration:
    """Pure: the Registered condition and the patch that adopts the Node."""
    if not nodes:
        return Registration("Unknown", "NodeNotFound", "Node not registered with cluster")
    if len(nodes) > 1:
        return Registration("False", "MultipleNodesFound", "Invariant violated, matched multiple nodes")
    node = nodes[0]
    meta = node["metadata"]
    labels = dict(meta.get("labels") or {})
    taints = [Taint.model_validate(t) for t in (node.get("spec") or {}).get("taints") or []]
    if labels.get(LABEL_REGISTERED) != "true":
        # Taints are added once, at first registration; afterwards the node owns them.
        for t in [*claim.taints, *claim.startup_taints]:
            if not any(t.matches(existing) for existing in taints):
                taints.append(t)
    taints = [t for t in taints if t.key != UNREGISTERED_TAINT_KEY]
    owner = adapter.owner_reference(claim)
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("uid") != claim.uid]
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER not in finalizers:
        finalizers.append(FINALIZER)
    patch = {
        "metadata": {
            "labels": {**claim.labels, LABEL_REGISTERED: "true"},
            "finalizers": finalizers,
            "ownerReferences": [*owners, owner],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": {"taints": [t.to_api() for t in taints]},
    }
    return Registration("True", REGISTERED, node_name=meta["name"], node_patch=patch)


async def reconcile(ctx: Context, claim: Claim, conditions: ConditionSet, adapter: Adapter) -> Result:
    if not claim.is_true(LAUNCHED) or claim.is_true(REGISTERED):
        return Result()
    result = plan(claim, await ctx.nodes_for(claim), adapter)
    if result.status != "True":
        conditions.set(REGISTERED, result.status, result.reason, result.message)  # type: ignore[arg-type]
        return Result(requeue=ctx.settings.registration_poll)
    patch = result.node_patch
    if patch is not None and await ctx.kube.patch(node_path(result.node_name), patch) is None:
        return Result(requeue=ctx.settings.registration_poll)
    claim.node_name = result.node_name
    launched = claim.condition(LAUNCHED)
    conditions.set_true(REGISTERED)
    if launched is not None:
        REGISTRATION_SECONDS.observe(max((ctx.now() - launched.last_transition_time).total_seconds(), 0))
    await ctx.events.record(
        claim, "Normal", "Registered", f"Status condition transitioned, node {result.node_name}"
    )
    return Result()
