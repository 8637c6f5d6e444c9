"""Turn the operator's plan into steps for this machine: volumes become local directories, Secrets
come from the documents given, and scaling follows the local CPUs/GPUs.

The runtime configs are the planner's own, with only container paths rewritten, so a local run executes
what the cluster would.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_workspace.planning import Plan


class LocalizeError(ValueError):
    """Something in the plan has no local counterpart; the message names it and the fix."""


@dataclass
class LocalSteps:
    """What a local run executes."""

    tune: dict[str, Any] | None
    serve: dict[str, Any] | None
    env: dict[str, str] = field(default_factory=dict)
    #: container path -> local directory, for the plan printout
    directories: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LocalMachine:
    """Facts and choices about this machine."""

    work_dir: Path
    base_dir: Path = Path(".")
    gpus: int = 0
    host: str = "127.0.0.1"
    port: int = 8000
    #: `--volume NAME=DIR`: NAME is a PersistentVolumeClaim's claimName or a pod volume's name
    volumes: dict[str, Path] = field(default_factory=dict)


def localize(
    plan: Plan, machine: LocalMachine, secrets: dict[str, dict[str, str]] | None = None
) -> LocalSteps:
    secrets = secrets or {}
    directories: dict[str, Path] = {}
    for mount in plan.mounts:
        directories[mount.mount_path] = _local_dir(mount.volume, mount.read_only, machine, secrets)
    steps = LocalSteps(tune=None, serve=None, directories=directories, notes=list(plan.notes))
    for item in plan.secret_env:
        value = secrets.get(item.secret, {}).get(item.key)
        if value is None:
            if item.optional:
                continue
            value = os.environ.get(item.env)
            if value is None:
                raise LocalizeError(
                    f"Secret {item.secret!r} (key {item.key}) is not in the files given and ${item.env} is "
                    f"not set: add the Secret to the YAML (or --config-dir), or export {item.env}"
                )
        steps.env[item.env] = value
    if plan.tuning is not None:
        steps.tune = _local_tune(rewrite_paths(plan.tuning.config, directories), machine)
    if plan.serving is not None:
        steps.serve = _local_serve(rewrite_paths(plan.serving.config, directories), machine)
    return steps


def _local_tune(config: dict[str, Any], machine: LocalMachine) -> dict[str, Any]:
    config["progress_file"] = str(machine.work_dir / "progress.json")
    config["progress_log"] = False  # the local display reads the progress file
    storage = Path(config.get("storage_path") or "")
    if not storage.is_absolute() or not _is_local(storage, machine):
        config["storage_path"] = str(machine.work_dir / "checkpoints")
    use_gpu = machine.gpus > 0
    config["scaling"] = {
        "num_workers": max(1, machine.gpus),
        "use_gpu": use_gpu,
        "resources_per_worker": {"GPU": 1} if use_gpu else {"CPU": 1},
    }
    return config


def _local_serve(config: dict[str, Any], machine: LocalMachine) -> dict[str, Any]:
    config["http"] = {"host": machine.host, "port": machine.port}
    deployment = config.setdefault("deployment", {})
    deployment["num_replicas"] = 1
    gpus = min(machine.gpus, int(deployment.get("ray_actor_options", {}).get("num_gpus", 0) or 0))
    deployment["ray_actor_options"] = {"num_gpus": gpus} if gpus else {"num_cpus": 1}
    return config


def _is_local(path: Path, machine: LocalMachine) -> bool:
    return path.is_relative_to(machine.work_dir) or path.exists()


def _local_dir(
    volume: dict[str, Any], read_only: bool, machine: LocalMachine, secrets: dict[str, dict[str, str]]
) -> Path:
    name = volume.get("name", "")
    if name in machine.volumes:
        return _existing_or_created(machine.volumes[name], read_only, f"--volume {name}")
    if "hostPath" in volume:
        path = Path(volume["hostPath"]["path"]).expanduser()
        path = path if path.is_absolute() else (machine.base_dir / path)
        return _existing_or_created(path.resolve(), read_only, f"volume {name!r} hostPath")
    if "persistentVolumeClaim" in volume:
        claim = volume["persistentVolumeClaim"]["claimName"]
        if claim in machine.volumes:
            return _existing_or_created(machine.volumes[claim], read_only, f"--volume {claim}")
        if read_only:
            raise LocalizeError(
                f"PersistentVolumeClaim {claim!r} holds input and has no local directory: "
                f"pass --volume {claim}=DIR"
            )
        return _existing_or_created(machine.work_dir / "volumes" / claim, False, claim)
    if "emptyDir" in volume:
        return _existing_or_created(machine.work_dir / name, False, name)
    if "secret" in volume:
        return _write_secret(volume["secret"]["secretName"], machine, secrets)
    kinds = ", ".join(sorted(k for k in volume if k != "name")) or "none"
    raise LocalizeError(f"volume {name!r} ({kinds}) has no local counterpart: pass --volume {name}=DIR")


def _existing_or_created(path: Path, must_exist: bool, what: str) -> Path:
    path = path.expanduser().resolve()
    if must_exist and not path.is_dir():
        raise LocalizeError(f"{what}: {path} is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_secret(name: str, machine: LocalMachine, secrets: dict[str, dict[str, str]]) -> Path:
    if name not in secrets:
        raise LocalizeError(f"Secret {name!r} is not in the files given: add it to the YAML or --config-dir")
    directory = machine.work_dir / "secrets" / name
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for key, value in secrets[name].items():
        target = directory / key
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    return directory


def rewrite_paths(config: dict[str, Any], directories: dict[str, Path]) -> dict[str, Any]:
    """Replace container mount paths in every string value with their local directories."""
    prefixes = sorted(directories, key=len, reverse=True)

    def visit(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: visit(v) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v) for v in value]
        if isinstance(value, str):
            for prefix in prefixes:
                if value == prefix or value.startswith(prefix + "/"):
                    return str(directories[prefix]) + value[len(prefix) :]
        return value

    return visit(copy.deepcopy(config))
