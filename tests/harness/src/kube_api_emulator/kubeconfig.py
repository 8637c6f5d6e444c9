"""A kubeconfig for the emulator (plain HTTP on loopback, no credentials)."""

from __future__ import annotations

from pathlib import Path

import yaml


def kubeconfig_dict(url: str, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-api-emulator", "cluster": {"server": url}}],
        "users": [{"name": "kube-api-emulator", "user": {}}],
        "contexts": [
            {
                "name": "kube-api-emulator",
                "context": {
                    "cluster": "kube-api-emulator",
                    "user": "kube-api-emulator",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "kube-api-emulator",
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str, namespace: str = "default") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_dict(url, namespace), sort_keys=False))
    return path
