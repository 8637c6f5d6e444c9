"""YAML files of CRDs and manifests, parsed once: cached in memory and as JSON on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import jsoncopy as copy

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_CACHE: dict[tuple[str, float, int], list[dict[str, Any]]] = {}


def _cache_dir() -> Path:
    base = os.environ.get("KUBE_API_EMULATOR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kube-api-emulator"
    )
    return Path(base)


def _load_file(f: Path) -> list[dict[str, Any]]:
    """Parsed YAML documents of a file, cached by path, mtime and size: in memory, and as JSON on disk
    (the reference CRDs take seconds to parse as YAML, milliseconds as JSON)."""
    st = f.stat()
    key = (str(f.resolve()), st.st_mtime, st.st_size)
    if key not in _YAML_CACHE:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        cached = _cache_dir() / f"{digest}.json"
        docs: list[dict[str, Any]] | None = None
        with contextlib.suppress(OSError, ValueError):
            docs = json.loads(cached.read_text())
        if docs is None:
            docs = [d for d in yaml.load_all(f.read_text(), Loader=SafeLoader) if isinstance(d, dict)]
            with contextlib.suppress(OSError, TypeError, ValueError):
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(docs))
                tmp.replace(cached)
        _YAML_CACHE[key] = docs
    return copy.deepcopy(_YAML_CACHE[key])


def yaml_docs(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for p in paths:
        files = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
        for f in files:
            yield from _load_file(f)
