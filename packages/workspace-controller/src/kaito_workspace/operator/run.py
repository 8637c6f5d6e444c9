"""Run the operator: kopf with our registry, the health/metrics server and, unless off, the webhook."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from kaito_workspace.operator.handlers import State, register
from kaito_workspace.operator.http import bound_port, start_health_server
from kaito_workspace.operator.kube import Kube
from kaito_workspace.operator.reconcile import Reconciler
from kaito_workspace.operator.settings import OperatorSettings

log = logging.getLogger(__name__)


def build_registry(settings: OperatorSettings, state: State) -> kopf.OperatorRegistry:
    opts = settings
    registry = kopf.OperatorRegistry()
    register(registry, settings, state, webhook=settings.webhook == "on")

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "kaito.sh/workspace-finalizer"
        settings.posting.level = logging.WARNING  # our own Events are posted by the reconciler
        settings.watching.server_timeout = 60
        settings.networking.request_timeout = 30
        # A deleted workspace's finalizer waits for its resync timer to exit: check often, not every 60 s.
        settings.background.cancellation_polling = 0.5
        if opts.webhook == "on":
            settings.admission.server = kopf.WebhookServer(
                addr=opts.webhook_host,
                port=opts.webhook_port,
                certfile=str(opts.webhook_cert) if opts.webhook_cert else None,
                pkeyfile=str(opts.webhook_key) if opts.webhook_key else None,
                insecure=opts.webhook_insecure,
            )
            settings.admission.managed = None  # the chart owns the ValidatingWebhookConfiguration

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if opts.kubeconfig is not None:
            return _login_from_kubeconfig(str(opts.kubeconfig))
        return kopf.login_via_client(**kwargs)

    return registry


def _login_from_kubeconfig(path: str) -> kopf.ConnectionInfo:
    import kubernetes

    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=path, client_configuration=cfg)
    token = (cfg.api_key or {}).get("authorization", "")
    scheme, _, token = token.partition(" ") if " " in token else ("Bearer", "", token)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme if token else None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


async def run_operator(
    settings: OperatorSettings,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: threading.Event | asyncio.Event | None = None,
    state: State | None = None,
) -> None:
    """Run until `stop_flag` is set (or forever). `state` exposes readiness and the bound ports."""
    state = state or State()
    registry = build_registry(settings, state)
    kube = await Kube.connect(settings.kubeconfig)
    state.reconciler = Reconciler(kube, settings)
    health = await start_health_server(settings.health_host, settings.health_port, lambda: state.ready)
    state.health_port = bound_port(health)
    kopf_ready = asyncio.Event()

    async def mark_ready() -> None:
        await kopf_ready.wait()
        if settings.webhook == "on":
            # Ready only once the admission server accepts connections (the API server calls it).
            host = "127.0.0.1" if settings.webhook_host in ("0.0.0.0", "::", "") else settings.webhook_host
            while True:
                try:
                    _, writer = await asyncio.open_connection(host, settings.webhook_port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.2)
        state.ready = True
        if ready_flag is not None:
            ready_flag.set()

    waiter = asyncio.create_task(mark_ready())
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=kopf_ready,
        )
    finally:
        waiter.cancel()
        await health.cleanup()
        await state.reconciler.http.aclose()
        await kube.close()
