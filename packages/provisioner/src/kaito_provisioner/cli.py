"""``kaito-provisioner operator --provider azure|kwok``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .settings import Settings

STATIC_TOKEN_ENV = "KAITO_PROVISIONER_STATIC_ARM_TOKEN"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaito-provisioner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the provisioner operator")
    op.add_argument("--provider", choices=["azure", "kwok"], default=os.environ.get("KAITO_PROVIDER"))
    op.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, then in-cluster)"
    )
    op.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace for Events about the cluster-scoped claims (default: $POD_NAMESPACE or default)",
    )
    op.add_argument("--metrics-host", default="0.0.0.0")
    op.add_argument("--metrics-port", type=int, default=8080)
    op.add_argument("--registration-timeout", type=float, default=900.0, help="seconds; 0 disables")
    op.add_argument("--launch-timeout", type=float, default=1800.0, help="seconds; 0 disables")
    op.add_argument("--registration-poll", type=float, default=5.0)
    op.add_argument("--gc-interval", type=float, default=120.0)
    op.add_argument("--gc-grace", type=float, default=120.0)
    op.add_argument("--backoff-base", type=float, default=5.0)
    op.add_argument("--no-machines", action="store_true", help="do not watch karpenter.sh/v1alpha5 Machines")
    op.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    az = op.add_argument_group("azure (defaults from ARM_* / AZURE_* environment variables)")
    az.add_argument("--subscription-id")
    az.add_argument("--resource-group")
    az.add_argument("--cluster-name")
    az.add_argument("--location")
    az.add_argument("--node-resource-group")
    az.add_argument("--arm-endpoint")
    az.add_argument("--arm-polling-interval", type=float, default=_env_float("ARM_POLLING_INTERVAL", 15.0))
    kw = op.add_argument_group("kwok")
    kw.add_argument("--kwok-launch-delay", type=float, default=1.0)
    kw.add_argument("--kwok-ready-delay", type=float, default=2.0)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        provider=args.provider,
        events_namespace=args.namespace,
        registration_timeout=args.registration_timeout,
        launch_timeout=args.launch_timeout,
        registration_poll=args.registration_poll,
        gc_interval=args.gc_interval,
        gc_grace=args.gc_grace,
        backoff_base=args.backoff_base,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        watch_machines=not args.no_machines,
        kwok_launch_delay=args.kwok_launch_delay,
        kwok_ready_delay=args.kwok_ready_delay,
    )


class _StaticToken:
    """A fixed bearer token, accepted only for a loopback ARM endpoint (ARM emulators in tests)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def _azure_provider(args: argparse.Namespace) -> Any:
    from .providers.azure import AzureConfig, AzureProvider, _is_loopback

    config = AzureConfig.from_env(
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        cluster_name=args.cluster_name,
        location=args.location,
        node_resource_group=args.node_resource_group,
        arm_endpoint=args.arm_endpoint,
        polling_interval=args.arm_polling_interval,
    )
    credential = None
    if os.environ.get(STATIC_TOKEN_ENV):
        if not _is_loopback(config.arm_endpoint):
            raise ValueError(f"{STATIC_TOKEN_ENV} is only accepted with a loopback --arm-endpoint")
        credential = _StaticToken(os.environ[STATIC_TOKEN_ENV])
    return AzureProvider(config, credential=credential)


async def _operator(args: argparse.Namespace, settings: Settings) -> None:
    from kubernetes_asyncio.config import ConfigException

    from .kube import KubeClient
    from .operator import run

    # Provider configuration first: a missing setting is reported before anything connects.
    provider: Any = _azure_provider(args) if settings.provider == "azure" else None
    try:
        kube = await KubeClient.connect(args.kubeconfig)
    except (ConfigException, OSError) as exc:
        if provider is not None:
            await provider.close()
        raise ValueError(
            f"no Kubernetes cluster configured ({exc}): pass --kubeconfig, set $KUBECONFIG, or run in a pod"
        ) from None
    if provider is None:
        from .providers.kwok import KwokProvider

        provider = KwokProvider(
            kube, launch_delay=settings.kwok_launch_delay, ready_delay=settings.kwok_ready_delay
        )
    await run(settings, provider, kube)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "kopf.objects", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.provider is None:
        print("error: --provider is required (azure or kwok)", file=sys.stderr)
        return 2
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_operator(args, settings))
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
