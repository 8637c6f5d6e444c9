"""Adapters (and training data) as OCI artifacts, with the `oras` library.

`push_adapter(dir, ref, auth)` pushes every file of an adapter directory as one layer (titled
with the file name) and annotates the manifest with `sh.kaito.model.name`. `pull_adapter(ref,
dest, auth)` is what the serving side calls: it accepts such an artifact, and also a container
image whose tar layers hold the adapter (Kaito's own adapter images keep it under /data).

Credentials: a docker `config.json` (`RegistryAuth(config_file=...)`) or a username/password
(`RegistryAuth(username=..., password=...)`, e.g. from `KAITO_REGISTRY_USERNAME` /
`KAITO_REGISTRY_PASSWORD`). They are never logged. Registries on localhost / 127.0.0.1 are
spoken to over plain http (like docker's default insecure registries); others over https unless
`insecure=True` or `KAITO_REGISTRY_INSECURE=1`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_ANNOTATION = "sh.kaito.model.name"
ADAPTER_CONFIG_MEDIA_TYPE = "application/vnd.kaito.adapter.config.v1+json"
ADAPTER_LAYER_MEDIA_TYPE = "application/vnd.kaito.adapter.file.v1"
_TITLE = "org.opencontainers.image.title"
_LOOPBACK = ("localhost", "127.", "[::1]")


class OciError(RuntimeError):
    """A push or pull failed; the message names the reference and the reason (never a secret)."""


@dataclass(frozen=True)
class RegistryAuth:
    """Registry credentials: a docker config.json, or a username and password."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    config_file: str | None = None
    insecure: bool | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("registry auth: set both username and password, or neither")


def auth_from_env(config_file: str | None = None) -> RegistryAuth | None:
    """Credentials from `config_file` (a docker config.json), else `KAITO_REGISTRY_USERNAME` /
    `KAITO_REGISTRY_PASSWORD`, else None (anonymous, or ~/.docker/config.json if present)."""
    insecure = os.environ.get("KAITO_REGISTRY_INSECURE", "").lower() in {"1", "true", "yes"} or None
    if config_file:
        if not Path(config_file).expanduser().is_file():
            raise OciError(f"registry_auth_file {config_file}: not found (mount the docker config secret)")
        return RegistryAuth(config_file=str(Path(config_file).expanduser()), insecure=insecure)
    user, password = os.environ.get("KAITO_REGISTRY_USERNAME"), os.environ.get("KAITO_REGISTRY_PASSWORD")
    if user and password:
        return RegistryAuth(username=user, password=password, insecure=insecure)
    return RegistryAuth(insecure=insecure) if insecure else None


def _registry(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
        raise OciError(
            f"OCI reference {ref!r}: name the registry host, e.g. myregistry.azurecr.io/adapter:v1"
        )
    return first


def _client(ref: str, auth: RegistryAuth | None) -> Any:
    import oras.client

    registry = _registry(ref)
    insecure = auth.insecure if auth and auth.insecure is not None else registry.startswith(_LOOPBACK)
    backend = _auth_backend(registry, insecure)
    client = oras.client.OrasClient(hostname=registry, insecure=insecure, auth_backend=backend)
    if auth and auth.username:
        client.auth.set_basic_auth(auth.username, auth.password)
    return client


def _auth_backend(registry: str, insecure: bool) -> str:
    """`basic` for registries that challenge with Basic auth (e.g. a plain distribution registry
    with htpasswd), `token` (the OCI bearer-token flow: ACR, GHCR, Docker Hub) otherwise."""
    import requests

    url = f"{'http' if insecure else 'https'}://{registry}/v2/"
    try:
        challenge = requests.get(url, timeout=10).headers.get("WWW-Authenticate", "")
    except requests.RequestException as exc:
        raise OciError(f"registry {registry}: not reachable at {url}: {type(exc).__name__}") from None
    return "basic" if challenge.lower().startswith("basic") else "token"


def _config_path(auth: RegistryAuth | None) -> str | None:
    return auth.config_file if auth else None


def _fail(action: str, ref: str, exc: Exception) -> OciError:
    reason = str(exc) or type(exc).__name__
    for secret in filter(None, [os.environ.get("KAITO_REGISTRY_PASSWORD")]):
        reason = reason.replace(secret, "***")
    if "401" in reason or "unauthorized" in reason.lower():
        reason += " (check the registry credentials: registry_auth_file or KAITO_REGISTRY_USERNAME/PASSWORD)"
    return OciError(f"{action} {ref}: {reason}")


def push_adapter(
    directory: str | Path,
    ref: str,
    auth: RegistryAuth | None = None,
    *,
    model_name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """Push the files of `directory` as an OCI artifact; returns the manifest digest."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file())
    if not files:
        raise OciError(f"push {ref}: {directory} holds no files")
    manifest_annotations = dict(annotations or {})
    if model_name:
        manifest_annotations[MODEL_ANNOTATION] = model_name
    client = _client(ref, auth)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"model": model_name, "files": [p.name for p in files]}))
        try:
            response = client.push(
                target=ref,
                files=[f"{p}:{ADAPTER_LAYER_MEDIA_TYPE}" for p in files],
                disable_path_validation=True,
                manifest_config=f"{config}:{ADAPTER_CONFIG_MEDIA_TYPE}",
                manifest_annotations=manifest_annotations,
                config_path=_config_path(auth),
                quiet=True,
            )
        except Exception as exc:
            raise _fail("push", ref, exc) from None
    digest = response.headers.get("Docker-Content-Digest", "")
    log.info("pushed %d files to %s %s", len(files), ref, digest)
    return digest


def get_manifest(ref: str, auth: RegistryAuth | None = None) -> dict[str, Any]:
    client = _client(ref, auth)
    try:
        container = client.get_container(ref)
        client.auth.load_configs(container, configs=[auth.config_file] if auth and auth.config_file else None)
        return client.get_manifest(container)
    except Exception as exc:
        raise _fail("pull", ref, exc) from None


def _pull_layers(ref: str, dest: Path, auth: RegistryAuth | None) -> None:
    """Download every layer: titled blobs as files, tar layers extracted (safely)."""
    client = _client(ref, auth)
    try:
        container = client.get_container(ref)
        client.auth.load_configs(container, configs=[auth.config_file] if auth and auth.config_file else None)
        manifest = client.get_manifest(container)
        dest.mkdir(parents=True, exist_ok=True)
        for layer in manifest.get("layers", []):
            title = (layer.get("annotations") or {}).get(_TITLE)
            media_type = layer.get("mediaType", "")
            if title and "tar" not in media_type:
                name = Path(title).name
                client.download_blob(container, layer["digest"], str(dest / name))
                continue
            with tempfile.NamedTemporaryFile(suffix=".tar") as blob:
                client.download_blob(container, layer["digest"], blob.name)
                with tarfile.open(blob.name, mode="r:*") as archive:
                    archive.extractall(dest, filter="data")
    except OciError:
        raise
    except Exception as exc:
        raise _fail("pull", ref, exc) from None


def pull_adapter(ref: str, dest: str | Path, auth: RegistryAuth | None = None) -> Path:
    """Pull an adapter into `dest` (which then holds adapter_config.json); returns `dest`."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        _pull_layers(ref, Path(tmp), auth)
        configs = sorted(Path(tmp).rglob("adapter_config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise OciError(f"pull {ref}: the artifact holds no adapter_config.json (not a LoRA adapter)")
        source = configs[0].parent
        dest.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            target = dest / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    log.info("pulled adapter %s into %s", ref, dest)
    return dest


def pull_data(ref: str, dest: str | Path, auth: RegistryAuth | None = None) -> Path:
    """Pull an artifact or image holding training data into `dest`; returns the directory."""
    dest = Path(dest)
    _pull_layers(ref, dest, auth)
    return dest
