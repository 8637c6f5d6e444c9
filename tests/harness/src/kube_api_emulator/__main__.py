"""`python -m kube_api_emulator --port PORT --kubeconfig PATH [--crds DIR]...`: runs until terminated."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .server import KubeApiEmulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kube_api_emulator", description="Kubernetes API emulator for tests"
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for this server here")
    p.add_argument(
        "--crds",
        type=Path,
        action="append",
        default=[],
        help="a CRD YAML file or a directory of them, created at start (repeatable)",
    )
    p.add_argument("--namespace", default="default", help="default namespace in the kubeconfig")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    emu = KubeApiEmulator(port=args.port, host=args.host, crds=args.crds)
    await emu.start()
    if args.kubeconfig:
        emu.write_kubeconfig(args.kubeconfig, args.namespace)
    print(
        f"kube-api-emulator serving on {emu.url}"
        + (f", kubeconfig {args.kubeconfig}" if args.kubeconfig else ""),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for p in args.crds:
        if not p.exists():
            print(f"error: --crds {p}: no such file or directory", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    except (ValueError, KeyError) as e:
        print(f"error: could not load the CRDs given with --crds: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
