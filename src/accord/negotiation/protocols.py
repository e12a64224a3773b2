"""Agreement protocols (negotiation layer, pure).

Each protocol picks one candidate from the feasible set (vetoes already removed), given each
voting agent's utilities and effective weight (weight times trust). Ties are always broken the
same way: the larger sum of utilities, staying on the current pool, the smaller change, fewer
replicas. With identical agents every protocol therefore picks the same candidate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from accord.agents.base import Candidate
from accord.models.policy import Protocol

NASH_EPSILON = 0.01


@dataclass(frozen=True, slots=True)
class Voter:
    """An agent's say in the agreement: its utilities over the feasible set and its effective weight."""

    name: str
    weight: float
    tier: int
    utilities: Mapping[Candidate, float]

    def u(self, candidate: Candidate) -> float:
        return self.utilities.get(candidate, 0.0)


@dataclass(frozen=True, slots=True)
class Offer:
    agent: str
    candidate: Candidate
    utility: float


@dataclass(frozen=True, slots=True)
class Round:
    number: int
    offers: tuple[Offer, ...]
    conceded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Agreement:
    candidate: Candidate
    rounds: tuple[Round, ...] = ()
    note: str = ""


def tiebreak(candidate: Candidate, voters: Sequence[Voter], current: Candidate) -> tuple[float, int, int, int]:
    return (
        sum(v.u(candidate) for v in voters),
        int(candidate.placement == current.placement),
        -abs(candidate.replicas - current.replicas),
        -candidate.replicas,
    )


def _argmax(
    feasible: Sequence[Candidate],
    voters: Sequence[Voter],
    current: Candidate,
    score: Callable[[Candidate], float],
) -> Candidate:
    """The first candidate of highest (score, *tiebreak), as `max` over `feasible` with that key."""
    return _pick(feasible, _rows(feasible, voters), current, [score(c) for c in feasible])


def _rows(feasible: Sequence[Candidate], voters: Sequence[Voter]) -> list[list[float]]:
    """Each voter's utility of each feasible candidate, looked up once for every score that needs it."""
    return [[v.utilities.get(c, 0.0) for c in feasible] for v in voters]


def _pick(
    feasible: Sequence[Candidate], rows: Sequence[Sequence[float]], current: Candidate, scores: Sequence[float]
) -> Candidate:
    """`_argmax` over precomputed scores: the key is built from plain lists, as this is the inner loop
    of every round."""
    n = len(feasible)
    # Summed voter by voter, in voter order: the same floating-point sum as `tiebreak`'s.
    totals = [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * n
    pool, replicas = current.placement, current.replicas
    keys = [
        (scores[j], totals[j], int(c.placement == pool), -abs(c.replicas - replicas), -c.replicas)
        for j, c in enumerate(feasible)
    ]
    return feasible[max(range(n), key=keys.__getitem__)]


def nash(feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate) -> Agreement:
    """Maximise the weighted product of the agents' utilities (Nash bargaining, disagreement at 0).

    The disagreement point is utility 0 for everyone, not the status quo: with the status quo,
    any agent that prefers inaction (cost, against a needed scale-up) could block every change.
    Nor is it each agent's worst feasible utility: that would blow a mild preference (security's
    small wish to stay on its pool) up to a veto-like say. Utilities are on the agents' own
    [0, 1] scale, so a mild preference stays mild. Logs keep the product stable; NASH_EPSILON
    keeps a zero utility finite.
    """

    rows = _rows(feasible, voters)
    log = math.log
    # Per voter, then summed over voters in voter order: the same floating-point sum as a sum per candidate.
    terms = [[v.weight * log(u + NASH_EPSILON) for u in row] for v, row in zip(voters, rows, strict=True)]
    scores = [sum(column) for column in zip(*terms, strict=True)] if terms else [0] * len(feasible)
    return Agreement(_pick(feasible, rows, current, scores))


def weighted(feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate) -> Agreement:
    return Agreement(_argmax(feasible, voters, current, lambda c: sum(v.weight * v.u(c) for v in voters)))


def lexicographic(
    feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate, *, tolerance: float
) -> Agreement:
    """Tier by tier, keep the candidates within `tolerance` of the tier's best weighted-mean utility."""
    remaining = list(feasible)
    notes = []
    for tier in sorted({v.tier for v in voters}):
        members = [v for v in voters if v.tier == tier]
        total = sum(v.weight for v in members)
        if total <= 0:
            continue

        def score(c: Candidate, members: Sequence[Voter] = members, total: float = total) -> float:
            return sum(v.weight * v.u(c) for v in members) / total

        best = max(score(c) for c in remaining)
        remaining = [c for c in remaining if score(c) >= best - tolerance - 1e-12]
        notes.append(f"tier {tier} ({', '.join(v.name for v in members)}) kept {len(remaining)}")
    chosen = _argmax(remaining, voters, current, lambda c: sum(v.weight * v.u(c) for v in voters))
    return Agreement(chosen, note="; ".join(notes))


def concession(
    feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate, *, max_rounds: int = 500
) -> Agreement:
    """The monotonic concession protocol with Zeuthen's rule, for any number of agents.

    Every agent opens with its ideal. While no offer is at least as good for everyone as their own
    offer, the agent least willing to risk conflict concedes: risk_i = (u_i(own) - min_j u_i(offer_j))
    / u_i(own), scaled by its weight so that agents with more say concede less. A concession moves to
    the agent's next-preferred candidate that gives the others more. Each round is recorded.
    """
    active = [v for v in voters if v.weight > 0]
    if not active:
        return weighted(feasible, voters, current)
    orders = {v.name: _preference(v, feasible, voters, current) for v in active}
    position = {v.name: 0 for v in active}
    rounds: list[Round] = []
    for number in range(max_rounds):
        offers = {v.name: orders[v.name][position[v.name]] for v in active}
        record = tuple(Offer(v.name, offers[v.name], v.u(offers[v.name])) for v in active)
        acceptable = [
            offer
            for offer in dict.fromkeys(offers.values())
            if all(v.u(offer) >= v.u(offers[v.name]) - 1e-12 for v in active)
        ]
        if acceptable:
            rounds.append(Round(number, record))
            chosen = _argmax(acceptable, voters, current, lambda c: sum(v.weight * v.u(c) for v in voters))
            return Agreement(chosen, tuple(rounds), note=f"agreed in round {number}")
        risks = {v.name: _risk(v, offers) * v.weight for v in active}
        lowest = min(risks.values())
        conceders = [v for v in active if risks[v.name] <= lowest + 1e-12]
        moved = []
        for v in conceders:
            nxt = _next_concession(v, orders[v.name], position[v.name], offers, active)
            if nxt is not None:
                position[v.name] = nxt
                moved.append(v.name)
        if not moved:
            # The least willing cannot concede: let anyone who still can.
            for v in sorted(active, key=lambda v: risks[v.name]):
                nxt = _next_concession(v, orders[v.name], position[v.name], offers, active)
                if nxt is not None:
                    position[v.name] = nxt
                    moved.append(v.name)
                    break
        rounds.append(Round(number, record, tuple(moved)))
        if not moved:
            break
    final = [orders[v.name][position[v.name]] for v in active]
    fallback = nash(list(dict.fromkeys(final)), voters, current)
    return Agreement(fallback.candidate, tuple(rounds), note="no offer acceptable to all: Nash over the last offers")


def _preference(
    voter: Voter, feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate
) -> list[Candidate]:
    return sorted(feasible, key=lambda c: (voter.u(c), *tiebreak(c, voters, current)), reverse=True)


def _risk(voter: Voter, offers: Mapping[str, Candidate]) -> float:
    own = voter.u(offers[voter.name])
    if own <= 0:
        return 1.0
    worst = min(voter.u(c) for c in offers.values())
    return (own - worst) / own


def _next_concession(
    voter: Voter,
    order: Sequence[Candidate],
    position: int,
    offers: Mapping[str, Candidate],
    active: Sequence[Voter],
) -> int | None:
    others = [o for o in active if o.name != voter.name]
    current_offer = order[position]
    baseline = sum(o.weight * o.u(current_offer) for o in others)
    for index in range(position + 1, len(order)):
        if sum(o.weight * o.u(order[index]) for o in others) > baseline + 1e-12:
            return index
    return None


def agree(
    protocol: Protocol,
    feasible: Sequence[Candidate],
    voters: Sequence[Voter],
    current: Candidate,
    *,
    tolerance: float = 0.05,
) -> Agreement:
    if not voters:
        stay = current if current in feasible else _argmax(feasible, voters, current, lambda c: 0.0)
        return Agreement(stay, note="no agent with a say: nothing to agree")
    if protocol is Protocol.NASH:
        return nash(feasible, voters, current)
    if protocol is Protocol.WEIGHTED:
        return weighted(feasible, voters, current)
    if protocol is Protocol.LEXICOGRAPHIC:
        return lexicographic(feasible, voters, current, tolerance=tolerance)
    return concession(feasible, voters, current)
