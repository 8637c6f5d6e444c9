"""The ConfigMap carrying the runtime's resolved config (never secrets: those stay in Secrets)."""

from __future__ import annotations

from typing import Any

import yaml

from kaito_workspace.builders.common import owned_metadata
from kaito_workspace.planning.model import Plan
from kaito_workspace.planning.names import config_map_name

CONFIG_DIR = "/etc/kaito"


def build_runtime_configmap(plan: Plan) -> dict[str, Any] | None:
    """`<workspace>-runtime` with `tune.yaml` for tuning workspaces; None when nothing needs a file."""
    if plan.tuning is None:
        return None
    data = {plan.tuning.config_file: yaml.safe_dump(plan.tuning.config, sort_keys=False)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owned_metadata(plan.workspace, config_map_name(plan.workspace.name)),
        "data": data,
    }
