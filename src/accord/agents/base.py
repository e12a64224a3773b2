"""What every agent sees and returns (agents layer, pure: no I/O, no clock, no cluster access).

An agent declares the evidence it needs (`evidence_needed`); the caller fetches it and hands
it over with the `Situation`; the agent only computes a `Proposal`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from accord.metrics.evidence import Evidence, EvidenceSet
from accord.models.agent import AgentType
from accord.models.common import Model

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]
T = TypeVar("T", bound=np.generic)
INT_MAX = int(np.iinfo(np.int64).max)
INT_MIN = int(np.iinfo(np.int64).min)
# More replicas than any bound allows, well within 64-bit counts: a larger need or wish is taken as this.
MOST_REPLICAS = 2**40


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
    # How many of the workload's pods the pool's nodes can take now (allocatable minus what their pods
    # request), and the figures that say so; None when unknown (no node read, or pods not readable).
    room: int | None = None
    room_why: str = ""


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


class Board:
    """The candidates of many workloads at once, one row each, as arrays.

    Row i holds workload i's candidates in their order (by pool, the current pool first, then by
    replicas); `pool` codes index `pools`; a row shorter than the widest is padded, and `valid`
    marks its real cells. Agents score a whole board at once; `Candidate` objects are only made
    for the rows and cells someone reads.
    """

    __slots__ = ("_index", "_rows", "counts", "current_pool", "current_replicas", "pool", "pools", "replicas", "valid")

    def __init__(
        self, *, pools: tuple[str, ...], replicas: Ints, pool: Ints, counts: Ints, current: Sequence[Candidate]
    ) -> None:
        self.pools = pools
        self.replicas = replicas
        self.pool = pool
        self.counts = counts
        self.valid: Flags = np.arange(replicas.shape[1])[None, :] < counts[:, None]
        code = {name: i for i, name in enumerate(pools)}
        self.current_replicas: Ints = np.fromiter((c.replicas for c in current), np.int64, len(current))
        self.current_pool: Ints = np.fromiter((code[c.placement] for c in current), np.int64, len(current))
        self._rows: dict[int, tuple[Candidate, ...]] = {}
        self._index: dict[int, dict[Candidate, int]] = {}

    @classmethod
    def of(cls, rows: Sequence[Sequence[Candidate]], current: Sequence[Candidate]) -> Board:
        """A board of given candidate lists (any order, any pools), with each row's current candidate."""
        pools = tuple(dict.fromkeys([*(c.placement for c in current), *(c.placement for r in rows for c in r)]))
        code = {name: i for i, name in enumerate(pools)}
        width = max((len(r) for r in rows), default=0)
        replicas = np.zeros((len(rows), width), dtype=np.int64)
        pool = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            replicas[i, : len(row)] = [c.replicas for c in row]
            pool[i, : len(row)] = [code[c.placement] for c in row]
        counts = np.fromiter((len(r) for r in rows), np.int64, len(rows))
        board = cls(pools=pools, replicas=replicas, pool=pool, counts=counts, current=current)
        for i, row in enumerate(rows):
            board._rows[i] = tuple(row)
        return board

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def same_pool(self) -> Flags:
        """Cells on their workload's current pool."""
        same: Flags = self.pool == self.current_pool[:, None]
        return same

    def by_pool(self, table: npt.NDArray[T]) -> npt.NDArray[T]:
        """A (workload, pool) table read at every cell: the value for the cell's workload and pool."""
        found: npt.NDArray[T] = table[np.arange(len(self.counts))[:, None], self.pool]
        return found

    def candidate(self, row: int, column: int) -> Candidate:
        return Candidate(int(self.replicas[row, column]), self.pools[int(self.pool[row, column])])

    def candidates(self, row: int) -> tuple[Candidate, ...]:
        made = self._rows.get(row)
        if made is None:
            n = int(self.counts[row])
            pools = self.pools
            made = tuple(
                Candidate(r, pools[p])
                for r, p in zip(self.replicas[row, :n].tolist(), self.pool[row, :n].tolist(), strict=True)
            )
            self._rows[row] = made
        return made

    def column(self, row: int, candidate: Candidate) -> int | None:
        index = self._index.get(row)
        if index is None:
            index = {c: j for j, c in enumerate(self.candidates(row))}
            self._index[row] = index
        return index.get(candidate)

    def best(self, scores: Floats, allowed: Flags | None = None) -> Ints:
        """Each row's column of highest score among the allowed cells (-1 where none is allowed); among
        equals the current candidate, then the current pool, the count closest to the current, fewer."""
        allowed = self.valid if allowed is None else allowed & self.valid
        return self.first_by_tiebreak(top(scores, allowed))

    def first_by_tiebreak(self, ties: Flags) -> Ints:
        """Among each row's flagged cells: the current pool first, then the count closest to the
        current one, then fewer replicas (the first such cell); -1 where no cell is flagged."""
        chosen = top(self.same_pool, ties)
        chosen = top(-np.abs(self.replicas - self.current_replicas[:, None]), chosen)
        return first(top(-self.replicas, chosen))


def top(scores: npt.NDArray[Any], allowed: Flags) -> Flags:
    """The allowed cells of each row's highest score. A NaN score is the lowest: it neither wins nor
    keeps the other allowed cells from winning."""
    masked = np.where(allowed & ~np.isnan(scores), scores, -np.inf)
    found: Flags = allowed & (masked == masked.max(axis=1, initial=-np.inf)[:, None])
    return found


def first(cells: Flags) -> Ints:
    """Each row's first flagged column, -1 where none is flagged."""
    found: Ints = np.where(cells.any(axis=1), np.argmax(cells, axis=1), -1)
    return found


class RowUtilities(Mapping[Candidate, float]):
    """One agent's utilities for one row of a board, read as a mapping (cells without one are absent)."""

    __slots__ = ("_board", "_row", "_values")

    def __init__(self, board: Board, row: int, values: Floats) -> None:
        self._board, self._row, self._values = board, row, values

    def __getitem__(self, candidate: Candidate) -> float:
        column = self._board.column(self._row, candidate)
        if column is None or math.isnan(value := float(self._values[column])):
            raise KeyError(candidate)
        return value

    def __iter__(self) -> Iterator[Candidate]:
        values = self._values
        return (c for j, c in enumerate(self._board.candidates(self._row)) if not math.isnan(values[j]))

    def __len__(self) -> int:
        return int(np.count_nonzero(~np.isnan(self._values[: int(self._board.counts[self._row])])))


@dataclass(frozen=True, slots=True)
class Explanation:
    """What an agent says of one workload besides its scores: why, from what, and what it predicts."""

    rationale: str
    evidence: tuple[Evidence, ...] = ()
    prediction: Prediction | None = None


@dataclass(frozen=True, slots=True)
class Floor:
    """Replicas no decision may take a workload below, from evidence of what is happening now.

    `replicas[i]` is row i's floor (0 where the agent has none); `why(row)` says what it rests on.
    It is evidence, not a preference: the engine applies it before any weight or trust counts
    (trust weighs an agent's predictions; it never silences what is observed now), and only a
    hard veto can take a decision below it, with a person's approval.
    """

    replicas: Ints
    why: Callable[[int], str]


@dataclass(frozen=True, slots=True)
class Scores:
    """An agent's proposals for every row of a board, as arrays.

    `utilities` holds NaN where the agent gives no utility (a vetoed cell, padding). The words are
    written when someone reads them (a record, the trust bookkeeping), not while deciding:
    `explain(row)` gives a row's rationale, evidence and prediction, `why(row, column)` the reason
    for a vetoed cell, `predict(row)` the prediction alone. `floor`, when the agent observes one, is
    the fewest replicas what is happening now needs (`Floor`).
    """

    utilities: Floats
    vetoed: Flags
    confidence: Floats
    explain: Callable[[int], Explanation]
    why: Callable[[int, int], str]
    predict: Callable[[int], Prediction | None]
    metrics_missing: Flags
    dropped: Sequence[str | None]
    floor: Floor | None = None

    @classmethod
    def of_proposals(cls, board: Board, proposals: Sequence[Proposal]) -> Scores:
        """Proposals made one row at a time, as arrays (a NaN utility counts as none)."""
        utilities = np.full(board.replicas.shape, np.nan)
        vetoed = np.zeros(board.replicas.shape, dtype=np.bool_)
        reasons: dict[tuple[int, int], str] = {}
        for i, p in enumerate(proposals):
            for j, c in enumerate(board.candidates(i)):
                if c in p.vetoes:
                    vetoed[i, j] = True
                    reasons[i, j] = p.vetoes[c]
                u = p.utilities.get(c)
                if u is not None:
                    utilities[i, j] = u
        return cls(
            utilities=utilities,
            vetoed=vetoed,
            confidence=np.array([clamp(p.confidence) for p in proposals], dtype=np.float64),
            explain=lambda i: Explanation(proposals[i].rationale, proposals[i].evidence, proposals[i].prediction),
            why=lambda i, j: reasons.get((i, j), ""),
            predict=lambda i: proposals[i].prediction,
            metrics_missing=np.array([p.metrics_missing for p in proposals], dtype=np.bool_),
            dropped=[p.dropped for p in proposals],
        )

    def ideals(self, board: Board) -> Ints:
        """Each row's ideal column (-1 where the agent scores nothing or its proposal was dropped)."""
        dropped = np.array([d is not None for d in self.dropped], dtype=np.bool_).reshape(len(board))
        return np.where(dropped, -1, board.best(self.utilities, ~self.vetoed))

    def proposal(self, agent: Agent[Any], board: Board, row: int, ideal: int | None = None) -> Proposal:
        """Row `row` as the `Proposal` a record shows; `ideal` is the row's of `ideals`, if known."""
        if ideal is None:
            ideal = int(self.ideals(board)[row])
        vetoed = np.flatnonzero(self.vetoed[row, : int(board.counts[row])]).tolist()
        candidates = board.candidates(row)
        said = self.explain(row)
        return Proposal(
            agent=agent.name,
            agent_type=agent.type,
            utilities=RowUtilities(board, row, self.utilities[row]),
            vetoes={candidates[j]: self.why(row, j) for j in vetoed},
            ideal=None if ideal < 0 else candidates[ideal],
            confidence=float(self.confidence[row]),
            rationale=said.rationale,
            evidence=said.evidence,
            prediction=said.prediction,
            dropped=self.dropped[row],
            metrics_missing=bool(self.metrics_missing[row]),
        )


S = TypeVar("S", bound=Model)


class Agent(Generic[S]):
    """Base of the agents: typed settings in, pure proposals out.

    An agent defines `propose` (one workload at a time) or `propose_many` (a whole board at once, as the
    built-in agents do); each is derived from the other.
    """

    type: ClassVar[AgentType]

    def __init__(self, name: str, settings: S) -> None:
        self.name = name
        self.settings = settings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.propose is Agent.propose and cls.propose_many is Agent.propose_many:
            raise TypeError(f"{cls.__name__} must define propose or propose_many")

    def evidence_needed(self) -> tuple[EvidenceRequest, ...]:
        """The evidence the caller must gather before calling `propose`."""
        return ()

    def wishes(self, situation: Situation, evidence: EvidenceSet) -> tuple[int, ...]:
        """Replica counts this agent wants among the candidates (before step limits)."""
        return self.wishes_many([situation], [evidence])[0]

    def wishes_many(self, situations: Sequence[Situation], evidence: Sequence[EvidenceSet]) -> list[tuple[int, ...]]:
        """`wishes` for many workloads."""
        if type(self).wishes is Agent.wishes:
            return [()] * len(situations)
        return [self.wishes(s, e) for s, e in zip(situations, evidence, strict=True)]

    def prepare(self, evidence: Sequence[EvidenceSet], moments: Sequence[float], interval_seconds: float) -> None:
        """Evidence that will be asked about later, one workload at a time, at these moments (unix
        seconds) and this decision interval: work it needs may be done now, all at once (the
        performance agent forecasts it in one batch). What the agent answers does not change, only
        when the work is done. Nothing to do by default."""
        return

    def propose(self, situation: Situation, candidates: Sequence[Candidate], evidence: EvidenceSet) -> Proposal:
        """Score every candidate. Pure: the same inputs give the same proposal."""
        board = Board.of([candidates], [situation.current])
        return self.propose_many([situation], board, [evidence]).proposal(self, board, 0)

    def propose_many(self, situations: Sequence[Situation], board: Board, evidence: Sequence[EvidenceSet]) -> Scores:
        """Score every row of a board: row i is `situations[i]`'s candidates. Pure, like `propose`."""
        made = [
            self.propose(s, board.candidates(i), e) for i, (s, e) in enumerate(zip(situations, evidence, strict=True))
        ]
        return Scores.of_proposals(board, made)

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
    """The candidate of highest utility (a NaN utility counts as none); among equals the current
    candidate, then on the current pool, closest to it, then fewer replicas (`Board.best`)."""
    if not utilities:
        return None
    candidates = list(utilities)
    anchor = current if current is not None else Candidate(0, "")
    board = Board.of([candidates], [anchor])
    scores = np.array([[utilities[c] for c in candidates]], dtype=np.float64)
    column = int(board.best(scores)[0])
    return None if column < 0 else candidates[column]


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
