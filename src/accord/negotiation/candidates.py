"""Candidate generation (negotiation layer, pure).

Replica counts within the bounds and the step limits around the current count (plus any count an
agent asked for, clamped to those limits), times the allowed placements with the current one
included. Long ranges are thinned to about `MAX_COUNTS` counts, always keeping the ends, the
current count and the agents' wishes, so negotiation cost stays flat for large workloads. Candidates
for many workloads are made at once, as a `Board`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from accord.agents.base import INT_MAX, MOST_REPLICAS, Board, Candidate, Ints
from accord.models.policy import Bounds

MAX_COUNTS = 40
ABSENT = -1  # no count (counts are never negative)
LAST = INT_MAX  # sorts after every count


def replica_range(bounds: Bounds, current: int) -> tuple[int, int]:
    """The lowest and highest count one decision may reach from `current` (the ends of its counts).

    A workload outside the bounds is brought to the nearest bound, whatever the step limits.
    """
    counts = replica_counts(bounds, current)
    return counts[0], counts[-1]


def replica_counts(bounds: Bounds, current: int, wishes: Iterable[int] = ()) -> tuple[int, ...]:
    counts, size = count_table(bounds, np.array([current], dtype=np.int64), [tuple(wishes)])
    return tuple(counts[0, : int(size[0])].tolist())


def count_table(bounds: Bounds, current: Ints, wishes: Sequence[Sequence[int]]) -> tuple[Ints, Ints]:
    """`replica_counts` for many workloads: each row's counts in ascending order (padded), and how many."""
    low = np.maximum(bounds.min_replicas, current - bounds.max_step_down)
    high = np.minimum(bounds.max_replicas, current + bounds.max_step_up)
    stuck = low > high  # outside the bounds: brought to the nearest bound
    nearest = np.where(current > bounds.max_replicas, bounds.max_replicas, bounds.min_replicas)
    low, high = np.where(stuck, nearest, low), np.where(stuck, nearest, high)
    most = max((len(w) for w in wishes), default=0)
    asked = np.full((len(current), most), ABSENT, dtype=np.int64)
    for i, w in enumerate(wishes):
        asked[i, : len(w)] = [min(max(x, 0), MOST_REPLICAS) for x in w]  # clamped to the bounds below anyway
    asked = np.where(asked == ABSENT, ABSENT, np.clip(asked, low[:, None], high[:, None]))
    inside = (low <= current) & (current <= high)
    kept = np.column_stack([low, high, np.where(inside, current, ABSENT), asked])
    span = high - low + 1
    room = np.maximum(2, MAX_COUNTS - _distinct(kept))
    steps = np.arange(MAX_COUNTS)
    stride = (high - low) / (room - 1)
    thinned = np.where(steps < room[:, None], np.rint(low[:, None] + steps * stride[:, None]), ABSENT)
    dense = span[:, None] <= MAX_COUNTS
    grid = np.where(dense, np.where(steps < span[:, None], low[:, None] + steps, ABSENT), thinned.astype(np.int64))
    # Fine steps right around the current count matter most: small corrections stay possible.
    around = current[:, None] + np.arange(-2, 3)
    around = np.where((low[:, None] <= around) & (around <= high[:, None]), around, ABSENT)
    every = np.sort(np.column_stack([kept, grid, around]), axis=1)
    repeated = np.zeros(every.shape, dtype=np.bool_)
    repeated[:, 1:] = every[:, 1:] == every[:, :-1]
    every = np.sort(np.where(repeated | (every == ABSENT), LAST, every), axis=1)
    size = np.count_nonzero(every != LAST, axis=1)
    return every[:, : int(size.max(initial=0))], size


def _distinct(values: Ints) -> Ints:
    """Distinct values per row, ABSENT aside."""
    ordered = np.sort(values, axis=1)
    fresh = np.ones(ordered.shape, dtype=np.bool_)
    fresh[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    distinct: Ints = np.count_nonzero(fresh & (ordered != ABSENT), axis=1)
    return distinct


def generate(
    *,
    bounds: Bounds,
    current: Candidate,
    placements: Sequence[str],
    wishes: Iterable[int] = (),
) -> tuple[Candidate, ...]:
    return board(bounds=bounds, current=[current], placements=placements, wishes=[tuple(wishes)]).candidates(0)


def board(
    *, bounds: Bounds, current: Sequence[Candidate], placements: Sequence[str], wishes: Sequence[Sequence[int]]
) -> Board:
    """The candidates of many workloads: each row is its workload's counts on every pool, the current pool first."""
    counts, size = count_table(bounds, np.fromiter((c.replicas for c in current), np.int64, len(current)), wishes)
    pools = tuple(dict.fromkeys([*(c.placement for c in current), *placements]))
    code = {name: i for i, name in enumerate(pools)}
    own = np.fromiter((code[c.placement] for c in current), np.int64, len(current))
    width = counts.shape[1]
    order = {p: [p, *(code[x] for x in dict.fromkeys(placements) if code[x] != p)] for p in set(own.tolist())}
    slots = max(len(o) for o in order.values()) if order else 0
    replicas = np.zeros((len(current), slots * width), dtype=np.int64)
    pool = np.zeros((len(current), slots * width), dtype=np.int64)
    filled = np.arange(width)[None, :] < size[:, None]
    for first, sequence in order.items():
        rows = np.flatnonzero(own == first)
        cells = filled[rows]
        at_row, at_col = np.nonzero(cells)
        for slot, pool_code in enumerate(sequence):
            target = slot * size[rows][at_row] + at_col
            replicas[rows[at_row], target] = counts[rows[at_row], at_col]
            pool[rows[at_row], target] = pool_code
    used = np.fromiter((len(order[p]) for p in own.tolist()), np.int64, len(current)) * size
    return Board(pools=pools, replicas=replicas, pool=pool, counts=used, current=current)
