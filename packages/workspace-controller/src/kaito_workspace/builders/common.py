"""Metadata helpers shared by the builders."""

from __future__ import annotations

from typing import Any

from kaito_workspace.planning.model import WorkspaceRef
from kaito_workspace.planning.names import LABEL_MANAGED_BY, MANAGED_BY, workspace_labels


def owner_reference(ws: WorkspaceRef) -> dict[str, Any]:
    """The ownerReference that lets Kubernetes garbage-collect an object with its Workspace."""
    return {
        "apiVersion": ws.api_version,
        "kind": ws.kind,
        "name": ws.name,
        "uid": ws.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_metadata(
    ws: WorkspaceRef, name: str, *, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = {**workspace_labels(ws.name, ws.namespace), LABEL_MANAGED_BY: MANAGED_BY, **(extra_labels or {})}
    meta: dict[str, Any] = {"name": name, "namespace": ws.namespace, "labels": labels}
    if ws.uid:  # unknown when rendering offline; the operator always has it
        meta["ownerReferences"] = [owner_reference(ws)]
    return meta
