"""The ray.io CRDs the dev cluster installs (KubeRay's own install does this on a real cluster).

KubeRay's published CRDs are used when available (`--kuberay-crds`, default: the reference copies in
../shared/reference/crds); otherwise minimal stand-in CRDs (same names, versions, scope, status
subresource and printer columns, schema left open) so that the objects can be stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[4]


def reference_kuberay_crds() -> list[Path]:
    shared = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
    return sorted((shared / "reference" / "crds").glob("kuberay-*.yaml"))


_COLUMNS = {
    "RayJob": [
        ("job status", ".status.jobStatus"),
        ("deployment status", ".status.jobDeploymentStatus"),
        ("ray cluster name", ".status.rayClusterName"),
        ("start time", ".status.startTime"),
        ("end time", ".status.endTime"),
    ],
    "RayService": [
        ("service status", ".status.serviceStatus"),
        ("num serve endpoints", ".status.numServeEndpoints"),
    ],
    "RayCluster": [("status", ".status.state")],
}


def minimal_kuberay_crds() -> list[dict[str, Any]]:
    out = []
    for kind, columns in _COLUMNS.items():
        plural = kind.lower() + "s"
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.ray.io"},
                "spec": {
                    "group": "ray.io",
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                        "categories": ["all"],
                    },
                    "scope": "Namespaced",
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "subresources": {"status": {}},
                            "additionalPrinterColumns": [
                                {"name": n, "type": "string", "jsonPath": p} for n, p in columns
                            ]
                            + [{"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    return out
