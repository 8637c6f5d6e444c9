"""kopf wiring: thin handlers that call the Reconciler (all decisions live in planning/status).

- create/update/resume and a periodic timer reconcile the Workspace (level-triggered);
- changes of the NodeClaims, RayJobs and RayServices labelled for a workspace reconcile it at once;
- the delete handler (kopf's finalizer) deletes the NodeClaims and waits for them to go;
- the validating admission handler runs `validate_workspace`, the same function as everywhere else.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kaito_workspace.api import GROUP, parse_workspace
from kaito_workspace.operator import metrics
from kaito_workspace.operator.reconcile import Reconciler
from kaito_workspace.operator.settings import OperatorSettings
from kaito_workspace.planning.names import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito_workspace.validation import validate_workspace

log = logging.getLogger(__name__)
WEBHOOK_ID = "validate-workspace"
FINALIZER = "kaito.sh/workspace-finalizer"


class State:
    """What the handlers share: the reconciler (set at startup) and readiness."""

    def __init__(self) -> None:
        self.reconciler: Reconciler | None = None
        self.ready = False
        self.health_port: int | None = None


def admission_problems(
    body: dict[str, Any], old: dict[str, Any] | None, catalog: Any = None, *, local: bool = False
) -> list[str]:
    """What the webhook rejects: every validation problem of the new object (and immutability vs old)."""
    problems = validate_workspace(body, old=old or None, presets=catalog, local=local)
    return [f"{p.path or '<root>'}: {p.message}" + (f" (hint: {p.hint})" if p.hint else "") for p in problems]


def register(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, state: State, *, webhook: bool
) -> None:
    ws = (GROUP, "v1beta1", "workspaces")

    def reconciler() -> Reconciler:
        if state.reconciler is None:
            raise kopf.TemporaryError("the controller is starting", delay=1)
        return state.reconciler

    async def reconcile(namespace: str, name: str) -> None:
        await reconciler().reconcile(namespace, name)

    @kopf.on.resume(*ws, registry=registry)
    @kopf.on.create(*ws, registry=registry)
    @kopf.on.update(*ws, registry=registry)
    async def on_workspace(**kwargs: Any) -> None:
        await reconcile(kwargs["namespace"], kwargs["name"])

    @kopf.timer(*ws, interval=settings.resync_seconds, sharp=False, registry=registry)
    async def resync(**kwargs: Any) -> None:
        await reconcile(kwargs["namespace"], kwargs["name"])

    @kopf.on.delete(*ws, registry=registry)
    async def on_delete(**kwargs: Any) -> None:
        name, namespace, body = kwargs["name"], kwargs["namespace"], kwargs["body"]
        rec = reconciler()
        remaining = await rec.finalize(namespace, name)
        if remaining:
            await rec.events.normal(
                dict(body), "DeletingNodeClaims", f"waiting for {remaining} NodeClaim(s) to be deleted"
            )
            raise kopf.TemporaryError(f"{remaining} NodeClaim(s) still terminating", delay=2)

    def owner_of(labels: dict[str, str], namespace: str | None) -> tuple[str, str] | None:
        name = labels.get(LABEL_WORKSPACE)
        ns = labels.get(LABEL_WORKSPACE_NAMESPACE) or namespace
        return (ns, name) if name and ns else None

    async def on_child(labels: dict[str, str], namespace: str | None) -> None:
        owner = owner_of(dict(labels), namespace)
        if owner is None or state.reconciler is None:
            return
        if settings.namespaces and owner[0] not in settings.namespaces:
            return
        try:
            await state.reconciler.reconcile(*owner)
        except Exception as e:  # the timer retries; an event handler must not crash the watch
            log.warning("reconcile of %s/%s after a change of its objects failed: %s", *owner, e)

    watched = {LABEL_WORKSPACE: kopf.PRESENT}
    for group, version, plural in (
        ("karpenter.sh", "v1", "nodeclaims"),
        ("ray.io", "v1", "rayjobs"),
        ("ray.io", "v1", "rayservices"),
    ):

        @kopf.on.event(group, version, plural, id=f"owned-{plural}", labels=watched, registry=registry)
        async def on_owned(**kwargs: Any) -> None:
            await on_child(kwargs["labels"], kwargs.get("namespace"))

    if webhook:

        @kopf.on.validate(*ws, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"], registry=registry)
        async def validate(**kwargs: Any) -> None:
            doc, old = dict(kwargs["body"]), kwargs.get("old")
            ws_obj, _problems = parse_workspace(doc)
            catalog = state.reconciler.catalog if state.reconciler else None
            problems = admission_problems(doc, dict(old) if old else None, catalog, local=settings.local)
            metrics.ADMISSION_TOTAL.labels(allowed=str(not problems).lower()).inc()
            if problems:
                name = (ws_obj.name if ws_obj else doc.get("metadata", {}).get("name")) or "workspace"
                raise kopf.AdmissionError(f"Workspace {name} is invalid: " + "; ".join(problems), code=422)
