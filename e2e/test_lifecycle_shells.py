"""The operator and the replay are two shells around one decision lifecycle: the same trace through
both gives the same decisions.

A short trace with a surge is replayed by `accord simulate`'s policy (a person approving gated
decisions after three minutes, a change budget, an approval threshold). The same trace is then fed,
minute by minute, through the operator's own round (`Negotiator.round`: agents seated from Agent
objects, the policy from its object, evidence from the trace instead of Prometheus, records and
Events written to the real API server, the Deployment scaled by the executor, approvals annotated on
the records and carried out by the operator's approval path). Both must produce the same sequence
of decisions (record, phase, target) and the same replica count at every minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from accord.agents.base import Situation
from accord.metrics.evidence import EvidenceSet
from accord.models.common import from_wire
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.table import Table
from accord.operator import approvals, observability
from accord.operator.gather import RoundQueries
from accord.operator.kube import Kube
from accord.operator.loop import Negotiator
from accord.operator.recorder import APPROVAL, APPROVER
from accord.operator.state import AgentEntry, OperatorConfig, State
from accord.operator.workloads import workload_view
from accord.sim.model import Past, ReplayModel, View, replay
from accord.sim.negotiated import APPROVER as REPLAY_APPROVER
from accord.sim.negotiated import Negotiated, default_documents, parse_documents
from accord.sim.trace import Trace
from providers import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
MODEL = ReplayModel(max_replicas=40)
START = 1_767_225_600.0  # 2026-01-01T00:00Z
# Calm, a surge to five times the demand, then a fall: scale-ups past the approval threshold, a
# change budget that runs out, and a pending decision approved three minutes later.
DEMAND = [300.0] * 8 + [1500.0] * 14 + [400.0] * 12
APPROVE_AFTER = 180.0


def documents() -> list[dict[str, Any]]:
    docs = default_documents(MODEL)
    policy = docs[-1]["spec"]
    policy["rules"] = {
        "requireApproval": {"placementChange": False, "stepReplicasAbove": 4},
        "budget": {"maxChangesPerHour": 4},
    }
    policy["approval"] = {"expirySeconds": 600, "approvers": [REPLAY_APPROVER]}
    policy["historyLimit"] = 100
    return docs


class Watching(Negotiated):
    """The replay's shell, remembering how many pods were ready at each minute (the pods' start-up
    is the replay model's; on the API server no kubelet makes them ready, so the test tells it)."""

    def __init__(self, **given: Any) -> None:
        super().__init__(**given)
        self.ready: list[int] = []

    def decide(self, view: View) -> int:
        self.ready.append(view.ready)
        return super().decide(view)


class TraceNegotiator(Negotiator):
    """The operator's shell, with evidence answered from the trace as the replay answers it."""

    def __init__(self, kube: Kube, state: State, twin: Negotiated) -> None:
        super().__init__(kube, state, observability.Health())
        self.twin = twin
        self.tick = 0

    async def evidence(
        self, situation: Situation, spec: NegotiationPolicySpec, table: Table, queries: RoundQueries | None = None
    ) -> tuple[dict[str, EvidenceSet], list[str]]:
        return self.twin.evidence(Past(tick=self.tick, start=START, demand=DEMAND)), []


def create(k8s: Any, namespace: str, plural: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    created: dict[str, Any] = client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "accord.dev", "v1alpha1", namespace, plural, body
    )
    return created


def test_the_operator_and_the_replay_decide_the_same_on_the_same_trace(cluster: Any, k8s: Any, namespace: str) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/negotiations.accord.dev", "--timeout=60s")
    docs = documents()
    policy_spec, agent_specs = parse_documents(docs, origin="test")
    trace = Trace(name="surge", start=START, demand=tuple(DEMAND), samples=len(DEMAND))

    # -- the replay ------------------------------------------------------------------------------
    replayed = Watching(
        policy=policy_spec, agents=agent_specs, model=MODEL, workload="web", approve_after=APPROVE_AFTER
    )
    run = replay(trace, replayed, MODEL)
    replay_records = [(r.name, r.phase.value, r.target.replicas) for r in replayed.decisions.records]
    assert replayed.approvals["Approved"] >= 1, replay_records  # the trace exercises an approval
    assert any(phase == "Held" for _, phase, _ in replay_records) or replayed.verdicts["Hold"] >= 1

    # -- the operator's shell, on the real API server ----------------------------------------------
    apps = client.AppsV1Api(k8s)
    initial = MODEL.initial(DEMAND[0])
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": initial,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
                },
            },
        },
    )
    for doc in docs[:-1]:
        create(k8s, namespace, "agents", doc)
    policy_name = docs[-1]["metadata"]["name"]
    policy_body = create(k8s, namespace, "negotiationpolicies", docs[-1])
    twin = Negotiated(policy=policy_spec, agents=agent_specs, model=MODEL, workload="web")
    operator_replicas = asyncio.run(
        operate(cluster.kubeconfig, k8s, namespace, policy_name, policy_body, docs, twin, replayed.ready)
    )
    custom = client.CustomObjectsApi(k8s)
    listed = custom.list_namespaced_custom_object("accord.dev", "v1alpha1", namespace, "negotiations")["items"]
    operator_records = sorted(
        (
            item["metadata"]["name"],
            item["status"]["phase"],
            item["spec"]["outcome"]["target"]["replicas"],
        )
        for item in listed
    )

    assert operator_replicas == list(run.requested)
    assert operator_records == sorted(replay_records)

    # A restarted operator rebuilds the same decision state from the records: the same records,
    # and the same changes counting against the budget.
    end = START + 60.0 * (len(DEMAND) - 1)
    restarted = State(config=OperatorConfig())
    for item in listed:
        approvals.track(restarted, item, now=end)
    rebuilt = restarted.decisions[f"Deployment/{namespace}/web"]
    assert [(r.name, r.phase, r.target) for r in rebuilt.records] == [
        (r.name, r.phase, r.target) for r in replayed.decisions.records
    ]
    assert rebuilt.history.changes == tuple(t for t in replayed.decisions.history.changes if t >= end - 3600)
    assert len(rebuilt.history.changes) >= 2


async def operate(
    kubeconfig: Path,
    k8s: Any,
    namespace: str,
    policy_name: str,
    policy_body: dict[str, Any],
    docs: list[dict[str, Any]],
    twin: Negotiated,
    ready: list[int],
) -> list[int]:
    """Every minute of the trace through the operator's round; the Deployment's count after each."""
    state = State(config=OperatorConfig())
    negotiator = TraceNegotiator(Kube.connect(str(kubeconfig)), state, twin)
    key = f"{namespace}/{policy_name}"
    state.policy_bodies[key] = policy_body
    for doc in docs[:-1]:
        name = doc["metadata"]["name"]
        state.agents[f"{namespace}/{name}"] = AgentEntry(
            namespace, name, from_wire_agent(doc), None, generation=1, observed_generation=1
        )
    apps = client.AppsV1Api(k8s)
    custom = client.CustomObjectsApi(k8s)
    replicas: list[int] = []
    try:
        for tick in range(len(DEMAND)):
            now = START + 60.0 * tick
            negotiator.tick = tick
            negotiator.clock = lambda now=now: now
            # A minute passes between two ticks: the Deployment controller has caught up with the last change
            # (else the operator would rightly hold a workload in the middle of a rollout).
            settled(apps, namespace)
            body = apps.read_namespaced_deployment("web", namespace)
            view = workload_view("Deployment", apps.api_client.sanitize_for_serialization(body))
            state.workloads[view.key] = view
            # What the replay does first at each minute: deadlines, then the person's approval.
            await negotiator.expire_pending(key)
            decisions = state.decisions.get(view.key)
            pending = None if decisions is None else decisions.pending
            if pending is not None and now - pending.created >= APPROVE_AFTER:
                annotated = custom.patch_namespaced_custom_object(
                    "accord.dev",
                    "v1alpha1",
                    namespace,
                    "negotiations",
                    pending.name,
                    {"metadata": {"annotations": {APPROVAL: "approved", APPROVER: REPLAY_APPROVER}}},
                )
                # The webhook would have stamped the approver from the request; here the admin did.
                await approvals.act_on_approval(negotiator, annotated, webhook=True)
            body = apps.read_namespaced_deployment("web", namespace)
            read = workload_view("Deployment", apps.api_client.sanitize_for_serialization(body))
            state.workloads[view.key] = replace(read, ready=ready[tick])
            await negotiator.round(namespace, policy_name, policy_body)
            replicas.append(int(apps.read_namespaced_deployment("web", namespace).spec.replicas))
    finally:
        if negotiator.session is not None:
            await negotiator.session.close()
    return replicas


def settled(apps: Any, namespace: str) -> None:
    def caught_up() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        status = d.status
        return bool(
            (status.observed_generation or 0) >= (d.metadata.generation or 0)
            and (status.updated_replicas or 0) == (d.spec.replicas or 0)
        )

    wait_until(caught_up, timeout=30, interval=0.1, message="the Deployment controller caught up")


def from_wire_agent(doc: Mapping[str, Any]) -> Any:
    from accord.models.agent import AgentSpec

    return from_wire(AgentSpec, doc["spec"])
