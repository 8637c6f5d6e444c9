"""Termination: delete the Node(s), delete the instance until the provider says NotFound, drop finalizers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..kube import node_path
from ..metrics import TERMINATIONS
from ..model import FINALIZER, Claim
from ..providers.base import CloudProviderError, NotFoundError
from .context import Context, Result

log = logging.getLogger(__name__)


async def reconcile(ctx: Context, claim: Claim) -> Result:
    if FINALIZER not in claim.finalizers:
        return Result()
    # A launch still in flight is abandoned; the instance (if any) is deleted by name below.
    task = ctx.launches.pop(claim.uid, None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
    nodes = await ctx.nodes_for(claim)
    if not nodes and not claim.provider_id:
        named = await ctx.kube.get(node_path(claim.name))
        nodes = [named] if named is not None and _owned_by(named, claim) else []
    for node in nodes:
        if not node["metadata"].get("deletionTimestamp"):
            await ctx.kube.delete(node_path(node["metadata"]["name"]))
    try:
        await ctx.provider.delete(claim)
    except NotFoundError:
        pass
    except CloudProviderError as err:
        await ctx.events.record(
            claim, "Warning", "TerminationFailed", f"Deleting the instance: {err.message}"
        )
        return Result(requeue=ctx.backoff(claim))
    else:
        return Result(requeue=0.5)  # deletion in progress: look again until NotFound
    for node in nodes:
        await _drop_finalizer(
            ctx, node_path(node["metadata"]["name"]), node["metadata"].get("finalizers") or []
        )
    await _drop_finalizer(ctx, ctx.claim_path(claim), claim.finalizers)
    ctx.reset_backoff(claim)
    TERMINATIONS.labels(claim.kind, "Deleted").inc()
    await ctx.events.record(claim, "Normal", "Terminated", "Instance deleted; finalizer removed")
    log.info("claim %s: terminated", claim.name)
    return Result(deleted=True)


def _owned_by(node: dict, claim: Claim) -> bool:
    return any(o.get("uid") == claim.uid for o in node["metadata"].get("ownerReferences") or [])


async def _drop_finalizer(ctx: Context, path: str, finalizers: list[str]) -> None:
    if FINALIZER in finalizers:
        await ctx.kube.patch(path, {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}})
