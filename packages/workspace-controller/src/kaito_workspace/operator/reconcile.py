"""One level-triggered reconcile of a Workspace: observe, plan, apply what is missing, write status.

Everything is derived from what is observed in the cluster on each pass (no in-memory state is needed
for correctness), so a restarted controller picks up where the last one stopped; NodeClaim names are
deterministic, so a repeated create is answered 409 instead of producing a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx

from kaito_workspace.api import CONDITION_WORKSPACE_SUCCEEDED, Workspace, parse_workspace
from kaito_workspace.builders import build_nodeclaim, build_rayjob, build_rayservice, build_runtime_configmap
from kaito_workspace.builders.service import build_service
from kaito_workspace.operator import metrics
from kaito_workspace.operator.events import Recorder, now_rfc3339
from kaito_workspace.operator.kube import (
    CONFIGMAPS,
    NODECLAIMS,
    NODES,
    PVCS,
    RAYJOBS,
    RAYSERVICES,
    SERVICES,
    WORKSPACES,
    Kube,
    KubeError,
)
from kaito_workspace.operator.settings import OperatorSettings
from kaito_workspace.planning import ClusterFacts, Plan, PlanningError
from kaito_workspace.planning.catalog import plan_with_catalog
from kaito_workspace.planning.names import (
    ANNOTATION_REVISION,
    GPU_RESOURCE,
    LABEL_WORKSPACE,
    LABEL_WORKSPACE_NAMESPACE,
    ray_name,
)
from kaito_workspace.planning.templates import (
    TEMPLATE_CONFIGMAPS,
    TRAINING_CONFIG_KEY,
    inference_config_for,
    training_config_from,
)
from kaito_workspace.presets import Catalog
from kaito_workspace.status import (
    Observed,
    active_cluster,
    compute_status,
    invalid_status,
    nodeclaim_ready,
    parse_progress_logs,
)
from kaito_workspace.validation import INFERENCE_CONFIG_KEY, validate_workspace

log = logging.getLogger(__name__)

WAITING_REASONS = {
    "NodeClaimPending",
    "NodesNotReady",
    "JobNotCreated",
    "JobPending",
    "JobRunning",
    "Deploying",
    "RayServiceNotCreated",
    "WaitingForNodes",
    "WorkspaceNotReady",
}


def label_selector_string(selector: dict[str, Any] | None) -> str:
    """A metav1.LabelSelector as the `labelSelector` query parameter."""
    parts = [f"{k}={v}" for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for e in (selector or {}).get("matchExpressions") or []:
        op, key, values = e.get("operator"), e["key"], ",".join(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def node_ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def node_gpus(node: dict[str, Any]) -> int:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    try:
        return int(str(alloc.get(GPU_RESOURCE, "0")))
    except ValueError:
        return 0


def _pvc_claims(ws: Workspace) -> list[str]:
    sources: list[dict[str, Any] | None] = []
    if ws.tuning is not None:
        sources += [ws.tuning.input.volume_source, ws.tuning.output.volume_source]
    return [s["persistentVolumeClaim"]["claimName"] for s in sources if s and s.get("persistentVolumeClaim")]


def _job_succeeded(job: dict[str, Any] | None) -> bool:
    st = (job or {}).get("status") or {}
    return st.get("jobStatus") == "SUCCEEDED" and st.get("jobDeploymentStatus") == "Complete"


def _job_finished(job: dict[str, Any] | None) -> bool:
    st = (job or {}).get("status") or {}
    return st.get("jobDeploymentStatus") in ("Complete", "Failed") or st.get("jobStatus") in (
        "SUCCEEDED",
        "FAILED",
        "STOPPED",
    )


def _notes(plan: Plan) -> str:
    """Planning notes (e.g. bf16 replaced by fp16 on a V100) for the creation Event."""
    return "".join(f"; note: {n}" for n in plan.notes)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        *,
        catalog: Catalog | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.catalog = catalog
        self.http = http or httpx.AsyncClient(timeout=5.0)
        self.clock = clock
        self.events = Recorder(kube)
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._progress: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}

    # ------------------------------------------------------------------------------------ entry
    async def reconcile(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Reconcile one workspace; returns the status written (None if it is gone or being deleted)."""
        async with self._locks[(namespace, name)]:
            body = await self.kube.get(WORKSPACES, name, namespace)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            started = time.perf_counter()
            try:
                status = await self._reconcile(body)
                metrics.RECONCILE_TOTAL.labels(result="ok").inc()
                return status
            except Exception:
                metrics.RECONCILE_TOTAL.labels(result="error").inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    # -------------------------------------------------------------------------------- internals
    async def _config_maps(self, ws: Workspace) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The tuning ConfigMap the workspace names (its data, by name) and problems finding it."""
        if ws.tuning is not None:
            name = ws.tuning.config
        else:
            name = ws.inference.config if ws.inference is not None else None
        if not name:
            return {}, []
        cm = await self.kube.get(CONFIGMAPS, name, ws.namespace)
        if cm is None:
            field, key = (
                ("tuning", TRAINING_CONFIG_KEY)
                if ws.tuning is not None
                else ("inference", INFERENCE_CONFIG_KEY)
            )
            return {}, [
                f"{field}.config: ConfigMap {name!r} not found in namespace {ws.namespace!r} "
                f"(create it with a {key} key, or remove {field}.config to use the defaults)"
            ]
        return {name: cm.get("data") or {}}, []

    async def _training_config(
        self, ws: Workspace, config_maps: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        if ws.tuning is None:
            return None
        data: dict[str, Any] | None = None
        if ws.tuning.config:
            data = config_maps.get(ws.tuning.config)
        else:
            template = TEMPLATE_CONFIGMAPS.get(ws.tuning.method or "qlora")
            if template:
                cm = await self.kube.get(CONFIGMAPS, template, self.settings.controller_namespace)
                data = (cm or {}).get("data")
        return training_config_from(data)  # None: the built-in copy of Kaito's default template

    async def _invalid(self, body: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        md = body["metadata"]
        prev = body.get("status") or {}
        status = invalid_status(
            problems, previous=prev, now=now_rfc3339(), generation=md.get("generation", 1)
        )
        old = _condition(prev, "WorkspaceReady")
        new = _condition(status, "WorkspaceReady") or {"message": ""}
        if not old or old.get("reason") != "InvalidWorkspace" or old.get("message") != new["message"]:
            await self.events.warning(body, "InvalidWorkspace", new["message"])
        await self._write_status(body, status)
        return status

    async def _reconcile(self, body: dict[str, Any]) -> dict[str, Any]:
        md = body["metadata"]
        ns, name = md.get("namespace", "default"), md["name"]
        ws, parse_problems = parse_workspace(body)
        if ws is None:
            return await self._invalid(body, [f"{p.path}: {p.message}" for p in parse_problems])
        config_maps, cm_problems = await self._config_maps(ws)
        problems = validate_workspace(
            body, config_maps=config_maps, presets=self.catalog, local=self.settings.local
        )
        if problems or cm_problems:
            return await self._invalid(
                body,
                [f"{p.path}: {p.message}" + (f" ({p.hint})" if p.hint else "") for p in problems]
                + cm_problems,
            )
        assert ws.resource is not None

        # Observe.
        selector = ws.resource.label_selector.to_dict()
        matching = await self.kube.list(NODES, label_selector=label_selector_string(selector))
        byo = {
            n["metadata"]["name"]: n
            for n in matching
            if LABEL_WORKSPACE not in (n["metadata"].get("labels") or {})
        }
        byo_ready = {k: v for k, v in byo.items() if node_ready(v)}
        nodeclaims = await self.kube.list(
            NODECLAIMS, label_selector=f"{LABEL_WORKSPACE}={name},{LABEL_WORKSPACE_NAMESPACE}={ns}"
        )
        pvc_modes: dict[str, list[str]] = {}
        for claim_name in _pvc_claims(ws):
            pvc = await self.kube.get(PVCS, claim_name, ns)
            if pvc is not None:
                pvc_modes[claim_name] = list((pvc.get("spec") or {}).get("accessModes") or [])
        facts = ClusterFacts(
            byo_nodes=sorted(byo_ready),
            node_gpus={k: node_gpus(v) for k, v in byo_ready.items()},
            existing_nodeclaims=sorted(nc["metadata"]["name"] for nc in nodeclaims),
            pvc_access_modes=pvc_modes,
            training_config=await self._training_config(ws, config_maps),
            inference_config=inference_config_for(ws, config_maps),
        )
        try:
            plan = plan_with_catalog(ws, facts=facts, settings=self.settings.planner(), catalog=self.catalog)
        except PlanningError as e:
            return await self._invalid(body, [f"{e.path}: {e.message}" + (f" ({e.hint})" if e.hint else "")])
        ref = plan.workspace

        # NodeClaims for the nodes that are still missing.
        existing = {nc["metadata"]["name"]: nc for nc in nodeclaims}
        for claim in plan.nodes.nodeclaims:
            if claim.name in existing:
                continue
            try:
                created = await self.kube.create(build_nodeclaim(ref, claim))
                existing[claim.name] = created
                metrics.OBJECTS_CREATED.labels(kind="NodeClaim").inc()
                await self.events.normal(
                    body, "NodeClaimCreated", f"created NodeClaim {claim.name} ({claim.instance_type})"
                )
            except KubeError as e:
                if e.status != 409:
                    await self.events.warning(
                        body, "NodeClaimCreateFailed", f"NodeClaim {claim.name}: {e.message}"
                    )
                    raise
                # Already there (the list lagged behind the create): the next pass lists it.

        ready_nodes = [n for n in plan.nodes.byo_nodes]
        for nc in existing.values():
            node_name = (nc.get("status") or {}).get("nodeName")
            if node_name and nodeclaim_ready(nc):
                node = await self.kube.get(NODES, node_name)
                if node is not None and node_ready(node):
                    ready_nodes.append(node_name)
        resource_ready = len(ready_nodes) >= plan.nodes.target_count
        prev = body.get("status") or {}

        # Workload.
        rayjob: dict[str, Any] | None = None
        rayservice: dict[str, Any] | None = None
        if plan.tuning is not None:
            rayjob = await self._ensure_rayjob(body, plan, resource_ready, prev)
            if plan.serving is not None and _job_succeeded(rayjob):
                rayservice = await self._ensure_rayservice(body, plan)
        else:
            if resource_ready:
                rayservice = await self._ensure_rayservice(body, plan)
            else:
                rayservice = await self.kube.get(RAYSERVICES, ray_name(name), ns)
        if resource_ready:
            await self._ensure_service(body, plan, active_cluster(rayservice))

        obs = Observed(
            mode=plan.mode,
            generation=md.get("generation", 1),
            target_nodes=plan.nodes.target_count,
            nodeclaims=list(existing.values()),
            byo_nodes=plan.nodes.byo_nodes,
            ready_nodes=ready_nodes,
            waiting_message="; ".join(plan.nodes.notes) or None,
            rayjob=rayjob,
            rayservice=rayservice,
            serve_after_tuning=plan.serve_after_tuning,
            progress=await self._fetch_progress(ns, name, rayjob),
            service_dashboard_url=f"http://{name}.{ns}.svc.cluster.local:8265" if resource_ready else None,
        )
        status = compute_status(obs, previous=prev, now=now_rfc3339())
        await self._announce(body, prev, status)
        await self._write_status(body, status)
        for state in ("Pending", "Running", "Succeeded", "Failed", "Deploying", "Ready"):
            metrics.WORKSPACE_STATE.labels(namespace=ns, name=name, state=state).set(
                1 if status["state"] == state else 0
            )
        return status

    async def _apply_configmap(self, body: dict[str, Any], plan: Plan) -> None:
        cm = build_runtime_configmap(plan)
        if cm is None:
            return
        current = await self.kube.get(CONFIGMAPS, cm["metadata"]["name"], cm["metadata"]["namespace"])
        if current is None:
            await self.kube.create(cm)
            metrics.OBJECTS_CREATED.labels(kind="ConfigMap").inc()
        elif current.get("data") != cm["data"]:
            cm["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.kube.replace(cm)

    async def _ensure_rayjob(
        self, body: dict[str, Any], plan: Plan, resource_ready: bool, prev: dict[str, Any]
    ) -> dict[str, Any] | None:
        desired = build_rayjob(plan)
        ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        current = await self.kube.get(RAYJOBS, name, ns)
        revision = desired["metadata"]["annotations"][ANNOTATION_REVISION]
        if current is not None:
            if (current["metadata"].get("annotations") or {}).get(ANNOTATION_REVISION) == revision:
                return current
            # The spec changed: a RayJob cannot be updated in place, so it is recreated.
            if current["metadata"].get("deletionTimestamp") is None:
                await self.kube.delete(RAYJOBS, name, ns)
                await self.events.normal(
                    body,
                    "RayJobRecreated",
                    f"the tuning spec changed: RayJob {name} replaced (revision {revision})",
                )
            return None
        succeeded = _condition(prev, CONDITION_WORKSPACE_SUCCEEDED)
        if (
            succeeded is not None
            and succeeded.get("status") == "True"
            and succeeded.get("observedGeneration") == body["metadata"].get("generation")
        ):
            # Finished earlier and since deleted (TTL): do not run it again; report what it did.
            return {
                "metadata": {"name": name},
                "status": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"},
            }
        if not resource_ready:
            return None
        await self._apply_configmap(body, plan)
        try:
            created = await self.kube.create(desired)
        except KubeError as e:
            if e.status == 409:
                return await self.kube.get(RAYJOBS, name, ns)
            await self.events.warning(body, "RayJobCreateFailed", f"RayJob {name}: {e.message}")
            raise
        metrics.OBJECTS_CREATED.labels(kind="RayJob").inc()
        await self.events.normal(
            body, "RayJobCreated", f"created RayJob {name} (revision {revision})" + _notes(plan)
        )
        return created

    async def _ensure_rayservice(self, body: dict[str, Any], plan: Plan) -> dict[str, Any]:
        desired = build_rayservice(plan)
        ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        revision = desired["metadata"]["annotations"][ANNOTATION_REVISION]
        current = await self.kube.get(RAYSERVICES, name, ns)
        if current is None:
            try:
                created = await self.kube.create(desired)
            except KubeError as e:
                if e.status == 409:
                    return await self.kube.get(RAYSERVICES, name, ns) or desired
                await self.events.warning(body, "RayServiceCreateFailed", f"RayService {name}: {e.message}")
                raise
            metrics.OBJECTS_CREATED.labels(kind="RayService").inc()
            await self.events.normal(
                body, "RayServiceCreated", f"created RayService {name} (revision {revision})" + _notes(plan)
            )
            return created
        if (current["metadata"].get("annotations") or {}).get(ANNOTATION_REVISION) != revision:
            # Updated in place: KubeRay rolls the new cluster out and switches traffic when it is ready.
            updated = dict(current)
            updated["metadata"] = {
                **current["metadata"],
                "annotations": {
                    **(current["metadata"].get("annotations") or {}),
                    ANNOTATION_REVISION: revision,
                },
            }
            updated["spec"] = desired["spec"]
            current = await self.kube.replace(updated)
            await self.events.normal(
                body, "RayServiceUpdated", f"RayService {name} updated to revision {revision}"
            )
        return current

    async def _ensure_service(self, body: dict[str, Any], plan: Plan, active: str | None) -> None:
        desired = build_service(plan, active)
        ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        current = await self.kube.get(SERVICES, name, ns)
        if current is None:
            try:
                await self.kube.create(desired)
            except KubeError as e:
                if e.status != 409:
                    raise
                return
            metrics.OBJECTS_CREATED.labels(kind="Service").inc()
            await self.events.normal(
                body, "ServiceCreated", f"created Service {name} (80 -> Serve, 8265 -> dashboard)"
            )
            return
        spec = current.get("spec") or {}
        ports = [
            {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")} for p in spec.get("ports") or []
        ]
        if spec.get("selector") != desired["spec"]["selector"] or ports != desired["spec"]["ports"]:
            current["spec"] = {
                **spec,
                "selector": desired["spec"]["selector"],
                "ports": desired["spec"]["ports"],
            }
            await self.kube.replace(current)

    async def _fetch_progress(self, ns: str, name: str, job: dict[str, Any] | None) -> dict[str, Any] | None:
        """Tuning progress from the Ray Jobs API of the job's cluster (no credentials handed to the runtime).

        `GET {dashboardURL}/api/jobs/{jobId}/logs`, parsed for the runtime's `KAITO_PROGRESS` records;
        at most every `progress_seconds` per workspace, the last answer reused in between.
        """
        key = (ns, name)
        cached = self._progress.get(key)
        st = (job or {}).get("status") or {}
        url, job_id = st.get("dashboardURL"), st.get("jobId")
        if not url or not job_id:
            return cached[1] if cached else None
        if cached and (self.clock() - cached[0] < self.settings.progress_seconds):
            return cached[1]
        if cached and cached[1] and cached[1].get("state") in ("Succeeded", "Failed"):
            return cached[1]
        base = url if "://" in url else f"http://{url}"
        progress = cached[1] if cached else None
        try:
            resp = await self.http.get(f"{base.rstrip('/')}/api/jobs/{job_id}/logs")
            if resp.status_code == 200:
                progress = parse_progress_logs(resp.json().get("logs") or "") or progress
        except (httpx.HTTPError, ValueError) as e:
            log.debug("progress of %s/%s not available: %s", ns, name, e)
        self._progress[key] = (self.clock(), progress)
        return progress

    async def _announce(self, body: dict[str, Any], prev: dict[str, Any], status: dict[str, Any]) -> None:
        """An Event for every condition that changed: Normal for progress, Warning for failures."""
        old = {c["type"]: c for c in prev.get("conditions") or []}
        for c in status["conditions"]:
            o = old.get(c["type"])
            if o is not None and (o.get("status"), o.get("reason")) == (c["status"], c["reason"]):
                continue
            if c["status"] == "False" and c["reason"] not in WAITING_REASONS:
                await self.events.warning(body, c["reason"], f"{c['type']}: {c['message']}")
            elif c["status"] == "True":
                await self.events.normal(body, c["reason"], f"{c['type']}: {c['message']}")

    async def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        prev = body.get("status") or {}
        if all(prev.get(k) == v for k, v in status.items()):
            return
        md = body["metadata"]
        await self.kube.patch_status(WORKSPACES, md["name"], md.get("namespace", "default"), status)

    # ------------------------------------------------------------------------------------ delete
    async def finalize(self, namespace: str, name: str) -> int:
        """Delete the workspace's NodeClaims; returns how many are still there (0 = done)."""
        claims = await self.kube.list(
            NODECLAIMS, label_selector=f"{LABEL_WORKSPACE}={name},{LABEL_WORKSPACE_NAMESPACE}={namespace}"
        )
        for nc in claims:
            if not nc["metadata"].get("deletionTimestamp"):
                await self.kube.delete(NODECLAIMS, nc["metadata"]["name"])
        self._progress.pop((namespace, name), None)
        return len(
            await self.kube.list(
                NODECLAIMS, label_selector=f"{LABEL_WORKSPACE}={name},{LABEL_WORKSPACE_NAMESPACE}={namespace}"
            )
        )
