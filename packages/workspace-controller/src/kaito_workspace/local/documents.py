"""Read the documents a local run needs: the Workspace, and the ConfigMaps and Secrets it refers to."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class DocumentError(ValueError):
    """A file could not be read as Kubernetes YAML; the message names the file and the document."""


@dataclass
class Documents:
    """Everything found in the given files, by kind; ConfigMaps and Secrets by name."""

    workspaces: list[dict[str, Any]] = field(default_factory=list)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def workspace(self) -> dict[str, Any]:
        if len(self.workspaces) != 1:
            found = ", ".join(w.get("metadata", {}).get("name", "?") for w in self.workspaces) or "none"
            raise DocumentError(f"expected exactly one Workspace in the files, found {found}")
        return self.workspaces[0]


def load_documents(files: list[Path], config_dirs: list[Path] = ()) -> Documents:  # type: ignore[assignment]
    """Parse multi-document YAML files; `config_dirs` add ConfigMaps/Secrets from every YAML file inside."""
    docs = Documents()
    extra = [p for d in config_dirs for p in sorted(Path(d).glob("*.y*ml"))]
    for path in [*files, *extra]:
        try:
            loaded = list(yaml.safe_load_all(Path(path).read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise DocumentError(f"{path}: {exc}") from exc
        for index, doc in enumerate(loaded):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise DocumentError(f"{path} document {index + 1}: not a Kubernetes object (no `kind`)")
            _add(docs, doc, f"{path} document {index + 1}", is_extra=path in extra)
    return docs


def _add(docs: Documents, doc: dict[str, Any], where: str, *, is_extra: bool) -> None:
    kind = doc["kind"]
    name = (doc.get("metadata") or {}).get("name", "")
    if kind == "Workspace" and not is_extra:
        docs.workspaces.append(doc)
    elif kind == "ConfigMap":
        docs.config_maps[name] = {k: str(v) for k, v in (doc.get("data") or {}).items()}
    elif kind == "Secret":
        docs.secrets[name] = _secret_values(doc, where)
    else:
        docs.skipped.append(f"{kind}/{name}")


def _secret_values(doc: dict[str, Any], where: str) -> dict[str, str]:
    values = {k: str(v) for k, v in (doc.get("stringData") or {}).items()}
    for key, encoded in (doc.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode()
        except ValueError as exc:
            raise DocumentError(f"{where}: Secret data.{key} is not valid base64") from exc
    return values
