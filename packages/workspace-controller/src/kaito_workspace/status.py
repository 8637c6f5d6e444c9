"""Workspace status from observed objects: conditions, state, worker nodes, dashboard URL, progress.

Pure functions of what the operator observed (NodeClaims, Nodes, RayJob/RayService status, the tuning
progress JSON), tested by value. `lastTransitionTime` only moves when a condition's status changes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from kaito_workspace.api import (
    CONDITION_INFERENCE_READY,
    CONDITION_JOB_STARTED,
    CONDITION_RESOURCE_READY,
    CONDITION_WORKSPACE_READY,
    CONDITION_WORKSPACE_SUCCEEDED,
    TuningProgress,
)

Status = Literal["True", "False", "Unknown"]
PROGRESS_MARKER = "KAITO_PROGRESS "
SERVE_APP = "kaito"

# KubeRay RayJob status values (ray.io/v1).
JOB_SUCCEEDED = "SUCCEEDED"
JOB_FAILED_STATES = ("FAILED", "STOPPED")
DEPLOYMENT_COMPLETE = "Complete"
DEPLOYMENT_FAILED = "Failed"
JOB_STARTED_DEPLOYMENT = ("Running", "Complete", "Failed", "Retrying")

STATE_PENDING = "Pending"
STATE_RUNNING = "Running"
STATE_SUCCEEDED = "Succeeded"
STATE_FAILED = "Failed"
STATE_DEPLOYING = "Deploying"
STATE_READY = "Ready"
STATE_DELETING = "Deleting"


class Cond(BaseModel):
    type: str
    status: Status
    reason: str
    message: str = ""


class Observed(BaseModel):
    """What the operator saw for one workspace."""

    mode: Literal["tuning", "inference"]
    generation: int = 1
    target_nodes: int = 1
    nodeclaims: list[dict[str, Any]] = Field(default_factory=list)
    byo_nodes: list[str] = Field(default_factory=list)
    #: Names of Nodes (from NodeClaims or BYO) that exist and are Ready.
    ready_nodes: list[str] = Field(default_factory=list)
    waiting_message: str | None = None
    rayjob: dict[str, Any] | None = None
    rayservice: dict[str, Any] | None = None
    serve_after_tuning: bool = False
    progress: dict[str, Any] | None = None
    service_dashboard_url: str | None = None
    deleting: bool = False


# ------------------------------------------------------------------------------------------ nodes
def nodeclaim_ready(nc: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in nc.get("status", {}).get("conditions", [])
    )


def nodeclaim_blocker(nc: dict[str, Any]) -> tuple[str, str]:
    """The reason a NodeClaim is not ready, as Karpenter reported it (e.g. a quota error when launching)."""
    name = nc.get("metadata", {}).get("name", "?")
    conditions = {c.get("type"): c for c in nc.get("status", {}).get("conditions", [])}
    for ctype in ("Launched", "Registered", "Initialized", "Ready"):
        c = conditions.get(ctype)
        if c is not None and c.get("status") == "False":
            reason = c.get("reason") or f"NodeClaimNot{ctype}"
            return reason, f"NodeClaim {name}: {c.get('message') or reason}"
    for ctype in ("Launched", "Registered", "Initialized", "Ready"):
        c = conditions.get(ctype)
        if c is None or c.get("status") != "True":
            return "NodeClaimPending", f"NodeClaim {name} is not {ctype.lower()} yet"
    return "NodeClaimPending", f"NodeClaim {name} is waiting for its node"


def resource_condition(obs: Observed) -> Cond:
    ready = len(obs.ready_nodes)
    if ready >= obs.target_nodes:
        return Cond(
            type=CONDITION_RESOURCE_READY,
            status="True",
            reason="NodesReady",
            message=f"{ready}/{obs.target_nodes} node(s) ready",
        )
    for nc in sorted(obs.nodeclaims, key=lambda n: n.get("metadata", {}).get("name", "")):
        if not nodeclaim_ready(nc):
            reason, message = nodeclaim_blocker(nc)
            return Cond(type=CONDITION_RESOURCE_READY, status="False", reason=reason, message=message)
    message = obs.waiting_message or f"{ready}/{obs.target_nodes} node(s) ready"
    return Cond(type=CONDITION_RESOURCE_READY, status="False", reason="NodesNotReady", message=message)


# ------------------------------------------------------------------------------------------ tuning
def job_conditions(job: dict[str, Any] | None) -> tuple[Cond, Cond]:
    """(JobStarted, WorkspaceSucceeded) from a RayJob's status."""
    if job is None:
        return (
            Cond(
                type=CONDITION_JOB_STARTED,
                status="False",
                reason="JobNotCreated",
                message="waiting for nodes",
            ),
            Cond(type=CONDITION_WORKSPACE_SUCCEEDED, status="Unknown", reason="JobNotCreated"),
        )
    st = job.get("status") or {}
    job_status = st.get("jobStatus") or ""
    deployment = st.get("jobDeploymentStatus") or ""
    message = st.get("message") or ""
    name = job.get("metadata", {}).get("name", "")
    started = deployment in JOB_STARTED_DEPLOYMENT or job_status not in ("", "PENDING")
    if started:
        js = Cond(
            type=CONDITION_JOB_STARTED,
            status="True",
            reason="JobStarted",
            message=f"RayJob {name}: {job_status or deployment}",
        )
    else:
        js = Cond(
            type=CONDITION_JOB_STARTED,
            status="False",
            reason="JobPending",
            message=f"RayJob {name}: {deployment or 'created'}" + (f": {message}" if message else ""),
        )
    if job_status == JOB_SUCCEEDED and deployment == DEPLOYMENT_COMPLETE:
        ws = Cond(
            type=CONDITION_WORKSPACE_SUCCEEDED,
            status="True",
            reason="JobSucceeded",
            message=f"RayJob {name} succeeded",
        )
    elif job_status in JOB_FAILED_STATES or deployment == DEPLOYMENT_FAILED:
        reason = "JobStopped" if job_status == "STOPPED" else "JobFailed"
        detail = summarize_job_message(message) or st.get("reason") or job_status or deployment
        ws = Cond(
            type=CONDITION_WORKSPACE_SUCCEEDED,
            status="False",
            reason=reason,
            message=f"RayJob {name} {job_status.lower() or 'failed'}: {detail}",
        )
    else:
        ws = Cond(
            type=CONDITION_WORKSPACE_SUCCEEDED,
            status="Unknown",
            reason="JobRunning" if started else "JobPending",
            message=f"RayJob {name}: {job_status or deployment or 'pending'}",
        )
    return js, ws


MAX_MESSAGE = 1000


def summarize_job_message(message: str) -> str:
    """KubeRay's failure message, short: its first line plus the runtime's last error line.

    KubeRay appends up to 20,000 characters of job logs ("last available logs ..."); a condition or an
    Event needs the cause (e.g. the URL that answered 404), not the whole log.
    """
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return ""
    head = lines[0].split(", last available logs")[0].rstrip(":")
    rest = lines[1:]
    cause = next((ln for ln in reversed(rest) if "error" in ln.lower()), rest[-1] if rest else "")
    text = f"{head}: {cause}" if cause and cause not in head else head
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


# --------------------------------------------------------------------------------------- inference
def inference_condition(svc: dict[str, Any] | None) -> Cond:
    """InferenceReady: the RayService is Ready and its Serve application RUNNING."""
    if svc is None:
        return Cond(type=CONDITION_INFERENCE_READY, status="False", reason="RayServiceNotCreated")
    name = svc.get("metadata", {}).get("name", "")
    st = svc.get("status") or {}
    apps = (st.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    pending_apps = (st.get("pendingServiceStatus") or {}).get("applicationStatuses") or {}
    for source in (apps, pending_apps):
        for app_name, app in source.items():
            status = (app or {}).get("status", "")
            if status in ("DEPLOY_FAILED", "UNHEALTHY"):
                detail = (app or {}).get("message") or _deployment_messages(app)
                return Cond(
                    type=CONDITION_INFERENCE_READY,
                    status="False",
                    reason="DeployFailed" if status == "DEPLOY_FAILED" else "Unhealthy",
                    message=f"RayService {name} application {app_name} {status}: {detail}".strip(),
                )
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    app = apps.get(SERVE_APP) or (next(iter(apps.values())) if apps else None)
    app_status = (app or {}).get("status", "")
    if ready is not None and ready.get("status") == "True" and app_status == "RUNNING":
        return Cond(
            type=CONDITION_INFERENCE_READY,
            status="True",
            reason="InferenceReady",
            message=f"RayService {name} is serving",
        )
    detail = ready.get("message") or ready.get("reason") if ready else None
    return Cond(
        type=CONDITION_INFERENCE_READY,
        status="False",
        reason="Deploying",
        message=f"RayService {name}: application {app_status or 'not deployed yet'}"
        + (f"; {detail}" if detail else ""),
    )


def _deployment_messages(app: dict[str, Any] | None) -> str:
    msgs = []
    for dname, d in ((app or {}).get("serveDeploymentStatuses") or {}).items():
        if d.get("message"):
            msgs.append(f"{dname}: {d['message']}")
    return "; ".join(msgs)


def active_cluster(svc: dict[str, Any] | None) -> str | None:
    if not svc:
        return None
    return ((svc.get("status") or {}).get("activeServiceStatus") or {}).get("rayClusterName") or None


# ---------------------------------------------------------------------------------------- progress
def parse_progress_logs(logs: str) -> dict[str, Any] | None:
    """The latest progress record in a Ray job's logs.

    The tuning runtime prints `KAITO_PROGRESS {json}` (the progress file's content) whenever it updates
    the progress file; Ray prefixes worker lines with e.g. `(RayTrainWorker pid=1)`, so the marker is
    searched anywhere in the line.
    """
    for line in reversed(logs.splitlines()):
        idx = line.find(PROGRESS_MARKER)
        if idx < 0:
            continue
        try:
            data = json.loads(line[idx + len(PROGRESS_MARKER) :])
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def progress_block(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    if not progress:
        return None
    return TuningProgress.from_progress_file(progress).to_dict()


# ------------------------------------------------------------------------------------------- merge
def merge_conditions(
    previous: list[dict[str, Any]] | None, new: list[Cond], *, now: str, generation: int
) -> list[dict[str, Any]]:
    """metav1.Condition dicts; lastTransitionTime kept from `previous` when the status did not change."""
    prev = {c.get("type"): c for c in previous or []}
    out = []
    for c in new:
        old = prev.get(c.type)
        ltt = (
            old["lastTransitionTime"]
            if old and old.get("status") == c.status and old.get("lastTransitionTime")
            else now
        )
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": ltt,
                "observedGeneration": generation,
            }
        )
    return out


def compute_conditions(obs: Observed) -> tuple[list[Cond], str]:
    """The conditions and the state for what was observed."""
    res = resource_condition(obs)
    conds = [res]
    failed = False
    if obs.mode == "tuning":
        js, succ = job_conditions(obs.rayjob)
        conds += [js, succ]
        failed = succ.status == "False"
        done = succ.status == "True"
        if obs.serve_after_tuning and done:
            inf = inference_condition(obs.rayservice)
            conds.append(inf)
            ready = inf.status == "True"
            failed = failed or inf.reason in ("DeployFailed", "Unhealthy")
            message = "tuning succeeded and the tuned adapter is served" if ready else inf.message
        else:
            ready = done
            message = succ.message if done or failed else js.message if res.status == "True" else res.message
        if failed:
            state = STATE_FAILED
        elif ready:
            state = STATE_READY if obs.serve_after_tuning else STATE_SUCCEEDED
        elif done:
            state = STATE_SUCCEEDED
        elif js.status == "True":
            state = STATE_RUNNING
        else:
            state = STATE_PENDING
    else:
        if res.status == "True" or obs.rayservice:
            inf = inference_condition(obs.rayservice)
        else:
            inf = Cond(
                type=CONDITION_INFERENCE_READY, status="False", reason="WaitingForNodes", message=res.message
            )
        conds.append(inf)
        ready = res.status == "True" and inf.status == "True"
        failed = inf.reason in ("DeployFailed", "Unhealthy")
        message = inf.message if res.status == "True" else res.message
        state = (
            STATE_READY
            if ready
            else STATE_FAILED
            if failed
            else (STATE_DEPLOYING if res.status == "True" else STATE_PENDING)
        )
    if obs.deleting:
        state = STATE_DELETING
    conds.append(
        Cond(
            type=CONDITION_WORKSPACE_READY,
            status="True" if ready else "False",
            reason="WorkspaceReady" if ready else ("WorkspaceFailed" if failed else "WorkspaceNotReady"),
            message=message or "",
        )
    )
    return conds, state


def dashboard_url(obs: Observed) -> str | None:
    if obs.rayjob is not None:
        url = (obs.rayjob.get("status") or {}).get("dashboardURL")
        if url:
            return url if "://" in url else f"http://{url}"
    return obs.service_dashboard_url


def compute_status(obs: Observed, *, previous: dict[str, Any] | None = None, now: str) -> dict[str, Any]:
    """The Workspace `status` the operator writes."""
    conds, state = compute_conditions(obs)
    status: dict[str, Any] = {
        "conditions": merge_conditions(
            (previous or {}).get("conditions"), conds, now=now, generation=obs.generation
        ),
        "state": state,
        "workerNodes": sorted(obs.ready_nodes),
        "targetNodeCount": obs.target_nodes,
    }
    url = dashboard_url(obs)
    if url:
        status["dashboardURL"] = url
    prog = progress_block(obs.progress)
    if prog:
        status["tuning"] = prog
    return status


def invalid_status(
    problems: list[str], *, previous: dict[str, Any] | None = None, now: str, generation: int
) -> dict[str, Any]:
    """Status for a workspace that failed validation or planning (the webhook was off or bypassed)."""
    message = "; ".join(problems)
    cond = Cond(type=CONDITION_WORKSPACE_READY, status="False", reason="InvalidWorkspace", message=message)
    kept = [c for c in (previous or {}).get("conditions") or [] if c.get("type") != CONDITION_WORKSPACE_READY]
    return {
        "conditions": kept
        + merge_conditions((previous or {}).get("conditions"), [cond], now=now, generation=generation),
        "state": STATE_FAILED,
    }
