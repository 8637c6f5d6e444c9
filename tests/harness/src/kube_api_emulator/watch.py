"""Watch streams: from a resourceVersion (410 when too old), initial events, bookmarks, watch-list."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from . import tables
from .cluster import Cluster
from .errors import ApiError
from .resources import ResourceInfo
from .selectors import parse_field_selector, parse_label_selector
from .store import Event, TooOld

JSON = "application/json"


def truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true")


async def serve_watch(
    request: web.Request,
    c: Cluster,
    info: ResourceInfo,
    version: str,
    ns: str | None,
    params: dict[str, str],
    name: str | None = None,
    *,
    bookmark_interval: float,
    tasks: set[asyncio.Task[Any]],
) -> web.StreamResponse:
    """Stream watch events (JSON lines) for one resource type, like the real server."""
    q = request.query
    match_labels = parse_label_selector(q.get("labelSelector"))
    field_sel = q.get("fieldSelector")
    if name:
        field_sel = f"metadata.name={name}" + (f",{field_sel}" if field_sel else "")
    match_fields = parse_field_selector(field_sel, info.kind, info.selectable_fields)
    ns_filter = ns if info.namespaced else None

    def matches(o: dict[str, Any] | None) -> bool:
        if o is None:
            return False
        md = o["metadata"]
        if ns_filter is not None and md.get("namespace") != ns_filter:
            return False
        return match_labels(md.get("labels") or {}) and match_fields(o)

    as_table = params.get("as") == "Table"
    include = q.get("includeObject") or "Metadata"

    def shape(o: dict[str, Any]) -> dict[str, Any]:
        out = c.out(info, version, o)
        if as_table:
            return tables.table(info, version, [out], out["metadata"]["resourceVersion"], include)
        return out

    bookmarks = truthy(q.get("allowWatchBookmarks"))
    send_initial = truthy(q.get("sendInitialEvents"))
    rv_param = q.get("resourceVersion") or ""
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
    if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
        raise ApiError(
            422,
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        )
    if send_initial and not bookmarks:
        raise ApiError(
            422,
            'ListOptions.meta.k8s.io "" is invalid: allowWatchBookmarks: Forbidden: '
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        )

    watcher = c.store.add_watcher(info.key)
    resp = web.StreamResponse(
        status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"}
    )
    resp.enable_chunked_encoding()
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)
    try:
        backlog: list[tuple[str, dict[str, Any]]] = []
        too_old = False
        if rv_param in ("", "0") or send_initial:
            for o in c.store.list(info.key, ns_filter):
                if matches(o):
                    backlog.append(("ADDED", o))
            start_rv = c.store.resource_version
        else:
            try:
                start_rv = int(rv_param)
            except ValueError as e:
                raise ApiError(400, f"invalid resourceVersion {rv_param!r}") from e
            try:
                backlog.extend(ev for ev in _translate(c.store.events_since(info.key, start_rv), matches))
            except TooOld:
                too_old = True
        await resp.prepare(request)
        if too_old:
            await _send(
                resp,
                "ERROR",
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {rv_param} ({c.store.resource_version})",
                    "reason": "Expired",
                    "code": 410,
                },
            )
            return resp
        last_rv = start_rv
        for typ, o in backlog:
            await _send(resp, typ, shape(o))
            last_rv = max(last_rv, int(o["metadata"]["resourceVersion"]))
        if send_initial:
            await _send(resp, "BOOKMARK", _bookmark(info, version, str(max(last_rv, start_rv)), initial=True))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        next_bookmark = loop.time() + bookmark_interval
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                await _send(resp, "BOOKMARK", _bookmark(info, version, str(c.store.resource_version)))
                next_bookmark = now + bookmark_interval
            if request.transport is None or request.transport.is_closing():
                break  # the client went away
            # wake up at least every second to notice a client that went away
            wait = min(
                1.0,
                (deadline - now) if deadline is not None else 1.0,
                (next_bookmark - now) if bookmarks else 1.0,
            )
            try:
                ev = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.0))
            except TimeoutError:
                continue
            if ev is None:
                break
            if ev.rv <= start_rv:
                continue
            for typ, o in _translate([ev], matches):
                await _send(resp, typ, shape(o))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        c.store.remove_watcher(watcher)
        if task is not None:
            tasks.discard(task)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


def _translate(events: list[Event], matches: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Selector-aware event types: an object leaving the selection is DELETED, entering is ADDED."""
    for ev in events:
        now_in, was_in = matches(ev.obj), matches(ev.old)
        if ev.type == "DELETED":
            if was_in or now_in:
                yield "DELETED", ev.obj
        elif now_in and was_in:
            yield "MODIFIED", ev.obj
        elif now_in:
            yield "ADDED", ev.obj
        elif was_in:
            yield "DELETED", ev.obj


def _bookmark(info: ResourceInfo, version: str, rv: str, initial: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"resourceVersion": rv, "creationTimestamp": None}
    if initial:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.api_version(version), "metadata": md}


async def _send(resp: web.StreamResponse, typ: str, obj: dict[str, Any]) -> None:
    await resp.write((json.dumps({"type": typ, "object": obj}) + "\n").encode())
