"""A Ray head on 127.0.0.1 for the dev cluster, every port chosen free.

`ray.init` cannot choose the dashboard agent's port (fixed 52365, which the Ray Jobs API needs and
which any other Ray on the machine may hold), so the head runs as `ray start --head --block`, a child
process in its own session: stopping it (SIGTERM, then the session's process group) ends every Ray
process it started and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    gcs_address: str
    dashboard_url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            # SIGINT: `ray start --block` exits through its atexit hook, which stops its processes.
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # Whatever is left of the session this head started (raylet workers included).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def start_ray_head(log_file: Path, num_cpus: int | None = None, timeout: float = 120) -> RayHead:
    """Start the head and wait until its Jobs API answers (the job agent is up)."""
    ports = {
        name: free_port()
        for name in (
            "port",
            "dashboard-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "node-manager-port",
            "object-manager-port",
            "ray-client-server-port",
        )
    }
    ray = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
    ]
    cmd += [f"--{name}={port}" for name, port in ports.items()]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    env = {**os.environ, **LOOPBACK_ENV}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    head = RayHead(
        gcs_address=f"127.0.0.1:{ports['port']}",
        dashboard_url=f"http://127.0.0.1:{ports['dashboard-port']}",
        process=process,
        log_file=log_file,
    )
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}; see {log_file}")
        try:
            # The jobs list needs the head's job agent: ready means jobs can be submitted.
            r = httpx.get(f"{head.dashboard_url}/api/jobs/", timeout=5)
            if r.status_code == 200:
                return head
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    head.stop()
    raise TimeoutError(f"the Ray head did not come up in {timeout:.0f}s ({last}); see {log_file}")
