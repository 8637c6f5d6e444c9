"""Serving: a Ray Serve application answering Kaito's `/chat` and the OpenAI API.

`build_app` (KubeRay serveConfigV2 import path `kaito_runtime.serving.app:build_app`) and
`run_local` are imported lazily so that importing the package does not import Ray.
"""

from __future__ import annotations

from typing import Any

from kaito_runtime.serving.config import ServeConfig, load_serve_config

__all__ = ["ServeConfig", "build_app", "load_serve_config", "run_local"]


def build_app(args: dict[str, Any]) -> Any:
    from kaito_runtime.serving.app import build_app as _build_app

    return _build_app(args)


def run_local(config: ServeConfig | dict[str, Any], **kwargs: Any) -> str:
    from kaito_runtime.serving.app import run_local as _run_local

    return _run_local(config, **kwargs)
