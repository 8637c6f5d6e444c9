"""The `scale` subresource (autoscaling/v1 Scale) of Deployments, StatefulSets, ReplicaSets and of CRDs
that declare `subresources.scale`."""

from __future__ import annotations

from typing import Any

from . import jsonpath
from .errors import ApiError
from .resources import ResourceInfo
from .selectors import label_selector_to_string

Obj = dict[str, Any]


def _get(obj: Obj, path: str | None) -> Any:
    if not path:
        return None
    found = jsonpath.find(obj, path)
    return found[0] if found else None


def to_scale(info: ResourceInfo, obj: Obj) -> Obj:
    sc = info.scale_subresource or {}
    md = obj["metadata"]
    selector = _get(obj, sc.get("labelSelectorPath"))
    if isinstance(selector, dict):  # built-ins keep a LabelSelector; Scale carries its string form
        selector = label_selector_to_string(selector)
    status: Obj = {"replicas": int(_get(obj, sc.get("statusReplicasPath")) or 0)}
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md
        },
        "spec": {"replicas": int(_get(obj, sc.get("specReplicasPath")) or 0)},
        "status": status,
    }


def set_replicas(info: ResourceInfo, obj: Obj, replicas: Any) -> Obj:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(
            422,
            f'Scale.autoscaling "{obj["metadata"]["name"]}" is invalid: spec.replicas: Invalid value: '
            f"{replicas!r}: must be greater than or equal to 0",
        )
    path = (info.scale_subresource or {}).get("specReplicasPath", ".spec.replicas")
    parts = [p for p in path.split(".") if p]
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = replicas
    return obj
