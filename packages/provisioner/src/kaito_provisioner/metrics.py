"""Prometheus metrics (names prefixed ``kaito_provisioner_``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CLAIMS = Gauge(
    "kaito_provisioner_claims",
    "Claims managed by this provisioner, by kind and phase.",
    ["kind", "phase"],
    registry=REGISTRY,
)
LAUNCH_SECONDS = Histogram(
    "kaito_provisioner_launch_duration_seconds",
    "From claim creation to Launched=True.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800),
    registry=REGISTRY,
)
REGISTRATION_SECONDS = Histogram(
    "kaito_provisioner_registration_duration_seconds",
    "From Launched=True to Registered=True.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900),
    registry=REGISTRY,
)
CLOUD_CALLS = Counter(
    "kaito_provisioner_cloudprovider_calls_total",
    "Cloud provider calls, by provider and method.",
    ["provider", "method"],
    registry=REGISTRY,
)
CLOUD_ERRORS = Counter(
    "kaito_provisioner_cloudprovider_errors_total",
    "Cloud provider errors, by provider, method and error code.",
    ["provider", "method", "code"],
    registry=REGISTRY,
)
CLOUD_SECONDS = Histogram(
    "kaito_provisioner_cloudprovider_duration_seconds",
    "Cloud provider call duration.",
    ["provider", "method"],
    registry=REGISTRY,
)
TERMINATIONS = Counter(
    "kaito_provisioner_claims_terminated_total",
    "Claims terminated, by reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
GC_DELETIONS = Counter(
    "kaito_provisioner_garbage_collected_total",
    "Orphaned instances and claims removed by garbage collection.",
    ["what"],
    registry=REGISTRY,
)


@contextlib.contextmanager
def observe_call(provider: str, method: str, code_of: Callable[[BaseException], str]) -> Iterator[None]:
    CLOUD_CALLS.labels(provider, method).inc()
    start = time.monotonic()
    try:
        yield
    except Exception as exc:
        CLOUD_ERRORS.labels(provider, method, code_of(exc)).inc()
        raise
    finally:
        CLOUD_SECONDS.labels(provider, method).observe(time.monotonic() - start)
