"""What the operator holds in memory between rounds (operator layer).

Everything here is rebuilt from the API on start-up (the watches list every object first):
workloads, nodes, autoscalers, agents with their learned trust (from Agent status), and each
workload's decision state (`lifecycle.Decisions`: its records, and the change budget from the
applied ones; the stabilization history is seeded from the workload's count). Only the predictions
awaiting their check live in memory alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.models.agent import AgentSpec
from accord.models.common import from_wire
from accord.models.policy import ClusterNegotiationPolicySpec, NegotiationPolicySpec
from accord.negotiation.lifecycle import Decisions
from accord.negotiation.trust import PendingCheck, TrustState
from accord.operator.scope import PolicyRef, protected_namespaces, reaches, scope_problems
from accord.operator.workloads import AutoscalerView, NodeView, WorkloadView


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str | None = None
    namespaces: tuple[str, ...] = ()
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    webhook: bool = False
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 9443
    webhook_certfile: str | None = None
    webhook_keyfile: str | None = None
    webhook_cafile: str | None = None
    webhook_url_host: str | None = None
    webhook_service: str | None = None  # namespace/name: register the webhook by Service reference
    concurrency: int = 16
    workload_timeout: float = 30.0
    prometheus_timeout: float = 5.0  # per query, its retries included
    prometheus_ca_file: str | None = None  # CA bundle an https Prometheus is verified against (default: the system's)
    kubeconfig: str | None = None
    # At most one operator writes for a namespace: the holder of its shard's Lease (operator/sharding.py).
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "accord"
    shards: int = 1  # fixed for an installation, whatever the number of replicas
    agent_hosts: tuple[str, ...] = ()  # hosts external agents may be served from; empty: any
    # Namespaces no policy reaches, besides kube-system, kube-public and kube-node-lease.
    protected_namespaces: tuple[str, ...] = ()
    # Whether the operator may change pod templates (placements); without, a policy with placements is Invalid.
    placements: bool = True
    # Whether kopf registers the webhook configurations (False: the chart owns them).
    manage_webhook_configurations: bool = True

    @property
    def protected(self) -> frozenset[str]:
        return protected_namespaces(self.protected_namespaces)


@dataclass
class AgentEntry:
    namespace: str
    name: str
    spec: AgentSpec | None
    error: str | None
    generation: int
    observed_generation: int | None


@dataclass
class State:
    config: OperatorConfig
    workloads: dict[str, WorkloadView] = field(default_factory=dict)
    nodes: dict[str, NodeView] = field(default_factory=dict)
    hpas: dict[str, AutoscalerView] = field(default_factory=dict)  # workload key -> its HPA
    agents: dict[str, AgentEntry] = field(default_factory=dict)  # namespace/name
    trust: dict[str, TrustState] = field(default_factory=dict)  # namespace/name
    checks: list[PendingCheck] = field(default_factory=list)  # predictions waiting to be checked
    # workload key -> its decision state (the lifecycle's): records, stabilization history, budget
    decisions: dict[str, Decisions] = field(default_factory=dict)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)  # policy namespace/name
    policy_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy key (see scope.PolicyRef)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # only with cluster policies
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # workload key: one writer at a time
    policy_cache: dict[str, tuple[str, NegotiationPolicySpec | None]] = field(default_factory=dict)

    def known(self) -> str:
        """What the watches have delivered so far, in a line (/readyz says it)."""
        return (
            f"{len(self.workloads)} workloads, {len(self.policy_bodies)} policies, {len(self.agents)} agents, "
            f"{len(self.nodes)} nodes known"
        )

    def wake(self, policy_key: str | None = None) -> None:
        targets = [policy_key] if policy_key else list(self.wakeups)
        for key in targets:
            event = self.wakeups.get(key)
            if event is not None:
                event.set()

    def wake_for(self, workload: WorkloadView) -> None:
        """Wake the policies that select this workload (only those whose spec parses and is in scope)."""
        for key in list(self.policy_bodies):
            spec = self.policy(key)
            if spec is not None and self.selects(spec, PolicyRef.from_key(key), workload):
                self.wake(key)

    def selects(self, spec: NegotiationPolicySpec, ref: PolicyRef, workload: WorkloadView) -> bool:
        return reaches(spec, ref, workload, namespace_labels=self.namespace_labels, protected=self.config.protected)

    def claims(self, workload: WorkloadView) -> list[tuple[str, str]]:
        """(creationTimestamp, key) of every valid policy that selects this workload: `scope.owner` picks
        the one that negotiates it."""
        found = []
        for key, body in list(self.policy_bodies.items()):
            spec = self.policy(key)
            if spec is not None and self.selects(spec, PolicyRef.from_key(key), workload):
                found.append((str((body.get("metadata") or {}).get("creationTimestamp") or ""), key))
        return found

    def scope_problems(self, spec: NegotiationPolicySpec, ref: PolicyRef) -> list[str]:
        return scope_problems(spec, ref, protected=self.config.protected, placements_allowed=self.config.placements)

    def policy(self, key: str) -> NegotiationPolicySpec | None:
        """The spec of the policy with this key, if it parses and asks for nothing it may not have."""
        body = self.policy_bodies.get(key)
        if body is None:
            return None
        spec = self.parsed_policy(key, body)
        if spec is None or self.scope_problems(spec, PolicyRef.from_key(key)):
            return None
        return spec

    def parsed_policy(self, key: str, body: Mapping[str, Any]) -> NegotiationPolicySpec | None:
        """The policy's spec (a ClusterNegotiationPolicySpec for a cluster key), parsed once per
        resourceVersion; None while it is invalid."""
        version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        cached = self.policy_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            spec: NegotiationPolicySpec | None = parse_policy(PolicyRef.from_key(key), body.get("spec") or {})
        except ValueError:
            spec = None
        self.policy_cache[key] = (version, spec)
        return spec

    def lock(self, workload_key: str) -> asyncio.Lock:
        return self.locks.setdefault(workload_key, asyncio.Lock())

    def trust_of(self, namespace: str, name: str) -> float:
        state = self.trust.get(f"{namespace}/{name}")
        return 1.0 if state is None else state.trust


def parse_policy(ref: PolicyRef, spec: Any) -> NegotiationPolicySpec:
    """The spec of a NegotiationPolicy or (for a cluster ref) a ClusterNegotiationPolicy; raises ValidationError."""
    return from_wire(ClusterNegotiationPolicySpec if ref.cluster else NegotiationPolicySpec, spec)
