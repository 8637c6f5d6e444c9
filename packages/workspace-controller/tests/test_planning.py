"""Planning by value: Workspace + preset + facts -> Plan."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kaito_workspace.api import parse_workspace
from kaito_workspace.planning import (
    ClusterFacts,
    PlannerSettings,
    PlanningError,
    PresetFacts,
    SkuFacts,
    plan_workspace,
)
from kaito_workspace.planning.names import nodeclaim_name, ray_name
from kaito_workspace.planning.templates import default_training_config

PHI3 = PresetFacts(
    name="phi-3-mini-128k-instruct",
    hf_id="microsoft/Phi-3-mini-128k-instruct",
    revision="abc123",
    inference_gpu_memory_gib=9,
    tuning_gpu_memory_gib={"qlora": 14, "lora": 40},
    disk_storage="80Gi",
)
NC6S_V3 = SkuFacts(name="Standard_NC6s_v3", gpu_count=1, gpu_memory_gib=16, gpu_model="V100", bf16=False)
NC24_A100 = SkuFacts(name="Standard_NC24ads_A100_v4", gpu_count=1, gpu_memory_gib=80, gpu_model="A100")
NC12S_V3 = SkuFacts(name="Standard_NC12s_v3", gpu_count=2, gpu_memory_gib=16, gpu_model="V100", bf16=False)

QUICKSTART = """
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata:
  name: workspace-tuning-phi-3
  uid: 1111-2222
resource:
  instanceType: "Standard_NC6s_v3"
  labelSelector:
    matchLabels:
      app: tuning-phi-3
tuning:
  preset:
    name: phi-3-mini-128k-instruct
  method: qlora
  input:
    urls:
      - "https://example.com/data.parquet"
  output:
    image: "myacr.azurecr.io/adapter:0.0.1"
    imagePushSecret: acr-secret
"""


def ws_from(text: str, **patch: Any):
    doc = yaml.safe_load(text)
    for dotted, value in patch.items():
        node = doc
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    ws, problems = parse_workspace(doc)
    assert ws is not None, problems
    return ws


def inference_ws(**patch: Any):
    text = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: phi-3, namespace: team-a, uid: u-1}
resource:
  instanceType: Standard_NC24ads_A100_v4
  labelSelector: {matchLabels: {apps: phi-3}}
inference:
  preset: {name: phi-3-mini-128k-instruct}
"""
    return ws_from(text, **patch)


def test_quickstart_tuning_plan() -> None:
    plan = plan_workspace(ws_from(QUICKSTART), preset=PHI3, sku=NC6S_V3)
    assert plan.mode == "tuning"
    assert plan.nodes.target_count == 1
    assert plan.nodes.gpus_per_node == 1
    [claim] = plan.nodes.nodeclaims
    assert claim.instance_type == "Standard_NC6s_v3"
    assert claim.storage == "80Gi"
    assert claim.labels == {"app": "tuning-phi-3"}
    cfg = plan.tuning.config
    assert cfg["model"] == {"id": "microsoft/Phi-3-mini-128k-instruct", "revision": "abc123"}
    assert cfg["method"] == "qlora"
    assert cfg["input"] == {"urls": ["https://example.com/data.parquet"]}
    assert cfg["output"] == {"image": "myacr.azurecr.io/adapter:0.0.1"}
    assert cfg["scaling"] == {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 1}}
    # The push secret is mounted as a file, never put into the config.
    assert cfg["registry_auth_file"].endswith("/.dockerconfigjson")
    assert "acr-secret" not in yaml.safe_dump(cfg)
    assert any(m.volume.get("secret", {}).get("secretName") == "acr-secret" for m in plan.mounts)
    # V100 has no bf16: the plan says so and uses fp16.
    assert cfg["training_config"]["ModelConfig"]["torch_dtype"] == "float16"
    assert cfg["training_config"]["QuantizationConfig"]["bnb_4bit_compute_dtype"] == "float16"
    assert any("bfloat16" in n for n in plan.notes)
    # Serve-after-tuning is on by default: the adapter image on the base model.
    assert plan.serve_after_tuning
    assert plan.serving.config["adapters"] == [
        {"name": "workspace-tuning-phi-3", "strength": 1.0, "image": "myacr.azurecr.io/adapter:0.0.1"}
    ]


def test_bf16_kept_on_a100_and_defaults_are_kaitos() -> None:
    plan = plan_workspace(ws_from(QUICKSTART), preset=PHI3, sku=NC24_A100)
    assert plan.tuning.config["training_config"] == default_training_config("qlora")
    assert plan.notes == []


def test_tuning_configmap_overrides_default_template() -> None:
    custom = {"QuantizationConfig": {"load_in_4bit": True}, "TrainingArguments": {"max_steps": 5}}
    plan = plan_workspace(
        ws_from(QUICKSTART), preset=PHI3, sku=NC24_A100, facts=ClusterFacts(training_config=custom)
    )
    assert plan.tuning.config["training_config"] == custom


def test_serve_after_tuning_can_be_turned_off() -> None:
    ws = ws_from(QUICKSTART, metadata__annotations={"kaito.sh/serve-after-tuning": "false"})
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    assert plan.serving is None and not plan.serve_after_tuning
    assert plan.tuning.ttl_seconds_after_finished == 3600  # the finished cluster stays for inspection


def test_serve_after_tuning_releases_the_job_cluster_soon() -> None:
    plan = plan_workspace(ws_from(QUICKSTART), preset=PHI3, sku=NC24_A100)
    # The RayService needs the GPUs the job's cluster holds.
    assert plan.tuning.ttl_seconds_after_finished <= 60


def test_volume_input_and_output() -> None:
    ws = ws_from(
        QUICKSTART,
        tuning__input={"volumeSource": {"persistentVolumeClaim": {"claimName": "in"}}},
        tuning__output={"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
    )
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    cfg = plan.tuning.config
    assert cfg["input"] == {"path": "/mnt/data"}
    assert cfg["output"] == {"path": "/mnt/output"}
    mounts = {m.mount_path: m for m in plan.mounts}
    assert mounts["/mnt/data"].volume == {"name": "input", "persistentVolumeClaim": {"claimName": "in"}}
    assert mounts["/mnt/data"].read_only
    assert mounts["/mnt/output"].volume["persistentVolumeClaim"] == {"claimName": "out"}
    assert "registry_auth_file" not in cfg
    # The served adapter is read from the output volume.
    assert plan.serving.config["adapters"][0]["path"] == "/mnt/output"


def test_multinode_tuning_needs_shared_storage() -> None:
    ws = ws_from(
        QUICKSTART,
        resource__count=2,
        tuning__output={"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
    )
    with pytest.raises(PlanningError) as err:
        plan_workspace(
            ws, preset=PHI3, sku=NC24_A100, facts=ClusterFacts(pvc_access_modes={"out": ["ReadWriteOnce"]})
        )
    assert err.value.path == "resource.count"
    assert "ReadWriteMany" in err.value.hint

    plan = plan_workspace(
        ws, preset=PHI3, sku=NC24_A100, facts=ClusterFacts(pvc_access_modes={"out": ["ReadWriteMany"]})
    )
    assert plan.nodes.target_count == 2
    assert len(plan.nodes.nodeclaims) == 2
    assert plan.tuning.config["scaling"]["num_workers"] == 2
    assert plan.tuning.config["storage_path"] == "/mnt/output/.checkpoints"


def test_multinode_tuning_rejected_with_image_output() -> None:
    with pytest.raises(PlanningError, match="shared"):
        plan_workspace(ws_from(QUICKSTART, resource__count=2), preset=PHI3, sku=NC24_A100)


def test_inference_plan_replicas_per_gpu() -> None:
    plan = plan_workspace(
        inference_ws(resource__count=2, resource__instanceType="Standard_NC12s_v3"), preset=PHI3, sku=NC12S_V3
    )
    assert plan.mode == "inference" and plan.tuning is None
    assert plan.nodes.gpus_per_node == 2
    assert plan.serving.num_replicas == 4
    assert plan.serving.config["deployment"] == {"num_replicas": 4, "ray_actor_options": {"num_gpus": 1}}
    assert plan.serving.config["model"]["id"] == "microsoft/Phi-3-mini-128k-instruct"
    assert plan.serving.config["name"] == "phi-3"


def test_model_needing_several_gpus_gets_them_per_replica() -> None:
    big = PHI3.model_copy(update={"min_gpus": 2})
    plan = plan_workspace(inference_ws(resource__instanceType="Standard_NC12s_v3"), preset=big, sku=NC12S_V3)
    assert plan.serving.config["deployment"] == {"num_replicas": 1, "ray_actor_options": {"num_gpus": 2}}


def test_inference_adapters_from_image_and_volume() -> None:
    ws = inference_ws(
        inference__adapters=[
            {"source": {"name": "a1", "image": "reg/a1:1", "imagePullSecrets": ["pull"]}, "strength": "0.5"},
            {"source": {"name": "a2", "volumeSource": {"persistentVolumeClaim": {"claimName": "ad"}}}},
        ]
    )
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    assert plan.serving.config["adapters"] == [
        {"name": "a1", "strength": 0.5, "image": "reg/a1:1"},
        {"name": "a2", "strength": 1.0, "path": "/mnt/adapters/a2"},
    ]
    assert plan.image_pull_secrets == ["pull"]
    assert any(m.mount_path == "/mnt/adapters/a2" and m.read_only for m in plan.mounts)


def test_model_access_secret_becomes_secret_env() -> None:
    ws = inference_ws(
        inference__preset={"name": "phi-3-mini-128k-instruct", "presetOptions": {"modelAccessSecret": "hf"}}
    )
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    [env] = plan.secret_env
    assert (env.env, env.secret, env.key) == ("HF_TOKEN", "hf", "HF_TOKEN")


def test_count_from_preset_memory_when_not_given() -> None:
    big = PHI3.model_copy(update={"inference_gpu_memory_gib": 40})
    plan = plan_workspace(inference_ws(resource__instanceType="Standard_NC6s_v3"), preset=big, sku=NC6S_V3)
    assert plan.nodes.target_count == 3  # 40 GiB over 16 GiB nodes
    assert plan.nodes.gpus_per_node == 1
    # An explicit count wins.
    plan = plan_workspace(inference_ws(resource__count=1), preset=big, sku=NC6S_V3)
    assert plan.nodes.target_count == 1


def test_byo_nodes_count_towards_target() -> None:
    ws = inference_ws(resource__count=3, resource__preferredNodes=["n2"])
    facts = ClusterFacts(byo_nodes=["n1", "n2"], node_gpus={"n1": 1, "n2": 1})
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100, facts=facts)
    assert plan.nodes.byo_nodes == ["n2", "n1"]
    assert len(plan.nodes.nodeclaims) == 1


def test_byo_only_workspace_without_instance_type() -> None:
    ws = inference_ws(resource__instanceType=None, resource__count=2)
    facts = ClusterFacts(
        byo_nodes=["gpu-a", "gpu-b", "gpu-c"], node_gpus={"gpu-a": 4, "gpu-b": 2, "gpu-c": 8}
    )
    plan = plan_workspace(ws, preset=PHI3, facts=facts)
    assert plan.nodes.byo_nodes == ["gpu-a", "gpu-b"]
    assert plan.nodes.nodeclaims == []
    assert plan.nodes.gpus_per_node == 2  # the smallest node decides


def test_missing_nodes_without_instance_type_is_a_clear_error() -> None:
    with pytest.raises(PlanningError) as err:
        plan_workspace(inference_ws(resource__instanceType=None), preset=PHI3)
    assert err.value.path == "resource.instanceType"


def test_byo_mode_never_plans_nodeclaims() -> None:
    plan = plan_workspace(
        inference_ws(), preset=PHI3, sku=NC24_A100, settings=PlannerSettings(node_provisioner="byo")
    )
    assert plan.nodes.nodeclaims == []
    assert any("byo" in n for n in plan.notes)


def test_nodeclaim_names_are_deterministic_and_reuse_existing() -> None:
    ws = inference_ws(resource__count=2)
    first = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    again = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    names = [c.name for c in first.nodes.nodeclaims]
    assert names == [c.name for c in again.nodes.nodeclaims]
    assert all(len(n) == 11 and n.startswith("ws") and n.isalnum() and n.islower() for n in names)
    assert names[0] == nodeclaim_name("team-a", "phi-3", "u-1", 0)
    # A NodeClaim that already exists for the workspace is kept, not duplicated.
    kept = plan_workspace(
        ws, preset=PHI3, sku=NC24_A100, facts=ClusterFacts(existing_nodeclaims=["wsabcdef012"])
    )
    assert [c.name for c in kept.nodes.nodeclaims] == ["wsabcdef012", names[0]]


def test_ray_names_fit_kuberay_limits() -> None:
    assert ray_name("short") == "short"
    long = "a" * 63
    name = ray_name(long)
    assert len(name) <= 40 and name == ray_name(long) and name != ray_name("b" * 63)


def test_unknown_hf_model_used_as_given() -> None:
    ws = inference_ws(inference__preset={"name": "myorg/my-model"})
    plan = plan_workspace(ws, preset=None, sku=NC24_A100)
    assert plan.serving.config["model"] == {"id": "myorg/my-model"}


def test_generated_configs_parse_with_the_runtime_models() -> None:
    """The ConfigMap's tune.yaml and the serveConfigV2 args are what the runtime accepts."""
    from kaito_runtime.serving.config import ServeConfig
    from kaito_runtime.tuning.config import TuneConfig

    for ws in (
        ws_from(QUICKSTART),
        ws_from(QUICKSTART, tuning__output={"volumeSource": {"persistentVolumeClaim": {"claimName": "o"}}}),
    ):
        plan = plan_workspace(ws, preset=PHI3, sku=NC6S_V3)
        tune = TuneConfig.model_validate(plan.tuning.config)
        assert tune.training_config.QuantizationConfig.load_in_4bit
        serve = ServeConfig.model_validate(plan.serving.config)
        assert serve.adapters[0].name == "workspace-tuning-phi-3"
    ws = inference_ws(
        inference__adapters=[
            {"source": {"name": "a1", "image": "r/a:1", "imagePullSecrets": ["p"]}, "strength": "0.5"}
        ]
    )
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100)
    serve = ServeConfig.model_validate(plan.serving.config)
    assert serve.registry_auth_file == "/var/run/kaito/registry/pull/.dockerconfigjson"
    assert serve.deployment.ray_actor_options == {"num_gpus": 1}


def test_custom_template_is_refused_with_the_fix() -> None:
    ws = inference_ws(inference={"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}})
    with pytest.raises(PlanningError) as err:
        plan_workspace(ws, preset=None, sku=NC24_A100)
    assert err.value.path == "inference.template" and "preset" in err.value.hint


def test_inference_config_generation_defaults() -> None:
    cfg = {
        "vllm": {"max-model-len": 4096},
        "generation": {"temperature": 0.2, "max_new_tokens": 64, "foo": 1},
    }
    ws = inference_ws(inference__config="my-inference-params")
    plan = plan_workspace(ws, preset=PHI3, sku=NC24_A100, facts=ClusterFacts(inference_config=cfg))
    assert plan.serving.config["generation"] == {"temperature": 0.2, "max_new_tokens": 64}
    assert any("foo" in n for n in plan.notes) and any("vllm" in n for n in plan.notes)
    from kaito_runtime.serving.config import ServeConfig

    assert ServeConfig.model_validate(plan.serving.config).generation.temperature == 0.2
