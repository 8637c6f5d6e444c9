"""Tuning (training_config.yaml) and inference (inference_config.yaml) ConfigMap contents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kaito_workspace.presets import load_catalog
from kaito_workspace.validation import validate_inference_config, validate_tuning_config, validate_workspace

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))

QLORA = """
training_config:
  ModelConfig: {torch_dtype: bfloat16, local_files_only: true, device_map: auto}
  QuantizationConfig: {load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: bfloat16}
  LoraConfig: {r: 8, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}
  TrainingArguments: {output_dir: /mnt/results, per_device_train_batch_size: 2, learning_rate: 2.0e-4}
  DataCollator: {mlm: true}
  DatasetConfig: {shuffle_dataset: true, train_test_split: 1}
"""
LORA = """
training_config:
  QuantizationConfig: {load_in_4bit: false, load_in_8bit: false}
  LoraConfig: {r: 16, target_modules: all-linear}
"""


def config_maps_in(path: Path) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d["data"]
        for d in yaml.safe_load_all(path.read_text())
        if d and d.get("kind") == "ConfigMap"
    }


def test_kaito_tuning_configmap_is_valid():
    cms = config_maps_in(SHARED / "reference/kaito-examples/fine-tuning__kaito_configmap_tuning_phi_3.yaml")
    (data,) = cms.values()
    assert validate_tuning_config(data["training_config.yaml"], method="qlora") == []
    assert validate_tuning_config(data["training_config.yaml"]) == []


def test_method_and_quantization_agree():
    assert validate_tuning_config(QLORA, method="qlora") == []
    assert validate_tuning_config(LORA, method="lora") == []
    lora_on_qlora = validate_tuning_config(QLORA, method="lora")
    assert [p.path for p in lora_on_qlora] == ["training_config.yaml.training_config.QuantizationConfig"]
    assert "qlora" in lora_on_qlora[0].hint
    qlora_unquantized = validate_tuning_config(LORA, method="qlora")
    assert [p.path for p in qlora_unquantized] == ["training_config.yaml.training_config.QuantizationConfig"]
    assert "load_in_4bit" in qlora_unquantized[0].message
    no_section = "training_config:\n  LoraConfig: {r: 8}\n"
    assert validate_tuning_config(no_section, method="qlora") != []
    assert validate_tuning_config(no_section, method="lora") == []
    eight = "training_config:\n  QuantizationConfig: {load_in_8bit: true}\n"
    assert validate_tuning_config(eight, method="qlora") == []
    both = "training_config:\n  QuantizationConfig: {load_in_8bit: true, load_in_4bit: true}\n"
    assert "cannot both be true" in validate_tuning_config(both, method="qlora")[0].message


@pytest.mark.parametrize(
    ("text", "bad_path"),
    [
        ("training_config:\n  Optimizer: {lr: 1}\n", "training_config.yaml.training_config.Optimizer"),
        ("training_config:\n  LoraConfig: [r, 8]\n", "training_config.yaml.training_config.LoraConfig"),
        ("training_config:\n  LoraConfig: {r: '8'}\n", "training_config.yaml.training_config.LoraConfig.r"),
        ("training_config:\n  LoraConfig: {r: 0}\n", "training_config.yaml.training_config.LoraConfig.r"),
        (
            "training_config:\n  LoraConfig: {lora_dropout: 1.5}\n",
            "training_config.yaml.training_config.LoraConfig.lora_dropout",
        ),
        (
            "training_config:\n  QuantizationConfig: {load_in_4bit: 'yes'}\n",
            "training_config.yaml.training_config.QuantizationConfig.load_in_4bit",
        ),
        (
            "training_config:\n  QuantizationConfig: {bnb_4bit_quant_type: int4}\n",
            "training_config.yaml.training_config.QuantizationConfig.bnb_4bit_quant_type",
        ),
        (
            "training_config:\n  ModelConfig: {torch_dtype: float8}\n",
            "training_config.yaml.training_config.ModelConfig.torch_dtype",
        ),
        (
            "training_config:\n  TrainingArguments: {per_device_train_batch_size: 2.5}\n",
            "training_config.yaml.training_config.TrainingArguments.per_device_train_batch_size",
        ),
        (
            "training_config:\n  TrainingArguments: {output_dir: /etc}\n",
            "training_config.yaml.training_config.TrainingArguments.output_dir",
        ),
        (
            "training_config:\n  TrainingArguments: {output_dir: ../../root}\n",
            "training_config.yaml.training_config.TrainingArguments.output_dir",
        ),
        (
            "training_config:\n  DatasetConfig: {train_test_split: 0}\n",
            "training_config.yaml.training_config.DatasetConfig.train_test_split",
        ),
        (
            "training_config:\n  DataCollator: {mlm: 1}\n",
            "training_config.yaml.training_config.DataCollator.mlm",
        ),
        ("ModelConfig: {}\n", "training_config.yaml"),
        ("training_config: [a]\n", "training_config.yaml"),
        ("training_config:\n  LoraConfig: {r: 8\n", "training_config.yaml"),
        ("training_config: {}\nextra: 1\n", "training_config.yaml.extra"),
    ],
)
def test_tuning_config_sections_and_types(text, bad_path):
    assert bad_path in [p.path for p in validate_tuning_config(text)]


def test_tuning_config_passes_unknown_keys_through():
    # Settings we don't type-check are handed to transformers/peft as they are.
    text = (
        "training_config:\n  TrainingArguments: {output_dir: results, warmup_steps: 2, optim: adamw_torch}\n"
    )
    assert validate_tuning_config(text) == []


def test_workspace_checks_its_tuning_configmap():
    doc = yaml.safe_load((REPO / "examples/fine-tuning/kaito_workspace_tuning_phi_3.yaml").read_text())
    doc["tuning"]["config"] = "my-params"
    assert validate_workspace(doc, config_maps={"my-params": {"training_config.yaml": QLORA}}) == []
    problems = validate_workspace(doc, config_maps={"my-params": {"training_config.yaml": LORA}})
    assert [p.path for p in problems] == [
        "ConfigMap/my-params.data[training_config.yaml].training_config.QuantizationConfig"
    ]
    missing_key = validate_workspace(doc, config_maps={"my-params": {"other.yaml": ""}})
    assert [p.path for p in missing_key] == ["tuning.config"]
    # Not given: the ConfigMap lives in the cluster, nothing to check here.
    assert validate_workspace(doc) == []
    doc["tuning"]["config"] = "Bad_Name"
    assert [p.path for p in validate_workspace(doc)] == ["tuning.config"]


KAITO_INFERENCE_CONFIGS = [
    "inference__kaito_workspace_custom_config.yaml",
    "inference__kaito_workspace_gpt_oss_120b.yaml",
    "inference__kaito_workspace_gpt_oss_20b.yaml",
    "inference__kaito_workspace_llama-3.3_70b_instruct.yaml",
    "inference__kaito_workspace_tool_calling.yaml",
    "inference__arc-examples__kaito_workspace_deepseek_r1_distill_llama_8b_with_customized_config.yaml",
]


@pytest.mark.parametrize("name", KAITO_INFERENCE_CONFIGS)
def test_kaito_inference_configs_are_valid(name):
    for data in config_maps_in(SHARED / "reference/kaito-examples" / name).values():
        assert validate_inference_config(data["inference_config.yaml"]) == []


@pytest.mark.parametrize(
    ("text", "bad_path"),
    [
        ("vllm:\n  gpu-memory-utilization: 1.5\n", "inference_config.yaml.vllm.gpu-memory-utilization"),
        ("vllm:\n  max-model-len: '4096'\n", "inference_config.yaml.vllm.max-model-len"),
        ("vllm:\n  tensor-parallel-size: 0\n", "inference_config.yaml.vllm.tensor-parallel-size"),
        ("vllm:\n  enable-chunked-prefill: 'yes'\n", "inference_config.yaml.vllm.enable-chunked-prefill"),
        ("vllm:\n  some-arg: {nested: 1}\n", "inference_config.yaml.vllm.some-arg"),
        ("vllm: [a, b]\n", "inference_config.yaml.vllm"),
        ("max_probe_steps: -1\n", "inference_config.yaml.max_probe_steps"),
        ("engine: {x: 1}\n", "inference_config.yaml.engine"),
        ("- a\n", "inference_config.yaml"),
        ("vllm: {a: 1\n", "inference_config.yaml"),
    ],
)
def test_inference_config_rules(text, bad_path):
    assert bad_path in [p.path for p in validate_inference_config(text)]


def test_max_model_len_within_the_preset_context():
    phi4 = load_catalog().get("phi-4")  # 16k context
    assert validate_inference_config("vllm:\n  max-model-len: 16384\n", preset=phi4) == []
    (problem,) = validate_inference_config("vllm:\n  max-model-len: 32768\n", preset=phi4)
    assert problem.path == "inference_config.yaml.vllm.max-model-len" and "16384" in problem.hint
    doc = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws"},
        "resource": {
            "instanceType": "Standard_NC24ads_A100_v4",
            "labelSelector": {"matchLabels": {"a": "b"}},
        },
        "inference": {"preset": {"name": "phi-4"}, "config": "params"},
    }
    bad = {"params": {"inference_config.yaml": "vllm:\n  max-model-len: 65536\n"}}
    assert [p.path for p in validate_workspace(doc, config_maps=bad)] == [
        "ConfigMap/params.data[inference_config.yaml].vllm.max-model-len"
    ]
    assert [p.path for p in validate_workspace(doc, config_maps={"params": {"x": "y"}})] == [
        "inference.config"
    ]
    assert validate_inference_config("") == [] and validate_inference_config({"vllm": {}}) == []
