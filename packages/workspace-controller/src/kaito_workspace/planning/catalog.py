"""Adapters from the preset catalog (`kaito_workspace.presets`) to the facts planning uses."""

from __future__ import annotations

from kaito_workspace.api import Workspace
from kaito_workspace.planning.facts import ClusterFacts, PlannerSettings, PresetFacts, SkuFacts
from kaito_workspace.planning.model import Plan
from kaito_workspace.planning.resolve import plan_workspace
from kaito_workspace.presets import Catalog, GpuSku, Preset, load_catalog


def preset_facts(preset: Preset) -> PresetFacts:
    inference = preset.inference
    return PresetFacts(
        name=preset.name,
        hf_id=preset.hf_id,
        revision=preset.revision,
        inference_gpu_memory_gib=inference.gpu_memory_gib if inference else None,
        tuning_gpu_memory_gib={m: r.gpu_memory_gib for m, r in preset.tuning.items()},
        min_gpus=inference.min_gpus if inference else 1,
        disk_storage=f"{preset.disk_gib}Gi",
        tuning_supported=preset.tuning_supported,
        download_auth_required=preset.download_auth_required,
        lora_target_modules=list(preset.lora_target_modules),
    )


def sku_facts(sku: GpuSku) -> SkuFacts:
    return SkuFacts(
        name=sku.name,
        gpu_count=sku.gpu_count,
        gpu_memory_gib=sku.gpu_memory_gib,
        gpu_model=sku.gpu_model,
        bf16=sku.bf16,
    )


def plan_with_catalog(
    ws: Workspace,
    *,
    facts: ClusterFacts | None = None,
    settings: PlannerSettings | None = None,
    catalog: Catalog | None = None,
) -> Plan:
    """Resolve the workspace's preset and instance type from the catalog, then plan."""
    catalog = catalog or load_catalog()
    spec = ws.preset
    preset = catalog.find(spec.name) if spec is not None else None
    instance_type = ws.resource.instance_type if ws.resource is not None else None
    sku = catalog.sku(instance_type) if instance_type else None
    return plan_workspace(
        ws,
        preset=preset_facts(preset) if preset is not None else None,
        sku=sku_facts(sku) if sku is not None else None,
        facts=facts,
        settings=settings,
    )
