"""The command line's errors and the work queue's coalescing and requeues."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from kaito_provisioner.workqueue import WorkQueue


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaito_provisioner.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_missing_azure_settings_are_named(tmp_path):
    result = run_cli("operator", "--provider", "azure", env={"KUBECONFIG": str(tmp_path / "none")})
    assert result.returncode == 2
    assert "subscription_id (set $ARM_SUBSCRIPTION_ID or --subscription-id)" in result.stderr
    assert "cluster_name" in result.stderr


def test_missing_cluster_is_explained(tmp_path):
    result = run_cli("operator", "--provider", "kwok", env={"KUBECONFIG": str(tmp_path / "none")})
    assert result.returncode == 2 and "pass --kubeconfig" in result.stderr


def test_provider_is_required():
    result = run_cli("operator", env={})
    assert result.returncode == 2 and "--provider" in result.stderr


async def test_work_queue_coalesces_and_requeues():
    calls: list[str] = []
    gate = asyncio.Event()

    async def handler(key):
        calls.append(key)
        if len(calls) == 1:
            await gate.wait()
        return 0.05 if calls.count(key) < 3 and key == "b" else None

    queue = WorkQueue(handler)
    queue.add("a")
    await asyncio.sleep(0.01)
    for _ in range(5):  # while "a" runs: coalesced into one more run
        queue.add("a")
    gate.set()
    queue.add("b")
    await asyncio.sleep(0.4)
    await queue.close()
    assert calls.count("a") == 2
    assert calls.count("b") == 3  # requeued twice, then done


async def test_work_queue_survives_handler_errors():
    calls = 0

    async def handler(key):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return None

    queue = WorkQueue(handler, error_backoff=0.05)
    queue.add("x")
    await asyncio.sleep(0.3)
    await queue.close()
    assert calls == 2
