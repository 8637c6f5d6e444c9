"""azure: one AKS agent pool per claim (count 1), the instance found through the node resource group's VMSS.

Create is a long-running ARM operation. Its continuation token is saved through the claim's
:class:`Checkpoint` right after the PUT is accepted, so an operator that restarts mid-create resumes polling
the same operation instead of creating a second agent pool or abandoning the first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice import models as aks_models
from azure.mgmt.containerservice.aio import ContainerServiceClient
from azure.mgmt.core.policies import AsyncARMChallengeAuthenticationPolicy
from pydantic import BaseModel, ValidationError, field_validator

from ..metrics import observe_call
from ..model import (
    ANNOTATION_NODE_IMAGE_FAMILY,
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_CREATION_TIMESTAMP,
    LABEL_INSTANCE_TYPE,
    LABEL_MANAGED_BY,
    LABEL_NODEPOOL,
    LABEL_OS,
    LABEL_WORKSPACE,
    LABEL_ZONE,
    MANAGED_BY,
    Claim,
)
from ..quantity import parse_quantity, to_gib_ceil
from .azure_errors import INVALID_PARAMETER, arm_code, to_provider_error
from .base import Checkpoint, CloudProviderError, Instance, NotFoundError

log = logging.getLogger(__name__)

POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
POOL_TAG = "aks-managed-poolName"
IN_PROGRESS = frozenset({"Creating", "Updating", "Scaling", "Upgrading", "Starting"})
TIMESTAMP_FORMAT = "%Y-%m-%dT%H-%M-%SZ"
OS_SKUS = {
    "ubuntu": "Ubuntu",
    "azurelinux": "AzureLinux",
    "cblmariner": "CBLMariner",
    "mariner": "CBLMariner",
}
PROVIDER_ID = re.compile(
    r"^azure:///subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
    r"virtualMachineScaleSets/(?P<vmss>[^/]+)/virtualMachines/(?P<id>[^/]+)$",
    re.IGNORECASE,
)


class AzureConfig(BaseModel):
    """Where the cluster is. From flags or environment (``ARM_*`` names as in Azure/gpu-provisioner)."""

    subscription_id: str
    resource_group: str
    cluster_name: str
    location: str = ""
    node_resource_group: str = ""
    arm_endpoint: str = "https://management.azure.com"
    polling_interval: float = 15.0
    retry_total: int = 6

    @field_validator("subscription_id", "resource_group", "cluster_name")
    @classmethod
    def _required(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AzureConfig:
        env = os.environ if env is None else env
        names = {
            "subscription_id": ("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"),
            "resource_group": ("ARM_RESOURCE_GROUP", "AZURE_RESOURCE_GROUP"),
            "cluster_name": ("AZURE_CLUSTER_NAME", "ARM_CLUSTER_NAME"),
            "location": ("LOCATION", "AZURE_LOCATION"),
            "node_resource_group": ("AZURE_NODE_RESOURCE_GROUP",),
            "arm_endpoint": ("ARM_ENDPOINT", "AZURE_RESOURCE_MANAGER_ENDPOINT"),
        }
        values: dict[str, Any] = {}
        for field, keys in names.items():
            for key in keys:
                if env.get(key):
                    values[field] = env[key]
                    break
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        try:
            return cls(**values)
        except ValidationError as exc:
            missing = ", ".join(
                f"{e['loc'][0]} (set ${names[str(e['loc'][0])][0]} or --{str(e['loc'][0]).replace('_', '-')})"
                for e in exc.errors()
                if e["loc"] and str(e["loc"][0]) in names
            )
            raise ValueError(f"azure provider configuration incomplete: {missing or exc}") from None


class _LoopbackAuthPolicy(AsyncARMChallengeAuthenticationPolicy):
    """Bearer tokens over plain http, allowed only for a loopback ARM endpoint (tests, local emulators)."""

    async def on_request(self, request: Any) -> None:
        request.context.options["enforce_https"] = False
        await super().on_request(request)


def _is_loopback(url: str) -> bool:
    return re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", url) is not None


def validate_pool_name(name: str) -> str:
    if not POOL_NAME.match(name):
        raise CloudProviderError(
            INVALID_PARAMETER,
            f"claim name {name!r} cannot be an AKS agent pool name: it must be 1-12 lowercase letters and "
            "digits starting with a letter (Kaito names claims 'ws' + 9 hex characters)",
            retryable=False,
        )
    return name


def _restricted(key: str) -> bool:
    domain = key.split("/", 1)[0] if "/" in key else ""
    return domain.endswith("kubernetes.io") or domain.endswith("k8s.io")


def agent_pool_for(claim: Claim) -> aks_models.AgentPool:
    """Pure: the agent pool a claim asks for."""
    name = validate_pool_name(claim.name)
    vm_size = claim.instance_type
    if not vm_size:
        raise CloudProviderError(
            INVALID_PARAMETER,
            f"claim {name} has no {LABEL_INSTANCE_TYPE} requirement with operator In and a VM size",
            retryable=False,
        )
    labels = {k: v for k, v in {**claim.single_value_labels(), **claim.labels}.items() if not _restricted(k)}
    labels[LABEL_CREATION_TIMESTAMP] = claim.creation_timestamp.strftime(TIMESTAMP_FORMAT)
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    taints = [f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in claim.taints]
    family = claim.annotations.get(ANNOTATION_NODE_IMAGE_FAMILY, "ubuntu").lower()
    if family not in OS_SKUS:
        raise CloudProviderError(
            INVALID_PARAMETER,
            f"annotation {ANNOTATION_NODE_IMAGE_FAMILY}={family!r} is not one of {sorted(OS_SKUS)}",
            retryable=False,
        )
    kwargs: dict[str, Any] = {}
    if "storage" in claim.requests:
        try:
            kwargs["os_disk_size_gb"] = to_gib_ceil(claim.requests["storage"])
        except ValueError as exc:
            raise CloudProviderError(
                INVALID_PARAMETER, f"resources.requests.storage: {exc}", retryable=False
            ) from exc
    properties = aks_models.AgentPoolManagedClusterAgentPoolProfileProperties(
        count=1,
        vm_size=vm_size,
        os_type="Linux",
        os_sku=OS_SKUS[family],
        mode="User",
        type_properties_type="VirtualMachineScaleSets",
        node_labels=labels,
        node_taints=taints,
        **kwargs,
    )
    return aks_models.AgentPool(properties=properties)


def is_managed_pool(pool: aks_models.AgentPool) -> bool:
    labels = pool.node_labels or {}
    return (
        labels.get(LABEL_MANAGED_BY) == MANAGED_BY
        or LABEL_CREATION_TIMESTAMP in labels
        or (LABEL_WORKSPACE in labels and LABEL_NODEPOOL in labels)
    )


def pool_created_at(pool: aks_models.AgentPool) -> datetime | None:
    value = (pool.node_labels or {}).get(LABEL_CREATION_TIMESTAMP)
    if not value:
        return None
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


class AzureProvider:
    name = "azure"

    def __init__(self, config: AzureConfig, credential: Any = None) -> None:
        self.config = config
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._credential = credential
        kwargs: dict[str, Any] = {
            "base_url": config.arm_endpoint,
            "polling_interval": config.polling_interval,
            "retry_total": config.retry_total,
        }
        if _is_loopback(config.arm_endpoint):
            kwargs["authentication_policy"] = _LoopbackAuthPolicy(
                credential, "https://management.azure.com/.default"
            )
        self.aks = ContainerServiceClient(credential, config.subscription_id, **kwargs)
        self.compute = ComputeManagementClient(credential, config.subscription_id, **kwargs)
        self._node_rg = config.node_resource_group
        self._sku_cache: dict[str, dict[str, str]] = {}

    async def close(self) -> None:
        await self.aks.close()
        await self.compute.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            await close()

    # ---- the CloudProvider interface -------------------------------------------------------------------
    async def create(self, claim: Claim, checkpoint: Checkpoint) -> Instance:
        parameters = agent_pool_for(claim)
        name = claim.name
        token = checkpoint.load()
        pool = await self._get_pool(name)
        state = pool.provisioning_state if pool is not None else None
        try:
            with observe_call(self.name, "create", arm_code):
                pool = await self._create_or_resume(claim, parameters, pool, state, token, checkpoint)
        except HttpResponseError as exc:
            error = to_provider_error(exc)
            await checkpoint.save(None)
            await self._discard_failed(name)
            raise error from None
        if pool is None or pool.provisioning_state == "Failed":
            await checkpoint.save(None)
            await self._discard_failed(name)
            raise CloudProviderError("LaunchFailed", f"agent pool {name} failed to provision; it was deleted")
        await checkpoint.save(None)
        return await self._instance(pool, with_vm=True)

    async def _create_or_resume(
        self,
        claim: Claim,
        parameters: aks_models.AgentPool,
        pool: aks_models.AgentPool | None,
        state: str | None,
        token: str | None,
        checkpoint: Checkpoint,
    ) -> aks_models.AgentPool | None:
        name = claim.name
        rg, cluster = self.config.resource_group, self.config.cluster_name
        if pool is None:
            poller = await self.aks.agent_pools.begin_create_or_update(rg, cluster, name, parameters)
            await checkpoint.save(poller.continuation_token())
            log.info("azure: creating agent pool %s (%s)", name, claim.instance_type)
            return await poller.result()
        if token and (state in IN_PROGRESS or state == "Failed"):
            log.info("azure: resuming the create of agent pool %s (state %s)", name, state)
            poller = await self.aks.agent_pools.begin_create_or_update(
                rg, cluster, name, parameters, continuation_token=token
            )
            return await poller.result()
        if state in IN_PROGRESS:
            return await self._wait_pool(name)
        return pool

    async def delete(self, claim: Claim) -> None:
        name = claim.name
        if not POOL_NAME.match(name) or await self._get_pool(name) is None:
            raise NotFoundError(name)
        try:
            with observe_call(self.name, "delete", arm_code):
                poller = await self.aks.agent_pools.begin_delete(
                    self.config.resource_group, self.config.cluster_name, name
                )
            log.info("azure: deleting agent pool %s", name)
            await poller.result()
        except ResourceNotFoundError:
            raise NotFoundError(name) from None
        except HttpResponseError as exc:
            raise to_provider_error(exc) from None

    async def get(self, provider_id: str) -> Instance:
        match = PROVIDER_ID.match(provider_id)
        if match is None:
            raise NotFoundError(provider_id)
        try:
            with observe_call(self.name, "get", arm_code):
                vmss = await self.compute.virtual_machine_scale_sets.get(match["rg"], match["vmss"])
                await self.compute.virtual_machine_scale_set_vms.get(match["rg"], match["vmss"], match["id"])
        except ResourceNotFoundError:
            raise NotFoundError(provider_id) from None
        pool_name = (vmss.tags or {}).get(POOL_TAG, "")
        pool = await self._get_pool(pool_name) if pool_name else None
        if pool is None:
            raise NotFoundError(provider_id)
        instance = await self._instance(pool, with_vm=False)
        instance.provider_id = provider_id
        return instance

    async def list(self) -> list[Instance]:
        out = []
        with observe_call(self.name, "list", arm_code):
            async for pool in self.aks.agent_pools.list(self.config.resource_group, self.config.cluster_name):
                if is_managed_pool(pool):
                    out.append(await self._instance(pool, with_vm=False))
        return out

    # ---- helpers --------------------------------------------------------------------------------------
    async def _get_pool(self, name: str) -> aks_models.AgentPool | None:
        try:
            with observe_call(self.name, "get", arm_code):
                return await self.aks.agent_pools.get(
                    self.config.resource_group, self.config.cluster_name, name
                )
        except ResourceNotFoundError:
            return None

    async def _wait_pool(self, name: str) -> aks_models.AgentPool | None:
        """Poll a pool being provisioned without a recorded operation (e.g. created by another replica)."""
        while True:
            pool = await self._get_pool(name)
            if pool is None or pool.provisioning_state not in IN_PROGRESS:
                return pool
            await asyncio.sleep(max(self.config.polling_interval, 0.05))

    async def _discard_failed(self, name: str) -> None:
        """A pool left in Failed state is deleted so that a retry starts clean and nothing leaks."""
        pool = await self._get_pool(name)
        if pool is None:
            return
        try:
            poller = await self.aks.agent_pools.begin_delete(
                self.config.resource_group, self.config.cluster_name, name
            )
            await poller.result()
        except HttpResponseError as exc:
            log.warning("azure: could not delete failed agent pool %s: %s", name, exc.message)

    async def _node_resource_group(self) -> str:
        if not self._node_rg:
            with observe_call(self.name, "get", arm_code):
                cluster = await self.aks.managed_clusters.get(
                    self.config.resource_group, self.config.cluster_name
                )
            self._node_rg = cluster.node_resource_group or ""
            if not self.config.location:
                self.config.location = cluster.location or ""
        return self._node_rg

    async def _instance(self, pool: aks_models.AgentPool, *, with_vm: bool) -> Instance:
        vm_size = pool.vm_size or ""
        labels = {
            LABEL_INSTANCE_TYPE: vm_size,
            LABEL_CAPACITY_TYPE: "spot" if pool.scale_set_priority == "Spot" else "on-demand",
            LABEL_OS: "linux",
            LABEL_ARCH: "arm64" if re.search(r"p[a-z]*s_v[5-9]", vm_size.lower()) else "amd64",
        }
        instance = Instance(
            name=pool.name or "",
            instance_type=vm_size,
            image_id=pool.node_image_version or "",
            labels=labels,
            created_at=pool_created_at(pool),
            state=pool.provisioning_state or "",
        )
        if not with_vm:
            return instance
        capacity = await self._capacity(vm_size)
        instance.capacity = capacity
        instance.allocatable = dict(capacity)
        node_rg = await self._node_resource_group()
        vmss_name = None
        async for vmss in self.compute.virtual_machine_scale_sets.list(node_rg):
            if (vmss.tags or {}).get(POOL_TAG) == pool.name:
                vmss_name = vmss.name
                break
        vms = []
        if vmss_name:
            vms = [vm async for vm in self.compute.virtual_machine_scale_set_vms.list(node_rg, vmss_name)]
        if not vms:
            raise CloudProviderError(
                "InstanceNotFound",
                f"agent pool {pool.name} has no VM in VMSS of resource group {node_rg} yet",
            )
        vm = vms[0]
        instance.provider_id = "azure://" + (vm.id or "")
        if vm.zones and self.config.location:
            instance.labels[LABEL_ZONE] = f"{self.config.location}-{vm.zones[0]}"
        return instance

    async def _capacity(self, vm_size: str) -> dict[str, str]:
        """vCPUs, memory and GPUs of a VM size from the resource SKU API (cached)."""
        key = vm_size.lower()
        if key in self._sku_cache:
            return dict(self._sku_cache[key])
        location = self.config.location
        flt = f"location eq '{location}'" if location else None
        capacity: dict[str, str] = {}
        with observe_call(self.name, "list_skus", arm_code):
            async for sku in self.compute.resource_skus.list(filter=flt):
                if sku.resource_type != "virtualMachines" or (sku.name or "").lower() != key:
                    continue
                caps = {c.name: c.value for c in sku.capabilities or []}
                if caps.get("vCPUs"):
                    capacity["cpu"] = str(caps["vCPUs"])
                memory_gb = caps.get("MemoryGB")
                if memory_gb:
                    capacity["memory"] = f"{int(parse_quantity(memory_gb) * 1024)}Mi"
                if caps.get("GPUs"):
                    capacity["nvidia.com/gpu"] = str(caps["GPUs"])
                capacity["pods"] = "110"
                break
        self._sku_cache[key] = capacity
        return dict(capacity)
