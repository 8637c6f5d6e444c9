"""`kaito-workspace`: the workspace controller's command line.

Each subcommand is a module `kaito_workspace.commands.<name>` exposing `add_parser(subparsers)`, which
registers the subcommand and sets `func=callable(args) -> int` (the exit code). To add one, add its module
name to `kaito_workspace.commands.COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kaito_workspace import __version__
from kaito_workspace.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito-workspace",
        description="Kaito Workspaces on Kubernetes and Ray: validate, render, operate, run locally.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module_name = f"kaito_workspace.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # listed but not written yet
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
