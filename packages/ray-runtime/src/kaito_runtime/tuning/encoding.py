"""Turning examples into token ids and labels: chat template, loss masking, truncation, packing,
and batching. Labels are -100 wherever the model should not learn (prompts, padding)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from kaito_runtime.tuning.schema import Example, Message

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None  # set for packed rows (restarts at 0 per example)

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return str(text)


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant turns (each span
    includes the turn's end-of-turn marker, so the model learns to stop)."""
    full = _render(tokenizer, messages, False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True) if i else ""
        through = _render(tokenizer, messages[: i + 1], False)
        if full.startswith(through) and through.startswith(before) and len(through) > len(before):
            spans.append((len(before), len(through)))
        else:  # a template that rewrites earlier turns: find the content itself
            start = full.rfind(message["content"])
            if start >= 0:
                spans.append((start, start + len(message["content"])))
    return full, spans


def encode_example(
    tokenizer: PreTrainedTokenizerBase, example: Example, max_seq_length: int, train_on_inputs: bool = False
) -> Encoded:
    """Token ids and labels for one example; raises ValueError when nothing is left to learn."""
    if example.text is not None:
        tokens: list[int] = tokenizer(example.text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and (not tokens or tokens[-1] != tokenizer.eos_token_id):
            tokens = [*tokens, tokenizer.eos_token_id]
        tokens = tokens[:max_seq_length]
        return Encoded(tokens, list(tokens))
    assert example.messages is not None
    text, spans = assistant_spans(tokenizer, example.messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    starts = [s for s, _ in spans]
    for t, (begin, end) in enumerate(enc["offset_mapping"]):
        if train_on_inputs:
            labels[t] = ids[t]
            continue
        k = bisect.bisect_right(starts, begin) - 1
        if k >= 0 and begin < spans[k][1] and end > begin:
            labels[t] = ids[t]
    ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    if all(x == IGNORE for x in labels):
        raise ValueError(
            f"no assistant tokens within max_seq_length={max_seq_length} (the prompt is too long)"
        )
    return Encoded(ids, labels)


def pack(examples: list[Encoded], max_seq_length: int) -> list[Encoded]:
    """Best-fit-decreasing packing of whole examples into rows of at most `max_seq_length` tokens.
    `position_ids` restart per example: the model's attention then stays within each example
    (transformers builds a block-diagonal mask from them), and the first token of each example
    is not a label (it would be predicted from the previous example)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), sorted
    for i in order:
        size = len(examples[i].input_ids)
        k = bisect.bisect_left(free, (size, -1))
        if k < len(free):
            remaining, b = free.pop(k)
        else:
            remaining, b = max_seq_length, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (remaining - size, b))
    rows = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            e = examples[i]
            ids += e.input_ids
            labels += [IGNORE, *e.labels[1:]]
            positions += list(range(len(e.input_ids)))
        rows.append(Encoded(ids, labels, positions))
    return rows


def collate(
    rows: list[Encoded], pad_id: int, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """A right-padded batch. Packed rows get `position_ids` (padding is its own segment) and no
    attention mask, so transformers keeps examples apart; plain rows get an attention mask."""
    import torch

    length = max(len(r.input_ids) for r in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    packed = rows[0].position_ids is not None
    batch: dict[str, Any] = {}
    if packed:
        positions = torch.zeros((len(rows), length), dtype=torch.long)
    else:
        mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        if packed:
            assert row.position_ids is not None
            positions[i, :n] = torch.tensor(row.position_ids)
            positions[i, n:] = torch.arange(length - n)
        else:
            mask[i, :n] = 1
    batch["input_ids"], batch["labels"] = ids, labels
    if packed:
        batch["position_ids"] = positions
    else:
        batch["attention_mask"] = mask
    return batch
