"""What the stand-in changes to run a generated Ray object on this machine (pure functions).

Only container paths and what one machine cannot give are changed: the entrypoint's path arguments
point at the materialized directories; the kaito runtime's GPU scaling becomes CPU scaling when this
machine has fewer GPUs than asked (reported as an Event); Serve applications get a unique name and a
route prefix on the one local Serve proxy (`/<namespace>/<rayservice>`), which the Service forwarder
adds back.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

from kaito_workspace.local.localize import rewrite_paths

KAITO_SERVE_IMPORT = "kaito_runtime.serving.app:build_app"


def _rewrite_token(token: str, directories: dict[str, Path]) -> str:
    prefix, sep, value = token.partition("=") if token.startswith("-") and "=" in token else ("", "", token)
    rewritten = rewrite_paths({"v": value}, directories)["v"]
    return f"{prefix}{sep}{rewritten}"


def localize_entrypoint(entrypoint: str, directories: dict[str, Path]) -> str:
    """The entrypoint with every container path argument replaced by its local directory."""
    tokens = shlex.split(entrypoint)
    return shlex.join(_rewrite_token(t, directories) for t in tokens)


def tune_config_path(entrypoint: str) -> str | None:
    """The config file of a `kaito-runtime tune --config FILE` entrypoint (local path), else None."""
    tokens = shlex.split(entrypoint)
    if len(tokens) < 2 or Path(tokens[0]).name != "kaito-runtime" or tokens[1] != "tune":
        return None
    for i, token in enumerate(tokens):
        if token == "--config" and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def localize_tune_scaling(config: dict[str, Any], local_gpus: int) -> tuple[dict[str, Any], list[str]]:
    """CPU workers instead of GPU workers when this machine lacks the GPUs (with a note saying so)."""
    config = copy.deepcopy(config)
    scaling = config.get("scaling") or {}
    notes: list[str] = []
    workers = int(scaling.get("num_workers", 1) or 1)
    per_worker = float(
        (scaling.get("resources_per_worker") or {}).get("GPU", 1 if scaling.get("use_gpu") else 0)
    )
    if scaling.get("use_gpu") and local_gpus < workers * per_worker:
        notes.append(
            f"tuning asks for {workers} worker(s) with {per_worker:g} GPU each; "
            f"this machine has {local_gpus} GPU(s): the workers run on CPU"
        )
        resources = {k: v for k, v in (scaling.get("resources_per_worker") or {}).items() if k != "GPU"}
        resources.setdefault("CPU", 1)
        config["scaling"] = {**scaling, "use_gpu": False, "resources_per_worker": resources}
    return config, notes


def local_app_name(namespace: str, name: str, app: str) -> str:
    return f"{namespace}--{name}--{app}"


def local_route_prefix(namespace: str, name: str, route_prefix: str | None = "/") -> str:
    base = f"/{namespace}/{name}"
    rp = (route_prefix or "/").rstrip("/")
    return base + rp


def _cpu_actor_options(
    options: dict[str, Any], local_gpus: int, where: str, notes: list[str]
) -> dict[str, Any]:
    gpus = float(options.get("num_gpus", 0) or 0)
    if gpus and local_gpus < gpus:
        notes.append(
            f"{where} asks for {gpus:g} GPU(s) per replica; this machine has {local_gpus}: runs on CPU"
        )
        options = {k: v for k, v in options.items() if k != "num_gpus"}
        options.setdefault("num_cpus", 1)
    return options


def localize_serve_app(
    app: dict[str, Any],
    *,
    namespace: str,
    name: str,
    directories: dict[str, Path],
    serve_port: int,
    local_gpus: int,
    env: dict[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """One serveConfigV2 application as the local Serve runs it (unique name, prefixed route)."""
    notes: list[str] = []
    app_name = app.get("name", "default")
    local = copy.deepcopy(app)
    local["name"] = local_app_name(namespace, name, app_name)
    local["route_prefix"] = local_route_prefix(namespace, name, app.get("route_prefix", "/"))
    if "args" in local:
        local["args"] = rewrite_paths(local["args"], directories)
    if local.get("import_path") == KAITO_SERVE_IMPORT and isinstance(local.get("args"), dict):
        args = local["args"]
        args["http"] = {**(args.get("http") or {}), "host": "127.0.0.1", "port": serve_port}
        args["http"]["route_prefix"] = local["route_prefix"]
        deployment = args.setdefault("deployment", {})
        deployment["ray_actor_options"] = _cpu_actor_options(
            deployment.get("ray_actor_options") or {}, local_gpus, f"application {app_name}", notes
        )
    for dep in local.get("deployments") or []:
        if "ray_actor_options" in dep:
            dep["ray_actor_options"] = _cpu_actor_options(
                dep["ray_actor_options"], local_gpus, f"deployment {dep.get('name')}", notes
            )
    if env:
        runtime_env = local.setdefault("runtime_env", {})
        runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
    return local, notes
