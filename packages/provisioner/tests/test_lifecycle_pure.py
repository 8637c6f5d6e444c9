"""The pure parts of the lifecycle, tested by value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kaito_provisioner.adapters import MachineAdapter, NodeClaimAdapter
from kaito_provisioner.conditions import ConditionSet
from kaito_provisioner.lifecycle import gc, initialization, liveness, registration
from kaito_provisioner.lifecycle.controller import phase
from kaito_provisioner.lifecycle.launch import apply_instance
from kaito_provisioner.model import Claim, is_managed
from kaito_provisioner.providers.azure_errors import classify
from kaito_provisioner.providers.base import Instance

T0 = datetime(2026, 11, 28, 20, 0, 0, tzinfo=UTC)

NODECLAIM = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodeClaim",
    "metadata": {
        "name": "ws0a1b2c3d4",
        "uid": "u1",
        "generation": 1,
        "creationTimestamp": "2026-11-28T20:00:00Z",
        "labels": {"kaito.sh/workspace": "phi", "karpenter.sh/nodepool": "kaito"},
        "annotations": {"karpenter.sh/do-not-disrupt": "true"},
    },
    "spec": {
        "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
        "requirements": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]},
            {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        ],
        "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        "startupTaints": [{"key": "example.com/agent-not-ready", "effect": "NoSchedule"}],
        "resources": {"requests": {"storage": "120Gi", "nvidia.com/gpu": "1"}},
    },
}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def tick(self, s: float = 1) -> None:
        self.t += timedelta(seconds=s)


def claim() -> Claim:
    return NodeClaimAdapter().parse(NODECLAIM)


def by_type(c: Claim) -> dict[str, tuple[str, str, str]]:
    return {x.type: (x.status, x.reason, x.message) for x in c.conditions}


def test_initial_conditions_are_karpenters():
    c, clock = claim(), Clock()
    ConditionSet(c, now=clock)
    got = by_type(c)
    assert got["Launched"] == ("Unknown", "AwaitingReconciliation", "object is awaiting reconciliation")
    assert got["Registered"][1] == "AwaitingReconciliation"
    assert got["Ready"][:2] == ("Unknown", "ReconcilingDependents")
    assert [x.type for x in c.conditions][-1] == "Ready"  # root last
    assert all(x.last_transition_time == T0 and x.observed_generation == 1 for x in c.conditions)


def test_ready_derivation():
    c, clock = claim(), Clock()
    cs = ConditionSet(c, now=clock)
    clock.tick()
    cs.set_true("Launched")
    assert by_type(c)["Ready"] == (
        "Unknown",
        "ReconcilingDependents",
        "Registered=Unknown, Initialized=Unknown",
    )
    clock.tick()
    cs.set_false("Registered", "MultipleNodesFound", "Invariant violated, matched multiple nodes")
    assert by_type(c)["Ready"][:2] == ("False", "UnhealthyDependents")
    assert by_type(c)["Ready"][2].startswith("Registered=False")
    clock.tick()
    cs.set_true("Registered")
    cs.set_true("Initialized")
    assert by_type(c)["Ready"] == ("True", "Ready", "")
    ready = c.condition("Ready")
    assert ready is not None and ready.last_transition_time == clock.t
    # unchanged status keeps its transition time
    launched_at = c.condition("Launched").last_transition_time
    clock.tick()
    assert not cs.set_true("Launched")
    assert c.condition("Launched").last_transition_time == launched_at


def test_stale_generation_makes_ready_unknown():
    c, clock = claim(), Clock()
    cs = ConditionSet(c, now=clock)
    for t in ("Launched", "Registered", "Initialized"):
        cs.set_true(t)
    c.generation = 2
    cs.set_true("Launched")
    assert by_type(c)["Ready"][:2] == ("Unknown", "ReconcilingDependents")


def test_nodeclaim_round_trip_status():
    c = claim()
    ConditionSet(c, now=Clock())
    apply_instance(
        c,
        Instance(
            name=c.name,
            provider_id="kwok://ws0a1b2c3d4",
            image_id="img",
            capacity={"cpu": "6", "nvidia.com/gpu": "1"},
            labels={"karpenter.sh/capacity-type": "on-demand"},
        ),
    )
    status = NodeClaimAdapter().status(c)
    assert status["providerID"] == "kwok://ws0a1b2c3d4" and status["imageID"] == "img"
    assert status["allocatable"] == {"cpu": "6", "nvidia.com/gpu": "1"}
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= set(
        status["conditions"][0]
    )
    assert c.labels["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert c.labels["karpenter.sh/capacity-type"] == "on-demand"
    again = NodeClaimAdapter().parse({**NODECLAIM, "status": status})
    assert again.conditions == c.conditions and again.provider_id == c.provider_id


def test_machine_adapter_uses_v1alpha5_condition_types_and_knative_ready():
    machine = {
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Machine",
        "metadata": {**NODECLAIM["metadata"], "name": "ws0a1b2c3d5"},
        "spec": {
            "machineTemplateRef": {
                "apiVersion": "kaito.sh/v1alpha1",
                "kind": "KaitoNodeClass",
                "name": "default",
            },
            "requirements": NODECLAIM["spec"]["requirements"],
        },
    }
    a = MachineAdapter()
    c = a.parse(machine)
    assert c.kind == "Machine" and is_managed(c) and c.node_class_ref.group == "kaito.sh"
    cs = ConditionSet(c, now=Clock())
    cs.set_false("Launched", "SubscriptionQuotaReached", "QuotaExceeded: no cores")
    conds = {x["type"]: x for x in a.status(c)["conditions"]}
    assert set(conds) == {"MachineLaunched", "MachineRegistered", "MachineInitialized", "Ready"}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "SubscriptionQuotaReached"
    assert "observedGeneration" not in conds["MachineLaunched"]
    assert (
        a.parse({**machine, "status": a.status(c)}).condition("Launched").reason == "SubscriptionQuotaReached"
    )


def test_only_kaito_claims_are_managed():
    other = {**NODECLAIM, "metadata": {**NODECLAIM["metadata"], "labels": {}}}
    other["spec"] = {
        **NODECLAIM["spec"],
        "nodeClassRef": {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "x"},
    }
    assert not is_managed(NodeClaimAdapter().parse(other))
    assert is_managed(claim())


def node(**kw) -> dict:
    base = {
        "metadata": {"name": "n1", "resourceVersion": "7", "labels": {"kubernetes.io/hostname": "n1"}},
        "spec": {
            "providerID": "kwok://ws0a1b2c3d4",
            "taints": [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "6", "nvidia.com/gpu": "1"},
        },
    }
    for k, v in kw.items():
        base[k] = {**base[k], **v}
    return base


def test_registration_plan():
    c = claim()
    c.provider_id = "kwok://ws0a1b2c3d4"
    a = NodeClaimAdapter()
    assert registration.plan(c, [], a).reason == "NodeNotFound"
    multi = registration.plan(c, [node(), node()], a)
    assert (multi.status, multi.reason) == ("False", "MultipleNodesFound")
    r = registration.plan(c, [node()], a)
    assert r.status == "True" and r.node_name == "n1"
    meta = r.node_patch["metadata"]
    assert meta["labels"]["karpenter.sh/registered"] == "true"
    assert meta["labels"]["kaito.sh/workspace"] == "phi"
    assert meta["finalizers"] == ["karpenter.sh/termination"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "name": "ws0a1b2c3d4",
            "uid": "u1",
            "blockOwnerDeletion": True,
        }
    ]
    keys = [t["key"] for t in r.node_patch["spec"]["taints"]]
    assert keys == ["sku", "example.com/agent-not-ready"]  # unregistered gone, claim taints added


def test_initialization_reasons():
    c = claim()
    assert initialization.evaluate(c, None)[1] == "NodeNotFound"
    not_ready = node(status={"conditions": [{"type": "Ready", "status": "False"}]})
    assert initialization.evaluate(c, not_ready)[1] == "NodeNotReady"
    startup = node(spec={"taints": [{"key": "example.com/agent-not-ready", "effect": "NoSchedule"}]})
    assert initialization.evaluate(c, startup)[1] == "StartupTaintsExist"
    ephemeral = node(spec={"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]})
    assert initialization.evaluate(c, ephemeral)[1] == "KnownEphemeralTaintsExist"
    no_gpu = node(spec={"taints": []}, status={"allocatable": {"cpu": "6"}})
    status, reason, message = initialization.evaluate(c, no_gpu)
    assert (status, reason) == ("Unknown", "ResourceNotRegistered") and "nvidia.com/gpu" in message
    assert initialization.evaluate(c, node(spec={"taints": []}))[0] == "True"  # storage is not checked


def test_liveness():
    c, clock = claim(), Clock()
    cs = ConditionSet(c, now=clock)
    kw = {"launch_timeout": 600, "registration_timeout": 900}
    assert liveness.verdict(c, T0 + timedelta(seconds=599), **kw) is None
    assert liveness.verdict(c, T0 + timedelta(seconds=601), **kw) == "LaunchTimeout"
    clock.tick(300)
    cs.set_true("Launched")
    assert liveness.verdict(c, T0 + timedelta(seconds=1199), **kw) is None  # measured from launch
    assert liveness.verdict(c, T0 + timedelta(seconds=1201), **kw) == "RegistrationTimeout"
    assert liveness.verdict(c, T0 + timedelta(days=1), launch_timeout=0, registration_timeout=0) is None
    cs.set_true("Registered")
    assert liveness.verdict(c, T0 + timedelta(days=1), **kw) is None


def test_gc_orphans():
    old, new = T0 - timedelta(minutes=10), T0 - timedelta(seconds=10)
    instances = [
        Instance(name="wsclaimed", created_at=old),
        Instance(name="wsorphan", created_at=old),
        Instance(name="wsyoung", created_at=new),
        Instance(name="wsunknown"),
    ]
    assert [i.name for i in gc.orphans(instances, {"wsclaimed"}, T0, grace=120)] == ["wsorphan"]


def test_phase():
    c = claim()
    cs = ConditionSet(c, now=Clock())
    assert phase(c) == "Launching"
    cs.set_true("Launched")
    assert phase(c) == "Registering"
    cs.set_true("Registered")
    cs.set_true("Initialized")
    assert phase(c) == "Ready"


@pytest.mark.parametrize(
    ("codes", "message", "status", "reason"),
    [
        (["QuotaExceeded"], "exceeding approved Cores quota", 400, "SubscriptionQuotaReached"),
        (["ReconcileVMSSAgentPoolFailed", "ZonalAllocationFailed"], "", None, "ZonalAllocationFailure"),
        (
            ["ReconcileVMSSAgentPoolFailed"],
            'Code="AllocationFailed" Message="no capacity"',
            None,
            "AllocationFailure",
        ),
        (
            ["OperationNotAllowed"],
            "Preflight validation: insufficient regional vcpu quota",
            400,
            "SubscriptionQuotaReached",
        ),
        (
            ["InvalidParameter"],
            "The VM size Standard_X is not available in location eastus",
            400,
            "SKUNotAvailable",
        ),
        (["InvalidParameter"], "osDiskSizeGB is invalid", 400, "InvalidParameter"),
        ([], "Forbidden", 403, "AuthorizationFailed"),
        (["InternalServerError"], "boom", 500, "LaunchFailed"),
    ],
)
def test_arm_error_classification(codes, message, status, reason):
    assert classify(codes, message, status) == reason
