"""`ServeConfig`: everything one serving application needs, fully resolved (no Kubernetes knowledge).

The workspace controller writes it into a RayService's `serveConfigV2` as the `args` of
`kaito_runtime.serving.app:build_app`; `kaito-runtime serve --config FILE` reads it from YAML/JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kaito_runtime.modeling import ModelSource

COMBINED_ADAPTER = "combined"
BASE_SELECTORS = {"base", ""}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuantizationConfig(_Strict):
    """`BitsAndBytesConfig` keyword arguments (4-bit NF4 or 8-bit)."""

    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_compute_dtype: Literal["float32", "float16", "bfloat16"] | None = None
    bnb_4bit_use_double_quant: bool = True

    @model_validator(mode="after")
    def _one_mode(self) -> QuantizationConfig:
        if self.load_in_4bit == self.load_in_8bit:
            raise ValueError("quantization: set exactly one of load_in_4bit or load_in_8bit (or omit it)")
        return self

    def bnb_kwargs(self) -> dict[str, Any]:
        if self.load_in_8bit:
            return {"load_in_8bit": True}
        kwargs: dict[str, Any] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": self.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": self.bnb_4bit_use_double_quant,
        }
        if self.bnb_4bit_compute_dtype:
            import torch

            kwargs["bnb_4bit_compute_dtype"] = getattr(torch, self.bnb_4bit_compute_dtype)
        return kwargs


class AdapterConfig(_Strict):
    """A LoRA adapter: a directory written by the tuning step, or an OCI image holding one."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    path: str | None = None
    image: str | None = None
    strength: float = Field(default=1.0, ge=0.0, le=10.0)

    @field_validator("strength", mode="before")
    @classmethod
    def _strength_from_string(cls, value: Any) -> Any:
        # Kaito's Workspace carries strength as a decimal string ("0.5").
        return float(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> AdapterConfig:
        if (self.path is None) == (self.image is None):
            raise ValueError(
                f"adapters[{self.name}]: set exactly one of `path` (a directory) or `image` (OCI)"
            )
        if self.name in BASE_SELECTORS or self.name == COMBINED_ADAPTER:
            raise ValueError(f"adapters: the name {self.name!r} is reserved; pick another")
        return self


class GenerationDefaults(_Strict):
    """Defaults for parameters a request leaves out (Kaito's transformers runtime defaults)."""

    max_new_tokens: int = Field(default=256, ge=1)
    do_sample: bool = False
    temperature: float = Field(default=1.0, ge=0.0)
    top_k: int = Field(default=0, ge=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)


class Limits(_Strict):
    """What a replica accepts before answering 400/413/503."""

    max_tokens: int = Field(default=4096, ge=1, description="ceiling for max_tokens / max_new_tokens")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_ongoing_requests: int = Field(default=64, ge=1, description="per replica, running in the engine")
    max_queued_requests: int = Field(default=64, ge=0, description="waiting per replica before 503")
    retry_after_s: int = Field(default=2, ge=1)
    max_stop_strings: int = Field(default=8, ge=0)


class EngineConfig(_Strict):
    """The batching engine's knobs."""

    kind: Literal["auto", "dynamic", "static"] = Field(
        default="auto",
        description="static: preallocated per-slot KV cache, CUDA graphs on GPUs (auto picks it on CUDA); "
        "dynamic: a growing KV cache (auto picks it on CPU)",
    )
    max_cache_len: int = Field(default=2048, ge=64, description="static engine: tokens per slot")
    cuda_graphs: bool = True
    max_batch_size: int = Field(default=32, ge=1)
    max_prefill_tokens: int = Field(default=8192, ge=64)
    device_map: str | dict[str, Any] | None = Field(
        default=None, description='None: the first GPU if any, else CPU; "auto" splits across GPUs'
    )


class DeploymentConfig(_Strict):
    """Ray Serve deployment options (replicas, autoscaling, resources per replica)."""

    num_replicas: int | None = Field(default=1, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    ray_actor_options: dict[str, Any] = Field(default_factory=dict)
    health_check_period_s: float = Field(default=10.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentConfig:
        if self.autoscaling_config is not None:
            self.num_replicas = None
        return self


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    route_prefix: str = "/"


class ServeConfig(_Strict):
    """A serving application, fully resolved."""

    name: str = Field(default="kaito", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    model: ModelSource
    quantization: QuantizationConfig | None = None
    adapters: list[AdapterConfig] = Field(default_factory=list)
    default_adapter: str | None = Field(
        default="auto",
        description='what /chat uses without `adapter`: "auto" (all adapters combined by strength, as Kaito '
        'does, or the base model when there are none), "base", or an adapter name',
    )
    registry_auth_file: str | None = Field(default=None, description="docker config.json for OCI adapters")
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    limits: Limits = Field(default_factory=Limits)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    served_model_name: str | None = Field(default=None, description="the base model's name in /v1/models")

    @model_validator(mode="after")
    def _adapters_consistent(self) -> ServeConfig:
        names = [a.name for a in self.adapters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"adapters: duplicate names {dupes}; each adapter needs its own name")
        allowed = {"auto", "base", *names}
        if self.has_combined_adapter:
            allowed.add(COMBINED_ADAPTER)
        if self.default_adapter is not None and self.default_adapter not in allowed:
            raise ValueError(f"default_adapter: {self.default_adapter!r} is not one of {sorted(allowed)}")
        return self

    @property
    def has_combined_adapter(self) -> bool:
        """Several adapters, or one with a strength other than 1: they are also served merged by strength."""
        return len(self.adapters) > 1 or any(a.strength != 1.0 for a in self.adapters)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model.display_name

    def resolved_default_adapter(self) -> str | None:
        """The adapter /chat uses when the request names none (None = the base model)."""
        choice = self.default_adapter
        if choice in (None, "base"):
            return None
        if choice == "auto":
            if not self.adapters:
                return None
            return COMBINED_ADAPTER if self.has_combined_adapter else self.adapters[0].name
        return choice


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read a ServeConfig from YAML or JSON; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the serve config: {exc.strerror}") from exc
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return ServeConfig.model_validate(data)
