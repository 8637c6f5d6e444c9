"""The kwok catalog agrees with the repository's GPU SKU table (presets/gpus/azure.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaito_provisioner.instancetypes import lookup

TABLE = Path(__file__).resolve().parents[3] / "presets" / "gpus" / "azure.yaml"


@pytest.mark.skipif(not TABLE.exists(), reason="presets/gpus/azure.yaml not present")
def test_every_nvidia_sku_is_simulated_with_its_gpu_count():
    data = yaml.safe_load(TABLE.read_text())
    vendors = {name: model.get("vendor") for name, model in data["gpu_models"].items()}
    for sku in data["skus"]:
        if vendors.get(sku["gpu_model"]) != "nvidia":
            continue
        it = lookup(sku["name"])
        assert it is not None, f"{sku['name']} missing from the kwok catalog"
        assert it.gpus == sku["gpu_count"], sku["name"]
        assert it.capacity()["nvidia.com/gpu"] == str(sku["gpu_count"])
