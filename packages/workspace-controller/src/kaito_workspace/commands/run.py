"""`kaito-workspace run --local -f FILE`: run a Workspace on this machine, on a local Ray.

The Workspace is validated and planned exactly as the operator does (local mode also allows loopback
data URLs and hostPath volumes: the machine is the user's own). A tuning Workspace runs the tuning with a
live progress display, writes the adapter to its output, then serves the base model with the new adapter;
an inference Workspace serves its preset. The endpoint answers `POST /chat` and the OpenAI API `/v1/*`.
With `--once PROMPT` the prompt is sent to /chat when the endpoint is ready, the answer printed, and
everything shut down. Ctrl-C or SIGTERM stops Serve and Ray cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kaito_workspace.local.documents import DocumentError, Documents, load_documents
from kaito_workspace.local.localize import LocalizeError, LocalMachine, LocalSteps, localize
from kaito_workspace.planning.templates import (
    TRAINING_CONFIG_KEY,
    inference_config_for,
    training_config_from,
)


class RunError(Exception):
    """Ends the run with one clear message and exit code 1."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a Workspace on this machine with a local Ray (tune, then serve /chat)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--local", action="store_true", required=True, help="run on this machine (required)")
    p.add_argument("-f", "--filename", action="append", required=True, type=Path, help="YAML file(s)")
    p.add_argument("--config-dir", action="append", default=[], type=Path, help="more ConfigMaps/Secrets")
    p.add_argument(
        "--volume", action="append", default=[], metavar="NAME=DIR", help="local directory for a volume/PVC"
    )
    p.add_argument("--address", default=None, help="join this Ray cluster instead of starting one")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    p.add_argument("--dashboard-port", type=int, default=8265)
    p.add_argument("--ray-logs", action="store_true", help="show Ray worker logs here")
    p.add_argument("--work-dir", type=Path, default=None, help="default: .kaito/<workspace name>")
    p.add_argument("--once", metavar="PROMPT", default=None, help="ask PROMPT on /chat, print, and stop")
    p.add_argument("--max-new-tokens", type=int, default=48, help="for --once (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, highlight=False)
    try:
        with _sigterm_as_interrupt():
            return _run(args, console)
    except RunError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("stopped")
        return 130


def _run(args: argparse.Namespace, console: Console) -> int:
    from kaito_workspace.api import parse_workspace
    from kaito_workspace.planning import ClusterFacts, PlanningError
    from kaito_workspace.planning.catalog import plan_with_catalog
    from kaito_workspace.validation import validate_workspace

    try:
        docs = load_documents(args.filename, args.config_dir)
        doc = docs.workspace()
    except DocumentError as exc:
        raise RunError(str(exc)) from exc
    problems = validate_workspace(doc, local=True, config_maps=docs.config_maps)
    ws, _ = parse_workspace(doc)
    if problems or ws is None:
        lines = [f"{p.path}: {p.message}" + (f" (fix: {p.hint})" if p.hint else "") for p in problems]
        raise RunError("the Workspace is invalid:\n  " + "\n  ".join(lines))
    try:
        facts = ClusterFacts(
            training_config=_training_config(ws, docs),
            inference_config=inference_config_for(ws, docs.config_maps),
        )
        plan = plan_with_catalog(ws, facts=facts)
    except PlanningError as exc:
        raise RunError(str(exc)) from exc
    machine = LocalMachine(
        work_dir=(args.work_dir or Path(".kaito") / ws.name).resolve(),
        base_dir=args.filename[0].resolve().parent,
        gpus=_local_gpus(),
        host=args.host,
        port=args.port,
        volumes=_volume_flags(args.volume),
    )
    try:
        steps = localize(plan, machine, docs.secrets)
    except LocalizeError as exc:
        raise RunError(str(exc)) from exc
    _print_plan(console, ws.name, plan.mode, steps, machine)
    _check_port_free(args.host, args.port)
    os.environ.update(steps.env)
    return _execute(steps, args, console)


def _execute(steps: LocalSteps, args: argparse.Namespace, console: Console) -> int:
    from kaito_workspace.local.executor import ExecutionError, local_ray, run_tuning_step, start_serving

    with local_ray(args.address, dashboard_port=args.dashboard_port, worker_logs=args.ray_logs) as session:
        if session.dashboard_url:
            console.print(f"Ray dashboard: {session.dashboard_url}")
        try:
            if steps.tune is not None:
                console.print("[bold]tuning[/] ...")
                run_tuning_step(steps.tune, console)
                console.print(f"adapter written to {_output_location(steps.tune)}")
            if steps.serve is None:
                console.print("done (serve-after-tuning is off)")
                return 0
            console.print("[bold]serving[/] ... (loading the model)")
            start_serving(session, steps.serve)
        except ExecutionError as exc:
            raise RunError(str(exc)) from exc
        except Exception as exc:  # the runtime's own errors carry the useful message
            raise RunError(f"{type(exc).__name__}: {exc}") from exc
        endpoint = f"http://{_client_host(args.host)}:{args.port}"
        console.print(f"endpoint: {endpoint}  (POST /chat, /v1/chat/completions, GET /v1/models)")
        console.print(
            f"try: curl -s {endpoint}/chat -H 'content-type: application/json' "
            '-d \'{"messages": [{"role": "user", "content": "Hello"}]}\'',
            soft_wrap=True,
        )
        if args.once is not None:
            answer = _ask(endpoint, args.once, args.max_new_tokens)
            console.print(f"[bold]Q:[/] {args.once}")
            print(answer, flush=True)
            return 0
        console.print("serving; Ctrl-C to stop")
        threading.Event().wait()
    return 0


def _ask(endpoint: str, prompt: str, max_new_tokens: int) -> str:
    import httpx

    # `messages` applies the model's chat template (a bare `prompt` is raw text completion, as in Kaito).
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "return_full_text": False,
        "generate_kwargs": {"max_new_tokens": max_new_tokens, "do_sample": False},
    }
    try:
        response = httpx.post(f"{endpoint}/chat", json=body, timeout=300)
    except httpx.HTTPError as exc:
        raise RunError(f"POST {endpoint}/chat failed: {exc}") from exc
    if response.status_code != 200:
        raise RunError(f"POST {endpoint}/chat answered {response.status_code}: {response.text[:500]}")
    return str(response.json().get("Result", ""))


def _training_config(ws: Any, docs: Documents) -> dict[str, Any] | None:
    name = ws.tuning.config if ws.tuning is not None else None
    if not name:
        return None
    config = training_config_from(docs.config_maps.get(name))
    if config is None:
        raise RunError(
            f"tuning.config: ConfigMap {name!r} with key {TRAINING_CONFIG_KEY} is not in the files given; "
            "add it to the YAML or pass --config-dir"
        )
    return config


def _volume_flags(values: list[str]) -> dict[str, Path]:
    volumes: dict[str, Path] = {}
    for value in values:
        name, sep, directory = value.partition("=")
        if not sep or not name or not directory:
            raise RunError(f"--volume {value!r}: expected NAME=DIR (NAME: a PVC claimName or volume name)")
        volumes[name] = Path(directory)
    return volumes


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RunError(
                f"--port {port}: {host}:{port} is in use ({exc.strerror}); choose another --port"
            ) from exc


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _output_location(tune: dict[str, Any]) -> str:
    output = tune.get("output", {})
    return str(output.get("path") or output.get("image") or "?")


def _print_plan(console: Console, name: str, mode: str, steps: LocalSteps, machine: LocalMachine) -> None:
    table = Table(title=f"Workspace {name}: {mode} on this machine", show_header=False, title_justify="left")
    config = steps.tune or steps.serve or {}
    model = config.get("model", {})
    table.add_row(
        "model", f"{model.get('id') or model.get('path')} (revision {model.get('revision') or 'main'})"
    )
    if steps.tune is not None:
        table.add_row("method", str(steps.tune.get("method")))
        table.add_row("data", _describe_io(steps.tune.get("input", {})))
        table.add_row("output", _describe_io(steps.tune.get("output", {})))
        table.add_row("checkpoints", str(steps.tune.get("storage_path")))
    if steps.serve is not None:
        adapters = ", ".join(a.get("name", "?") for a in steps.serve.get("adapters", [])) or "none"
        table.add_row("serve", f"http://{_client_host(machine.host)}:{machine.port} (adapters: {adapters})")
    table.add_row("resources", f"{machine.gpus} GPU(s)" if machine.gpus else "CPU (no GPU found)")
    table.add_row("work dir", str(machine.work_dir))
    for note in steps.notes:
        table.add_row("note", note)
    console.print(table)


def _describe_io(section: dict[str, Any]) -> str:
    if "urls" in section:
        return ", ".join(section["urls"])
    return str(section.get("path") or section.get("image") or "?")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so Serve and Ray are shut down by the same `finally` blocks."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.stderr.flush()
