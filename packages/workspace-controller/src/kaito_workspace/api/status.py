"""Workspace status: Kaito's conditions, worker nodes and state, plus a tuning progress block."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import ApiModel

# Kaito's condition types (the printer columns show the first five).
CONDITION_RESOURCE_READY = "ResourceReady"
CONDITION_INFERENCE_READY = "InferenceReady"
CONDITION_JOB_STARTED = "JobStarted"
CONDITION_WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
CONDITION_WORKSPACE_READY = "WorkspaceReady"
CONDITION_TYPES = (
    CONDITION_RESOURCE_READY,
    CONDITION_INFERENCE_READY,
    CONDITION_JOB_STARTED,
    CONDITION_WORKSPACE_SUCCEEDED,
    CONDITION_WORKSPACE_READY,
)


class Condition(ApiModel):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class TuningProgress(ApiModel):
    """Progress of a tuning job, copied from the runtime's progress file (camelCase here)."""

    state: str | None = None  # Pending | Running | Succeeded | Failed
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = Field(default=None, strict=False)
    loss: float | None = Field(default=None, strict=False)
    learning_rate: float | None = Field(default=None, strict=False)
    tokens_per_second: float | None = Field(default=None, strict=False)
    eta_seconds: float | None = Field(default=None, strict=False)
    updated_at: str | None = None
    message: str | None = None
    # Human summary shown in `kubectl get workspace -o wide`, e.g. "120/500 (24%)".
    progress: str | None = None

    @classmethod
    def from_progress_file(cls, data: dict[str, Any]) -> TuningProgress:
        """Build the status block from the runtime's progress JSON (snake_case keys, see contracts)."""
        known = {k: data.get(k) for k in cls.model_fields if k != "progress"}
        prog = cls.model_validate({k: v for k, v in known.items() if v is not None}, strict=False)
        prog.progress = prog.summary()
        return prog

    def summary(self) -> str | None:
        if self.step is None:
            return self.state
        if self.total_steps:
            pct = int(100 * self.step / self.total_steps)
            return f"{self.step}/{self.total_steps} ({pct}%)"
        return str(self.step)


class WorkspaceStatus(ApiModel):
    conditions: list[Condition] | None = None
    worker_nodes: list[str] | None = None
    target_node_count: int | None = None
    state: str | None = None
    performance: dict[str, Any] | None = None
    tuning: TuningProgress | None = None
    # The Ray dashboard of the workspace's Ray cluster.
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions or []:
            if c.type == type_:
                return c
        return None
