"""All objects for one plan, in the order the operator creates them."""

from __future__ import annotations

from typing import Any

import yaml

from kaito_workspace.builders.configmap import build_runtime_configmap
from kaito_workspace.builders.nodeclaim import build_nodeclaims
from kaito_workspace.builders.ray import build_rayjob, build_rayservice
from kaito_workspace.builders.service import build_service
from kaito_workspace.planning.model import Plan


def build_workload(plan: Plan, *, include_serving_after_tuning: bool = True) -> list[dict[str, Any]]:
    """ConfigMap + RayJob (tuning) and/or RayService, then the Service. NodeClaims excluded."""
    objs: list[dict[str, Any]] = []
    if plan.tuning is not None:
        cm = build_runtime_configmap(plan)
        if cm is not None:
            objs.append(cm)
        objs.append(build_rayjob(plan))
    if plan.serving is not None and (plan.tuning is None or include_serving_after_tuning):
        objs.append(build_rayservice(plan))
    objs.append(build_service(plan))
    return objs


def build_objects(plan: Plan) -> list[dict[str, Any]]:
    """Every object the operator would create for this plan (what `kaito-workspace render` prints)."""
    return [*build_nodeclaims(plan), *build_workload(plan)]


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(objs: list[dict[str, Any]]) -> str:
    """Multi-document YAML without anchors/aliases (what kubectl users expect to read)."""
    return yaml.dump_all(objs, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False)
