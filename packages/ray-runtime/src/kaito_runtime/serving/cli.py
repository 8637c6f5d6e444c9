"""`kaito-runtime serve --config FILE [--address ADDR]`: run the serving application on Ray."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model (and its adapters) over HTTP with Ray Serve",
        description="Serve /chat and the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models).",
    )
    parser.add_argument("--config", required=True, help="ServeConfig file (YAML or JSON)")
    parser.add_argument(
        "--address", default=None, help="existing Ray cluster address (default: start a local Ray)"
    )
    parser.add_argument("--host", default=None, help="override http.host")
    parser.add_argument("--port", type=int, default=None, help="override http.port")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for /health")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="with --address: return once healthy (the application keeps running on that cluster)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    if args.detach and not args.address:
        print(
            "kaito-runtime serve: --detach needs --address (a local Ray stops with this process)",
            file=sys.stderr,
        )
        return 2
    from kaito_runtime.serving.config import load_serve_config

    try:
        config = load_serve_config(args.config)
    except (ValueError, ValidationError) as exc:
        print(f"kaito-runtime serve: invalid config {args.config}:\n{exc}", file=sys.stderr)
        return 2
    http = config.http.model_copy(
        update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    )
    config = config.model_copy(update={"http": http})
    from kaito_runtime.serving.app import run_local

    try:
        url = run_local(config, address=args.address, timeout=args.timeout, blocking=not args.detach)
    except (TimeoutError, RuntimeError) as exc:
        print(f"kaito-runtime serve: {exc}", file=sys.stderr)
        return 1
    print(f"serving {config.model_name} at {url}")
    return 0
