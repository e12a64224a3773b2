"""The baselines as docs/benchmark.md documents them: the HPA's rules, the oracle, the static count."""

from __future__ import annotations

import pytest

from accord.sim.baselines import Hpa, Oracle, Static
from accord.sim.model import ReplayModel, replay
from accord.sim.trace import make_trace
from tests.sim.conftest import sinusoid, steps_and_spikes, trace

MODEL = ReplayModel()  # capacity 100, startup 2, slo 0.85


def hpa_run(demand: list[float], target: float = 0.7, model: ReplayModel = MODEL) -> tuple[int, ...]:
    return replay(trace(demand), Hpa(target, model), model).requested


def test_hpa_does_nothing_before_it_has_a_metric() -> None:
    assert hpa_run([700.0, 700.0])[0] == 10


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        pytest.param(769.0, 10, id="u-0.769-is-within-the-tolerance"),
        pytest.param(631.0, 10, id="u-0.631-is-within-the-tolerance"),
        pytest.param(780.0, 12, id="u-0.78-scales-up-to-ceil-10x0.78/0.7"),
        pytest.param(620.0, 9, id="u-0.62-scales-down-to-ceil-10x0.62/0.7"),
    ],
)
def test_hpa_tolerance_is_ten_percent_of_the_target(demand: float, expected: int) -> None:
    # initial 10 pods for 700/s; tick 1 sees tick 0 (u 0.7); tick 2 sees `demand` on 10 ready pods
    run = hpa_run([700.0] + [demand] * 9)
    assert run[1] == 10
    assert run[2] == max(expected, 10)  # a scale-up at once, a scale-down only after the window
    assert run[-1] == expected


@pytest.mark.parametrize(
    ("initial_demand", "current", "limit"),
    [
        pytest.param(140.0, 2, 6, id="small-counts-may-add-4"),
        pytest.param(700.0, 10, 20, id="large-counts-may-double"),
    ],
)
def test_hpa_scale_up_is_limited_to_max_of_double_and_plus_4(initial_demand: float, current: int, limit: int) -> None:
    run = hpa_run([initial_demand] + [50_000.0] * 3)
    assert run[1] == current
    assert run[2] == limit
    assert run[3] == max(2 * limit, limit + 4)  # from the requested count, though the new pods still start


def test_hpa_scales_down_to_the_highest_recommendation_of_the_last_5_minutes() -> None:
    # 20 pods for 1400/s, then 130/s from tick 1: tick 1 recommends 20 (it sees tick 0), ticks 2.. recommend 2.
    # A recommendation counts while it is younger than 300 s: tick 1's, up to tick 5.
    run = hpa_run([1400.0] + [130.0] * 9)
    assert run[:6] == (20,) * 6
    assert run[6:] == (2,) * 4


def test_hpa_stabilization_holds_a_short_peak_for_5_minutes() -> None:
    demand = [700.0, 700.0, 1400.0, 700.0] + [480.0] * 8
    run = hpa_run(demand)
    assert run[:3] == (10, 10, 10)
    assert run[3] == 20  # tick 2's 1400/s is seen at tick 3
    assert run[3:9] == (20,) * 6  # tick 4 recommends 20 too (u 0.7 over the 10 ready pods): held to tick 8
    assert run[9:] == (7,) * 3  # then the highest of ticks 5..9: 7 pods


def test_hpa_is_clamped_to_the_bounds() -> None:
    model = ReplayModel(max_replicas=12)
    assert max(hpa_run([700.0] + [5000.0] * 5, model=model)) == 12


@pytest.mark.parametrize("samples", [sinusoid(seed=3), steps_and_spikes(seed=4)], ids=["sinusoid", "steps"])
def test_oracle_is_never_violated_and_cheaper_than_static(samples: list[tuple[float, float]]) -> None:
    t = make_trace("t", samples, peak_pods=20, capacity=100)
    oracle = replay(t, Oracle(t, MODEL), MODEL).figures
    static = replay(t, Static(t, MODEL), MODEL).figures
    assert oracle.slo_minutes == 0
    assert oracle.unserved == 0.0
    assert static.slo_minutes == 0
    assert oracle.pod_hours < static.pod_hours


def test_oracle_asks_for_the_most_needed_until_its_pods_are_ready() -> None:
    demand = [85.0, 85.0, 85.0, 850.0, 85.0, 85.0, 85.0]  # 1 pod, then 10 for one minute
    oracle = Oracle(trace(demand), MODEL)
    assert oracle.plan == (1, 10, 10, 10, 1, 1, 1)
    run = replay(trace(demand), oracle, MODEL)
    assert run.ready[3] == 10
    assert run.figures.slo_minutes == 0


def test_static_is_what_the_largest_demand_needs_within_max_replicas() -> None:
    assert Static(trace([100.0, 1700.0, 50.0]), MODEL).count == 20
    assert Static(trace([100.0, 1e9]), MODEL).count == 200
