"""Label selectors (=, ==, !=, in, notin, exists, !key) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ApiError

_KEY_RE = re.compile(r"[A-Za-z0-9./_-]+")
_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s*\((.*?)\)\s*$")


def _split_top(expr: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _label_ok(labels: dict[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    if op == "in":
        return labels.get(key) in values
    if op == "notin":
        return labels.get(key) not in values
    if op == "=":
        return labels.get(key) in values
    if op == "!=":
        return labels.get(key) not in values
    if op == "exists":
        return key in labels
    return key not in labels  # "!"


def parse_label_selector(expr: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate on labels for a selector string; 400 for what does not parse."""
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for part in _split_top(expr or ""):
        m = _SET_RE.match(part)
        if m:
            if m.group(1):
                raise ApiError(400, f"unable to parse requirement: {part!r}")
            values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append((m.group(2), m.group(3), values))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                if not key.strip():
                    raise ApiError(400, f"unable to parse requirement: {part!r}")
                reqs.append((key.strip(), "!=" if op == "!=" else "=", frozenset([value.strip()])))
                break
        else:
            if part.startswith("!") and _KEY_RE.fullmatch(part[1:].strip()):
                reqs.append((part[1:].strip(), "!", frozenset()))
            elif _KEY_RE.fullmatch(part):
                reqs.append((part, "exists", frozenset()))
            else:
                raise ApiError(400, f"unable to parse requirement: {part!r}")
    return lambda labels: all(_label_ok(labels, k, op, vs) for k, op, vs in reqs)


def label_selector_to_string(sel: dict[str, Any] | None) -> str:
    """A metav1.LabelSelector (matchLabels / matchExpressions) as a selector string."""
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e["operator"], e["key"], e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _field_value(obj: dict[str, Any], path: str) -> str | None:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if cur is None:
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# Fields every kind supports, plus the per-kind fields the real server indexes (subset).
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
KIND_FIELDS: dict[str, set[str]] = {
    "Pod": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Node": {"spec.unschedulable", "spec.providerID"},
    "Event": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.name",
        "regarding.kind",
        "regarding.namespace",
        "regarding.uid",
    },
    "Secret": {"type"},
    "Namespace": {"status.phase"},
    "ReplicaSet": {"status.replicas"},
    "Job": {"status.successful"},
    "NodeClaim": {"spec.providerID", "status.providerID"},
    "Machine": {"spec.providerID", "status.providerID"},
}


def parse_field_selector(
    expr: str | None, kind: str, selectable: set[str] | None = None
) -> Callable[[dict[str, Any]], bool]:
    if not expr:
        return lambda obj: True
    allowed = COMMON_FIELDS | KIND_FIELDS.get(kind, set()) | (selectable or set())
    reqs: list[tuple[str, bool, str]] = []
    for part in _split_top(expr):
        for op in ("!=", "==", "="):
            if op in part:
                fld, _, value = part.partition(op)
                fld, value = fld.strip(), value.strip()
                break
        else:
            raise ApiError(400, f"invalid selector: '{expr}'; can't understand '{part}'")
        if fld not in allowed:
            raise ApiError(
                400,
                f"field label not supported: {fld} (kube-api-emulator supports {', '.join(sorted(allowed))} "
                f"for {kind})",
            )
        reqs.append((fld, op != "!=", value))
    return lambda obj: all(((_field_value(obj, f) or "") == v) is eq for f, eq, v in reqs)
