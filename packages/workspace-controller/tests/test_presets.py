"""The preset catalog and GPU SKU table: complete, realistic, loadable from the repo and from a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kaito_workspace.presets import (
    Catalog,
    PresetError,
    UnknownPresetError,
    effective_compute_dtype,
    inference_fit,
    load_catalog,
    presets_dir,
    sku,
    tuning_fit,
)

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
PACKAGE = REPO / "packages/workspace-controller"

ISSUE_PRESETS = [
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "phi-4",
    "phi-4-mini-instruct",
    "mistral-7b",
    "mistral-7b-instruct",
    "falcon-7b",
    "falcon-7b-instruct",
    "falcon-40b",
    "falcon-40b-instruct",
    "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "smollm2-135m-instruct",
    "tiny-random-llama",
]
ISSUE_SKU_FAMILIES = [
    "Standard_NC6s_v3",
    "Standard_NC12s_v3",
    "Standard_NC24s_v3",
    "Standard_NC4as_T4_v3",
    "Standard_NC64as_T4_v3",
    "Standard_NC24ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
    "Standard_ND96isr_H100_v5",
    "Standard_NV36ads_A10_v5",
    "Standard_NV72ads_A10_v5",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def kaito_example_preset_names() -> set[str]:
    names = set()
    for f in (SHARED / "reference/kaito-examples").glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") == "Workspace":
                spec = d.get("inference") or d.get("tuning")
                names.add(spec["preset"]["name"])
    return names


def test_catalog_has_every_required_preset(catalog):
    required = set(ISSUE_PRESETS) | kaito_example_preset_names()
    assert len(required) > 25
    assert sorted(required - set(catalog.names())) == []


def test_presets_are_complete(catalog):
    for p in catalog:
        assert p.known
        assert "/" in p.hf_id, p.name
        assert p.architecture and p.parameters_b and p.weight_size_gib and p.context_length, p.name
        assert p.inference is not None and p.inference.max_model_len <= p.context_length, p.name
        assert p.lora_target_modules, p.name
        for method, req in p.tuning.items():
            assert method in ("qlora", "lora")
            assert req.max_seq_length > 0 and req.per_device_batch_size > 0
        if "qlora" in p.tuning and "lora" in p.tuning:
            # 4-bit weights need less memory than 16-bit ones
            assert p.tuning["qlora"].gpu_memory_gib < p.tuning["lora"].gpu_memory_gib, p.name


def test_sizes_are_realistic(catalog):
    """Weights take ~2 bytes/parameter in 16-bit (less for fp8/mxfp4); serving needs at least the weights."""
    for p in catalog:
        bytes_per_param = p.weight_size_gib * 2**30 / (p.parameters_b * 1e9)
        if p.weight_dtype == "bfloat16":
            assert 1.6 < bytes_per_param < 2.3, p.name
        assert p.inference.gpu_memory_gib >= p.weight_size_gib, p.name
        assert p.inference.gpu_memory_gib <= p.weight_size_gib * 1.5 + 4, p.name  # not padded
        if "lora" in p.tuning:
            assert p.tuning["lora"].gpu_memory_gib >= p.weight_size_gib, p.name


def test_small_presets_run_without_gpu(catalog):
    smol = catalog.get("smollm2-135m-instruct")
    assert smol.hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    tiny = catalog.get("tiny-random-llama")
    assert tiny.hf_id == "kaito-builtin/tiny-random-llama"
    for p in (smol, tiny):
        assert p.cpu_capable and p.tuning_supported and set(p.tuning) == {"qlora", "lora"}
    assert not catalog.get("phi-4").cpu_capable


def test_gated_models_need_auth(catalog):
    assert catalog.get("llama-3.1-8b-instruct").download_auth_required
    assert catalog.get("gemma-3-4b-instruct").download_auth_required
    assert not catalog.get("phi-3-mini-4k-instruct").download_auth_required


def test_lookup_by_name_hf_id_and_best_effort(catalog):
    assert catalog.get("PHI-4").name == "phi-4"
    assert catalog.get("microsoft/Phi-3-mini-4k-instruct").name == "phi-3-mini-4k-instruct"
    other = catalog.get("Qwen/Qwen3-0.6B")
    assert not other.known and other.hf_id == "Qwen/Qwen3-0.6B"
    assert other.inference is None and other.parameters_b is None and not other.sizes_known
    assert other.tuning_supported
    with pytest.raises(UnknownPresetError) as err:
        catalog.get("no-such-model")
    assert "no-such-model" in str(err.value)
    assert catalog.find("bad name/with/slashes") is None
    assert "phi-4" in catalog and "nope" not in catalog


def test_sku_table(catalog):
    for name in ISSUE_SKU_FAMILIES:
        assert sku(name) is not None, name
    v100 = sku("Standard_NC6s_v3")
    assert (v100.gpu_model, v100.gpu_count, v100.gpu_memory_gib, v100.bf16) == ("V100", 1, 16, False)
    a100 = sku("standard_nc96ads_a100_v4")  # case-insensitive
    assert (a100.gpu_count, a100.total_gpu_memory_gib, a100.bf16) == (4, 320, True)
    assert sku("Standard_ND96asr_A100_v4") == sku("Standard_ND96asr_v4")  # Kaito's spelling
    assert sku("Standard_NC80adis_H100_v5").total_gpu_memory_gib == 188
    assert sku("Standard_NV6ads_A10_v5").partial
    assert sku("Standard_D4s_v5") is None
    assert len(catalog.skus()) >= 40


def test_kaito_quick_start_fits_a_v100():
    """phi-3-mini-128k-instruct qlora fits one 16 GB V100, at the sequence length and batch the preset states;
    V100 has no bf16, so compute is float16 and the plan says so."""
    preset = load_catalog().get("phi-3-mini-128k-instruct")
    fit = tuning_fit(preset, "qlora", sku("Standard_NC6s_v3"))
    assert fit.fits and fit.basis == "per-gpu"
    assert "max_seq_length 1024" in fit.message and "per_device_batch_size 2" in fit.message
    assert any("float16" in n for n in fit.notes)
    assert not tuning_fit(load_catalog().get("phi-4"), "lora", sku("Standard_NC6s_v3")).fits


def test_inference_fit_counts_all_gpus_of_all_nodes():
    llama70 = load_catalog().get("llama-3.3-70b-instruct")
    one = inference_fit(llama70, sku("Standard_NC24ads_A100_v4"), 1)
    assert not one.fits and "at least 2 GPUs" in one.message
    two = inference_fit(llama70, sku("Standard_NC48ads_A100_v4"), 2)
    assert two.fits and two.available_gib == 320
    unknown = inference_fit(load_catalog().get("org/model"), sku("Standard_NC6s_v3"))
    assert unknown.fits and unknown.required_gib is None


@pytest.mark.parametrize(
    ("requested", "sku_name", "dtype", "noted"),
    [
        ("bfloat16", "Standard_NC6s_v3", "float16", True),
        ("bf16", "Standard_NC4as_T4_v3", "float16", True),
        ("bfloat16", "Standard_NC24ads_A100_v4", "bfloat16", False),
        ("auto", "Standard_NC6s_v3", "float16", False),
        ("auto", "Standard_ND96isr_H100_v5", "bfloat16", False),
        (None, None, "float32", False),
        ("float16", "Standard_NC24ads_A100_v4", "float16", False),
    ],
)
def test_effective_compute_dtype(requested, sku_name, dtype, noted):
    got, note = effective_compute_dtype(requested, sku(sku_name) if sku_name else None)
    assert got == dtype
    assert (note is not None) == noted
    if noted:
        assert "no bfloat16" in note


def test_presets_dir_override_and_bad_data(tmp_path, monkeypatch):
    root = tmp_path / "presets"
    shutil.copytree(presets_dir(), root)
    (root / "models" / "extra.yaml").write_text(
        "presets:\n  - {name: my-model, hf_id: me/my-model,\n"
        "     inference: {gpu_memory_gib: 2, max_model_len: 512}}\n"
    )
    monkeypatch.setenv("KAITO_PRESETS_DIR", str(root))
    assert presets_dir() == root
    assert Catalog.load().get("my-model").hf_id == "me/my-model"
    (root / "models" / "bad.yaml").write_text("presets:\n  - {name: x, hf_id: a/b, gpu_mem: 3}\n")
    with pytest.raises(PresetError, match=r"bad\.yaml"):
        Catalog.load()


def test_wheel_ships_the_presets():
    """The wheel maps <repo>/presets to kaito_workspace/presets_data, and the loader finds it there."""
    pyproject = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    force = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert (PACKAGE / next(k for k, v in force.items() if v == "kaito_workspace/presets_data")).resolve() == (
        REPO / "presets"
    )


def test_loader_finds_packaged_data(tmp_path):
    """Lay the package out as the wheel installs it (no repo around it) and load the catalog there."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE / "src/kaito_workspace", site / "kaito_workspace")
    shutil.copytree(REPO / "presets", site / "kaito_workspace/presets_data")
    code = "import kaito_workspace.presets as p; print(p.presets_dir()); print(len(p.load_catalog()))"
    env = {k: v for k, v in os.environ.items() if k != "KAITO_PRESETS_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    where, count = out.stdout.split()
    assert Path(where) == site / "kaito_workspace/presets_data"
    assert int(count) == len(load_catalog())
