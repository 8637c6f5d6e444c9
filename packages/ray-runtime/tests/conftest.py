"""Shared fixtures for the ray-runtime tests.

- `ray_cluster` (session): a fresh local Ray bound to 127.0.0.1 (auth off, 2 CPUs, dashboard on
  127.0.0.1 so Train V2 has its state API), shut down at the end. Tuning and serving tests share it.
- `data_server` (session): a loopback HTTP server for training data, with routes that misbehave
  on purpose (404, empty body, HTML, oversized, flaky, slow).
- `tiny_model` / `smollm2_model`: offline model sources (see kaito_runtime.modeling).

Nothing here reaches beyond 127.0.0.1, and every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Before anything imports Ray or a hub client: stay offline and on loopback.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ADDRESS", None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class RayCluster:
    address: str
    dashboard_url: str
    temp_dir: str


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    import ray

    # A short private temp dir (Unix socket paths are limited to ~107 chars) so this session never
    # attaches to, or is confused with, another Ray on the machine.
    temp_dir = tempfile.mkdtemp(prefix="kr-", dir="/tmp")
    port = free_port()
    context = ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        _temp_dir=temp_dir,
        log_to_driver=True,
    )
    try:
        yield RayCluster(
            address=context.address_info["gcs_address"],
            dashboard_url=f"http://127.0.0.1:{port}",
            temp_dir=temp_dir,
        )
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model():
    from kaito_runtime.modeling import TINY_RANDOM_ID, ModelSource, resolve_model_dir

    source = ModelSource(id=TINY_RANDOM_ID)
    resolve_model_dir(source)  # build once, before any worker races for it
    return source


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from kaito_runtime.modeling import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(scope="session")
def smollm2_model():
    from kaito_runtime.modeling import SMOLLM2_ID, ModelSource, resolve_model_dir

    source = ModelSource(id=SMOLLM2_ID)
    resolve_model_dir(source)
    return source


@dataclass
class DataServer:
    """Serves `files` at /files/<name>; special routes:
    /status/<code>, /empty/<name>, /html/<name>, /huge/<name> (claims 10 GB), /stream/<n> (n bytes,
    no length), /flaky/<k>/<name> (503 for the first k requests), /slow/<seconds>/<name>."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, content: bytes | str) -> str:
        self.files[name] = content.encode() if isinstance(content, str) else content
        return self.url(f"/files/{name}")

    def url(self, path: str) -> str:
        return self.base_url + path


_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".jsonl": "application/jsonl",
    ".json": "application/json",
    ".csv": "text/csv",
}


def _handler(server: DataServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(
            self, code: int, body: bytes, ctype: str = "application/octet-stream", length: int | None = None
        ):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD":
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            server.hits[path] = server.hits.get(path, 0) + 1
            parts = path.strip("/").split("/")
            kind, rest = parts[0], parts[1:]
            name = rest[-1] if rest else ""
            ctype = _TYPES.get(Path(name).suffix, "application/octet-stream")
            if kind == "files" and name in server.files:
                return self._send(200, server.files[name], ctype)
            if kind == "status":
                return self._send(int(rest[0]), b"nope", "text/plain")
            if kind == "empty":
                return self._send(200, b"", ctype)
            if kind == "html":
                return self._send(200, b"<html><body>Sign in</body></html>", "text/html; charset=utf-8")
            if kind == "huge":
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(10 * 1024**3))
                self.end_headers()
                return None
            if kind == "stream":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()  # no length: the client must count
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(b"x" * int(rest[0]))
                self.close_connection = True
                return None
            if kind == "flaky" and name in server.files:
                if server.hits[path] <= int(rest[0]):
                    return self._send(503, b"busy", "text/plain")
                return self._send(200, server.files[name], ctype)
            if kind == "slow" and name in server.files:
                time.sleep(float(rest[0]))
                return self._send(200, server.files[name], ctype)
            return self._send(404, b"not found", "text/plain")

    return Handler


@pytest.fixture(scope="session")
def data_server() -> Iterator[DataServer]:
    state = DataServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@dataclass
class Registry:
    """A real OCI registry (Debian's docker-registry) on 127.0.0.1 with htpasswd auth."""

    host: str
    username: str
    password: str
    storage: Path

    def ref(self, repo: str, tag: str = "v1") -> str:
        return f"{self.host}/{repo}:{tag}"


REGISTRY_BINARY = "/usr/bin/docker-registry"


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory) -> Iterator[Registry]:
    import crypt  # bcrypt for htpasswd (Python 3.11; the registry accepts $2b$)
    import subprocess
    import urllib.error
    import urllib.request

    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(
            f"{REGISTRY_BINARY} not found: the OCI round-trip tests need Debian's registry. "
            "Install it with: apt-get update && apt-get install -y docker-registry"
        )
    root = tmp_path_factory.mktemp("registry")
    user, password = "kaito", "s3cret-pw"
    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4)
    (root / "htpasswd").write_text(f"{user}:{crypt.crypt(password, salt)}\n")
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: kaito-test, path: {root / 'htpasswd'}}}}}\n"
    )
    with open(root / "registry.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(root / "config.yml")], stdout=log, stderr=log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"registry exited: {(root / 'registry.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False
        return True

    try:
        wait_until(up, timeout=30, what="the registry to listen")
        yield Registry(f"127.0.0.1:{port}", user, password, root / "data")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
