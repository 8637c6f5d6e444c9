"""QLoRA / LoRA fine-tuning on Ray Train: `run_tuning(TuneConfig) -> TuningResult`.

Names are imported lazily so light modules (e.g. `encoding`) import without the whole stack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaito_runtime.tuning.config import ConfigError, TuneConfig, load_config, parse_config
    from kaito_runtime.tuning.errors import DataError, DownloadError, TuningError
    from kaito_runtime.tuning.run import TuningResult, run_tuning

_EXPORTS = {
    "ConfigError": "config",
    "TuneConfig": "config",
    "load_config": "config",
    "parse_config": "config",
    "DataError": "errors",
    "DownloadError": "errors",
    "TuningError": "errors",
    "TuningResult": "run",
    "run_tuning": "run",
}
__all__ = [
    "ConfigError",
    "DataError",
    "DownloadError",
    "TuneConfig",
    "TuningError",
    "TuningResult",
    "load_config",
    "parse_config",
    "run_tuning",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"kaito_runtime.tuning.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'kaito_runtime.tuning' has no attribute {name!r}")
