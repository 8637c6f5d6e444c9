"""Patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and
server-side apply."""

from __future__ import annotations

from typing import Any

import jsonpatch

from . import jsoncopy as copy
from .errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), val)
    return result


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise ApiError(400, "json patch must be a JSON array of operations")
    try:
        return jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchTestFailed as e:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {e}") from e
    except jsonpatch.JsonPatchConflict as e:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {e}") from e
    except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException) as e:
        raise ApiError(400, f"json patch is invalid: {e}") from e


# Strategic merge: patchMergeKey of the built-in list fields (by field name; the same name has the
# same key across the built-in kinds this emulator serves, except `ports`, resolved by content).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "addresses": "type",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
PRIMITIVE_MERGE_LISTS = {"finalizers"}


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return _strip_directives(copy.deepcopy(patch))
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    result = copy.deepcopy(target)
    for key, val in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            fld = key.split("/", 1)[1]
            if isinstance(result.get(fld), list):
                result[fld] = [x for x in result[fld] if x not in val]
            continue
        if val is None:
            result.pop(key, None)
        elif isinstance(val, list):
            result[key] = _merge_list(key, result.get(key), val)
        elif isinstance(val, dict):
            merged = strategic_merge(result.get(key) if isinstance(result.get(key), dict) else {}, val)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = val
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [
            _strip_directives(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")
        ]
    if not isinstance(current, list):
        current = []
    if field in PRIMITIVE_MERGE_LISTS:
        out = list(current)
        out.extend(x for x in patch if x not in out)
        return out
    key = _merge_key(field, patch + current)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_strip_directives(i) for i in patch]
    out = copy.deepcopy(current)
    for item in patch:
        ident = item.get(key)
        idx = next((n for n, c in enumerate(out) if isinstance(c, dict) and c.get(key) == ident), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {
            k: _strip_directives(x)
            for k, x in v.items()
            if not (
                k.startswith("$setElementOrder/")
                or k.startswith("$deleteFromPrimitiveList/")
                or k in ("$patch", "$retainKeys")
            )
        }
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


# ---- server-side apply (simplified: see README) ----


def list_map_keys_from_schema(schema: dict[str, Any] | None) -> dict[str, list[str]]:
    """Field name -> x-kubernetes-list-map-keys, collected from a CRD schema (by field name)."""
    found: dict[str, list[str]] = {}

    def walk(s: Any) -> None:
        if not isinstance(s, dict):
            return
        for name, sub in (s.get("properties") or {}).items():
            if isinstance(sub, dict) and sub.get("x-kubernetes-list-type") == "map":
                found.setdefault(name, list(sub.get("x-kubernetes-list-map-keys") or []))
            walk(sub)
        walk(s.get("items"))
        if isinstance(s.get("additionalProperties"), dict):
            walk(s["additionalProperties"])

    walk(schema)
    return found


def _list_keys(field: str, items: list[Any], map_keys: dict[str, list[str]]) -> list[str] | None:
    if field in map_keys:
        return map_keys[field]
    k = _merge_key(field, items)
    return [k] if k else None


def apply_merge(live: Any, applied: Any, map_keys: dict[str, list[str]], field: str = "") -> Any:
    """Merge an applied configuration into the live object: maps recurse, keyed lists merge by key,
    other lists and scalars are replaced."""
    if isinstance(applied, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            out[k] = apply_merge(out.get(k), v, map_keys, k)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        keys = _list_keys(field, applied + live, map_keys)
        if keys and all(isinstance(i, dict) for i in applied + live):
            out = copy.deepcopy(live)
            for item in applied:
                ident = [item.get(k) for k in keys]
                idx = next((n for n, c in enumerate(out) if [c.get(k) for k in keys] == ident), None)
                if idx is None:
                    out.append(copy.deepcopy(item))
                else:
                    out[idx] = apply_merge(out[idx], item, map_keys, "")
            return out
    return copy.deepcopy(applied)


def remove_unapplied(
    live: Any, previous: Any, applied: Any, map_keys: dict[str, list[str]], field: str = ""
) -> Any:
    """Remove from `live` what the same manager applied before (`previous`) and no longer applies."""
    if isinstance(previous, dict) and isinstance(live, dict):
        out = dict(live)
        applied_d = applied if isinstance(applied, dict) else {}
        for k, pv in previous.items():
            if k not in out:
                continue
            if k not in applied_d:
                del out[k]
            else:
                out[k] = remove_unapplied(out[k], pv, applied_d[k], map_keys, k)
        return out
    if isinstance(previous, list) and isinstance(live, list) and isinstance(applied, list):
        keys = _list_keys(field, previous + applied + live, map_keys)
        if keys and all(isinstance(i, dict) for i in previous + applied + live):
            gone = [[p.get(k) for k in keys] for p in previous]
            kept = [[a.get(k) for k in keys] for a in applied]
            return [
                i for i in live if [i.get(k) for k in keys] not in gone or [i.get(k) for k in keys] in kept
            ]
    return live


def fields_v1(obj: Any) -> dict[str, Any]:
    """A FieldsV1 set for managedFields (maps as f:, keyed list items as k:, other lists atomic)."""
    if not isinstance(obj, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out[f"f:{k}"] = {".": {}, **fields_v1(v)} if v else {}
        else:
            out[f"f:{k}"] = {}
    return out
