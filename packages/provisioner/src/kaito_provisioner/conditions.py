"""Karpenter's status conditions (operatorpkg ``status.ConditionSet``), as pure functions over a claim.

``Ready`` is the root condition derived from ``Launched``, ``Registered`` and ``Initialized``:
True when all three are True at the current generation; otherwise False (``UnhealthyDependents``) when one
of them is False at the current generation, else Unknown (``ReconcilingDependents``); the message lists the
unhealthy dependents newest first (``Registered=Unknown, Initialized=Unknown``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .model import DEPENDENTS, READY, Claim, Condition, ConditionStatus, utcnow

AWAITING_REASON = "AwaitingReconciliation"
AWAITING_MESSAGE = "object is awaiting reconciliation"


class ConditionSet:
    """Mutates ``claim.conditions`` exactly as operatorpkg does; ``now`` is injectable for tests."""

    def __init__(self, claim: Claim, *, now: Callable[[], datetime] = utcnow) -> None:
        self.claim = claim
        self.now = now
        for t in (READY, *DEPENDENTS):
            if claim.condition(t) is None:
                self.set_unknown(t)

    def get(self, type_: str) -> Condition | None:
        return self.claim.condition(type_)

    def is_true(self, *types: str) -> bool:
        return all(self.claim.is_true(t) for t in types)

    def set_true(self, type_: str, reason: str | None = None, message: str = "") -> bool:
        return self.set(type_, "True", reason or type_, message)

    def set_false(self, type_: str, reason: str, message: str) -> bool:
        return self.set(type_, "False", reason, message)

    def set_unknown(self, type_: str, reason: str = AWAITING_REASON, message: str = AWAITING_MESSAGE) -> bool:
        return self.set(type_, "Unknown", reason, message)

    def set(self, type_: str, status: ConditionStatus, reason: str, message: str) -> bool:
        """Set one condition; returns whether anything changed. Recomputes Ready after a dependent."""
        claim = self.claim
        gen = claim.generation
        new = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            lastTransitionTime=self.now(),
            observedGeneration=gen,
        )
        conditions: list[Condition] = []
        found = False
        for cond in claim.conditions:
            if cond.type != type_:
                if claim.deleting:
                    cond = cond.model_copy(update={"observed_generation": gen})
                conditions.append(cond)
                continue
            found = True
            if cond.status == status:
                new.last_transition_time = cond.last_transition_time
            if new == cond:
                return False
        if not found:
            is_dependent = type_ == READY or type_ in DEPENDENTS
            new.last_transition_time = claim.creation_timestamp if is_dependent else self.now()
        conditions.append(new)
        # Root last, the others by transition time (stable), as kubectl users expect.
        others = sorted((c for c in conditions if c.type != READY), key=lambda c: c.last_transition_time)
        claim.conditions = others + [c for c in conditions if c.type == READY]
        if type_ != READY:
            self._recompute_root()
        return True

    def _recompute_root(self) -> None:
        gen = self.claim.generation
        unhealthy = [
            c
            for c in self.claim.conditions
            if c.type in DEPENDENTS and (c.status != "True" or c.observed_generation != gen)
        ]
        if not unhealthy:
            self.set_true(READY)
            return
        unhealthy.sort(key=lambda c: c.last_transition_time, reverse=True)
        failed = any(c.status == "False" and c.observed_generation == gen for c in unhealthy)
        self.set(
            READY,
            "False" if failed else "Unknown",
            "UnhealthyDependents" if failed else "ReconcilingDependents",
            ", ".join(f"{c.type}={c.status}" for c in unhealthy),
        )
