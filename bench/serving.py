"""Serving benchmark: latency p50/p99, time to first token and tokens/s at concurrency 1, 8 and 32,
against a baseline measured in the same run.

Baseline: what Kaito's transformers runtime does, the same model in-process answering one request
at a time with `model.generate`. Its per-request service times (and time to first token, via a
streamer) are measured; latency at concurrency c is what c simultaneous clients of a one-at-a-time
server see (request i waits for the i-1 before it), computed from those measured service times.

Candidate (`--mode serve`, the default): the Ray Serve application over HTTP (streaming OpenAI
chat completions, c concurrent clients, each sending requests back to back). `--mode engine`
drives the batching engine in-process instead (no Ray, no HTTP: for GPU machines without Ray).

Every request asks for exactly `--max-tokens` tokens (`ignore_eos`), so both sides do equal work.

    python bench/serving.py                                  # SmolLM2-135M on CPU, via Ray Serve
    python bench/serving.py --model tiny --max-tokens 32     # quick
    python bench/serving.py --mode engine --arch phi3-mini --device cuda   # GPU, random weights
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback (read at import)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "ray-runtime" / "src"))

QUESTION = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Level:
    concurrency: int
    requests: int
    p50_s: float
    p99_s: float
    ttft_p50_s: float
    tokens_per_s: float


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------- models


def random_arch_model(arch: str) -> Any:
    """Random weights for a real architecture (throughput does not depend on weight values)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    configs = {
        "phi3-mini": {
            "model_type": "phi3",
            "hidden_size": 3072,
            "intermediate_size": 8192,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32064,
            "max_position_embeddings": 4096,
        },
        "llama3-8b": {
            "model_type": "llama",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
        },
    }
    spec = dict(configs[arch])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else None)
    return model.eval()


def random_arch_dir(arch: str, out: Path) -> Path:
    """A checkpoint directory for `random_arch_model`, with the tiny model's tokenizer."""
    from kaito_runtime.modeling import TINY_RANDOM_ID, ModelSource, load_tokenizer

    random_arch_model(arch).save_pretrained(out)
    load_tokenizer(ModelSource(id=TINY_RANDOM_ID)).save_pretrained(out)
    return out


def model_source(args: argparse.Namespace, workdir: Path) -> Any:
    from kaito_runtime.modeling import SMOLLM2_ID, TINY_RANDOM_ID, ModelSource

    if args.arch and args.mode == "engine":
        return ModelSource(id=TINY_RANDOM_ID)  # its tokenizer; the model is built in memory
    if args.arch:
        return ModelSource(path=str(random_arch_dir(args.arch, workdir / args.arch)))
    return ModelSource(id={"tiny": TINY_RANDOM_ID, "smollm2": SMOLLM2_ID}.get(args.model, args.model))


def prompt_ids(tokenizer: Any) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- baseline


def baseline(
    model: Any, tokenizer: Any, ids: list[int], max_tokens: int, n: int
) -> list[tuple[float, float]]:
    """(service time, time to first token) of `n` one-at-a-time `generate` calls."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.first: float | None = None

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2 and self.first is None:  # the first call carries the prompt
                self.first = time.perf_counter()

        def end(self) -> None: ...

    inputs = torch.tensor([ids], device=model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kwargs = {
        "max_new_tokens": max_tokens,
        "min_new_tokens": max_tokens,
        "do_sample": False,
        "pad_token_id": pad,
    }
    model.generate(inputs, max_new_tokens=2, do_sample=False)  # warm up
    out = []
    for _ in range(n):
        streamer = FirstToken()
        start = time.perf_counter()
        generated = model.generate(inputs, streamer=streamer, **kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        end = time.perf_counter()
        assert generated.shape[1] - inputs.shape[1] == max_tokens
        out.append((end - start, (streamer.first or end) - start))
    return out


def baseline_levels(samples: list[tuple[float, float]], max_tokens: int, levels: list[int]) -> list[Level]:
    service = [s for s, _ in samples]
    ttft = [t for _, t in samples]
    results = []
    for c in levels:
        # c clients arrive together at a one-at-a-time server: client i waits for the i-1 before it.
        svc = [service[i % len(service)] for i in range(c)]
        first = [ttft[i % len(ttft)] for i in range(c)]
        waits = [sum(svc[:i]) for i in range(c)]
        latency = [w + s for w, s in zip(waits, svc, strict=True)]
        ttfts = [w + f for w, f in zip(waits, first, strict=True)]
        results.append(
            Level(c, c, pct(latency, 0.5), pct(latency, 0.99), pct(ttfts, 0.5), c * max_tokens / sum(svc))
        )
    return results


# ---------------------------------------------------------------- candidates


async def http_level(url: str, model: str, c: int, per_client: int, max_tokens: int) -> Level:
    import httpx

    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        body = {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for _ in range(per_client):
            start = time.perf_counter()
            first = None
            async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter()
                    if chunk.get("usage"):
                        tokens += chunk["usage"]["completion_tokens"]
            end = time.perf_counter()
            latencies.append(end - start)
            ttfts.append((first or end) - start)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=c + 4)) as http:
        start = time.perf_counter()
        await asyncio.gather(*[client(http) for _ in range(c)])
        wall = time.perf_counter() - start
    return Level(c, len(latencies), pct(latencies, 0.5), pct(latencies, 0.99), pct(ttfts, 0.5), tokens / wall)


def engine_level(engine: Any, ids: list[int], c: int, per_client: int, max_tokens: int) -> Level:
    from kaito_runtime.serving.engine import GenerationRequest
    from kaito_runtime.serving.sampling import SamplingParams

    params = SamplingParams(max_new_tokens=max_tokens, ignore_eos=True)
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal tokens
        for _ in range(per_client):
            start = time.perf_counter()
            handle = engine.submit(GenerationRequest(ids, params))
            count = 0
            for event in handle:
                count = event.completion_tokens
            end = time.perf_counter()
            # the engine's own timestamp: random weights rarely produce printable text early
            first = handle.first_token_at or end
            with lock:
                latencies.append(end - start)
                ttfts.append(first - start)
                tokens += count

    threads = [threading.Thread(target=client) for _ in range(c)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return Level(c, len(latencies), pct(latencies, 0.5), pct(latencies, 0.99), pct(ttfts, 0.5), tokens / wall)


# ---------------------------------------------------------------- main


def report(name: str, base: list[Level], cand: list[Level]) -> dict:
    rows = []
    print(f"\n{name}: candidate vs one-at-a-time transformers baseline (same model, same run)")
    print(
        f"{'conc':>5} {'tok/s':>10} {'base tok/s':>11} {'x':>6} {'p50 s':>8} {'base p50':>9} {'p99 s':>8}"
        f" {'base p99':>9} {'ttft p50':>9} {'base ttft':>10}"
    )
    for b, c in zip(base, cand, strict=True):
        ratio = c.tokens_per_s / b.tokens_per_s
        print(
            f"{c.concurrency:>5} {c.tokens_per_s:>10.1f} {b.tokens_per_s:>11.1f} {ratio:>6.2f}"
            f" {c.p50_s:>8.2f} {b.p50_s:>9.2f} {c.p99_s:>8.2f} {b.p99_s:>9.2f}"
            f" {c.ttft_p50_s:>9.3f} {b.ttft_p50_s:>10.3f}"
        )
        rows.append(
            {
                "concurrency": c.concurrency,
                "candidate": asdict(c),
                "baseline": asdict(b),
                "throughput_ratio": ratio,
                "p50_latency_ratio": c.p50_s / b.p50_s,
                "p99_latency_ratio": c.p99_s / b.p99_s,
                "ttft_ratio": c.ttft_p50_s / b.ttft_p50_s,
            }
        )
    return {"name": name, "levels": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="tiny | smollm2 | a Hugging Face id")
    parser.add_argument(
        "--arch", choices=["phi3-mini", "llama3-8b"], help="random weights of a real architecture"
    )
    parser.add_argument("--mode", choices=["serve", "engine"], default="serve")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--per-client", type=int, default=2, help="requests each client sends")
    parser.add_argument("--baseline-requests", type=int, default=4)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--engine", choices=["auto", "dynamic", "static"], default="auto")
    parser.add_argument("--max-cache-len", type=int, default=1024)
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        help="torch threads on CPU for the baseline (a Serve replica with num_cpus=1 gets one too)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    import torch

    from kaito_runtime.modeling import load_model, load_tokenizer

    workdir = Path(tempfile.mkdtemp(prefix="kaito-bench-"))
    source = model_source(args, workdir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.cpu_threads)
    tokenizer = load_tokenizer(source)
    if args.arch and args.mode == "engine":
        model = random_arch_model(args.arch)
    else:
        model = load_model(source, device_map={"": 0} if device == "cuda" else None)
    ids = prompt_ids(tokenizer)
    name = args.arch or source.display_name
    print(f"model {name} on {device}, prompt {len(ids)} tokens, {args.max_tokens} new tokens")

    samples = baseline(model, tokenizer, ids, args.max_tokens, args.baseline_requests)
    base = baseline_levels(samples, args.max_tokens, levels)

    if args.mode == "engine":
        from kaito_runtime.serving.engine import BatchingEngine
        from kaito_runtime.serving.static_engine import StaticSlotEngine

        kind = args.engine if args.engine != "auto" else ("static" if device == "cuda" else "dynamic")
        common = {"max_batch_size": args.max_batch_size, "max_waiting": 1024}
        if kind == "static":
            engine = StaticSlotEngine(model, tokenizer, max_cache_len=args.max_cache_len, **common).start()
        else:
            engine = BatchingEngine(model, tokenizer, **common).start()
        cand = []
        for c in levels:
            engine_level(engine, ids, c, 1, args.max_tokens)  # warm up (and capture this level's graphs)
            cand.append(engine_level(engine, ids, c, args.per_client, args.max_tokens))
        engine.stop()
        graphs = sorted(getattr(engine, "_graphs", {}))
        print(f"engine {kind}: cuda graphs {getattr(engine, 'use_graphs', False)}, buckets captured {graphs}")
        result = report(f"{kind} engine (in-process)", base, cand)
    else:
        del model
        from ray import serve

        from kaito_runtime.serving import run_local
        from kaito_runtime.serving.config import ServeConfig

        config = ServeConfig.model_validate(
            {
                "name": "bench",
                "model": source.model_dump(exclude_none=True),
                "engine": {
                    "max_batch_size": args.max_batch_size,
                    "kind": args.engine,
                    "max_cache_len": args.max_cache_len,
                },
                "limits": {"max_ongoing_requests": max(levels) * 2, "max_queued_requests": max(levels) * 2},
                "deployment": {"ray_actor_options": {"num_cpus": 1}},
                "http": {"host": "127.0.0.1", "port": _free_port()},
            }
        )
        url = run_local(config, timeout=600)
        try:
            asyncio.run(http_level(url, config.model_name, 1, 1, 4))  # warm up
            cand = [
                asyncio.run(http_level(url, config.model_name, c, args.per_client, args.max_tokens))
                for c in levels
            ]
        finally:
            serve.shutdown()
            import ray

            ray.shutdown()
        result = report("Ray Serve app (HTTP, streaming)", base, cand)
    result.update({"model": name, "device": device, "max_tokens": args.max_tokens, "prompt_tokens": len(ids)})
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
