"""Load the preset catalog and GPU SKU table from YAML data.

The data lives in `<repo>/presets` (editable install) or `kaito_workspace/presets_data` (wheel);
`KAITO_PRESETS_DIR` overrides both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from .models import GpuFile, GpuSku, Preset, PresetFile

ENV_PRESETS_DIR = "KAITO_PRESETS_DIR"
# `org/name` as Hugging Face spells repository ids.
HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class PresetError(ValueError):
    """The catalog data is malformed."""


class UnknownPresetError(KeyError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown preset {self.name!r}"


def presets_dir() -> Path:
    """Where the catalog data is: env override, packaged data, or the repository's presets/."""
    env = os.environ.get(ENV_PRESETS_DIR)
    if env:
        return Path(env)
    packaged = resources.files("kaito_workspace") / "presets_data"
    if packaged.is_dir():
        return Path(str(packaged))
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "presets"
        if (candidate / "models").is_dir() and (candidate / "gpus").is_dir():
            return candidate
    raise PresetError(f"preset data not found; set {ENV_PRESETS_DIR} to the presets/ directory")


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PresetError(f"{path}: invalid YAML: {e}") from e


class Catalog:
    """The model presets and GPU SKUs, indexed by name (preset names case-insensitive)."""

    def __init__(self, presets: list[Preset], skus: list[GpuSku], source: Path | None = None):
        self.source = source
        self._presets: dict[str, Preset] = {}
        for p in presets:
            key = p.name.lower()
            if key in self._presets:
                raise PresetError(f"duplicate preset name {p.name!r}")
            self._presets[key] = p
        self._skus: dict[str, GpuSku] = {}
        for s in skus:
            for n in (s.name, *s.aliases):
                self._skus[n.lower()] = s

    @classmethod
    def load(cls, directory: Path | None = None) -> Catalog:
        root = Path(directory) if directory else presets_dir()
        presets: list[Preset] = []
        skus: list[GpuSku] = []
        for path in sorted((root / "models").glob("*.yaml")):
            try:
                presets.extend(PresetFile.model_validate(_load_yaml(path)).presets)
            except ValidationError as e:
                raise PresetError(f"{path}: {e}") from e
        for path in sorted((root / "gpus").glob("*.yaml")):
            try:
                gf = GpuFile.model_validate(_load_yaml(path))
            except ValidationError as e:
                raise PresetError(f"{path}: {e}") from e
            for row in gf.skus:
                gm = gf.gpu_models[row.gpu_model]
                skus.append(
                    GpuSku(
                        name=row.name,
                        gpu_model=row.gpu_model,
                        gpu_count=row.gpu_count,
                        gpu_memory_gib=row.gpu_memory_gib or gm.memory_gib,
                        bf16=gm.bf16,
                        vendor=gm.vendor,
                        architecture=gm.architecture,
                        nvme=row.nvme,
                        partial=row.partial,
                        aliases=tuple(row.aliases),
                    )
                )
        if not presets:
            raise PresetError(f"no presets found under {root / 'models'}")
        return cls(presets, skus, source=root)

    # -- presets --
    def __iter__(self) -> Iterator[Preset]:
        return iter(self._presets.values())

    def __len__(self) -> int:
        return len(self._presets)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._presets

    def names(self) -> list[str]:
        return sorted(p.name for p in self._presets.values())

    def find(self, name: str) -> Preset | None:
        """The preset for `name`: a catalog name, the Hugging Face id of a catalog entry, or any
        `org/name` Hugging Face id (best-effort, `known=False`, sizes unknown). None otherwise."""
        key = name.strip().lower()
        if key in self._presets:
            return self._presets[key]
        for p in self._presets.values():
            if p.hf_id.lower() == key:
                return p
        if HF_ID_RE.match(name.strip()):
            return Preset(name=name.strip(), hf_id=name.strip(), known=False)
        return None

    def get(self, name: str) -> Preset:
        preset = self.find(name)
        if preset is None:
            raise UnknownPresetError(name, self.names())
        return preset

    # -- GPU SKUs --
    def sku(self, name: str) -> GpuSku | None:
        return self._skus.get(name.strip().lower())

    def skus(self) -> list[GpuSku]:
        seen: dict[str, GpuSku] = {s.name: s for s in self._skus.values()}
        return sorted(seen.values(), key=lambda s: s.name)


@lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return Catalog.load()


def load_catalog(directory: Path | str | None = None) -> Catalog:
    """The catalog (cached when loaded from the default location)."""
    if directory is not None:
        return Catalog.load(Path(directory))
    return _default_catalog()


def sku(name: str) -> GpuSku | None:
    """The GPU SKU named `name` (case-insensitive), or None if it is not in the table."""
    return load_catalog().sku(name)
