"""The tuning job's configuration: a fully resolved `TuneConfig` (YAML or JSON).

`training_config` keeps Kaito's section names and defaults (`ModelConfig`, `QuantizationConfig`,
`LoraConfig`, `TrainingArguments`, `DatasetConfig`, `DataCollator`) so an existing Kaito
`training_config.yaml` works as is. Unknown keys are errors that name the key. Keys that Hugging
Face's `TrainingArguments` knows but this runtime does not apply are accepted and reported by
`TuneConfig.ignored_settings()` (for example `output_dir`: the output goes to `output`).

Registry credentials never appear in the file: `registry_auth_file` names a docker config.json,
or the environment holds `KAITO_REGISTRY_USERNAME` / `KAITO_REGISTRY_PASSWORD`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from kaito_runtime.modeling import ModelSource


class ConfigError(ValueError):
    """The tuning configuration is invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


DTypeName = Literal["auto", "float32", "float16", "bfloat16"]


class ModelConfigSection(_Strict):
    """Kaito's `ModelConfig`. `torch_dtype` overrides `model.dtype`; the loading keys that only
    make sense for a single-process `from_pretrained` (device_map, local_files_only...) are
    accepted for compatibility: each Ray worker pins its own copy of the model to its device."""

    torch_dtype: DTypeName | None = None
    device_map: Any = "auto"
    local_files_only: bool = True
    trust_remote_code: bool | None = None
    cache_dir: str | None = None
    m_revision: str | None = None
    t_revision: str | None = None
    attn_implementation: str | None = None
    low_cpu_mem_usage: bool | None = None


class QuantizationSection(_Strict):
    """Kaito's `QuantizationConfig` (bitsandbytes). Used by `method: qlora`, ignored by `lora`.

    `bnb_4bit_compute_dtype: auto` means bfloat16 on GPUs that have it (Kaito's default),
    float16 on older GPUs and float32 on CPU (bf16 compute is about 15x slower on CPU)."""

    load_in_4bit: bool = True
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: DTypeName = "auto"
    bnb_4bit_quant_storage: str | None = None
    llm_int8_threshold: float = 6.0
    llm_int8_skip_modules: list[str] | None = None
    llm_int8_has_fp16_weight: bool = False

    @model_validator(mode="after")
    def _one_mode(self) -> QuantizationSection:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("QuantizationConfig: set only one of load_in_4bit or load_in_8bit")
        return self

    def bnb_kwargs(self, compute_dtype: Any) -> dict[str, Any]:
        """Keyword arguments for `transformers.BitsAndBytesConfig`."""
        if self.load_in_8bit:
            return {
                "load_in_8bit": True,
                "llm_int8_threshold": self.llm_int8_threshold,
                "llm_int8_skip_modules": self.llm_int8_skip_modules,
                "llm_int8_has_fp16_weight": self.llm_int8_has_fp16_weight,
            }
        kwargs: dict[str, Any] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": self.bnb_4bit_quant_type,
            "bnb_4bit_use_double_quant": self.bnb_4bit_use_double_quant,
            "bnb_4bit_compute_dtype": compute_dtype,
        }
        if self.llm_int8_skip_modules:
            kwargs["llm_int8_skip_modules"] = self.llm_int8_skip_modules
        if self.bnb_4bit_quant_storage:
            kwargs["bnb_4bit_quant_storage"] = self.bnb_4bit_quant_storage
        return kwargs


class LoraSection(_Strict):
    """Kaito's `LoraConfig` (peft). `target_modules` defaults from the model architecture."""

    r: int = Field(8, ge=1)
    lora_alpha: int = Field(8, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    task_type: Literal["CAUSAL_LM"] = "CAUSAL_LM"
    init_lora_weights: bool = True
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    layers_to_transform: list[int] | int | None = None

    def peft_kwargs(self, default_targets: list[str]) -> dict[str, Any]:
        kwargs = self.model_dump(exclude_none=True)
        kwargs.setdefault("target_modules", default_targets)
        return kwargs


SaveStrategy = Literal["steps", "epoch", "no"]


class TrainingArgumentsSection(BaseModel):
    """Kaito's `TrainingArguments` (Hugging Face names). The fields below are applied; any other
    Hugging Face `TrainingArguments` key is accepted and reported as ignored; anything else is an
    error. `logging_steps` defaults to 10 (not 500) so progress is visible early."""

    model_config = ConfigDict(extra="allow")

    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    per_device_train_batch_size: int = Field(1, ge=1)
    per_device_eval_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    logging_steps: int = Field(10, ge=1)
    save_strategy: SaveStrategy = "epoch"
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    eval_strategy: SaveStrategy = "no"
    eval_steps: int | None = Field(None, ge=1)
    seed: int = 42
    gradient_checkpointing: bool = False
    bf16: bool = False
    fp16: bool = False
    ddp_find_unused_parameters: bool = False
    output_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "evaluation_strategy" in data and "eval_strategy" not in data:
            data = {**data, "eval_strategy": data["evaluation_strategy"]}
            data.pop("evaluation_strategy")
        extra = set(data) - set(cls.model_fields)
        unknown = sorted(extra - _hf_training_argument_names()) if extra else []
        if unknown:
            raise ValueError(
                f"TrainingArguments: unknown key(s) {', '.join(unknown)}; use Hugging Face "
                "TrainingArguments names (e.g. learning_rate, num_train_epochs, max_steps)"
            )
        return data

    @field_validator("lr_scheduler_type")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        allowed = {"linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"}
        allowed |= {"polynomial", "inverse_sqrt"}
        if value not in allowed:
            raise ValueError(f"lr_scheduler_type {value!r}: use one of {sorted(allowed)}")
        return value

    def ignored(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


@functools.cache
def _hf_training_argument_names() -> frozenset[str]:
    import dataclasses

    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


Schema = Literal["auto", "messages", "prompt_completion", "instruction", "text"]
DataFormat = Literal["auto", "parquet", "jsonl", "json", "csv"]


class DatasetSection(_Strict):
    """Kaito's `DatasetConfig`, plus the schema, sequence length and packing settings.

    Schemas: `messages` (OpenAI chat: a list of {role, content}), `prompt_completion`,
    `instruction` (dolly: instruction / context / response) and `text` (plain text; loss on
    every token). Kaito's `context_column` / `response_column` select prompt/completion columns;
    `messages_column` names the chat column."""

    dataset_path: str | None = None
    format: DataFormat = "auto"
    schema_: Schema = Field("auto", alias="schema")
    messages_column: str | None = None
    context_column: str | None = None
    response_column: str | None = None
    instruction_column: str | None = None
    text_column: str | None = None
    system_prompt: str | None = None
    shuffle_dataset: bool = True
    shuffle_seed: int = 42
    train_test_split: float = Field(1.0, gt=0, le=1)
    max_seq_length: int = Field(1024, ge=8)
    packing: bool = False
    train_on_inputs: bool = False
    max_rows: int | None = Field(None, ge=1)


class DataCollatorSection(_Strict):
    """Kaito's `DataCollator`. This runtime trains causal LMs: `mlm` is accepted for
    compatibility with Kaito configs and has no effect; `pad_to_multiple_of` is applied."""

    mlm: bool = True
    mlm_probability: float = 0.15
    pad_to_multiple_of: int | None = Field(None, ge=1)
    return_tensors: Literal["pt"] = "pt"


class TrainingConfig(_Strict):
    ModelConfig: ModelConfigSection = Field(default_factory=ModelConfigSection)
    QuantizationConfig: QuantizationSection = Field(default_factory=QuantizationSection)
    LoraConfig: LoraSection = Field(default_factory=LoraSection)
    TrainingArguments: TrainingArgumentsSection = Field(default_factory=TrainingArgumentsSection)
    DatasetConfig: DatasetSection = Field(default_factory=DatasetSection)
    DataCollator: DataCollatorSection = Field(default_factory=DataCollatorSection)


class UrlsInput(_Strict):
    urls: list[str] = Field(min_length=1)

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls


class PathInput(_Strict):
    path: str


class ImageInput(_Strict):
    image: str


class PathOutput(_Strict):
    path: str


class ImageOutput(_Strict):
    image: str


def _one_of(*keys: str) -> Any:
    def pick(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            return None
        present = [k for k in keys if k in value]
        return present[0] if len(present) == 1 else None

    return pick


_ONE_OF_INPUT = (
    "set exactly one of urls (a list of http(s) URLs), path (a directory) or image (an OCI reference)"
)
_ONE_OF_OUTPUT = "set exactly one of path (a directory) or image (an OCI reference)"
InputSource = Annotated[
    Annotated[UrlsInput, Tag("urls")]
    | Annotated[PathInput, Tag("path")]
    | Annotated[ImageInput, Tag("image")],
    Discriminator(
        _one_of("urls", "path", "image"), custom_error_type="one_of", custom_error_message=_ONE_OF_INPUT
    ),
]
OutputTarget = Annotated[
    Annotated[PathOutput, Tag("path")] | Annotated[ImageOutput, Tag("image")],
    Discriminator(_one_of("path", "image"), custom_error_type="one_of", custom_error_message=_ONE_OF_OUTPUT),
]


class DownloadSettings(_Strict):
    """Limits for `input.urls`."""

    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_bytes: int = Field(10 * 1024**3, ge=1)


class ScalingSection(_Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None


_SECRET_KEYS = {"password", "username", "token", "auth", "registry_password", "registry_username"}


class TuneConfig(_Strict):
    """Everything one tuning run needs, with nothing left to look up."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelSource
    method: Literal["qlora", "lora"] = "qlora"
    training_config: TrainingConfig = Field(default_factory=TrainingConfig)
    input: InputSource
    output: OutputTarget
    registry_auth_file: str | None = None
    download: DownloadSettings = Field(default_factory=DownloadSettings)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    storage_path: str = "~/ray_results"
    progress_file: str | None = None
    #: Also print each progress record as one `KAITO_PROGRESS {json}` line: the operator reads it from the
    #: Ray job's log, so the runtime needs no Kubernetes credentials to report progress.
    progress_log: bool = False
    max_failures: int = Field(2, ge=-1)
    ray_address: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            inline = sorted(k for k in data if k.lower() in _SECRET_KEYS)
            for section in ("input", "output"):
                value = data.get(section)
                if isinstance(value, dict):
                    inline += [f"{section}.{k}" for k in value if k.lower() in _SECRET_KEYS]
            if inline:
                raise ValueError(
                    f"{', '.join(inline)}: registry credentials never go in the config file; set "
                    "registry_auth_file (a docker config.json) or KAITO_REGISTRY_USERNAME / "
                    "KAITO_REGISTRY_PASSWORD in the environment"
                )
        return data

    @property
    def run_storage_dir(self) -> Path:
        return Path(self.storage_path).expanduser() / self.name

    def ignored_settings(self) -> list[str]:
        return [
            f"training_config.TrainingArguments.{k}" for k in self.training_config.TrainingArguments.ignored()
        ]


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 1 and loc[0] in ("input", "output") and loc[1] in ("urls", "path", "image"):
            del loc[1]  # the union tag; the field name follows
        where = ".".join(str(p) for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {err['loc'][-1]!r}; check the spelling against the documented fields"
        lines.append(f"{where}: {msg}" if where else msg)
    return "invalid tuning config:\n  " + "\n  ".join(dict.fromkeys(lines))


def parse_config(data: dict[str, Any]) -> TuneConfig:
    """Validate a config mapping; raise `ConfigError` naming each bad field."""
    if isinstance(data, dict) and "training_config" in data and isinstance(data["training_config"], dict):
        # Kaito's training_config.yaml nests everything under a `training_config:` key.
        inner = data["training_config"]
        if set(inner) == {"training_config"}:
            data = {**data, "training_config": inner["training_config"]}
    try:
        return TuneConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_config(path: str | Path) -> TuneConfig:
    """Read a YAML or JSON tuning config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"config file {path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return parse_config(data)
