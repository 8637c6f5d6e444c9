"""A small async Kubernetes REST client over kubernetes_asyncio's connection handling.

Objects stay plain dicts (what the builders produce and the status functions read); errors carry
the API server's status code and message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


WORKSPACES = Kind("kaito.sh/v1beta1", "workspaces")
NODECLAIMS = Kind("karpenter.sh/v1", "nodeclaims", namespaced=False)
NODES = Kind("v1", "nodes", namespaced=False)
RAYJOBS = Kind("ray.io/v1", "rayjobs")
RAYSERVICES = Kind("ray.io/v1", "rayservices")
SERVICES = Kind("v1", "services")
CONFIGMAPS = Kind("v1", "configmaps")
PVCS = Kind("v1", "persistentvolumeclaims")
EVENTS = Kind("v1", "events")

KINDS = {
    ("karpenter.sh/v1", "NodeClaim"): NODECLAIMS,
    ("ray.io/v1", "RayJob"): RAYJOBS,
    ("ray.io/v1", "RayService"): RAYSERVICES,
    ("v1", "Service"): SERVICES,
    ("v1", "ConfigMap"): CONFIGMAPS,
}


def kind_of(obj: dict[str, Any]) -> Kind:
    return KINDS[(obj["apiVersion"], obj["kind"])]


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: Path | None = None) -> Kube:
        """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG / ~/.kube/config)."""
        cfg = client.Configuration()
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=cfg)
                return cls(client.ApiClient(cfg))
            except config.ConfigException:
                pass
        await config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg
        )
        return cls(client.ApiClient(cfg))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        resp = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        text = await resp.text()
        data = json.loads(text) if text else None
        if resp.status >= 400:
            message = data.get("message", text) if isinstance(data, dict) else text
            reason = data.get("reason", "") if isinstance(data, dict) else ""
            raise KubeError(resp.status, message, reason)
        return data

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    async def list(
        self, kind: Kind, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        data = await self.request("GET", kind.path(namespace), query=query)
        return list((data or {}).get("items") or [])

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = kind_of(obj)
        return await self.request("POST", kind.path(obj["metadata"].get("namespace")), body=obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = kind_of(obj)
        md = obj["metadata"]
        return await self.request("PUT", kind.path(md.get("namespace"), md["name"]), body=obj)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                kind.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
            return True
        except KubeError as e:
            if e.status == 404:
                return False
            raise

    async def patch_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH",
            kind.path(namespace, name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def post(self, kind: Kind, namespace: str, obj: dict[str, Any]) -> Any:
        return await self.request("POST", kind.path(namespace), body=obj)
