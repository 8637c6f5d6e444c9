"""The operator as a real process with the azure provider: fake ARM on loopback, API emulator for the cluster.

No kubelet exists here, so the tests play the part of the AKS node joining: once the claim has a providerID
they create the Node with that providerID.
"""

from __future__ import annotations

import pytest
from fake_arm import CLUSTER, RG, SUB, FakeArm
from harness import CRDS, FAST, OperatorProcess, loop_thread, run_in, wait_until
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from test_operator_kwok import conditions, get, nodeclaim

from kube_api_emulator import KubeApiEmulator

GROUP = "karpenter.sh"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("azure")
    with loop_thread() as loop, KubeApiEmulator.in_thread(crds=[CRDS], kubeconfig=tmp / "kubeconfig") as emu:
        arm = run_in(loop, FakeArm().start())
        api = config.new_client_from_config(str(emu.kubeconfig))
        operators: list[OperatorProcess] = []

        def start(*extra: str) -> OperatorProcess:
            args = ["--provider", "azure", "--kubeconfig", str(emu.kubeconfig), *FAST, *extra]
            args += ["--arm-endpoint", arm.url, "--arm-polling-interval", "0.2", "--no-machines"]
            environ = {
                "ARM_SUBSCRIPTION_ID": SUB,
                "ARM_RESOURCE_GROUP": RG,
                "AZURE_CLUSTER_NAME": CLUSTER,
                "KAITO_PROVISIONER_STATIC_ARM_TOKEN": "test-token",
            }
            op = OperatorProcess(args, environ, tmp / f"op{len(operators)}.log")
            operators.append(op)
            return op.wait_ready()

        try:
            yield arm, api, start
        finally:
            for op in operators:
                op.stop()
                print(op.log.read_text()[-3000:])
            run_in(loop, arm.stop())


@pytest.fixture(scope="module")
def operator(env):
    """One operator shared by the tests that do not restart it (short registration timeout)."""
    _, _, start = env
    return start("--registration-timeout", "2")


@pytest.fixture(autouse=True)
def reset_arm(env):
    yield
    arm = env[0]
    arm.hold, arm.failures, arm.throttle = False, [], 0


def join_node(api, claim_name: str, provider_id: str, gpus: str = "1") -> None:
    """What the AKS node's kubelet would do: register a Ready Node with the VM's providerID."""
    core = client.CoreV1Api(api)
    name = f"aks-{claim_name}-12345678-vmss000000"
    core.create_node(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.azure.com/agentpool": claim_name}},
            "spec": {
                "providerID": provider_id,
                "taints": [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}],
            },
        }
    )
    core.patch_node_status(
        name,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}
                ],
                "allocatable": {"cpu": "6", "memory": "100Gi", "nvidia.com/gpu": gpus},
                "capacity": {"cpu": "6", "memory": "112Gi", "nvidia.com/gpu": gpus},
            }
        },
    )


def node_exists(api, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_node(name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_restart_during_create_resumes_and_completes(env):
    arm, api, start = env
    objs = client.CustomObjectsApi(api)
    arm.hold = True
    first = start()
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsrestart1", "Standard_NC6s_v3"))

    def checkpointed():
        obj = get(objs, "v1", "nodeclaims", "wsrestart1")
        return obj["metadata"].get("annotations", {}).get("kaito.sh/launch-checkpoint")

    wait_until(checkpointed, 30, what="launch checkpoint annotation")
    assert arm.pools["wsrestart1"]["properties"]["provisioningState"] == "Creating"
    first.kill()
    second = start()
    try:
        arm.release()

        def launched():
            obj = get(objs, "v1", "nodeclaims", "wsrestart1")
            return (obj.get("status") or {}).get("providerID")

        provider_id = wait_until(launched, 30, what="providerID")
        assert provider_id.startswith("azure:///subscriptions/") and "/virtualMachines/" in provider_id
        claim = get(objs, "v1", "nodeclaims", "wsrestart1")
        assert "kaito.sh/launch-checkpoint" not in claim["metadata"].get("annotations", {})
        assert claim["status"]["capacity"]["nvidia.com/gpu"] == "1"
        join_node(api, "wsrestart1", provider_id)
        wait_until(
            lambda: (
                conditions(get(objs, "v1", "nodeclaims", "wsrestart1")).get("Ready", {}).get("status")
                == "True"
            ),
            30,
            what="Ready",
        )
        assert arm.puts == 1 and list(arm.pools) == ["wsrestart1"]
        metrics = second.metrics()
        assert 'kaito_provisioner_cloudprovider_calls_total{method="get",provider="azure"}' in metrics

        objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "wsrestart1")
        wait_until(lambda: get(objs, "v1", "nodeclaims", "wsrestart1") is None, 30, what="claim gone")
        assert arm.pools == {}
        assert not node_exists(api, "aks-wsrestart1-12345678-vmss000000")
    finally:
        second.stop()
        arm.hold = False


def test_claim_deleted_during_create_leaks_nothing(env, operator):
    arm, api, _ = env
    objs = client.CustomObjectsApi(api)
    arm.hold = True
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsdelete1", "Standard_NC6s_v3"))
    wait_until(lambda: "wsdelete1" in arm.pools, 30, what="agent pool creating")
    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "wsdelete1")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsdelete1") is None, 30, what="claim gone")
    assert "wsdelete1" not in arm.pools


def test_quota_error_is_shown_and_the_claim_deleted(env, operator):
    arm, api, _ = env
    objs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    arm.fail_next_create(
        "QuotaExceeded", "Operation results in exceeding approved standardNCSv3Family Cores quota"
    )
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsquota1", "Standard_NC6s_v3"))
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsquota1") is None, 30, what="claim deleted")

    def quota_event():
        events = core.list_namespaced_event("default").items
        return [
            e
            for e in events
            if e.involved_object.name == "wsquota1" and e.reason == "SubscriptionQuotaReached"
        ]

    event = wait_until(quota_event, 10, what="SubscriptionQuotaReached event")[0]
    assert event.type == "Warning" and "QuotaExceeded" in event.message and "Cores quota" in event.message
    assert arm.pools == {}


def test_invalid_parameter_is_shown_on_launched(env, operator):
    arm, api, _ = env
    objs = client.CustomObjectsApi(api)
    arm.fail_next_create("InvalidParameter", "The value of parameter osDiskSizeGB is invalid.")
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsinvalid1", "Standard_NC6s_v3"))

    def failed():
        launched = conditions(get(objs, "v1", "nodeclaims", "wsinvalid1")).get("Launched", {})
        return launched if launched.get("status") == "False" else None

    launched = wait_until(failed, 30, what="Launched=False")
    assert launched["reason"] == "InvalidParameter" and "osDiskSizeGB" in launched["message"]
    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "wsinvalid1")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsinvalid1") is None, 30, what="claim gone")


def test_orphaned_agent_pool_is_collected(env, operator):
    arm, _, _ = env
    arm.add_pool("wsorphan2", labels={"kaito.sh/creation-timestamp": "2026-01-01T00-00-00Z",
                                      "kaito.sh/workspace": "gone"})  # fmt: skip
    arm.add_pool("userpool1", labels={"team": "theirs"})
    wait_until(lambda: "wsorphan2" not in arm.pools, 30, what="orphan agent pool deleted")
    assert "userpool1" in arm.pools  # not ours: never touched


def test_claim_whose_node_never_registers_is_deleted(env, operator):
    arm, api, _ = env
    objs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsnojoin1", "Standard_NC6s_v3"))
    wait_until(lambda: "wsnojoin1" in arm.pools, 30, what="agent pool")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsnojoin1") is None, 30, what="claim deleted")
    assert "wsnojoin1" not in arm.pools
    events = core.list_namespaced_event("default").items
    assert any(e.reason == "RegistrationTimeout" for e in events if e.involved_object.name == "wsnojoin1")
