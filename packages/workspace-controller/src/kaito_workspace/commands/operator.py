"""`kaito-workspace operator`: run the Workspace controller against the cluster of the usual kubeconfig
(or the in-cluster service account).

It creates NodeClaims for the nodes a Workspace needs (or waits for BYO nodes matching its
labelSelector), then a KubeRay RayJob (tuning) or RayService (inference) pinned to those nodes, and the
Service named after the workspace; it keeps the Workspace status (conditions, state, worker nodes,
progress) current. `--webhook off` runs without the validating admission server: invalid Workspaces
are then marked with a condition and an Event instead of being rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from kaito_workspace.planning.model import DEFAULT_RAY_VERSION


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the Workspace controller (kopf operator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--node-provisioner", choices=["gpu-provisioner", "byo"], default="gpu-provisioner")
    p.add_argument(
        "--runtime-image",
        default=None,
        help="Ray runtime image (default: ghcr.io/kaito-ray/ray-runtime:<version>)",
    )
    p.add_argument("--ray-version", default=DEFAULT_RAY_VERSION)
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="serve Workspaces in this namespace only (repeatable; default: all namespaces)",
    )
    p.add_argument(
        "--controller-namespace",
        default=None,
        help="namespace of the default tuning templates (default: $POD_NAMESPACE or kaito-workspace)",
    )
    p.add_argument("--webhook", choices=["on", "off"], default="on")
    p.add_argument("--webhook-host", default="0.0.0.0")
    p.add_argument("--webhook-port", type=int, default=9443)
    p.add_argument(
        "--webhook-cert", type=Path, default=None, help="TLS certificate (PEM) of the webhook server"
    )
    p.add_argument(
        "--webhook-key", type=Path, default=None, help="TLS private key (PEM) of the webhook server"
    )
    p.add_argument("--webhook-insecure", action="store_true", help="serve the webhook over plain HTTP")
    p.add_argument("--health-host", default="0.0.0.0")
    p.add_argument("--health-port", type=int, default=8080, help="/healthz, /readyz and /metrics")
    p.add_argument("--resync-seconds", type=float, default=10.0)
    p.add_argument("--progress-seconds", type=float, default=15.0)
    p.add_argument(
        "--local",
        action="store_true",
        help="the user's own machine (dev cluster): allow loopback data URLs and hostPath volumes",
    )
    p.add_argument("--kubeconfig", type=Path, default=None)
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from kaito_workspace.operator.run import run_operator
    from kaito_workspace.operator.settings import OperatorSettings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level.upper() != "DEBUG":
        # kopf logs every successful timer/handler run at INFO; our own step logs and Events say more.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the progress polls
    kwargs = {
        "node_provisioner": args.node_provisioner,
        "ray_version": args.ray_version,
        "namespaces": args.namespace,
        "controller_namespace": args.controller_namespace
        or os.environ.get("POD_NAMESPACE", "kaito-workspace"),
        "webhook": args.webhook,
        "webhook_host": args.webhook_host,
        "webhook_port": args.webhook_port,
        "webhook_cert": args.webhook_cert,
        "webhook_key": args.webhook_key,
        "webhook_insecure": args.webhook_insecure,
        "health_host": args.health_host,
        "health_port": args.health_port,
        "resync_seconds": args.resync_seconds,
        "progress_seconds": args.progress_seconds,
        "kubeconfig": args.kubeconfig,
        "local": args.local,
    }
    if args.runtime_image:
        kwargs["runtime_image"] = args.runtime_image
    settings = OperatorSettings(**kwargs)
    try:
        asyncio.run(run_operator(settings))
    except KeyboardInterrupt:
        return 130
    return 0
