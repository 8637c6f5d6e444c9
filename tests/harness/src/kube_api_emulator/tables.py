"""`Accept: application/json;as=Table` responses: CRD printer columns, sensible columns for built-ins."""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import jsonpath
from .resources import ResourceInfo

Obj = dict[str, Any]


def human_age(ts: str | None, now: dt.datetime | None = None) -> str:
    """Like Kubernetes' `duration.HumanDuration` of the time since `ts`."""
    if not ts:
        return "<unknown>"
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    now = now or dt.datetime.now(dt.UTC)
    secs = int((now - t).total_seconds())
    if secs < 0:
        return "<invalid>"
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        s = secs % 60
        return f"{mins}m{s}s" if s else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = secs // 3600
    if hours < 8:
        m = mins % 60
        return f"{hours}h{m}m" if m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        h = hours % 24
        return f"{days}d{h}h" if h else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _col(name: str, typ: str = "string", fmt: str = "", desc: str = "", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME_COL = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE_COL = _col(
    "Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created."
)


def _age(o: Obj) -> str:
    return human_age(o.get("metadata", {}).get("creationTimestamp"))


def _cond(o: Obj, typ: str) -> str | None:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c.get("status")
    return None


def _pod_row(o: Obj) -> list[Any]:
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    status = st.get("reason") or st.get("phase") or "Unknown"
    if o["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    return [f"{ready}/{total}", status, restarts, _age(o)]


def _node_row(o: Obj) -> list[Any]:
    ready = _cond(o, "Ready")
    status = "Ready" if ready == "True" else "NotReady" if ready else "Unknown"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = o["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")) or [
        "<none>"
    ]
    version = ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [status, ",".join(roles), _age(o), version]


def _svc_row(o: Obj) -> list[Any]:
    spec = o.get("spec") or {}
    ports = (
        ",".join(
            f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}"
            f"/{p.get('protocol', 'TCP')}"
            for p in spec.get("ports") or []
        )
        or "<none>"
    )
    lb = [
        i.get("ip") or i.get("hostname")
        for i in ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    ext = ",".join(x for x in lb if x) or ("<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), ext, ports, _age(o)]


def _deploy_row(o: Obj) -> list[Any]:
    st = o.get("status") or {}
    want = (o.get("spec") or {}).get("replicas", 1)
    return [
        f"{st.get('readyReplicas', 0)}/{want}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        _age(o),
    ]


BUILTIN_TABLES: dict[tuple[str, str], tuple[list[dict[str, Any]], Any]] = {
    ("", "pods"): ([_col("Ready"), _col("Status"), _col("Restarts", "string"), AGE_COL], _pod_row),
    ("", "nodes"): ([_col("Status"), _col("Roles"), AGE_COL, _col("Version")], _node_row),
    ("", "namespaces"): (
        [_col("Status"), AGE_COL],
        lambda o: [(o.get("status") or {}).get("phase", "Active"), _age(o)],
    ),
    ("", "services"): (
        [_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE_COL],
        _svc_row,
    ),
    ("", "configmaps"): (
        [_col("Data", "integer"), AGE_COL],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)],
    ),
    ("", "secrets"): (
        [_col("Type"), _col("Data", "integer"), AGE_COL],
        lambda o: [o.get("type", "Opaque"), len(o.get("data") or {}), _age(o)],
    ),
    ("", "serviceaccounts"): (
        [_col("Secrets", "integer"), AGE_COL],
        lambda o: [len(o.get("secrets") or []), _age(o)],
    ),
    ("", "events"): (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        lambda o: [
            human_age(o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")),
            o.get("type", ""),
            o.get("reason", ""),
            f"{(o.get('involvedObject') or {}).get('kind', '').lower()}/"
            f"{(o.get('involvedObject') or {}).get('name', '')}",
            o.get("message", ""),
        ],
    ),
    ("events.k8s.io", "events"): (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        lambda o: [
            human_age(
                o.get("deprecatedLastTimestamp")
                or o.get("eventTime")
                or o["metadata"].get("creationTimestamp")
            ),
            o.get("type", ""),
            o.get("reason", ""),
            f"{(o.get('regarding') or {}).get('kind', '').lower()}/"
            f"{(o.get('regarding') or {}).get('name', '')}",
            o.get("note", ""),
        ],
    ),
    ("apps", "deployments"): (
        [_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), AGE_COL],
        _deploy_row,
    ),
    ("coordination.k8s.io", "leases"): (
        [_col("Holder"), AGE_COL],
        lambda o: [(o.get("spec") or {}).get("holderIdentity", ""), _age(o)],
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [_col("Created At", "date")],
        lambda o: [o["metadata"].get("creationTimestamp")],
    ),
}


def _cell(o: Obj, col: dict[str, Any]) -> Any:
    try:
        found = jsonpath.find(o, col["jsonPath"])
    except (ValueError, KeyError):
        return None
    if not found:
        return None
    v = found[0]
    typ = col.get("type", "string")
    if typ == "date":
        return human_age(v) if isinstance(v, str) else None
    if typ == "integer" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    if typ == "number" and isinstance(v, (int, float)):
        return v
    if typ == "boolean" and isinstance(v, bool):
        return v
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v, separators=(",", ":"))
    return str(v) if not isinstance(v, str) else v


def columns_and_rows(
    info: ResourceInfo, version: str, objs: list[Obj]
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    if info.builtin:
        spec = BUILTIN_TABLES.get(info.key)
        if spec and info.plural == "events":
            # as the real server: events list without a NAME column (it is a priority-1, -o wide, column)
            cols, fn = spec
            wide_name = {**NAME_COL, "priority": 1}
            return [*cols, wide_name], [[*fn(o), o["metadata"]["name"]] for o in objs]
        if spec:
            cols, fn = spec
            return [NAME_COL, *cols], [[o["metadata"]["name"], *fn(o)] for o in objs]
        return [NAME_COL, AGE_COL], [[o["metadata"]["name"], _age(o)] for o in objs]
    crd_cols = info.printer_columns.get(version) or []
    if not crd_cols:
        return [NAME_COL, AGE_COL], [[o["metadata"]["name"], _age(o)] for o in objs]
    cols = [NAME_COL] + [
        _col(
            c["name"],
            c.get("type", "string"),
            c.get("format", ""),
            c.get("description", ""),
            c.get("priority", 0),
        )
        for c in crd_cols
    ]
    rows = [[o["metadata"]["name"], *[_cell(o, c) for c in crd_cols]] for o in objs]
    return cols, rows


def partial_metadata(o: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata", {}),
    }


def table(
    info: ResourceInfo,
    version: str,
    objs: list[Obj],
    rv: str,
    include_object: str = "Metadata",
    cont: str | None = None,
) -> Obj:
    cols, rows = columns_and_rows(info, version, objs)
    out_rows = []
    for o, cells in zip(objs, rows, strict=True):
        row: Obj = {"cells": cells}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = partial_metadata(o)
        out_rows.append(row)
    md: Obj = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": md,
        "columnDefinitions": cols,
        "rows": out_rows,
    }
