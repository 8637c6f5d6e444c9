"""Planning: Workspace + preset + cluster facts in, a resolved `Plan` out (pure functions)."""

from kaito_workspace.planning.facts import ClusterFacts, PlannerSettings, PresetFacts, SkuFacts
from kaito_workspace.planning.model import Plan
from kaito_workspace.planning.resolve import PlanningError, plan_workspace, target_node_count

__all__ = [
    "ClusterFacts",
    "Plan",
    "PlannerSettings",
    "PlanningError",
    "PresetFacts",
    "SkuFacts",
    "plan_workspace",
    "target_node_count",
]
