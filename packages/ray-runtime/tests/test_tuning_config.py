"""TuneConfig: Kaito's training_config sections and defaults, strictness, files; the step
schedule; the progress file; the `tune` CLI's argument handling. Pure and fast (no Ray)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import yaml

from kaito_runtime.tuning.config import ConfigError, TrainingArgumentsSection, load_config, parse_config
from kaito_runtime.tuning.loop import checkpoint_due, epoch_batches, eval_due, plan_schedule, report_due
from kaito_runtime.tuning.progress import PROGRESS_KEYS, ProgressFile, read_progress

SHARED = Path(os.environ.get("KAITO_SHARED_DIR") or Path(__file__).resolve().parents[3] / ".." / "shared")
MINIMAL = {
    "name": "phi3-tune",
    "model": {"id": "kaito-builtin/tiny-random-llama"},
    "input": {"urls": ["https://example.com/data.parquet"]},
    "output": {"path": "/tmp/out"},
}


def config(**overrides):
    return parse_config({**MINIMAL, **overrides})


def test_defaults_are_kaitos():
    cfg = config()
    tc = cfg.training_config
    assert cfg.method == "qlora"
    assert (tc.LoraConfig.r, tc.LoraConfig.lora_alpha, tc.LoraConfig.lora_dropout) == (8, 8, 0.0)
    assert tc.LoraConfig.target_modules is None  # from the architecture at load time
    q = tc.QuantizationConfig
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert q.bnb_4bit_compute_dtype == "auto"  # bf16 on GPUs that have it, as Kaito
    assert tc.TrainingArguments.save_strategy == "epoch"
    assert tc.TrainingArguments.ddp_find_unused_parameters is False
    assert tc.DatasetConfig.shuffle_dataset is True and tc.DatasetConfig.shuffle_seed == 42
    assert tc.DataCollator.mlm is True
    assert cfg.scaling.num_workers == 1 and cfg.max_failures == 2


def test_real_kaito_configmap_parses():
    """The training_config.yaml of Kaito's own phi-3 tuning example works unchanged."""
    path = SHARED / "reference" / "kaito-examples" / "fine-tuning__kaito_configmap_tuning_phi_3.yaml"
    configmap = yaml.safe_load(path.read_text())
    training = yaml.safe_load(configmap["data"]["training_config.yaml"])
    cfg = config(training_config=training)
    tc = cfg.training_config
    assert tc.ModelConfig.torch_dtype == "bfloat16"
    assert tc.QuantizationConfig.bnb_4bit_compute_dtype == "bfloat16"
    assert tc.LoraConfig.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert tc.TrainingArguments.per_device_train_batch_size == 2
    assert tc.DatasetConfig.train_test_split == 1
    bnb = tc.QuantizationConfig.bnb_kwargs("bf16")
    assert bnb == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bf16",
    }


@pytest.mark.parametrize(
    ("training_config", "key"),
    [
        ({"LoraConfig": {"rank": 8}}, "rank"),
        ({"QuantizationConfig": {"load_in_3bit": True}}, "load_in_3bit"),
        ({"TrainingArguments": {"learning_rat": 1e-4}}, "learning_rat"),
        ({"DatasetConfig": {"shuffle": True}}, "shuffle"),
        ({"Trainer": {}}, "Trainer"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(training_config, key):
    with pytest.raises(ConfigError) as info:
        config(training_config=training_config)
    assert key in str(info.value)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match="unknown key 'epochs'"):
        config(epochs=3)


def test_known_but_unused_hf_training_argument_is_reported_not_rejected():
    cfg = config(training_config={"TrainingArguments": {"report_to": "none", "learning_rate": 1e-4}})
    assert cfg.training_config.TrainingArguments.learning_rate == 1e-4
    assert cfg.ignored_settings() == ["training_config.TrainingArguments.report_to"]


def test_credentials_never_inline():
    with pytest.raises(ConfigError, match="registry_auth_file"):
        config(output={"image": "myacr.azurecr.io/adapter:v1", "password": "hunter2"})
    with pytest.raises(ConfigError, match="KAITO_REGISTRY_USERNAME"):
        config(password="hunter2")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input", {"urls": ["ftp://host/data.csv"]}, "not an http"),
        ("input", {"urls": []}, "input"),
        ("input", {"path": "/data", "urls": ["https://x/y.csv"]}, "input"),
        ("output", {"volume": "/x"}, "output"),
        ("method", "full", "method"),
        ("name", "bad name!", "name"),
        ("model", {"id": "a/b", "path": "/m"}, "exactly one"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    with pytest.raises(ConfigError) as info:
        config(**{field: value})
    assert message in str(info.value)
    assert field in str(info.value)


def test_load_yaml_json_and_nested_training_config(tmp_path):
    data = {**MINIMAL, "training_config": {"training_config": {"LoraConfig": {"r": 16}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "c.json").write_text(json.dumps(data))
    for name in ("c.yaml", "c.json"):
        assert load_config(tmp_path / name).training_config.LoraConfig.r == 16
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_schedule_epochs_and_max_steps():
    args = TrainingArgumentsSection(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=2
    )
    s = plan_schedule(num_rows=100, world_size=2, args=args)
    # 50 rows per rank -> 13 micro-batches -> 7 optimizer steps per epoch -> 14 in 2 epochs
    assert (s.rows_per_rank, s.micro_batches_per_epoch, s.steps_per_epoch, s.total_steps) == (50, 13, 7, 14)
    assert plan_schedule(100, 2, args.model_copy(update={"max_steps": 30})).total_steps == 30
    with pytest.raises(ValueError, match="cannot feed 4 workers"):
        plan_schedule(3, 4, args)


def test_epoch_batches_are_disjoint_deterministic_and_equal_across_ranks():
    args = TrainingArgumentsSection(per_device_train_batch_size=3)
    s = plan_schedule(20, 2, args)
    a0 = epoch_batches(20, 0, 42, True, 0, 2, s, 3)
    a1 = epoch_batches(20, 0, 42, True, 1, 2, s, 3)
    assert len(a0) == len(a1) == s.micro_batches_per_epoch
    seen = [int(i) for b in a0 + a1 for i in b]
    assert len(seen) == len(set(seen)) == 20
    assert [b.tolist() for b in a0] == [b.tolist() for b in epoch_batches(20, 0, 42, True, 0, 2, s, 3)]
    assert [b.tolist() for b in a0] != [b.tolist() for b in epoch_batches(20, 1, 42, True, 0, 2, s, 3)]


def test_checkpoint_and_report_cadence():
    s = plan_schedule(40, 1, TrainingArgumentsSection(per_device_train_batch_size=4))  # 10 steps/epoch
    steps = TrainingArgumentsSection(save_strategy="steps", save_steps=4, logging_steps=3)
    assert [i for i in range(1, 13) if checkpoint_due(i, 12, s, steps)] == [4, 8, 12]
    assert [i for i in range(1, 13) if report_due(i, 12, s, steps)] == [3, 4, 6, 8, 9, 12]
    epoch = TrainingArgumentsSection(save_strategy="epoch")
    assert [i for i in range(1, 31) if checkpoint_due(i, 30, s, epoch)] == [10, 20, 30]
    never = TrainingArgumentsSection(save_strategy="no")
    assert [i for i in range(1, 31) if checkpoint_due(i, 30, s, never)] == [30]  # the final one, for output
    evals = TrainingArgumentsSection(
        save_strategy="no", logging_steps=100, eval_strategy="steps", eval_steps=7
    )
    assert [i for i in range(1, 31) if eval_due(i, 30, s, evals)] == [7, 14, 21, 28, 30]
    assert [i for i in range(1, 31) if report_due(i, 30, s, evals)] == [7, 14, 21, 28, 30]
    assert [i for i in range(1, 31) if eval_due(i, 30, s, never)] == [30]  # held-out loss at the end only


def test_progress_file_format(tmp_path):
    progress = ProgressFile(tmp_path / "sub" / "progress.json")
    progress.write("Running", "step 5", step=5, total_steps=10, loss=1.5)
    progress.write("Failed", "boom")
    doc = read_progress(tmp_path / "sub" / "progress.json")
    assert set(doc) == {"state", *PROGRESS_KEYS, "updated_at", "message"}
    assert (doc["state"], doc["step"], doc["total_steps"], doc["loss"], doc["message"]) == (
        "Failed",
        5,
        10,
        1.5,
        "boom",
    )
    assert doc["updated_at"].endswith("Z")


def test_cli_registers_tune_and_reports_bad_config(tmp_path, capsys):
    from kaito_runtime.tuning import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({**MINIMAL, "training_config": {"LoraConfig": {"rank": 4}}})
    )
    args = parser.parse_args(["tune", "--config", str(tmp_path / "c.yaml")])
    assert args.func(args) == 2
    assert "rank" in capsys.readouterr().err
