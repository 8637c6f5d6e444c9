"""Prometheus metrics of the workspace controller."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter("kaito_workspace_reconcile_total", "Workspace reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram("kaito_workspace_reconcile_seconds", "Time spent in one reconcile")
OBJECTS_CREATED = Counter(
    "kaito_workspace_objects_created_total", "Objects created by the controller", ["kind"]
)
EVENTS_TOTAL = Counter("kaito_workspace_events_total", "Events posted", ["type", "reason"])
WORKSPACE_STATE = Gauge(
    "kaito_workspace_state", "1 for the current state of each workspace", ["namespace", "name", "state"]
)
ADMISSION_TOTAL = Counter("kaito_workspace_admission_total", "Admission reviews by result", ["allowed"])
