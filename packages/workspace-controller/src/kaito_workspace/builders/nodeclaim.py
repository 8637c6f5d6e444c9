"""Karpenter NodeClaims (karpenter.sh/v1) for the nodes a Workspace still needs."""

from __future__ import annotations

from typing import Any

from kaito_workspace.planning.model import NodeClaimPlan, Plan, WorkspaceRef
from kaito_workspace.planning.names import (
    ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_NODE_IMAGE_FAMILY,
    GPU_TAINT,
    KAITO_NODECLASS_GROUP,
    KAITO_NODECLASS_KIND,
    LABEL_INSTANCE_TYPE,
    LABEL_MANAGED_BY,
    LABEL_NODEPOOL,
    LABEL_OS,
    MANAGED_BY,
    NODEPOOL,
    workspace_labels,
)


def build_nodeclaim(ws: WorkspaceRef, claim: NodeClaimPlan) -> dict[str, Any]:
    """One NodeClaim. Not owned by the Workspace: the workspace finalizer deletes it explicitly."""
    labels = {
        **claim.labels,
        **workspace_labels(ws.name, ws.namespace),
        LABEL_NODEPOOL: NODEPOOL,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": claim.name,
            "labels": labels,
            "annotations": {
                ANNOTATION_DO_NOT_DISRUPT: "true",
                ANNOTATION_NODE_IMAGE_FAMILY: claim.node_image_family,
            },
        },
        "spec": {
            "nodeClassRef": {
                "group": KAITO_NODECLASS_GROUP,
                "kind": KAITO_NODECLASS_KIND,
                "name": claim.node_class,
            },
            "taints": [dict(GPU_TAINT)],
            "requirements": [
                {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [claim.instance_type]},
                {"key": LABEL_NODEPOOL, "operator": "In", "values": [NODEPOOL]},
                {"key": LABEL_OS, "operator": "In", "values": ["linux"]},
            ],
            "resources": {"requests": {"storage": claim.storage}},
        },
    }


def build_nodeclaims(plan: Plan) -> list[dict[str, Any]]:
    return [build_nodeclaim(plan.workspace, c) for c in plan.nodes.nodeclaims]
