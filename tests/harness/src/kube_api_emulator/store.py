"""In-memory object store: one cluster-wide resourceVersion counter, an event history for watches."""

from __future__ import annotations

import asyncio
import builtins
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import jsoncopy as copy

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)


@dataclass
class Event:
    rv: int
    type_key: TypeKey
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    type_key: TypeKey
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class TooOld(Exception):
    """The requested resourceVersion is older than the retained history (410 Gone)."""


class Store:
    def __init__(self, history_limit: int = 10000) -> None:
        self._rv = 1
        self._objects: dict[TypeKey, dict[ObjKey, Obj]] = {}
        self._history: deque[Event] = deque(maxlen=history_limit)
        self._watchers: set[Watcher] = set()
        self.listeners: builtins.list[Callable[[Event], None]] = []

    @property
    def resource_version(self) -> int:
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    @staticmethod
    def obj_key(obj: Obj) -> ObjKey:
        md = obj["metadata"]
        return (md.get("namespace") or "", md["name"])

    def get(self, tk: TypeKey, ns: str, name: str) -> Obj | None:
        obj = self._objects.get(tk, {}).get((ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, tk: TypeKey, ns: str, name: str) -> Obj | None:
        """Like get, without a copy: callers must not mutate."""
        return self._objects.get(tk, {}).get((ns, name))

    def list(self, tk: TypeKey, ns: str | None = None) -> builtins.list[Obj]:
        objs = self._objects.get(tk, {})
        keys = sorted(k for k in objs if ns is None or k[0] == ns)
        return [copy.deepcopy(objs[k]) for k in keys]

    def iter_all(self) -> builtins.list[tuple[TypeKey, Obj]]:
        return [(tk, o) for tk, objs in self._objects.items() for o in objs.values()]

    def put(self, tk: TypeKey, obj: Obj, event_type: str) -> Obj:
        """Store a new or changed object, give it the next resourceVersion, emit an event."""
        obj = copy.deepcopy(obj)
        key = self.obj_key(obj)
        old = self._objects.get(tk, {}).get(key)
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._objects.setdefault(tk, {})[key] = obj
        # Stored objects are replaced, never mutated, so events may share them.
        self._emit(Event(rv, tk, event_type, obj, old))
        return copy.deepcopy(obj)

    def remove(self, tk: TypeKey, obj: Obj) -> Obj:
        key = self.obj_key(obj)
        old = self._objects.get(tk, {}).pop(key)
        rv = self._next_rv()
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._emit(Event(rv, tk, "DELETED", gone, old))
        return copy.deepcopy(gone)

    def drop_type(self, tk: TypeKey) -> builtins.list[Obj]:
        return [self.remove(tk, o) for o in list(self._objects.get(tk, {}).values())]

    def _emit(self, ev: Event) -> None:
        self._history.append(ev)
        for w in list(self._watchers):
            if w.type_key == ev.type_key:
                w.queue.put_nowait(ev)
        for listener in list(self.listeners):
            listener(ev)

    def events_since(self, tk: TypeKey, rv: int) -> builtins.list[Event]:
        """Events for a type after `rv`; raises TooOld if history no longer reaches back to it."""
        if rv < self._rv and self._history:
            oldest = self._history[0].rv
            if rv < oldest - 1:
                raise TooOld(rv)
        return [e for e in self._history if e.rv > rv and e.type_key == tk]

    def add_watcher(self, tk: TypeKey) -> Watcher:
        w = Watcher(tk)
        self._watchers.add(w)
        return w

    def remove_watcher(self, w: Watcher) -> None:
        self._watchers.discard(w)

    def close_watchers(self, tk: TypeKey | None = None) -> None:
        """End watches (all, or those of one type: its CRD was deleted)."""
        for w in list(self._watchers):
            if tk is None or w.type_key == tk:
                w.queue.put_nowait(None)
