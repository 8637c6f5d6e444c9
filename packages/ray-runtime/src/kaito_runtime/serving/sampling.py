"""Per-row next-token selection for a batch whose rows carry different sampling settings.

One decode step produces logits `[batch, vocab]`; every row may belong to a request with its own
temperature, top-k, top-p and repetition penalty. Everything is vectorised over the batch except
the repetition penalty, which needs each row's own token history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks of the decoder (already validated and clamped by the HTTP layer)."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0.0


def apply_repetition_penalty(
    logits: torch.Tensor, histories: list[torch.Tensor], penalties: list[float]
) -> None:
    """In place: HF's rule (divide positive, multiply negative logits of tokens already seen)."""
    for row, (history, penalty) in enumerate(zip(histories, penalties, strict=True)):
        if penalty == 1.0 or history.numel() == 0:
            continue
        seen = logits[row, history]
        logits[row, history] = torch.where(seen > 0, seen / penalty, seen * penalty)


def select_next_tokens(
    logits: torch.Tensor,
    params: list[SamplingParams],
    histories: list[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row: greedy rows take the argmax, sampling rows draw from their own distribution."""
    logits = logits.float()
    if histories is not None and any(p.repetition_penalty != 1.0 for p in params):
        apply_repetition_penalty(logits, histories, [p.repetition_penalty for p in params])
    chosen = logits.argmax(dim=-1)
    sample_rows = [i for i, p in enumerate(params) if not p.greedy]
    if not sample_rows:
        return chosen
    rows = torch.tensor(sample_rows, device=logits.device)
    sub = logits.index_select(0, rows)
    temps = torch.tensor([params[i].temperature for i in sample_rows], device=logits.device)
    sub = sub / temps.unsqueeze(1)
    sorted_logits, sorted_idx = sub.sort(dim=-1, descending=True)
    vocab = sub.shape[-1]
    ranks = torch.arange(vocab, device=logits.device).unsqueeze(0)
    top_k = torch.tensor(
        [params[i].top_k if params[i].top_k > 0 else vocab for i in sample_rows], device=logits.device
    )
    remove = ranks >= top_k.unsqueeze(1)
    probs = sorted_logits.softmax(dim=-1)
    top_p = torch.tensor([params[i].top_p for i in sample_rows], device=logits.device)
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    remove |= (probs.cumsum(dim=-1) - probs) >= top_p.unsqueeze(1)
    remove[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    draws = torch.multinomial(sorted_logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
    chosen[rows] = sorted_idx.gather(1, draws.unsqueeze(1)).squeeze(1)
    return chosen
