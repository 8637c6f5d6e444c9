"""The model preset catalog and the Azure GPU SKU table (data in presets/)."""

from .catalog import (
    ENV_PRESETS_DIR,
    HF_ID_RE,
    Catalog,
    PresetError,
    UnknownPresetError,
    load_catalog,
    presets_dir,
    sku,
)
from .fit import Fit, effective_compute_dtype, inference_fit, normalize_dtype, tuning_fit
from .models import (
    TUNING_METHODS,
    GpuSku,
    InferenceRequirement,
    Preset,
    TuningMethod,
    TuningRequirement,
)

__all__ = [
    "ENV_PRESETS_DIR",
    "HF_ID_RE",
    "TUNING_METHODS",
    "Catalog",
    "Fit",
    "GpuSku",
    "InferenceRequirement",
    "Preset",
    "PresetError",
    "TuningMethod",
    "TuningRequirement",
    "UnknownPresetError",
    "effective_compute_dtype",
    "inference_fit",
    "load_catalog",
    "normalize_dtype",
    "presets_dir",
    "sku",
    "tuning_fit",
]
