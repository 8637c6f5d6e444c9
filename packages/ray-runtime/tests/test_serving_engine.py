"""The batching engine without HTTP or Ray: batched output equals one-at-a-time `generate`, rows join
and leave mid-flight, stop strings, cancellation, per-row adapters, and the sampling/text helpers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from kaito_runtime.modeling import TINY_RANDOM_ID, ModelSource, load_model, load_tokenizer
from kaito_runtime.serving.detokenize import TextTracker
from kaito_runtime.serving.engine import (
    BatchingEngine,
    EngineMetrics,
    EngineOverloaded,
    GenerationRequest,
)
from kaito_runtime.serving.sampling import SamplingParams, select_next_tokens
from kaito_runtime.serving.static_engine import StaticSlotEngine

TINY = ModelSource(id=TINY_RANDOM_ID)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = load_tokenizer(TINY)
    model = load_model(TINY)
    yield model, tokenizer
    mp.undo()


class Recorder(EngineMetrics):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def batch(self, size: int) -> None:
        self.batches.append(size)


def reference(model, tokenizer, prompt: str, n: int) -> str:
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


PROMPTS = [
    "hello",
    "The capital of France is",
    "0 1 2 3 4 5 6 7 8 9 the quick brown fox jumps over",
    "Ray runs distributed Python.",
]


@pytest.mark.parametrize("engine_class", [BatchingEngine, StaticSlotEngine])
def test_batched_rows_joining_mid_flight_match_sequential_generate(tiny, engine_class) -> None:
    """Rows join a running batch and leave it at different steps (the static engine then moves rows
    between slots); every row still gets exactly what `generate` alone would have produced."""
    model, tokenizer = tiny
    expected = [reference(model, tokenizer, p, 12 + 3 * i) for i, p in enumerate(PROMPTS)]
    metrics = Recorder()
    engine = engine_class(model, tokenizer, max_batch_size=8, metrics=metrics).start()
    try:
        handles = []
        for i, prompt in enumerate(PROMPTS):
            params = SamplingParams(max_new_tokens=12 + 3 * i, ignore_eos=True)
            handles.append(engine.submit(GenerationRequest(tokenizer(prompt)["input_ids"], params)))
            time.sleep(0.02)  # later rows join a batch that is already decoding
        results = [h.result_sync() for h in handles]
    finally:
        engine.stop()
    assert [r.text for r in results] == expected
    assert [r.completion_tokens for r in results] == [12, 15, 18, 21]
    assert all(r.finish_reason == "length" for r in results)
    assert max(metrics.batches) > 1


def test_stop_string_truncates_and_finishes(tiny) -> None:
    model, tokenizer = tiny
    full = reference(model, tokenizer, "The capital of France is", 12)
    stop = full[4:7]
    assert stop.strip(), full
    engine = BatchingEngine(model, tokenizer).start()
    try:
        ids = tokenizer("The capital of France is")["input_ids"]
        handle = engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=12, stop=(stop,))))
        events = list(handle)
    finally:
        engine.stop()
    text = "".join(e.delta for e in events)
    assert text == full[: full.find(stop)]
    assert events[-1].finish_reason == "stop"


def test_cancel_frees_the_slot_and_overload_is_reported(tiny) -> None:
    model, tokenizer = tiny
    engine = BatchingEngine(model, tokenizer, max_batch_size=1, max_waiting=1).start()
    try:
        ids = tokenizer("hello")["input_ids"]
        long = SamplingParams(max_new_tokens=100_000, ignore_eos=True)
        running = engine.submit(GenerationRequest(ids, long))
        deadline = time.monotonic() + 30
        while engine.running == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=3)))
        with pytest.raises(EngineOverloaded):
            engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=3)))
        running.cancel()
        assert list(running)[-1].finish_reason == "cancelled"
        assert waiting.result_sync().completion_tokens == 3
    finally:
        engine.stop()


def _lora_adapter(model, out: Path, seed: int) -> Path:
    """A LoRA on the attention projections with large random B: it changes what the model says."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    peft_model.save_pretrained(out)
    peft_model.unload()  # give the base model back untouched
    return out


def test_static_engine_context_is_its_cache_length(tiny) -> None:
    model, tokenizer = tiny
    engine = StaticSlotEngine(model, tokenizer, max_batch_size=2, max_cache_len=64).start()
    try:
        assert engine.context_length == 64
        ids = tokenizer("hello")["input_ids"]
        result = engine.generate(GenerationRequest(ids, SamplingParams(max_new_tokens=1000, ignore_eos=True)))
        assert result.finish_reason == "length" and len(ids) + result.completion_tokens == 64
    finally:
        engine.stop()


@pytest.mark.parametrize("engine_class", [BatchingEngine, StaticSlotEngine])
def test_rows_with_different_adapters_share_a_batch(tiny, tmp_path: Path, engine_class) -> None:
    from peft import PeftModel

    model, tokenizer = tiny
    base_text = reference(model, tokenizer, "hello", 10)
    adapter_dir = _lora_adapter(load_model(TINY), tmp_path / "a", seed=1)
    peft_model = PeftModel.from_pretrained(load_model(TINY), str(adapter_dir), adapter_name="a")
    metrics = Recorder()
    engine = engine_class(peft_model, tokenizer, adapters=["a"], metrics=metrics).start()
    try:
        ids = tokenizer("hello")["input_ids"]
        params = SamplingParams(max_new_tokens=10, ignore_eos=True)
        go = threading.Barrier(2)
        results: dict[str, str] = {}

        def run(adapter: str | None) -> None:
            go.wait()
            results[adapter or "base"] = engine.generate(GenerationRequest(ids, params, adapter)).text

        threads = [threading.Thread(target=run, args=(a,)) for a in (None, "a")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with pytest.raises(ValueError, match="unknown adapter"):
            engine.submit(GenerationRequest(ids, params, "nope"))
    finally:
        engine.stop()
    assert results["base"] == base_text
    assert results["a"] != base_text
    assert max(metrics.batches) == 2


def test_select_next_tokens_per_row() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.9], [3.0, 0.0, 2.9, 0.0], [0.0, 0.0, 0.0, 9.0]])
    params = [
        SamplingParams(),  # greedy
        SamplingParams(do_sample=True, top_k=1),  # sampling restricted to the best token
        SamplingParams(do_sample=True, temperature=0.7, top_p=0.01),  # nucleus of one token
    ]
    for _ in range(20):
        assert select_next_tokens(logits, params).tolist() == [1, 0, 3]
    # repetition penalty pushes a seen token below the next one
    penalised = select_next_tokens(logits[:1], [SamplingParams(repetition_penalty=2.0)], [torch.tensor([1])])
    assert penalised.tolist() == [3]
    # full sampling covers more than one token
    sample = [SamplingParams(do_sample=True)]
    draws = {select_next_tokens(torch.zeros(1, 4), sample).item() for _ in range(50)}
    assert len(draws) > 1


class _CharTokenizer:
    """Ids are code points; a code point above 0xFFFF is sent as two halves (like a split UTF-8 char)."""

    def decode(self, ids, **_):
        out, i = "", 0
        while i < len(ids):
            if ids[i] < 0:
                if i + 1 < len(ids):
                    out += chr(-ids[i] * 0x1000 + ids[i + 1])
                    i += 2
                    continue
                out += "\ufffd"
            else:
                out += chr(ids[i])
            i += 1
        return out


def test_text_tracker_holds_partial_characters_and_stop_prefixes() -> None:
    tracker = TextTracker(_CharTokenizer(), stop=("END",))
    emitted = [tracker.add(ord(c)) for c in "ab"]
    emitted.append(tracker.add(-(0x1F600 // 0x1000)))  # first half of an emoji: nothing yet
    emitted.append(tracker.add(0x1F600 % 0x1000))
    emitted += [tracker.add(ord(c)) for c in "xEN"]
    assert emitted[2] == ""  # half a character is held back
    assert "".join(emitted) == "ab\U0001f600x"  # "EN" is held: it may become "END"
    assert tracker.add(ord("D")) == ""
    assert tracker.stopped and tracker.text == "ab\U0001f600x"
    no_stop = TextTracker(_CharTokenizer())
    assert [no_stop.add(ord(c)) for c in "hi"] == ["h", "i"]
    assert no_stop.finish() == ""


class _Exploding(torch.nn.Module):
    """Wraps a model; any forward pass whose batch holds token `bomb` raises (like a CUDA OOM would)."""

    def __init__(self, model, bomb: int) -> None:
        super().__init__()
        self.inner, self.bomb, self.config = model, bomb, model.config
        self.generation_config = model.generation_config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, cache=None, **kwargs):
        if (input_ids == self.bomb).any():
            raise RuntimeError("boom")
        return self.inner(input_ids=input_ids, cache=cache, **kwargs)


def test_a_failing_request_fails_alone(tiny) -> None:
    model, tokenizer = tiny
    ids = tokenizer("hello")["input_ids"]
    bomb = tokenizer("fox")["input_ids"][-1]
    engine = BatchingEngine(_Exploding(model, bomb), tokenizer).start()
    try:
        params = SamplingParams(max_new_tokens=4, ignore_eos=True)
        bad = engine.submit(GenerationRequest([*ids, bomb], params))
        events = list(bad)
        assert events[-1].finish_reason == "error" and "boom" in (events[-1].error or "")
        assert engine.alive
        assert engine.generate(GenerationRequest(ids, params)).completion_tokens == 4
    finally:
        engine.stop()


def test_an_unexpected_error_in_a_step_fails_that_batch_not_the_engine(tiny, monkeypatch) -> None:
    from kaito_runtime.serving import engine as engine_module

    model, tokenizer = tiny
    real = engine_module.select_next_tokens
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("sampling exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "select_next_tokens", flaky)
    engine = BatchingEngine(model, tokenizer).start()
    try:
        ids = tokenizer("hello")["input_ids"]
        params = SamplingParams(max_new_tokens=3, ignore_eos=True)
        events = list(engine.submit(GenerationRequest(ids, params)))
        assert events[-1].finish_reason == "error" and "sampling exploded" in (events[-1].error or "")
        assert engine.generate(GenerationRequest(ids, params)).completion_tokens == 3
    finally:
        engine.stop()
