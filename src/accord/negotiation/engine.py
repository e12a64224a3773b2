"""The negotiation engine: proposals in, one typed outcome out (negotiation layer, pure).

`negotiate_many` takes the policy, the seated agents, and many workloads (each with its situation,
the evidence the caller gathered for each agent, and its history); it returns an `Outcome` per
workload that says what to do (or, explicitly, nothing), why, what each agent proposed and
conceded, and whether a person must approve. `negotiate` is the same for one workload. It does no
I/O and reads no clock: `situation.now` is the time. The work is done on arrays over all the
workloads at once; only the policy's rules run per workload.

What an agent observes now (the performance agent: the pods the latest demand needs at the SLO
utilisation, `Scores.floor`) is a floor no protocol, weight or trust can negotiate away: no
decision goes below it, or below the current count when that is lower (a scale-up may still be
held back by the step limit or a rule, never turned into a scale-down). Only when every candidate
at or above it is vetoed (a budget, a compliance rule) does a decision go below, as little as the
vetoes allow, with the reason recorded as an `observedDemandFloor` gate that needs a person's
approval.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from accord.agents.base import (
    INT_MIN,
    Agent,
    Board,
    Candidate,
    Flags,
    Floats,
    Ints,
    Pool,
    Prediction,
    Proposal,
    Scores,
    Situation,
    first,
    top,
)
from accord.metrics.evidence import EvidenceSet
from accord.models.common import Model
from accord.models.negotiation import Verdict
from accord.models.policy import NegotiationPolicySpec, Protocol
from accord.negotiation import candidates as candidates_mod
from accord.negotiation.protocols import Agreements, Ballot, Round, agree_board
from accord.negotiation.rules import (
    Gate,
    History,
    gates_for_change,
    headroom,
    missing_metrics_target,
    stabilize,
)
from accord.negotiation.trust import influence

log = logging.getLogger(__name__)

# Workloads negotiated together: enough that array work outweighs the per-call overhead, few enough
# that a round's arrays stay in the processor's caches and its memory small.
BATCH = 1024


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
class Stance:
    """An agent's position on one workload in brief: its ideal, its confidence, what the target is worth to it."""

    agent: str
    ideal: Candidate | None
    confidence: float
    target_utility: float


@dataclass(frozen=True, slots=True)
class Case:
    """One workload to negotiate: its situation, the evidence gathered for each agent, its history."""

    situation: Situation
    evidence: Mapping[str, EvidenceSet]
    history: History = field(default_factory=History)


@dataclass(frozen=True, slots=True)
class _Round:
    """A negotiation over many workloads, as arrays: what an `Outcome` reads its details from."""

    board: Board
    seats: tuple[Seat, ...]
    agents: tuple[Agent[Model], ...]
    scores: tuple[Scores, ...]
    over_budget: Flags
    no_room: Flags  # moves to a pool whose nodes cannot take the candidate's pods now
    feasible: Flags
    voting: Flags  # (seat, row)
    agreements: Agreements
    ideal_utility: Floats  # (seat, row): the best utility among the feasible candidates
    agreed_utility: Floats  # (seat, row): the utility of the target
    room_why: tuple[Mapping[str, str], ...]  # per row, each pool's room figures where they are known
    proposals: dict[int, tuple[Proposal, ...]] = field(default_factory=dict)
    ideals: list[Ints] = field(default_factory=list)  # each seat's ideal column per row, once asked for

    def ideal(self, seat: int, row: int) -> int:
        if not self.ideals:
            self.ideals.extend(s.ideals(self.board) for s in self.scores)
        return int(self.ideals[seat][row])


class Outcome:
    """One workload's decision: what to do (or, explicitly, nothing), why, and whether a person must
    approve; and, read on demand, every candidate, what each agent proposed and conceded. `floor` is
    the fewest replicas the demand observed now needs, within the bounds and step limits (None
    without fresh evidence of it)."""

    __slots__ = (
        "_round",
        "_row",
        "agreed",
        "confidence",
        "current",
        "floor",
        "gates",
        "protocol",
        "reason",
        "recommendation",
        "target",
        "verdict",
    )

    def __init__(
        self,
        *,
        verdict: Verdict,
        current: Candidate,
        target: Candidate,
        agreed: Candidate | None,
        protocol: Protocol,
        reason: str,
        confidence: float,
        gates: tuple[Gate, ...],
        recommendation: int | None,
        negotiation: _Round,
        row: int,
        floor: int | None = None,
    ) -> None:
        self.verdict, self.current, self.target, self.agreed = verdict, current, target, agreed
        self.protocol, self.reason, self.confidence = protocol, reason, confidence
        self.gates, self.recommendation, self.floor = gates, recommendation, floor
        self._round, self._row = negotiation, row

    def __repr__(self) -> str:
        return f"Outcome({self.verdict.value} {self.current} -> {self.target}: {self.reason})"

    @property
    def changes(self) -> bool:
        return self.target != self.current

    @property
    def enforceable(self) -> bool:
        """True when the executor may apply the target without a person."""
        return self.verdict is Verdict.APPLY

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self._round.board.candidates(self._row)

    @property
    def seats(self) -> tuple[Seat, ...]:
        return self._round.seats

    @property
    def feasible(self) -> tuple[Candidate, ...]:
        ok = self._round.feasible[self._row].tolist()
        return tuple(c for c, good in zip(self.candidates, ok, strict=False) if good)

    @property
    def vetoed(self) -> Mapping[Candidate, str]:
        """Each vetoed candidate with the first reason: the budget's, then each agent's in seat order."""
        return _vetoes(self._round, self._row)

    @property
    def proposals(self) -> tuple[Proposal, ...]:
        r, row = self._round, self._row
        made = r.proposals.get(row)
        if made is None:
            made = tuple(
                s.proposal(a, r.board, row, r.ideal(k, row))
                for k, (s, a) in enumerate(zip(r.scores, r.agents, strict=True))
            )
            r.proposals[row] = made
        return made

    @property
    def stances(self) -> tuple[Stance, ...]:
        """Each agent's ideal, confidence and utility of the target, without writing its whole proposal."""
        r, row = self._round, self._row
        column = r.board.column(row, self.target)
        found = []
        for k, (seat, s) in enumerate(zip(r.seats, r.scores, strict=True)):
            ideal = r.ideal(k, row)
            value = float(s.utilities[row, column]) if column is not None else math.nan
            found.append(
                Stance(
                    seat.name,
                    None if ideal < 0 else r.board.candidate(row, ideal),
                    float(s.confidence[row]),
                    0.0 if math.isnan(value) else value,
                )
            )
        return tuple(found)

    def prediction(self, agent: str) -> Prediction | None:
        """What the agent predicted for this workload (without writing its whole proposal)."""
        r, row = self._round, self._row
        for k, seat in enumerate(r.seats):
            if seat.name == agent and r.scores[k].dropped[row] is None:
                return r.scores[k].predict(row)
        return None

    @property
    def rounds(self) -> tuple[Round, ...]:
        return tuple(self._round.agreements.rounds[self._row])

    @property
    def concessions(self) -> tuple[Concession, ...]:
        r, row = self._round, self._row
        if not r.feasible[row].any():
            return ()
        return tuple(
            Concession(seat.name, float(r.ideal_utility[k, row]), float(r.agreed_utility[k, row]))
            for k, seat in enumerate(r.seats)
            if r.voting[k, row]
        )


def negotiate(
    *,
    policy: NegotiationPolicySpec,
    situation: Situation,
    agents: Sequence[tuple[Seat, Agent[Model]]],
    evidence: Mapping[str, EvidenceSet],
    history: History | None = None,
) -> Outcome:
    """One round of negotiation for one workload (`negotiate_many` of one)."""
    case = Case(situation, evidence, history or History())
    return negotiate_many(policy=policy, cases=[case], agents=agents)[0]


def negotiate_many(
    *, policy: NegotiationPolicySpec, cases: Sequence[Case], agents: Sequence[tuple[Seat, Agent[Model]]]
) -> list[Outcome]:
    """One round of negotiation for many workloads under one policy, the same seated agents.

    Every agent scores every workload's candidates at once; the protocol agrees on every row at
    once; the policy's rules (stabilization, missing metrics, gates) then settle each workload.
    Workloads are taken `BATCH` at a time, so that the arrays of a round stay small whatever the
    number of workloads.
    """
    outcomes: list[Outcome] = []
    for start in range(0, len(cases), BATCH):
        outcomes.extend(_negotiate_batch(policy, cases[start : start + BATCH], agents))
    return outcomes


def negotiate_each(
    *, policy: NegotiationPolicySpec, cases: Sequence[Case], agents: Sequence[tuple[Seat, Agent[Model]]]
) -> list[Outcome | Exception]:
    """`negotiate_many`, where a workload whose negotiation fails gets its error instead of an outcome.

    A batch that fails is negotiated again one workload at a time, so that one workload's bad
    input (an agent that raises on it) costs that workload its round and nobody else theirs.
    """
    try:
        return list(negotiate_many(policy=policy, cases=cases, agents=agents))
    except Exception:  # one of them: find it by negotiating each alone
        log.warning("negotiating %d workloads together failed; negotiating each alone", len(cases), exc_info=True)
    found: list[Outcome | Exception] = []
    for case in cases:
        try:
            found.extend(negotiate_many(policy=policy, cases=[case], agents=agents))
        except Exception as exc:
            found.append(exc)
    return found


def _negotiate_batch(
    policy: NegotiationPolicySpec, cases: Sequence[Case], agents: Sequence[tuple[Seat, Agent[Model]]]
) -> list[Outcome]:
    if not cases:
        return []
    situations = [c.situation for c in cases]
    seats = tuple(seat for seat, _ in agents)
    given = [[c.evidence.get(seat.name, {}) for c in cases] for seat in seats]
    asked = [agent.wishes_many(situations, ev) for (_, agent), ev in zip(agents, given, strict=True)]
    wishes = [tuple(chain.from_iterable(per_agent[i] for per_agent in asked)) for i in range(len(cases))]
    if policy.bounds.scale_up_headroom > 0:  # the counts a scale-up with headroom goes to are on the table
        wishes = [
            (*w, *(headroom(x, s.current.replicas, policy.bounds) for x in w))
            for w, s in zip(wishes, situations, strict=True)
        ]
    board = candidates_mod.board(
        bounds=policy.bounds,
        current=[s.current for s in situations],
        placements=[p.name for p in policy.placements],
        wishes=wishes,
    )
    scores = tuple(agent.propose_many(situations, board, ev) for (_, agent), ev in zip(agents, given, strict=True))
    over_budget = _over_budget(policy, board, situations)
    no_room = _no_room(board, situations)
    voting = np.array([[d is None for d in s.dropped] for s in scores], dtype=np.bool_).reshape(len(seats), len(cases))
    vetoed = over_budget.copy()
    for k, seat in enumerate(seats):
        if seat.may_veto:
            vetoed |= scores[k].vetoed & voting[k][:, None]
    feasible = board.valid & ~vetoed & ~no_room
    weights = np.array([s.effective_weight for s in seats], dtype=np.float64)
    confidence = _confidence(weights, voting, scores)
    utilities = (
        np.stack([np.where(np.isnan(s.utilities), 0.0, s.utilities) for s in scores])
        if scores
        else np.zeros((0, *board.replicas.shape))
    )
    ballot = Ballot(
        names=tuple(s.name for s in seats),
        tiers=tuple(s.tier for s in seats),
        weights=np.repeat(weights[:, None], len(cases), axis=1),
        votes=voting,
        utilities=utilities,
    )
    floors = _floors(board, scores, voting, feasible)
    agreements = agree_board(policy.protocol, board, feasible, ballot, tolerance=policy.lexicographic_tolerance)
    first_columns = agreements.columns
    agreements = _hold_floor(policy, board, floors, ballot, agreements)
    # What the pools' room changed: where the agents would have agreed, floor included, on every move.
    roomless = np.full(len(cases), -1, dtype=np.int64)
    if no_room.any():
        unbounded = board.valid & ~vetoed
        without = agree_board(policy.protocol, board, unbounded, ballot, tolerance=policy.lexicographic_tolerance)
        without = _hold_floor(policy, board, _floors(board, scores, voting, unbounded), ballot, without)
        changed = (without.columns != agreements.columns) & (without.columns >= 0)
        blocked = no_room[np.arange(len(cases)), np.maximum(without.columns, 0)]
        roomless = np.where(changed & blocked, without.columns, -1)
    unmeasured = np.array([s.metrics_missing for s in scores], dtype=np.bool_).reshape(voting.shape)
    missing: Flags = np.any(voting & unmeasured, axis=0)
    rows = range(len(cases))
    agreed_columns = agreements.columns.tolist()
    least = floors.least.tolist()
    settled: list[tuple[int, str, Gate | None]] = []
    for i in rows:
        column = agreed_columns[i]
        current = situations[i].current
        if column < 0:
            settled.append((current.replicas, current.placement, None))
            continue
        gate: Gate | None
        if missing[i]:
            replicas, gate = missing_metrics_target(policy.rules.missing_metrics, current.replicas)
            placement = current.placement
        else:
            agreed = board.candidate(i, column)
            replicas, gate = stabilize(
                agreed=agreed.replicas,
                current=current.replicas,
                now=situations[i].now,
                bounds=policy.bounds,
                history=cases[i].history,
            )
            placement = agreed.placement
        if replicas < least[i]:  # a rule's cap, never a hold, would take it below the floor
            if gate is not None and gate.effect == "cap":
                gate = Gate(FLOOR_RULE, "cap", f"{gate.message}; raised to {least[i]}: {floors.why(scores, i)}")
            replicas = least[i]
        settled.append((replicas, placement, gate))
    feasible = floors.kept
    target_columns = _nearest(board, feasible, [r for r, _, _ in settled], [p for _, p, _ in settled])
    at_target = utilities[:, np.arange(len(cases)), np.maximum(target_columns, 0)]
    ideal = np.where(feasible[None], utilities, -np.inf).max(axis=2, initial=-np.inf)
    negotiation = _Round(
        board=board,
        seats=seats,
        agents=tuple(agent for _, agent in agents),
        scores=scores,
        over_budget=over_budget,
        no_room=no_room,
        feasible=feasible,
        voting=voting,
        agreements=agreements,
        ideal_utility=ideal,
        agreed_utility=at_target,
        room_why=tuple({n: p.room_why for n, p in s.pools.items() if p.room is not None} for s in situations),
    )
    # Rows whose record speaks of the floor: it set the first agreement aside, or vetoes keep it out of reach.
    first_replicas = board.replicas[np.arange(len(cases)), np.maximum(first_columns, 0)]
    noted = ((floors.least < floors.wanted) | ((first_columns >= 0) & (first_replicas < floors.wanted))).tolist()
    given_up = ideal - at_target
    weighs_disagreement = policy.rules.require_approval.disagreement_above is not None
    outcomes = []
    for i in rows:
        situation = situations[i]
        current = situation.current
        column = agreed_columns[i]
        if column < 0:
            outcomes.append(
                Outcome(
                    verdict=Verdict.IMPASSE,
                    current=current,
                    target=current,
                    agreed=None,
                    protocol=policy.protocol,
                    reason=f"every one of {int(board.counts[i])} candidates is vetoed; a person must resolve it",
                    confidence=float(confidence[i]),
                    gates=(),
                    recommendation=None,
                    negotiation=negotiation,
                    row=i,
                    floor=floors.floor(i),
                )
            )
            continue
        agreed = board.candidate(i, column)
        target = board.candidate(i, int(target_columns[i]))
        first = settled[i][2]
        gates: list[Gate] = [first] if first is not None else []
        if noted[i]:
            gates.append(_floor_gate(negotiation, floors, i, target, int(first_columns[i])))
        if roomless[i] >= 0:
            wanted = board.candidate(i, int(roomless[i]))
            gates.append(
                Gate(
                    CAPACITY_RULE,
                    "cap",
                    f"the agents would have agreed on {wanted}, but pool {wanted.placement} cannot take "
                    f"{wanted.replicas} pods now: {negotiation.room_why[i].get(wanted.placement, '')}",
                )
            )
        if target != current:
            gates.extend(
                gates_for_change(
                    rules=policy.rules,
                    current=current,
                    target=target,
                    now=situation.now,
                    confidence=float(confidence[i]),
                    history=cases[i].history,
                    pools=situation.pools,
                    concessions={seat.name: float(given_up[k, i]) for k, seat in enumerate(seats) if voting[k, i]}
                    if weighs_disagreement
                    else {},
                )
            )
        verdict, final, reason = _verdict(current, target, gates, agreements.notes[i])
        outcomes.append(
            Outcome(
                verdict=verdict,
                current=current,
                target=final,
                agreed=agreed,
                protocol=policy.protocol,
                reason=reason,
                confidence=float(confidence[i]),
                gates=tuple(gates),
                recommendation=None if missing[i] else agreed.replicas,
                negotiation=negotiation,
                row=i,
                floor=floors.floor(i),
            )
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
    return outcomes


FLOOR_RULE = "observedDemandFloor"
CAPACITY_RULE = "poolCapacity"


@dataclass(frozen=True, slots=True)
class _Floors:
    """Each row's observed floor (`Scores.floor`), and what it leaves of the feasible cells.

    `wanted`: the highest floor of any agent with a say, whatever its weight or trust, within the
    row's candidates (the bounds and step limits); 0 where none. `least`: the fewest replicas a
    decision may have, `wanted` or, where every cell at or above it is vetoed, the most the vetoes
    allow. `kept`: the feasible cells at or above `least`. `source`: whose floor it is (-1: none).
    """

    wanted: Ints
    least: Ints
    kept: Flags
    source: Ints

    def floor(self, row: int) -> int | None:
        wanted = int(self.wanted[row])
        return wanted if wanted > 0 else None

    def forced(self, row: int) -> bool:
        return bool(self.least[row] < self.wanted[row])

    def why(self, scores: Sequence[Scores], row: int) -> str:
        seat = int(self.source[row])
        floor = scores[seat].floor if seat >= 0 else None
        return f"at least {int(self.wanted[row])}: " + (floor.why(row) if floor is not None else "observed")


def _floors(board: Board, scores: Sequence[Scores], voting: Flags, feasible: Flags) -> _Floors:
    count = len(board)
    floors = np.zeros(count, dtype=np.int64)
    source = np.full(count, -1, dtype=np.int64)
    for k, s in enumerate(scores):
        if s.floor is not None:
            mine = np.where(voting[k], s.floor.replicas, 0)
            higher = mine > floors
            floors, source = np.where(higher, mine, floors), np.where(higher, k, source)
    most = np.where(board.valid, board.replicas, INT_MIN).max(axis=1, initial=INT_MIN)
    wanted = np.where(floors > 0, np.maximum(np.minimum(floors, most), 0), 0)
    reach = np.where(feasible, board.replicas, INT_MIN).max(axis=1, initial=INT_MIN)
    # A row with nothing feasible is an impasse whatever the floor: nothing to hold there.
    least = np.where(reach >= 0, np.minimum(wanted, reach), 0)
    kept: Flags = feasible & (board.replicas >= least[:, None])
    return _Floors(wanted, least, kept, source)


def _hold_floor(
    policy: NegotiationPolicySpec, board: Board, floors: _Floors, ballot: Ballot, agreed: Agreements
) -> Agreements:
    """The agreements, where one went below its row's floor made again among the cells the floor keeps.

    Agreeing first on every feasible cell and again only where the floor binds costs a second
    round only on those rows, and lets the record say what the agents would have done without it.
    """
    columns = agreed.columns
    rows = np.arange(len(board))
    bound = (columns >= 0) & (board.replicas[rows, np.maximum(columns, 0)] < floors.least)
    if not bound.any():
        return agreed
    again = agree_board(
        policy.protocol, board, floors.kept & bound[:, None], ballot, tolerance=policy.lexicographic_tolerance
    )
    which = bound.tolist()
    return Agreements(
        np.where(bound, again.columns, columns),
        [a if b else c for a, c, b in zip(again.rounds, agreed.rounds, which, strict=True)],
        [a if b else c for a, c, b in zip(again.notes, agreed.notes, which, strict=True)],
    )


def _floor_gate(r: _Round, floors: _Floors, row: int, target: Candidate, first: int) -> Gate:
    """What the record says of the floor: that hard vetoes keep the decision below it (a person must
    approve going lower than the current count), or that it set aside what the agents first agreed on."""
    wanted = int(floors.wanted[row])
    why = floors.why(r.scores, row)
    if floors.forced(row):
        least = int(floors.least[row])
        reasons = list(dict.fromkeys(v for c, v in _vetoes(r, row).items() if c.replicas > least))
        vetoes = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
        current = int(r.board.current_replicas[row])
        if target.replicas < min(current, wanted):
            return Gate(
                FLOOR_RULE,
                "approval",
                f"{target} is below what the demand observed now needs ({why}), and below the current "
                f"{current}: every candidate above {least} replicas is vetoed ({vetoes}); a person must approve",
            )
        return Gate(FLOOR_RULE, "cap", f"{why}, but every candidate above {least} replicas is vetoed ({vetoes})")
    return Gate(
        FLOOR_RULE,
        "cap",
        f"the agents agreed on {r.board.candidate(row, first)}, below {why}: fewer replicas were set aside "
        "and they agreed again",
    )


def _vetoes(r: _Round, row: int) -> dict[Candidate, str]:
    """Each vetoed candidate of a row with the first reason: the budget's, then each agent's in seat order."""
    candidates = r.board.candidates(row)
    found = {candidates[j]: "over the policy's budget" for j in np.flatnonzero(r.over_budget[row]).tolist()}
    for j in np.flatnonzero(r.no_room[row, : len(candidates)]).tolist():
        pool = r.board.pools[int(r.board.pool[row, j])]
        found.setdefault(candidates[j], f"pool {pool} cannot take them now: {r.room_why[row].get(pool, '')}")
    for k, seat in enumerate(r.seats):
        if seat.may_veto and r.scores[k].dropped[row] is None:
            for j in np.flatnonzero(r.scores[k].vetoed[row, : len(candidates)]).tolist():
                found.setdefault(candidates[j], f"{seat.name}: {r.scores[k].why(row, j)}")
    return found


def _no_room(board: Board, situations: Sequence[Situation]) -> Flags:
    """Cells that move the workload to another pool whose nodes have room for fewer of its pods than the
    cell asks for (a move starts all of them there; where a pool's room is unknown, nothing is known
    against it). On its own pool a scale-up is not held back: a node autoscaler adds nodes for
    pending pods, a move's pods that do not fit fail the rollout."""
    rooms = _pool_table(board, situations, lambda pool: None if pool.room is None else float(pool.room), np.inf)
    moving = board.valid & ~board.same_pool
    found: Flags = moving & (board.replicas > board.by_pool(rooms))
    return found


def _pool_table(
    board: Board, situations: Sequence[Situation], value: Callable[[Pool], float | None], unknown: float
) -> Floats:
    """(row, pool) of a figure each workload's pools carry, `unknown` where a pool has none."""
    table = np.full((len(situations), len(board.pools)), unknown)
    for i, s in enumerate(situations):
        for p, name in enumerate(board.pools):
            pool = s.pools.get(name)
            figure = None if pool is None else value(pool)
            if figure is not None:
                table[i, p] = figure
    return table


def _over_budget(policy: NegotiationPolicySpec, board: Board, situations: Sequence[Situation]) -> Flags:
    """Cells whose spend (replicas times their pool's price, where the pool has one) is over the budget."""
    limit = policy.rules.budget.max_cost_per_hour
    if limit is None:
        return np.zeros(board.replicas.shape, dtype=np.bool_)
    prices = _pool_table(board, situations, lambda pool: pool.price_per_pod_hour, np.nan)
    spend = board.replicas * board.by_pool(prices)
    over: Flags = board.valid & ~np.isnan(spend) & (spend > limit + 1e-9)
    return over


def _nearest(board: Board, feasible: Flags, replicas: Sequence[int], placements: Sequence[str]) -> Ints:
    """The feasible cell closest to the count (then the fewer replicas) on the pool, or on any pool
    if that one has none feasible; -1 on rows with no feasible cell."""
    code = {name: i for i, name in enumerate(board.pools)}
    wanted = np.array([code.get(p, -1) for p in placements], dtype=np.int64)
    chosen = top(board.pool == wanted[:, None], feasible)
    chosen = top(-np.abs(board.replicas - np.array(replicas, dtype=np.int64)[:, None]), chosen)
    return first(top(-board.replicas, chosen))


def _confidence(weights: Floats, voting: Flags, scores: Sequence[Scores]) -> Floats:
    """Trust-weighted geometric mean of the agents' confidences, per row.

    Geometric, not arithmetic: one heavily weighted agent that is unsure (the performance agent on
    its first sample) must be able to hold a decision that three sure but indifferent agents would
    otherwise carry. Agents whose metrics are missing are handled by the missing-metrics rule.
    """
    if not scores:
        return np.ones(voting.shape[1])
    confidence = np.stack([s.confidence for s in scores])
    counted = voting & ~np.stack([s.metrics_missing for s in scores])
    w = weights[:, None]
    total = np.where(counted, w, 0.0).sum(axis=0)
    heard = counted & (w > 0)
    zero = (heard & (confidence <= 0)).any(axis=0)
    logs = np.where(heard & (confidence > 0), w * np.log(np.maximum(confidence, 1e-300)), 0.0).sum(axis=0)
    mean = np.exp(logs / np.where(total > 0, total, 1.0))
    found: Floats = np.where(total <= 0, np.where(counted.any(axis=0), 0.0, 1.0), np.where(zero, 0.0, mean))
    return found


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
