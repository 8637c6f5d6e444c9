"""Building the trainable model on one device: the base model (4-bit for qlora, pinned to the
device), k-bit preparation, gradient checkpointing and the LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaito_runtime.modeling import default_lora_target_modules, load_model, resolve_dtype
from kaito_runtime.tuning.config import TuneConfig

if TYPE_CHECKING:
    import torch


@dataclass
class ModelSetup:
    model: Any  # a peft PeftModel
    dtype: torch.dtype  # weights of the non-quantized parts
    compute_dtype: torch.dtype  # what matmuls run in (autocast on GPUs when half precision)
    target_modules: list[str]
    quantized_modules: dict[str, int]  # e.g. {"Linear4bit": 14}: what the user checks for QLoRA
    pad_id: int | None = None  # set by callers that build the model themselves (the benchmark)


def build_model(config: TuneConfig, device: torch.device) -> ModelSetup:
    from peft import prepare_model_for_kbit_training

    tc = config.training_config
    dtype = resolve_dtype(tc.ModelConfig.torch_dtype or config.model.dtype, device)
    source = config.model
    if tc.ModelConfig.trust_remote_code is not None:
        source = source.model_copy(update={"trust_remote_code": tc.ModelConfig.trust_remote_code})
    # Pin the whole model to this worker's device: with DDP every rank holds its own copy, and a
    # bitsandbytes model must never be moved with .to() after loading.
    device_map = {"": str(device) if device.type != "cuda" else device.index or 0}
    gc = tc.TrainingArguments.gradient_checkpointing
    gc_kwargs = {"use_reentrant": False}
    if config.method == "qlora":
        q = tc.QuantizationConfig
        compute = resolve_dtype(q.bnb_4bit_compute_dtype, device)
        model = load_model(source, quantization=q.bnb_kwargs(compute), device_map=device_map, dtype=dtype)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gc, gradient_checkpointing_kwargs=gc_kwargs
        )
    else:
        compute = dtype
        model = load_model(source, device_map=device_map, dtype=dtype)
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
            model.enable_input_require_grads()
    return wrap_for_training(model, config, dtype, compute)


def wrap_for_training(model: Any, config: TuneConfig, dtype: torch.dtype, compute: torch.dtype) -> ModelSetup:
    """Add the LoRA adapter to a loaded (possibly 4-bit) model and describe the result."""
    import torch
    from peft import LoraConfig, get_peft_model

    tc = config.training_config
    if getattr(model.config, "use_cache", False):
        model.config.use_cache = False
    targets = tc.LoraConfig.target_modules or default_lora_target_modules(model)
    targets = [targets] if isinstance(targets, str) else list(targets)
    peft_model = get_peft_model(model, LoraConfig(**tc.LoraConfig.peft_kwargs(targets)))
    quantized: dict[str, int] = {}
    for module in peft_model.modules():
        kind = type(module).__name__
        if kind in ("Linear4bit", "Linear8bitLt") and "bitsandbytes" in type(module).__module__:
            quantized[kind] = quantized.get(kind, 0) + 1
    half = compute if compute in (torch.float16, torch.bfloat16) else dtype
    return ModelSetup(peft_model, dtype, half, targets, quantized)
