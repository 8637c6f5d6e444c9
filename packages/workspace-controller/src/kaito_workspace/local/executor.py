"""Run planned steps on a local Ray: a tuning run (with live progress) and a Serve application.

Used by `kaito-workspace run --local` and by the dev cluster's KubeRay stand-in, so both execute exactly
the runtime configs the planner produced. Everything binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from kaito_workspace.local.progress import follow_progress, read_progress


class ExecutionError(RuntimeError):
    """A step failed; the message is what the user needs (the runtime's own error text)."""


@dataclass
class RaySession:
    address: str
    dashboard_url: str | None
    #: True when this session started the Ray (then shutting it down stops everything, Serve included)
    owned: bool = True
    #: the Serve application this session deployed
    app: str | None = None


def _prepare_loopback_env() -> None:
    # Ray binds to the machine's LAN address unless told otherwise; keep everything on loopback.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@contextlib.contextmanager
def local_ray(
    address: str | None = None, *, dashboard_port: int = 8265, worker_logs: bool = False
) -> Iterator[RaySession]:
    """Start a Ray on 127.0.0.1 (or join `address`), and shut Serve and Ray down on the way out.

    Worker logs stay in Ray's log directory unless `worker_logs`: failures still surface as exceptions
    with the runtime's message, and progress comes from the progress file.
    """
    _prepare_loopback_env()
    import ray

    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    sigterm = signal.getsignal(signal.SIGTERM)
    common: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": worker_logs}
    if address:
        context = ray.init(address=address, **common)
    else:
        context = ray.init(
            address="local",  # always a new Ray: never attach to another one found on the machine
            _node_ip_address="127.0.0.1",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            **common,
        )
    if callable(sigterm) and threading.current_thread() is threading.main_thread():
        # ray.init installs a native handler that aborts the process on SIGTERM; keep the caller's,
        # so SIGTERM unwinds through the clean shutdown below.
        signal.signal(signal.SIGTERM, sigterm)
    dashboard = getattr(context, "dashboard_url", None) or None
    session = RaySession(
        address=context.address_info.get("address", address or ""),
        dashboard_url=f"http://{dashboard}" if dashboard and "://" not in dashboard else dashboard,
        owned=not address,
    )
    try:
        yield session
    finally:
        if session.app and not session.owned:
            # A joined cluster keeps running: remove only what this run deployed.
            from ray import serve

            with contextlib.suppress(Exception):
                serve.delete(session.app)
        ray.shutdown()


def run_tuning_step(config: dict[str, Any], console: Console) -> Any:
    """Run `kaito_runtime.tuning.run_tuning` on the current Ray while showing its progress file."""
    from kaito_runtime.tuning import ConfigError, parse_config, run_tuning

    try:
        tune = parse_config(config)
    except ConfigError as exc:
        raise ExecutionError(f"tuning config: {exc}") from exc
    progress_file = Path(tune.progress_file) if tune.progress_file else None
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run_tuning(tune)
        except BaseException as exc:  # reported by the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="kaito-tuning", daemon=True)
    done = threading.Event()
    worker.start()
    watcher = None
    if progress_file is not None:
        watcher = threading.Thread(target=follow_progress, args=(progress_file, done, console), daemon=True)
        watcher.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    finally:
        done.set()
        if watcher is not None:
            watcher.join(5)
    if "error" in outcome:
        error = outcome["error"]
        record = read_progress(progress_file) if progress_file else None
        detail = (record or {}).get("message") or str(error) or type(error).__name__
        raise ExecutionError(f"tuning failed: {detail}") from error
    return outcome.get("result")


def start_serving(session: RaySession, config: dict[str, Any]) -> Any:
    """Deploy the runtime's Serve application on the current Ray; returns once `/health` answers 200."""
    from kaito_runtime.serving import run_local
    from kaito_runtime.serving.config import ServeConfig

    serve_config = ServeConfig.model_validate(config)
    session.app = serve_config.name
    return run_local(serve_config)
