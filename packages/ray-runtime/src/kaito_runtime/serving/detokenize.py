"""Incremental detokenisation with stop strings, for streaming one request's output.

Tokens arrive one at a time; text is released as soon as it is stable: a token that ends in the
middle of a multi-byte character is held until the character completes, and the tail that could
still turn into a stop string is held until it cannot.
"""

from __future__ import annotations

from typing import Any


class TextTracker:
    """Turns generated token ids into text deltas and detects stop strings."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""  # all stable text decoded so far
        self._emitted = 0  # how much of `text` was handed out
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Add one token; return the text that became safe to emit (may be empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        self._advance(final=False)
        return self._release(final=False)

    def finish(self) -> str:
        """The generation ended: release everything still held (an unfinished character as U+FFFD,
        as `decode` of the whole output would show it)."""
        if not self.stopped:
            self._advance(final=True)
        return self._release(final=True)

    def _advance(self, *, final: bool) -> None:
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and (final or not full.endswith("\ufffd")):
            self.text += full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)

    def _release(self, *, final: bool) -> str:
        if self._stop:
            start = max(0, self._emitted - self._hold)
            hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                final = True
        end = len(self.text) if final else max(self._emitted, len(self.text) - self._hold)
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta
