"""Liveness: a claim that does not launch or register in time is deleted (Karpenter's registration TTL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..conditions import ConditionSet
from ..metrics import TERMINATIONS
from ..model import LAUNCHED, REGISTERED, Claim
from .context import Context, Result


def verdict(claim: Claim, now: datetime, *, launch_timeout: float, registration_timeout: float) -> str | None:
    """Pure: the reason to delete the claim, or None. Timeouts of 0 are disabled.

    Registration is measured from the later of launch and the Registered condition's last transition,
    so that a slow cloud launch does not eat the registration budget.
    """
    if claim.is_true(REGISTERED):
        return None
    launched = claim.condition(LAUNCHED)
    if launched is None or launched.status != "True":
        if launch_timeout and now - claim.creation_timestamp > timedelta(seconds=launch_timeout):
            return "LaunchTimeout"
        return None
    registered = claim.condition(REGISTERED)
    since = max(
        launched.last_transition_time,
        registered.last_transition_time if registered else launched.last_transition_time,
    )
    if registration_timeout and now - since > timedelta(seconds=registration_timeout):
        return "RegistrationTimeout"
    return None


_WHAT = {"RegistrationTimeout": "registered", "LaunchTimeout": "launched"}


async def reconcile(ctx: Context, claim: Claim, conditions: ConditionSet) -> Result:
    s = ctx.settings
    reason = verdict(
        claim, ctx.now(), launch_timeout=s.launch_timeout, registration_timeout=s.registration_timeout
    )
    if reason is None:
        if claim.is_true(REGISTERED):
            return Result()
        return Result(requeue=min(x for x in (s.registration_timeout, s.launch_timeout, 60.0) if x > 0))
    timeout = s.registration_timeout if reason == "RegistrationTimeout" else s.launch_timeout
    await ctx.events.record(
        claim,
        "Warning",
        reason,
        f"Deleting the claim: not {_WHAT[reason]} within {timeout:.0f}s",
    )
    TERMINATIONS.labels(claim.kind, reason).inc()
    return Result(deleted=True)
