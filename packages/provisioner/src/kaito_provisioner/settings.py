"""Operator settings (flags and environment), validated once at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Settings(BaseModel):
    provider: Literal["azure", "kwok"]
    events_namespace: str = "default"
    # Liveness (seconds; 0 disables). Registration is measured from launch, launch from creation.
    registration_timeout: float = Field(default=900.0, ge=0)
    launch_timeout: float = Field(default=1800.0, ge=0)
    # How often to look again while waiting for a Node to register / initialize.
    registration_poll: float = Field(default=5.0, gt=0)
    # Garbage collection of orphaned instances and of claims whose instance vanished.
    gc_interval: float = Field(default=120.0, gt=0)
    gc_grace: float = Field(default=120.0, ge=0)
    # Back-off for failed launches and deletions.
    backoff_base: float = Field(default=5.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    watch_machines: bool = True
    # kwok
    kwok_launch_delay: float = Field(default=1.0, ge=0)
    kwok_ready_delay: float = Field(default=2.0, ge=0)
