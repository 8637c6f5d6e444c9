"""The cloud provider contract (Karpenter's, narrowed to what a GPU provisioner needs).

``create`` returns the launched instance (it may take minutes: the operator runs it as a task and records
progress through the :class:`Checkpoint`), ``delete`` raises :class:`NotFoundError` once the instance is
gone, ``get`` / ``list`` look instances up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field

from ..model import Claim


class Instance(BaseModel):
    """What the provider knows about one launched machine."""

    name: str
    provider_id: str = ""
    instance_type: str = ""
    image_id: str = ""
    capacity: dict[str, str] = Field(default_factory=dict)
    allocatable: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    state: str = ""


class CloudProviderError(Exception):
    """A launch or API failure with a Karpenter-style reason shown on the ``Launched`` condition."""

    def __init__(self, reason: str, message: str, *, capacity: bool = False, retryable: bool = True) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        # Insufficient capacity: Karpenter deletes the claim so that it can be retried elsewhere.
        self.capacity = capacity
        self.retryable = retryable


class NotFoundError(Exception):
    """The instance does not exist (any more)."""


class Checkpoint(Protocol):
    """Where a long create records how to resume (the operator keeps it as an annotation on the claim)."""

    def load(self) -> str | None: ...

    async def save(self, value: str | None) -> None: ...


class MemoryCheckpoint:
    """A checkpoint held in memory (tests, one-shot CLI use)."""

    def __init__(
        self, value: str | None = None, on_save: Callable[[str | None], Awaitable[None]] | None = None
    ):
        self.value = value
        self._on_save = on_save

    def load(self) -> str | None:
        return self.value

    async def save(self, value: str | None) -> None:
        self.value = value
        if self._on_save is not None:
            await self._on_save(value)


class CloudProvider(Protocol):
    name: str

    async def create(self, claim: Claim, checkpoint: Checkpoint) -> Instance: ...

    async def delete(self, claim: Claim) -> None:
        """Start or continue deleting the claim's instance; raises NotFoundError when it is gone."""
        ...

    async def get(self, provider_id: str) -> Instance: ...

    async def list(self) -> list[Instance]: ...

    async def close(self) -> None: ...
