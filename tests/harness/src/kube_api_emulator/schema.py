"""Structural-schema handling for custom resources: pruning, defaulting, validation.

Order as in the real server: drop non-nullable nulls, prune unknown fields, apply defaults, validate.
Validation converts the OpenAPI v3 schema to JSON Schema draft 4 (what OpenAPI 3.0 is based on) and maps
jsonschema's errors to Kubernetes field errors with field paths.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from . import cel
from . import jsoncopy as copy
from .errors import FieldError

Schema = dict[str, Any]

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def fmt_path(parts: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _properties(schema: Schema) -> dict[str, Schema] | None:
    props = schema.get("properties")
    return props if isinstance(props, dict) else None


def prune(value: Any, schema: Schema | None, path: list[Any], pruned: list[str], root: bool = False) -> Any:
    """Remove fields the schema does not declare; record their paths in `pruned`."""
    if schema is None or not isinstance(value, (dict, list)):
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                value[i] = prune(item, items, [*path, i], pruned)
        return value
    props = _properties(schema)
    addl = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    for key in list(value):
        if (root or embedded) and key in _ROOT_KEEP:
            continue
        if props is not None and key in props:
            value[key] = prune(value[key], props[key], [*path, key], pruned)
        elif isinstance(addl, dict):
            value[key] = prune(value[key], addl, [*path, key], pruned)
        elif addl is True or preserve:
            continue
        else:
            pruned.append(fmt_path([*path, key]))
            del value[key]
    return value


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    """Apply `default`s (and drop nulls that the schema does not allow), recursively."""
    if schema is None:
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                value[i] = apply_defaults(item, items)
        return value
    if not isinstance(value, dict):
        return value
    props = _properties(schema) or {}
    for key, sub in props.items():
        if key in value and value[key] is None and not sub.get("nullable"):
            del value[key]
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = apply_defaults(value[key], sub)
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        for key in list(value):
            if key not in props:
                value[key] = apply_defaults(value[key], addl)
    return value


_DROP = {"description", "default", "example", "externalDocs", "x-kubernetes-validations", "format"}


def _convert(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema draft 4."""
    if isinstance(schema, list):
        return [_convert(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, val in schema.items():
        if key in _DROP or (key.startswith("x-") and key != "x-kubernetes-int-or-string"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _convert(v) for k, v in val.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _convert(val)
        else:
            out[key] = val
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("allOf", []).append({"type": ["integer", "string"]})
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("nullable"):
        out.pop("nullable", None)
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    else:
        out.pop("nullable", None)
    return out


_VALIDATORS: dict[int, tuple[Schema, jsonschema.Draft4Validator, bool]] = {}


def _validator(schema: Schema) -> tuple[jsonschema.Draft4Validator, bool]:
    """Compiled validator and whether CEL rules exist, cached per schema object (CRD schemas are kept,
    not rebuilt, per request)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        if len(_VALIDATORS) > 256:
            _VALIDATORS.clear()
        hit = (schema, jsonschema.Draft4Validator(_convert(schema)), cel.has_rules(schema))
        _VALIDATORS[id(schema)] = hit
    return hit[1], hit[2]


def _go_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _show(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (dict, list)):
        return '"' + _go_type(v) + '"'
    return json.dumps(v)


def _map_error(err: jsonschema.ValidationError) -> list[FieldError]:
    path = list(err.absolute_path)
    where = fmt_path(path)
    v = err.validator
    inst = err.instance
    if v == "required":
        missing = [r for r in err.validator_value if isinstance(inst, dict) and r not in inst]
        return [FieldError(fmt_path([*path, m]), "FieldValueRequired", "Required value") for m in missing]
    if v == "type":
        want = err.validator_value
        want_s = " or ".join(w for w in (want if isinstance(want, list) else [want]) if w != "null")
        got = _go_type(inst)
        return [
            FieldError(
                where,
                "FieldValueTypeInvalid",
                f'Invalid value: "{got}": {where or "body"} in body must be of type {want_s}: "{got}"',
            )
        ]
    if v == "enum":
        allowed = ", ".join(json.dumps(x) for x in err.validator_value if x is not None)
        return [
            FieldError(
                where,
                "FieldValueNotSupported",
                f"Unsupported value: {_show(inst)}: supported values: {allowed}",
            )
        ]
    if v == "maxLength":
        return [
            FieldError(
                where, "FieldValueTooLong", f"Too long: may not be more than {err.validator_value} bytes"
            )
        ]
    if v == "maxItems":
        return [
            FieldError(
                where,
                "FieldValueTooMany",
                f"Too many: {len(inst)}: must have at most {err.validator_value} items",
            )
        ]
    messages = {
        "minLength": f"should be at least {err.validator_value} chars long",
        "minItems": f"should have at least {err.validator_value} items",
        "minimum": f"should be greater than or equal to {err.validator_value}",
        "maximum": f"should be less than or equal to {err.validator_value}",
        "pattern": f"should match '{err.validator_value}'",
        "uniqueItems": "shouldn't contain duplicates",
        "minProperties": f"should have at least {err.validator_value} properties",
        "maxProperties": f"should have at most {err.validator_value} properties",
        "multipleOf": f"should be a multiple of {err.validator_value}",
    }
    detail = messages.get(str(v), err.message)
    if v == "minimum" and err.schema.get("exclusiveMinimum"):
        detail = f"should be greater than {err.validator_value}"
    if v == "maximum" and err.schema.get("exclusiveMaximum"):
        detail = f"should be less than {err.validator_value}"
    shown = _show(inst) if not isinstance(inst, (dict, list)) else '"' + _go_type(inst) + '"'
    return [
        FieldError(where, "FieldValueInvalid", f"Invalid value: {shown}: {where or 'body'} in body {detail}")
    ]


def _list_map_errors(value: Any, schema: Schema | None, path: list[Any], out: list[FieldError]) -> None:
    """x-kubernetes-list-type: map -> entries must be unique by their x-kubernetes-list-map-keys."""
    if schema is None:
        return
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[str] = set()
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                ident = json.dumps([item.get(k) for k in keys])
                if ident in seen:
                    shown = ", ".join(f"{k}={json.dumps(item.get(k))}" for k in keys)
                    out.append(
                        FieldError(
                            fmt_path([*path, i]), "FieldValueDuplicate", f"Duplicate value: map[{shown}]"
                        )
                    )
                seen.add(ident)
        for i, item in enumerate(value):
            _list_map_errors(item, items, [*path, i], out)
    elif isinstance(value, dict):
        props = _properties(schema) or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) or (addl if isinstance(addl, dict) else None)
            _list_map_errors(v, sub, [*path, k], out)


def _subject(obj: dict[str, Any], schema: Schema) -> dict[str, Any]:
    md = obj.get("metadata") or {}
    subject = {k: v for k, v in obj.items() if k != "metadata"}
    if (_properties(schema) or {}).get("metadata"):
        subject["metadata"] = {k: md[k] for k in ("name", "generateName") if k in md}
    return subject


def validate(
    obj: dict[str, Any], schema: Schema, old: dict[str, Any] | None = None, warnings: list[str] | None = None
) -> list[FieldError]:
    """Validate a custom resource against its openAPIV3Schema (metadata: only name/generateName), then,
    if that passes, its CEL rules (`old`: the stored object, for transition rules)."""
    subject = _subject(obj, schema)
    validator, has_rules = _validator(schema)
    errors: list[FieldError] = []
    for err in validator.iter_errors(subject):
        errors.extend(_map_error(err))
    _list_map_errors(subject, schema, [], errors)
    if not errors and has_rules:
        old_subject: Any = _subject(old, schema) if old is not None else cel.UNSET
        cel.validate(subject, old_subject, schema, [], errors, warnings if warnings is not None else [])
    if old is not None:
        errors = [e for e in errors if not _unchanged(e.field, obj, old)]
    errors.sort(key=lambda e: e.field)
    return errors


_MISSING = object()
_PATH_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _at(obj: Any, field: str) -> Any:
    cur = obj
    for name, index in _PATH_RE.findall(field):
        if name:
            if not isinstance(cur, dict) or name not in cur:
                return _MISSING
            cur = cur[name]
        else:
            if not isinstance(cur, list) or int(index) >= len(cur):
                return _MISSING
            cur = cur[int(index)]
    return cur


def _unchanged(field: str, new: Any, old: Any) -> bool:
    """Validation ratcheting (GA since Kubernetes 1.33): an update does not fail on a value it did not
    change."""
    return bool(field) and _at(new, field) == _at(old, field)
