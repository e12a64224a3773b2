"""Agreement protocols (negotiation layer, pure).

Each protocol picks one candidate from the feasible set (vetoes already removed), given each
voting agent's utilities and effective weight (weight times trust). Ties are always broken the
same way: the larger sum of utilities, staying on the current pool, the smaller change, fewer
replicas. With identical agents every protocol therefore picks the same candidate.

Protocols run over a whole board of workloads at once (`agree_board`, on arrays); `agree` is the
same for one workload's candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from accord.agents.base import Board, Candidate, Flags, Floats, Ints, top
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


@dataclass(frozen=True, slots=True)
class Ballot:
    """Every voter's say on every row of a board, voters in their order at the table.

    `votes[k, i]` says whether voter k has a say on row i (an agent whose proposal was dropped has
    none); `utilities[k, i, j]` is 0 where the voter gives no utility.
    """

    names: tuple[str, ...]
    tiers: tuple[int, ...]
    weights: Floats  # (voter, row)
    votes: Flags  # (voter, row)
    utilities: Floats  # (voter, row, column)

    @classmethod
    def of_voters(cls, board: Board, voters: Sequence[Voter]) -> Ballot:
        """The voters of a one-row board."""
        candidates = board.candidates(0)
        return cls(
            names=tuple(v.name for v in voters),
            tiers=tuple(v.tier for v in voters),
            weights=np.array([[v.weight] for v in voters], dtype=np.float64).reshape(len(voters), 1),
            votes=np.ones((len(voters), 1), dtype=np.bool_),
            utilities=np.array(
                [[[v.u(c) for c in candidates] + [0.0] * (board.replicas.shape[1] - len(candidates))] for v in voters],
                dtype=np.float64,
            ).reshape(len(voters), 1, board.replicas.shape[1]),
        )

    def weighted_sum(self, voters: Sequence[int] | None = None) -> Floats:
        """Sum of weight times utility over the voters with a say."""
        chosen = slice(None) if voters is None else list(voters)
        with np.errstate(invalid="ignore"):  # a weight of 0 times a custom agent's inf: NaN, counted as lowest
            terms = self.weights[chosen][:, :, None] * self.utilities[chosen]
        return self.over_voters(terms, chosen)

    def totals(self) -> Floats:
        """Sum of utilities over the voters with a say (the first tie-break)."""
        return self.over_voters(self.utilities)

    def over_voters(self, terms: Floats, voters: slice | list[int] = slice(None)) -> Floats:
        """Per-voter terms (voter, row, column) summed over the voters with a say on each row, added
        voter by voter in their order (NumPy adds along the first axis one slice after another)."""
        if not len(terms):
            return np.zeros(self.utilities.shape[1:])
        summed: Floats = np.where(self.votes[voters][:, :, None], terms, 0.0).sum(axis=0)
        return summed

    def voter(self, k: int, board: Board, row: int, allowed: Flags) -> Voter:
        """Voter k on one row, its utilities over the allowed cells as a mapping."""
        columns = np.flatnonzero(allowed[row]).tolist()
        candidates = board.candidates(row)
        values = self.utilities[k, row]
        return Voter(
            self.names[k],
            float(self.weights[k, row]),
            self.tiers[k],
            {candidates[j]: float(values[j]) for j in columns},
        )


@dataclass(frozen=True, slots=True)
class Agreements:
    """The agreed column of every row, with each row's concession rounds and note."""

    columns: Ints
    rounds: Sequence[tuple[Round, ...]]
    notes: Sequence[str]

    def agreement(self, board: Board, row: int) -> Agreement:
        return Agreement(board.candidates(row)[int(self.columns[row])], tuple(self.rounds[row]), self.notes[row])


def pick(board: Board, allowed: Flags, ballot: Ballot, scores: Floats) -> Ints:
    """Each row's allowed column of highest (score, sum of utilities, then `Board.first_by_tiebreak`)."""
    return board.first_by_tiebreak(top(ballot.totals(), top(scores, allowed)))


def nash_scores(ballot: Ballot) -> Floats:
    """The log of the weighted product of the agents' utilities (Nash bargaining, disagreement at 0).

    The disagreement point is utility 0 for everyone, not the status quo: with the status quo,
    any agent that prefers inaction (cost, against a needed scale-up) could block every change.
    Nor is it each agent's worst feasible utility: that would blow a mild preference (security's
    small wish to stay on its pool) up to a veto-like say. Utilities are on the agents' own
    [0, 1] scale, so a mild preference stays mild. Logs keep the product stable; NASH_EPSILON
    keeps a zero utility finite.
    """
    return ballot.over_voters(ballot.weights[:, :, None] * np.log(np.maximum(ballot.utilities, 0.0) + NASH_EPSILON))


def lexicographic(board: Board, feasible: Flags, ballot: Ballot, *, tolerance: float) -> tuple[Ints, list[str]]:
    """Tier by tier, keep the candidates within `tolerance` of the tier's best weighted-mean utility."""
    remaining = feasible.copy()
    notes: list[list[str]] = [[] for _ in range(len(board))]
    for tier in sorted(set(ballot.tiers)):
        members = [k for k, t in enumerate(ballot.tiers) if t == tier]
        total = np.where(ballot.votes[members], ballot.weights[members], 0.0).sum(axis=0)
        active = total > 0
        score = ballot.weighted_sum(members) / np.where(active, total, 1.0)[:, None]
        score = np.where(np.isnan(score), -np.inf, score)
        masked = np.where(remaining, score, -np.inf)
        best = masked.max(axis=1, initial=-np.inf)
        remaining = np.where(active[:, None], remaining & (score >= best[:, None] - tolerance - 1e-12), remaining)
        kept = remaining.sum(axis=1)
        for row in np.flatnonzero(active).tolist():
            names = ", ".join(ballot.names[k] for k in members if ballot.votes[k, row])
            notes[row].append(f"tier {tier} ({names}) kept {int(kept[row])}")
    return pick(board, remaining, ballot, ballot.weighted_sum()), ["; ".join(n) for n in notes]


def agree_board(
    protocol: Protocol, board: Board, feasible: Flags, ballot: Ballot, *, tolerance: float = 0.05
) -> Agreements:
    """The agreement on every row with a feasible candidate (-1 on the others)."""
    count = len(board)
    rounds: list[tuple[Round, ...]] = [()] * count
    notes = [""] * count
    anyone = ballot.votes.any(axis=0) if len(ballot.names) else np.zeros(count, dtype=np.bool_)
    if protocol is Protocol.NASH:
        columns = pick(board, feasible, ballot, nash_scores(ballot))
    elif protocol is Protocol.WEIGHTED:
        columns = pick(board, feasible, ballot, ballot.weighted_sum())
    elif protocol is Protocol.LEXICOGRAPHIC:
        columns, notes = lexicographic(board, feasible, ballot, tolerance=tolerance)
    else:
        columns = np.full(count, -1, dtype=np.int64)
        for row in np.flatnonzero(anyone & feasible.any(axis=1)).tolist():
            voters = [ballot.voter(k, board, row, feasible) for k in range(len(ballot.names)) if ballot.votes[k, row]]
            feasible_row = [c for c, ok in zip(board.candidates(row), feasible[row].tolist(), strict=False) if ok]
            found = concession(feasible_row, voters, _current(board, row))
            column = board.column(row, found.candidate)
            assert column is not None  # the agreement is one of the row's candidates
            columns[row] = column
            rounds[row], notes[row] = found.rounds, found.note
    silent = ~anyone
    if silent.any():
        # No agent with a say: stay if the current candidate is feasible, else the nearest feasible.
        stay = board.best(np.zeros(board.replicas.shape), feasible)
        columns = np.where(silent, stay, columns)
        for row in np.flatnonzero(silent).tolist():
            notes[row] = "no agent with a say: nothing to agree"
    return Agreements(columns, rounds, notes)


def _current(board: Board, row: int) -> Candidate:
    return Candidate(int(board.current_replicas[row]), board.pools[int(board.current_pool[row])])


def agree(
    protocol: Protocol,
    feasible: Sequence[Candidate],
    voters: Sequence[Voter],
    current: Candidate,
    *,
    tolerance: float = 0.05,
) -> Agreement:
    """The agreement on one workload's feasible candidates."""
    board = Board.of([feasible], [current])
    found = agree_board(protocol, board, board.valid, Ballot.of_voters(board, voters), tolerance=tolerance)
    return found.agreement(board, 0)


def nash(feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate) -> Agreement:
    return agree(Protocol.NASH, feasible, voters, current)


def weighted(feasible: Sequence[Candidate], voters: Sequence[Voter], current: Candidate) -> Agreement:
    return agree(Protocol.WEIGHTED, feasible, voters, current)


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
            chosen = weighted(acceptable, voters, current).candidate
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


def tiebreak(candidate: Candidate, voters: Sequence[Voter], current: Candidate) -> tuple[float, int, int, int]:
    return (
        sum(v.u(candidate) for v in voters),
        int(candidate.placement == current.placement),
        -abs(candidate.replicas - current.replicas),
        -candidate.replicas,
    )


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
