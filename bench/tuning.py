"""Tuning throughput: the Ray Train path against a plain transformers + peft loop, measured in
the same run on the same model, data, batch and steps. Prints tokens/s and the ratios:

- ray(1 worker) / plain loop          (the Ray Train path must stay within 5% of its baseline)
- kaito loop in-process / plain loop  (the same loop code without Ray: isolates Ray's share)
- ray(2 workers) / ray(1 worker)      (same total cores on CPU; one GPU each on GPUs)
- packing on / off in useful (non-padding) tokens/s on dolly-like lengths (mostly short)

CPU (this machine):   python bench/tuning.py --model tiny          (or --model smollm2)
GPU, random weights:  python bench/tuning.py --arch phi3-mini --no-ray --steps 20 --seq 1024
Throughput does not depend on weight values, so --arch builds the architecture from its config
with random weights instead of downloading a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import torch

ARCHS: dict[str, dict[str, Any]] = {
    # A toy Phi-3 to check the --arch path on a CPU.
    "tiny-phi3": {
        "type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
        "max_position_embeddings": 2048, "pad_token_id": 0, "targets": ["qkv_proj", "o_proj"],
    },
    # Phi-3-mini-4k-instruct (3.8B)
    "phi3-mini": {
        "type": "phi3", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
        "max_position_embeddings": 4096, "targets": ["qkv_proj", "o_proj"],
    },
    # Llama-3-8B
    "llama3-8b": {
        "type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 8192, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
    },
}  # fmt: skip
H200_BF16_FLOPS = 989e12


def fixed_rows(n: int, length: int, vocab: int, seed: int = 0) -> list[Any]:
    """Rows of exactly `length` tokens, the second half learned: no padding, so tokens/s compare."""
    from kaito_runtime.tuning.encoding import IGNORE, Encoded

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ids = rng.integers(10, vocab, size=length).tolist()
        rows.append(Encoded(ids, [IGNORE] * (length // 2) + ids[length // 2 :]))
    return rows


def dolly_like_rows(n: int, max_len: int, vocab: int, seed: int = 0) -> list[Any]:
    """Lengths like dolly-15k after a chat template: median ~110 tokens, a long tail to max_len."""
    from kaito_runtime.tuning.encoding import IGNORE, Encoded

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=math.log(110), sigma=0.8, size=n), 24, max_len).astype(int)
    rows = []
    for length in lengths:
        ids = rng.integers(10, vocab, size=int(length)).tolist()
        cut = int(length * 0.4)
        rows.append(Encoded(ids, [IGNORE] * cut + ids[cut:]))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(model: Any, batches: list[list[Any]], device: torch.device, amp: torch.dtype | None) -> dict:
    """The baseline: a plain transformers + peft loop (AdamW on the LoRA weights)."""
    from kaito_runtime.tuning.encoding import collate

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    model.train()
    tokens = 0
    sync(device)
    start = time.perf_counter()
    for rows in batches:
        batch = {k: v.to(device) for k, v in collate(rows, 0).items()}
        tokens += sum(len(r.input_ids) for r in rows)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def tune_config(
    model_id: str, steps: int, batch: int, seq: int, workers: int, storage: str, cpus: float | None
) -> Any:
    from kaito_runtime.tuning.config import parse_config

    return parse_config(
        {
            "name": f"bench-{workers}w-{time.time_ns()}",
            "model": {"id": model_id},
            "method": "lora",
            "training_config": {
                "TrainingArguments": {
                    "max_steps": steps, "per_device_train_batch_size": batch,
                    "logging_steps": max(steps // 4, 1), "save_strategy": "no", "learning_rate": 1e-4,
                },
                "DatasetConfig": {"max_seq_length": seq, "shuffle_dataset": False},
            },
            "input": {"path": "/nonexistent"},
            "output": {"path": os.path.join(storage, "out")},
            "scaling": {"num_workers": workers, "resources_per_worker": {"CPU": cpus} if cpus else None,
                        "use_gpu": torch.cuda.is_available()},
            "storage_path": storage,
        }
    )  # fmt: skip


def prepared(rows: list[Any]) -> Any:
    from kaito_runtime.tuning.dataset import DataReport, PreparedData, TokenizedSplit

    return PreparedData(TokenizedSplit(rows), None, DataReport())


def ray_path(
    model_id: str, rows: list[Any], steps: int, batch: int, seq: int, workers: int, cpus: float | None
) -> dict:
    import ray

    from kaito_runtime.tuning.run import build_trainer

    with tempfile.TemporaryDirectory() as storage:
        config = tune_config(model_id, steps, batch, seq, workers, storage, cpus)
        result = build_trainer(config, ray.put(prepared(rows))).fit()
    metrics = result.metrics
    return {"tokens": metrics["tokens"], "seconds": metrics["elapsed_seconds"],
            "tokens_per_second": metrics["tokens"] / metrics["elapsed_seconds"]}  # fmt: skip


def kaito_inprocess(model_id: str, rows: list[Any], steps: int, batch: int, seq: int, device: torch.device,
                    setup: Any = None) -> dict:  # fmt: skip
    """The Ray worker's loop code, run in this process without Ray."""
    from kaito_runtime.tuning.loop import train

    with tempfile.TemporaryDirectory() as storage:
        config = tune_config(model_id, steps, batch, seq, 1, storage, None)
        metrics = train(config, prepared(rows), device=device, setup=setup)
    return {"tokens": metrics["tokens"], "seconds": metrics["elapsed_seconds"],
            "tokens_per_second": metrics["tokens"] / metrics["elapsed_seconds"]}  # fmt: skip


def cpu_model(model_id: str) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kaito_runtime.modeling import ModelSource, default_lora_target_modules, resolve_model_dir

    base = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(ModelSource(id=model_id)), dtype=torch.float32
    )
    lora = LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=default_lora_target_modules(base),
                      task_type="CAUSAL_LM")  # fmt: skip
    return get_peft_model(base, lora)


def arch_model(name: str, device: torch.device, gradient_checkpointing: bool) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(ARCHS[name])
    kind, targets = spec.pop("type"), spec.pop("targets")
    config = AutoConfig.for_model(kind, **spec)
    config.use_cache = False
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16 if device.type == "cuda" else None
        )
    if gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    lora = LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(base, lora), sum(p.numel() for p in base.parameters())


def best(results: dict[str, Any], name: str, measured: dict[str, Any]) -> None:
    if name not in results or measured["tokens_per_second"] > results[name]["tokens_per_second"]:
        results[name] = measured


def batches_of(rows: list[Any], batch: int, steps: int) -> list[list[Any]]:
    return [[rows[(s * batch + i) % len(rows)] for i in range(batch)] for s in range(steps)]


def packing_compare(run: Any, rows: list[Any], batch: int, seq: int, steps: int) -> dict:
    from kaito_runtime.tuning.encoding import pack

    packed = pack(rows, seq)
    run(batches_of(rows[::-1], batch, 3))  # warm-up: variable shapes, kernels, allocator
    off = run(batches_of(rows, batch, steps))
    run(batches_of(packed[::-1], batch, 3))
    on = run(batches_of(packed, batch, steps))
    return {"unpacked": off, "packed": on, "ratio": on["tokens_per_second"] / off["tokens_per_second"],
            "rows_per_packed_row": len(rows) / len(packed)}  # fmt: skip


def report(title: str, results: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for name, value in results.items():
        if isinstance(value, dict) and "tokens_per_second" in value:
            print(f"  {name:28s} {value['tokens_per_second']:12.1f} tokens/s  ({value['tokens']} tokens, "
                  f"{value['seconds']:.2f} s)")  # fmt: skip
        elif isinstance(value, float):
            print(f"  {name:28s} {value:12.3f}")
        else:
            print(f"  {name:28s} {value}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--arch", choices=sorted(ARCHS), help="GPU: random weights from this architecture")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument(
        "--no-ray", action="store_true", help="skip the Ray paths (e.g. no ray on the machine)"
    )
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="CPU: interleaved repeats, best of each")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                               "steps": args.steps, "batch": args.batch, "seq": args.seq}  # fmt: skip

    if args.arch:
        model, n_params = arch_model(args.arch, device, not args.no_gradient_checkpointing)
        vocab = ARCHS[args.arch]["vocab_size"]
        amp = torch.bfloat16 if device.type == "cuda" else None
        results |= {"arch": args.arch, "params": n_params, "method": "lora bf16",
                    "gradient_checkpointing": not args.no_gradient_checkpointing}  # fmt: skip
        rows = fixed_rows(args.batch * args.steps, args.seq, vocab)
        plain_loop(model, batches_of(rows, args.batch, 2), device, amp)  # warm-up (kernels, allocator)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        results["plain"] = plain_loop(model, batches_of(rows, args.batch, args.steps), device, amp)
        gpu = device.type == "cuda"
        results["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if gpu else None
        results["mfu_6N"] = 6 * n_params * results["plain"]["tokens_per_second"] / H200_BF16_FLOPS
        try:
            from kaito_runtime.tuning.model_setup import ModelSetup

            setup = ModelSetup(
                model, torch.bfloat16, torch.bfloat16, ARCHS[args.arch]["targets"], {}, pad_id=0
            )
            results["kaito_loop"] = kaito_inprocess(
                "arch", rows, args.steps, args.batch, args.seq, device, setup
            )
            results["kaito_loop/plain"] = results["kaito_loop"]["tokens_per_second"] / results["plain"][
                "tokens_per_second"]  # fmt: skip
        except ImportError as exc:  # e.g. no pydantic on a bare GPU image
            results["kaito_loop"] = f"skipped: {exc}"
        dolly = dolly_like_rows(4000, args.seq, vocab)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        results["packing"] = packing_compare(lambda b: plain_loop(model, b, device, amp), dolly, args.batch,
                                             args.seq, args.steps)  # fmt: skip
        results["packing_peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if gpu else None
    else:
        from kaito_runtime.modeling import SMOLLM2_ID, TINY_RANDOM_ID

        model_id = {"tiny": TINY_RANDOM_ID, "smollm2": SMOLLM2_ID}[args.model]
        torch.set_num_threads(2)
        model = cpu_model(model_id)
        vocab = model.config.vocab_size
        rows = fixed_rows(args.batch * args.steps, args.seq, vocab)
        results["model"] = model_id
        results["repeats"] = args.repeat
        ray_started = False
        if not args.no_ray:
            import ray

            ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=True,
                     dashboard_host="127.0.0.1", dashboard_port=0, log_to_driver=False)  # fmt: skip
            ray_started = True
        try:
            # Interleaved repeats, best of each: robust to other load on a shared machine.
            for _ in range(args.repeat):
                best(
                    results,
                    "plain",
                    plain_loop(model, batches_of(rows, args.batch, args.steps), device, None),
                )
                best(
                    results,
                    "kaito_loop",
                    kaito_inprocess(model_id, rows, args.steps, args.batch, args.seq, device),
                )
                if ray_started:
                    best(
                        results,
                        "ray_1_worker",
                        ray_path(model_id, rows, args.steps, args.batch, args.seq, 1, 2),
                    )
                    best(
                        results,
                        "ray_2_workers",
                        ray_path(model_id, rows, args.steps, args.batch, args.seq, 2, 1),
                    )
        finally:
            if ray_started:
                ray.shutdown()
        plain_tps = results["plain"]["tokens_per_second"]
        results["kaito_loop/plain"] = results["kaito_loop"]["tokens_per_second"] / plain_tps
        if ray_started:
            results["ray_1w/plain"] = results["ray_1_worker"]["tokens_per_second"] / plain_tps
            results["ray_2w/ray_1w"] = (results["ray_2_workers"]["tokens_per_second"]
                                        / results["ray_1_worker"]["tokens_per_second"])  # fmt: skip
        dolly = dolly_like_rows(2000, args.seq, vocab)
        results["packing"] = packing_compare(lambda b: plain_loop(model, b, device, None), dolly, args.batch,
                                             args.seq, args.steps)  # fmt: skip
    report("tuning throughput", {k: v for k, v in results.items() if k != "packing"})
    report("packing (useful tokens/s, dolly-like lengths)", results["packing"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
