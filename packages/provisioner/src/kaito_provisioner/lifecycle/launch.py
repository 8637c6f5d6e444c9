"""Launch: ask the cloud provider for an instance; on success record providerID, image, capacity and labels.

The create runs as a background task (a cloud create can take minutes); its resume checkpoint is kept in
the claim's ``kaito.sh/launch-checkpoint`` annotation, so a restarted operator picks the same operation up.
"""

from __future__ import annotations

import asyncio
import logging

from ..conditions import ConditionSet
from ..kube import KubeClient
from ..metrics import LAUNCH_SECONDS, TERMINATIONS
from ..model import ANNOTATION_LAUNCH_CHECKPOINT, LAUNCHED, Claim
from ..providers.base import CloudProviderError, Instance
from .context import Context, Result

log = logging.getLogger(__name__)


class AnnotationCheckpoint:
    def __init__(self, kube: KubeClient, path: str, claim: Claim) -> None:
        self.kube = kube
        self.path = path
        self.value = claim.annotations.get(ANNOTATION_LAUNCH_CHECKPOINT)

    def load(self) -> str | None:
        return self.value

    async def save(self, value: str | None) -> None:
        if value == self.value:
            return
        self.value = value
        await self.kube.patch(self.path, {"metadata": {"annotations": {ANNOTATION_LAUNCH_CHECKPOINT: value}}})


def apply_instance(claim: Claim, instance: Instance) -> None:
    """Pure: what a launched instance writes onto the claim (Karpenter's PopulateNodeClaimDetails)."""
    claim.provider_id = instance.provider_id
    claim.image_id = instance.image_id
    claim.capacity = dict(instance.capacity)
    claim.allocatable = dict(instance.allocatable or instance.capacity)
    claim.labels = {**instance.labels, **claim.single_value_labels(), **claim.labels}


async def reconcile(ctx: Context, claim: Claim, conditions: ConditionSet) -> Result:
    if claim.is_true(LAUNCHED):
        return Result()
    task = ctx.launches.get(claim.uid)
    if task is None:
        checkpoint = AnnotationCheckpoint(ctx.kube, ctx.claim_path(claim), claim)
        task = asyncio.create_task(ctx.provider.create(claim, checkpoint), name=f"launch {claim.name}")
        ctx.launches[claim.uid] = task
        kind, name = claim.kind, claim.name
        task.add_done_callback(lambda _task: ctx.wake(kind, name))
        return Result()
    if not task.done():
        return Result()
    ctx.launches.pop(claim.uid, None)
    try:
        instance = task.result()
    except asyncio.CancelledError:
        return Result(requeue=0)
    except CloudProviderError as err:
        conditions.set_false(LAUNCHED, err.reason, err.message)
        await ctx.events.record(claim, "Warning", err.reason, f"Launch failed: {err.message}")
        if err.capacity:
            # Karpenter's insufficient-capacity behaviour: delete the claim so that it can be tried again.
            log.warning("claim %s: insufficient capacity (%s); deleting it", claim.name, err.reason)
            TERMINATIONS.labels(claim.kind, "InsufficientCapacity").inc()
            return Result(deleted=True)
        return Result(requeue=ctx.backoff(claim))
    except Exception as exc:
        log.exception("claim %s: launch failed", claim.name)
        conditions.set_false(LAUNCHED, "LaunchFailed", str(exc) or type(exc).__name__)
        await ctx.events.record(claim, "Warning", "LaunchFailed", f"Launch failed: {exc}")
        return Result(requeue=ctx.backoff(claim))
    apply_instance(claim, instance)
    claim.annotations.pop(ANNOTATION_LAUNCH_CHECKPOINT, None)
    conditions.set_true(LAUNCHED)
    ctx.reset_backoff(claim)
    LAUNCH_SECONDS.observe(max((ctx.now() - claim.creation_timestamp).total_seconds(), 0))
    await ctx.events.record(
        claim, "Normal", "Launched", f"Launched {instance.instance_type or 'instance'} {instance.provider_id}"
    )
    return Result()
