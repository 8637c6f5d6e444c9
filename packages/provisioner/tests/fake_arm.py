"""A fake Azure Resource Manager on loopback: AKS agent pools, VMSS / VMSS VMs, resource SKUs.

It speaks what the real SDK clients expect: long-running PUT/DELETE with ``Azure-AsyncOperation``,
list paging with ``nextLink``, and ARM error bodies ``{"error": {"code", "message", "details"}}``.
Tests steer it: inject a synchronous or an asynchronous (LRO) failure, throttle with 429 + Retry-After,
hold creates in progress until released.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-kaito"
CLUSTER = "kaito-aks"
NODE_RG = "MC_rg-kaito_kaito-aks_eastus"
LOCATION = "eastus"
PAGE = 2

SKUS = {
    "Standard_NC6s_v3": {"vCPUs": "6", "MemoryGB": "112", "GPUs": "1"},
    "Standard_NC24ads_A100_v4": {"vCPUs": "24", "MemoryGB": "220", "GPUs": "1"},
    "Standard_NC12s_v3": {"vCPUs": "12", "MemoryGB": "224", "GPUs": "2"},
    "Standard_D4s_v3": {"vCPUs": "4", "MemoryGB": "16"},
    "Standard_D8s_v3": {"vCPUs": "8", "MemoryGB": "32"},
}


@dataclass
class Failure:
    code: str
    message: str
    status: int = 400  # for synchronous failures
    in_lro: bool = False  # fail the long-running operation instead of the PUT


@dataclass
class Operation:
    id: str
    pool: str
    kind: str  # create | delete
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    polls: int = 0


@dataclass
class FakeArm:
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    vmss: dict[str, dict[str, Any]] = field(default_factory=dict)  # vmss name -> {tags, vms: [..]}
    operations: dict[str, Operation] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    throttle: int = 0
    retry_after: int = 1
    hold: bool = False
    requests: list[tuple[float, str, str, int]] = field(default_factory=list)
    puts: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None
    _vm_ids: itertools.count = field(default_factory=lambda: itertools.count())

    # ---- control ------------------------------------------------------------------------------------
    def fail_next_create(self, code: str, message: str, *, status: int = 400, in_lro: bool = False) -> None:
        self.failures.append(Failure(code, message, status, in_lro))

    def release(self) -> None:
        self.hold = False

    def add_pool(
        self, name: str, *, labels: dict[str, str] | None = None, vm_size: str = "Standard_NC6s_v3"
    ) -> None:
        """An agent pool that exists already (e.g. an orphan left by an earlier operator)."""
        self.pools[name] = self._pool_body(name, {"vmSize": vm_size, "count": 1, "nodeLabels": labels or {}})
        self._finish_create(name)

    # ---- server -------------------------------------------------------------------------------------
    async def start(self) -> FakeArm:
        app = web.Application(middlewares=[self._middleware])
        base = "/subscriptions/{sub}"
        mc = base + "/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{cluster}"
        cr = base + "/resourceGroups/{nrg}/providers/Microsoft.Compute/virtualMachineScaleSets"
        app.router.add_get(mc, self._cluster)
        app.router.add_get(mc + "/agentPools", self._list_pools)
        app.router.add_get(mc + "/agentPools/{name}", self._get_pool)
        app.router.add_put(mc + "/agentPools/{name}", self._put_pool)
        app.router.add_delete(mc + "/agentPools/{name}", self._delete_pool)
        app.router.add_get("/operations/{op}", self._operation)
        app.router.add_get(cr, self._list_vmss)
        app.router.add_get(cr + "/{vmss}", self._get_vmss)
        app.router.add_get(cr + "/{vmss}/virtualMachines", self._list_vms)
        app.router.add_get(cr + "/{vmss}/virtualMachines/{id}", self._get_vm)
        app.router.add_get(base + "/providers/Microsoft.Compute/skus", self._skus)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "no bearer token")
        if self.throttle > 0:
            self.throttle -= 1
            resp = _error(429, "TooManyRequests", "The request is being throttled.")
            resp.headers["Retry-After"] = str(self.retry_after)
            self.requests.append((time.monotonic(), request.method, request.path_qs, 429))
            return resp
        resp = await handler(request)
        self.requests.append((time.monotonic(), request.method, request.path_qs, resp.status))
        return resp

    # ---- AKS ----------------------------------------------------------------------------------------
    def _pool_body(self, name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
            f"managedClusters/{CLUSTER}/agentPools/{name}",
            "name": name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": {
                **props,
                "provisioningState": "Creating",
                "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202611.01.0",
            },
        }

    async def _cluster(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
                f"managedClusters/{CLUSTER}",
                "name": CLUSTER,
                "location": LOCATION,
                "properties": {"nodeResourceGroup": NODE_RG, "provisioningState": "Succeeded"},
            }
        )

    async def _list_pools(self, request: web.Request) -> web.Response:
        return self._paged(request, list(self.pools.values()))

    async def _get_pool(self, request: web.Request) -> web.Response:
        pool = self.pools.get(request.match_info["name"])
        if pool is None:
            return _error(404, "NotFound", f"agent pool {request.match_info['name']} not found")
        return web.json_response(pool)

    async def _put_pool(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.json()
        self.puts += 1
        if name in self.pools and self.pools[name]["properties"]["provisioningState"] in (
            "Creating",
            "Deleting",
        ):
            return _error(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed: another operation on agent pool {name}",
            )
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None and not failure.in_lro:
            return _error(failure.status, failure.code, failure.message)
        self.pools[name] = self._pool_body(name, body.get("properties") or {})
        op = Operation(id=uuid.uuid4().hex, pool=name, kind="create")
        if failure is not None:
            op.error = {
                "code": "ReconcileVMSSAgentPoolFailed",
                "message": f'Code="{failure.code}" Message="{failure.message}"',
                "details": [{"code": failure.code, "message": failure.message}],
            }
        self.operations[op.id] = op
        resp = web.json_response(self.pools[name], status=201)
        resp.headers["Azure-AsyncOperation"] = f"{self.url}/operations/{op.id}?api-version=2017-08-31"
        resp.headers["Retry-After"] = "0"
        return resp

    async def _delete_pool(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.pools:
            return web.Response(status=204)
        for op in self.operations.values():
            if op.pool == name and op.status == "InProgress":
                op.status, op.error = (
                    "Canceled",
                    {"code": "Canceled", "message": "the agent pool was deleted"},
                )
        self.pools.pop(name)
        for vmss_name in [v for v, s in self.vmss.items() if s["tags"].get("aks-managed-poolName") == name]:
            self.vmss.pop(vmss_name)
        op = Operation(id=uuid.uuid4().hex, pool=name, kind="delete", status="Succeeded")
        self.operations[op.id] = op
        resp = web.Response(status=202)
        resp.headers["Azure-AsyncOperation"] = f"{self.url}/operations/{op.id}?api-version=2017-08-31"
        resp.headers["Location"] = f"{self.url}/operations/{op.id}?api-version=2017-08-31"
        resp.headers["Retry-After"] = "0"
        return resp

    async def _operation(self, request: web.Request) -> web.Response:
        op = self.operations.get(request.match_info["op"])
        if op is None:
            return _error(404, "NotFound", "operation not found")
        op.polls += 1
        if op.status == "InProgress" and not self.hold and op.polls >= 2:
            if op.error is not None:
                op.status = "Failed"
                if op.pool in self.pools:
                    self.pools[op.pool]["properties"]["provisioningState"] = "Failed"
            else:
                op.status = "Succeeded"
                self._finish_create(op.pool)
        body: dict[str, Any] = {"id": op.id, "name": op.id, "status": op.status}
        if op.error is not None and op.status != "InProgress":
            body["error"] = op.error
        return web.json_response(body)

    def _finish_create(self, name: str) -> None:
        pool = self.pools.get(name)
        if pool is None:
            return
        pool["properties"]["provisioningState"] = "Succeeded"
        vmss_name = f"aks-{name}-12345678-vmss"
        vm_id = next(self._vm_ids)
        rid = (
            f"/subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/"
        )
        self.vmss[vmss_name] = {
            "id": rid + vmss_name,
            "name": vmss_name,
            "location": LOCATION,
            "tags": {"aks-managed-poolName": name, "aks-managed-orchestrator": "Kubernetes:1.33.0"},
            "vms": [
                {
                    "id": f"{rid}{vmss_name}/virtualMachines/{vm_id}",
                    "name": f"{vmss_name}_{vm_id}",
                    "instanceId": str(vm_id),
                    "location": LOCATION,
                    "zones": ["1"],
                    "properties": {"provisioningState": "Succeeded"},
                }
            ],
        }

    # ---- Compute ------------------------------------------------------------------------------------
    async def _list_vmss(self, request: web.Request) -> web.Response:
        items = [{k: v for k, v in s.items() if k != "vms"} for s in self.vmss.values()]
        return self._paged(request, items)

    async def _get_vmss(self, request: web.Request) -> web.Response:
        s = self.vmss.get(request.match_info["vmss"])
        if s is None:
            return _error(404, "ResourceNotFound", "VMSS not found")
        return web.json_response({k: v for k, v in s.items() if k != "vms"})

    async def _list_vms(self, request: web.Request) -> web.Response:
        s = self.vmss.get(request.match_info["vmss"])
        return self._paged(request, list(s["vms"]) if s else [])

    async def _get_vm(self, request: web.Request) -> web.Response:
        s = self.vmss.get(request.match_info["vmss"])
        for vm in (s or {}).get("vms", []):
            if vm["instanceId"] == request.match_info["id"]:
                return web.json_response(vm)
        return _error(404, "ResourceNotFound", "VM not found")

    async def _skus(self, request: web.Request) -> web.Response:
        items = [
            {
                "resourceType": "virtualMachines",
                "name": name,
                "locations": [LOCATION],
                "capabilities": [{"name": k, "value": v} for k, v in caps.items()],
            }
            for name, caps in SKUS.items()
        ]
        items.insert(0, {"resourceType": "disks", "name": "Premium_LRS", "locations": [LOCATION]})
        return self._paged(request, items)

    def _paged(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        page = int(request.query.get("page", "0"))
        chunk = items[page * PAGE : (page + 1) * PAGE]
        body: dict[str, Any] = {"value": chunk}
        if (page + 1) * PAGE < len(items):
            query = dict(request.query)
            query["page"] = str(page + 1)
            body["nextLink"] = str(request.url.with_query(query))
        return web.json_response(body)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class FakeCredential:
    """An AsyncTokenCredential that never leaves the process."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("fake-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)
