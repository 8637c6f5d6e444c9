"""HTTP layer: routes the Kubernetes REST paths to the Cluster, streams watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web
from multidict import CIMultiDict

from . import discovery, openapi, patches, tables
from .cluster import CRD_KEY, Cluster, WriteOptions
from .errors import ApiError, not_implemented
from .kubeconfig import write_kubeconfig
from .resources import ResourceInfo
from .watch import serve_watch, truthy
from .yamlfiles import SafeLoader, yaml_docs

log = logging.getLogger("kube_api_emulator")
T = TypeVar("T")

PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON = "application/json"
CBOR = "application/cbor"


def _json_response(body: Any, status: int = 200, headers: CIMultiDict[str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=JSON, headers=headers)


def _error_response(err: ApiError) -> web.Response:
    return _json_response(err.status(), err.code)


def _accept(request: web.Request) -> dict[str, str]:
    """The first acceptable media type's parameters (as=Table etc.); 406 if only protobuf/CBOR is
    acceptable."""
    header = request.headers.get("Accept", "") or "*/*"
    options = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        params = dict(b.split("=", 1) for b in bits[1:] if "=" in b)
        options.append((bits[0], params))
    for media, params in options:
        if media in (JSON, "*/*", "application/*", "application/yaml", "application/json-seq") or media == "":
            return params if media == JSON else {}
    raise ApiError(
        406,
        f"only the following media types are accepted by kube-api-emulator: application/json "
        f"(not {header}); protobuf and CBOR are not implemented",
        reason="NotAcceptable",
    )


async def _read_body(request: web.Request) -> Any:
    ct = request.headers.get("Content-Type", JSON).split(";")[0].strip()
    if ct.startswith(PROTOBUF) or ct == CBOR:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - the content type {ct!r} is not "
            "supported by kube-api-emulator: send application/json (kubectl: use JSON/YAML paths)",
            reason="UnsupportedMediaType",
        )
    raw = await request.read()
    if not raw:
        return None
    try:
        if ct in ("application/yaml", patches.APPLY_PATCH):
            return yaml.load(raw, Loader=SafeLoader)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise ApiError(400, f"the request body could not be decoded as {ct}: {e}") from e


class KubeApiEmulator:
    """An HTTP Kubernetes API server for tests. Use as `async with KubeApiEmulator() as api:` or
    `with KubeApiEmulator.in_thread() as api:`; `api.url`, `api.write_kubeconfig(path)`."""

    def __init__(
        self,
        port: int = 0,
        crds: list[str | Path] | None = None,
        host: str = "127.0.0.1",
        history_limit: int = 10000,
        bookmark_interval: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.crd_paths = [Path(p) for p in crds or []]
        self.cluster = Cluster(history_limit=history_limit)
        self.bookmark_interval = bookmark_interval
        self.kubeconfig: Path | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # set by in_thread
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None  # created on the running loop
        self._watch_tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle ----

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        self.kubeconfig = write_kubeconfig(Path(path), self.url, namespace)
        return self.kubeconfig

    def load_crds(self, paths: list[str | Path]) -> list[str]:
        """Create the CRDs found in YAML files (or directories of them); returns their names."""
        names = []
        info = self.cluster.types[CRD_KEY]
        for doc in yaml_docs([Path(p) for p in paths]):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            if self.cluster.store.peek(CRD_KEY, "", name) is None:
                self.cluster.create(info, "v1", "", doc, WriteOptions(field_manager="kube-api-emulator"))
            else:
                cur = self.cluster.store.get(CRD_KEY, "", name)
                assert cur is not None
                doc = {
                    **doc,
                    "metadata": {**doc["metadata"], "resourceVersion": cur["metadata"]["resourceVersion"]},
                }
                self.cluster.update(
                    info, "v1", "", name, doc, None, WriteOptions(field_manager="kube-api-emulator")
                )
            names.append(name)
        return names

    async def start(self) -> KubeApiEmulator:
        self._stopping = asyncio.Event()
        if self.crd_paths:
            self.load_crds(list(self.crd_paths))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        self.cluster.store.close_watchers()
        for t in list(self._watch_tasks):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeApiEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the emulator's event loop (thread-safe access to `self.cluster`
        for an emulator started with `in_thread`), and return its result."""
        loop = self.loop
        if loop is None:
            return fn(*args, **kwargs)

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(30)

    @classmethod
    @contextlib.contextmanager
    def in_thread(
        cls, *args: Any, kubeconfig: str | Path | None = None, **kwargs: Any
    ) -> Iterator[KubeApiEmulator]:
        """Run an emulator on a background thread's event loop (for synchronous tests and tools)."""
        emu = cls(*args, **kwargs)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(emu.start())
            except BaseException as e:  # reported to the caller below
                error.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="kube-api-emulator", daemon=True)
        thread.start()
        started.wait(30)
        if error:
            raise error[0]
        emu.loop = loop
        try:
            if kubeconfig is not None:
                emu.write_kubeconfig(kubeconfig)
            yield emu
        finally:
            asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()

    # ---- routing ----

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except ApiError as e:
            return _error_response(e)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # an emulator bug: say so as a 500 Status, with the trace in the log
            log.exception("kube-api-emulator internal error on %s %s", request.method, request.path)
            return _error_response(
                ApiError(500, f"kube-api-emulator internal error: {type(e).__name__}: {e}")
            )

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        c = self.cluster
        if request.method == "GET":
            if parts in (["version"], ["version", ""]):
                return _json_response(discovery.KUBE_VERSION)
            if parts and parts[0] in ("healthz", "livez", "readyz"):
                return web.Response(text="ok", content_type="text/plain")
            if parts == ["api"]:
                return _json_response(discovery.api_versions(f"{self.host}:{self.port}"))
            if parts == ["apis"]:
                return _json_response(discovery.api_group_list(c.infos()))
            if len(parts) == 2 and parts[0] == "apis":
                doc = discovery.api_group(c.infos(), parts[1])
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json_response(doc)
            if (len(parts) == 2 and parts[0] == "api") or (len(parts) == 3 and parts[0] == "apis"):
                group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
                doc = discovery.resource_list(c.infos(), group, version)
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json_response(doc)
            if parts[:2] == ["openapi", "v3"]:
                return self._openapi_v3(parts[2:])
            if parts == ["openapi", "v2"]:
                if "protobuf" in request.headers.get("Accept", "") and "json" not in request.headers.get(
                    "Accept", ""
                ):
                    raise ApiError(
                        406, "kube-api-emulator serves /openapi/v2 as JSON only", reason="NotAcceptable"
                    )
                return _json_response(openapi.v2_document())
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            if request.method != "GET":
                raise ApiError(
                    405,
                    f"kube-api-emulator: {request.method} {request.path} is not supported",
                    reason="MethodNotAllowed",
                )
            raise ApiError(404, "the server could not find the requested resource")
        legacy_watch = False
        if rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
        ns: str | None = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        info = c.resolve(group, version, plural)
        if info.namespaced and ns is None and name is not None:
            raise ApiError(
                404,
                "the server could not find the requested resource (a namespaced resource needs "
                "/namespaces/{namespace}/ in its path)",
            )
        if not info.namespaced and ns is not None:
            raise ApiError(
                404, f"the server could not find the requested resource ({plural} is cluster-scoped)"
            )
        if sub is not None:
            if sub == "status" and info.status_subresource:
                pass
            elif sub == "scale" and info.scale_subresource and request.method in ("GET", "PUT", "PATCH"):
                body = None if request.method == "GET" else await _read_body(request)
                opts = WriteOptions(
                    dry_run=request.query.get("dryRun") == "All",
                    field_manager=request.query.get("fieldManager") or _default_manager(request),
                )
                assert name is not None
                return _json_response(
                    c.scale(
                        info,
                        version,
                        ns or "",
                        name,
                        request.method,
                        request.headers.get("Content-Type", ""),
                        body,
                        opts,
                    )
                )
            elif sub == "binding" and info.key == ("", "pods") and request.method == "POST" and name:
                body = await _read_body(request)
                return _json_response(c.bind_pod(ns or "", name, body), 201)
            elif sub in info.extra_subresources:
                raise not_implemented(f"the {plural}/{sub} subresource")
            else:
                raise ApiError(404, f"the server could not find the requested resource ({plural}/{sub})")
        q = request.query
        if request.method == "GET":
            params = _accept(request)
            if name is None and (legacy_watch or truthy(q.get("watch"))):
                return await serve_watch(
                    request,
                    c,
                    info,
                    version,
                    ns,
                    params,
                    bookmark_interval=self.bookmark_interval,
                    tasks=self._watch_tasks,
                )
            if legacy_watch:
                return await serve_watch(
                    request,
                    c,
                    info,
                    version,
                    ns,
                    params,
                    name,
                    bookmark_interval=self.bookmark_interval,
                    tasks=self._watch_tasks,
                )
            if name is None:
                listed = c.list(
                    info,
                    version,
                    ns,
                    q.get("labelSelector"),
                    q.get("fieldSelector"),
                    int(q["limit"]) if q.get("limit") else None,
                    q.get("continue"),
                )
                return _json_response(self._shape_list(info, version, listed, params, q.get("includeObject")))
            obj = c.get(info, version, ns or "", name)
            return _json_response(self._shape_one(info, version, obj, params, q.get("includeObject")))
        opts = WriteOptions(
            dry_run=q.get("dryRun") == "All",
            field_manager=q.get("fieldManager") or _default_manager(request),
            field_validation=q.get("fieldValidation") or "Warn",
            force=truthy(q.get("force")),
        )
        if opts.field_validation not in ("Strict", "Warn", "Ignore"):
            raise ApiError(
                400, f"fieldValidation must be one of Strict, Warn, Ignore, got {opts.field_validation!r}"
            )
        if q.get("dryRun") not in (None, "", "All"):
            raise ApiError(400, f"dryRun must be All, got {q.get('dryRun')!r}")
        if request.method == "POST" and name is None:
            body = await _read_body(request)
            _accept(request)
            new = c.create(info, version, ns or "", body, opts)
            return _json_response(new, 201, _warning_headers(opts))
        if request.method == "PUT" and name is not None:
            body = await _read_body(request)
            updated = c.update(info, version, ns or "", name, body, sub, opts)
            return _json_response(updated, 200, _warning_headers(opts))
        if request.method == "PATCH" and name is not None:
            body = await _read_body(request)
            if q.get("fieldManager") is None and request.headers.get("Content-Type", "").startswith(
                patches.APPLY_PATCH
            ):
                opts.field_manager = None
            patched, created = c.patch(
                info, version, ns or "", name, request.headers.get("Content-Type", ""), body, sub, opts
            )
            return _json_response(patched, 201 if created else 200, _warning_headers(opts))
        if request.method == "DELETE":
            body = await _read_body(request)
            options = dict(body or {})
            if q.get("propagationPolicy"):
                options["propagationPolicy"] = q["propagationPolicy"]
            if q.get("orphanDependents") is not None:
                options["orphanDependents"] = truthy(q["orphanDependents"])
            if name is None:
                return _json_response(
                    c.delete_collection(
                        info,
                        version,
                        ns,
                        q.get("labelSelector"),
                        q.get("fieldSelector"),
                        options,
                        opts.dry_run,
                    )
                )
            return _json_response(c.delete(info, version, ns or "", name, options, opts.dry_run))
        raise ApiError(
            405,
            f"the server does not allow this method on the requested resource ({request.method} "
            f"{request.path})",
            reason="MethodNotAllowed",
        )

    def _openapi_v3(self, rest: list[str]) -> web.Response:
        infos = self.cluster.infos()
        if not rest:
            return _json_response(openapi.index(infos))
        if rest[0] == "api" and len(rest) == 2:
            group, version = "", rest[1]
        elif rest[0] == "apis" and len(rest) == 3:
            group, version = rest[1], rest[2]
        else:
            raise ApiError(404, "the server could not find the requested OpenAPI document")
        if not any(i.group == group and version in i.versions for i in infos):
            raise ApiError(404, "the server could not find the requested OpenAPI document")
        return _json_response(openapi.gv_document(infos, group, version))

    # ---- response shapes ----

    def _shape_one(
        self,
        info: ResourceInfo,
        version: str,
        obj: dict[str, Any],
        params: dict[str, str],
        include: str | None,
    ) -> dict[str, Any]:
        kind = params.get("as")
        if kind == "Table":
            return tables.table(
                info, version, [obj], obj["metadata"]["resourceVersion"], include or "Metadata"
            )
        if kind == "PartialObjectMetadata":
            return tables.partial_metadata(obj)
        if kind:
            raise ApiError(406, f"kube-api-emulator cannot serve as={kind}", reason="NotAcceptable")
        return obj

    def _shape_list(
        self,
        info: ResourceInfo,
        version: str,
        listed: dict[str, Any],
        params: dict[str, str],
        include: str | None,
    ) -> dict[str, Any]:
        kind = params.get("as")
        if kind == "Table":
            return tables.table(
                info,
                version,
                listed["items"],
                listed["metadata"]["resourceVersion"],
                include or "Metadata",
                listed["metadata"].get("continue"),
            )
        if kind in ("PartialObjectMetadataList", "PartialObjectMetadata"):
            return {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": listed["metadata"],
                "items": [tables.partial_metadata(o) for o in listed["items"]],
            }
        if kind:
            raise ApiError(406, f"kube-api-emulator cannot serve as={kind}", reason="NotAcceptable")
        return listed


def _warning_headers(opts: WriteOptions) -> CIMultiDict[str] | None:
    """One `Warning: 299 - "..."` header per warning, as the real server sends them."""
    if not opts.warnings:
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for w in opts.warnings[:50]:
        headers.add("Warning", '299 - "' + w.replace('"', '\\"') + '"')
    return headers


def _default_manager(request: web.Request) -> str:
    ua = request.headers.get("User-Agent", "")
    return ua.split("/")[0] if ua else "unknown"
