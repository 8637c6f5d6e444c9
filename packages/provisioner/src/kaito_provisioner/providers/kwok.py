"""kwok: simulated nodes (like Karpenter's kwok provider) for local clusters, demos and end-to-end tests.

``create`` waits ``launch_delay`` then creates a Node (providerID ``kwok://<claim>``) with the capacity of
the instance type (GPUs included), the claim's labels and taints, and Karpenter's ``unregistered`` taint.
A small "kubelet" loop (:meth:`KwokProvider.run`) marks nodes Ready ``ready_delay`` after they appear,
so it also heals after an operator restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from ..adapters import format_time, parse_time
from ..instancetypes import lookup
from ..kube import KubeClient, node_path
from ..model import (
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_TYPE,
    LABEL_OS,
    UNREGISTERED_TAINT_KEY,
    Claim,
    utcnow,
)
from .base import Checkpoint, CloudProviderError, Instance, NotFoundError

log = logging.getLogger(__name__)
KWOK_LABEL = "kwok.x-k8s.io/node"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
PREFIX = "kwok://"


class KwokProvider:
    name = "kwok"

    def __init__(
        self,
        kube: KubeClient,
        *,
        launch_delay: float = 0.0,
        ready_delay: float = 1.0,
        zone: str = "kwok-zone-1",
    ) -> None:
        self.kube = kube
        self.launch_delay = launch_delay
        self.ready_delay = ready_delay
        self.zone = zone

    async def create(self, claim: Claim, checkpoint: Checkpoint) -> Instance:
        existing = await self.kube.get(node_path(claim.name))
        if existing is not None:
            return self._instance(existing)
        itype = lookup(claim.instance_type)
        if itype is None:
            raise CloudProviderError(
                "InstanceTypeNotFound",
                f"instance type {claim.instance_type!r} is not in the kwok catalog "
                f"(set requirement {LABEL_INSTANCE_TYPE} In [<an Azure GPU VM size>])",
                retryable=False,
            )
        if self.launch_delay:
            await asyncio.sleep(self.launch_delay)
        capacity = itype.capacity()
        labels = {
            **claim.labels,
            **claim.single_value_labels(),
            LABEL_INSTANCE_TYPE: itype.name,
            LABEL_CAPACITY_TYPE: "on-demand",
            LABEL_OS: "linux",
            LABEL_ARCH: "amd64",
            "topology.kubernetes.io/zone": self.zone,
            "kubernetes.io/hostname": claim.name,
            KWOK_LABEL: "fake",
        }
        taints = [t.to_api() for t in [*claim.taints, *claim.startup_taints]]
        taints.append({"key": UNREGISTERED_TAINT_KEY, "effect": "NoExecute"})
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": claim.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"providerID": PREFIX + claim.name, "taints": taints},
        }
        created = await self.kube.create(node_path(), node)
        await self.kube.patch(
            node_path(claim.name) + "/status",
            {"status": {"capacity": capacity, "allocatable": capacity, "conditions": _conditions(False)}},
        )
        log.info("kwok: created node %s (%s)", claim.name, itype.name)
        return self._instance(created, capacity)

    async def delete(self, claim: Claim) -> None:
        name = claim.provider_id.removeprefix(PREFIX) if claim.provider_id else claim.name
        node = await self.kube.get(node_path(name))
        if node is None or not (node.get("spec") or {}).get("providerID", "").startswith(PREFIX):
            raise NotFoundError(name)
        if node["metadata"].get("deletionTimestamp"):
            # The simulated machine is gone once its Node is being deleted (only finalizers hold it).
            raise NotFoundError(name)
        await self.kube.delete(node_path(name))

    async def get(self, provider_id: str) -> Instance:
        node = await self.kube.get(node_path(provider_id.removeprefix(PREFIX)))
        if node is None or (node.get("spec") or {}).get("providerID") != provider_id:
            raise NotFoundError(provider_id)
        if node["metadata"].get("deletionTimestamp"):
            raise NotFoundError(provider_id)  # the simulated machine is being torn down
        return self._instance(node)

    async def list(self) -> list[Instance]:
        nodes = await self.kube.list(node_path(), label_selector=f"{KWOK_LABEL}=fake")
        return [self._instance(n) for n in nodes]

    async def close(self) -> None:
        return None

    async def run(self, interval: float = 0.5) -> None:
        """The simulated kubelet: mark kwok nodes Ready once they are ``ready_delay`` old."""
        while True:
            with contextlib.suppress(Exception):
                await self._mark_ready()
            await asyncio.sleep(interval)

    async def _mark_ready(self) -> None:
        now = utcnow()
        for node in await self.kube.list(node_path(), label_selector=f"{KWOK_LABEL}=fake"):
            meta = node["metadata"]
            if meta.get("deletionTimestamp") or _is_ready(node):
                continue
            created = parse_time(meta.get("creationTimestamp")) or now
            if now - created < timedelta(seconds=self.ready_delay):
                continue
            await self.kube.patch(
                node_path(meta["name"]) + "/status", {"status": {"conditions": _conditions(True)}}
            )
            log.info("kwok: node %s is Ready", meta["name"])

    def _instance(self, node: dict[str, Any], capacity: dict[str, str] | None = None) -> Instance:
        meta = node["metadata"]
        labels = meta.get("labels") or {}
        status = node.get("status") or {}
        cap = capacity or status.get("capacity") or {}
        return Instance(
            name=meta["name"],
            provider_id=(node.get("spec") or {}).get("providerID", ""),
            instance_type=labels.get(LABEL_INSTANCE_TYPE, ""),
            image_id="kwok",
            capacity=dict(cap),
            allocatable=dict(status.get("allocatable") or cap),
            labels={
                k: v
                for k, v in labels.items()
                if k
                in (
                    LABEL_INSTANCE_TYPE,
                    LABEL_CAPACITY_TYPE,
                    LABEL_OS,
                    LABEL_ARCH,
                    "topology.kubernetes.io/zone",
                )
            },
            created_at=parse_time(meta.get("creationTimestamp")),
            state="Ready" if _is_ready(node) else "Creating",
        )


def _is_ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def _conditions(ready: bool) -> list[dict[str, str]]:
    now = format_time(utcnow())
    return [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "kubelet is starting",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    ]
