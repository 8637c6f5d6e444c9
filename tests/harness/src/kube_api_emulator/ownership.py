"""Field ownership for server-side apply: which manager set which field (managedFields), and apply
conflicts (409) when an applier would change a value another manager owns, as the real server does.

Fields are leaf paths: map keys (`f:name`), items of keyed lists (`k:{"name":"x"}`, keys from the
schema's x-kubernetes-list-map-keys or the built-in merge keys); other lists are atomic leaves.
"""

from __future__ import annotations

import json
from typing import Any

from . import jsoncopy as copy
from .errors import ApiError
from .patches import _list_keys

Path = tuple[str, ...]
ManagerKey = tuple[str, str, str]  # (manager, operation, subresource or "")

_META_FIELDS = ("labels", "annotations", "finalizers", "ownerReferences")


def subject(obj: dict[str, Any], status_subresource: bool, subresource: str | None) -> dict[str, Any]:
    """The part of an object a write owns: no apiVersion/kind, only user metadata; status belongs to
    `/status` writes when the status subresource is on, the rest to main-resource writes."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if status_subresource:
        out.pop("status", None)
    md = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _META_FIELDS}
    if md:
        out["metadata"] = md
    return out


def leaves(value: Any, map_keys: dict[str, list[str]], field: str = "") -> dict[Path, Any]:
    """Leaf path -> value."""
    if isinstance(value, dict) and value:
        out: dict[Path, Any] = {}
        for k, v in value.items():
            for p, x in leaves(v, map_keys, k).items():
                out[(f"f:{k}", *p)] = x
        return out
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        keys = _list_keys(field, value, map_keys)
        if keys and all(all(k in i for k in keys) for i in value):
            out = {}
            for item in value:
                ident = "k:" + json.dumps({k: item[k] for k in keys}, sort_keys=True, separators=(",", ":"))
                for p, x in leaves(item, map_keys).items():
                    out[(ident, *p)] = x
            return out
    return {(): value}


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in sorted(paths):
        node = root
        for part in p:
            node = node.setdefault(part, {})
    return root


def without(config: Any, paths: set[Path]) -> Any:
    """A copy of `config` without the given leaf paths (fields other managers also own)."""
    config = copy.deepcopy(config)
    for path in paths:
        parent: Any = None
        node: Any = config
        last: Any = None
        for part in path:
            parent, last = node, None
            if part.startswith("f:") and isinstance(node, dict) and part[2:] in node:
                last, node = part[2:], node[part[2:]]
            elif part.startswith("k:") and isinstance(node, list):
                ident = json.loads(part[2:])
                idx = next(
                    (
                        i
                        for i, x in enumerate(node)
                        if isinstance(x, dict) and all(x.get(k) == v for k, v in ident.items())
                    ),
                    None,
                )
                if idx is None:
                    break
                last, node = idx, node[idx]
            else:
                break
        else:
            if isinstance(parent, dict) and isinstance(last, str):
                del parent[last]
            elif isinstance(parent, list) and isinstance(last, int):
                parent.pop(last)
    return config


def show(path: Path) -> str:
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            ident = json.loads(part[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in ident.items()) + "]"
    return out or "."


class Ownership:
    """managedFields bookkeeping for the objects of one cluster, by uid."""

    def __init__(self) -> None:
        self._owners: dict[str, dict[ManagerKey, set[Path]]] = {}
        self._versions: dict[tuple[str, ManagerKey], tuple[str, str]] = {}  # -> (apiVersion, time)

    def forget(self, uid: str) -> None:
        self._owners.pop(uid, None)
        for k in [k for k in self._versions if k[0] == uid]:
            del self._versions[k]

    def _version(self, uid: str, mk: ManagerKey) -> str:
        return self._versions.get((uid, mk), ("", ""))[0]

    def owned_by_others(self, uid: str, key: ManagerKey) -> set[Path]:
        return {p for mk, paths in self._owners.get(uid, {}).items() if mk != key for p in paths}

    def check_apply(
        self, uid: str, manager: str, subresource: str | None, live: dict[Path, Any], applied: dict[Path, Any]
    ) -> list[tuple[ManagerKey, Path]]:
        """Fields the applier would change that another manager owns."""
        found = []
        for mk, paths in self._owners.get(uid, {}).items():
            if mk[:2] == (manager, "Apply") or mk[2] != (subresource or ""):
                continue
            for p in sorted(paths & applied.keys()):
                if p in live and live[p] != applied[p]:
                    found.append((mk, p))
        return found

    def conflict_error(
        self, uid: str, plural: str, group: str, name: str, conflicts: list[tuple[ManagerKey, Path]]
    ) -> ApiError:
        n = len(conflicts)
        by_manager: dict[ManagerKey, list[Path]] = {}
        for mk, p in conflicts:
            by_manager.setdefault(mk, []).append(p)
        parts = []
        for mk, paths in by_manager.items():
            version = self._version(uid, mk)
            if len(paths) == 1:
                parts.append(f'conflict with "{mk[0]}" using {version}: {show(paths[0])}')
            else:
                parts.append(
                    f'conflicts with "{mk[0]}" using {version}:\n' + "\n".join(f"- {show(p)}" for p in paths)
                )
        causes = [
            {
                "type": "FieldManagerConflict",
                "message": f'conflict with "{mk[0]}" using {self._version(uid, mk)}',
                "field": show(p),
            }
            for mk, p in conflicts
        ]
        return ApiError(
            409,
            f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "\n".join(parts),
            reason="Conflict",
            details={"name": name, "group": group, "kind": plural, "causes": causes},
        )

    def record(
        self,
        uid: str,
        key: ManagerKey,
        api_version: str,
        time: str,
        before: dict[Path, Any] | None,
        after: dict[Path, Any],
        applied: dict[Path, Any] | None = None,
    ) -> None:
        """After a write: an Apply owns what it applied; an Update owns what it changed; other managers
        lose the fields whose value this write changed, and nobody keeps fields that are gone."""
        owners = self._owners.setdefault(uid, {})
        before = before or {}
        if applied is not None:
            # applying a value another manager set identically shares the field; a different value takes it
            taken = {p for p in applied if before.get(p, _GONE) != applied[p]}
            owners[key] = set(applied)
        else:
            taken = {p for p in set(after) | set(before) if after.get(p, _GONE) != before.get(p, _GONE)}
            owners.setdefault(key, set()).update(taken & after.keys())
        for mk in list(owners):
            if mk != key:
                owners[mk] -= taken
            owners[mk] &= after.keys()
            if not owners[mk]:
                del owners[mk]
        self._versions[(uid, key)] = (api_version, time)

    def managed_fields(self, uid: str) -> list[dict[str, Any]]:
        out = []
        for mk, paths in self._owners.get(uid, {}).items():
            version, time = self._versions.get((uid, mk), ("", ""))
            entry: dict[str, Any] = {
                "manager": mk[0],
                "operation": mk[1],
                "apiVersion": version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(paths),
            }
            if mk[2]:
                entry["subresource"] = mk[2]
            out.append(entry)
        return out


_GONE = object()
