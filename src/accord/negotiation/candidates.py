"""Candidate generation (negotiation layer, pure).

Replica counts within the bounds and the step limits around the current count (plus any count an
agent asked for, clamped to those limits), times the allowed placements with the current one
included. Long ranges are thinned to about `MAX_COUNTS` counts, always keeping the ends, the
current count and the agents' wishes, so negotiation cost stays flat for large workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from accord.agents.base import Candidate
from accord.models.policy import Bounds

MAX_COUNTS = 40


def replica_range(bounds: Bounds, current: int) -> tuple[int, int]:
    """The lowest and highest count one decision may reach from `current`.

    A workload outside the bounds is brought to the nearest bound, whatever the step limits.
    """
    low = max(bounds.min_replicas, current - bounds.max_step_down)
    high = min(bounds.max_replicas, current + bounds.max_step_up)
    if low > high:
        nearest = bounds.max_replicas if current > bounds.max_replicas else bounds.min_replicas
        return nearest, nearest
    return low, high


def replica_counts(bounds: Bounds, current: int, wishes: Iterable[int] = ()) -> tuple[int, ...]:
    low, high = replica_range(bounds, current)
    keep = {low, high}
    if low <= current <= high:
        keep.add(current)
    keep.update(min(high, max(low, w)) for w in wishes)
    span = high - low + 1
    if span <= MAX_COUNTS:
        keep.update(range(low, high + 1))
    else:
        room = max(2, MAX_COUNTS - len(keep))
        stride = (high - low) / (room - 1)
        keep.update(round(low + i * stride) for i in range(room))
        # Fine steps right around the current count matter most: small corrections stay possible.
        keep.update(c for c in range(current - 2, current + 3) if low <= c <= high)
    return tuple(sorted(keep))


def generate(
    *,
    bounds: Bounds,
    current: Candidate,
    placements: Sequence[str],
    wishes: Iterable[int] = (),
) -> tuple[Candidate, ...]:
    pools = list(dict.fromkeys([current.placement, *placements]))
    counts = replica_counts(bounds, current.replicas, wishes)
    return tuple(Candidate(r, p) for p in pools for r in counts)
