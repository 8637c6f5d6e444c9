"""`x-kubernetes-validations` (CEL rules) of CRD schemas, evaluated with cel-python.

Like the real server: a rule runs where its schema node has a value, with `self` bound to that value;
rules that use `oldSelf` (transition rules) run only on updates where the old value exists, with list
items correlated through `x-kubernetes-list-type: map` keys. Kubernetes' string extension functions
used by common CRDs are provided; a rule that uses anything else cannot be evaluated here and is
reported back as a warning (never silently passed).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from .errors import FieldError

log = logging.getLogger(__name__)

try:  # optional at import so the emulator still starts if cel-python is missing
    import celpy
    from celpy import celtypes
except ImportError:  # pragma: no cover - dependency declared in pyproject
    celpy = None  # type: ignore[assignment]

Schema = dict[str, Any]
UNSET: Any = object()
_UNSET = UNSET


def _s(v: Any) -> str:
    return str(v)


def _functions() -> dict[str, Any]:
    S = celtypes.StringType
    L = celtypes.ListType
    I = celtypes.IntType  # noqa: E741

    def find(s: Any, pat: Any) -> Any:
        m = re.search(_s(pat), _s(s))
        return S(m.group(0) if m else "")

    def find_all(s: Any, pat: Any, limit: Any = -1) -> Any:
        found = [S(m.group(0)) for m in re.finditer(_s(pat), _s(s))]
        return L(found if int(limit) < 0 else found[: int(limit)])

    def split(s: Any, sep: Any, limit: Any = -1) -> Any:
        n = int(limit)
        if n == 0:
            return L([])
        return L([S(x) for x in _s(s).split(_s(sep), n - 1 if n > 0 else -1)])

    def join(lst: Any, sep: Any = "") -> Any:
        return S(_s(sep).join(_s(x) for x in lst))

    def replace(s: Any, old: Any, new: Any, limit: Any = -1) -> Any:
        return S(_s(s).replace(_s(old), _s(new), int(limit)))

    def substring(s: Any, start: Any, end: Any = None) -> Any:
        return S(_s(s)[int(start) : None if end is None else int(end)])

    def is_sorted(lst: Any) -> Any:
        items = list(lst)
        return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))

    return {
        "find": find,
        "findAll": find_all,
        "split": split,
        "join": join,
        "replace": replace,
        "substring": substring,
        "lowerAscii": lambda s: S(_s(s).lower()),
        "upperAscii": lambda s: S(_s(s).upper()),
        "trim": lambda s: S(_s(s).strip()),
        "indexOf": lambda s, sub: I(_s(s).find(_s(sub))),
        "lastIndexOf": lambda s, sub: I(_s(s).rfind(_s(sub))),
        "isSorted": is_sorted,
        "sum": lambda lst: sum(lst, I(0)),
    }


@lru_cache(maxsize=1024)
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_functions())


def _go_type(v: Any) -> str:
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
    return "object" if isinstance(v, dict) else "null"


def _fmt(path: list[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def _unsupported(err: Any) -> bool:
    text = str(err)
    return "undeclared reference" in text


def _check(
    rule: dict[str, Any], value: Any, old: Any, path: list[Any], errors: list[FieldError], warnings: list[str]
) -> None:
    expr = rule.get("rule", "")
    uses_old = "oldSelf" in expr
    if uses_old and old is _UNSET and not rule.get("optionalOldSelf"):
        return  # transition rules run only on updates of an existing value
    where = _fmt(path)
    try:
        activation = {"self": celpy.json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = celpy.json_to_cel(None if old is _UNSET else old)
        result = _program(expr).evaluate(activation)
    except Exception as e:
        result = e
    if isinstance(result, Exception):
        if _unsupported(result) or (celpy is not None and isinstance(result, celpy.CELParseError)):
            warnings.append(
                f"kube-api-emulator could not evaluate the x-kubernetes-validations rule at "
                f"{where or '<root>'}: {expr!r} ({str(result).splitlines()[0][:120]})"
            )
            return
        errors.append(
            FieldError(
                where,
                "FieldValueInvalid",
                f'Invalid value: "{_go_type(value)}": {str(result).splitlines()[0][:200]} '
                f"evaluating rule: {expr}",
            )
        )
        return
    if bool(result):
        return
    message = rule.get("message") or f"failed rule: {expr}"
    if rule.get("messageExpression"):
        try:
            msg = _program(rule["messageExpression"]).evaluate({"self": celpy.json_to_cel(value)})
            if isinstance(msg, str) and msg.strip():
                message = str(msg)
        except Exception:
            pass
    field = where
    if rule.get("fieldPath"):
        field = (where + rule["fieldPath"]) if where else rule["fieldPath"].lstrip(".")
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueForbidden":
        detail = f"Forbidden: {message}"
    elif reason == "FieldValueRequired":
        detail = f"Required value: {message}"
    elif reason == "FieldValueDuplicate":
        detail = f"Duplicate value: {message}"
    else:
        detail = f'Invalid value: "{_go_type(value)}": {message}'
    errors.append(FieldError(field, reason, detail))


def has_rules(schema: Any) -> bool:
    return "x-kubernetes-validations" in repr(schema) if isinstance(schema, dict) else False


def validate(
    value: Any,
    old: Any,
    schema: Schema | None,
    path: list[Any],
    errors: list[FieldError],
    warnings: list[str],
) -> None:
    """Evaluate every rule in `schema` against `value` (and `old` for transition rules)."""
    if celpy is None or not isinstance(schema, dict) or value is None:
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        _check(rule, value, old, path, errors, warnings)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            if sub is None:
                continue
            old_v = old.get(k, _UNSET) if isinstance(old, dict) else _UNSET
            validate(v, old_v, sub, [*path, k], errors, warnings)
    elif isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return
        keys = (
            schema.get("x-kubernetes-list-map-keys")
            if schema.get("x-kubernetes-list-type") == "map"
            else None
        )
        for i, item in enumerate(value):
            o: Any = _UNSET
            if keys and isinstance(old, list) and isinstance(item, dict):
                ident = [item.get(k) for k in keys]
                o = next(
                    (x for x in old if isinstance(x, dict) and [x.get(k) for k in keys] == ident), _UNSET
                )
            validate(item, o, items, [*path, i], errors, warnings)
