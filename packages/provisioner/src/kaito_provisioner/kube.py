"""A small JSON-in/JSON-out Kubernetes client over kubernetes_asyncio's authenticated transport.

Everything is a plain dict; patches are JSON merge patches (lists are replaced whole, which is what the
lifecycle wants for taints, finalizers and conditions).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


class KubeClient:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """Kubeconfig (explicit, $KUBECONFIG or ~/.kube/config), else in-cluster service account."""
        configuration = client.Configuration()
        try:
            await config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        except (config.ConfigException, FileNotFoundError, TypeError):
            if kubeconfig:
                raise
            config.load_incluster_config(client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        return await self.api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, query=query)
        return list((result or {}).get("items") or [])

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch; None when the object is gone."""
        try:
            return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(self, path: str) -> bool:
        """Returns False when the object was already gone."""
        try:
            await self.request("DELETE", path)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def node_path(name: str = "") -> str:
    return f"/api/v1/nodes/{quote(name)}" if name else "/api/v1/nodes"


def custom_path(group: str, version: str, plural: str, name: str = "") -> str:
    base = f"/apis/{group}/{version}/{plural}"
    return f"{base}/{quote(name)}" if name else base


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409
