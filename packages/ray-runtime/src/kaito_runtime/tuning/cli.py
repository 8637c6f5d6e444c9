"""`kaito-runtime tune --config FILE`: run one tuning job (on a local Ray, or `--address`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune",
        help="fine-tune a model (QLoRA/LoRA on Ray Train) and write the adapter",
        description="Fine-tune a model with QLoRA or LoRA on Ray Train. The config (YAML or JSON) is a "
        "fully resolved TuneConfig: model, method, training_config, input, output, scaling.",
    )
    parser.add_argument("--config", required=True, help="path to the tuning config (YAML or JSON)")
    parser.add_argument(
        "--address", default=None, help="Ray address to connect to (default: RAY_ADDRESS or local)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from kaito_runtime.tuning import ConfigError, TuningError, load_config, run_tuning

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_tuning(config, ray_address=args.address)
    except TuningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"output": result.output, "digest": result.digest, "summary": result.summary}, indent=2))
    return 0
