"""ARM error -> Karpenter-style reason shown on the ``Launched`` condition.

Classified by the ARM error code (and the codes of its ``details``) first, then by the message, never by
exception class: AKS often wraps the real cause (``ReconcileVMSSAgentPoolFailed: ... AllocationFailed``).
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from .base import CloudProviderError

QUOTA = "SubscriptionQuotaReached"
SKU_NOT_AVAILABLE = "SKUNotAvailable"
ALLOCATION = "AllocationFailure"
ZONAL_ALLOCATION = "ZonalAllocationFailure"
OVERCONSTRAINED = "OverconstrainedAllocationFailure"
INVALID_PARAMETER = "InvalidParameter"
AUTHORIZATION = "AuthorizationFailed"
LAUNCH_FAILED = "LaunchFailed"

CAPACITY_REASONS = frozenset({QUOTA, SKU_NOT_AVAILABLE, ALLOCATION, ZONAL_ALLOCATION, OVERCONSTRAINED})

# (reason, ARM codes, message fragments); checked in order: the more specific first (a zonal allocation
# failure also says "AllocationFailed").
_RULES: list[tuple[str, frozenset[str], tuple[str, ...]]] = [
    (
        OVERCONSTRAINED,
        frozenset({"overconstrainedallocationrequest", "overconstrainedzonalallocationrequest"}),
        ("overconstrainedallocationrequest", "overconstrainedzonalallocationrequest"),
    ),
    (ZONAL_ALLOCATION, frozenset({"zonalallocationfailed"}), ("zonalallocationfailed",)),
    (ALLOCATION, frozenset({"allocationfailed"}), ("allocationfailed",)),
    (QUOTA, frozenset({"quotaexceeded", "subscriptionquotareached"}), ("quota",)),
    (
        SKU_NOT_AVAILABLE,
        frozenset({"skunotavailable", "vmsizenotsupported"}),
        ("skunotavailable", "not available in location", "sku not available"),
    ),
    (
        AUTHORIZATION,
        frozenset({"authorizationfailed", "linkedauthorizationfailed", "invalidauthenticationtoken"}),
        ("authorizationfailed", "does not have authorization"),
    ),
    (
        INVALID_PARAMETER,
        frozenset({"invalidparameter", "badrequest", "propertychangenotallowed", "invalidtemplate"}),
        (),
    ),
]


def _codes(error: Any) -> list[str]:
    """The error's code and the codes of its (nested) details."""
    if error is None:
        return []
    out = [str(getattr(error, "code", "") or "")]
    for detail in getattr(error, "details", None) or []:
        out.extend(_codes(detail))
    return [c for c in out if c]


def _messages(error: Any) -> list[str]:
    if error is None:
        return []
    out = [str(getattr(error, "message", "") or "")]
    for detail in getattr(error, "details", None) or []:
        out.extend(_messages(detail))
    return [m for m in out if m]


def classify(codes: list[str], message: str, status: int | None = None) -> str:
    """Pure mapping used by :func:`to_provider_error`; testable by value."""
    lowered = {c.lower() for c in codes}
    for reason, known, _ in _RULES:
        if lowered & known and reason != INVALID_PARAMETER:
            return reason
    text = " ".join([*codes, message]).lower()
    for reason, _, fragments in _RULES:
        if any(f in text for f in fragments):
            return reason
    if lowered & _RULES[-1][1]:
        return INVALID_PARAMETER
    if status in (401, 403):
        return AUTHORIZATION
    if status == 400:
        return INVALID_PARAMETER
    return LAUNCH_FAILED


def to_provider_error(exc: Exception) -> CloudProviderError:
    """An Azure SDK exception -> CloudProviderError with reason, the ARM message, and capacity/retry flags."""
    error = getattr(exc, "error", None)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return CloudProviderError(AUTHORIZATION, f"credential: {exc}")
    codes = _codes(error)
    messages = _messages(error) or [getattr(exc, "message", "") or str(exc)]
    reason = classify(codes, " ".join(messages), status)
    message = f"{codes[0]}: {messages[0]}" if codes else messages[0]
    capacity = reason in CAPACITY_REASONS
    return CloudProviderError(reason, message, capacity=capacity, retryable=not capacity)


def arm_code(exc: BaseException) -> str:
    """For metrics: the ARM error code, else the HTTP status, else the exception type."""
    codes = _codes(getattr(exc, "error", None))
    if codes:
        return codes[0]
    if isinstance(exc, HttpResponseError) and exc.status_code:
        return str(exc.status_code)
    return type(exc).__name__
