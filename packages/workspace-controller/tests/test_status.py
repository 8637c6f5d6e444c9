"""Status computation by value: what `kubectl get workspace` shows for each observed situation."""

from __future__ import annotations

from typing import Any

from kaito_workspace.status import (
    Observed,
    active_cluster,
    compute_status,
    invalid_status,
    parse_progress_logs,
    summarize_job_message,
)

NOW = "2026-11-28T12:00:00Z"
LATER = "2026-11-28T12:05:00Z"


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def nodeclaim(name: str, **conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": m} for t, (s, r, m) in conditions.items()
            ]
        },
    }


def rayjob(job_status: str = "", deployment: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    st = {"jobStatus": job_status, "jobDeploymentStatus": deployment, "message": message, **extra}
    return {"metadata": {"name": "tune"}, "status": st}


def rayservice(ready: bool, app_status: str, message: str = "", cluster: str = "svc-abcde") -> dict[str, Any]:
    return {
        "metadata": {"name": "svc"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "x"}],
            "activeServiceStatus": {
                "rayClusterName": cluster,
                "applicationStatuses": {"kaito": {"status": app_status, "message": message}},
            },
        },
    }


def test_quota_error_surfaces_in_resource_ready() -> None:
    nc = nodeclaim(
        "ws123456789",
        Launched=(
            "False",
            "QuotaExceeded",
            "Operation could not be completed as it results in exceeding quota",
        ),
        Ready=("Unknown", "AwaitingReconciliation", ""),
    )
    st = compute_status(Observed(mode="tuning", nodeclaims=[nc]), now=NOW)
    c = next(c for c in st["conditions"] if c["type"] == "ResourceReady")
    assert (c["status"], c["reason"]) == ("False", "QuotaExceeded")
    assert "exceeding quota" in c["message"] and "ws123456789" in c["message"]
    assert st["state"] == "Pending"
    assert conds(st)["JobStarted"] == ("False", "JobNotCreated")
    assert conds(st)["WorkspaceReady"][0] == "False"


def test_pending_nodeclaim_says_what_it_waits_for() -> None:
    nc = nodeclaim("wsa", Launched=("True", "Launched", ""))
    st = compute_status(Observed(mode="inference", nodeclaims=[nc]), now=NOW)
    c = next(c for c in st["conditions"] if c["type"] == "ResourceReady")
    assert c["reason"] == "NodeClaimPending" and "registered" in c["message"]
    assert conds(st)["InferenceReady"] == ("False", "WaitingForNodes")


def test_tuning_lifecycle() -> None:
    base = {"mode": "tuning", "ready_nodes": ["n1"], "target_nodes": 1}
    st = compute_status(Observed(**base, rayjob=rayjob("", "Initializing")), now=NOW)
    assert conds(st)["ResourceReady"] == ("True", "NodesReady")
    assert conds(st)["JobStarted"] == ("False", "JobPending")
    assert st["state"] == "Pending" and st["workerNodes"] == ["n1"]

    progress = {"state": "Running", "step": 30, "total_steps": 100, "loss": 1.25, "eta_seconds": 70}
    job = rayjob("RUNNING", "Running", dashboardURL="tune-head-svc.ml.svc.cluster.local:8265")
    st2 = compute_status(Observed(**base, rayjob=job, progress=progress), previous=st, now=LATER)
    assert conds(st2)["JobStarted"] == ("True", "JobStarted")
    assert conds(st2)["WorkspaceSucceeded"][0] == "Unknown"
    assert st2["state"] == "Running"
    assert st2["dashboardURL"] == "http://tune-head-svc.ml.svc.cluster.local:8265"
    assert st2["tuning"]["step"] == 30 and st2["tuning"]["totalSteps"] == 100
    assert st2["tuning"]["loss"] == 1.25 and st2["tuning"]["etaSeconds"] == 70
    assert st2["tuning"]["progress"] == "30/100 (30%)"
    # ResourceReady did not change: its transition time stays.
    rr = {c["type"]: c for c in st2["conditions"]}["ResourceReady"]
    assert rr["lastTransitionTime"] == NOW
    js = {c["type"]: c for c in st2["conditions"]}["JobStarted"]
    assert js["lastTransitionTime"] == LATER

    st3 = compute_status(Observed(**base, rayjob=rayjob("SUCCEEDED", "Complete")), previous=st2, now=LATER)
    assert conds(st3)["WorkspaceSucceeded"] == ("True", "JobSucceeded")
    assert conds(st3)["WorkspaceReady"][0] == "True"
    assert st3["state"] == "Succeeded"


def test_succeeded_needs_complete_deployment() -> None:
    st = compute_status(
        Observed(mode="tuning", ready_nodes=["n"], rayjob=rayjob("SUCCEEDED", "Running")), now=NOW
    )
    assert conds(st)["WorkspaceSucceeded"][0] == "Unknown"


def test_failed_and_stopped_jobs_are_failures() -> None:
    msg = "404 Client Error: Not Found for url: http://127.0.0.1:9/data.jsonl"
    st = compute_status(
        Observed(mode="tuning", ready_nodes=["n"], rayjob=rayjob("FAILED", "Failed", msg)), now=NOW
    )
    c = {c["type"]: c for c in st["conditions"]}["WorkspaceSucceeded"]
    assert (c["status"], c["reason"]) == ("False", "JobFailed")
    assert "http://127.0.0.1:9/data.jsonl" in c["message"]
    assert st["state"] == "Failed"
    assert conds(st)["WorkspaceReady"] == ("False", "WorkspaceFailed")
    st = compute_status(
        Observed(mode="tuning", ready_nodes=["n"], rayjob=rayjob("STOPPED", "Complete")), now=NOW
    )
    assert conds(st)["WorkspaceSucceeded"] == ("False", "JobStopped")
    st = compute_status(
        Observed(mode="tuning", ready_nodes=["n"], rayjob=rayjob("", "Failed", reason="DeadlineExceeded")),
        now=NOW,
    )
    assert conds(st)["WorkspaceSucceeded"][0] == "False"


def test_serve_after_tuning_adds_inference_ready() -> None:
    base = {"mode": "tuning", "ready_nodes": ["n"], "serve_after_tuning": True}
    running = compute_status(Observed(**base, rayjob=rayjob("RUNNING", "Running")), now=NOW)
    assert "InferenceReady" not in conds(running)
    done = Observed(**base, rayjob=rayjob("SUCCEEDED", "Complete"), rayservice=rayservice(False, "DEPLOYING"))
    st = compute_status(done, now=NOW)
    assert conds(st)["InferenceReady"] == ("False", "Deploying")
    assert conds(st)["WorkspaceReady"][0] == "False"
    assert st["state"] == "Succeeded"
    done.rayservice = rayservice(True, "RUNNING")
    st = compute_status(done, now=NOW)
    assert conds(st)["InferenceReady"] == ("True", "InferenceReady")
    assert conds(st)["WorkspaceReady"][0] == "True"
    assert st["state"] == "Ready"


def test_inference_lifecycle_and_deploy_failure() -> None:
    base = {"mode": "inference", "ready_nodes": ["a", "b"], "target_nodes": 2}
    st = compute_status(Observed(**base, rayservice=rayservice(False, "DEPLOYING")), now=NOW)
    assert conds(st)["InferenceReady"] == ("False", "Deploying")
    assert st["state"] == "Deploying"
    st = compute_status(
        Observed(**base, rayservice=rayservice(False, "DEPLOY_FAILED", "ImportError: no module named x")),
        now=NOW,
    )
    c = {c["type"]: c for c in st["conditions"]}["InferenceReady"]
    assert c["reason"] == "DeployFailed" and "ImportError" in c["message"]
    assert st["state"] == "Failed"
    st = compute_status(
        Observed(
            **base, rayservice=rayservice(True, "RUNNING"), service_dashboard_url="http://phi.ml.svc:8265"
        ),
        now=NOW,
    )
    assert conds(st)["InferenceReady"] == ("True", "InferenceReady")
    assert conds(st)["WorkspaceReady"] == ("True", "WorkspaceReady")
    assert st["state"] == "Ready"
    assert st["dashboardURL"] == "http://phi.ml.svc:8265"
    assert st["workerNodes"] == ["a", "b"] and st["targetNodeCount"] == 2


def test_active_cluster() -> None:
    assert active_cluster(rayservice(True, "RUNNING", cluster="svc-xyz12")) == "svc-xyz12"
    assert active_cluster(None) is None


def test_progress_from_job_logs() -> None:
    logs = "\n".join(
        [
            "starting",
            '(RayTrainWorker pid=42) KAITO_PROGRESS {"state": "Running", "step": 1, "total_steps": 10}',
            "KAITO_PROGRESS {not json",
            '(RayTrainWorker pid=42) KAITO_PROGRESS {"step": 2, "total_steps": 10, "loss": 2.5}',
            "other line",
        ]
    )
    assert parse_progress_logs(logs) == {"step": 2, "total_steps": 10, "loss": 2.5}
    assert parse_progress_logs("nothing here") is None


def test_invalid_workspace_status() -> None:
    st = invalid_status(["tuning.method: must be lora or qlora"], now=NOW, generation=3)
    [c] = st["conditions"]
    assert (c["type"], c["status"], c["reason"]) == ("WorkspaceReady", "False", "InvalidWorkspace")
    assert "tuning.method" in c["message"] and c["observedGeneration"] == 3
    assert st["state"] == "Failed"


def test_kuberay_failure_message_is_summarized() -> None:
    msg = (
        "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
        "2026-11-28 21:29:09,966\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        + "noise line\n" * 2000
        + "error: download http://127.0.0.1:46565/missing/data.jsonl: HTTP 404 File not found\n\n"
    )
    short = summarize_job_message(msg)
    assert short == (
        "Job entrypoint command failed with exit code 1: "
        "error: download http://127.0.0.1:46565/missing/data.jsonl: HTTP 404 File not found"
    )
    st = compute_status(
        Observed(mode="tuning", ready_nodes=["n"], rayjob=rayjob("FAILED", "Failed", msg)), now=NOW
    )
    c = {c["type"]: c for c in st["conditions"]}["WorkspaceSucceeded"]
    assert "missing/data.jsonl" in c["message"] and len(c["message"]) < 300
    assert summarize_job_message("plain failure") == "plain failure"
