"""Initialization: the Node is Ready, its startup and ephemeral taints are gone, requested resources exist."""

from __future__ import annotations

from typing import Any

from ..conditions import ConditionSet
from ..kube import node_path
from ..model import (
    EPHEMERAL_TAINT_KEYS,
    INITIALIZED,
    LABEL_INITIALIZED,
    REGISTERED,
    WELL_KNOWN_RESOURCES,
    Claim,
    Taint,
)
from ..quantity import is_positive
from .context import Context, Result


def evaluate(claim: Claim, node: dict[str, Any] | None) -> tuple[str, str, str]:
    """Pure: (status, reason, message) of the Initialized condition, with Karpenter's reasons."""
    if node is None:
        return "Unknown", "NodeNotFound", "Node not registered with cluster"
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        return "Unknown", "NodeNotReady", "Node status is NotReady"
    taints = [Taint.model_validate(t) for t in (node.get("spec") or {}).get("taints") or []]
    for startup in claim.startup_taints:
        if any(startup.matches(t) for t in taints):
            return "Unknown", "StartupTaintsExist", f"StartupTaint {startup.key!r} still exists"
    for t in taints:
        if t.key in EPHEMERAL_TAINT_KEYS:
            return "Unknown", "KnownEphemeralTaintsExist", f"KnownEphemeralTaint {t.key!r} still exists"
    allocatable = status.get("allocatable") or {}
    wanted = {**claim.allocatable, **claim.requests}
    for name, quantity in wanted.items():
        if name in WELL_KNOWN_RESOURCES or not is_positive(quantity):
            continue
        if not is_positive(allocatable.get(name)):
            return "Unknown", "ResourceNotRegistered", f"Resource {name!r} was requested but not registered"
    return "True", INITIALIZED, ""


async def reconcile(ctx: Context, claim: Claim, conditions: ConditionSet) -> Result:
    if not claim.is_true(REGISTERED) or claim.is_true(INITIALIZED):
        return Result()
    nodes = await ctx.nodes_for(claim)
    node = nodes[0] if len(nodes) == 1 else None
    status, reason, message = evaluate(claim, node)
    if status != "True" or node is None:
        conditions.set(INITIALIZED, status, reason, message)  # type: ignore[arg-type]
        return Result(requeue=ctx.settings.registration_poll)
    await ctx.kube.patch(
        node_path(node["metadata"]["name"]), {"metadata": {"labels": {LABEL_INITIALIZED: "true"}}}
    )
    conditions.set_true(INITIALIZED)
    await ctx.events.record(claim, "Normal", "Initialized", f"Node {node['metadata']['name']} is initialized")
    return Result()
