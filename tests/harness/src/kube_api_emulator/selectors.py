"""Label selectors (=, ==, !=, in, notin, exists, !key) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ApiError

Requirement = Callable[[dict[str, str]], bool]

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


def parse_label_selector(expr: str | None) -> Callable[[dict[str, str]], bool]:
    if not expr:
        return lambda labels: True
    reqs: list[Requirement] = []
    for part in _split_top(expr):
        m = _SET_RE.match(part)
        if m:
            if m.group(1):
                raise ApiError(400, f"unable to parse requirement: {part!r}")
            key, op = m.group(2), m.group(3)
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            if op == "in":
                reqs.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                reqs.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                key, value = key.strip(), value.strip()
                if not key:
                    raise ApiError(400, f"unable to parse requirement: {part!r}")
                if op == "!=":
                    reqs.append(lambda lb, k=key, v=value: lb.get(k) != v)
                else:
                    reqs.append(lambda lb, k=key, v=value: lb.get(k) == v)
                break
        else:
            if part.startswith("!"):
                key = part[1:].strip()
                reqs.append(lambda lb, k=key: k not in lb)
            elif re.fullmatch(r"[A-Za-z0-9./_-]+", part):
                reqs.append(lambda lb, k=part: k in lb)
            else:
                raise ApiError(400, f"unable to parse requirement: {part!r}")
    return lambda labels: all(r(labels) for r in reqs)


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
    reqs: list[Callable[[dict[str, Any]], bool]] = []
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
        if op == "!=":
            reqs.append(lambda o, f=fld, v=value: (_field_value(o, f) or "") != v)
        else:
            reqs.append(lambda o, f=fld, v=value: (_field_value(o, f) or "") == v)
    return lambda obj: all(r(obj) for r in reqs)
