"""Kaito's default tuning parameters (the `qlora-params-template` / `lora-params-template` ConfigMaps).

The chart ships the same content as ConfigMaps in the controller's namespace (a test keeps them equal);
the operator reads the ConfigMaps, so a cluster admin can change the defaults; `render` uses these.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

TEMPLATE_CONFIGMAPS = {"qlora": "qlora-params-template", "lora": "lora-params-template"}
TRAINING_CONFIG_KEY = "training_config.yaml"
INFERENCE_CONFIG_KEY = "inference_config.yaml"

_COMMON: dict[str, Any] = {
    "ModelConfig": {"torch_dtype": "bfloat16", "local_files_only": True, "device_map": "auto"},
    "LoraConfig": {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0},
    "TrainingArguments": {
        "output_dir": "/mnt/results",
        "ddp_find_unused_parameters": False,
        "save_strategy": "epoch",
        "per_device_train_batch_size": 1,
    },
    "DataCollator": {"mlm": True},
    "DatasetConfig": {"shuffle_dataset": True, "train_test_split": 1},
}

_QUANTIZATION = {
    "qlora": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_use_double_quant": True,
    },
    "lora": {"load_in_4bit": False},
}


def default_training_config(method: str) -> dict[str, Any]:
    """The `training_config` mapping of Kaito's default template for `qlora` or `lora`."""
    if method not in _QUANTIZATION:
        raise ValueError(f"tuning.method must be 'qlora' or 'lora', got {method!r}")
    cfg = copy.deepcopy(_COMMON)
    ordered = {
        "ModelConfig": cfg["ModelConfig"],
        "QuantizationConfig": copy.deepcopy(_QUANTIZATION[method]),
        "LoraConfig": cfg["LoraConfig"],
        "TrainingArguments": cfg["TrainingArguments"],
        "DataCollator": cfg["DataCollator"],
        "DatasetConfig": cfg["DatasetConfig"],
    }
    return ordered


def training_config_from(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `training_config` mapping in a tuning ConfigMap's `data`, or None when it has no config.

    Kaito nests the sections under a `training_config:` key; a file without it is taken as the sections.
    """
    text = (data or {}).get(TRAINING_CONFIG_KEY)
    if not text:
        return None
    doc = yaml.safe_load(text) or {}
    return doc.get("training_config", doc)


def inference_config_for(ws: Any, config_maps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The parsed `inference_config.yaml` of the ConfigMap named by `inference.config`, if any."""
    name = ws.inference.config if ws.inference is not None else None
    text = (config_maps.get(name) or {}).get(INFERENCE_CONFIG_KEY) if name else None
    return (yaml.safe_load(text) or None) if text else None
