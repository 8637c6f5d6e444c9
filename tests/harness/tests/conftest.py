"""Shared fixtures for the emulator's own tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_api_emulator import KubeApiEmulator
from kube_api_emulator.testing import Kubectl

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def reference_crds() -> Path:
    return SHARED / "reference" / "crds"


@pytest.fixture(scope="session")
def workspace_crd(reference_crds: Path) -> Path:
    """The chart's Workspace CRD when present, else the Kaito v0.12.0 reference CRD."""
    chart = REPO / "charts" / "workspace-controller" / "crds"
    found = sorted(chart.glob("*workspace*.yaml")) if chart.is_dir() else []
    return found[0] if found else reference_crds / "kaito-v0.12.0_kaito.sh_workspaces.yaml"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiEmulator]:
    """One emulator per test module (modules share it to keep the suite fast)."""
    kc = tmp_path_factory.mktemp("emu") / "kubeconfig"
    with KubeApiEmulator.in_thread(kubeconfig=kc) as emu:
        yield emu


@pytest.fixture(scope="module")
def kubectl(emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    assert emulator.kubeconfig is not None
    return Kubectl(emulator.kubeconfig, tmp_path_factory.mktemp("home"))
