"""Garbage collection by ownerReferences, finalizer-driven deletion steps and namespace draining, as a
mixin of the Cluster (the real server's garbage collector and namespace controller, done synchronously
at each removal)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib

from . import jsoncopy as copy
from .errors import ApiError
from .resources import ResourceInfo
from .store import Event, Obj, Store

NS_KEY = ("", "namespaces")


class GarbageCollection:
    store: Store
    types: dict[tuple[str, str], ResourceInfo]
    _uids: dict[str, tuple[tuple[str, str], str, str]]

    def delete(
        self, info: ResourceInfo, version: str, ns: str, name: str, options: Obj | None, dry_run: bool = False
    ) -> Obj:
        raise NotImplementedError

    def _remove(self, info: ResourceInfo, obj: Obj) -> Obj:
        raise NotImplementedError

    def _index_uid(self, ev: Event) -> None:
        md = ev.obj["metadata"]
        if ev.type == "DELETED":
            self._uids.pop(md.get("uid", ""), None)
        else:
            self._uids[md["uid"]] = (ev.type_key, md.get("namespace") or "", md["name"])

    def uid_exists(self, uid: str) -> bool:
        return uid in self._uids

    def _after_removal(self, gone: Obj) -> None:
        uid = gone["metadata"]["uid"]
        for tk, dep in self._dependents(uid):
            refs = dep["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if self.uid_exists(r.get("uid", ""))]
            if alive:
                dep["metadata"]["ownerReferences"] = alive
                self.store.put(tk, dep, "MODIFIED")
            else:
                self._delete_quietly(self.types[tk], dep)
        for ref in gone["metadata"].get("ownerReferences") or []:
            loc = self._uids.get(ref.get("uid", ""))
            if loc is None:
                continue
            tk, ns, name = loc
            owner = self.store.peek(tk, ns, name)
            if owner and "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                self._maybe_finish_foreground(self.types[tk], owner["metadata"]["uid"])

    def _dependents(self, uid: str) -> builtins.list[tuple[tuple[str, str], Obj]]:
        return [
            (tk, copy.deepcopy(o))
            for tk, o in self.store.iter_all()
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def _delete_quietly(self, info: ResourceInfo, obj: Obj) -> None:
        with contextlib.suppress(ApiError):
            self.delete(
                info,
                info.storage_version,
                obj["metadata"].get("namespace") or "",
                obj["metadata"]["name"],
                None,
            )

    def _orphan_dependents(self, uid: str) -> None:
        for tk, dep in self._dependents(uid):
            dep["metadata"]["ownerReferences"] = [
                r for r in dep["metadata"]["ownerReferences"] if r.get("uid") != uid
            ]
            if not dep["metadata"]["ownerReferences"]:
                del dep["metadata"]["ownerReferences"]
            self.store.put(tk, dep, "MODIFIED")

    def _drop_finalizer(self, info: ResourceInfo, obj: Obj, finalizer: str) -> Obj:
        obj = copy.deepcopy(obj)
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if not obj["metadata"]["finalizers"]:
            return self._remove(info, obj)
        return self.store.put(info.key, obj, "MODIFIED")

    def _maybe_finish_foreground(self, info: ResourceInfo, uid: str) -> Obj | None:
        if self._dependents(uid):
            return None
        loc = self._uids.get(uid)
        if loc is None:
            return None
        owner = self.store.get(*loc)
        if owner is None:
            return None
        return self._drop_finalizer(info, owner, "foregroundDeletion")

    def _drain_namespace(self, ns: str) -> None:
        for tk, o in list(self.store.iter_all()):
            if tk in self.types and self.types[tk].namespaced and o["metadata"].get("namespace") == ns:
                self._delete_quietly(self.types[tk], o)
        self._maybe_finish_namespace(ns)

    def _maybe_finish_namespace(self, ns: str) -> None:
        nso = self.store.peek(NS_KEY, "", ns)
        if nso is None or not nso["metadata"].get("deletionTimestamp") or nso["metadata"].get("finalizers"):
            return
        if any(o["metadata"].get("namespace") == ns for tk, o in self.store.iter_all() if tk != NS_KEY):
            return
        self._remove(self.types[NS_KEY], copy.deepcopy(nso))

    def _schedule_orphan_check(self, info: ResourceInfo, obj: Obj) -> None:
        """Like the garbage collector: a dependent whose owners all do not exist is deleted."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        uid = obj["metadata"]["uid"]

        def check() -> None:
            loc = self._uids.get(uid)
            if loc is None:
                return
            cur = self.store.get(*loc)
            if cur is None:
                return
            refs = cur["metadata"].get("ownerReferences") or []
            if refs and not any(self.uid_exists(r.get("uid", "")) for r in refs):
                self._delete_quietly(self.types[loc[0]], cur)

        loop.call_later(0.05, check)
