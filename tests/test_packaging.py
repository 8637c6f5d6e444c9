"""What can be checked of the images and packages without building images: the entrypoints run,
and the pinned versions agree between package metadata, Dockerfiles, constraints and charts."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {
    # directory: (distribution, console script, image repository)
    "provisioner": ("kaito-gpu-provisioner", "kaito-provisioner", "ghcr.io/kaito-ray/gpu-provisioner"),
    "workspace-controller": (
        "kaito-workspace-controller",
        "kaito-workspace",
        "ghcr.io/kaito-ray/workspace-controller",
    ),
    "ray-runtime": ("kaito-ray-runtime", "kaito-runtime", "ghcr.io/kaito-ray/ray-runtime"),
}
CHARTS = {"provisioner": "gpu-provisioner", "workspace-controller": "workspace-controller"}


def _project(package: str) -> dict:
    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]


def _dockerfile(package: str) -> str:
    return (ROOT / "packages" / package / "Dockerfile").read_text()


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_distribution_names_and_console_scripts(package: str) -> None:
    dist, script, _ = PACKAGES[package]
    project = _project(package)
    assert project["name"] == dist
    assert script in project["scripts"]
    assert (ROOT / "packages" / package / "README.md").read_text().strip()


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_console_script_runs(package: str) -> None:
    _, script, _ = PACKAGES[package]
    exe = Path(sys.executable).with_name(script)
    assert exe.exists(), f"{script} is not installed in {exe.parent}; run scripts/setup.sh"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.parametrize("package", ["provisioner", "workspace-controller"])
def test_operator_images_are_slim_python_311_non_root(package: str) -> None:
    dockerfile = _dockerfile(package)
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.M)
    assert re.search(r"^USER 65532", dockerfile, re.M)
    script = PACKAGES[package][1]
    assert f'ENTRYPOINT ["{script}"]' in dockerfile


def test_runtime_image_matches_the_pinned_ray() -> None:
    pins = {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-\[\],]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    }
    ray_dep = next(d for d in _project("ray-runtime")["dependencies"] if d.startswith("ray["))
    ray_version = ray_dep.split("==")[1]
    assert pins["ray"] == ray_version
    base = re.search(r"^FROM rayproject/ray:(\S+)", _dockerfile("ray-runtime"), re.M)
    assert base, "the runtime image must build on rayproject/ray"
    assert base.group(1) == f"{ray_version}-py311-gpu"
    assert pins["torch"] == "2.13.0"


@pytest.mark.parametrize("package", sorted(CHARTS))
def test_chart_default_image_is_the_package_image(package: str) -> None:
    chart_dir = ROOT / "charts" / CHARTS[package]
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    version = _project(package)["version"]
    assert chart["appVersion"] == version
    assert values["image"]["repository"] == PACKAGES[package][2]
    assert values["image"].get("tag") in (None, "", version)


def test_controller_chart_runs_the_runtime_image_and_ray_version_of_the_packages() -> None:
    helm = Path(sys.executable).with_name("helm")
    assert helm.exists(), "helm is missing: run scripts/setup-test-tools.sh"
    rendered = subprocess.run(
        [str(helm), "template", "wc", str(ROOT / "charts" / "workspace-controller")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    runtime = _project("ray-runtime")
    ray_version = next(d for d in runtime["dependencies"] if d.startswith("ray[")).split("==")[1]
    assert f"--runtime-image={PACKAGES['ray-runtime'][2]}:{runtime['version']}" in args
    assert f"--ray-version={ray_version}" in args
