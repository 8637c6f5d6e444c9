"""A stand-in for the KubeRay operator (v1.7) that runs RayJobs and RayServices on one local Ray.

It executes only what the objects say: a RayJob's `spec.entrypoint` is submitted to the local Ray's job
server (as KubeRay's submitter does with `ray job submit`), a RayService's serveConfigV2 applications are
PUT to the local Serve REST API (as KubeRay does); only container paths and what one machine cannot give
(GPUs) are localized, and each such change is reported as an Event. What it cannot honour (node pinning,
GPU requests, images) it checks against the cluster's Nodes and reports: pods that would not schedule
keep the object waiting, with a Warning Event, as on a real cluster.

Status is written as KubeRay writes it: RayJob `jobStatus`, `jobDeploymentStatus`, `jobId`, `message`,
`startTime`/`endTime`, `rayClusterName`, `dashboardURL`, `rayJobInfo`, `succeeded`/`failed`, `reason`;
RayService `conditions` (Ready, UpgradeInProgress), `activeServiceStatus`/`pendingServiceStatus` with
`applicationStatuses`, `serviceStatus`, `numServeEndpoints`. It creates the RayCluster objects (when the
CRD is installed) and the head/serve Services, and forwards every Service that selects a Ray head pod
to the local endpoint, recording the local URL on the Service (`kaito.sh/local-url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import secrets
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaito_devcluster import localize, scheduling
from kaito_devcluster.dashboard import Dashboard, DashboardError
from kaito_devcluster.forward import Forwarder
from kaito_devcluster.kube import Kube, KubeError, Ref, now, object_path
from kaito_devcluster.status import (
    JOB_TERMINAL,
    application_statuses,
    cluster_status,
    job_info_status,
    service_conditions,
)
from kaito_devcluster.volumes import Materializer, NotReady

log = logging.getLogger("kaito_devcluster.kuberay")

ANNOTATION_LOCAL_URL = "kaito.sh/local-url"
ANNOTATION_LOCAL_DASHBOARD = "kaito.sh/local-dashboard-url"
SERVE_PORT = 8000
DASHBOARD_PORT = 8265
RAY_PATHS = {
    "RayJob": "rayjobs",
    "RayService": "rayservices",
}


@dataclass
class StandinSettings:
    dashboard_url: str
    serve_port: int
    state_dir: Path
    local_gpus: int = 0
    interval: float = 1.0


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def _cluster_name(owner: str) -> str:
    """KubeRay's `<owner>-<5 random chars>`, within the 63-character name limit."""
    return f"{owner[:57]}-{secrets.token_hex(3)[:5]}"


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class Reporter:
    """Events on one object, each distinct message once."""

    kube: Kube
    ref: Ref
    sent: set[tuple[str, str]] = field(default_factory=set)

    async def __call__(self, reason: str, message: str, type_: str = "Normal") -> None:
        if (reason, message) in self.sent:
            return
        self.sent.add((reason, message))
        log.info("%s %s/%s: %s: %s", self.ref.kind, self.ref.namespace, self.ref.name, reason, message)
        await self.kube.event(self.ref, reason, message, type_)


@dataclass
class JobRun:
    ref: Ref
    report: Reporter
    cluster: str = ""
    job_id: str = ""
    submitted: bool = False
    finished: bool = False
    cleaned: bool = False
    head_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceRun:
    ref: Ref
    report: Reporter
    active: str = ""
    pending: str = ""
    cluster_hash: str = ""
    config_hash: str = ""
    #: local application name -> name in serveConfigV2
    names: dict[str, str] = field(default_factory=dict)
    apps: list[dict[str, Any]] = field(default_factory=list)
    head_labels: dict[str, str] = field(default_factory=dict)
    ready: bool = False


class KubeRayStandin:
    def __init__(self, kube: Kube, settings: StandinSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.dashboard = Dashboard(settings.dashboard_url)
        self.jobs: dict[str, JobRun] = {}
        self.services: dict[str, ServiceRun] = {}
        self.forwarders: dict[tuple[str, str], Forwarder] = {}
        self._targets: dict[tuple[str, str], str | None] = {}
        self._serve_config: dict[str, Any] | None = None
        self._serve_error: str | None = None
        self._stop = asyncio.Event()
        self._rayclusters = True

    @property
    def dashboard_host_port(self) -> str:
        """What KubeRay writes as dashboardURL (host:port, no scheme), reachable from this machine."""
        return self.settings.dashboard_url.split("://", 1)[-1].rstrip("/")

    # ------------------------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Reconcile until `stop()`; then stop running Ray jobs and the forwarders."""
        try:
            while not self._stop.is_set():
                try:
                    await self.reconcile_once()
                except Exception:  # keep serving: one bad object or a hiccup must not stop the stand-in
                    log.exception("KubeRay stand-in: reconcile failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.interval)
        finally:
            await self._shutdown()

    def stop(self) -> None:
        """Ask `run()` to finish (call on the stand-in's event loop)."""
        self._stop.set()

    async def _shutdown(self) -> None:
        for run in self.jobs.values():
            if run.submitted and not run.finished:
                await self.dashboard.stop_job(run.job_id)
        for fwd in self.forwarders.values():
            await fwd.stop()
        self.forwarders.clear()
        await self.dashboard.close()

    async def reconcile_once(self) -> None:
        nodes = await self.kube.list("/api/v1/nodes")
        rayjobs = await self.kube.list("/apis/ray.io/v1/rayjobs")
        rayservices = await self.kube.list("/apis/ray.io/v1/rayservices")
        for obj in rayjobs:
            await self._guard(obj, self._job(obj, nodes))
        await self._forget_jobs({o["metadata"]["uid"] for o in rayjobs})
        for obj in rayservices:
            await self._guard(obj, self._service(obj, nodes))
        self._forget_services({o["metadata"]["uid"] for o in rayservices})
        await self._sync_serve()
        for obj in rayservices:
            await self._guard(obj, self._service_status(obj))
        await self._sync_forwarders(await self.kube.list("/api/v1/services"))

    async def _guard(self, obj: dict[str, Any], step: Any) -> None:
        try:
            await step
        except KubeError as exc:
            log.warning("%s %s: %s", obj.get("kind"), obj["metadata"].get("name"), exc)

    # ------------------------------------------------------------------------------------ common
    def _work_dir(self, ref: Ref, cluster: str) -> Path:
        return self.settings.state_dir / "objects" / ref.namespace / cluster

    async def _check_schedulable(
        self, cluster_spec: dict[str, Any], nodes: list[dict[str, Any]], report: Reporter
    ) -> bool:
        checks = scheduling.check_cluster(cluster_spec, nodes)
        blocked = [c for c in checks if not c.ok]
        if blocked:
            await report(
                "PodsUnschedulable",
                "Ray pods would not schedule: " + " | ".join(c.describe() for c in blocked),
                "Warning",
            )
            return False
        placed = "; ".join(f"{c.group} -> {', '.join(sorted(set(c.feasible_nodes)))}" for c in checks)
        await report("Scheduled", f"Ray pods fit the cluster's nodes ({placed}); they run on the local Ray")
        return True

    async def _local_execution_note(
        self, cluster_spec: dict[str, Any], notes: list[str], report: Reporter
    ) -> None:
        images = sorted(
            {
                c.get("image", "?")
                for t in _templates(cluster_spec)
                for c in (t.get("spec") or {}).get("containers") or []
            }
        )
        gpus = scheduling.gpu_requests(cluster_spec)
        parts = [
            f"runs on the dev cluster's local Ray (127.0.0.1) with this machine's Python environment, "
            f"not image(s) {', '.join(images)}",
            "node affinity and tolerations checked against the Nodes, not enforced",
        ]
        custom = sorted(
            c.get("name", "?")
            for t in _templates(cluster_spec)
            for c in (t.get("spec") or {}).get("containers") or []
            if c.get("command") or c.get("args")
        )
        if custom:
            parts.append(f"container command/args not run (containers {', '.join(custom)}): Ray runs locally")
        if cluster_spec.get("enableInTreeAutoscaling"):
            parts.append("in-tree autoscaling not simulated: the local Ray has fixed resources")
        if gpus:
            parts.append(
                f"GPU requests (nvidia.com/gpu: {gpus:g} in all) not honoured: "
                f"this machine has {self.settings.local_gpus} GPU(s)"
            )
        await report("LocalExecution", "; ".join(parts + notes))

    async def _ensure_raycluster(
        self, owner: Ref, name: str, cluster_spec: dict[str, Any], head_labels: dict[str, str]
    ) -> Ref:
        """The RayCluster object (if the CRD is installed) and its head Service; returns the Service owner."""
        svc_owner = owner
        if self._rayclusters:
            body = {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "metadata": {
                    "name": name,
                    "namespace": owner.namespace,
                    "labels": {
                        "ray.io/originated-from-crd": owner.kind,
                        "ray.io/originated-from-cr-name": owner.name,
                    },
                    "ownerReferences": [owner.owner_reference()],
                },
                "spec": cluster_spec,
            }
            path = object_path("ray.io/v1", "rayclusters", owner.namespace)
            try:
                created = await self.kube.create(path, body)
                current = created or await self.kube.get(f"{path}/{name}")
                if current is not None:
                    svc_owner = Ref.of(current, "rayclusters")
                    if created is not None:
                        await self.kube.patch_status(svc_owner.path, cluster_status())
            except KubeError as exc:
                if exc.status != 404:
                    raise
                self._rayclusters = False
                log.info("RayCluster CRD not installed: no RayCluster objects are created")
        await self._ensure_head_service(svc_owner, f"{name}-head-svc", name, head_labels)
        return svc_owner

    async def _ensure_head_service(
        self, owner: Ref, svc_name: str, cluster: str, head_labels: dict[str, str], serve_only: bool = False
    ) -> None:
        ports = [{"name": "serve", "port": SERVE_PORT, "targetPort": SERVE_PORT, "protocol": "TCP"}]
        if not serve_only:
            ports = [
                {"name": "gcs-server", "port": 6379, "targetPort": 6379, "protocol": "TCP"},
                {
                    "name": "dashboard",
                    "port": DASHBOARD_PORT,
                    "targetPort": DASHBOARD_PORT,
                    "protocol": "TCP",
                },
                {"name": "client", "port": 10001, "targetPort": 10001, "protocol": "TCP"},
                *ports,
            ]
        selector = {"ray.io/cluster": cluster, "ray.io/node-type": "head"}
        if serve_only:
            selector["ray.io/serve"] = "true"
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": svc_name,
                "namespace": owner.namespace,
                "labels": {"ray.io/cluster": cluster, "app.kubernetes.io/created-by": "kuberay-operator"},
                "ownerReferences": [owner.owner_reference()],
            },
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
        }
        path = object_path("v1", "services", owner.namespace)
        if await self.kube.create(path, body) is None:
            await self.kube.patch(f"{path}/{svc_name}", {"spec": {"selector": selector}})

    # ------------------------------------------------------------------------------------ RayJob
    async def _job(self, obj: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
        _meta, spec = obj["metadata"], obj.get("spec") or {}
        st = obj.get("status") or {}
        ref = Ref.of(obj, "rayjobs")
        run = self.jobs.get(ref.uid)
        if run is None:
            run = JobRun(ref=ref, report=Reporter(self.kube, ref))
            if st.get("jobDeploymentStatus") in ("Complete", "Failed"):
                run.finished, run.cluster = True, st.get("rayClusterName", "")
            self.jobs[ref.uid] = run
        if run.finished:
            await self._job_ttl(obj, run)
            return
        if spec.get("suspend"):
            await run.report(
                "Unsupported", "spec.suspend is not supported by the dev cluster stand-in", "Warning"
            )
            return
        if not run.submitted:
            await self._job_start(obj, run, nodes)
            return
        info = await self.dashboard.job_info(run.job_id)
        if info is None:
            return
        status: dict[str, Any] = job_info_status(info)
        deadline = spec.get("activeDeadlineSeconds")
        started = _parse_time(st.get("startTime"))
        overdue = (
            bool(deadline)
            and started is not None
            and dt.datetime.now(dt.UTC) >= started + dt.timedelta(seconds=int(deadline or 0))
        )
        if overdue and info.get("status") not in JOB_TERMINAL:
            await self.dashboard.stop_job(run.job_id)
            status.update(
                jobDeploymentStatus="Failed",
                reason="DeadlineExceeded",
                message="The RayJob has passed the activeDeadlineSeconds. "
                f"StartTime: {st.get('startTime')}. ActiveDeadlineSeconds: {deadline}",
                endTime=now(),
                failed=int(st.get("failed") or 0) + 1,
            )
            run.finished = True
            await run.report("DeadlineExceeded", status["message"], "Warning")
            await self.kube.patch_status(ref.path, status)
            return
        if info.get("status") == "SUCCEEDED":
            status.update(
                jobDeploymentStatus="Complete", endTime=now(), succeeded=int(st.get("succeeded") or 0) + 1
            )
            run.finished = True
            await run.report("Completed", f"Ray job {run.job_id} succeeded")
        elif info.get("status") in ("FAILED", "STOPPED"):
            failed = int(st.get("failed") or 0) + 1
            status["failed"] = failed
            if failed <= int(spec.get("backoffLimit") or 0):
                status.update(jobDeploymentStatus="Retrying")
                await run.report(
                    "Retrying",
                    f"Ray job {run.job_id} {info['status'].lower()}; retry {failed} of "
                    f"{spec.get('backoffLimit')} with a new Ray cluster",
                    "Warning",
                )
                await self._job_retry(run)
            else:
                status.update(jobDeploymentStatus="Failed", reason="AppFailed", endTime=now())
                run.finished = True
                await run.report("Failed", f"Ray job {run.job_id} {info['status'].lower()}", "Warning")
        await self.kube.patch_status(ref.path, status)

    async def _job_retry(self, run: JobRun) -> None:
        if run.cluster and self._rayclusters:
            await self.kube.delete(object_path("ray.io/v1", "rayclusters", run.ref.namespace, run.cluster))
        run.submitted, run.cluster, run.job_id = False, "", ""

    async def _job_start(self, obj: dict[str, Any], run: JobRun, nodes: list[dict[str, Any]]) -> None:
        spec, st, ref = obj.get("spec") or {}, obj.get("status") or {}, run.ref
        cluster_spec = spec.get("rayClusterSpec") or {}
        if spec.get("clusterSelector"):
            await run.report(
                "Unsupported",
                "spec.clusterSelector (an existing RayCluster) is not supported by the dev cluster stand-in",
                "Warning",
            )
            return
        if not run.cluster:
            run.cluster = _cluster_name(ref.name)
            run.job_id = spec.get("jobId") or f"{ref.name[:50]}-{secrets.token_hex(3)[:5]}"
            run.head_labels = _head_labels(cluster_spec, run.cluster)
            await self.kube.patch_status(
                ref.path,
                {
                    "jobDeploymentStatus": "Initializing",
                    "jobStatus": None,
                    "reason": None,
                    "message": None,
                    "endTime": None,
                    "jobId": run.job_id,
                    "rayClusterName": run.cluster,
                    "dashboardURL": self.dashboard_host_port,
                    "startTime": now()
                    if st.get("jobDeploymentStatus") != "Retrying" and not st.get("startTime")
                    else st.get("startTime"),
                    "observedGeneration": obj["metadata"].get("generation", 1),
                },
            )
            await self._ensure_raycluster(ref, run.cluster, cluster_spec, run.head_labels)
        if not await self._check_schedulable(cluster_spec, nodes, run.report):
            return
        work = self._work_dir(ref, run.cluster)
        try:
            mat = await Materializer(
                self.kube, ref.namespace, work, self.settings.state_dir / "claims"
            ).materialize(cluster_spec)
        except NotReady as exc:
            await run.report("PodsNotReady", f"Ray pods cannot start: {exc}", "Warning")
            return
        entrypoint = spec.get("entrypoint") or ""
        if not entrypoint:
            await run.report("Unsupported", "spec.entrypoint is empty: nothing to submit", "Warning")
            return
        local_entry = localize.localize_entrypoint(entrypoint, mat.directories)
        notes = list(mat.notes)
        tune_file = localize.tune_config_path(local_entry)
        if tune_file and Path(tune_file).is_file():
            config = yaml.safe_load(Path(tune_file).read_text())
            if isinstance(config, dict):
                config, more = localize.localize_tune_scaling(config, self.settings.local_gpus)
                notes += more
                Path(tune_file).write_text(yaml.safe_dump(config, sort_keys=False))
        mapped = ", ".join(f"{k} -> {v}" for k, v in sorted(mat.directories.items()))
        notes.append(f"volumes: {mapped}")
        await self._local_execution_note(cluster_spec, notes, run.report)
        env_file = work / "env.json"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(mat.env, handle)
        command = (
            f"{shlex.quote(sys.executable)} -m kaito_devcluster.launch "
            f"--env-file {shlex.quote(str(env_file))} -- {local_entry}"
        )
        runtime_env: dict[str, Any] = {}
        if spec.get("runtimeEnvYAML"):
            runtime_env = yaml.safe_load(spec["runtimeEnvYAML"]) or {}
        try:
            await self.dashboard.submit_job(
                run.job_id,
                command,
                metadata={**(spec.get("metadata") or {}), "rayjob": f"{ref.namespace}/{ref.name}"},
                runtime_env=runtime_env,
            )
        except DashboardError as exc:
            run.finished = True
            message = f"Failed to submit the Ray job: {exc}"
            await run.report("SubmissionFailed", message, "Warning")
            await self.kube.patch_status(
                ref.path,
                {
                    "jobDeploymentStatus": "Failed",
                    "reason": "SubmissionFailed",
                    "message": message,
                    "endTime": now(),
                },
            )
            return
        run.submitted = True
        await run.report("Submitted", f"submitted Ray job {run.job_id}: {entrypoint}")
        await self.kube.patch_status(ref.path, {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"})

    async def _job_ttl(self, obj: dict[str, Any], run: JobRun) -> None:
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        if run.cleaned or not spec.get("shutdownAfterJobFinishes") or not run.cluster:
            return
        ended = _parse_time(st.get("endTime"))
        ttl = int(spec.get("ttlSecondsAfterFinished") or 0)
        if ended and dt.datetime.now(dt.UTC) >= ended + dt.timedelta(seconds=ttl):
            if self._rayclusters:
                await self.kube.delete(
                    object_path("ray.io/v1", "rayclusters", run.ref.namespace, run.cluster)
                )
            await self.kube.delete(
                object_path("v1", "services", run.ref.namespace, f"{run.cluster}-head-svc")
            )
            run.cleaned = True
            await run.report(
                "RayClusterDeleted", f"deleted RayCluster {run.cluster} (shutdownAfterJobFinishes)"
            )

    async def _forget_jobs(self, live: set[str]) -> None:
        for uid in [u for u in self.jobs if u not in live]:
            run = self.jobs.pop(uid)
            if run.submitted and not run.finished:
                await self.dashboard.stop_job(run.job_id)
                log.info(
                    "RayJob %s/%s deleted: stopped Ray job %s", run.ref.namespace, run.ref.name, run.job_id
                )

    # -------------------------------------------------------------------------------- RayService
    async def _service(self, obj: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
        spec = obj.get("spec") or {}
        ref = Ref.of(obj, "rayservices")
        run = self.services.get(ref.uid)
        if run is None:
            run = self.services[ref.uid] = ServiceRun(ref=ref, report=Reporter(self.kube, ref))
        cluster_spec = spec.get("rayClusterConfig") or {}
        cluster_hash, config_hash = _hash(cluster_spec), _hash(spec.get("serveConfigV2") or "")
        if cluster_hash != run.cluster_hash:
            run.pending = _cluster_name(ref.name)
            run.cluster_hash, run.config_hash = cluster_hash, ""
            run.head_labels = _head_labels(cluster_spec, run.pending)
            await self._ensure_raycluster(ref, run.pending, cluster_spec, run.head_labels)
        if config_hash == run.config_hash:
            return
        target = run.pending or run.active
        if not await self._check_schedulable(cluster_spec, nodes, run.report):
            return
        try:
            mat = await Materializer(
                self.kube, ref.namespace, self._work_dir(ref, target), self.settings.state_dir / "claims"
            ).materialize(cluster_spec)
        except NotReady as exc:
            await run.report("PodsNotReady", f"Ray pods cannot start: {exc}", "Warning")
            return
        try:
            serve_config = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
            apps_in = serve_config.get("applications") or []
            if not isinstance(apps_in, list):
                raise ValueError("applications must be a list")
        except (yaml.YAMLError, ValueError, AttributeError) as exc:
            await run.report(
                "InvalidServeConfig", f"serveConfigV2 is not a valid Serve config: {exc}", "Warning"
            )
            return
        notes = list(mat.notes)
        env = {k: v for k, v in mat.env.items() if k not in mat.secret_env}
        if mat.secret_env:
            notes.append(
                f"env from Secrets ({', '.join(sorted(mat.secret_env))}) is not passed to Serve "
                "applications (the local Serve config would show it)"
            )
        apps, names = [], {}
        for app in apps_in:
            local, more = localize.localize_serve_app(
                app,
                namespace=ref.namespace,
                name=ref.name,
                directories=mat.directories,
                serve_port=self.settings.serve_port,
                local_gpus=self.settings.local_gpus,
                env=env,
            )
            notes += more
            apps.append(local)
            names[local["name"]] = app.get("name", "default")
        mapped = ", ".join(f"{k} -> {v}" for k, v in sorted(mat.directories.items()))
        notes.append(
            f"volumes: {mapped}; Serve route prefix {localize.local_route_prefix(ref.namespace, ref.name)}"
        )
        await self._local_execution_note(cluster_spec, notes, run.report)
        run.apps, run.names, run.config_hash = apps, names, config_hash
        run.ready = run.ready and not run.pending

    def _forget_services(self, live: set[str]) -> None:
        for uid in [u for u in self.services if u not in live]:
            run = self.services.pop(uid)
            log.info(
                "RayService %s/%s deleted: its Serve applications are removed",
                run.ref.namespace,
                run.ref.name,
            )

    async def _sync_serve(self) -> None:
        apps = sorted((a for run in self.services.values() for a in run.apps), key=lambda a: a["name"])
        desired = (
            {
                "proxy_location": "HeadOnly",
                "http_options": {"host": "127.0.0.1", "port": self.settings.serve_port},
                "applications": apps,
            }
            if apps
            else None
        )
        if desired == self._serve_config:
            return
        try:
            if desired is None:
                await self.dashboard.shutdown_serve()
            else:
                await self.dashboard.put_serve(desired)
            self._serve_config, self._serve_error = desired, None
        except Exception as exc:  # reported on every RayService; retried next round
            self._serve_error = str(exc)
            for run in self.services.values():
                await run.report(
                    "ServeDeployFailed", f"deploying Serve applications failed: {exc}", "Warning"
                )

    async def _service_status(self, obj: dict[str, Any]) -> None:
        ref = Ref.of(obj, "rayservices")
        run = self.services.get(ref.uid)
        if run is None or not run.names:
            if run is not None and not (obj.get("status") or {}).get("conditions"):
                await self.kube.patch_status(
                    ref.path,
                    {
                        "conditions": service_conditions(
                            ready=False,
                            upgrading=False,
                            now=now(),
                            generation=obj["metadata"].get("generation", 1),
                            previous=None,
                        ),
                        "pendingServiceStatus": {"rayClusterName": run.pending},
                    },
                )
            return
        st = obj.get("status") or {}
        try:
            local = await self.dashboard.serve_applications() if self._serve_config else {}
        except Exception as exc:
            log.warning("Serve status not available: %s", exc)
            return
        apps = application_statuses(local, run.names)
        running = bool(apps) and all(a["status"] == "RUNNING" for a in apps.values())
        if run.pending and running:
            old = run.active
            run.active, run.pending = run.pending, ""
            if old and self._rayclusters:
                await self.kube.delete(object_path("ray.io/v1", "rayclusters", ref.namespace, old))
            await self._ensure_head_service(ref, f"{ref.name}-head-svc", run.active, run.head_labels)
            await self._ensure_head_service(
                ref, f"{ref.name}-serve-svc", run.active, run.head_labels, serve_only=True
            )
            await run.report(
                "Running", f"Serve applications {', '.join(sorted(apps))} RUNNING on cluster {run.active}"
            )
        ready = bool(run.active) and (running or run.ready)
        run.ready = ready
        status: dict[str, Any] = {
            "conditions": service_conditions(
                ready=ready,
                upgrading=bool(run.active and run.pending),
                now=now(),
                generation=obj["metadata"].get("generation", 1),
                previous=st.get("conditions"),
                message=_apps_message(apps),
            ),
            "serviceStatus": "Running" if ready else None,
            "numServeEndpoints": 1 if ready else 0,
            "observedGeneration": obj["metadata"].get("generation", 1),
            "lastUpdateTime": now(),
            "activeServiceStatus": (
                {
                    "rayClusterName": run.active,
                    "applicationStatuses": apps,
                    "rayClusterStatus": cluster_status(),
                }
                if run.active and not run.pending
                else (
                    {"rayClusterName": run.active, "rayClusterStatus": cluster_status()}
                    if run.active
                    else None
                )
            ),
            "pendingServiceStatus": (
                {"rayClusterName": run.pending, "applicationStatuses": apps} if run.pending else None
            ),
        }
        if _strip(status) != _strip(st):
            await self.kube.patch_status(ref.path, _replace_maps(status, st))

    # ------------------------------------------------------------------------------- forwarding
    def _heads(self) -> list[tuple[dict[str, str], str | None]]:
        """(labels of a Ray head pod, its local Serve base URL or None), active RayService heads first."""
        heads: list[tuple[dict[str, str], str | None]] = []
        serve = f"http://127.0.0.1:{self.settings.serve_port}"
        for run in self.services.values():
            if run.active:
                labels = {**run.head_labels, "ray.io/cluster": run.active, "ray.io/serve": "true"}
                heads.append((labels, serve + localize.local_route_prefix(run.ref.namespace, run.ref.name)))
        for job in self.jobs.values():
            if job.cluster and not job.cleaned:
                heads.append(({**job.head_labels, "ray.io/cluster": job.cluster}, None))
        return heads

    async def _sync_forwarders(self, services: list[dict[str, Any]]) -> None:
        heads = self._heads()
        live: set[tuple[str, str]] = set()
        for svc in services:
            selector = (svc.get("spec") or {}).get("selector") or {}
            match = next((h for h in heads if _selector_matches(selector, h[0])), None)
            meta = svc["metadata"]
            annotations = dict(meta.get("annotations") or {})
            wanted: dict[str, str] = {}
            for port in (svc.get("spec") or {}).get("ports") or []:
                target = _target_port(port)
                if target not in (SERVE_PORT, DASHBOARD_PORT):
                    continue
                key = (meta["uid"], str(port.get("port")))
                if match is None and key not in self.forwarders:
                    continue
                live.add(key)
                if match is not None:
                    self._targets[key] = match[1] if target == SERVE_PORT else self.settings.dashboard_url
                if key not in self.forwarders:
                    fwd = Forwarder(
                        f"{meta['namespace']}/{meta['name']}:{port.get('port')}",
                        functools.partial(self._targets.get, key),
                    )
                    self.forwarders[key] = await fwd.start()
                annotation = ANNOTATION_LOCAL_URL if target == SERVE_PORT else ANNOTATION_LOCAL_DASHBOARD
                wanted.setdefault(annotation, self.forwarders[key].url)
            if any(annotations.get(k) != v for k, v in wanted.items()):
                await self.kube.patch(
                    object_path("v1", "services", meta["namespace"], meta["name"]),
                    {"metadata": {"annotations": wanted}},
                )
        for key in [k for k in self.forwarders if k not in live]:
            await self.forwarders.pop(key).stop()
            self._targets.pop(key, None)


def _templates(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    head = (cluster_spec.get("headGroupSpec") or {}).get("template") or {}
    return [head, *[(g.get("template") or {}) for g in cluster_spec.get("workerGroupSpecs") or []]]


def _head_labels(cluster_spec: dict[str, Any], cluster: str) -> dict[str, str]:
    """The labels KubeRay puts on a head pod: the template's plus its own."""
    template = (cluster_spec.get("headGroupSpec") or {}).get("template") or {}
    return {
        **((template.get("metadata") or {}).get("labels") or {}),
        "ray.io/cluster": cluster,
        "ray.io/node-type": "head",
        "ray.io/group": "headgroup",
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }


def _target_port(port: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, str):
        return {"serve": SERVE_PORT, "dashboard": DASHBOARD_PORT}.get(
            target, int(target) if target.isdigit() else None
        )
    return int(target) if target is not None else None


def _apps_message(apps: dict[str, Any]) -> str:
    parts = [
        f"{name}: {a.get('status')}" + (f" ({a['message']})" if a.get("message") else "")
        for name, a in apps.items()
    ]
    return "; ".join(parts)


def _strip(status: dict[str, Any]) -> dict[str, Any]:
    """Status without the fields that change on every write (to skip no-op writes)."""
    out = {k: v for k, v in status.items() if k != "lastUpdateTime" and v is not None}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []
    ]
    return json.loads(json.dumps(out, sort_keys=True))


def _replace_maps(status: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that replaces the service status blocks (nulls out application names that went away)."""
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        new_block, old_block = status.get(key), old.get(key) or {}
        if new_block is None:
            continue
        old_apps = old_block.get("applicationStatuses") or {}
        new_apps = (
            new_block.setdefault("applicationStatuses", {}) if "applicationStatuses" in new_block else None
        )
        if new_apps is not None:
            for name in old_apps:
                new_apps.setdefault(name, None)
    return status
