"""Helpers for operator tests: run ``kaito-provisioner operator`` as a real process, wait on conditions."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "charts" / "gpu-provisioner" / "crds"
FAST = [
    "--metrics-host", "127.0.0.1",
    "--metrics-port", "0",
    "--registration-poll", "0.2",
    "--gc-interval", "1",
    "--gc-grace", "2",
    "--backoff-base", "0.5",
    "--kwok-launch-delay", "0.2",
    "--kwok-ready-delay", "0.3",
]  # fmt: skip


def wait_until(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}; last value: {last!r}")


class OperatorProcess:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kaito_provisioner.cli", "operator", *args],
            env={**os.environ, **env},
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> OperatorProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            if not self.port:
                m = re.search(r"metrics and probes on [\d.]+:(\d+)", self.log.read_text())
                if not m:
                    return False
                self.port = int(m.group(1))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, timeout, what="operator /readyz")
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def kill(self) -> None:
        """Die abruptly, as a crashed or evicted pod would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._fh.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


@contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on a background thread (for the fake ARM server in synchronous tests)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run_in(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 30.0) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
