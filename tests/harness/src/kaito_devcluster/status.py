"""RayJob and RayService status as KubeRay v1.7 writes it, from what Ray reports (pure functions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

JOB_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def rfc3339_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_info_status(info: dict[str, Any]) -> dict[str, Any]:
    """The RayJob status fields KubeRay copies from the dashboard's job info."""
    out: dict[str, Any] = {"jobStatus": info.get("status") or "PENDING", "message": info.get("message") or ""}
    ray_info = {}
    if (start := rfc3339_ms(info.get("start_time"))) is not None:
        ray_info["startTime"] = start
    if (end := rfc3339_ms(info.get("end_time"))) is not None:
        ray_info["endTime"] = end
    if ray_info:
        out["rayJobInfo"] = ray_info
    return out


def cluster_status(state: str = "ready", reason: str = "") -> dict[str, Any]:
    """A RayCluster status block (the stand-in's one local Ray: head only, nothing to scale)."""
    out: dict[str, Any] = {"state": state, "desiredWorkerReplicas": 0, "availableWorkerReplicas": 0}
    if reason:
        out["reason"] = reason
    return out


def _condition(
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int,
    previous: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    old = next((c for c in previous or [] if c.get("type") == ctype), None)
    ltt = (
        old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else now
    )
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": ltt,
        "observedGeneration": generation,
    }


def service_conditions(
    *,
    ready: bool,
    upgrading: bool,
    now: str,
    generation: int,
    previous: list[dict[str, Any]] | None,
    message: str = "",
) -> list[dict[str, Any]]:
    """`Ready` and `UpgradeInProgress` with KubeRay's reasons."""
    if ready:
        ready_c = _condition(
            "Ready",
            "True",
            "NonZeroServeEndpoints",
            "Number of serve endpoints is greater than 0",
            now,
            generation,
            previous,
        )
    else:
        was_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous or [])
        reason = "ZeroServeEndpoints" if was_ready else "Initializing"
        ready_c = _condition(
            "Ready", "False", reason, message or "RayService is initializing", now, generation, previous
        )
    if upgrading:
        up = _condition(
            "UpgradeInProgress",
            "True",
            "BothActivePendingClustersExist",
            "Both active and pending Ray clusters exist",
            now,
            generation,
            previous,
        )
    else:
        up = _condition(
            "UpgradeInProgress",
            "False",
            "NoPendingCluster",
            "No pending Ray cluster found",
            now,
            generation,
            previous,
        )
    return [ready_c, up]


def application_statuses(local: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """KubeRay's applicationStatuses (keyed by the serveConfigV2 names) from Serve's local applications.

    `names` maps the local (unique) application name to the name in serveConfigV2.
    """
    out: dict[str, Any] = {}
    for local_name, app_name in names.items():
        app = local.get(local_name)
        if app is None:
            out[app_name] = {"status": "NOT_STARTED"}
            continue
        entry: dict[str, Any] = {"status": app.get("status") or "NOT_STARTED"}
        if app.get("message"):
            entry["message"] = app["message"]
        deployments = {}
        for dname, dep in (app.get("deployments") or {}).items():
            d: dict[str, Any] = {"status": dep.get("status") or "UPDATING"}
            if dep.get("message"):
                d["message"] = dep["message"]
            deployments[dname] = d
        if deployments:
            entry["serveDeploymentStatuses"] = deployments
        out[app_name] = entry
    return out
