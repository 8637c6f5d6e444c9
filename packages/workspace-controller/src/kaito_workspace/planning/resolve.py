"""Workspace + preset + cluster facts -> `Plan`. Pure: no cluster, no network, no clock."""

from __future__ import annotations

import copy
import math
from typing import Any

from kaito_workspace.api import Workspace
from kaito_workspace.planning.facts import ClusterFacts, PlannerSettings, PresetFacts, SkuFacts
from kaito_workspace.planning.model import (
    Mount,
    NodeClaimPlan,
    NodePlan,
    Plan,
    SecretEnv,
    ServingPlan,
    TuningPlan,
    WorkspaceRef,
)
from kaito_workspace.planning.names import (
    ANNOTATION_NODE_IMAGE_FAMILY,
    ANNOTATION_SERVE_AFTER_TUNING,
    nodeclaim_name,
)
from kaito_workspace.planning.templates import default_training_config

INPUT_DIR = "/mnt/data"
OUTPUT_DIR = "/mnt/output"
CHECKPOINT_DIR = "/mnt/checkpoints"
ADAPTER_DIR = "/mnt/adapters"
REGISTRY_AUTH_DIR = "/var/run/kaito/registry"
PROGRESS_FILE = "/tmp/kaito/progress.json"
SERVE_HANDOFF_TTL_SECONDS = 30
#: Volume sources that are shared between nodes by nature (every pod sees the same files).
SHARED_VOLUME_KINDS = ("nfs", "azureFile", "cephfs", "glusterfs")


class PlanningError(ValueError):
    """The workspace cannot be planned as given; `path` names the field, `hint` the fix."""

    def __init__(self, path: str, message: str, hint: str = "") -> None:
        super().__init__(f"{path}: {message}" + (f" ({hint})" if hint else ""))
        self.path = path
        self.message = message
        self.hint = hint


def workspace_ref(ws: Workspace) -> WorkspaceRef:
    return WorkspaceRef(
        name=ws.name,
        namespace=ws.namespace,
        uid=ws.metadata.uid or "",
        api_version=ws.api_version,
        kind=ws.kind,
    )


# --------------------------------------------------------------------------------------------- nodes
def required_gpu_memory(ws: Workspace, preset: PresetFacts | None) -> float | None:
    if preset is None:
        return None
    if ws.tuning is not None:
        return preset.tuning_gpu_memory_gib.get(ws.tuning.method or "qlora")
    return preset.inference_gpu_memory_gib


def target_node_count(ws: Workspace, preset: PresetFacts | None, sku: SkuFacts | None) -> int:
    """`resource.count` when given; otherwise enough nodes of the SKU for the preset's GPU memory."""
    res = ws.resource
    if res is not None and "count" in res.model_fields_set:
        return res.count
    need = required_gpu_memory(ws, preset)
    if sku is None or not need:
        return 1
    per_node = sku.gpu_count * sku.gpu_memory_gib
    by_gpus = math.ceil((preset.min_gpus if preset else 1) / max(sku.gpu_count, 1))
    return max(1, math.ceil(need / per_node), by_gpus)


def plan_nodes(
    ws: Workspace,
    *,
    preset: PresetFacts | None,
    sku: SkuFacts | None,
    facts: ClusterFacts,
    settings: PlannerSettings,
) -> NodePlan:
    res = ws.resource
    if res is None:
        raise PlanningError("resource", "a workspace needs a resource section", "add resource.labelSelector")
    selector = res.label_selector
    match_labels = dict(selector.match_labels or {})
    match_expressions = [e.to_dict() for e in selector.match_expressions or []]
    target = target_node_count(ws, preset, sku)
    notes: list[str] = []

    preferred = [n for n in res.preferred_nodes or [] if n in facts.byo_nodes]
    others = sorted(n for n in facts.byo_nodes if n not in preferred)
    byo = (preferred + others)[:target]

    gpus = sku.gpu_count if sku is not None else 0
    if res.partition is not None and res.partition.mode == "accelerator" and res.partition.count:
        gpus = res.partition.count
        notes.append(f"partition mode accelerator: {gpus} GPU(s) per node")
    if not gpus and byo:
        gpus = min(facts.node_gpus.get(n, 1) for n in byo) or 1
    gpus = max(gpus, 1)

    claims: list[NodeClaimPlan] = []
    if settings.node_provisioner == "gpu-provisioner" and len(byo) < target:
        if not res.instance_type:
            raise PlanningError(
                "resource.instanceType",
                f"{target - len(byo)} more node(s) are needed and no instanceType is set to provision them",
                "set resource.instanceType, or label enough nodes matching resource.labelSelector",
            )
        missing = target - len(byo)
        names = sorted(facts.existing_nodeclaims)[:missing]
        index = 0
        while len(names) < missing:
            candidate = nodeclaim_name(ws.namespace, ws.name, ws.metadata.uid or "", index)
            if candidate not in names:
                names.append(candidate)
            index += 1
        storage = preset.disk_storage if preset is not None else "100Gi"
        family = ws.annotations.get(ANNOTATION_NODE_IMAGE_FAMILY, "ubuntu")
        claims = [
            NodeClaimPlan(
                name=n,
                instance_type=res.instance_type,
                storage=storage,
                labels=match_labels,
                node_class=settings.node_class,
                node_image_family=family,
            )
            for n in names
        ]
    elif settings.node_provisioner == "byo" and len(byo) < target:
        notes.append(
            f"waiting for {target - len(byo)} more node(s) matching resource.labelSelector (byo mode)"
        )

    return NodePlan(
        target_count=target,
        instance_type=res.instance_type,
        gpus_per_node=gpus,
        match_labels=match_labels,
        match_expressions=match_expressions,
        byo_nodes=byo,
        nodeclaims=claims,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------- volumes
def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret}}


def _is_shared(volume_source: dict[str, Any], facts: ClusterFacts) -> bool:
    if any(k in volume_source for k in SHARED_VOLUME_KINDS):
        return True
    pvc = volume_source.get("persistentVolumeClaim")
    if pvc:
        return "ReadWriteMany" in facts.pvc_access_modes.get(pvc.get("claimName", ""), [])
    return False


def _model_source(preset: PresetFacts | None, preset_name: str) -> dict[str, Any]:
    if preset is not None and preset.hf_id:
        src: dict[str, Any] = {"id": preset.hf_id}
        if preset.revision:
            src["revision"] = preset.revision
        return src
    # A Hugging Face id `org/name` that is not in the catalog is used as given.
    return {"id": preset_name}


def _apply_gpu_dtype(training_config: dict[str, Any], sku: SkuFacts | None, notes: list[str]) -> None:
    """GPUs without bf16 (e.g. V100) compute in fp16: rewrite bf16 settings and say so in the plan."""
    if sku is None or sku.bf16:
        return
    changed = []
    for section, key in (("ModelConfig", "torch_dtype"), ("QuantizationConfig", "bnb_4bit_compute_dtype")):
        sec = training_config.get(section)
        if isinstance(sec, dict) and sec.get(key) == "bfloat16":
            sec[key] = "float16"
            changed.append(f"{section}.{key}")
    if changed:
        notes.append(
            f"{sku.name} ({sku.gpu_model or 'this GPU'}) has no bfloat16: {', '.join(changed)} set to float16"
        )


def _serve_after_tuning(ws: Workspace) -> bool:
    return ws.annotations.get(ANNOTATION_SERVE_AFTER_TUNING, "true").strip().lower() != "false"


# ------------------------------------------------------------------------------------------- tuning
def _plan_tuning(
    ws: Workspace,
    plan: Plan,
    *,
    preset: PresetFacts | None,
    sku: SkuFacts | None,
    facts: ClusterFacts,
    settings: PlannerSettings,
) -> None:
    t = ws.tuning
    assert t is not None
    method = t.method or "qlora"
    preset_name = t.preset.name if t.preset else ""
    training_config = copy.deepcopy(facts.training_config or default_training_config(method))
    _apply_gpu_dtype(training_config, sku, plan.notes)

    # Input.
    inp = t.input
    input_cfg: dict[str, Any]
    if inp.urls:
        input_cfg = {"urls": list(inp.urls)}
    elif inp.image:
        input_cfg = {"image": inp.image}
    elif inp.volume_source:
        plan.mounts.append(
            Mount(volume={"name": "input", **inp.volume_source}, mount_path=INPUT_DIR, read_only=True)
        )
        input_cfg = {"path": INPUT_DIR}
    else:
        raise PlanningError("tuning.input", "no input given", "set one of urls, image or volumeSource")

    # Output, and where checkpoints live.
    out = t.output
    output_cfg: dict[str, Any]
    shared = False
    registry_auth_file: str | None = None
    if out.volume_source:
        plan.mounts.append(Mount(volume={"name": "output", **out.volume_source}, mount_path=OUTPUT_DIR))
        output_cfg = {"path": OUTPUT_DIR}
        shared = _is_shared(out.volume_source, facts)
    elif out.image:
        output_cfg = {"image": out.image}
        if out.image_push_secret:
            plan.mounts.append(
                Mount(
                    volume=_secret_volume("push-secret", out.image_push_secret),
                    mount_path=f"{REGISTRY_AUTH_DIR}/push",
                    read_only=True,
                )
            )
            registry_auth_file = f"{REGISTRY_AUTH_DIR}/push/.dockerconfigjson"
    else:
        raise PlanningError(
            "tuning.output", "no output given", "set image (+ imagePushSecret) or volumeSource"
        )
    if inp.image and inp.image_pull_secrets:
        plan.image_pull_secrets.extend(inp.image_pull_secrets)
        if registry_auth_file is None:
            plan.mounts.append(
                Mount(
                    volume=_secret_volume("pull-secret", inp.image_pull_secrets[0]),
                    mount_path=f"{REGISTRY_AUTH_DIR}/pull",
                    read_only=True,
                )
            )
            registry_auth_file = f"{REGISTRY_AUTH_DIR}/pull/.dockerconfigjson"

    count = plan.nodes.target_count
    if count > 1 and not shared:
        raise PlanningError(
            "resource.count",
            f"multi-node tuning ({count} nodes) needs checkpoint storage shared by every node",
            "use tuning.output.volumeSource with a ReadWriteMany PersistentVolumeClaim (or nfs/azureFile), "
            "or set resource.count: 1",
        )
    if shared:
        storage_path = f"{OUTPUT_DIR}/.checkpoints"
    else:
        plan.mounts.append(Mount(volume={"name": "checkpoints", "emptyDir": {}}, mount_path=CHECKPOINT_DIR))
        storage_path = CHECKPOINT_DIR

    config: dict[str, Any] = {
        "name": ws.name,
        "model": _model_source(preset, preset_name),
        "method": method,
        "training_config": training_config,
        "input": input_cfg,
        "output": output_cfg,
        "scaling": {
            "num_workers": count * plan.nodes.gpus_per_node,
            "use_gpu": True,
            "resources_per_worker": {"GPU": 1},
        },
        "storage_path": storage_path,
        "progress_file": PROGRESS_FILE,
        "progress_log": True,  # KAITO_PROGRESS lines in the Ray job log, read by the operator
        "max_failures": 1,
    }
    if registry_auth_file:
        config["registry_auth_file"] = registry_auth_file
    serve_after = _serve_after_tuning(ws)
    plan.tuning = TuningPlan(
        config=config,
        backoff_limit=settings.tuning_backoff_limit,
        # Serving the adapter needs the GPUs the finished job's Ray cluster still holds: release them
        # soon (after a last progress read); otherwise keep the cluster for inspection.
        ttl_seconds_after_finished=SERVE_HANDOFF_TTL_SECONDS if serve_after else settings.tuning_ttl_seconds,
    )

    if serve_after:
        adapter: dict[str, Any] = {"name": ws.name, "strength": 1.0}
        if out.image:
            adapter["image"] = out.image
        else:
            adapter["path"] = OUTPUT_DIR
        plan.serving = _serving_plan(ws.name, preset, preset_name, plan, adapters=[adapter])
        if out.image and registry_auth_file:
            plan.serving.config["registry_auth_file"] = registry_auth_file
        plan.serve_after_tuning = True


# ---------------------------------------------------------------------------------------- inference
def _serving_plan(
    name: str,
    preset: PresetFacts | None,
    preset_name: str,
    plan: Plan,
    *,
    adapters: list[dict[str, Any]],
) -> ServingPlan:
    total_gpus = plan.nodes.target_count * plan.nodes.gpus_per_node
    per_replica = max(1, preset.min_gpus if preset else 1)
    if per_replica > plan.nodes.gpus_per_node:
        # The model spans nodes: one replica using every GPU of every node.
        per_replica = plan.nodes.gpus_per_node
        replicas = 1
        plan.notes.append(
            f"the model needs {preset.min_gpus if preset else per_replica} GPUs, more than one node has; "
            "serving one replica per node group"
        )
    else:
        replicas = max(1, total_gpus // per_replica)
    config: dict[str, Any] = {
        "name": name,
        "model": _model_source(preset, preset_name),
        "deployment": {"num_replicas": replicas, "ray_actor_options": {"num_gpus": per_replica}},
        "http": {"host": "0.0.0.0", "port": 8000},
    }
    if adapters:
        config["adapters"] = adapters
    return ServingPlan(config=config, num_replicas=replicas, gpus_per_replica=per_replica)


GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


def _generation_defaults(inference_config: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """The `generation` section of Kaito's inference_config.yaml, as the runtime's request defaults."""
    section = (inference_config or {}).get("generation") or {}
    picked = {k: v for k, v in section.items() if k in GENERATION_KEYS}
    ignored = sorted(set(section) - set(picked))
    if ignored:
        notes.append(f"inference config: generation keys not used by the Ray runtime: {', '.join(ignored)}")
    if (inference_config or {}).get("vllm"):
        notes.append("inference config: the vllm section does not apply to the Ray runtime and is ignored")
    return picked


def _plan_inference(
    ws: Workspace, plan: Plan, *, preset: PresetFacts | None, inference_config: dict[str, Any] | None = None
) -> None:
    inf = ws.inference
    assert inf is not None
    if inf.preset is None:
        raise PlanningError(
            "inference.template",
            "a custom pod template cannot run on the Ray runtime",
            "use inference.preset (a catalog name or a Hugging Face id org/name)",
        )
    preset_name = inf.preset.name
    adapters: list[dict[str, Any]] = []
    auth_file: str | None = None
    for i, a in enumerate(inf.adapters or []):
        src = a.source
        if src is None or not src.name:
            raise PlanningError(
                f"inference.adapters[{i}].source.name", "an adapter needs a name", "set source.name"
            )
        entry: dict[str, Any] = {"name": src.name, "strength": float(a.strength) if a.strength else 1.0}
        if src.image:
            entry["image"] = src.image
            plan.image_pull_secrets.extend(src.image_pull_secrets or [])
            if src.image_pull_secrets and auth_file is None:
                # The runtime pulls adapter images itself (OCI), with a docker config.json from a Secret.
                plan.mounts.append(
                    Mount(
                        volume=_secret_volume("adapter-pull-secret", src.image_pull_secrets[0]),
                        mount_path=f"{REGISTRY_AUTH_DIR}/pull",
                        read_only=True,
                    )
                )
                auth_file = f"{REGISTRY_AUTH_DIR}/pull/.dockerconfigjson"
        elif src.volume_source:
            vol_name = f"adapter-{i}"
            path = f"{ADAPTER_DIR}/{src.name}"
            plan.mounts.append(
                Mount(volume={"name": vol_name, **src.volume_source}, mount_path=path, read_only=True)
            )
            entry["path"] = path
        else:
            raise PlanningError(
                f"inference.adapters[{i}].source",
                "an adapter needs an image or a volumeSource",
                "set one of them",
            )
        adapters.append(entry)
    plan.serving = _serving_plan(ws.name, preset, preset_name, plan, adapters=adapters)
    generation = _generation_defaults(inference_config, plan.notes)
    if generation:
        plan.serving.config["generation"] = generation
    if auth_file:
        plan.serving.config["registry_auth_file"] = auth_file


# ------------------------------------------------------------------------------------------- entry
def plan_workspace(
    ws: Workspace,
    *,
    preset: PresetFacts | None = None,
    sku: SkuFacts | None = None,
    facts: ClusterFacts | None = None,
    settings: PlannerSettings | None = None,
) -> Plan:
    """The full plan for a (validated) Workspace."""
    facts = facts or ClusterFacts()
    settings = settings or PlannerSettings()
    mode = ws.workload
    if mode is None:
        raise PlanningError(
            "inference", "a workspace needs exactly one of inference or tuning", "keep one of them"
        )
    nodes = plan_nodes(ws, preset=preset, sku=sku, facts=facts, settings=settings)
    plan = Plan(
        workspace=workspace_ref(ws),
        mode=mode,
        nodes=nodes,
        runtime_image=settings.runtime_image,
        ray_version=settings.ray_version,
        notes=list(nodes.notes),
    )
    spec_preset = ws.preset
    opts = spec_preset.preset_options if spec_preset else None
    if opts is not None:
        plan.image_pull_secrets.extend(opts.image_pull_secrets or [])
        if opts.model_access_secret:
            plan.secret_env.append(SecretEnv(env="HF_TOKEN", secret=opts.model_access_secret, key="HF_TOKEN"))
    if mode == "tuning":
        _plan_tuning(ws, plan, preset=preset, sku=sku, facts=facts, settings=settings)
    else:
        _plan_inference(ws, plan, preset=preset, inference_config=facts.inference_config)
    plan.image_pull_secrets = list(dict.fromkeys(plan.image_pull_secrets))
    return plan
