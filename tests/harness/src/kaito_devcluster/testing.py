"""Helpers for tests driving the dev cluster: reference data paths, free ports, polling with a deadline."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kube_api_emulator.testing import wait_for as emulator_wait_for

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[4]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
KUBERAY_CRDS = sorted((SHARED / "reference" / "crds").glob("kuberay-*.yaml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `check` until truthy (exceptions count as not yet); fail with the last value after `timeout`."""
    return emulator_wait_for(check, timeout=timeout, interval=interval, what=what)
