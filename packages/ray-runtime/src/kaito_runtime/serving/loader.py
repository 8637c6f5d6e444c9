"""Load the base model and its LoRA adapters for serving, as a `ServeConfig` describes them."""

from __future__ import annotations

import importlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_runtime.modeling import ModelError, load_model, load_tokenizer
from kaito_runtime.serving.config import COMBINED_ADAPTER, AdapterConfig, ServeConfig

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    adapters: list[str]  # selectable adapter names, the combined one included


def default_device_map(config: ServeConfig) -> Any:
    """The configured device map; else the first GPU when there is one; CPU otherwise."""
    if config.engine.device_map is not None:
        return config.engine.device_map
    import torch

    if torch.cuda.is_available():
        return {"": 0}
    return {"": "cpu"} if config.quantization else None


def resolve_adapter_dir(adapter: AdapterConfig, config: ServeConfig, work_dir: Path) -> Path:
    """A local directory with `adapter_config.json`: the configured path, or the pulled OCI image."""
    if adapter.path is not None:
        path = Path(adapter.path).expanduser()
    else:
        try:
            oci = importlib.import_module("kaito_runtime.oci")
        except ImportError as exc:
            raise ModelError(
                f"adapters[{adapter.name}]: image {adapter.image!r} needs kaito_runtime.oci, "
                "which is not installed"
            ) from exc
        path = work_dir / adapter.name
        try:
            auth = oci.auth_from_env(config.registry_auth_file)
            oci.pull_adapter(adapter.image, path, auth)
        except (oci.OciError, ValueError) as exc:
            raise ModelError(f"adapters[{adapter.name}]: {exc}") from exc
    if not (path / "adapter_config.json").is_file():
        raise ModelError(
            f"adapters[{adapter.name}]: {path} holds no adapter_config.json; "
            "point `path` at the directory the tuning step wrote (a peft adapter)"
        )
    return path


def attach_adapters(model: Any, config: ServeConfig, work_dir: Path) -> tuple[Any, list[str]]:
    """Wrap `model` in peft with every adapter under its own name, plus `combined` (weighted by strength)."""
    if not config.adapters:
        return model, []
    from peft import PeftModel

    names: list[str] = []
    for adapter in config.adapters:
        path = resolve_adapter_dir(adapter, config, work_dir)
        log.info("loading adapter %s from %s", adapter.name, path)
        try:
            if not names:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter.name)
            else:
                model.load_adapter(str(path), adapter_name=adapter.name)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise ModelError(f"adapters[{adapter.name}]: cannot load from {path}: {exc}") from exc
        names.append(adapter.name)
    if config.has_combined_adapter:
        # "cat" concatenates the LoRA factors: the merged delta is exactly sum(strength_i * delta_i),
        # and adapters of different ranks combine.
        model.add_weighted_adapter(
            adapters=names,
            weights=[a.strength for a in config.adapters],
            adapter_name=COMBINED_ADAPTER,
            combination_type="cat",
        )
        names.append(COMBINED_ADAPTER)
    model.eval()
    return model, names


def load_for_serving(config: ServeConfig, work_dir: Path | None = None) -> LoadedModel:
    quantization = config.quantization.bnb_kwargs() if config.quantization else None
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, quantization=quantization, device_map=default_device_map(config))
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix=f"kaito-adapters-{config.name}-"))
    model, adapters = attach_adapters(model, config, work_dir)
    return LoadedModel(model=model, tokenizer=tokenizer, adapters=adapters)
