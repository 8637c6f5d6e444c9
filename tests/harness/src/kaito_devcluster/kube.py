"""A small async client for the API server the dev cluster talks to (plain dicts, paths by hand).

The dev cluster's own components (the KubeRay stand-in, the forwarder) use it; the operators use their
own clients. Only what the stand-in needs: list, get, create, merge-patch (object and status), delete,
and Events.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

MERGE = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def server_from_kubeconfig(path: Path) -> str:
    """The current context's server URL (the dev cluster only talks to a local emulator: no auth)."""
    doc = yaml.safe_load(path.read_text())
    current = doc.get("current-context")
    context = next(c["context"] for c in doc["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
    return str(cluster["server"]).rstrip("/")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Ref:
    """Enough of an object to address it and to point Events and ownerReferences at it."""

    api_version: str
    kind: str
    plural: str
    namespace: str
    name: str
    uid: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any], plural: str) -> Ref:
        meta = obj["metadata"]
        return cls(
            obj["apiVersion"], obj["kind"], plural, meta.get("namespace", ""), meta["name"], meta["uid"]
        )

    @property
    def path(self) -> str:
        return object_path(self.api_version, self.plural, self.namespace, self.name)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def object_path(api_version: str, plural: str, namespace: str = "", name: str = "") -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    def __init__(self, server: str, user_agent: str = "kaito-devcluster/kuberay-standin") -> None:
        self.server = server.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._session.request(method, self.server + path, data=data, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise KubeError(resp.status, message)
            return json.loads(text) if text else None

    async def list(self, path: str) -> list[dict[str, Any]]:
        """Items of a collection; an unknown resource type (CRD not installed) is an empty list."""
        try:
            return (await self.request("GET", path)).get("items") or []
        except KubeError as exc:
            if exc.status == 404:
                return []
            raise

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists."""
        try:
            return await self.request("POST", path, body)
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.request("PATCH", path, body, MERGE)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_status(self, path: str, status: dict[str, Any]) -> dict[str, Any] | None:
        return await self.patch(path + "/status", {"status": status})

    async def delete(self, path: str) -> None:
        try:
            await self.request("DELETE", path)
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def event(self, ref: Ref, reason: str, message: str, type_: str = "Normal") -> None:
        """A core/v1 Event on `ref`, as a controller writes it (`kubectl describe` shows it)."""
        stamp = now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.name}.{uuid.uuid4().hex[:16]}",
                "namespace": ref.namespace or "default",
            },
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "kuberay-operator (kaito dev cluster stand-in)"},
            "reportingComponent": "kaito-devcluster-kuberay",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.create(object_path("v1", "events", ref.namespace or "default"), body)
