"""What every reconciler needs: the cluster, the cloud, events, settings, in-flight launches, a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..adapters import Adapter, adapter_for
from ..events import EventRecorder
from ..kube import KubeClient, custom_path, node_path
from ..model import Claim, utcnow
from ..providers.base import CloudProvider
from ..settings import Settings


@dataclass
class Result:
    """What a sub-reconciler asks for: look again after ``requeue`` seconds, or stop (claim deleted)."""

    requeue: float | None = None
    deleted: bool = False


@dataclass
class Context:
    kube: KubeClient
    provider: CloudProvider
    events: EventRecorder
    settings: Settings
    now: Callable[[], datetime] = utcnow
    launches: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    # called with (kind, name) when something finishes in the background (a launch task)
    wake: Callable[[str, str], None] = lambda kind, name: None

    def claim_path(self, claim: Claim, adapter: Adapter | None = None) -> str:
        a = adapter or adapter_for(claim)
        return custom_path(a.group, a.version, a.plural, claim.name)

    def backoff(self, claim: Claim) -> float:
        """Exponential back-off per claim, so that nothing hot-loops on a persistent failure."""
        n = self.failures.get(claim.uid, 0)
        self.failures[claim.uid] = n + 1
        return min(self.settings.backoff_base * (2**n), self.settings.backoff_max)

    def reset_backoff(self, claim: Claim) -> None:
        self.failures.pop(claim.uid, None)

    async def nodes_for(self, claim: Claim) -> list[dict[str, Any]]:
        """Nodes whose spec.providerID is the claim's (and, before launch completes, the one it named)."""
        nodes = await self.kube.list(node_path())
        if claim.provider_id:
            return [n for n in nodes if (n.get("spec") or {}).get("providerID") == claim.provider_id]
        if claim.node_name:
            return [n for n in nodes if n["metadata"]["name"] == claim.node_name]
        return []

    async def delete_claim(self, claim: Claim) -> None:
        await self.kube.delete(self.claim_path(claim))
