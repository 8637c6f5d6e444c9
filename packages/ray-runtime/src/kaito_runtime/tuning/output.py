"""Writing the tuned adapter: adapter files, tokenizer + chat template, training_summary.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kaito_runtime.tuning.config import TuneConfig

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SUMMARY_FILE = "training_summary.json"


def write_adapter(
    checkpoint_dir: Path, out: Path, config: TuneConfig, tokenizer: Any, summary: dict[str, Any]
) -> Path:
    """Copy the adapter out of the final checkpoint, save the tokenizer (with its chat template) and
    the summary. `base_model_name_or_path` names the model as configured, not a cache directory."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.copy2(checkpoint_dir / name, out / name)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = config.model.id or config.model.path
    adapter_config["revision"] = config.model.revision
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template and not (out / "chat_template.jinja").exists():
        (out / "chat_template.jinja").write_text(tokenizer.chat_template)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return out


def build_summary(
    config: TuneConfig,
    metrics: dict[str, Any],
    data_report: dict[str, Any],
    duration_s: float,
    target_modules: Any,
) -> dict[str, Any]:
    lora = config.training_config.LoraConfig
    return {
        "name": config.name,
        "model": config.model.id or config.model.path,
        "revision": config.model.revision,
        "method": config.method,
        "steps": metrics.get("step"),
        "total_steps": metrics.get("total_steps"),
        "epochs": metrics.get("epoch"),
        "final_loss": metrics.get("loss"),
        "eval_loss": metrics.get("eval_loss"),
        "loss_history": metrics.get("loss_history", []),
        "tokens": metrics.get("tokens"),
        "tokens_per_second": metrics.get("tokens_per_second"),
        "train_seconds": metrics.get("elapsed_seconds"),
        "duration_seconds": round(duration_s, 2),
        "num_workers": metrics.get("world_size"),
        "resumed_from_step": metrics.get("resumed_from_step", 0),
        "quantized_modules": metrics.get("quantized_modules", {}),
        "lora": {
            "r": lora.r,
            "lora_alpha": lora.lora_alpha,
            "lora_dropout": lora.lora_dropout,
            "target_modules": target_modules,
        },
        "data": data_report,
    }
