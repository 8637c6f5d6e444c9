"""Kubernetes Events on claims (best effort: a failed event never fails a reconcile)."""

from __future__ import annotations

import logging
import time
import uuid

from .adapters import format_time
from .kube import KubeClient
from .model import Claim, utcnow

log = logging.getLogger(__name__)
COMPONENT = "gpu-provisioner"


class EventRecorder:
    def __init__(self, kube: KubeClient, namespace: str = "default", dedupe_seconds: float = 60.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self.dedupe_seconds = dedupe_seconds
        self._recent: dict[tuple[str, str, str], float] = {}

    async def record(self, claim: Claim, type_: str, reason: str, message: str) -> None:
        key = (claim.uid or claim.name, reason, message)
        now = time.monotonic()
        if now - self._recent.get(key, -1e9) < self.dedupe_seconds:
            return
        self._recent[key] = now
        if len(self._recent) > 5000:
            self._recent = {k: v for k, v in self._recent.items() if now - v < self.dedupe_seconds}
        stamp = format_time(utcnow())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{claim.name}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": claim.api_version,
                "kind": claim.kind,
                "name": claim.name,
                "uid": claim.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.kube.create(f"/api/v1/namespaces/{self.namespace}/events", body)
        except Exception as exc:  # events are advisory
            log.debug("event %s on %s not recorded: %s", reason, claim.name, exc)
