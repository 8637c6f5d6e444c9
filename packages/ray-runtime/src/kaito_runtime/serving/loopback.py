"""Keep Ray Serve replicas off the network when serving on loopback (laptops, CI, tests).

Ray Serve 2.60 replicas open an inter-deployment gRPC server on `[::]:0` unconditionally
(`ray/serve/_private/replica.py`), even when the HTTP proxy is bound to 127.0.0.1. This module
is a Ray `worker_process_setup_hook`: it makes that server bind to 127.0.0.1 instead. It is only
installed by `run_local` for a loopback host (and by the tests); clusters are left untouched.
"""

from __future__ import annotations

from typing import Any

SETUP_HOOK = "kaito_runtime.serving.loopback.bind_replicas_to_loopback"


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
