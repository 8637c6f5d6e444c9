"""Typed shapes of the preset catalog data (presets/models/*.yaml, presets/gpus/*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TuningMethod = Literal["qlora", "lora"]
TUNING_METHODS: tuple[TuningMethod, ...] = ("qlora", "lora")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferenceRequirement(_Data):
    """Total GPU memory (all GPUs together) to serve the model: weights + KV cache for
    `max_model_len` tokens at batch 1 + runtime overhead."""

    gpu_memory_gib: float = Field(gt=0)
    max_model_len: int = Field(gt=0)
    min_gpus: int = Field(default=1, ge=1)


class TuningRequirement(_Data):
    """GPU memory per data-parallel worker (each holds a full model copy) at the stated
    sequence length and per-device batch size, with gradient checkpointing."""

    gpu_memory_gib: float = Field(gt=0)
    max_seq_length: int = Field(gt=0)
    per_device_batch_size: int = Field(gt=0)
    gradient_checkpointing: bool = True


class Preset(_Data):
    name: str
    hf_id: str
    revision: str | None = None
    architecture: str | None = None
    parameters_b: float | None = None
    weight_dtype: str | None = None
    weight_size_gib: float | None = None
    context_length: int | None = None
    disk_gib: int = 100
    inference: InferenceRequirement | None = None
    tuning: dict[TuningMethod, TuningRequirement] = Field(default_factory=dict)
    lora_target_modules: list[str] = Field(default_factory=list)
    # Where the chat template comes from: `tokenizer` (tokenizer_config.json), `builtin` (the runtime's
    # default for the family) or `none` (a base model: plain completion).
    chat_template: Literal["tokenizer", "builtin", "none"] = "tokenizer"
    download_auth_required: bool = False
    cpu_capable: bool = False
    license: str | None = None
    # False for a Hugging Face id that is not in the catalog: accepted best-effort, sizes unknown.
    known: bool = True

    @property
    def tuning_supported(self) -> bool:
        # An uncatalogued model may or may not tune; we let the runtime find out.
        return bool(self.tuning) or not self.known

    @property
    def sizes_known(self) -> bool:
        return self.known and self.inference is not None

    def tuning_requirement(self, method: str) -> TuningRequirement | None:
        return self.tuning.get(method.lower())  # type: ignore[call-overload]


class GpuModel(_Data):
    vendor: Literal["nvidia", "amd"]
    memory_gib: float
    bf16: bool
    architecture: str


class GpuSku(_Data):
    """An Azure VM size with GPUs. `gpu_memory_gib` is per GPU as the VM exposes it."""

    name: str
    gpu_model: str
    gpu_count: int = Field(ge=1)
    gpu_memory_gib: float
    bf16: bool
    vendor: Literal["nvidia", "amd"] = "nvidia"
    architecture: str = ""
    nvme: bool = False
    partial: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def total_gpu_memory_gib(self) -> float:
        return self.gpu_count * self.gpu_memory_gib


class SkuEntry(_Data):
    """One row of gpus/*.yaml before the GPU model's facts are merged in."""

    name: str
    gpu_model: str
    gpu_count: int = Field(ge=1)
    gpu_memory_gib: float | None = None
    nvme: bool = False
    partial: bool = False
    aliases: list[str] = Field(default_factory=list)


class GpuFile(_Data):
    gpu_models: dict[str, GpuModel]
    skus: list[SkuEntry]

    @model_validator(mode="after")
    def _models_exist(self) -> GpuFile:
        for s in self.skus:
            if s.gpu_model not in self.gpu_models:
                raise ValueError(f"SKU {s.name}: unknown gpu_model {s.gpu_model!r}")
        return self


class PresetFile(_Data):
    presets: list[Preset]
