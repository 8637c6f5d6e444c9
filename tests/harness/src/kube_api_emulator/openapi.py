"""/openapi/v3 (and a minimal /openapi/v2): enough for kubectl apply, explain of CRDs and
kubectl's server-side field validation check (the `fieldValidation` parameter on each operation)."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from . import jsoncopy as copy
from .resources import ResourceInfo

_COMMON_PARAMS = [
    {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    for n in ("dryRun", "fieldManager", "fieldValidation", "pretty")
]


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(info: ResourceInfo, version: str) -> str:
    rev = ".".join(reversed(info.group.split("."))) if info.group else "io.k8s.api.core"
    return f"{rev}.{version}.{info.kind}"


def _operation(
    kind: str,
    gvk: dict[str, str],
    ok: dict[str, Any],
    body: dict[str, Any],
    action: str,
    verb: str,
    with_body: bool = False,
) -> dict[str, Any]:
    o: dict[str, Any] = {
        "operationId": f"{verb}{kind}",
        "parameters": list(_COMMON_PARAMS),
        "responses": ok,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if with_body:
        o["requestBody"] = body
    return o


def gv_document(infos: list[ResourceInfo], group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for info in infos:
        if info.group != group or version not in info.versions:
            continue
        gvk = {"group": group, "version": version, "kind": info.kind}
        name = _schema_name(info, version)
        ref = {"$ref": f"#/components/schemas/{name}"}
        body = {"content": {"application/json": {"schema": ref}}}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        schema = info.schemas.get(version)
        if schema is not None:
            s = copy.deepcopy(schema)
            s["x-kubernetes-group-version-kind"] = [gvk]
            schemas[name] = s
        base = f"/{gv_path(group, version)}"
        if info.namespaced:
            base += "/namespaces/{namespace}"
        coll = f"{base}/{info.plural}"

        op = functools.partial(_operation, info.kind, gvk, ok, body)
        paths[coll] = {"get": op("list", "list"), "post": op("post", "create", True)}
        item = {
            "get": op("get", "read"),
            "put": op("put", "replace", True),
            "patch": op("patch", "patch", True),
            "delete": op("delete", "delete"),
        }
        paths[f"{coll}/{{name}}"] = item
        if info.status_subresource:
            paths[f"{coll}/{{name}}/status"] = {
                "get": op("get", "readStatus"),
                "put": op("put", "replaceStatus", True),
                "patch": op("patch", "patchStatus", True),
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-api-emulator)", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def index(infos: list[ResourceInfo]) -> dict[str, Any]:
    gvs = sorted({(i.group, v) for i in infos for v in i.versions})
    out: dict[str, Any] = {}
    for g, v in gvs:
        doc = json.dumps(gv_document(infos, g, v), sort_keys=True)
        h = hashlib.sha512(doc.encode()).hexdigest()[:32].upper()
        out[gv_path(g, v)] = {"serverRelativeURL": f"/openapi/v3/{gv_path(g, v)}?hash={h}"}
    return {"paths": out}


def v2_document() -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (kube-api-emulator)", "version": "v1.37.0"},
        "paths": {},
        "definitions": {},
    }
