"""Conformance: a real kopf operator (subprocess) against the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kube_api_emulator import KubeApiEmulator
from kube_api_emulator.testing import wait_for

DATA = Path(__file__).parent / "data"
G, V, P = "test.example.com", "v1", "widgets"


@pytest.fixture(scope="module")
def operator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[KubeApiEmulator, Path, client.ApiClient]]:
    tmp = tmp_path_factory.mktemp("kopf")
    with KubeApiEmulator.in_thread(crds=[DATA / "widgets-crd.yaml"], kubeconfig=tmp / "kubeconfig") as emu:
        env = {**os.environ, "KUBECONFIG": str(tmp / "kubeconfig"), "KOPF_TEST_MARKERS": str(tmp)}
        log = open(tmp / "kopf.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--namespace",
                "default",
                "--verbose",
                str(DATA / "kopf_operator.py"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = config.new_client_from_config(str(tmp / "kubeconfig"))
        try:
            yield emu, tmp, api
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            api.close()
            errors = [
                ln
                for ln in (tmp / "kopf.log").read_text().splitlines()
                if " ERROR " in ln or "Traceback" in ln
            ]
            assert not errors, "kopf logged errors:\n" + "\n".join(errors)


def test_kopf_handlers_timer_status_and_finalizer(
    operator: tuple[KubeApiEmulator, Path, client.ApiClient],
) -> None:
    _, tmp, api = operator
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object(
        G,
        V,
        "default",
        P,
        {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1}},
    )

    def get() -> dict[str, Any]:
        return co.get_namespaced_custom_object(G, V, "default", P, "w1")

    obj = wait_for(
        lambda: (o := get()).get("status", {}).get("phase") == "Created" and o, what="create handler"
    )
    assert obj["status"]["created"] == {"message": "hello w1"}
    assert "test.example.com/kopf-finalizer" in obj["metadata"]["finalizers"]
    assert obj["spec"]["color"] == "red"  # schema default

    def created_event() -> bool:
        events = client.CoreV1Api(api).list_namespaced_event(
            "default", field_selector="involvedObject.name=w1"
        )
        return any(e.reason == "Created" and "size 1" in e.message for e in events.items)

    wait_for(created_event, what="the Created event kopf posts (asynchronously)")

    wait_for(lambda: get().get("status", {}).get("ticks", 0) >= 3, what="timer ticks")

    co.patch_namespaced_custom_object(G, V, "default", P, "w1", {"spec": {"size": 5}})
    obj = wait_for(lambda: (o := get()).get("status", {}).get("size") == 5 and o, what="update handler")
    assert obj["metadata"]["generation"] == 2

    co.delete_namespaced_custom_object(G, V, "default", P, "w1")

    def gone() -> bool:
        try:
            get()
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, what="deletion through the finalizer")
    assert (tmp / "deleted-w1").read_text() == "yes"
