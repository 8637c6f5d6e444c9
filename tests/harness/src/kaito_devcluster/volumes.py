"""Pod volumes of a Ray cluster spec, materialized as local directories.

Every Ray process of the dev cluster runs on this machine, so each container mount path becomes a
local directory: configMap volumes are written from the ConfigMap (YAML mappings with container paths
rewritten), secret volumes with 0600 files, hostPath is the path itself (the machine is the user's own),
a PersistentVolumeClaim is one directory per claim (shared by every object that mounts it, so a tuning
job's output is what the serving app reads), emptyDir a directory per Ray object. Container-private
paths (/tmp) also get a per-object directory. Container env is resolved from values, Secrets and
ConfigMaps.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaito_devcluster.kube import Kube, object_path
from kaito_workspace.local.localize import rewrite_paths

#: Paths private to each container: rewritten to a per-object directory.
PRIVATE_PATHS = ("/tmp",)


class NotReady(Exception):
    """Something a pod needs is missing (a ConfigMap, Secret, claim): a real pod would wait too."""


@dataclass(frozen=True)
class Mount:
    mount_path: str
    volume: dict[str, Any]
    read_only: bool = False
    sub_path: str = ""


@dataclass
class Materialized:
    directories: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: env var names whose value came from a Secret (kept out of anything the dashboard shows)
    secret_env: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def pod_templates(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    head = (cluster_spec.get("headGroupSpec") or {}).get("template") or {}
    workers = [(g.get("template") or {}) for g in cluster_spec.get("workerGroupSpecs") or []]
    return [head, *workers]


def mount_table(templates: list[dict[str, Any]]) -> tuple[list[Mount], list[str]]:
    """Every container mount of every template (deduplicated), and conflicts: one path, two volumes."""
    by_path: dict[str, Mount] = {}
    problems: list[str] = []
    for template in templates:
        spec = template.get("spec") or {}
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        for container in spec.get("containers") or []:
            for vm in container.get("volumeMounts") or []:
                volume = volumes.get(vm.get("name"))
                if volume is None:
                    problems.append(
                        f"container {container.get('name')}: volumeMount {vm.get('name')!r} has no volume"
                    )
                    continue
                mount = Mount(vm["mountPath"], volume, bool(vm.get("readOnly")), vm.get("subPath") or "")
                old = by_path.get(mount.mount_path)
                if old is not None and old.volume != mount.volume:
                    problems.append(
                        f"{mount.mount_path} is volume {old.volume.get('name')!r} in one pod and "
                        f"{volume.get('name')!r} in another: one machine cannot give both"
                    )
                    continue
                by_path.setdefault(mount.mount_path, mount)
    return list(by_path.values()), problems


def _secure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _selected_items(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return data
    return {i["path"]: data[i["key"]] for i in items if i.get("key") in data}


class Materializer:
    """Builds the local directories and env for one Ray object (`work_dir` is that object's own)."""

    def __init__(self, kube: Kube, namespace: str, work_dir: Path, claims_dir: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.work_dir = work_dir
        self.claims_dir = claims_dir

    async def materialize(self, cluster_spec: dict[str, Any]) -> Materialized:
        templates = pod_templates(cluster_spec)
        mounts, problems = mount_table(templates)
        if problems:
            raise NotReady("; ".join(problems))
        out = Materialized()
        for private in PRIVATE_PATHS:
            out.directories[private] = _secure_dir(self.work_dir / "private" / private.strip("/"))
        config_volumes: list[tuple[Path, dict[str, bytes]]] = []
        for mount in mounts:
            path, files = await self._volume_dir(mount, out)
            if mount.sub_path:
                path = path / mount.sub_path
                path.mkdir(parents=True, exist_ok=True)
            out.directories[mount.mount_path] = path
            if files is not None:
                config_volumes.append((path, files))
        # ConfigMap content refers to container paths: rewrite them once every directory is known.
        for path, files in config_volumes:
            for name, data in files.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(self._rewrite_file(data, out.directories))
        await self._env(templates[0], out)
        # Env values naming container paths (e.g. a config file) point at the local directories too.
        plain = {k: v for k, v in out.env.items() if k not in out.secret_env}
        out.env.update(rewrite_paths(plain, out.directories))
        return out

    @staticmethod
    def _rewrite_file(data: bytes, directories: dict[str, Path]) -> bytes:
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError:
            return data
        if not isinstance(doc, dict):
            return data
        return yaml.safe_dump(rewrite_paths(doc, directories), sort_keys=False).encode()

    async def _volume_dir(self, mount: Mount, out: Materialized) -> tuple[Path, dict[str, bytes] | None]:
        volume = mount.volume
        name = volume.get("name", "")
        if "emptyDir" in volume:
            path = self.work_dir / "emptydir" / name
            path.mkdir(parents=True, exist_ok=True)
            return path, None
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"]).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            return path, None
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            pvc = await self.kube.get(object_path("v1", "persistentvolumeclaims", self.namespace, claim))
            if pvc is None:
                raise NotReady(f'persistentvolumeclaim "{claim}" not found')
            path = self.claims_dir / self.namespace / claim
            path.mkdir(parents=True, exist_ok=True)
            return path, None
        if "configMap" in volume:
            ref = volume["configMap"]
            cm = await self.kube.get(object_path("v1", "configmaps", self.namespace, ref["name"]))
            if cm is None:
                if ref.get("optional"):
                    return _secure_dir(self.work_dir / "configmap" / name), {}
                raise NotReady(f'configmap "{ref["name"]}" not found')
            data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
            return _secure_dir(self.work_dir / "configmap" / name), _selected_items(data, ref.get("items"))
        if "secret" in volume:
            ref = volume["secret"]
            secret = await self.kube.get(object_path("v1", "secrets", self.namespace, ref["secretName"]))
            directory = _secure_dir(self.work_dir / "secret" / name)
            if secret is None:
                if ref.get("optional"):
                    return directory, None
                raise NotReady(f'secret "{ref["secretName"]}" not found')
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
            for key, value in _selected_items(data, ref.get("items")).items():
                _write_private(directory / key, value)
            return directory, None
        kinds = ", ".join(sorted(k for k in volume if k != "name")) or "none"
        out.notes.append(f"volume {name!r} ({kinds}) has no local counterpart: an empty directory stands in")
        path = self.work_dir / "unsupported" / name
        path.mkdir(parents=True, exist_ok=True)
        return path, None

    async def _env(self, template: dict[str, Any], out: Materialized) -> None:
        """The env of the head's first container (where the entrypoint and the Serve app start)."""
        containers = (template.get("spec") or {}).get("containers") or []
        for item in (containers[0].get("env") if containers else None) or []:
            name = item.get("name", "")
            if "value" in item:
                out.env[name] = str(item["value"])
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = await self._key(
                    object_path("v1", "secrets", self.namespace, ref["name"]), ref["key"], True
                )
                if value is None:
                    if ref.get("optional"):
                        continue
                    raise NotReady(f'secret "{ref["name"]}" (key {ref["key"]}) not found for env {name}')
                out.env[name] = value
                out.secret_env.add(name)
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = await self._key(
                    object_path("v1", "configmaps", self.namespace, ref["name"]), ref["key"], False
                )
                if value is None:
                    if ref.get("optional"):
                        continue
                    raise NotReady(f'configmap "{ref["name"]}" (key {ref["key"]}) not found for env {name}')
                out.env[name] = value
            else:
                out.notes.append(f"env {name}: {', '.join(source) or 'empty'} is not resolved locally")

    async def _key(self, path: str, key: str, secret: bool) -> str | None:
        obj = await self.kube.get(path)
        if obj is None:
            return None
        if secret:
            if key in (obj.get("stringData") or {}):
                return obj["stringData"][key]
            raw = (obj.get("data") or {}).get(key)
            return None if raw is None else base64.b64decode(raw).decode()
        return (obj.get("data") or {}).get(key)
