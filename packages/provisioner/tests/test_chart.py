"""charts/gpu-provisioner: helm lint/template, every rendered manifest validated, CRDs against Karpenter's."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "gpu-provisioner"
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference" / "crds"
HELM = shutil.which("helm", path=str(ROOT / ".venv" / "bin")) or shutil.which("helm")
K8S_VERSION = "1.33"
AZURE = [
    "--set", "azure.subscriptionId=00000000-0000-0000-0000-000000000001",
    "--set", "azure.resourceGroup=rg",
    "--set", "azure.clusterName=aks",
    "--set", "azure.clientId=11111111-2222-3333-4444-555555555555",
]  # fmt: skip
GPU_REQUIREMENT = {
    "key": "node.kubernetes.io/instance-type",
    "operator": "In",
    "values": ["Standard_NC6s_v3"],
}

pytestmark = pytest.mark.skipif(HELM is None, reason="helm not installed: run scripts/get-helm.sh")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=check)


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "gp", str(CHART), "--namespace", "kaito-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def load_crd(path: Path) -> dict[str, Any]:
    return next(
        d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"
    )


OURS = {load_crd(p)["spec"]["names"]["kind"]: load_crd(p) for p in sorted((CHART / "crds").glob("*.yaml"))}


def schema_of(crd: dict[str, Any], version: str) -> dict[str, Any]:
    v = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return v["schema"]["openAPIV3Schema"]


def accepts(crd: dict[str, Any], version: str, obj: dict[str, Any]) -> bool:
    return jsonschema.Draft7Validator(schema_of(crd, version)).is_valid(obj)


@pytest.mark.parametrize("values", [[], ["--set", "provider=kwok"], AZURE])
def test_lint_strict(values):
    result = helm("lint", "--strict", str(CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "values", [[], ["--set", "provider=kwok", "--set", "lifecycle.watchMachines=false"], AZURE]
)
def test_every_rendered_manifest_validates(values):
    docs = render(*values, "--include-crds")
    kinds = sorted(d["kind"] for d in docs)
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"} <= set(kinds)
    assert kinds.count("CustomResourceDefinition") == 3
    crds = {d["spec"]["names"]["kind"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    for doc in docs:
        api_group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if doc["kind"] in crds and api_group == crds[doc["kind"]]["spec"]["group"]:
            version = doc["apiVersion"].split("/")[1]
            jsonschema.validate(doc, schema_of(crds[doc["kind"]], version))
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_deployment_is_hardened_and_uses_workload_identity():
    docs = render(*AZURE)
    deploy = by_kind(docs, "Deployment")
    pod = deploy["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/kaito-ray/gpu-provisioner:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["args"][:2] == ["operator", "--provider=azure"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ARM_SUBSCRIPTION_ID"] == "00000000-0000-0000-0000-000000000001"
    assert env["AZURE_CLUSTER_NAME"] == "aks"
    assert {
        p["path"] for p in (container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"])
    } == {
        "/healthz",
        "/readyz",
    }
    sa = by_kind(docs, "ServiceAccount")
    assert (
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
        == "11111111-2222-3333-4444-555555555555"
    )
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    service = by_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_cli_accepts_the_rendered_arguments():
    from kaito_provisioner.cli import build_parser, settings_from

    for values in (AZURE, ["--set", "provider=kwok"]):
        container = by_kind(render(*values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        settings = settings_from(build_parser().parse_args(container["args"]))
        assert settings.provider in ("azure", "kwok") and settings.metrics_port == 8080


def test_cluster_role_is_least_privilege():
    rules = by_kind(render(*AZURE), "ClusterRole")["rules"]
    granted = {
        (g, r): set(rule["verbs"])
        for rule in rules
        for g in rule.get("apiGroups", [])
        for r in rule["resources"]
    }
    assert granted[("karpenter.sh", "nodeclaims")] == {"get", "list", "watch", "patch", "delete"}
    assert granted[("karpenter.sh", "nodeclaims/status")] == {"patch"}
    assert granted[("", "nodes")] == {"get", "list", "watch", "patch", "delete"}  # azure: never creates nodes
    assert granted[("", "events")] == {"create"}
    assert ("kaito.sh", "kaitonodeclasses") not in granted  # never read: the claim carries the image family
    assert ("", "secrets") not in granted and ("", "pods") not in granted
    assert all("*" not in verbs for verbs in granted.values())
    kwok = by_kind(render("--set", "provider=kwok"), "ClusterRole")["rules"]
    assert any("nodes/status" in r.get("resources", []) for r in kwok)


def test_values_schema_rejects_bad_values_with_the_field_named():
    result = helm("template", "gp", str(CHART), "--set", "provider=gcp", check=False)
    assert result.returncode != 0 and "provider" in result.stderr
    result = helm(
        "template", "gp", str(CHART), "--set", "lifecycle.registrationTimeoutSeconds=-1", check=False
    )
    assert result.returncode != 0 and "registrationTimeoutSeconds" in result.stderr


# ---- CRDs against the upstream ones -----------------------------------------------------------------------
REFS = {
    "NodeClaim": ("karpenter-v1.7.0_karpenter.sh_nodeclaims.yaml", "v1"),
    "Machine": ("karpenter-v0.31.0_karpenter.sh_machines.yaml", "v1alpha5"),
}


@pytest.mark.parametrize("kind", sorted(REFS))
def test_crd_shape_matches_upstream(kind):
    ours, ref = OURS[kind], load_crd(REFERENCE / REFS[kind][0])
    assert ours["metadata"]["name"] == ref["metadata"]["name"]
    for key in ("group", "scope", "names"):
        assert ours["spec"][key] == ref["spec"][key], key
    strip = lambda vs: [  # noqa: E731
        {k: v[k] for k in ("name", "served", "storage", "subresources")}
        | {"columns": v["additionalPrinterColumns"]}
        for v in vs
    ]
    assert strip(ours["spec"]["versions"]) == strip(ref["spec"]["versions"])


def _paths(schema: dict[str, Any], prefix: str = "") -> dict[str, tuple]:
    """Every property path with its type, enum, pattern, required list and validation bounds."""
    out = {
        prefix or "/": (
            schema.get("type"),
            tuple(schema.get("enum") or ()),
            schema.get("pattern"),
            tuple(sorted(schema.get("required") or ())),
            schema.get("maxItems"),
            schema.get("minimum"),
            schema.get("maximum"),
            schema.get("maxLength"),
            schema.get("minLength"),
            schema.get("default"),
            schema.get("format"),
            tuple(r["rule"] for r in schema.get("x-kubernetes-validations") or ()),
        )
    }
    for name, sub in (schema.get("properties") or {}).items():
        out.update(_paths(sub, f"{prefix}/{name}"))
    if "items" in schema:
        out.update(_paths(schema["items"], f"{prefix}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        out.update(_paths(schema["additionalProperties"], f"{prefix}{{}}"))
    return out


@pytest.mark.parametrize("kind", sorted(REFS))
def test_crd_schema_fields_match_upstream(kind):
    ref_file, version = REFS[kind]
    ours = _paths(schema_of(OURS[kind], version))
    ref = _paths(schema_of(load_crd(REFERENCE / ref_file), version))
    assert sorted(ours) == sorted(ref)
    assert {p: v for p, v in ours.items() if v != ref[p]} == {}


NODECLAIM = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodeClaim",
    "metadata": {"name": "ws0a1b2c3d4", "labels": {"kaito.sh/workspace": "phi"}},
    "spec": {
        "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "image-family-ubuntu"},
        "requirements": [GPU_REQUIREMENT],
        "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        "resources": {"requests": {"storage": "120Gi", "nvidia.com/gpu": 1}},
    },
    "status": {
        "providerID": "kwok://ws0a1b2c3d4",
        "capacity": {"cpu": "6", "nvidia.com/gpu": "1"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                        "lastTransitionTime": "2026-11-28T20:00:00Z", "observedGeneration": 1}],
    },
}  # fmt: skip


def _mutate(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    cur: Any = out
    for p in parents:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    if value is _DELETE:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return out


_DELETE = object()
NODECLAIM_CASES = [
    ("valid", NODECLAIM, True),
    ("no requirements", _mutate(NODECLAIM, "spec.requirements", _DELETE), False),
    ("no nodeClassRef", _mutate(NODECLAIM, "spec.nodeClassRef", _DELETE), False),
    ("bad operator", _mutate(NODECLAIM, "spec.requirements.0.operator", "Equals"), False),
    ("bad taint effect", _mutate(NODECLAIM, "spec.taints.0.effect", "Sometimes"), False),
    ("bad quantity", _mutate(NODECLAIM, "spec.resources.requests.storage", "lots"), False),
    ("bad expireAfter", _mutate(NODECLAIM, "spec.expireAfter", "1 day"), False),
    ("bad condition status", _mutate(NODECLAIM, "status.conditions.0.status", "Maybe"), False),
    ("condition without time", _mutate(NODECLAIM, "status.conditions.0.lastTransitionTime", _DELETE), False),
    ("no spec", _mutate(NODECLAIM, "spec", _DELETE), False),
]
MACHINE = {
    "apiVersion": "karpenter.sh/v1alpha5",
    "kind": "Machine",
    "metadata": {"name": "ws0a1b2c3d4"},
    "spec": {
        "machineTemplateRef": {"name": "x", "kind": "KaitoNodeClass", "apiVersion": "kaito.sh/v1alpha1"},
        "requirements": [GPU_REQUIREMENT],
        "kubelet": {"maxPods": 110, "kubeReserved": {"cpu": "100m"}},
        "resources": {"requests": {"nvidia.com/gpu": "1"}},
    },
    "status": {"conditions": [{"type": "MachineLaunched", "status": "True", "severity": ""}]},
}  # fmt: skip
MACHINE_CASES = [
    ("valid", MACHINE, True),
    ("template without name", _mutate(MACHINE, "spec.machineTemplateRef.name", _DELETE), False),
    ("requirement without key", _mutate(MACHINE, "spec.requirements.0.key", _DELETE), False),
    ("negative maxPods", _mutate(MACHINE, "spec.kubelet.maxPods", -1), False),
    ("bad reserved quantity", _mutate(MACHINE, "spec.kubelet.kubeReserved.cpu", "a lot"), False),
    ("condition without type", _mutate(MACHINE, "status.conditions.0.type", _DELETE), False),
]


@pytest.mark.parametrize(
    ("kind", "case", "obj", "valid"),
    [("NodeClaim", *c) for c in NODECLAIM_CASES] + [("Machine", *c) for c in MACHINE_CASES],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_crds_accept_and_reject_like_upstream(kind, case, obj, valid):
    ref_file, version = REFS[kind]
    assert accepts(load_crd(REFERENCE / ref_file), version, obj) is valid, f"reference: {case}"
    assert accepts(OURS[kind], version, obj) is valid, f"ours: {case}"


def test_what_the_operator_writes_validates_against_the_crds():
    """Status bodies produced by the adapters satisfy the CRD schemas (ours and upstream)."""
    from kaito_provisioner.adapters import MachineAdapter, NodeClaimAdapter
    from kaito_provisioner.conditions import ConditionSet

    for adapter, sample, (ref_file, version) in (
        (NodeClaimAdapter(), NODECLAIM, REFS["NodeClaim"]),
        (MachineAdapter(), MACHINE, REFS["Machine"]),
    ):
        meta = {**sample["metadata"], "creationTimestamp": "2026-11-28T20:00:00Z"}
        claim = adapter.parse({**sample, "metadata": meta, "status": {}})
        cs = ConditionSet(claim)
        cs.set_false("Launched", "SubscriptionQuotaReached", "QuotaExceeded: cores")
        obj = {**sample, "status": adapter.status(claim)}
        assert accepts(OURS[adapter.kind], version, obj)
        assert accepts(load_crd(REFERENCE / ref_file), version, obj)
