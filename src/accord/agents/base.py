"""What every agent sees and returns (agents layer, pure: no I/O, no clock, no cluster access).

An agent declares the evidence it needs (`evidence_needed`); the caller fetches it and hands
it over with the `Situation`; the agent only computes a `Proposal`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Generic, NamedTuple, TypeVar

from accord.metrics.evidence import Evidence, EvidenceSet
from accord.models.agent import AgentType
from accord.models.common import Model


class Candidate(NamedTuple):
    """One possible outcome: a replica count on a pool.

    A named tuple: candidates key every utility map and are hashed and compared thousands of times
    per round, which a tuple does in C. Candidates order by replicas, then pool name.
    """

    replicas: int
    placement: str

    def __str__(self) -> str:
        return f"{self.replicas}@{self.placement}"


@dataclass(frozen=True, slots=True)
class Pool:
    """A placement option as the cluster shows it: the policy's pool plus what its Nodes carry."""

    name: str
    price_per_pod_hour: float | None = None
    capacity_type: str = "on-demand"
    node_labels: Mapping[str, str] = field(default_factory=dict)
    regions: frozenset[str] = frozenset()
    zones: frozenset[str] = frozenset()
    nodes: int = 0


@dataclass(frozen=True, slots=True)
class Situation:
    """What every agent may know about the workload under negotiation. `now` is unix seconds."""

    namespace: str
    name: str
    kind: str
    labels: Mapping[str, str]
    current: Candidate
    ready_replicas: int
    pools: Mapping[str, Pool]
    now: float
    interval_seconds: float = 30.0


class QueryKind(StrEnum):
    RANGE = "range"
    INSTANT = "instant"


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """Evidence an agent needs: the caller renders `query` ($namespace, $workload) and fetches it.

    A range request covers [now - window_seconds - offset_seconds, now - offset_seconds + extend_seconds].
    """

    name: str
    query: str
    kind: QueryKind = QueryKind.INSTANT
    window_seconds: float = 0.0
    offset_seconds: float = 0.0
    extend_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Prediction:
    """A checkable claim: `quantity` will be `value` over the next `horizon_seconds`."""

    quantity: str
    value: float
    horizon_seconds: float


@dataclass(frozen=True, slots=True)
class Proposal:
    """An agent's view of every candidate: a utility in [0, 1] or a veto with its reason."""

    agent: str
    agent_type: AgentType
    utilities: Mapping[Candidate, float]
    vetoes: Mapping[Candidate, str]
    ideal: Candidate | None
    confidence: float
    rationale: str
    evidence: tuple[Evidence, ...] = ()
    prediction: Prediction | None = None
    dropped: str | None = None
    metrics_missing: bool = False

    def utility(self, candidate: Candidate) -> float:
        return self.utilities.get(candidate, 0.0)


S = TypeVar("S", bound=Model)


class Agent(ABC, Generic[S]):
    """Base of the built-in agents: typed settings in, a pure `propose` out."""

    type: ClassVar[AgentType]

    def __init__(self, name: str, settings: S) -> None:
        self.name = name
        self.settings = settings

    def evidence_needed(self) -> tuple[EvidenceRequest, ...]:
        """The evidence the caller must gather before calling `propose`."""
        return ()

    def wishes(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, ...]:
        """Replica counts this agent wants among the candidates (before step limits)."""
        return ()

    @abstractmethod
    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        """Score every candidate. Pure: the same inputs give the same proposal."""

    def _proposal(
        self,
        *,
        utilities: Mapping[Candidate, float],
        vetoes: Mapping[Candidate, str],
        confidence: float,
        rationale: str,
        evidence: Sequence[Evidence] = (),
        current: Candidate | None = None,
        prediction: Prediction | None = None,
        metrics_missing: bool = False,
    ) -> Proposal:
        """Build a proposal, picking the ideal: best utility, then closest to the current candidate."""
        ideal = best_candidate(utilities, current)
        return Proposal(
            agent=self.name,
            agent_type=self.type,
            utilities=utilities,
            vetoes=vetoes,
            ideal=ideal,
            confidence=clamp(confidence),
            rationale=rationale,
            evidence=tuple(evidence),
            prediction=prediction,
            metrics_missing=metrics_missing,
        )


def best_candidate(utilities: Mapping[Candidate, float], current: Candidate | None) -> Candidate | None:
    """The candidate of highest utility; among equals, on the current pool, closest to it, then fewer replicas."""
    if not utilities:
        return None
    best = max(utilities.values())
    if math.isnan(best):
        top = list(utilities)  # NaN compares unequal to itself: fall back to the full key over all candidates
    else:
        if current is not None and utilities.get(current) == best:
            return current  # on its own pool and no change at all: nothing among equals beats it
        # Only the candidates of the best utility can win; among them the utility no longer decides.
        top = [c for c, u in utilities.items() if u == best]
        if len(top) == 1:
            return top[0]
        if current is None:
            return max(top, key=lambda c: -c.replicas)
        pool, replicas = current.placement, current.replicas
        return max(top, key=lambda c: (c.placement == pool, -abs(c.replicas - replicas), -c.replicas))

    def key(c: Candidate) -> tuple[float, int, int, int]:
        if current is None:
            return (utilities[c], 0, 0, -c.replicas)
        return (
            utilities[c],
            int(c.placement == current.placement),
            -abs(c.replicas - current.replicas),
            -c.replicas,
        )

    return max(top, key=key)


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    if math.isnan(value):
        return low
    return min(high, max(low, value))


def freshness(age: float | None, stale_after: float) -> float:
    """1 for fresh evidence, falling linearly to 0 at `stale_after` seconds; 0 when there is none."""
    if age is None:
        return 0.0
    fresh_for = stale_after / 3.0
    if age <= fresh_for:
        return 1.0
    return clamp(1.0 - (age - fresh_for) / (stale_after - fresh_for))
