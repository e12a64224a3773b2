"""The goal against hpa@0.7 on one trace, and settings judged on traces they were not chosen on."""

from __future__ import annotations

import pytest

from accord.sim.model import Figures
from accord.sim.verdict import Judged, allowed_actions, choose, leave_one_out, misses

HPA = Figures(pod_hours=100.0, slo_minutes=10, unserved=500.0, actions=40, ticks=1200)  # 20 hours


def figures(pod_hours: float = 90.0, slo: int = 5, actions: int = 30, ticks: int = 1200) -> Figures:
    return Figures(pod_hours=pod_hours, slo_minutes=slo, unserved=0.0, actions=actions, ticks=ticks)


def test_fewer_of_everything_meets_the_goal() -> None:
    assert misses(figures(), HPA) == []


@pytest.mark.parametrize(("slo", "missed"), [(9, False), (10, True)])
def test_violation_minutes_must_be_fewer_than_the_hpas(slo: int, missed: bool) -> None:
    assert bool(misses(figures(slo=slo), HPA)) is missed


def test_no_violation_minutes_on_either_side_meets_it() -> None:
    none = Figures(100.0, 0, 0.0, 40, 1200)
    assert misses(figures(slo=0), none) == []
    assert misses(figures(slo=1), none) == ["SLO-violation minutes 1 not below 0"]


@pytest.mark.parametrize(("pod_hours", "missed"), [(99.9, False), (100.0, True)])
def test_pod_hours_must_be_fewer_than_the_hpas(pod_hours: float, missed: bool) -> None:
    assert bool(misses(figures(pod_hours=pod_hours), HPA)) is missed


@pytest.mark.parametrize(("actions", "missed"), [(40, False), (41, True)])
def test_no_more_scaling_actions_than_the_hpa(actions: int, missed: bool) -> None:
    found = misses(figures(actions=actions), HPA)
    assert found == (["scaling actions 41 above the 40 allowed"] if missed else [])


@pytest.mark.parametrize(("actions", "missed"), [(20, False), (21, True)])
def test_where_the_hpa_barely_moves_one_action_an_hour(actions: int, missed: bool) -> None:
    still = Figures(pod_hours=100.0, slo_minutes=10, unserved=0.0, actions=3, ticks=1200)
    assert allowed_actions(still) == 20
    assert bool(misses(figures(actions=actions), still)) is missed


def judged(name: str, source: str, **settings: Figures) -> Judged:
    oracle = Figures(pod_hours=50.0, slo_minutes=0, unserved=0.0, actions=10, ticks=1200)
    return Judged(name, source, settings, HPA, oracle)


def test_each_trace_is_judged_with_the_setting_chosen_on_the_others() -> None:
    good, bad = figures(), figures(actions=400)
    traces = [
        judged("t1", "a", calm=good, eager=figures(pod_hours=60.0)),
        judged("t2", "a", calm=good, eager=figures(pod_hours=60.0)),
        judged("t3", "b", calm=good, eager=bad),
    ]
    assert choose(traces, ["calm", "eager"]) == "calm"  # eager misses t3
    found = {h.trace: h for h in leave_one_out(traces, ["calm", "eager"])}
    # Left out, t3's own failure cannot steer the choice: eager wins on t1 and t2 (lower ratio) and fails on t3.
    assert found["t3"].chosen == "eager"
    assert found["t3"].misses == ("scaling actions 400 above the 40 allowed",)
    assert found["t1"].chosen == "calm"  # on t2 and t3, eager misses t3
    assert found["t1"].misses == ()


def test_leaving_a_source_out_chooses_on_the_other_sources_only() -> None:
    traces = [
        judged("t1", "a", calm=figures(), eager=figures(actions=400)),
        judged("t2", "b", calm=figures(), eager=figures(pod_hours=60.0)),
        judged("t3", "b", calm=figures(actions=400), eager=figures(pod_hours=60.0)),
    ]
    found = {h.trace: h for h in leave_one_out(traces, ["calm", "eager"], by_source=True)}
    assert found["t2"].chosen == found["t3"].chosen == "calm"  # chosen on t1 alone
    assert found["t3"].misses != ()
    assert found["t1"].chosen == "eager"  # chosen on t2 and t3


def test_a_single_trace_takes_the_first_setting() -> None:
    (only,) = leave_one_out([judged("t1", "a", calm=figures(), eager=figures())], ["eager", "calm"])
    assert only.chosen == "eager"
