"""Builders: a resolved `Plan` in, Kubernetes manifests (plain dicts) out. No I/O."""

from kaito_workspace.builders.configmap import build_runtime_configmap
from kaito_workspace.builders.nodeclaim import build_nodeclaim, build_nodeclaims
from kaito_workspace.builders.objects import build_objects, build_workload, dump_yaml
from kaito_workspace.builders.ray import build_rayjob, build_rayservice
from kaito_workspace.builders.service import build_service

__all__ = [
    "build_nodeclaim",
    "build_nodeclaims",
    "build_objects",
    "build_rayjob",
    "build_rayservice",
    "build_runtime_configmap",
    "build_service",
    "build_workload",
    "dump_yaml",
]
