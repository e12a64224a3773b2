"""The negotiation engine: proposals in, one typed outcome out (negotiation layer, pure).

`negotiate` takes the policy, the workload's situation, the seated agents with the evidence
the caller gathered for each, and the workload's history; it returns an `Outcome` that says what
to do (or, explicitly, nothing), why, what each agent proposed and conceded, and whether a
person must approve. It does no I/O and reads no clock: `situation.now` is the time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from accord.agents.base import Agent, Candidate, Proposal, Situation
from accord.metrics.evidence import EvidenceSet
from accord.models.common import Model
from accord.models.negotiation import Verdict
from accord.models.policy import NegotiationPolicySpec, Protocol
from accord.negotiation import candidates as candidates_mod
from accord.negotiation.protocols import Round, Voter, agree
from accord.negotiation.rules import (
    Gate,
    History,
    gates_for_change,
    missing_metrics_target,
    nearest,
    over_budget,
    stabilize,
)
from accord.negotiation.trust import influence

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Seat:
    """An agent's place at the table: its weight for this policy, tier, veto right and trust."""

    name: str
    weight: float = 1.0
    tier: int = 0
    may_veto: bool = False
    trust: float = 1.0

    @property
    def effective_weight(self) -> float:
        """The weight, moved by trust but never below half of it (`trust.influence`)."""
        return self.weight * influence(self.trust)


@dataclass(frozen=True, slots=True)
class Concession:
    agent: str
    ideal_utility: float
    agreed_utility: float | None

    @property
    def given(self) -> float | None:
        return None if self.agreed_utility is None else self.ideal_utility - self.agreed_utility


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    current: Candidate
    target: Candidate
    agreed: Candidate | None
    protocol: Protocol
    reason: str
    confidence: float
    candidates: tuple[Candidate, ...]
    proposals: tuple[Proposal, ...]
    seats: tuple[Seat, ...]
    rounds: tuple[Round, ...] = ()
    concessions: tuple[Concession, ...] = ()
    gates: tuple[Gate, ...] = ()
    feasible: tuple[Candidate, ...] = ()
    recommendation: int | None = None
    vetoed: Mapping[Candidate, str] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return self.target != self.current

    @property
    def enforceable(self) -> bool:
        """True when the executor may apply the target without a person."""
        return self.verdict is Verdict.APPLY


def negotiate(
    *,
    policy: NegotiationPolicySpec,
    situation: Situation,
    agents: Sequence[tuple[Seat, Agent[Model]]],
    evidence: Mapping[str, EvidenceSet],
    history: History | None = None,
    proposals: Mapping[str, Proposal] | None = None,
) -> Outcome:
    """One round of negotiation for one workload.

    `proposals` lets a caller supply proposals it obtained elsewhere (an external agent judged by
    its own module); any agent without one is asked here.
    """
    history = history or History()
    current = situation.current
    wishes = [w for seat, agent in agents for w in agent.wishes(situation, evidence.get(seat.name, {}))]
    all_candidates = candidates_mod.generate(
        bounds=policy.bounds,
        current=current,
        placements=[p.name for p in policy.placements],
        wishes=wishes,
    )
    budget_vetoes = (
        {c: "over the policy's budget" for c in all_candidates if over_budget(c, policy.rules, situation.pools)}
        if policy.rules.budget.max_cost_per_hour is not None
        else {}
    )
    given = proposals or {}
    made = tuple(
        given.get(seat.name) or agent.propose(situation, all_candidates, evidence.get(seat.name, {}))
        for seat, agent in agents
    )
    seats = tuple(seat for seat, _ in agents)
    vetoed: dict[Candidate, str] = dict(budget_vetoes)
    for seat, proposal in zip(seats, made, strict=True):
        if proposal.dropped is None and seat.may_veto:
            for c, why in proposal.vetoes.items():
                vetoed.setdefault(c, f"{seat.name}: {why}")
    feasible = tuple(c for c in all_candidates if c not in vetoed)
    make = partial(
        Outcome,
        current=current,
        protocol=policy.protocol,
        candidates=all_candidates,
        proposals=made,
        seats=seats,
        feasible=feasible,
        vetoed=vetoed,
    )
    voting = [(s, p) for s, p in zip(seats, made, strict=True) if p.dropped is None]
    confidence = _confidence(voting)
    if not feasible:
        return make(
            verdict=Verdict.IMPASSE,
            target=current,
            agreed=None,
            reason=f"every one of {len(all_candidates)} candidates is vetoed; a person must resolve it",
            confidence=confidence,
        )
    voters = [Voter(s.name, s.effective_weight, s.tier, p.utilities) for s, p in voting]
    agreement = agree(policy.protocol, feasible, voters, current, tolerance=policy.lexicographic_tolerance)
    agreed = agreement.candidate
    gates: list[Gate] = []
    missing = [p.agent for _, p in voting if p.metrics_missing]
    if missing:
        replicas, gate = missing_metrics_target(policy.rules.missing_metrics, current.replicas)
        gates.append(gate)
        target = nearest(feasible, replicas, current.placement)
    else:
        replicas, cap = stabilize(
            agreed=agreed.replicas,
            current=current.replicas,
            now=situation.now,
            bounds=policy.bounds,
            history=history,
        )
        if cap is not None:
            gates.append(cap)
        target = nearest(feasible, replicas, agreed.placement)
    concessions = tuple(
        Concession(
            agent=s.name,
            ideal_utility=max([p.utilities.get(c, 0.0) for c in feasible]),
            agreed_utility=p.utility(target),
        )
        for s, p in voting
    )
    if target != current:
        gates.extend(
            gates_for_change(
                rules=policy.rules,
                current=current,
                target=target,
                now=situation.now,
                confidence=confidence,
                history=history,
                pools=situation.pools,
                concessions={c.agent: c.given or 0.0 for c in concessions},
            )
        )
    verdict, final, reason = _verdict(current, target, gates, agreement.note)
    outcome = make(
        verdict=verdict,
        target=final,
        agreed=agreed,
        reason=reason,
        confidence=confidence,
        rounds=agreement.rounds,
        concessions=concessions,
        gates=tuple(gates),
        recommendation=None if missing else agreed.replicas,
    )
    log.debug(
        "negotiated %s/%s: %s %s -> %s (%s)",
        situation.namespace,
        situation.name,
        verdict.value,
        current,
        final,
        reason,
    )
    return outcome


def _confidence(voting: Sequence[tuple[Seat, Proposal]]) -> float:
    """Trust-weighted geometric mean of the agents' confidences.

    Geometric, not arithmetic: one heavily weighted agent that is unsure (the performance agent on
    its first sample) must be able to hold a decision that three sure but indifferent agents would
    otherwise carry. Agents whose metrics are missing are handled by the missing-metrics rule.
    """
    counted = [(s.effective_weight, p.confidence) for s, p in voting if not p.metrics_missing]
    total = sum(w for w, _ in counted)
    if total <= 0:
        return 1.0 if not counted else 0.0
    if any(c <= 0 and w > 0 for w, c in counted):
        return 0.0
    return math.exp(sum(w * math.log(c) for w, c in counted if w > 0) / total)


def _verdict(current: Candidate, target: Candidate, gates: Sequence[Gate], note: str) -> tuple[Verdict, Candidate, str]:
    holds = [g for g in gates if g.effect == "hold"]
    approvals = [g for g in gates if g.effect == "approval"]
    caps = [g for g in gates if g.effect == "cap"]
    if target == current:
        why = caps[0].message if caps else (holds[0].message if holds else "the agreement is the current state")
        return Verdict.NO_CHANGE, current, why
    if holds:
        return Verdict.HOLD, current, f"{current} -> {target} held: " + "; ".join(g.message for g in holds)
    if approvals:
        return (
            Verdict.PENDING_APPROVAL,
            target,
            f"{current} -> {target} needs approval: " + "; ".join(g.message for g in approvals),
        )
    detail = "; ".join(g.message for g in caps) or note or "agreed"
    return Verdict.APPLY, target, f"{current} -> {target}: {detail}"
