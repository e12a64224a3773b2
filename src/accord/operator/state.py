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
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.lifecycle import Decisions
from accord.negotiation.trust import PendingCheck, TrustState
from accord.operator.workloads import WorkloadView, selects


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
    prometheus_timeout: float = 5.0
    kubeconfig: str | None = None
    agent_hosts: tuple[str, ...] = ()  # hosts external agents may be served from; empty: any


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
    nodes: dict[str, Mapping[str, str]] = field(default_factory=dict)
    hpas: dict[str, tuple[str, int | None, int]] = field(default_factory=dict)  # workload key -> (name, min, max)
    agents: dict[str, AgentEntry] = field(default_factory=dict)  # namespace/name
    trust: dict[str, TrustState] = field(default_factory=dict)  # namespace/name
    checks: list[PendingCheck] = field(default_factory=list)  # predictions waiting to be checked
    # workload key -> its decision state (the lifecycle's): records, stabilization history, budget
    decisions: dict[str, Decisions] = field(default_factory=dict)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)  # policy namespace/name
    policy_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # workload key: one writer at a time
    policy_cache: dict[str, tuple[str, NegotiationPolicySpec | None]] = field(default_factory=dict)

    def wake(self, policy_key: str | None = None) -> None:
        targets = [policy_key] if policy_key else list(self.wakeups)
        for key in targets:
            event = self.wakeups.get(key)
            if event is not None:
                event.set()

    def wake_for(self, workload: WorkloadView) -> None:
        """Wake the policies that select this workload (only those whose spec parses)."""
        for key, body in list(self.policy_bodies.items()):
            spec = self.parsed_policy(key, body)
            if spec is not None and selects(spec, key.split("/", 1)[0], workload):
                self.wake(key)

    def parsed_policy(self, key: str, body: Mapping[str, Any]) -> NegotiationPolicySpec | None:
        """The policy's spec, parsed once per resourceVersion; None while it is invalid."""
        version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        cached = self.policy_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            spec: NegotiationPolicySpec | None = from_wire(NegotiationPolicySpec, body.get("spec") or {})
        except ValueError:
            spec = None
        self.policy_cache[key] = (version, spec)
        return spec

    def lock(self, workload_key: str) -> asyncio.Lock:
        return self.locks.setdefault(workload_key, asyncio.Lock())

    def policy(self, key: str) -> NegotiationPolicySpec | None:
        """The live, valid spec of the policy `namespace/name`, or None."""
        body = self.policy_bodies.get(key)
        return None if body is None else self.parsed_policy(key, body)

    def trust_of(self, namespace: str, name: str) -> float:
        state = self.trust.get(f"{namespace}/{name}")
        return 1.0 if state is None else state.trust
