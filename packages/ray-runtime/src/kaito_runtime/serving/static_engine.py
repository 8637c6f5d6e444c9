"""Continuous batching over a static, slot-based KV cache, with CUDA-graph decode steps on GPUs.

`BatchingEngine` grows a `DynamicCache` and concatenates it every step: fine on CPU, but on a GPU a
decode step of a 3.8B model is then hundreds of small kernel launches (and Python) for ~2 ms of
memory traffic. This engine keeps one preallocated cache per layer, `[slots, kv_heads, max_len,
head_dim]`; each running request owns a slot and its own position, so rows never need padding or
merging:

- prefill runs eagerly (a `DynamicCache`, as in `BatchingEngine`), then each new row's keys and
  values are copied into a free slot;
- a decode step writes each row's new key/value at that row's own position and attends over the
  first `L` columns with a mask built from the positions; its shapes depend only on the bucket
  `(B, L)` (batch and length rounded up to powers of two), so on CUDA each bucket is captured once
  as a CUDA graph and replayed (one launch per step instead of hundreds);
- finished rows free their slot; the last running row moves into the hole, so running rows always
  fill slots `0..n-1`.

Adapters (peft's per-row `adapter_names`) run the same static path eagerly, without graphs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from kaito_runtime.serving.engine import BatchingEngine, _Row

log = logging.getLogger(__name__)


def _bucket(n: int, limit: int, smallest: int = 1) -> int:
    size = smallest
    while size < n:
        size *= 2
    return min(size, limit)


CACHE_MEMORY_FRACTION = 0.7  # of the GPU memory free after loading the model


def fit_slots(wanted: int, slot_bytes: int, device: torch.device) -> int:
    """How many cache slots fit: `wanted`, or fewer when the GPU's free memory cannot hold them."""
    if device.type != "cuda":
        return wanted
    free, _ = torch.cuda.mem_get_info(device)
    fits = max(1, int(free * CACHE_MEMORY_FRACTION // slot_bytes))
    if fits < wanted:
        log.warning(
            "KV cache: %d slots of %.0f MiB do not fit in %.0f MiB free; using %d "
            "(lower engine.max_cache_len "
            "for more concurrent requests)",
            wanted,
            slot_bytes / 2**20,
            free / 2**20,
            fits,
        )
    return min(wanted, fits)


class SlotKVCache:
    """The model-facing cache object: `update()` writes one token per row at that row's position.

    Deliberately not a transformers `Cache`: with a 4D attention mask and explicit position ids,
    the models only call `update()`, and mask helpers leave non-`Cache` objects alone.
    """

    is_compileable = False

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor) -> None:
        self.kv = layers
        self.positions = positions  # [slots] position written by the current decode step
        self.batch = 1
        self.length = 1
        self._rows = torch.arange(positions.shape[0], device=positions.device)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ):
        keys, values = self.kv[layer_idx]
        b = key_states.shape[0]
        rows, pos = self._rows[:b], self.positions[:b]
        keys[rows, :, pos, :] = key_states[:, :, 0, :]
        values[rows, :, pos, :] = value_states[:, :, 0, :]
        return keys[:b, :, : self.length], values[:b, :, : self.length]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def __len__(self) -> int:
        return len(self.kv)


class StaticSlotEngine(BatchingEngine):
    """`BatchingEngine` with a static per-slot KV cache and (on CUDA, without adapters) CUDA graphs."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_cache_len: int = 2048,
        cuda_graphs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.max_cache_len = min(max_cache_len, self.context_length)
        self.context_length = self.max_cache_len
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        slot_bytes = 2 * config.num_hidden_layers * kv_heads * self.max_cache_len * head_dim * dtype.itemsize
        slots = fit_slots(self.max_batch_size, slot_bytes, self.device)
        self.max_batch_size = slots
        shape = (slots, kv_heads, self.max_cache_len, head_dim)
        layers = [
            (
                torch.zeros(shape, dtype=dtype, device=self.device),
                torch.zeros(shape, dtype=dtype, device=self.device),
            )
            for _ in range(config.num_hidden_layers)
        ]
        self._positions = torch.zeros(slots, dtype=torch.long, device=self.device)
        self._positions_host = [0] * slots
        self._ids = torch.zeros((slots, 1), dtype=torch.long, device=self.device)
        self._columns = torch.arange(self.max_cache_len, device=self.device)
        self._slot_cache = SlotKVCache(layers, self._positions)
        self._mask_value = torch.finfo(dtype).min
        self._dtype = dtype
        self.use_graphs = cuda_graphs and self.device.type == "cuda" and not self.adapters
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}
        self._pool: Any = None

    # ---- prefill: copy each new row's KV into its slot
    def _merge(self, rows: list[_Row], cache: Any, mask: torch.Tensor) -> None:
        width = mask.shape[1]
        lengths = mask.sum(dim=1).tolist()
        for i, row in enumerate(rows):
            slot = len(self._rows)
            n = int(lengths[i])
            for layer, (keys, values) in enumerate(self._slot_cache.kv):
                k, v = _layer_kv(cache, layer)
                keys[slot, :, :n] = k[i, :, width - n :]
                values[slot, :, :n] = v[i, :, width - n :]
            self._positions_host[slot] = n
            self._rows.append(row)
        self._sync_positions()

    def _sync_positions(self) -> None:
        self._positions.copy_(torch.tensor(self._positions_host, device="cpu"), non_blocking=False)

    # ---- decode
    def _step(self, batch: int, length: int, adapters: list[str]) -> torch.Tensor:
        cache = self._slot_cache
        cache.batch, cache.length = batch, length
        visible = self._columns[:length].unsqueeze(0) <= self._positions[:batch].unsqueeze(1)
        mask = torch.zeros(visible.shape, dtype=self._dtype, device=self.device)
        mask = mask.masked_fill(~visible, self._mask_value)[:, None, None, :]
        kwargs: dict[str, Any] = {
            "input_ids": self._ids[:batch],
            "attention_mask": mask,
            "position_ids": self._positions[:batch].unsqueeze(1),
            self._cache_kwarg: cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        if self.adapters:
            kwargs["adapter_names"] = adapters
        return self.model(**kwargs).logits

    def _graph(self, batch: int, length: int) -> tuple[Any, torch.Tensor]:
        key = (batch, length)
        if key not in self._graphs:
            # Warm-up and capture recompute the current step with the current inputs: the cache writes
            # they make are exactly the ones the replay makes, so the running rows are unaffected.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step(batch, length, [])
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            # thread_local: other threads of the process (the HTTP side) may touch CUDA meanwhile
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                logits = self._step(batch, length, [])
            self._graphs[key] = (graph, logits)
            log.info("captured a CUDA graph for decode bucket batch=%d length=%d", batch, length)
        return self._graphs[key]

    def _decode_step(self) -> None:
        n = len(self._rows)
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, n)
        self.metrics.batch(n)
        batch = _bucket(n, self.max_batch_size)
        length = _bucket(max(self._positions_host[:n]) + 1, self.max_cache_len, smallest=64)
        self._ids[:n, 0].copy_(torch.tensor([r.last_token for r in self._rows]))
        adapters = [r.adapter for r in self._rows] + ["__base__"] * (batch - n)
        try:
            if self.use_graphs:
                try:
                    graph, logits = self._graph(batch, length)
                    graph.replay()
                except RuntimeError:
                    log.exception("CUDA graph capture failed; decoding eagerly from now on")
                    self.use_graphs = False
                    self._graphs.clear()
                    logits = self._step(batch, length, adapters)
            else:
                logits = self._step(batch, length, adapters)
        except Exception as exc:
            log.exception("decode step failed for a batch of %d", n)
            for row in self._rows:
                self._finish(row, "error", f"decode failed: {exc}")
            self._rows = []
            return
        self._accept_tokens(self._rows, logits[:n, -1, :])
        for slot in range(n):
            self._positions_host[slot] += 1
        self._compact()
        self._sync_positions()

    def _compact(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if r.finish_reason is None]
        if len(keep) == len(self._rows):
            return
        for new, old in enumerate(keep):
            if new != old:
                used = self._positions_host[old]
                for keys, values in self._slot_cache.kv:
                    keys[new, :, :used] = keys[old, :, :used]
                    values[new, :, :used] = values[old, :, :used]
                self._positions_host[new] = used
        self._rows = [self._rows[i] for i in keep]
        self._sync_positions()


def _layer_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache[layer][0], cache[layer][1]
