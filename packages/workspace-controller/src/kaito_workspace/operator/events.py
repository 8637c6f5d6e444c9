"""Kubernetes Events on the Workspace (what `kubectl describe workspace` shows)."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from kaito_workspace.operator.kube import EVENTS, Kube, KubeError

log = logging.getLogger(__name__)
COMPONENT = "kaito-workspace-controller"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(obj: dict[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
    md = obj["metadata"]
    ts = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{md['name']}.{secrets.token_hex(8)}",
            "namespace": md.get("namespace", "default"),
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": md["name"],
            "namespace": md.get("namespace", "default"),
            "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }


class Recorder:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def emit(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event; a failure to post is logged, never fatal for the reconcile."""
        from kaito_workspace.operator.metrics import EVENTS_TOTAL

        EVENTS_TOTAL.labels(type=type_, reason=reason).inc()
        log.info(
            "%s %s/%s %s: %s",
            type_,
            obj["metadata"].get("namespace"),
            obj["metadata"]["name"],
            reason,
            message,
        )
        try:
            await self.kube.post(
                EVENTS, obj["metadata"].get("namespace", "default"), event_body(obj, type_, reason, message)
            )
        except KubeError as e:
            log.warning("could not post event %s: %s", reason, e)

    async def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self.emit(obj, "Normal", reason, message)

    async def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self.emit(obj, "Warning", reason, message)
