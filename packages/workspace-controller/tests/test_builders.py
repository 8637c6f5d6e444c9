"""Builders by value, and every generated object validated against the upstream schemas.

Custom resources are checked against the reference CRDs in ../shared/reference/crds (KubeRay v1.7.0,
Karpenter v1.7.0); built-in kinds against the Kubernetes JSON schemas (kubernetes-validate).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kaito_workspace.api import parse_workspace
from kaito_workspace.builders import (
    build_nodeclaims,
    build_objects,
    build_rayjob,
    build_rayservice,
    build_runtime_configmap,
    build_service,
    dump_yaml,
)
from kaito_workspace.planning import ClusterFacts, PresetFacts, SkuFacts, plan_workspace
from kaito_workspace.planning.names import config_map_name

SHARED = Path(os.environ.get("KAITO_SHARED_DIR", Path(__file__).resolve().parents[3].parent / "shared"))
CRDS = SHARED / "reference" / "crds"
CRD_FILES = {
    ("ray.io/v1", "RayJob"): "kuberay-v1.7.0_ray.io_rayjobs.yaml",
    ("ray.io/v1", "RayService"): "kuberay-v1.7.0_ray.io_rayservices.yaml",
    ("karpenter.sh/v1", "NodeClaim"): "karpenter-v1.7.0_karpenter.sh_nodeclaims.yaml",
}

PRESET = PresetFacts(
    name="phi-3-mini-128k-instruct",
    hf_id="microsoft/Phi-3-mini-128k-instruct",
    inference_gpu_memory_gib=9,
    tuning_gpu_memory_gib={"qlora": 14},
    disk_storage="80Gi",
)
SKU = SkuFacts(name="Standard_NC12s_v3", gpu_count=2, gpu_memory_gib=16, bf16=False)


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    path = CRDS / CRD_FILES[(api_version, kind)]
    if not path.exists():
        pytest.fail(f"reference CRD {path} missing; set KAITO_SHARED_DIR to the shared directory")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 4x faster
    version = api_version.split("/")[1]
    [v] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]


def assert_valid(obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_FILES:
        schema = crd_schema(*key)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        _check_unknown_fields(obj.get("spec", {}), schema["properties"]["spec"], obj["kind"] + ".spec")
    else:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def _check_unknown_fields(value: Any, schema: dict[str, Any], path: str) -> None:
    """Structural schemas prune unknown fields silently: fail on any field the CRD does not know."""
    if isinstance(value, dict) and "properties" in schema:
        for k, v in value.items():
            assert k in schema["properties"], f"{path}.{k} is not in the CRD schema (would be pruned)"
            _check_unknown_fields(v, schema["properties"][k], f"{path}.{k}")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            _check_unknown_fields(v, schema["items"], f"{path}[{i}]")


def workspace(text: str):
    ws, problems = parse_workspace(yaml.safe_load(text))
    assert ws is not None, problems
    return ws


TUNING = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: tune-phi, namespace: ml, uid: 0f0f-1}
resource:
  instanceType: Standard_NC12s_v3
  labelSelector: {matchLabels: {app: tune-phi}}
tuning:
  preset:
    name: phi-3-mini-128k-instruct
    presetOptions: {modelAccessSecret: hf-token}
  method: qlora
  input: {urls: ["https://example.com/d.parquet"]}
  output: {image: "reg.example.com/adapter:1", imagePushSecret: push-secret}
"""

INFERENCE = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: phi-3, namespace: ml, uid: 0f0f-2}
resource:
  count: 2
  instanceType: Standard_NC12s_v3
  labelSelector:
    matchLabels: {app: phi-3}
    matchExpressions: [{key: zone, operator: In, values: ["1", "2"]}]
inference:
  preset: {name: phi-3-mini-128k-instruct}
  adapters:
    - source: {name: a1, image: "reg.example.com/a1:1", imagePullSecrets: [pull]}
      strength: "0.4"
"""


@pytest.fixture(scope="module")
def tuning_plan():
    return plan_workspace(workspace(TUNING), preset=PRESET, sku=SKU)


@pytest.fixture(scope="module")
def inference_plan():
    return plan_workspace(workspace(INFERENCE), preset=PRESET, sku=SKU)


def test_nodeclaim_contract(inference_plan) -> None:
    claims = build_nodeclaims(inference_plan)
    assert len(claims) == 2
    nc = claims[0]
    assert nc["apiVersion"] == "karpenter.sh/v1" and nc["kind"] == "NodeClaim"
    labels = nc["metadata"]["labels"]
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert labels["kaito.sh/workspacenamespace"] == "ml"
    assert labels["karpenter.sh/nodepool"] == "kaito"
    assert labels["app"] == "phi-3"
    assert nc["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert "ownerReferences" not in nc["metadata"]  # deleted by the workspace finalizer instead
    spec = nc["spec"]
    assert spec["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert {
        "key": "node.kubernetes.io/instance-type",
        "operator": "In",
        "values": ["Standard_NC12s_v3"],
    } in spec["requirements"]
    assert {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]} in spec["requirements"]
    assert {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]} in spec["requirements"]
    assert spec["resources"]["requests"]["storage"] == "80Gi"
    assert spec["nodeClassRef"]["group"] == "kaito.sh" and spec["nodeClassRef"]["kind"] == "KaitoNodeClass"
    assert len(nc["metadata"]["name"]) == 11 and nc["metadata"]["name"].startswith("ws")


def test_rayjob(tuning_plan) -> None:
    job = build_rayjob(tuning_plan)
    spec = job["spec"]
    assert job["metadata"]["name"] == "tune-phi"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "name": "tune-phi",
        "uid": "0f0f-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert spec["entrypoint"] == "kaito-runtime tune --config /etc/kaito/tune.yaml"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["backoffLimit"] >= 1
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_c = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in str(head_c.get("resources"))
    [group] = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 1
    pod = group["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "ghcr.io/kaito-ray/ray-runtime:0.1.0"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"  # all of the node's GPUs
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert {"key": "app", "operator": "In", "values": ["tune-phi"]} in term["matchExpressions"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm"
    assert mounts["/etc/kaito"] == "kaito-config"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["kaito-config"]["configMap"]["name"] == config_map_name("tune-phi")
    assert volumes["push-secret"]["secret"]["secretName"] == "push-secret"
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}


def test_configmap_holds_config_and_no_secret(tuning_plan) -> None:
    cm = build_runtime_configmap(tuning_plan)
    text = cm["data"]["tune.yaml"]
    cfg = yaml.safe_load(text)
    assert cfg["model"]["id"] == "microsoft/Phi-3-mini-128k-instruct"
    assert cfg["scaling"]["num_workers"] == 2
    assert "push-secret" not in text and "hf-token" not in text
    assert cm["metadata"]["ownerReferences"][0]["name"] == "tune-phi"


def test_rayservice(inference_plan) -> None:
    svc = build_rayservice(inference_plan)
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    [app] = serve["applications"]
    assert app["import_path"] == "kaito_runtime.serving.app:build_app"
    assert app["route_prefix"] == "/"
    assert app["args"]["model"]["id"] == "microsoft/Phi-3-mini-128k-instruct"
    assert app["args"]["adapters"] == [{"name": "a1", "strength": 0.4, "image": "reg.example.com/a1:1"}]
    assert app["args"]["deployment"]["num_replicas"] == 4
    cluster = svc["spec"]["rayClusterConfig"]
    assert cluster["workerGroupSpecs"][0]["replicas"] == 2
    pod = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert {"key": "zone", "operator": "In", "values": ["1", "2"]} in term["matchExpressions"]
    # No ConfigMap for serving: the config travels in serveConfigV2.
    assert not any(v["name"] == "kaito-config" for v in pod["volumes"])


def test_service_ports_and_selector(inference_plan) -> None:
    svc = build_service(inference_plan)
    assert svc["metadata"]["name"] == "phi-3"
    ports = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
    assert ports == {80: 8000, 8265: 8265}
    head_labels = build_rayservice(inference_plan)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"][
        "metadata"
    ]["labels"]
    selector = svc["spec"]["selector"]
    assert selector.items() <= head_labels.items()  # selects the head by our own, upgrade-stable labels
    pinned = build_service(inference_plan, active_cluster="phi-3-abcde")["spec"]["selector"]
    assert pinned["ray.io/cluster"] == "phi-3-abcde"


def test_revision_changes_with_spec(inference_plan) -> None:
    a = build_rayservice(inference_plan)["metadata"]["annotations"]["kaito.sh/revision"]
    changed = inference_plan.model_copy(update={"runtime_image": "other:1"})
    b = build_rayservice(changed)["metadata"]["annotations"]["kaito.sh/revision"]
    assert a != b and a == build_rayservice(inference_plan)["metadata"]["annotations"]["kaito.sh/revision"]


def test_every_object_validates_against_upstream_schemas(tuning_plan, inference_plan) -> None:
    kinds = []
    for plan in (tuning_plan, inference_plan):
        for obj in build_objects(plan):
            assert_valid(obj)
            kinds.append(obj["kind"])
    assert {"NodeClaim", "ConfigMap", "RayJob", "RayService", "Service"} <= set(kinds)


def test_volume_workspace_validates() -> None:
    text = TUNING.replace(
        'output: {image: "reg.example.com/adapter:1", imagePushSecret: push-secret}',
        "output: {volumeSource: {persistentVolumeClaim: {claimName: out}}}",
    ).replace("count: 2", "count: 1")
    plan = plan_workspace(workspace(text), preset=PRESET, sku=SKU, facts=ClusterFacts())
    for obj in build_objects(plan):
        assert_valid(obj)


def test_render_yaml_has_no_aliases(tuning_plan) -> None:
    text = dump_yaml(build_objects(tuning_plan))
    assert "&id" not in text and "*id" not in text
    assert [d["kind"] for d in yaml.safe_load_all(text)] == [
        "NodeClaim",
        "ConfigMap",
        "RayJob",
        "RayService",
        "Service",
    ]


def test_schema_check_catches_mistakes(inference_plan) -> None:
    nc = build_nodeclaims(inference_plan)[0]
    del nc["spec"]["nodeClassRef"]
    with pytest.raises(AssertionError, match="nodeClassRef"):
        assert_valid(nc)
    job = build_rayservice(inference_plan)
    job["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicaz"] = 1
    with pytest.raises(AssertionError, match="replicaz"):
        assert_valid(job)
