"""The pytest plugin and the library entry points other areas use."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml

from kube_api_emulator import KubeApiEmulator


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def test_fixture_serves_and_writes_kubeconfig(kube_api: KubeApiEmulator) -> None:
    assert kube_api.url.startswith("http://127.0.0.1:")
    cfg = yaml.safe_load(kube_api.kubeconfig.read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == kube_api.url
    names = [n["metadata"]["name"] for n in _get(kube_api.url + "/api/v1/namespaces")["items"]]
    assert {"default", "kube-system"} <= set(names)


async def test_async_context_manager() -> None:
    async with KubeApiEmulator(port=0) as api:
        assert api.port != 0
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(api.url + "/version") as r:
            assert (await r.json())["major"] == "1"


@pytest.mark.kube_api_crds("/dev/null")
def test_crd_marker_accepts_paths(kube_api: KubeApiEmulator) -> None:
    assert _get(kube_api.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"] == []


def test_module_fixture_and_call(kube_api_module: KubeApiEmulator) -> None:
    names = kube_api_module.call(
        lambda: [o["metadata"]["name"] for o in kube_api_module.cluster.store.list(("", "namespaces"))]
    )
    assert "kube-system" in names
