"""charts/workspace-controller: helm lint --strict, helm template, every rendered manifest validated,
and the chart agreeing with the code it deploys (CLI flags, webhook path, tuning templates, RBAC)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaito_workspace.cli import build_parser
from kaito_workspace.operator.handlers import WEBHOOK_ID
from kaito_workspace.planning.templates import (
    TEMPLATE_CONFIGMAPS,
    TRAINING_CONFIG_KEY,
    default_training_config,
)

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "workspace-controller"
HELM = shutil.which("helm", path=str(REPO / ".venv" / "bin")) or shutil.which("helm")
K8S_VERSION = "1.30.0"

pytestmark = pytest.mark.skipif(HELM is None, reason="helm not installed: run scripts/get-helm.sh")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    out = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr + out.stdout
    return out


def render(*sets: str) -> list[dict[str, Any]]:
    args = ["template", "wc", str(CHART), "--namespace", "kaito-workspace", "--include-crds"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module")
def default_render() -> list[dict[str, Any]]:
    return render()


def test_lint_strict() -> None:
    helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("webhook.enabled=false", "nvidiaDevicePlugin.enabled=false", "defaultTuningTemplates=false"),
        ("nodeProvisioner=byo", "watchNamespaces={team-a,team-b}", "serviceAccount.create=false"),
        ("webhook.certificate.existingSecret=my-tls", "webhook.certificate.caBundle=Q0E="),
    ],
    ids=["defaults", "minimal", "byo", "existing-cert"],
)
def test_every_rendered_manifest_validates(sets: tuple[str, ...]) -> None:
    docs = render(*sets)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_values_schema_rejects_bad_values() -> None:
    out = helm("template", "wc", str(CHART), "--set", "nodeProvisioner=magic", check=False)
    assert out.returncode != 0 and "nodeProvisioner" in out.stderr
    out = helm("template", "wc", str(CHART), "--set", "webhook.enabeld=true", check=False)
    assert out.returncode != 0


def test_images_default_to_app_version(default_render) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    [dep] = by_kind(default_render, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == f"ghcr.io/kaito-ray/workspace-controller:{chart['appVersion']}"
    assert f"--runtime-image=ghcr.io/kaito-ray/ray-runtime:{chart['appVersion']}" in c["args"]


def test_deployment_is_locked_down_and_args_parse(default_render) -> None:
    [dep] = by_kind(default_render, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The container's arguments are accepted by the real CLI.
    args = build_parser().parse_args(c["args"])
    assert args.command == "operator" and args.webhook == "on"
    assert args.webhook_cert == Path("/etc/kaito/webhook-certs/tls.crt")
    assert args.controller_namespace == "kaito-workspace"


def test_webhook_configuration(default_render) -> None:
    [vwc] = by_kind(default_render, "ValidatingWebhookConfiguration")
    [hook] = vwc["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == f"/{WEBHOOK_ID}"
    assert hook["rules"][0]["resources"] == ["workspaces"]
    assert set(hook["rules"][0]["apiVersions"]) == {"v1alpha1", "v1beta1"}
    [secret] = [s for s in by_kind(default_render, "Secret") if s["type"] == "kubernetes.io/tls"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    services = {s["metadata"]["name"]: s for s in by_kind(default_render, "Service")}
    svc = services[hook["clientConfig"]["service"]["name"]]
    assert svc["spec"]["ports"][0]["port"] == 443


def test_default_tuning_templates_match_the_code(default_render) -> None:
    cms = {c["metadata"]["name"]: c for c in by_kind(default_render, "ConfigMap")}
    for method, name in TEMPLATE_CONFIGMAPS.items():
        data = yaml.safe_load(cms[name]["data"][TRAINING_CONFIG_KEY])
        assert data["training_config"] == default_training_config(method)


def test_rbac_is_least_privilege(default_render) -> None:
    [role] = by_kind(default_render, "ClusterRole")
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert not any(r == "secrets" for _, r in grants), "the controller never reads Secrets"
    assert not any("*" in verbs for verbs in grants.values())
    assert grants[("", "nodes")] == {"get", "list"}
    assert grants[("karpenter.sh", "nodeclaims")] == {"list", "watch", "create", "delete"}
    assert grants[("kaito.sh", "workspaces/status")] == {"patch"}
    assert grants[("apiextensions.k8s.io", "customresourcedefinitions")] == {"list", "watch"}  # kopf
    [binding] = by_kind(default_render, "ClusterRoleBinding")
    [sa] = by_kind(default_render, "ServiceAccount")
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"]


def test_device_plugin_tolerates_gpu_taint(default_render) -> None:
    [ds] = by_kind(default_render, "DaemonSet")
    tolerations = ds["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in tolerations


def test_notes_mention_kuberay() -> None:
    out = helm("install", "wc", str(CHART), "--dry-run=client", "--namespace", "kaito-workspace", check=False)
    text = out.stdout if out.returncode == 0 else (CHART / "templates" / "NOTES.txt").read_text()
    assert "KubeRay" in text and "1.7" in text
