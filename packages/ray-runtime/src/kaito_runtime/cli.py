"""`kaito-runtime`: the one entry point for what runs inside Ray (tuning and serving)."""

from __future__ import annotations

import argparse
import sys

from kaito_runtime import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito-runtime",
        description="Run Kaito workspace steps on Ray: fine-tune (tune) or serve a model (serve).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    from kaito_runtime.serving import cli as serving_cli
    from kaito_runtime.tuning import cli as tuning_cli

    tuning_cli.add_parser(subparsers)
    serving_cli.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
