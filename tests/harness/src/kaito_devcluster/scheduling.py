"""Would the Ray pods of a cluster spec schedule on the cluster's Nodes? (pure functions)

The stand-in runs every Ray process on this machine, so it cannot honour node pinning or GPU requests;
it checks them instead, the way the scheduler would filter nodes (required node affinity, nodeSelector,
taints and tolerations, extended-resource requests such as `nvidia.com/gpu`, Node Ready), and reports
what would keep a pod Pending on a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaito_devcluster.quantity import parse_quantity


@dataclass(frozen=True)
class GroupCheck:
    group: str
    pods: int
    feasible_nodes: list[str]
    #: node name -> why that node does not fit
    rejected: dict[str, str]

    @property
    def ok(self) -> bool:
        return len(self.feasible_nodes) >= self.pods

    def describe(self) -> str:
        head = f"{self.group}: {len(self.feasible_nodes)}/{self.pods} pod(s) can be placed"
        if not self.rejected:
            return head + ("" if self.ok else " (no nodes)")
        reasons = "; ".join(f"{n}: {why}" for n, why in sorted(self.rejected.items()))
        return f"{head} ({reasons})"


def _expr_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    return False


def _required_terms(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return required.get("nodeSelectorTerms") or []


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _requests(pod_spec: dict[str, Any]) -> dict[str, float]:
    total: dict[str, float] = {}
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for name, value in merged.items():
            total[name] = total.get(name, 0.0) + parse_quantity(str(value))
    return total


def node_ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def why_not(pod_spec: dict[str, Any], node: dict[str, Any]) -> str | None:
    """None when a pod with this spec fits the node, else the scheduler-style reason."""
    labels = node.get("metadata", {}).get("labels") or {}
    if not node_ready(node):
        return "node not Ready"
    if node.get("spec", {}).get("unschedulable"):
        return "node unschedulable"
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return f"nodeSelector {key}={value} not matched"
    terms = _required_terms(pod_spec)
    if terms and not any(
        all(_expr_matches(e, labels) for e in term.get("matchExpressions") or []) for term in terms
    ):
        wanted = ", ".join(
            f"{e.get('key')} {e.get('operator')} {e.get('values') or ''}".strip()
            for term in terms
            for e in term.get("matchExpressions") or []
        )
        return f"node affinity not matched ({wanted})"
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(
            taint, pod_spec.get("tolerations") or []
        ):
            return f"taint {taint.get('key')}={taint.get('value', '')}:{taint.get('effect')} not tolerated"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for name, amount in _requests(pod_spec).items():
        if "/" not in name or amount <= 0:  # cpu/memory are not modelled by simulated nodes' usage
            continue
        have = parse_quantity(str(allocatable.get(name, "0")))
        if have < amount:
            return f"{name}: {have:g} allocatable < {amount:g} requested"
    return None


def _one_per_node(pod_spec: dict[str, Any]) -> bool:
    anti = ((pod_spec.get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return any(term.get("topologyKey") == "kubernetes.io/hostname" for term in anti)


def check_group(group: str, template: dict[str, Any], pods: int, nodes: list[dict[str, Any]]) -> GroupCheck:
    spec = template.get("spec") or {}
    feasible: list[str] = []
    rejected: dict[str, str] = {}
    for node in nodes:
        name = node.get("metadata", {}).get("name", "?")
        reason = why_not(spec, node)
        if reason is None:
            feasible.append(name)
        else:
            rejected[name] = reason
    if feasible and not _one_per_node(spec):
        feasible = feasible * pods  # several pods may share a node
    return GroupCheck(group=group, pods=pods, feasible_nodes=sorted(feasible), rejected=rejected)


def check_cluster(cluster_spec: dict[str, Any], nodes: list[dict[str, Any]]) -> list[GroupCheck]:
    """One check for the head and one per worker group (replicas pods each)."""
    checks = [check_group("head", (cluster_spec.get("headGroupSpec") or {}).get("template") or {}, 1, nodes)]
    for group in cluster_spec.get("workerGroupSpecs") or []:
        if group.get("suspend"):
            continue
        replicas = int(group.get("replicas", group.get("minReplicas", 0)) or 0)
        checks.append(
            check_group(
                f"worker group {group.get('groupName', '?')}", group.get("template") or {}, replicas, nodes
            )
        )
    return checks


def gpu_requests(cluster_spec: dict[str, Any]) -> float:
    """Total GPUs the cluster's pods request (what the stand-in cannot give on a CPU machine)."""
    total = 0.0
    groups = [(cluster_spec.get("headGroupSpec") or {}, 1)]
    groups += [(g, int(g.get("replicas", 0) or 0)) for g in cluster_spec.get("workerGroupSpecs") or []]
    for group, count in groups:
        total += count * _requests((group.get("template") or {}).get("spec") or {}).get("nvidia.com/gpu", 0.0)
    return total
