"""QLoRA / LoRA fine-tuning on Ray Train: `run_tuning(TuneConfig) -> TuningResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaito_runtime.tuning.config import ConfigError, TuneConfig, load_config, parse_config
from kaito_runtime.tuning.errors import DataError, DownloadError, TuningError

if TYPE_CHECKING:
    from kaito_runtime.tuning.run import TuningResult

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


def run_tuning(config: TuneConfig, **kwargs: Any) -> TuningResult:
    from kaito_runtime.tuning.run import run_tuning as _run_tuning

    return _run_tuning(config, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TuningResult":
        from kaito_runtime.tuning.run import TuningResult

        return TuningResult
    raise AttributeError(name)
