"""Names and labels shared with the provisioner (see ARCHITECTURE.md "Names and labels")."""

from __future__ import annotations

import hashlib

LABEL_WORKSPACE = "kaito.sh/workspace"
LABEL_WORKSPACE_NAMESPACE = "kaito.sh/workspacenamespace"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
NODEPOOL = "kaito"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_OS = "kubernetes.io/os"
LABEL_HOSTNAME = "kubernetes.io/hostname"
ANNOTATION_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
ANNOTATION_NODE_IMAGE_FAMILY = "kaito.sh/node-image-family"
ANNOTATION_REVISION = "kaito.sh/revision"
ANNOTATION_SERVE_AFTER_TUNING = "kaito.sh/serve-after-tuning"
ANNOTATION_BYPASS_RESOURCE_CHECKS = "kaito.sh/bypass-resource-checks"
LABEL_RAY_ROLE = "kaito.sh/ray-role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kaito-workspace-controller"
GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
GPU_RESOURCE = "nvidia.com/gpu"
KAITO_NODECLASS_GROUP = "kaito.sh"
KAITO_NODECLASS_KIND = "KaitoNodeClass"
#: KubeRay derives RayCluster, head Service and pod names from the RayJob/RayService name; keep ours short.
MAX_RAY_NAME = 40


def nodeclaim_name(namespace: str, workspace: str, uid: str, index: int) -> str:
    """`ws` + 9 hex chars: a valid AKS agent pool name (<= 12 lowercase alphanumerics).

    Deterministic per (workspace uid, index), so a restarted controller re-derives the same names and a
    duplicate create is answered with 409 instead of producing a second node.
    """
    digest = hashlib.sha256(f"{namespace}/{workspace}/{uid}/{index}".encode()).hexdigest()
    return "ws" + digest[:9]


def ray_name(workspace: str, max_len: int = MAX_RAY_NAME) -> str:
    """The RayJob/RayService name: the workspace name, shortened with a stable hash when too long."""
    if len(workspace) <= max_len:
        return workspace
    digest = hashlib.sha256(workspace.encode()).hexdigest()[:5]
    return workspace[: max_len - 6].rstrip("-.") + "-" + digest


def workspace_labels(name: str, namespace: str) -> dict[str, str]:
    return {LABEL_WORKSPACE: name, LABEL_WORKSPACE_NAMESPACE: namespace}


def config_map_name(workspace: str) -> str:
    return ray_name(workspace, 50) + "-runtime"
