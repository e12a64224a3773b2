from __future__ import annotations

import pytest

from accord.agents.base import Candidate
from accord.models.policy import Bounds
from accord.negotiation.candidates import MAX_COUNTS, board, generate, replica_counts, replica_range


@pytest.mark.parametrize(
    ("bounds", "current", "expected"),
    [
        (Bounds(min_replicas=1, max_replicas=50, max_step_up=10, max_step_down=5), 4, (1, 14)),
        (Bounds(min_replicas=3, max_replicas=8, max_step_up=10, max_step_down=10), 5, (3, 8)),
        (Bounds(min_replicas=1, max_replicas=100, max_step_up=2, max_step_down=1), 50, (49, 52)),
        # outside the bounds: brought to the nearest bound in one step, whatever the step limits
        (Bounds(min_replicas=1, max_replicas=10, max_step_up=2, max_step_down=2), 30, (10, 10)),
        (Bounds(min_replicas=5, max_replicas=10, max_step_up=1, max_step_down=1), 0, (5, 5)),
    ],
)
def test_replica_range(bounds: Bounds, current: int, expected: tuple[int, int]) -> None:
    assert replica_range(bounds, current) == expected


def test_small_ranges_are_complete_and_wishes_are_clamped() -> None:
    bounds = Bounds(min_replicas=2, max_replicas=20, max_step_up=4, max_step_down=2)
    assert replica_counts(bounds, 5, wishes=[100, 0]) == (3, 4, 5, 6, 7, 8, 9)


def test_long_ranges_are_thinned_but_keep_ends_current_and_wishes() -> None:
    bounds = Bounds(min_replicas=1, max_replicas=5000, max_step_up=2000, max_step_down=2000)
    counts = replica_counts(bounds, 2500, wishes=[3333])
    assert len(counts) <= MAX_COUNTS + 8
    assert {500, 4500, 2500, 3333, 2499, 2501} <= set(counts)
    assert list(counts) == sorted(set(counts))


def test_candidates_cover_every_placement_with_the_current_first() -> None:
    bounds = Bounds(min_replicas=1, max_replicas=3, max_step_up=1, max_step_down=1)
    got = generate(bounds=bounds, current=Candidate(2, "legacy"), placements=["standard", "spot"])
    assert [c.placement for c in got[:3]] == ["legacy"] * 3
    assert set(got) == {Candidate(r, p) for r in (1, 2, 3) for p in ("legacy", "standard", "spot")}


def test_a_board_holds_each_workloads_own_candidates() -> None:
    """Candidates made for many workloads at once, each with its count, pool and wishes, are each one's own."""
    bounds = Bounds(minReplicas=1, maxReplicas=300, maxStepUp=120, maxStepDown=40)
    current = [
        Candidate(r, p) for r, p in [(1, "standard"), (150, "spot"), (299, "legacy"), (5, "standard"), (400, "spot")]
    ]
    wishes = [(), (3, 290), (7,), (5, 5, 6), (1000,)]
    made = board(bounds=bounds, current=current, placements=["standard", "spot"], wishes=wishes)
    assert len(made) == len(current)
    for row, (c, w) in enumerate(zip(current, wishes, strict=True)):
        assert made.candidates(row) == generate(bounds=bounds, current=c, placements=["standard", "spot"], wishes=w)
