"""Does a preset fit the GPUs of an instance type? Pure functions used by validation and by the plan."""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import GpuSku, Preset

DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
}


@dataclass(frozen=True)
class Fit:
    fits: bool
    required_gib: float | None
    available_gib: float | None
    # "total" (inference: all GPUs together) or "per-gpu" (tuning: each worker holds the model)
    basis: str
    message: str
    notes: list[str] = field(default_factory=list)


def inference_fit(preset: Preset, gpu: GpuSku, count: int = 1) -> Fit:
    """Total GPU memory of `count` nodes of `gpu` against the preset's inference requirement."""
    req = preset.inference
    available = gpu.total_gpu_memory_gib * count
    if req is None:
        return Fit(
            True, None, available, "total", f"GPU memory needs of {preset.name} are unknown; not checked"
        )
    gpus = gpu.gpu_count * count
    if gpus < req.min_gpus:
        return Fit(
            False,
            req.gpu_memory_gib,
            available,
            "total",
            f"{preset.name} needs at least {req.min_gpus} GPUs, {count} x {gpu.name} has {gpus}",
        )
    fits = available >= req.gpu_memory_gib
    msg = (
        f"{count} x {gpu.name} has {available:g} GiB of GPU memory in total "
        f"({gpus} x {gpu.gpu_model} {gpu.gpu_memory_gib:g} GiB); {preset.name} inference needs "
        f"{req.gpu_memory_gib:g} GiB (max_model_len {req.max_model_len}, batch 1)"
    )
    return Fit(fits, req.gpu_memory_gib, available, "total", msg)


def tuning_fit(preset: Preset, method: str, gpu: GpuSku) -> Fit:
    """Per-GPU memory against the preset's per-worker requirement for `method`."""
    req = preset.tuning_requirement(method)
    if req is None:
        return Fit(
            True, None, gpu.gpu_memory_gib, "per-gpu", f"{method} memory needs of {preset.name} are unknown"
        )
    fits = gpu.gpu_memory_gib >= req.gpu_memory_gib
    msg = (
        f"{gpu.name} has {gpu.gpu_memory_gib:g} GiB per GPU ({gpu.gpu_model}); "
        f"{method} of {preset.name} needs "
        f"{req.gpu_memory_gib:g} GiB per GPU at max_seq_length {req.max_seq_length}, "
        f"per_device_batch_size {req.per_device_batch_size}"
    )
    notes = []
    if not gpu.bf16:
        notes.append(f"{gpu.gpu_model} has no bfloat16: bfloat16 compute becomes float16")
    return Fit(fits, req.gpu_memory_gib, gpu.gpu_memory_gib, "per-gpu", msg, notes)


def normalize_dtype(name: str | None) -> str | None:
    if name is None:
        return None
    n = str(name).strip().lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(n, n)


def effective_compute_dtype(requested: str | None, gpu: GpuSku | None) -> tuple[str, str | None]:
    """The compute dtype to use on `gpu` for a requested one, and a note when it had to change.

    `auto`/None picks bfloat16 where the GPU supports it, else float16 (float32 without a GPU);
    an explicit bfloat16 on a GPU without bf16 (V100, T4, ...) becomes float16."""
    req = normalize_dtype(requested) or "auto"
    if gpu is None:
        return ("float32", None) if req == "auto" else (req, None)
    if req == "auto":
        return ("bfloat16", None) if gpu.bf16 else ("float16", None)
    if req == "bfloat16" and not gpu.bf16:
        return "float16", f"{gpu.gpu_model} ({gpu.name}) has no bfloat16 support: using float16 instead"
    return req, None
