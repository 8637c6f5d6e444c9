"""The resource types the emulator serves: built-in kinds and kinds defined by CRDs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

# What happens to `status` in a create body: "drop" (CRs with a status subresource, services,
# deployments...), "keep" (nodes register with their status, kinds without status subresource).
NAME_SUBDOMAIN = "subdomain"
NAME_LABEL = "label"  # RFC 1123 label (namespaces)
NAME_1035 = "1035"  # RFC 1035 label (services)


@dataclass
class ResourceInfo:
    group: str
    versions: list[str]  # served versions, in the order given
    storage_version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    scale_subresource: dict[str, Any] | None = None
    # per version: openAPIV3Schema (CRDs only) and additionalPrinterColumns
    schemas: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    builtin: bool = True
    status_on_create: str = "keep"  # "keep" | "drop"
    name_rule: str = NAME_SUBDOMAIN
    extra_subresources: tuple[str, ...] = ()  # known upstream but not implemented here (answer 501)
    crd_name: str | None = None
    selectable_fields: set[str] = field(default_factory=set)  # CRD selectableFields, as "spec.x"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


# The scale subresource of Deployments/StatefulSets/ReplicaSets, in the CRD `subresources.scale` form.
BUILTIN_SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".spec.selector",
}

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: Kubernetes' version priority (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -major, -minor, version)


def sort_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=version_priority)


def _b(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    status: bool = False,
    status_on_create: str = "keep",
    name_rule: str = NAME_SUBDOMAIN,
    extra: tuple[str, ...] = (),
    scale: bool = False,
) -> ResourceInfo:
    return ResourceInfo(
        group=group,
        versions=[version],
        storage_version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=list(short),
        categories=list(cats),
        status_subresource=status,
        status_on_create=status_on_create,
        name_rule=name_rule,
        extra_subresources=extra,
        scale_subresource=BUILTIN_SCALE if scale else None,
    )


def builtin_resources() -> list[ResourceInfo]:
    """Built-in kinds. Only some have behaviour; see README ("stored without behaviour")."""
    return [
        _b(
            "",
            "v1",
            "Namespace",
            "namespaces",
            False,
            ("ns",),
            status=True,
            name_rule=NAME_LABEL,
            extra=("finalize",),
        ),
        _b("", "v1", "Node", "nodes", False, ("no",), status=True, extra=("proxy",)),
        _b(
            "",
            "v1",
            "Pod",
            "pods",
            True,
            ("po",),
            ("all",),
            status=True,
            status_on_create="drop",
            extra=(
                "log",
                "exec",
                "attach",
                "portforward",
                "proxy",
                "eviction",
                "ephemeralcontainers",
                "resize",
            ),
        ),
        _b(
            "",
            "v1",
            "Service",
            "services",
            True,
            ("svc",),
            ("all",),
            status=True,
            status_on_create="drop",
            name_rule=NAME_1035,
            extra=("proxy",),
        ),
        _b("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
        _b("", "v1", "Secret", "secrets", True),
        _b("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), extra=("token",)),
        _b("", "v1", "Event", "events", True, ("ev",)),
        _b("", "v1", "Endpoints", "endpoints", True, ("ep",)),
        _b(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            True,
            ("pvc",),
            status=True,
            status_on_create="drop",
        ),
        _b("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), status=True),
        _b("events.k8s.io", "v1", "Event", "events", True, ("ev",)),
        _b("coordination.k8s.io", "v1", "Lease", "leases", True),
        _b(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            False,
            ("crd", "crds"),
            ("api-extensions",),
            status=True,
            status_on_create="drop",
        ),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
        _b("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
        _b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
        _b(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            True,
            ("deploy",),
            ("all",),
            status=True,
            status_on_create="drop",
            scale=True,
        ),
        _b(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            True,
            ("sts",),
            ("all",),
            status=True,
            status_on_create="drop",
            scale=True,
        ),
        _b(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            True,
            ("ds",),
            ("all",),
            status=True,
            status_on_create="drop",
        ),
        _b(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            True,
            ("rs",),
            ("all",),
            status=True,
            status_on_create="drop",
            scale=True,
        ),
        _b("batch", "v1", "Job", "jobs", True, (), ("all",), status=True, status_on_create="drop"),
        _b(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            True,
            ("pdb",),
            status=True,
            status_on_create="drop",
        ),
        _b(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            False,
            (),
            ("api-extensions",),
        ),
        _b(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            False,
            (),
            ("api-extensions",),
        ),
        _b("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
        _b("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    ]


def from_crd(crd: dict[str, Any]) -> ResourceInfo:
    """A ResourceInfo for a (validated) CustomResourceDefinition object."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served", True)]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    status_sub = any("status" in (v.get("subresources") or {}) for v in spec["versions"])
    scale = next(
        (
            (v.get("subresources") or {}).get("scale")
            for v in spec["versions"]
            if (v.get("subresources") or {}).get("scale")
        ),
        None,
    )
    schemas: dict[str, dict[str, Any] | None] = {}
    columns: dict[str, list[dict[str, Any]]] = {}
    for v in spec["versions"]:
        schemas[v["name"]] = ((v.get("schema") or {}).get("openAPIV3Schema")) or None
        columns[v["name"]] = list(v.get("additionalPrinterColumns") or [])
    return ResourceInfo(
        group=spec["group"],
        versions=[v["name"] for v in served],
        storage_version=storage,
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        status_subresource=status_sub,
        scale_subresource=scale,
        schemas=schemas,
        printer_columns=columns,
        builtin=False,
        status_on_create="drop" if status_sub else "keep",
        crd_name=crd["metadata"]["name"],
        selectable_fields={
            str(f.get("jsonPath", "")).lstrip(".")
            for v in spec["versions"]
            for f in v.get("selectableFields") or []
            if f.get("jsonPath")
        },
    )
