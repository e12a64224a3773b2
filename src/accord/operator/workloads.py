"""What the operator knows of workloads and nodes, read from their API objects (operator layer, pure).

Turns Deployment/StatefulSet and Node bodies into the values the engine takes: the workload's
current replicas and placement, and each of the policy's pools as its Nodes show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.agents.base import Pool
from accord.models.policy import NegotiationPolicySpec, Placement

PAUSED = "accord.dev/paused"
OPT_OUT = "accord.dev/ignore"
NEGOTIATION = "accord.dev/negotiation"
REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
UNMATCHED_PLACEMENT = "current"
DEFAULT_PLACEMENT = "default"


@dataclass(frozen=True, slots=True)
class WorkloadView:
    kind: str
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    replicas: int
    ready: int
    node_selector: Mapping[str, str]
    resource_version: str
    generation: int = 0
    tolerations: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def paused(self) -> bool:
        return self.annotations.get(PAUSED, "").lower() in {"true", "1", "yes"}

    @property
    def opted_out(self) -> bool:
        return self.annotations.get(OPT_OUT, "").lower() in {"true", "1", "yes"}


def workload_view(kind: str, body: Mapping[str, Any]) -> WorkloadView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) or {}
    return WorkloadView(
        kind=kind,
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        node_selector=dict(pod_spec.get("nodeSelector") or {}),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation") or 0),
        tolerations=tuple(pod_spec.get("tolerations") or ()),
    )


def current_placement(policy: NegotiationPolicySpec, workload: WorkloadView) -> str:
    """The pool whose nodeSelector the pod template carries (the most specific match wins)."""
    if not policy.placements:
        return DEFAULT_PLACEMENT
    matches = [
        p
        for p in policy.placements
        if p.node_selector and all(workload.node_selector.get(k) == v for k, v in p.node_selector.items())
    ]
    if not matches:
        return UNMATCHED_PLACEMENT
    return max(matches, key=lambda p: len(p.node_selector)).name


def _pool(name: str, placement: Placement | None, nodes: list[Mapping[str, str]]) -> Pool:
    common: dict[str, str] = dict(nodes[0]) if nodes else {}
    for labels in nodes[1:]:
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return Pool(
        name=name,
        price_per_pod_hour=placement.price_per_pod_hour if placement else None,
        capacity_type=placement.capacity_type if placement else "on-demand",
        node_labels=common,
        regions=frozenset(n[REGION] for n in nodes if REGION in n),
        zones=frozenset(n[ZONE] for n in nodes if ZONE in n),
        nodes=len(nodes),
    )


def pools(
    policy: NegotiationPolicySpec, node_labels: Iterable[Mapping[str, str]], workload: WorkloadView
) -> dict[str, Pool]:
    """Every placement option as its Nodes show it, plus the workload's current one."""
    nodes = list(node_labels)

    def matching(selector: Mapping[str, str]) -> list[Mapping[str, str]]:
        return [n for n in nodes if all(n.get(k) == v for k, v in selector.items())]

    found = {p.name: _pool(p.name, p, matching(p.node_selector)) for p in policy.placements}
    current = current_placement(policy, workload)
    if current not in found:
        found[current] = _pool(current, None, matching(workload.node_selector))
    return found


def placement_patch(placement: Placement) -> dict[str, Any]:
    """The pod-template fields a placement sets (a strategic merge of nodeSelector is not enough:
    a stale key from another pool must go, so the selector is replaced as a whole)."""
    pod: dict[str, Any] = {
        "nodeSelector": dict(placement.node_selector) or None,
        "tolerations": [t.to_wire() for t in placement.tolerations] or None,
    }
    if placement.affinity is not None:
        pod["affinity"] = placement.affinity
    return pod
