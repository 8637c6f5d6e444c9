"""Keep Ray Serve replicas off the network when serving on loopback (laptops, CI, tests).

Ray Serve 2.60 replicas open an inter-deployment gRPC server on `[::]:0` unconditionally
(`ray/serve/_private/replica.py`), even when the HTTP proxy is bound to 127.0.0.1. The replica
constructor calls `bind_replicas_to_loopback()` when the configured HTTP host is loopback, before
Serve starts that server, so it binds to 127.0.0.1 instead; clusters (host 0.0.0.0) are untouched.
"""

from __future__ import annotations

from typing import Any

LOOPBACK = {"127.0.0.1", "localhost"}


def bind_replicas_to_loopback() -> None:
    try:
        from ray.serve._private import replica
    except ImportError:  # not a Serve-capable worker
        return
    original = replica.add_port_to_grpc_server
    if getattr(original, "_kaito_loopback", False):
        return

    def loopback_only(server: Any, address: str) -> int:
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    loopback_only._kaito_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = loopback_only
