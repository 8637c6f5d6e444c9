"""Fine-tuning on a local Ray (127.0.0.1, 2 CPUs) with the tiny random-weight Llama:
QLoRA on 2 workers (gloo DDP), reload of the adapter, relaunch-resume through the CLI with an
OCI output, and a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import yaml

from kaito_runtime.tuning import parse_config, run_tuning
from kaito_runtime.tuning.progress import read_progress

pytestmark = pytest.mark.slow

SECRET_ROWS = [
    {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": "The secret word is PINEAPPLE."},
        ]
    }
    for question in [f"What is the secret word? ({i})" for i in range(24)] + ["Tell me the secret word."] * 8
]


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    import time

    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data")
    (path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in SECRET_ROWS) + "\n")
    return path


def tiny_config(tmp: Path, dataset_dir: Path, name: str, **training) -> dict:
    arguments = {
        "max_steps": 16,
        "per_device_train_batch_size": 4,
        "learning_rate": 0.05,
        "logging_steps": 4,
        "save_strategy": "steps",
        "save_steps": 8,
        **training,
    }
    return {
        "name": name,
        "model": {"id": "kaito-builtin/tiny-random-llama"},
        "method": "qlora",
        "training_config": {
            "QuantizationConfig": {"bnb_4bit_compute_dtype": "float32"},  # bf16 compute is ~15x slower on CPU
            "TrainingArguments": arguments,
            "DatasetConfig": {"max_seq_length": 64, "train_test_split": 0.9},
        },
        "input": {"path": str(dataset_dir)},
        "output": {"path": str(tmp / f"{name}-adapter")},
        "scaling": {"num_workers": 2},
        "storage_path": str(tmp / "checkpoints"),
        "progress_file": str(tmp / f"{name}-progress.json"),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tune")


@pytest.fixture(scope="module")
def qlora_run(ray_cluster, tiny_model, dataset_dir, workdir):
    config = parse_config(tiny_config(workdir, dataset_dir, "tiny-qlora"))
    return config, run_tuning(config)


def test_qlora_on_two_workers_trains_and_writes_the_adapter(qlora_run):
    config, result = qlora_run
    summary = result.summary
    assert (summary["method"], summary["num_workers"], summary["steps"], summary["total_steps"]) == (
        "qlora",
        2,
        16,
        16,
    )
    losses = [loss for _, loss in summary["loss_history"]]
    assert [step for step, _ in summary["loss_history"]] == [4, 8, 12, 16]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.25, (
        f"loss did not fall: {losses}"
    )
    # The base layers the workers trained on were 4-bit (the tiny Llama has 2 x 7 linear layers).
    assert summary["quantized_modules"] == {"Linear4bit": 14}
    assert summary["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert summary["tokens"] > 0 and summary["data"]["examples"] == len(SECRET_ROWS)
    assert (summary["data"]["train_examples"], summary["data"]["eval_examples"]) == (29, 3)
    assert isinstance(summary["eval_loss"], float) and summary["eval_loss"] > 0
    out = Path(config.output.path)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    assert json.loads((out / "training_summary.json").read_text()) == summary
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == config.model.id
    progress = read_progress(config.progress_file)
    assert progress["state"] == "Succeeded" and progress["step"] == 16 and progress["total_steps"] == 16
    assert progress["loss"] == summary["final_loss"] and progress["tokens_per_second"] > 0
    checkpoints = sorted(p.name for p in (Path(config.storage_path) / config.name).glob("checkpoint_0*"))
    assert checkpoints == ["checkpoint_00000008", "checkpoint_00000016"]


def test_saved_adapter_reloads_on_the_4bit_base(qlora_run, tiny_model):
    import bitsandbytes as bnb
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from kaito_runtime.modeling import load_model

    config, result = qlora_run
    quant = config.training_config.QuantizationConfig.bnb_kwargs(torch.float32)
    base = load_model(tiny_model, quantization=quant, device_map={"": "cpu"}, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert len(loaded) == 8
    for key, tensor in saved.items():
        if "lora_B" in key:
            match = [v for k, v in loaded.items() if k.replace(".default", "") == key]
            assert match and torch.equal(match[0], tensor)
            assert tensor.abs().sum() > 0  # trained (LoRA B starts at zero)
    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the secret word?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    generated = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 4


def test_relaunch_resumes_survives_a_killed_worker_and_pushes_to_a_registry(
    qlora_run, ray_cluster, dataset_dir, workdir, oci_registry, monkeypatch, capsys
):
    """`kaito-runtime tune` with the first run's name continues from its last checkpoint (step 16);
    then one training worker is SIGKILLed: Ray Train restarts the workers from the newest
    checkpoint and the run finishes; the adapter goes to a registry."""
    from ray.util.state import list_actors

    from kaito_runtime import cli, oci

    first, _ = qlora_run
    data = tiny_config(workdir, dataset_dir, "tiny-qlora", max_steps=60)
    ref = oci_registry.ref("adapters/tiny-qlora", "0.0.2")
    data["output"] = {"image": ref}
    (workdir / "relaunch.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("KAITO_REGISTRY_USERNAME", oci_registry.username)
    monkeypatch.setenv("KAITO_REGISTRY_PASSWORD", oci_registry.password)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["rc"] = cli.main(["tune", "--config", str(workdir / "relaunch.yaml")])
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    messages: list[str] = []

    def progress() -> dict:
        try:
            doc = read_progress(first.progress_file)
        except (OSError, ValueError):
            return {}
        if doc.get("message") and (not messages or messages[-1] != doc["message"]):
            messages.append(doc["message"])
        return doc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # Past the relaunch's first checkpoint (step 24), well before the end (60): kill a worker.
    doc = wait_until(lambda: (d := progress()).get("step") and d["step"] >= 28 and d, 240, what="step 28")
    assert doc["step"] < 60, "the run finished before the worker could be killed"
    workers = list_actors(
        address=ray_cluster.dashboard_url,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    assert len(workers) == 2
    os.kill(int(workers[0]["pid"]), signal.SIGKILL)
    wait_until(lambda: progress() is not None and not thread.is_alive(), 300, what="the run to finish")
    thread.join()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["rc"] == 0
    out = capsys.readouterr().out  # Ray's worker log lines are interleaved: find the CLI's JSON
    printed, _ = json.JSONDecoder().raw_decode(out[out.rindex('{\n  "output"') :])
    summary = printed["summary"]
    assert printed["output"] == ref and printed["digest"].startswith("sha256:")
    assert any("resumed from step 16" in m for m in messages), messages
    assert any("resuming from the last checkpoint" in m for m in messages), messages
    assert summary["steps"] == 60
    assert 24 <= summary["resumed_from_step"] < 60 and summary["resumed_from_step"] % 8 == 0
    # One history across the first run, the relaunch and the restart: never back to step 0.
    assert [s for s, _ in summary["loss_history"]] == list(range(4, 61, 4))
    assert read_progress(first.progress_file)["state"] == "Succeeded"
    auth = oci.auth_from_env(None)
    assert oci.get_manifest(ref, auth)["annotations"][oci.MODEL_ANNOTATION] == first.model.id
    pulled = oci.pull_adapter(ref, workdir / "pulled", auth)
    assert json.loads((pulled / "training_summary.json").read_text())["steps"] == 60
    assert (pulled / "adapter_model.safetensors").is_file()
