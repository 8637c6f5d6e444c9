"""One reconcile of one claim: the sub-reconcilers in Karpenter's order, then one status write."""

from __future__ import annotations

import logging

from ..adapters import ADAPTERS, Adapter
from ..conditions import ConditionSet
from ..metrics import CLAIMS
from ..model import (
    ANNOTATION_LAUNCH_CHECKPOINT,
    DEPENDENTS,
    FINALIZER,
    LAUNCHED,
    READY,
    Claim,
    is_managed,
)
from . import initialization, launch, liveness, registration, termination
from .context import Context

log = logging.getLogger(__name__)
PHASE_OF = {LAUNCHED: "Launching", "Registered": "Registering", "Initialized": "Initializing"}


def phase(claim: Claim) -> str:
    """Pure: a one-word summary for metrics and logs."""
    if claim.deleting:
        return "Terminating"
    if claim.is_true(READY):
        return "Ready"
    launched = claim.condition(LAUNCHED)
    if launched is not None and launched.status == "False":
        return "LaunchFailed"
    for t in DEPENDENTS:
        if not claim.is_true(t):
            return PHASE_OF[t]
    return "Ready"


class ClaimController:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.phases: dict[tuple[str, str], str] = {}

    def _observe(self, kind: str, name: str, value: str | None) -> None:
        if value is None:
            self.phases.pop((kind, name), None)
        else:
            self.phases[(kind, name)] = value
        for k in ADAPTERS:
            for p in ("Launching", "LaunchFailed", "Registering", "Initializing", "Ready", "Terminating"):
                CLAIMS.labels(k, p).set(sum(1 for (kk, _), v in self.phases.items() if kk == k and v == p))

    async def reconcile(self, kind: str, name: str) -> float | None:
        ctx = self.ctx
        adapter: Adapter = ADAPTERS[kind]
        path = f"/apis/{adapter.group}/{adapter.version}/{adapter.plural}/{name}"
        obj = await ctx.kube.get(path)
        if obj is None:
            self._observe(kind, name, None)
            return None
        claim = adapter.parse(obj)
        if not is_managed(claim):
            return None
        self._observe(kind, name, phase(claim))
        if claim.deleting:
            result = await termination.reconcile(ctx, claim)
            if result.deleted:
                self._observe(kind, name, None)
            return None if result.deleted else result.requeue
        if FINALIZER not in claim.finalizers:
            claim.finalizers.append(FINALIZER)
            body = {"metadata": {"finalizers": claim.finalizers, "resourceVersion": claim.resource_version}}
            await ctx.kube.patch(path, body)

        status_before = adapter.status(claim)
        labels_before = dict(claim.labels)
        had_checkpoint = ANNOTATION_LAUNCH_CHECKPOINT in claim.annotations
        conditions = ConditionSet(claim, now=ctx.now)
        requeues: list[float] = []
        deleted = False
        steps = (
            lambda: launch.reconcile(ctx, claim, conditions),
            lambda: registration.reconcile(ctx, claim, conditions, adapter),
            lambda: initialization.reconcile(ctx, claim, conditions),
            lambda: liveness.reconcile(ctx, claim, conditions),
        )
        for step in steps:
            result = await step()
            if result.requeue is not None:
                requeues.append(result.requeue)
            if result.deleted:
                deleted = True
                break

        metadata: dict = {}
        if claim.labels != labels_before:
            metadata["labels"] = claim.labels
        if had_checkpoint and ANNOTATION_LAUNCH_CHECKPOINT not in claim.annotations:
            metadata["annotations"] = {ANNOTATION_LAUNCH_CHECKPOINT: None}
        if metadata:
            await ctx.kube.patch(path, {"metadata": metadata})
        status = adapter.status(claim)
        if status != status_before:
            await ctx.kube.patch(path + "/status", {"status": status})
        self._observe(kind, name, phase(claim))
        if deleted:
            log.info("claim %s: deleting", name)
            await ctx.delete_claim(claim)
            return 0.1
        return min(requeues) if requeues else None
