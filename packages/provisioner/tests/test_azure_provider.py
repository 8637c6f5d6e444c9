"""The azure provider against a fake ARM server, through the real azure-mgmt SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
from fake_arm import CLUSTER, LOCATION, RG, SUB, FakeArm, FakeCredential, wait_for

from kaito_provisioner.metrics import REGISTRY
from kaito_provisioner.model import Claim, Requirement, Taint
from kaito_provisioner.providers.azure import AzureConfig, AzureProvider, agent_pool_for
from kaito_provisioner.providers.base import CloudProviderError, MemoryCheckpoint, NotFoundError


def make_claim(name: str = "ws0a1b2c3d4", size: str = "Standard_NC6s_v3", **kw) -> Claim:
    return Claim(
        kind="NodeClaim",
        api_version="karpenter.sh/v1",
        name=name,
        uid="uid-" + name,
        labels={"kaito.sh/workspace": "phi", "karpenter.sh/nodepool": "kaito", "kubernetes.io/os": "linux"},
        requirements=[
            Requirement(key="node.kubernetes.io/instance-type", operator="In", values=[size]),
            Requirement(key="karpenter.sh/nodepool", operator="In", values=["kaito"]),
        ],
        taints=[Taint(key="sku", value="gpu", effect="NoSchedule")],
        requests={"storage": "120Gi"},
        creation_timestamp=datetime(2026, 11, 28, 20, 0, 0, tzinfo=UTC),
        **kw,
    )


@pytest.fixture
async def arm():
    server = await FakeArm().start()
    yield server
    await server.stop()


def provider_for(arm: FakeArm, **kw) -> AzureProvider:
    config = AzureConfig(
        subscription_id=SUB,
        resource_group=RG,
        cluster_name=CLUSTER,
        arm_endpoint=arm.url,
        polling_interval=0,
        retry_total=kw.pop("retry_total", 0),
        **kw,
    )
    return AzureProvider(config, credential=FakeCredential())


@pytest.fixture
async def azure(arm):
    provider = provider_for(arm)
    yield provider
    await provider.close()


def test_agent_pool_body_from_claim():
    claim = make_claim(annotations={"kaito.sh/node-image-family": "AzureLinux"})
    body = agent_pool_for(claim).as_dict()["properties"]
    assert body["vmSize"] == "Standard_NC6s_v3"
    assert body["count"] == 1
    assert body["osDiskSizeGB"] == 120
    assert body["osSKU"] == "AzureLinux"
    assert body["nodeTaints"] == ["sku=gpu:NoSchedule"]
    labels = body["nodeLabels"]
    assert labels["kaito.sh/workspace"] == "phi"
    assert labels["kaito.sh/creation-timestamp"] == "2026-11-28T20-00-00Z"
    assert "kubernetes.io/os" not in labels  # AKS rejects the reserved kubernetes.io domain


@pytest.mark.parametrize("name", ["WS1", "ws-1", "abcdefghijklm", "1abc"])
def test_invalid_pool_names_are_rejected_with_a_clear_reason(name):
    with pytest.raises(CloudProviderError) as err:
        agent_pool_for(make_claim(name=name))
    assert err.value.reason == "InvalidParameter"
    assert "12 lowercase" in err.value.message
    assert not err.value.retryable


async def test_create_get_list_delete(arm, azure):
    claim = make_claim()
    checkpoint = MemoryCheckpoint()
    instance = await azure.create(claim, checkpoint)
    assert instance.provider_id.startswith(
        f"azure:///subscriptions/{SUB}/resourceGroups/MC_rg-kaito_kaito-aks_eastus/providers/"
        "Microsoft.Compute/virtualMachineScaleSets/aks-ws0a1b2c3d4-12345678-vmss/virtualMachines/"
    )
    assert instance.capacity == {"cpu": "6", "memory": "114688Mi", "nvidia.com/gpu": "1", "pods": "110"}
    assert instance.labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert instance.labels["topology.kubernetes.io/zone"] == f"{LOCATION}-1"
    assert instance.image_id.startswith("AKSUbuntu")
    assert checkpoint.value is None  # cleared once the operation completed
    assert list(arm.pools) == ["ws0a1b2c3d4"]

    got = await azure.get(instance.provider_id)
    assert got.name == "ws0a1b2c3d4" and got.provider_id == instance.provider_id

    # paging: more pools than one page; only managed ones are listed
    arm.add_pool("userpool", labels={})
    arm.add_pool("wsorphan0001", labels={"kaito.sh/creation-timestamp": "2026-11-28T19-00-00Z"})
    arm.add_pool("system", labels={"team": "x"})
    listed = sorted(i.name for i in await azure.list())
    assert listed == ["ws0a1b2c3d4", "wsorphan0001"]
    assert any("agentPools?" in p and "page=1" in p for _, _, p, _ in arm.requests)  # followed nextLink

    await azure.delete(claim)
    assert "ws0a1b2c3d4" not in arm.pools
    with pytest.raises(NotFoundError):
        await azure.delete(claim)
    with pytest.raises(NotFoundError):
        await azure.get(instance.provider_id)


ERRORS = [
    (
        "QuotaExceeded",
        "Operation could not be completed as it results in exceeding approved standardNCSv3Family "
        "Cores quota.",
        False,
        "SubscriptionQuotaReached",
        True,
    ),
    (
        "SkuNotAvailable",
        "The requested VM size Standard_NC6s_v3 is not available in location eastus.",
        False,
        "SKUNotAvailable",
        True,
    ),
    (
        "AllocationFailed",
        "Allocation failed. We do not have sufficient capacity for the requested VM size.",
        True,
        "AllocationFailure",
        True,
    ),
    ("ZonalAllocationFailed", "Allocation failed in zone 1.", True, "ZonalAllocationFailure", True),
    (
        "OverconstrainedAllocationRequest",
        "Allocation failed. VM(s) with the following constraints cannot be allocated.",
        True,
        "OverconstrainedAllocationFailure",
        True,
    ),
    (
        "InvalidParameter",
        "The value of parameter agentPoolProfile.osDiskSizeGB is invalid.",
        False,
        "InvalidParameter",
        False,
    ),
    (
        "AuthorizationFailed",
        "The client does not have authorization to perform action "
        "'Microsoft.ContainerService/managedClusters/agentPools/write'.",
        False,
        "AuthorizationFailed",
        False,
    ),
]


@pytest.mark.parametrize(("code", "message", "in_lro", "reason", "capacity"), ERRORS)
async def test_arm_errors_map_to_reasons(arm, azure, code, message, in_lro, reason, capacity):
    arm.fail_next_create(code, message, status=403 if code == "AuthorizationFailed" else 400, in_lro=in_lro)
    checkpoint = MemoryCheckpoint()
    labels = {"provider": "azure", "method": "create", "code": code}
    before = REGISTRY.get_sample_value("kaito_provisioner_cloudprovider_errors_total", labels) or 0
    with pytest.raises(CloudProviderError) as err:
        await azure.create(make_claim(), checkpoint)
    assert err.value.reason == reason
    assert code in err.value.message and message[:30] in err.value.message
    assert err.value.capacity is capacity
    if in_lro:  # the LRO's top-level code wraps the real one
        labels["code"] = "ReconcileVMSSAgentPoolFailed"
        before = 0
    assert REGISTRY.get_sample_value("kaito_provisioner_cloudprovider_errors_total", labels) >= before + 1
    # nothing leaks: a pool that failed inside the operation is deleted, the checkpoint is cleared
    assert arm.pools == {}
    assert checkpoint.value is None


async def test_throttling_is_retried_honouring_retry_after(arm):
    provider = provider_for(arm, retry_total=3)
    try:
        arm.throttle, arm.retry_after = 1, 1
        instance = await provider.create(make_claim(), MemoryCheckpoint())
        assert instance.provider_id
        throttled = [r for r in arm.requests if r[3] == 429]
        assert len(throttled) == 1
        retried = arm.requests[arm.requests.index(throttled[0]) + 1]
        assert retried[1:3] == throttled[0][1:3]
        assert retried[0] - throttled[0][0] >= 0.9  # waited for Retry-After
    finally:
        await provider.close()


async def test_restart_during_create_resumes_the_same_operation(arm):
    """An operator that dies mid-create resumes from the checkpoint: one PUT, one pool, claim completes."""
    arm.hold = True
    checkpoint = MemoryCheckpoint()
    first = provider_for(arm)
    task = asyncio.create_task(first.create(make_claim(), checkpoint))
    await wait_for(lambda: checkpoint.value is not None)
    task.cancel()  # the process dies
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await first.close()

    second = provider_for(arm)
    try:
        resumed = asyncio.create_task(second.create(make_claim(), MemoryCheckpoint(checkpoint.value)))
        await asyncio.sleep(0.2)
        assert not resumed.done()  # still polling the same operation
        arm.release()
        instance = await asyncio.wait_for(resumed, 10)
    finally:
        await second.close()
    assert instance.provider_id
    assert arm.puts == 1
    assert list(arm.pools) == ["ws0a1b2c3d4"]


async def test_restart_without_checkpoint_waits_for_the_existing_pool(arm, azure):
    arm.hold = True
    first = provider_for(arm)
    task = asyncio.create_task(first.create(make_claim(), MemoryCheckpoint()))
    await wait_for(lambda: "ws0a1b2c3d4" in arm.pools)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await first.close()
    resumed = asyncio.create_task(azure.create(make_claim(), MemoryCheckpoint()))
    await asyncio.sleep(0.2)
    arm.release()
    # the held operation completes when polled; nobody polls it now, so finish it as ARM would
    for op in arm.operations.values():
        op.polls = 5
    arm._finish_create("ws0a1b2c3d4")
    instance = await asyncio.wait_for(resumed, 10)
    assert instance.provider_id and arm.puts == 1


async def test_delete_during_create_leaves_no_pool(arm, azure):
    arm.hold = True
    checkpoint = MemoryCheckpoint()
    task = asyncio.create_task(azure.create(make_claim(), checkpoint))
    await wait_for(lambda: checkpoint.value is not None)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await azure.delete(make_claim())
    with pytest.raises(NotFoundError):
        await azure.delete(make_claim())
    assert arm.pools == {}
