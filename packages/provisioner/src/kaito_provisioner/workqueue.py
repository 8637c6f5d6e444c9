"""A keyed work queue: one reconcile per key at a time, coalesced triggers, delayed requeues.

Like controller-runtime's: an event for a key that is being reconciled marks it dirty and it runs again
right after; ``add(key, after=s)`` keeps only the earliest pending timer for a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)
Handler = Callable[[Hashable], Awaitable[float | None]]


class WorkQueue:
    def __init__(self, handler: Handler, *, error_backoff: float = 5.0) -> None:
        self.handler = handler
        self.error_backoff = error_backoff
        self._running: dict[Hashable, asyncio.Task[None]] = {}
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._closed = False

    def add(self, key: Hashable, after: float = 0.0) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if after > 0:
            due = loop.time() + after
            pending = self._timers.get(key)
            if pending is not None and pending[0] <= due:
                return
            if pending is not None:
                pending[1].cancel()
            self._timers[key] = (due, loop.call_at(due, self._fire, key))
            return
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = loop.create_task(self._work(key), name=f"reconcile {key}")

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _work(self, key: Hashable) -> None:
        try:
            while True:
                self._dirty.discard(key)
                try:
                    requeue = await self.handler(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reconcile of %s failed; retrying in %.0fs", key, self.error_backoff)
                    requeue = self.error_backoff
                if requeue is not None and requeue >= 0:
                    self.add(key, after=max(requeue, 0.01))
                if key not in self._dirty:
                    return
        finally:
            self._running.pop(key, None)

    async def close(self) -> None:
        self._closed = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
