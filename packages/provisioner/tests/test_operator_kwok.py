"""The operator as a real process against the Kubernetes API emulator, with the kwok provider."""

from __future__ import annotations

import pytest
from harness import CRDS, FAST, OperatorProcess, wait_until
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kube_api_emulator import KubeApiEmulator

GROUP = "karpenter.sh"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kwok")
    with KubeApiEmulator.in_thread(crds=[CRDS], kubeconfig=tmp / "kubeconfig") as emu:
        op = OperatorProcess(
            ["--provider", "kwok", "--kubeconfig", str(emu.kubeconfig), *FAST], {}, tmp / "op.log"
        )
        try:
            op.wait_ready()
            api = config.new_client_from_config(str(emu.kubeconfig))
            objs = client.CustomObjectsApi(api)
            objs.create_cluster_custom_object(
                "kaito.sh", "v1alpha1", "kaitonodeclasses",
                {"apiVersion": "kaito.sh/v1alpha1", "kind": "KaitoNodeClass",
                 "metadata": {"name": "default"}},
            )  # fmt: skip
            yield emu, op, api
        finally:
            op.stop()
            print(op.log.read_text()[-4000:])


def nodeclaim(name: str, size: str = "Standard_NC12s_v3") -> dict:
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {"kaito.sh/workspace": "phi-3", "kaito.sh/workspacenamespace": "default",
                       "karpenter.sh/nodepool": "kaito"},
            "annotations": {"karpenter.sh/do-not-disrupt": "true"},
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [size]},
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "resources": {"requests": {"storage": "120Gi", "nvidia.com/gpu": "2"}},
        },
    }  # fmt: skip


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def get(objs, version, plural, name):
    try:
        return objs.get_cluster_custom_object(GROUP, version, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def get_node(core, name):
    try:
        return core.read_node(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_nodeclaim_lifecycle(cluster):
    _, op, api = cluster
    objs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("ws1a2b3c4d5"))

    def ready():
        obj = get(objs, "v1", "nodeclaims", "ws1a2b3c4d5")
        return obj if conditions(obj).get("Ready", {}).get("status") == "True" else None

    claim = wait_until(ready, 30, what="NodeClaim Ready")
    conds = conditions(claim)
    for t in ("Launched", "Registered", "Initialized"):
        assert conds[t]["status"] == "True" and conds[t]["reason"] == t
        assert conds[t]["observedGeneration"] == claim["metadata"]["generation"]
    assert claim["status"]["providerID"] == "kwok://ws1a2b3c4d5"
    assert claim["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert claim["status"]["nodeName"] == "ws1a2b3c4d5"
    assert claim["metadata"]["finalizers"] == ["karpenter.sh/termination"]
    assert claim["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC12s_v3"

    node = core.read_node("ws1a2b3c4d5")
    labels = node.metadata.labels
    assert labels["karpenter.sh/registered"] == "true" and labels["karpenter.sh/initialized"] == "true"
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert "karpenter.sh/termination" in node.metadata.finalizers
    assert [(o.kind, o.name) for o in node.metadata.owner_references] == [("NodeClaim", "ws1a2b3c4d5")]
    assert [(t.key, t.effect) for t in node.spec.taints] == [("sku", "NoSchedule")]

    events = core.list_namespaced_event("default").items
    reasons = {e.reason for e in events if e.involved_object.name == "ws1a2b3c4d5"}
    assert {"Launched", "Registered", "Initialized"} <= reasons
    assert 'kaito_provisioner_claims{kind="NodeClaim",phase="Ready"} 1.0' in op.metrics()

    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "ws1a2b3c4d5")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "ws1a2b3c4d5") is None, 30, what="NodeClaim gone")
    assert get_node(core, "ws1a2b3c4d5") is None


def test_machine_lifecycle(cluster):
    _, _, api = cluster
    objs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    spec = nodeclaim("wsmachine01", "Standard_NC24ads_A100_v4")["spec"]
    machine = {
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Machine",
        "metadata": {"name": "wsmachine01", "labels": {"kaito.sh/workspace": "falcon",
                                                       "karpenter.sh/provisioner-name": "default"}},
        "spec": {
            "machineTemplateRef": {"apiVersion": "kaito.sh/v1alpha1", "kind": "KaitoNodeClass",
                                   "name": "default"},
            "requirements": spec["requirements"],
            "taints": spec["taints"],
            "resources": {"requests": {"nvidia.com/gpu": "1"}},
        },
    }  # fmt: skip
    objs.create_cluster_custom_object(GROUP, "v1alpha5", "machines", machine)

    def ready():
        obj = get(objs, "v1alpha5", "machines", "wsmachine01")
        return obj if conditions(obj).get("Ready", {}).get("status") == "True" else None

    got = wait_until(ready, 30, what="Machine Ready")
    conds = conditions(got)
    assert {"MachineLaunched", "MachineRegistered", "MachineInitialized"} <= set(conds)
    assert all(
        conds[t]["status"] == "True" for t in ("MachineLaunched", "MachineRegistered", "MachineInitialized")
    )
    assert got["status"]["nodeName"] == "wsmachine01"
    node = core.read_node("wsmachine01")
    assert [(o.kind, o.api_version) for o in node.metadata.owner_references] == [
        ("Machine", "karpenter.sh/v1alpha5")
    ]

    objs.delete_cluster_custom_object(GROUP, "v1alpha5", "machines", "wsmachine01")
    wait_until(lambda: get(objs, "v1alpha5", "machines", "wsmachine01") is None, 30, what="Machine gone")
    assert get_node(core, "wsmachine01") is None


def test_unknown_instance_type_is_reported_and_not_launched(cluster):
    _, _, api = cluster
    objs = client.CustomObjectsApi(api)
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsbadsize01", "Standard_Nope"))

    def failed():
        launched = conditions(get(objs, "v1", "nodeclaims", "wsbadsize01")).get("Launched", {})
        return launched if launched.get("status") == "False" else None

    launched = wait_until(failed, 30, what="Launched=False")
    assert launched["reason"] == "InstanceTypeNotFound" and "Standard_Nope" in launched["message"]
    ready = conditions(get(objs, "v1", "nodeclaims", "wsbadsize01"))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "UnhealthyDependents")
    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "wsbadsize01")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsbadsize01") is None, 30, what="claim gone")


def test_claims_of_other_provisioners_are_left_alone(cluster):
    _, _, api = cluster
    objs = client.CustomObjectsApi(api)
    other = nodeclaim("foreign01")
    other["metadata"]["labels"] = {"karpenter.sh/nodepool": "general"}
    other["spec"]["nodeClassRef"] = {
        "group": "karpenter.azure.com",
        "kind": "AKSNodeClass",
        "name": "default",
    }
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", other)
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsmarker01", "Standard_D4s_v3"))
    wait_until(lambda: conditions(get(objs, "v1", "nodeclaims", "wsmarker01")).get("Ready"), 30, what="ours")
    assert not (get(objs, "v1", "nodeclaims", "foreign01").get("status") or {}).get("conditions")
    assert not get(objs, "v1", "nodeclaims", "foreign01")["metadata"].get("finalizers")
    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "foreign01")
    objs.delete_cluster_custom_object(GROUP, "v1", "nodeclaims", "wsmarker01")
    wait_until(lambda: get(objs, "v1", "nodeclaims", "wsmarker01") is None, 30, what="claim gone")


def test_orphaned_kwok_node_is_collected(cluster):
    _, _, api = cluster
    core = client.CoreV1Api(api)
    core.create_node(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "wsorphan01", "labels": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"providerID": "kwok://wsorphan01"},
        }
    )
    wait_until(lambda: get_node(core, "wsorphan01") is None, 30, what="orphan node collected")


def test_claim_whose_instance_vanished_is_deleted(cluster):
    """The machine disappears behind our back (here: its Node is deleted); GC deletes the claim."""
    _, _, api = cluster
    objs, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    objs.create_cluster_custom_object(GROUP, "v1", "nodeclaims", nodeclaim("wsvanish01"))
    wait_until(
        lambda: (
            conditions(get(objs, "v1", "nodeclaims", "wsvanish01")).get("Ready", {}).get("status") == "True"
        ),
        30,
        what="Ready",
    )
    core.delete_node("wsvanish01")
    wait_until(
        lambda: get(objs, "v1", "nodeclaims", "wsvanish01") is None, 30, what="claim garbage-collected"
    )
    wait_until(lambda: get_node(core, "wsvanish01") is None, 30, what="node gone")
    reasons = {
        e.reason
        for e in core.list_namespaced_event("default").items
        if e.involved_object.name == "wsvanish01"
    }
    assert "InstanceTerminated" in reasons
