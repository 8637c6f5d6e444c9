"""The operator: kopf watches claims and Nodes and feeds a work queue; the lifecycle does the rest.

kopf handlers are deliberately thin (``on.event`` only, so kopf adds no finalizer or annotation of its own):
every change of a NodeClaim, Machine or Node enqueues the claim it concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import kopf

from .events import EventRecorder
from .health import HealthServer
from .kube import KubeClient
from .lifecycle import gc
from .lifecycle.context import Context
from .lifecycle.controller import ClaimController
from .providers.base import CloudProvider
from .settings import Settings
from .workqueue import WorkQueue

log = logging.getLogger(__name__)
CLAIM_KINDS = ("NodeClaim", "Machine")


def build_registry(
    queue: WorkQueue, settings: Settings, pending: set[tuple[str, str]]
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            return kopf.login_with_service_account(**kwargs)
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event("karpenter.sh", "v1", "nodeclaims", registry=registry)
    async def nodeclaim_event(name: str, **_: Any) -> None:
        queue.add(("NodeClaim", name))

    if settings.watch_machines:

        @kopf.on.event("karpenter.sh", "v1alpha5", "machines", registry=registry)
        async def machine_event(name: str, **_: Any) -> None:
            queue.add(("Machine", name))

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_event(body: kopf.Body, **_: Any) -> None:
        owners = [
            (o["kind"], o["name"])
            for o in body.metadata.get("ownerReferences") or []
            if o.get("kind") in CLAIM_KINDS
        ]
        # A Node that is not adopted yet may be the one a launched claim waits for.
        for key in owners or list(pending):
            queue.add(key)

    return registry


def kopf_settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.posting.enabled = False  # our own Events, not kopf's handler logs
    s.scanning.disabled = True  # no CRD/namespace watching: fewer permissions
    s.watching.server_timeout = 300
    s.networking.request_timeout = 60
    return s


async def run(
    settings: Settings, provider: CloudProvider, kube: KubeClient, *, ready: asyncio.Event | None = None
) -> None:
    """Run until cancelled."""
    ready = ready or asyncio.Event()
    pending: set[tuple[str, str]] = set()
    ctx = Context(
        kube=kube, provider=provider, events=EventRecorder(kube, settings.events_namespace), settings=settings
    )
    controller = ClaimController(ctx)

    async def handle(key: Any) -> float | None:
        kind, name = key
        requeue = await controller.reconcile(kind, name)
        if controller.phases.get(key) in ("Launching", "Registering", "Initializing"):
            pending.add(key)
        else:
            pending.discard(key)
        return requeue

    queue = WorkQueue(handle, error_backoff=settings.backoff_base)
    ctx.wake = lambda kind, name: queue.add((kind, name))
    registry = build_registry(queue, settings, pending)
    health = HealthServer(settings.metrics_host, settings.metrics_port, ready)
    await health.start()
    log.info("metrics and probes on %s:%d", settings.metrics_host, health.bound_port)

    async def gc_loop() -> None:
        while True:
            await asyncio.sleep(settings.gc_interval)
            try:
                await gc.collect(ctx)
            except Exception:
                log.exception("garbage collection failed")

    background = [asyncio.create_task(gc_loop(), name="gc")]
    kubelet = getattr(provider, "run", None)
    if kubelet is not None:
        background.append(asyncio.create_task(kubelet(), name="kwok kubelet"))
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            standalone=True,
            clusterwide=True,
            ready_flag=ready,
        )
    finally:
        for task in background:
            task.cancel()
        for task in ctx.launches.values():
            task.cancel()
        await asyncio.gather(*background, *ctx.launches.values(), return_exceptions=True)
        await queue.close()
        await health.stop()
        with contextlib.suppress(Exception):
            await provider.close()
        await kube.close()
