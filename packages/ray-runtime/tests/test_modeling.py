"""Model resolution and loading: the offline built-in models, local paths, and clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kaito_runtime.modeling import (
    TINY_RANDOM_ID,
    ModelError,
    ModelSource,
    default_lora_target_modules,
    load_model,
    load_tokenizer,
    resolve_dtype,
    resolve_model_dir,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_source_needs_exactly_one_location() -> None:
    with pytest.raises(ValidationError, match="exactly one of `id`"):
        ModelSource()
    with pytest.raises(ValidationError, match="exactly one of `id`"):
        ModelSource(id="a/b", path="/tmp")


def test_tiny_random_model_is_built_once_and_generates() -> None:
    source = ModelSource(id=TINY_RANDOM_ID)
    first = resolve_model_dir(source)
    assert resolve_model_dir(source) == first
    tokenizer = load_tokenizer(source)
    model = load_model(source)
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 4
    assert default_lora_target_modules(model) == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_local_path_is_used_as_is() -> None:
    built = resolve_model_dir(ModelSource(id=TINY_RANDOM_ID))
    assert resolve_model_dir(ModelSource(path=str(built))) == built


def test_missing_local_path_names_the_field(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"model.path .*no config.json"):
        resolve_model_dir(ModelSource(path=str(tmp_path)))


def test_unknown_model_offline_says_how_to_fix() -> None:
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        resolve_model_dir(ModelSource(id="example-org/not-a-cached-model"))


def test_auto_dtype_is_fp32_on_cpu() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16


def test_smollm2_resolves_offline_as_plain_safetensors() -> None:
    import json

    path = resolve_model_dir(ModelSource(id="HuggingFaceTB/SmolLM2-135M-Instruct"))
    config = json.loads((path / "config.json").read_text())
    # Dequantized weights: no GGUF record left that would refuse a BitsAndBytes (QLoRA) load.
    assert "quantization_config" not in config
    assert (path / "model.safetensors").is_file()
