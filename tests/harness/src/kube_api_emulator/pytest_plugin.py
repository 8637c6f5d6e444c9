"""pytest plugin (entry point `pytest11`): the `kube_api` fixture, a running emulator per test.

`kube_api.url`, `kube_api.kubeconfig` (a kubeconfig path for kubectl / kopf / kubernetes clients),
`kube_api.cluster` (the stored objects: use `kube_api.call(fn)` to touch them from the test thread).
`kube_api_module` is the same, shared by the tests of one module. The emulator runs on its own thread,
so the fixtures work for sync and async tests alike. CRDs: mark a test (or a module, with `pytestmark`)
with `@pytest.mark.kube_api_crds("path/to/crd.yaml", ...)` or call `kube_api.load_crds([...])`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import KubeApiEmulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kube_api_crds(*paths): CRD files/dirs loaded into the kube_api fixture"
    )


def _running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeApiEmulator]:
    marker = request.node.get_closest_marker("kube_api_crds")
    crds = [Path(p) for p in marker.args] if marker else []
    kubeconfig = tmp_path_factory.mktemp("kube_api") / "kubeconfig"
    with KubeApiEmulator.in_thread(crds=crds, kubeconfig=kubeconfig) as emu:
        yield emu


@pytest.fixture
def kube_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeApiEmulator]:
    """A fresh emulator for one test."""
    yield from _running(request, tmp_path_factory)


@pytest.fixture(scope="module")
def kube_api_module(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeApiEmulator]:
    """One emulator shared by the tests of a module."""
    yield from _running(request, tmp_path_factory)
