"""Test doubles for the engine's pure-logic tests: agents whose scores are given, not computed."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from accord.agents.base import Agent, Candidate, Proposal, Situation
from accord.metrics.evidence import EvidenceSet
from accord.models.agent import AgentType
from accord.models.common import Model
from accord.negotiation.engine import Seat

Scorer = Callable[[Candidate], float]


class ScriptedAgent(Agent[Model]):
    """Scores candidates with a given function and vetoes those a given predicate picks."""

    type = AgentType.EXTERNAL

    def __init__(
        self,
        name: str,
        score: Scorer,
        *,
        veto: Callable[[Candidate], bool] = lambda c: False,
        confidence: float = 1.0,
        missing: bool = False,
        wishes: Sequence[int] = (),
    ) -> None:
        super().__init__(name, Model())
        self.score, self.veto, self.confidence, self.missing, self._wishes = score, veto, confidence, missing, wishes

    def wishes(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, ...]:
        return tuple(self._wishes)

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        vetoes = {c: f"{self.name} says no" for c in candidates if self.veto(c)}
        utilities = {c: self.score(c) for c in candidates if c not in vetoes}
        return self._proposal(
            utilities=utilities,
            vetoes=vetoes,
            confidence=self.confidence,
            rationale=f"{self.name} scripted",
            current=situation.current,
            metrics_missing=self.missing,
        )


def random_scorer(seed: int) -> Scorer:
    def score(c: Candidate) -> float:
        return random.Random(f"{seed}/{c.replicas}/{c.placement}").random()

    return score


def random_veto(seed: int, rate: float) -> Callable[[Candidate], bool]:
    def veto(c: Candidate) -> bool:
        return random.Random(f"veto/{seed}/{c.replicas}/{c.placement}").random() < rate

    return veto


def seated(*agents: ScriptedAgent, weights: Sequence[float] = (), veto: bool = True) -> list[tuple[Seat, Agent[Model]]]:
    out: list[tuple[Seat, Agent[Model]]] = []
    for i, agent in enumerate(agents):
        weight = weights[i] if i < len(weights) else 1.0
        out.append((Seat(agent.name, weight=weight, tier=i, may_veto=veto), agent))
    return out
