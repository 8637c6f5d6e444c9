"""Both charts as the dev cluster installs them: `helm lint --strict`, `helm template`, and every rendered
manifest valid (built-in kinds against the Kubernetes schemas, custom resources against the CRDs the
charts install). The per-chart details are tested next to each package; the RBAC rules are compared with
the API calls of a real run in test_full_stack.py."""

from __future__ import annotations

import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kaito_devcluster.cluster import CHARTS, DevClusterError, helm_binary
from kaito_devcluster.testing import REPO

K8S_VERSION = "1.33"


@pytest.fixture(scope="module")
def helm() -> str:
    try:
        return str(helm_binary())
    except DevClusterError as exc:
        pytest.skip(str(exc))


def render(helm: str, chart: str) -> list[dict[str, Any]]:
    release, namespace = CHARTS[chart]
    out = subprocess.run(
        [helm, "template", release, str(REPO / "charts" / chart), "--namespace", namespace, "--include-crds"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_helm_lint_strict(helm: str, chart: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(REPO / "charts" / chart)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_manifest_validates(helm: str) -> None:
    docs = [d for chart in sorted(CHARTS) for d in render(helm, chart)]
    crds = {
        (d["spec"]["group"], v["name"], d["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for d in docs
        if d["kind"] == "CustomResourceDefinition"
        for v in d["spec"]["versions"]
    }
    checked = []
    for doc in docs:
        group, _, version = doc["apiVersion"].rpartition("/")
        schema = crds.get((group, version, doc["kind"]))
        if schema is not None:
            jsonschema.validate(doc, schema)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert any(c.startswith("KaitoNodeClass/") for c in checked), checked
    assert len(checked) >= 10, checked
