"""Accord in the replay: the operator's agents and engine deciding every tick (sim layer, pure).

The agents are built from Agent specs by `seat_agents`, as the operator builds them; each tick
the caller's side of the operator is played here: evidence is gathered for what every agent asks
(`evidence_needed`), answered from the trace the policy may see (demand up to tick t - 1, one
sample a minute, `Source.TRACE`), `negotiate` is called, and the outcome is stepped through the
operator's own decision lifecycle (`negotiation.lifecycle`): what it records, supersedes, expires,
counts against the budget and hands to the executor is exactly what the operator would; this
module is only the lifecycle's shell, whose executor sets the simulated workload's count. What a
replay cannot have stays absent, as a failed Prometheus query would: instant queries (prices,
latency, security signals) and external agents' answers. A decision that waits for a person is
approved by the person the replay plays, `approve_after` seconds after it was made (by default
nobody does, and it expires after the policy's `approval.expirySeconds`).
Trust is learned as the operator learns it (`negotiation.trust`: each prediction checked against
the demand seen once its horizon has passed), from `trust` (1 for every agent unless given).

`default_documents` is the one place the replay's default policy is written down; `accord
simulate --print-policy` prints it as YAML that `--policy` takes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from accord.agents.base import Candidate, Pool, QueryKind, Situation
from accord.agents.performance import UPPER_ALLOWANCE
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.agent import Agent, AgentSpec
from accord.models.errors import describe_validation_error
from accord.models.negotiation import Phase, WorkloadRef
from accord.models.policy import NegotiationPolicy, NegotiationPolicySpec
from accord.negotiation import lifecycle
from accord.negotiation.engine import negotiate
from accord.negotiation.table import seat_agents
from accord.negotiation.trust import PendingCheck, TrustState, open_checks, settle_checks
from accord.sim.model import Past, ReplayModel, View
from accord.sim.trace import TICK_SECONDS

DEFAULT_PLACEMENT = "default"
NAMESPACE = "replay"
APPROVER = "replay:approver"
# The Kubernetes HPA's default tolerance (its --horizontal-pod-autoscaler-tolerance), not a fit to any trace;
# the replay uses it both ways.
SCALE_DOWN_TOLERANCE = 0.1
SCALE_UP_TOLERANCE = 0.1


class PolicyFileError(ValueError):
    """The --policy file does not hold what a replay needs: the message says what is wrong."""


def default_documents(model: ReplayModel) -> list[dict[str, Any]]:
    """The replay's default policy as Agent and NegotiationPolicy manifests (wire form).

    The four built-in agents under a nash negotiation every 60 s, with their own defaults but for
    what the model tells the performance agent: the pods' capacity, their start-up time, and the
    SLO. The agent keeps the expected demand peak at its target utilisation and the upper bound of
    its forecast at most `UPPER_ALLOWANCE` above the target; the target is set so that this
    ceiling is the SLO utilisation (0.85 / 1.15 ≈ 0.74): the forecast's own misses, not a fixed
    reserve, decide the headroom. Bounds are the model's; a decision may add as many pods as the
    forecast asks for and remove a tenth of the largest count at a time. No stabilization: the
    forecast never expects less than the latest observation, so a fall is followed only once it is
    seen. A change of at most a tenth of the count is not made, either way (the HPA's own default
    tolerance, `scaleDownTolerance` and `scaleUpTolerance`): small dips and a demand hovering at the
    target do not churn the workload, and the observed-demand floor still asks for what the demand
    seen now needs at the SLO utilisation. The dwell time and the scale-up headroom are off
    (measured on slices of the bundled traces, each cut scaling actions only at a cost in pod-hours
    above hpa@0.7's). No approval gates: a replay has no people to approve.
    """
    step_down = max(1, model.max_replicas // 10)
    agents: list[dict[str, Any]] = [
        {
            "name": "performance",
            "spec": {
                "type": "performance",
                "performance": {
                    "capacityPerPod": model.capacity,
                    "startupSeconds": model.startup * 60,
                    "targetUtilisation": round(model.slo / (1.0 + UPPER_ALLOWANCE), 4),
                },
            },
        },
        {"name": "cost", "spec": {"type": "cost"}},
        {"name": "security", "spec": {"type": "security", "veto": True}},
        {"name": "compliance", "spec": {"type": "compliance", "veto": True}},
    ]
    documents: list[dict[str, Any]] = [
        {"apiVersion": "accord.dev/v1alpha1", "kind": "Agent", "metadata": {"name": a["name"]}, "spec": a["spec"]}
        for a in agents
    ]
    documents.append(
        {
            "apiVersion": "accord.dev/v1alpha1",
            "kind": "NegotiationPolicy",
            "metadata": {"name": "replay-default"},
            "spec": {
                "agents": [{"name": a["name"]} for a in agents],
                "protocol": "nash",
                "intervalSeconds": 60,
                "bounds": {
                    "minReplicas": model.min_replicas,
                    "maxReplicas": model.max_replicas,
                    "maxStepUp": max(1, model.max_replicas),
                    "maxStepDown": step_down,
                    "scaleDownStabilizationSeconds": 0,
                    "scaleDownTolerance": SCALE_DOWN_TOLERANCE,
                    "scaleUpTolerance": SCALE_UP_TOLERANCE,
                    "scaleDownDwellSeconds": 0,
                    "scaleUpHeadroom": 0.0,
                },
                "rules": {"requireApproval": {"placementChange": False}},
            },
        }
    )
    return documents


def parse_documents(documents: Sequence[Any], *, origin: str) -> tuple[NegotiationPolicySpec, dict[str, AgentSpec]]:
    """The one NegotiationPolicy and the Agents among manifests; anything else is ignored."""
    policies: list[NegotiationPolicySpec] = []
    agents: dict[str, AgentSpec] = {}
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") not in {"Agent", "NegotiationPolicy"}:
            continue
        name = str((document.get("metadata") or {}).get("name", "?"))
        try:
            if document["kind"] == "Agent":
                agents[name] = Agent.model_validate(document).spec
            else:
                policies.append(NegotiationPolicy.model_validate(document).spec)
        except ValidationError as exc:
            raise PolicyFileError(
                f"{origin}: {document['kind']}/{name} is invalid:\n{describe_validation_error(exc)}"
            ) from exc
    if len(policies) != 1:
        raise PolicyFileError(f"{origin}: expected one NegotiationPolicy, found {len(policies)}")
    policy = policies[0]
    missing = [p.name for p in policy.agents if p.name not in agents]
    if missing:
        raise PolicyFileError(f"{origin}: the policy names agents with no Agent document: {', '.join(missing)}")
    return policy, agents


def load_policy_file(path: Path) -> tuple[NegotiationPolicySpec, dict[str, AgentSpec]]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{path}: not YAML: {exc}") from exc
    return parse_documents(documents, origin=str(path))


def default_policy(model: ReplayModel) -> tuple[NegotiationPolicySpec, dict[str, AgentSpec]]:
    return parse_documents(default_documents(model), origin="the default replay policy")


def default_policy_yaml(model: ReplayModel) -> str:
    return yaml.safe_dump_all(default_documents(model), sort_keys=False)


class Negotiated:
    """A replay policy that negotiates every interval with the operator's agents and engine."""

    def __init__(
        self,
        *,
        policy: NegotiationPolicySpec,
        agents: Mapping[str, AgentSpec],
        model: ReplayModel,
        workload: str = "workload",
        name: str = "accord",
        trust: Mapping[str, float] | None = None,
        approve_after: float | None = None,
    ) -> None:
        table = seat_agents(policy, agents, trust=trust)
        if table.missing:
            raise PolicyFileError(f"no Agent named {', '.join(table.missing)}")
        self.name = name
        self.policy = policy
        self.model = model
        self.workload = workload
        self.seated = table.seated
        self.requests = {seat.name: agent.evidence_needed() for seat, agent in self.seated}
        self.every = max(1, round(policy.interval_seconds / TICK_SECONDS))
        self.placement = policy.placements[0].name if policy.placements else DEFAULT_PLACEMENT
        self.pools = {
            p.name: Pool(name=p.name, price_per_pod_hour=p.price_per_pod_hour, capacity_type=p.capacity_type)
            for p in policy.placements
        } or {DEFAULT_PLACEMENT: Pool(name=DEFAULT_PLACEMENT)}
        self.approve_after = approve_after
        # The person the replay plays is one of the policy's approvers.
        approvers = [*policy.approval.approvers, APPROVER]
        self.approving = policy.model_copy(
            update={"approval": policy.approval.model_copy(update={"approvers": approvers})}
        )
        self.decisions = lifecycle.Decisions()  # the same decision state the operator keeps per workload
        self.live = Candidate(0, self.placement)
        self.context = lifecycle.Context(
            policy=policy,
            policy_key=f"{NAMESPACE}/{name}",
            workload=WorkloadRef(kind="Deployment", namespace=NAMESPACE, name=workload),
        )
        self.verdicts: Counter[str] = Counter()
        self.approvals: Counter[str] = Counter()  # what became of decisions that waited for a person
        self.trust = {f"{NAMESPACE}/{seat.name}": TrustState(trust=seat.trust) for seat, _ in self.seated}
        self.checks: list[PendingCheck] = []
        self.query = f"trace:{workload}"
        self.ahead: dict[int, dict[str, EvidenceSet]] = {}  # evidence prepared for coming ticks

    def notes(self) -> dict[str, int]:
        return {f"verdict:{k}": v for k, v in sorted(self.verdicts.items())} | {
            f"approval:{k}": v for k, v in sorted(self.approvals.items())
        }

    def prepare(self, pasts: Sequence[Past]) -> None:
        """The evidence of the coming decision ticks, each from its own past, handed to the agents
        ahead (`Agent.prepare`): the performance agent forecasts them all at once. Each tick then
        uses exactly the evidence prepared for it."""
        due = [p for p in pasts if p.tick % self.every == 0 and p.tick not in self.ahead]
        for past in due:
            self.ahead[past.tick] = self.evidence(past)
        for seat, agent in self.seated:
            agent.prepare(
                [self.ahead[p.tick][seat.name] for p in due],
                [p.now for p in due],
                self.every * TICK_SECONDS,
            )

    def evidence(self, view: Past) -> dict[str, EvidenceSet]:
        """Each agent's evidence, answered from what the view shows: range queries are the demand trace."""
        found: dict[str, EvidenceSet] = {}
        now = view.now
        for seat, _ in self.seated:
            mine: dict[str, Evidence] = {}
            for request in self.requests[seat.name]:
                if request.kind is QueryKind.RANGE:
                    since = now - request.offset_seconds - request.window_seconds
                    until = min(now, now - request.offset_seconds + request.extend_seconds)
                    series = view.series(since, until)
                    mine[request.name] = Evidence.from_series(request.name, Source.TRACE, self.query, series)
                    if not series:
                        mine[request.name] = Evidence.absent(request.name, Source.TRACE, self.query, "before the trace")
                else:
                    mine[request.name] = Evidence.absent(
                        request.name, Source.TRACE, request.query, "a replay has only the demand trace"
                    )
            found[seat.name] = mine
        return found

    def decide(self, view: View) -> int:
        """One tick: the lifecycle's clock (expiry, the person the replay plays), then, every
        interval, a negotiation stepped through the same lifecycle as the operator's."""
        prepared = self.ahead.pop(view.tick, None)
        now = view.now
        self.live = Candidate(view.requested, self.placement)
        self.carry_out(lifecycle.expire(self.decisions, now=now), now)
        pending = self.decisions.pending
        if pending is not None and self.approve_after is not None and now - pending.created >= self.approve_after:
            approval = lifecycle.Approval(decision="approved", user=APPROVER, time=now)
            self.carry_out(
                lifecycle.approve(
                    self.decisions,
                    pending.name,
                    approval,
                    policy=self.approving,
                    workload=self.context.workload,
                    fingerprint=pending.fingerprint,
                    now=now,
                ),
                now,
            )
        if view.tick % self.every:
            return self.live.replicas
        self.decisions = lifecycle.seed(self.decisions, replicas=view.requested, policy=self.policy, now=now)
        situation = Situation(
            namespace=NAMESPACE,
            name=self.workload,
            kind="Deployment",
            labels={},
            current=self.live,
            ready_replicas=view.ready,
            pools=self.pools,
            now=now,
            interval_seconds=self.every * TICK_SECONDS,
        )
        evidence = prepared if prepared is not None else self.evidence(view)
        if settle_checks(self.checks, self.trust, workload_key=self.workload, evidence=evidence, now=now):
            self.seated = tuple(
                (replace(seat, trust=self.trust[f"{NAMESPACE}/{seat.name}"].trust), agent)
                for seat, agent in self.seated
            )
        outcome = negotiate(
            policy=self.policy,
            situation=situation,
            agents=self.seated,
            evidence=evidence,
            history=self.decisions.history,
        )
        agents = [s.name for s, _ in self.seated]
        open_checks(self.checks, agents, outcome.prediction, namespace=NAMESPACE, workload_key=self.workload, now=now)
        self.verdicts[outcome.verdict.value] += 1
        self.carry_out(lifecycle.decide(self.decisions, outcome, context=self.context, now=now), now)
        return self.live.replicas

    def carry_out(self, step: lifecycle.Step, now: float) -> None:
        """The replay's shell: records live in the state alone; a command acts on the simulated workload."""
        self.decisions = step.state
        for intent in step.intents:
            if isinstance(intent, lifecycle.SetPhase) and intent.phase in (Phase.APPROVED, Phase.EXPIRED):
                self.approvals[intent.phase.value] += 1
            elif isinstance(intent, lifecycle.Execute):
                command = intent.command
                live = lifecycle.Live(replicas=self.live.replicas, placement=self.live.placement)
                result: lifecycle.Result | None = lifecycle.revalidate(
                    command, live, policy=self.policy, state=self.decisions, now=now
                )
                if result is None:
                    self.live, self.placement = command.target, command.target.placement
                    result = lifecycle.Done(command.target.replicas, command.target.placement, "replay")
                self.carry_out(lifecycle.executed(self.decisions, command.record, result, now=now), now)
