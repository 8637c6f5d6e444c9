"""`python -m kaito_devcluster --kubeconfig PATH`: a local control plane for trying the operators.

Starts the Kubernetes API emulator, applies the rendered charts (CRDs, RBAC, default ConfigMaps) with
kubectl, runs the provisioner (kwok provider: simulated GPU nodes) and the workspace controller
(`--local --webhook off`), and a KubeRay stand-in that runs RayJobs and RayServices on a local Ray bound
to 127.0.0.1. Prints the kubeconfig and commands to try; Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from pathlib import Path

from kaito_devcluster.cluster import DevCluster, DevClusterError, DevClusterOptions, Started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kaito_devcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kubeconfig", type=Path, required=True, help="write the cluster's kubeconfig here")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="logs, rendered charts, audit logs and local volumes (default: a new temp dir)",
    )
    p.add_argument("--api-port", type=int, default=0, help="API server port on 127.0.0.1 (default: any free)")
    p.add_argument(
        "--kuberay-crds",
        type=Path,
        action="append",
        default=[],
        help="KubeRay CRD files/dirs (default: ../shared/reference/crds, else minimal ones)",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray (default: all)")
    p.add_argument(
        "--kwok-delay", type=float, default=1.0, help="seconds before a simulated node launches/is ready"
    )
    p.add_argument("--ready-file", type=Path, default=None, help="touch this file once everything is up")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def banner(started: Started, kubeconfig: Path, state_dir: Path) -> str:
    kc = kubeconfig.resolve()
    lines = [
        "",
        "Kaito dev cluster is up (everything on 127.0.0.1).",
        f"  kubeconfig:    {kc}",
        f"  API server:    {started.api_url}   (Kubernetes API emulator)",
        f"  Ray dashboard: {started.dashboard_url}",
        f"  {started.kuberay_crds}",
        f"  logs:          {state_dir / 'logs'}   audit: {state_dir / 'audit'}",
        "",
        "Try:",
        f"  export KUBECONFIG={kc}",
        "  kubectl get nodes,nodeclaims",
        "  kubectl apply -f my-workspace.yaml   # loopback data URLs and hostPath volumes are allowed here",
        "  kubectl get workspace -w",
        "  kubectl get rayservice,rayjob,raycluster",
        "  URL=$(kubectl get svc <workspace> -o jsonpath='{.metadata.annotations.kaito\\.sh/local-url}')",
        "  curl -s $URL/chat -H 'content-type: application/json' -d '{\"prompt\": \"Hello\"}'",
        "  kubectl describe workspace <workspace>          # events from the controller and the Ray stand-in",
        "",
        "Ctrl-C stops every process the dev cluster started.",
    ]
    if started.not_applied:
        lines[7:7] = [
            "  chart objects the emulator did not take (the operators run as local processes instead):",
            *[f"    {line}" for line in started.not_applied],
        ]
    return "\n".join(lines)


async def serve(args: argparse.Namespace) -> int:
    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="kaito-devcluster-"))).resolve()
    options = DevClusterOptions(
        kubeconfig=args.kubeconfig.resolve(),
        state_dir=state_dir,
        api_port=args.api_port,
        kuberay_crds=args.kuberay_crds,
        kwok_delay=args.kwok_delay,
        num_cpus=args.num_cpus,
    )
    cluster = DevCluster(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"starting the dev cluster (state in {state_dir}) ...", flush=True)
    start = asyncio.create_task(cluster.start())
    done, _ = await asyncio.wait(
        {start, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if start not in done:
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await cluster.stop()
        print("stopped", flush=True)
        return 130
    try:
        started = start.result()
    except DevClusterError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(banner(started, options.kubeconfig, state_dir), flush=True)
    if args.ready_file:
        args.ready_file.write_text(started.api_url + "\n")
    rc = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except TimeoutError:
            dead = cluster.check_alive()
            if dead:
                print("error: " + "; ".join(dead), file=sys.stderr, flush=True)
                rc = 1
                break
    print("stopping the dev cluster ...", flush=True)
    await cluster.stop()
    print("stopped", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
