"""The replay's accounting (docs/benchmark.md section 1): start-up delay, removal order, and every figure."""

from __future__ import annotations

import math

import pytest

from accord.sim.model import ReplayModel, View, replay, score
from tests.sim.conftest import Scripted, at_ticks, trace

MODEL = ReplayModel()  # capacity 100, startup 2, slo 0.85, replicas 1..200


def test_initial_count_serves_the_first_sample_at_70_percent_all_ready() -> None:
    spy = Scripted(at_ticks({}))
    run = replay(trace([700.0, 700.0]), spy, MODEL)
    assert run.initial == 10  # 700 / (100 * 0.7)
    assert spy.views[0] == (0, 10, 10)
    assert run.requested == (10, 10)
    assert run.ready == (10, 10)


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        pytest.param(701.0, 11, id="just-over-10-pods"),
        pytest.param(0.0, 1, id="no-demand-still-min-replicas"),
        pytest.param(1e6, 200, id="capped-at-max-replicas"),
    ],
)
def test_initial_count_is_clamped_to_the_bounds(demand: float, expected: int) -> None:
    assert replay(trace([demand]), Scripted(at_ticks({})), MODEL).initial == expected


@pytest.mark.parametrize("startup", [0, 1, 2, 5])
def test_a_pod_asked_for_at_tick_t_is_ready_at_t_plus_startup(startup: int) -> None:
    model = ReplayModel(startup=startup)
    run = replay(trace([100.0] * 10), Scripted(at_ticks({3: 6})), model)  # initial 2
    assert run.requested[3:] == (6,) * 7
    assert [run.ready[t] for t in range(10)] == [2 if t < 3 + startup else 6 for t in range(10)]


def test_scale_down_removes_starting_pods_newest_first_then_ready_ones() -> None:
    # Initial 2 ready. Tick 0: ask for 3 more (ready at 2). Tick 1: ask for 2 more (ready at 3).
    # Tick 2: go to 4: the two asked at tick 1 go first, then one of those asked at tick 0.
    run = replay(trace([100.0] * 6), Scripted(at_ticks({0: 5, 1: 7, 2: 4})), MODEL)
    assert run.requested == (5, 7, 4, 4, 4, 4)
    assert run.ready == (2, 2, 4, 4, 4, 4)  # the two pods of tick 0 that remain are ready at tick 2


def test_removing_more_than_the_starting_pods_removes_ready_ones_at_once() -> None:
    # initial 10 ready; tick 0 asks for 2 more; tick 1 keeps 4: both starting pods go, then 6 ready ones.
    run = replay(trace([700.0] * 4), Scripted(at_ticks({0: 12, 1: 4})), MODEL)
    assert run.requested == (12, 4, 4, 4)
    assert run.ready == (10, 4, 4, 4)  # removed pods stop serving at once, and none is left starting


def test_no_ready_pod_is_infinite_utilisation_and_a_violation() -> None:
    model = ReplayModel(min_replicas=0)
    run = replay(trace([100.0, 0.0, 0.0]), Scripted(at_ticks({1: 0})), model)
    assert run.ready == (2, 0, 0)
    assert model.utilisation(0.0, 0) == math.inf
    assert run.figures.slo_minutes == 2  # even with no demand: utilisation over no pods is infinite
    assert run.figures.unserved == 0.0


def test_figures() -> None:
    # initial 2 ready; tick 0 asks for 4 (ready at tick 2); demand rises to 300/s.
    demand = [100.0, 200.0, 300.0, 300.0, 150.0]
    run = replay(trace(demand), Scripted(at_ticks({0: 4, 4: 2})), MODEL)
    assert run.requested == (4, 4, 4, 4, 2)
    assert run.ready == (2, 2, 4, 4, 2)
    # u: 0.5, 1.0, 0.75, 0.75, 0.75 -> one violation (tick 1)
    assert run.figures.slo_minutes == 1
    # unserved: tick 1 has 200 demand over 200 capacity: none; nothing else short
    assert run.figures.unserved == 0.0
    assert run.figures.pod_hours == pytest.approx((4 + 4 + 4 + 4 + 2) / 60)  # starting pods are paid for
    assert run.figures.actions == 2  # tick 0 (2 -> 4) and tick 4 (4 -> 2)


def test_unserved_requests_are_the_demand_above_ready_capacity_for_each_minute() -> None:
    run = replay(trace([100.0, 450.0, 500.0]), Scripted(at_ticks({})), MODEL)  # 2 pods throughout
    assert run.figures.unserved == pytest.approx((250.0 + 300.0) * 60)
    assert run.figures.slo_minutes == 2


def test_slo_is_strictly_above_the_threshold() -> None:
    model = ReplayModel(capacity=100.0, slo=0.85)
    assert not model.violated(170.0, 2)
    assert model.violated(170.0001, 2)


@pytest.mark.parametrize(("demand", "utilisation", "expected"), [(85.0, 0.85, 1), (85.01, 0.85, 2), (0.0, 0.85, 0)])
def test_pods_for_is_the_fewest_pods_within_the_utilisation(demand: float, utilisation: float, expected: int) -> None:
    assert MODEL.pods_for(demand, utilisation) == expected


def test_the_policy_is_clamped_to_the_bounds() -> None:
    model = ReplayModel(min_replicas=3, max_replicas=8)
    run = replay(trace([100.0] * 3), Scripted(lambda v: {0: 50, 1: 0}.get(v.tick, 5)), model)
    assert run.requested == (8, 3, 5)


def test_the_view_hides_the_future() -> None:
    seen: list[View] = []

    def keep(view: View) -> int:
        seen.append(view)
        return view.requested

    replay(trace([1.0, 2.0, 3.0]), Scripted(keep), MODEL)
    view = seen[2]
    assert view.demand(1) == 2.0
    assert view.series(view.now - 600, view.now) == ((view.time(0), 1.0), (view.time(1), 2.0))
    for future in (2, 3, -1):
        with pytest.raises(IndexError):
            view.demand(future)
    with pytest.raises(IndexError):
        seen[0].utilisation(0)


def test_score_recomputes_what_the_replay_kept() -> None:
    demand = [100.0, 900.0, 30.0, 2000.0, 0.0, 450.0]
    run = replay(trace(demand), Scripted(lambda v: [1, 9, 3, 25, 1, 6][v.tick]), MODEL)
    assert score(demand, run.requested, run.ready, model=MODEL) == run.figures
