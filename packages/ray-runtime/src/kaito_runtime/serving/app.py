"""The Ray Serve application: one deployment whose replicas each hold the model and a batching engine.

- KubeRay `serveConfigV2`: `import_path: kaito_runtime.serving.app:build_app`, `args:` a ServeConfig.
- Locally: `run_local(config)` (used by `kaito-runtime serve` and `kaito-workspace run --local`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import httpx
from ray import serve
from ray.serve.config import BackpressureConfig

from kaito_runtime.serving.api import create_app
from kaito_runtime.serving.config import ServeConfig
from kaito_runtime.serving.loopback import LOOPBACK, bind_replicas_to_loopback
from kaito_runtime.serving.service import ChatService

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "KaitoChat"


@serve.ingress()
class KaitoChat:
    """A replica: loads the model in the background; `/health` answers 503 until it is ready."""

    def __init__(self, config: dict[str, Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        parsed = ServeConfig.model_validate(config)
        if parsed.http.host in LOOPBACK:
            bind_replicas_to_loopback()  # before Serve starts this replica's internal gRPC server
        self.service = ChatService(parsed)
        self.service.start_loading()

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.service)

    def check_health(self) -> None:
        # Serve restarts a replica whose health check raises: only a failed load or a dead engine count.
        if self.service.state == "failed":
            raise RuntimeError(f"model load failed: {self.service.error}")
        if self.service.state == "ready" and not self.service.ready:
            raise RuntimeError("the generation engine stopped")

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.shutdown()


def deployment_options(config: ServeConfig) -> dict[str, Any]:
    """Ray Serve deployment options derived from the config (pure; tested by value)."""
    dep, limits = config.deployment, config.limits
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": limits.max_ongoing_requests,
        "max_queued_requests": limits.max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=limits.retry_after_s),
        "ray_actor_options": dict(dep.ray_actor_options),
        "health_check_period_s": dep.health_check_period_s,
        "graceful_shutdown_timeout_s": dep.graceful_shutdown_timeout_s,
    }
    if dep.autoscaling_config is not None:
        options["autoscaling_config"] = dep.autoscaling_config
    else:
        options["num_replicas"] = dep.num_replicas
    return options


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: `args` is a ServeConfig as a dict (KubeRay serveConfigV2 `args`)."""
    config = ServeConfig.model_validate(args)
    deployment: Any = serve.deployment(KaitoChat)
    deployment = deployment.options(**deployment_options(config))
    return deployment.bind(config.model_dump(mode="json"))


def wait_healthy(url: str, timeout: float, interval: float = 0.5) -> None:
    """Poll `url/health` until 200; raise TimeoutError with the last answer otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
            if '"failed"' in response.text:
                raise RuntimeError(f"the model failed to load: {response.text[:500]}")
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(interval)
    raise TimeoutError(f"{url}/health not ready after {timeout:.0f}s: {last}")


def run_local(
    config: ServeConfig | dict[str, Any],
    *,
    address: str | None = None,
    timeout: float = 600.0,
    blocking: bool = False,
) -> str:
    """Start the application on a local (or the given) Ray cluster; return its URL once `/health` is 200.

    When Ray is not yet initialised here, a new local Ray is started (on loopback when the HTTP host
    is loopback), never silently joined to another cluster on the machine; `address` connects to an
    existing cluster instead.
    """
    import ray

    config = config if isinstance(config, ServeConfig) else ServeConfig.model_validate(config)
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        elif config.http.host in LOOPBACK:
            # Keep every Ray component on loopback too, not only the HTTP proxy.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False)
        else:
            ray.init(address="local", include_dashboard=False)
    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    serve.run(
        build_app(config.model_dump(mode="json")),
        name=config.name,
        route_prefix=config.http.route_prefix,
        blocking=False,
    )
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    prefix = config.http.route_prefix.rstrip("/")
    url = f"http://{host}:{config.http.port}{prefix}"
    wait_healthy(url, timeout)
    log.info("serving %s at %s", config.model_name, url)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
