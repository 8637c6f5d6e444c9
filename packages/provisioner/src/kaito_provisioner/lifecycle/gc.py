"""Garbage collection: instances without a claim (after a grace period), claims whose instance vanished."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from ..adapters import ADAPTERS
from ..kube import custom_path, node_path
from ..metrics import GC_DELETIONS
from ..model import FINALIZER, LAUNCHED, Claim, is_managed
from ..providers.base import CloudProviderError, Instance, NotFoundError
from .context import Context

log = logging.getLogger(__name__)
AGENTPOOL_LABELS = ("kubernetes.azure.com/agentpool", "agentpool")


def orphans(instances: list[Instance], claim_names: set[str], now: datetime, grace: float) -> list[Instance]:
    """Pure: instances no claim accounts for, older than ``grace`` seconds (unknown age: never)."""
    return [
        i
        for i in instances
        if i.name not in claim_names
        and i.created_at is not None
        and now - i.created_at > timedelta(seconds=grace)
    ]


def nodes_of(instance: Instance, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n in nodes:
        labels = n["metadata"].get("labels") or {}
        pid = (n.get("spec") or {}).get("providerID", "")
        if (instance.provider_id and pid == instance.provider_id) or any(
            labels.get(k) == instance.name for k in AGENTPOOL_LABELS
        ):
            out.append(n)
    return out


async def list_claims(ctx: Context) -> list[Claim] | None:
    """All claims of every kind this operator serves; None when the API could not be read."""
    claims: list[Claim] = []
    for kind, adapter in ADAPTERS.items():
        if kind == "Machine" and not ctx.settings.watch_machines:
            continue
        try:
            items = await ctx.kube.list(custom_path(adapter.group, adapter.version, adapter.plural))
        except Exception as exc:
            if getattr(exc, "status", None) == 404:  # CRD not installed
                continue
            log.warning("gc: cannot list %s: %s", adapter.plural, exc)
            return None
        claims.extend(adapter.parse(obj) for obj in items)
    return claims


async def collect(ctx: Context) -> None:
    claims = await list_claims(ctx)
    if claims is None:
        return
    now = ctx.now()
    instances = await ctx.provider.list()
    gone = orphans(instances, {c.name for c in claims}, now, ctx.settings.gc_grace)
    if gone:
        nodes = await ctx.kube.list(node_path())
        for instance in gone:
            log.warning("gc: deleting orphaned instance %s (no claim)", instance.name)
            for node in nodes_of(instance, nodes):
                await ctx.kube.delete(node_path(node["metadata"]["name"]))
                fins = [f for f in node["metadata"].get("finalizers") or [] if f != FINALIZER]
                await ctx.kube.patch(node_path(node["metadata"]["name"]), {"metadata": {"finalizers": fins}})
            stub = Claim(kind="NodeClaim", api_version="karpenter.sh/v1", name=instance.name)
            stub.provider_id = instance.provider_id
            try:
                await ctx.provider.delete(stub)
            except NotFoundError:
                pass
            except CloudProviderError as err:
                log.warning("gc: deleting %s failed: %s", instance.name, err)
                continue
            GC_DELETIONS.labels("instance").inc()
    for claim in claims:
        if claim.deleting or not is_managed(claim) or not claim.provider_id or not claim.is_true(LAUNCHED):
            continue
        launched = claim.condition(LAUNCHED)
        if launched is not None and now - launched.last_transition_time < timedelta(
            seconds=ctx.settings.gc_grace
        ):
            continue
        try:
            await ctx.provider.get(claim.provider_id)
        except NotFoundError:
            log.warning("gc: instance of claim %s is gone; deleting the claim", claim.name)
            await ctx.events.record(
                claim, "Warning", "InstanceTerminated", f"Instance {claim.provider_id} no longer exists"
            )
            adapter = ADAPTERS[claim.kind]
            await ctx.kube.delete(custom_path(adapter.group, adapter.version, adapter.plural, claim.name))
            GC_DELETIONS.labels("claim").inc()
        except CloudProviderError as err:
            log.warning("gc: looking up %s failed: %s", claim.provider_id, err)
