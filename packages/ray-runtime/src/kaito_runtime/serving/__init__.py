"""Serving: a Ray Serve application answering Kaito's `/chat` and the OpenAI API.

`build_app` (KubeRay serveConfigV2 import path `kaito_runtime.serving.app:build_app`),
`run_local` and `ServeConfig` are resolved lazily: importing the package (or its engine, which
needs only torch and transformers) imports neither Ray nor pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaito_runtime.serving.config import ServeConfig, load_serve_config

__all__ = ["ServeConfig", "build_app", "load_serve_config", "run_local"]


def build_app(args: dict[str, Any]) -> Any:
    from kaito_runtime.serving.app import build_app as _build_app

    return _build_app(args)


def run_local(config: Any, **kwargs: Any) -> str:
    """Start the application on Ray and return its URL once `/health` is 200 (see `app.run_local`)."""
    from kaito_runtime.serving.app import run_local as _run_local

    return _run_local(config, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("ServeConfig", "load_serve_config"):
        from kaito_runtime.serving import config

        return getattr(config, name)
    raise AttributeError(name)
