"""A continuous-batching generation engine over any Hugging Face causal LM, with per-row adapters.

One background thread owns the model and runs the decode loop:

- new requests wait in a bounded queue; whenever the running batch has free slots, waiting
  requests are prefilled together (left-padded) and their KV cache is merged into the running
  batch's cache, so requests join between decode steps instead of waiting for the batch to end;
- every decode step runs one forward pass for all running rows (one token each), then picks each
  row's next token with its own sampling settings (`sampling.select_next_tokens`);
- finished or cancelled rows leave the batch at once (their KV rows are dropped, and columns that
  only held padding are trimmed);
- with a peft model, each row names its adapter (`adapter_names`), so requests for different
  adapters and for the base model share forward passes.

Results go back to the caller through a `RequestHandle`: an async (or blocking) iterator of
`StreamEvent`s, fed from the engine thread. Nothing here knows about HTTP or Ray.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from kaito_runtime.serving.detokenize import TextTracker
from kaito_runtime.serving.sampling import SamplingParams, select_next_tokens

log = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


class EngineOverloaded(RuntimeError):
    """The waiting queue is full: the caller should retry later (HTTP 503 + Retry-After)."""


class EngineUnavailable(RuntimeError):
    """The engine is stopped or failed."""


class GenerationFailed(RuntimeError):
    """The forward pass failed for this request (the engine itself keeps running)."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    adapter: str | None = None  # None: the base model


@dataclass(frozen=True)
class StreamEvent:
    """One step of a request's output: new text, and on the last event the finish reason."""

    delta: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    error: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None


class EngineMetrics:
    """Hooks the engine calls; the default does nothing (the service plugs in Prometheus)."""

    def batch(self, size: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def tokens(self, count: int) -> None: ...

    def queue_depth(self, waiting: int, running: int) -> None: ...

    def finished(self, reason: str) -> None: ...


class RequestHandle:
    """The caller's side of one request. Iterate it (async or blocking) to receive `StreamEvent`s."""

    _ids = itertools.count()

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None) -> None:
        self.id = next(self._ids)
        self.request = request
        self.created = time.perf_counter()
        self.first_token_at: float | None = None
        self._loop = loop
        self._async_queue: asyncio.Queue[StreamEvent] | None = asyncio.Queue() if loop else None
        self._sync_queue: queue.SimpleQueue[StreamEvent] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self.done = False

    # -- engine side --
    def _push(self, event: StreamEvent) -> None:
        if self._loop is not None and self._async_queue is not None:
            try:
                self._loop.call_soon_threadsafe(self._async_queue.put_nowait, event)
            except RuntimeError:  # the caller's loop is closed: nobody listens any more
                self._cancelled.set()
        else:
            self._sync_queue.put(event)

    # -- caller side --
    def cancel(self) -> None:
        """Stop generating for this request (e.g. the client went away)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        """Events in groups: everything that arrived while the caller was busy comes at once
        (streaming sends one network chunk per group, not one per token)."""
        assert self._async_queue is not None, "submit() was called without an event loop"
        while True:
            batch = [await self._async_queue.get()]
            while not self._async_queue.empty():
                batch.append(self._async_queue.get_nowait())
            yield batch
            if batch[-1].finish_reason is not None:
                return

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    def __iter__(self) -> Iterator[StreamEvent]:
        while True:
            event = self._sync_queue.get()
            yield event
            if event.finish_reason is not None:
                return

    def _result(self, events: list[StreamEvent]) -> GenerationResult:
        last = events[-1]
        if last.finish_reason == "error":
            raise GenerationFailed(last.error or "generation failed")
        ttft = None if self.first_token_at is None else self.first_token_at - self.created
        return GenerationResult(
            text="".join(e.delta for e in events),
            finish_reason=last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            time_to_first_token_s=ttft,
        )

    async def result(self) -> GenerationResult:
        return self._result([event async for event in self])

    def result_sync(self) -> GenerationResult:
        return self._result(list(self))


@dataclass
class _Row:
    handle: RequestHandle
    tracker: TextTracker
    max_new_tokens: int
    history: list[int]
    last_token: int = 0
    generated: int = 0
    finish_reason: str | None = None

    @property
    def params(self) -> SamplingParams:
        return self.handle.request.params

    @property
    def adapter(self) -> str:
        return self.handle.request.adapter or BASE_ADAPTER


class BatchingEngine:
    """Continuous batching over a Hugging Face causal LM (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 32,
        max_waiting: int = 64,
        max_prefill_tokens: int = 8192,
        context_length: int | None = None,
        adapters: list[str] | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.max_prefill_tokens = max_prefill_tokens
        self.context_length = context_length or model_context_length(model, tokenizer)
        self.adapters = set(adapters or [])
        self.metrics = metrics or EngineMetrics()
        self.eos_ids = _eos_token_ids(model, tokenizer)
        self.device = _input_device(model)
        self._cache_kwarg = _cache_kwarg(model)
        self._waiting: collections.deque[RequestHandle] = collections.deque()
        self._cond = threading.Condition()
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._thread: threading.Thread | None = None
        self._outbox: list[tuple[RequestHandle, StreamEvent]] = []
        self._stopping = False
        self.steps = 0
        self.max_batch_seen = 0

    # ------------------------------------------------------------------ public API
    def start(self) -> BatchingEngine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kaito-batching-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        for handle in self._drain_waiting():
            handle._push(StreamEvent("", 0, len(handle.request.prompt_ids), "error", "the engine stopped"))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._rows)

    def submit(
        self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None = None
    ) -> RequestHandle:
        """Queue a request. Raises `EngineOverloaded` when the waiting queue is full."""
        if not self.alive:
            raise EngineUnavailable("the generation engine is not running")
        if request.adapter is not None and request.adapter not in self.adapters:
            raise ValueError(f"unknown adapter {request.adapter!r}; loaded: {sorted(self.adapters)}")
        handle = RequestHandle(request, loop)
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise EngineOverloaded(f"{len(self._waiting)} requests already waiting")
            self._waiting.append(handle)
            self.metrics.queue_depth(len(self._waiting), len(self._rows))
            self._cond.notify()
        return handle

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Blocking convenience: submit and wait for the whole result."""
        return self.submit(request).result_sync()

    # ------------------------------------------------------------------ engine thread
    def _drain_waiting(self) -> list[RequestHandle]:
        with self._cond:
            handles = list(self._waiting)
            self._waiting.clear()
        return handles

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._stopping and not self._waiting and not self._rows:
                        self._cond.wait(timeout=1.0)
                    if self._stopping:
                        break
                    admitted = self._take_admissible()
                    self.metrics.queue_depth(len(self._waiting), len(self._rows) + len(admitted))
                try:
                    if admitted:
                        self._prefill(admitted)
                    self._drop_cancelled()
                    if self._rows:
                        self._decode_step()
                except Exception as exc:  # a bug or a bad state: fail this batch, keep the engine
                    log.exception("generation step failed")
                    self._fail_step(f"generation failed: {exc}", admitted)
                self._flush()
        for row in self._rows:
            self._finish(row, "error", "the engine stopped")
        self._rows = []
        self._flush()

    def _fail_step(self, message: str, admitted: list[RequestHandle]) -> None:
        for row in self._rows:
            if row.finish_reason is None:
                self._finish(row, "error", message)
        for handle in admitted:  # admitted but never made it into the batch
            if not handle.done:
                handle.done = True
                self._emit(handle, StreamEvent("", 0, len(handle.request.prompt_ids), "error", message))
        self._rows, self._cache, self._mask = [], None, None

    def _emit(self, handle: RequestHandle, event: StreamEvent) -> None:
        self._outbox.append((handle, event))

    def _flush(self) -> None:
        """Deliver this step's events: one wake-up per caller event loop, not one per token."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestHandle, StreamEvent]]] = {}
        for handle, event in self._outbox:
            if handle._loop is None:
                handle._sync_queue.put(event)
            else:
                by_loop.setdefault(handle._loop, []).append((handle, event))
        self._outbox = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that caller's loop is closed: nobody listens any more
                for handle, _ in items:
                    handle.cancel()

    def _take_admissible(self) -> list[RequestHandle]:
        """Waiting requests that fit in the batch now (FIFO, bounded by free slots and prefill tokens)."""
        admitted: list[RequestHandle] = []
        longest = 0
        while self._waiting and len(self._rows) + len(admitted) < self.max_batch_size:
            handle = self._waiting[0]
            if handle.cancelled:
                self._waiting.popleft()
                continue
            longest_if = max(longest, len(handle.request.prompt_ids))
            if admitted and longest_if * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            longest = longest_if
            admitted.append(self._waiting.popleft())
        return admitted

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: Any, adapters: list[str]) -> Any:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": positions,
            self._cache_kwarg: cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        if self.adapters:
            kwargs["adapter_names"] = adapters
        return self.model(**kwargs)

    def _prefill(self, handles: list[RequestHandle]) -> None:
        from transformers import DynamicCache

        rows = [
            _Row(
                handle=h,
                tracker=TextTracker(self.tokenizer, h.request.params.stop),
                max_new_tokens=max(
                    1, min(h.request.params.max_new_tokens, self.context_length - len(h.request.prompt_ids))
                ),
                history=list(h.request.prompt_ids),
            )
            for h in handles
        ]
        width = max(len(r.history) for r in rows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.history)
            ids[i, width - n :] = torch.tensor(row.history)
            mask[i, width - n :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        try:
            out = self._forward(ids, mask, DynamicCache(), [r.adapter for r in rows])
        except Exception as exc:  # a bad batch fails its own requests, never the engine
            log.exception("prefill failed for %d requests", len(rows))
            for row in rows:
                self._finish(row, "error", f"prefill failed: {exc}")
            return
        now = time.perf_counter()
        for row in rows:
            row.handle.first_token_at = now
            self.metrics.first_token(now - row.handle.created)
        self._accept_tokens(rows, out.logits[:, -1, :])
        keep = [i for i, r in enumerate(rows) if r.finish_reason is None]
        if not keep:
            return
        new_cache = _out_cache(out)
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=mask.device)
            new_cache.batch_select_indices(index)
            mask = mask.index_select(0, index)
        self._merge([rows[i] for i in keep], new_cache, mask)

    def _merge(self, rows: list[_Row], cache: Any, mask: torch.Tensor) -> None:
        """Append prefilled rows to the running batch, left-padding whichever side is shorter."""
        from transformers import DynamicCache

        if self._cache is None or not self._rows:
            self._cache, self._mask, self._rows = cache, mask, rows
            return
        assert self._mask is not None
        old_len, new_len = self._mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        layers = []
        for (ok, ov, *_), (nk, nv, *_) in zip(self._cache, cache, strict=True):
            layers.append(
                (
                    torch.cat([_left_pad(ok, width), _left_pad(nk, width)], dim=0),
                    torch.cat([_left_pad(ov, width), _left_pad(nv, width)], dim=0),
                )
            )
        self._cache = DynamicCache(ddp_cache_data=layers)
        self._mask = torch.cat([_left_pad_mask(self._mask, width), _left_pad_mask(mask, width)], dim=0)
        self._rows = self._rows + rows

    def _decode_step(self) -> None:
        assert self._mask is not None
        batch = len(self._rows)
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, batch)
        self.metrics.batch(batch)
        ids = torch.tensor([[r.last_token] for r in self._rows], device=self.device)
        self._mask = torch.cat([self._mask, self._mask.new_ones((batch, 1))], dim=1)
        try:
            out = self._forward(ids, self._mask, self._cache, [r.adapter for r in self._rows])
        except Exception as exc:
            log.exception("decode step failed for a batch of %d", batch)
            for row in self._rows:
                self._finish(row, "error", f"decode failed: {exc}")
            self._rows, self._cache, self._mask = [], None, None
            return
        self._cache = _out_cache(out)
        self._accept_tokens(self._rows, out.logits[:, -1, :])
        self._compact()

    def _accept_tokens(self, rows: list[_Row], logits: torch.Tensor) -> None:
        histories = None
        if any(r.params.repetition_penalty != 1.0 for r in rows):
            histories = [torch.tensor(r.history, device=logits.device) for r in rows]
        tokens = select_next_tokens(logits, [r.params for r in rows], histories).tolist()
        self.metrics.tokens(len(rows))
        for row, token in zip(rows, tokens, strict=True):
            row.generated += 1
            row.last_token = token
            row.history.append(token)
            if row.handle.cancelled:
                self._finish(row, "cancelled")
                continue
            is_eos = token in self.eos_ids and not row.params.ignore_eos
            delta = "" if is_eos else row.tracker.add(token)
            if is_eos or row.tracker.stopped:
                self._finish(row, "stop", prefix=delta)
            elif row.generated >= row.max_new_tokens:
                self._finish(row, "length", prefix=delta)
            elif delta:
                self._emit(row.handle, StreamEvent(delta, row.generated, len(row.handle.request.prompt_ids)))

    def _finish(self, row: _Row, reason: str, error: str | None = None, prefix: str = "") -> None:
        row.finish_reason = reason
        self.metrics.finished(reason)
        tail = "" if reason in ("error", "cancelled") else row.tracker.finish()
        row.handle.done = True
        self._emit(
            row.handle,
            StreamEvent(prefix + tail, row.generated, len(row.handle.request.prompt_ids), reason, error),
        )

    def _drop_cancelled(self) -> None:
        for row in self._rows:
            if row.finish_reason is None and row.handle.cancelled:
                self._finish(row, "cancelled")
        self._compact()

    def _compact(self) -> None:
        """Drop finished rows from the batch and trim columns that are padding in every remaining row."""
        keep = [i for i, r in enumerate(self._rows) if r.finish_reason is None]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        assert self._mask is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask.index_select(0, index)
        self._rows = [self._rows[i] for i in keep]
        used = self._mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        if first > 0:
            self._mask = self._mask[:, first:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[..., first:, :]
                layer.values = layer.values[..., first:, :]


def _deliver(items: list[tuple[RequestHandle, StreamEvent]]) -> None:
    for handle, event in items:
        assert handle._async_queue is not None
        handle._async_queue.put_nowait(event)


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - tensor.shape[-2]
    if missing <= 0:
        return tensor
    pad = tensor.new_zeros((*tensor.shape[:-2], missing, tensor.shape[-1]))
    return torch.cat([pad, tensor], dim=-2)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)


def _eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _cache_kwarg(model: Any) -> str:
    """transformers >= 5.2x calls the KV cache argument `cache`; earlier versions `past_key_values`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _out_cache(out: Any) -> Any:
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _input_device(model: Any) -> torch.device:
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def model_context_length(model: Any, tokenizer: Any) -> int:
    """The model's context window: its position limit, or the tokenizer's if that is smaller and sane."""
    config: Any = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    length = getattr(text_config, "max_position_embeddings", None) or 2048
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < length:
        length = tok_max
    return int(length)
