"""Discovery documents: /version, /api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version}."""

from __future__ import annotations

import hashlib
from typing import Any

from .resources import ALL_VERBS, ResourceInfo, sort_versions

KUBE_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-kube-api-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def groups(infos: list[ResourceInfo]) -> dict[str, list[str]]:
    """group -> served versions, preferred first."""
    out: dict[str, set[str]] = {}
    for i in infos:
        out.setdefault(i.group, set()).update(i.versions)
    return {g: sort_versions(list(vs)) for g, vs in out.items()}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_doc(name: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(infos: list[ResourceInfo]) -> dict[str, Any]:
    gs = groups(infos)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_doc(g, vs) for g, vs in sorted(gs.items()) if g],
    }


def api_group(infos: list[ResourceInfo], group: str) -> dict[str, Any] | None:
    gs = groups(infos)
    if group not in gs or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, gs[group])}


def _hash(info: ResourceInfo) -> str:
    return hashlib.sha256(f"{info.group}/{info.storage_version}/{info.kind}".encode()).hexdigest()[:11]


def resource_list(infos: list[ResourceInfo], group: str, version: str) -> dict[str, Any] | None:
    served = [i for i in infos if i.group == group and version in i.versions]
    if not served and not (group == "" and version == "v1"):
        return None
    resources: list[dict[str, Any]] = []
    for i in sorted(served, key=lambda x: x.plural):
        entry: dict[str, Any] = {
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": ALL_VERBS,
            "storageVersionHash": _hash(i),
        }
        if i.short_names:
            entry["shortNames"] = i.short_names
        if i.categories:
            entry["categories"] = i.categories
        resources.append(entry)
        if i.scale_subresource:
            resources.append(
                {
                    "name": f"{i.plural}/scale",
                    "singularName": "",
                    "namespaced": i.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        if i.status_subresource:
            resources.append(
                {
                    "name": f"{i.plural}/status",
                    "singularName": "",
                    "namespaced": i.namespaced,
                    "kind": i.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
