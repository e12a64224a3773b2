"""The performance agent: pods needed for the forecast demand, utility by utilisation, honest confidence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest

from accord.agents.base import Board, Candidate, QueryKind
from accord.agents.forecast import DAY, forecast_peak
from accord.agents.performance import DEFAULT_DEMAND_QUERY, PerformanceAgent
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.models.settings import PerformanceSettings
from tests.factories import NOW, daily, demand, situation


def agent(**settings: Any) -> PerformanceAgent:
    return PerformanceAgent("performance", PerformanceSettings(**settings))


def counts(*replicas: int, placement: str = "standard") -> list[Candidate]:
    return [Candidate(r, placement) for r in replicas]


CANDIDATES = counts(*range(16))


def needed(perf: PerformanceAgent, evidence: EvidenceSet, **situation_args: Any) -> int:
    found = perf.needed_replicas(situation(**situation_args), evidence)
    assert found is not None
    return found[0]


def latency(seconds: float) -> Evidence:
    return Evidence(name="latency", source=Source.PROMETHEUS, query="p99", value=seconds, timestamp=NOW, samples=1)


def series_evidence(name: str, points: Sequence[tuple[float, float]]) -> Evidence:
    return Evidence.from_series(name, Source.PROMETHEUS, "sum(rate(http_requests_total[2m]))", tuple(points))


# --- how many pods -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trend", "expected", "floor"),
    [
        pytest.param(0.0, 5, 4, id="steady-300"),
        pytest.param(10.0, 9, 8, id="rising-to-590"),
        pytest.param(-5.0, 3, 2, id="falling-to-155"),
    ],
)
def test_needed_pods_follow_the_demand_trend(trend: float, expected: int, floor: int) -> None:
    perf = agent()
    evidence = {"demand": demand(level=300, slope=trend)}
    assert needed(perf, evidence) == expected
    # What the forecast needs, and the floor the latest sample needs at the SLO (0.7 x 1.15).
    assert perf.wishes(situation(), evidence) == (expected, floor)


def test_rising_demand_asks_for_more_pods_than_steady_demand() -> None:
    perf = agent()
    steady = needed(perf, {"demand": demand(level=300)})
    rising = needed(perf, {"demand": demand(level=300, slope=5)})
    assert rising > steady


@pytest.mark.parametrize(
    ("level", "capacity", "target", "expected"),
    [
        pytest.param(280.0, 100.0, 0.7, 4, id="exactly-4-pods-at-70pct"),
        pytest.param(281.0, 100.0, 0.7, 5, id="just-over-4-pods"),
        pytest.param(300.0, 100.0, 0.7, 5, id="300-rps"),
        pytest.param(100.0, 50.0, 0.5, 4, id="small-pods-half-target"),
        pytest.param(1000.0, 100.0, 1.0, 10, id="full-utilisation-exact"),
        pytest.param(1001.0, 100.0, 1.0, 11, id="full-utilisation-one-over"),
        pytest.param(7.0, 1.0, 0.1, 70, id="float-rounding-exact"),
        pytest.param(49.0, 10.0, 0.7, 7, id="float-rounding-49-over-7"),
        pytest.param(0.0, 100.0, 0.7, 0, id="no-demand"),
    ],
)
def test_needed_is_ceil_of_peak_over_capacity_times_target(
    level: float, capacity: float, target: float, expected: int
) -> None:
    perf = agent(capacity_per_pod=capacity, target_utilisation=target)
    found = perf.needed_replicas(situation(), {"demand": demand(level=level)})
    assert found is not None
    count, _, peak = found
    assert peak == pytest.approx(level)  # a flat series forecasts its own level
    assert count == expected
    assert count == math.ceil(round(peak / (capacity * target), 9))


def test_needed_uses_the_forecast_peak_not_the_current_level() -> None:
    perf = agent(startup_seconds=600)
    found = perf.needed_replicas(situation(), {"demand": demand(level=100, slope=10)})
    assert found is not None
    count, _, peak = found
    assert peak > 390.0  # the last sample is 390/s and demand keeps rising over the start-up horizon
    assert count == math.ceil(peak / 70.0)


# --- utility -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [280.0, 300.0, 650.0], ids=["need-4", "need-5", "need-10"])
def test_utility_is_one_at_or_above_need_and_strictly_increasing_below(level: float) -> None:
    perf = agent()
    evidence = {"demand": demand(level=level)}
    need = needed(perf, evidence)
    proposal = perf.propose(situation(), CANDIDATES, evidence)
    below = [proposal.utility(c) for c in CANDIDATES if c.replicas < need]
    assert all(proposal.utility(c) == 1.0 for c in CANDIDATES if c.replicas >= need)
    assert all(a < b for a, b in pairwise(below)), below
    assert below[0] == 0.0  # zero pods serve nothing
    assert all(0.0 <= u < 1.0 for u in below)
    assert proposal.vetoes == {}


def test_a_need_beyond_every_candidate_makes_the_largest_the_ideal() -> None:
    perf = agent()
    evidence = {"demand": demand(level=10_000.0)}  # about 143 pods at 70% of 100/s
    assert needed(perf, evidence) > 20
    candidates = counts(5, 10, 15, 19, 20)
    proposal = perf.propose(situation(), candidates, evidence)
    assert proposal.ideal == Candidate(20, "standard")
    assert proposal.utility(Candidate(20, "standard")) == 1.0
    scores = [proposal.utility(c) for c in candidates]
    assert scores == sorted(scores)
    assert proposal.utility(Candidate(19, "standard")) > 0.5  # one pod short of the most is not worthless
    assert "at most 20 pods" in proposal.rationale


def test_one_pod_short_is_much_worse_than_enough() -> None:
    proposal = agent().propose(situation(), CANDIDATES, {"demand": demand(level=280)})  # needs 4
    assert proposal.utility(Candidate(3, "standard")) < 0.2
    assert proposal.utility(Candidate(4, "standard")) == 1.0


def test_no_demand_makes_every_count_acceptable() -> None:
    proposal = agent().propose(situation(), CANDIDATES, {"demand": demand(level=0)})
    assert {proposal.utility(c) for c in CANDIDATES} == {1.0}


def test_ideal_is_enough_pods_closest_to_the_current_count() -> None:
    rising = agent().propose(situation(replicas=4), CANDIDATES, {"demand": demand(level=300, slope=10)})
    assert rising.ideal == Candidate(9, "standard")
    falling = agent().propose(situation(replicas=4), CANDIDATES, {"demand": demand(level=300, slope=-5)})
    assert falling.ideal == Candidate(4, "standard")  # 3 would do; the agent does not ask to move for nothing


# --- confidence ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "stale_after", "expected"),
    [
        pytest.param(0.0, 180, 1.0, id="fresh"),
        pytest.param(60.0, 180, 1.0, id="a-third-of-stale-after"),
        pytest.param(120.0, 180, 0.5, id="two-thirds"),
        pytest.param(180.0, 180, 0.0, id="at-stale-after"),
        pytest.param(181.0, 180, 0.0, id="just-stale"),
        pytest.param(3600.0, 180, 0.0, id="an-hour-old"),
        pytest.param(181.0, 600, 1.0, id="longer-stale-after"),
    ],
)
def test_confidence_falls_with_age_to_zero_when_stale(age: float, stale_after: int, expected: float) -> None:
    perf = agent(stale_after_seconds=stale_after)
    proposal = perf.propose(situation(), CANDIDATES, {"demand": demand(level=300, age=age)})
    assert proposal.confidence == pytest.approx(expected)
    assert proposal.metrics_missing is False


def test_thin_evidence_gives_less_confidence_than_plenty() -> None:
    perf = agent()
    confidences = [
        perf.propose(situation(), CANDIDATES, {"demand": demand(level=300, minutes=n)}).confidence
        for n in (1, 2, 3, 5, 10, 30)
    ]
    assert confidences[2] < confidences[5]  # 3 samples vs 30
    assert confidences == sorted(confidences)
    assert confidences[5] == 1.0
    assert confidences[2] == pytest.approx(0.3)


def test_noisy_demand_gives_less_confidence_than_smooth() -> None:
    perf = agent()
    smooth = perf.propose(situation(), CANDIDATES, {"demand": demand([300.0] * 30)})
    noisy = perf.propose(situation(), CANDIDATES, {"demand": demand([100.0, 500.0] * 15)})
    assert 0.5 <= noisy.confidence < smooth.confidence == 1.0


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param({}, id="no-evidence"),
        pytest.param({"demand": Evidence.absent("demand", Source.PROMETHEUS, "q")}, id="absent"),
        pytest.param({"demand": series_evidence("demand", ())}, id="empty-series"),
        pytest.param({"demand": series_evidence("demand", [(NOW + 60, 300.0)])}, id="only-future-samples"),
        pytest.param({"latency": latency(0.5)}, id="latency-without-demand"),
    ],
)
def test_missing_demand_is_flagged_with_zero_confidence(evidence: EvidenceSet) -> None:
    proposal = agent(latency_target_seconds=0.2).propose(situation(), CANDIDATES, evidence)
    assert proposal.metrics_missing is True
    assert proposal.confidence == 0.0
    assert proposal.prediction is None
    assert "no demand" in proposal.rationale
    assert {proposal.utility(c) for c in CANDIDATES} == {1.0}  # no opinion rather than a wrong one
    assert agent().wishes(situation(), evidence) == ()


# --- latency -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "observed", "ready", "expected"),
    [
        pytest.param(0.2, 0.4, 4, 8, id="twice-the-target-doubles-ready-pods"),
        pytest.param(0.2, 0.3, 4, 6, id="one-and-a-half-times"),
        pytest.param(0.2, 0.1, 4, 2, id="under-target-demand-decides"),
        pytest.param(0.2, 0.2, 4, 2, id="at-target-demand-decides"),
        pytest.param(None, 5.0, 4, 2, id="no-latency-target"),
        pytest.param(0.2, 0.4, 0, 2, id="no-ready-pods"),
        pytest.param(0.2, 0.21, 1, 2, id="latency-asks-less-than-demand"),
    ],
)
def test_latency_above_target_asks_for_more_pods(
    target: float | None, observed: float, ready: int, expected: int
) -> None:
    perf = agent(latency_target_seconds=target)
    evidence = {"demand": demand(level=100), "latency": latency(observed)}  # demand alone needs 2
    assert needed(perf, evidence, ready=ready) == expected


def test_latency_reason_is_in_the_rationale() -> None:
    perf = agent(latency_target_seconds=0.2)
    proposal = perf.propose(situation(), CANDIDATES, {"demand": demand(level=100), "latency": latency(0.4)})
    assert "latency 400ms is above its 200ms target" in proposal.rationale
    assert proposal.ideal == Candidate(8, "standard")


# --- seasonality ---------------------------------------------------------------------------------------------------


def seasonal_evidence(now: float, perf: PerformanceAgent, history: Sequence[tuple[float, float]]) -> EvidenceSet:
    """What the caller would fetch for the agent's two range requests out of a longer history."""
    horizon = perf.horizon(30.0)
    recent = [p for p in history if now - perf.settings.history_seconds <= p[0] <= now]
    day_ago = [p for p in history if now - DAY - 600 <= p[0] <= now - DAY + horizon + 600]
    return {"demand": series_evidence("demand", recent), "demand_day_ago": series_evidence("demand_day_ago", day_ago)}


def test_daily_history_anticipates_the_rise_after_the_trough() -> None:
    # daily() bottoms out at 18:00 UTC; half an hour later the rise is still slow, yesterday shows it steepen.
    now = NOW + 3 * 3600 + 1800 - 400  # 18:30 UTC on the factories' Sunday
    perf = agent(startup_seconds=1800)
    evidence = seasonal_evidence(now, perf, daily(now=now))
    horizon = perf.horizon(30.0)
    seasonal = forecast_peak(
        evidence["demand"].series, now=now, horizon_seconds=horizon, day_ago=evidence["demand_day_ago"].series
    )
    trend_only = forecast_peak(evidence["demand"].series, now=now, horizon_seconds=horizon)
    assert seasonal is not None
    assert trend_only is not None
    assert seasonal.seasonal_peak is not None
    assert trend_only.seasonal_peak is None
    assert seasonal.peak > trend_only.peak
    with_seasonality = needed(perf, evidence, now=now)
    without = needed(agent(startup_seconds=1800, seasonality=False), evidence, now=now)
    assert with_seasonality > without


def test_yesterdays_morning_rush_is_anticipated() -> None:
    """Two days of 100/s with a rush to 1000/s from 08:00 to 10:00 UTC; it is 07:58 and all is quiet."""
    rush_start = NOW - NOW % DAY + 8 * 3600  # 2025-06-15 08:00 UTC
    now = rush_start - 120
    history = [
        (t, 1000.0 if (t - rush_start) % DAY < 2 * 3600 else 100.0)
        for t in (now - 60.0 * i for i in range(2 * 1440, -1, -1))
    ]
    perf = agent()
    evidence = seasonal_evidence(now, perf, history)
    assert evidence["demand"].value == 100.0
    assert needed(agent(seasonality=False), evidence, now=now) == 2
    assert needed(perf, evidence, now=now) == 15  # 1000/s at 70/s per pod
    proposal = perf.propose(situation(now=now), CANDIDATES, evidence)
    assert "yesterday's peak 1000.0/s" in proposal.rationale
    assert proposal.ideal == Candidate(15, "standard")


def test_seasonality_off_ignores_yesterday() -> None:
    now = NOW + 3 * 3600 + 1800 - 400
    perf = agent(seasonality=False)
    evidence = seasonal_evidence(now, perf, daily(now=now))
    proposal = perf.propose(situation(now=now), CANDIDATES, evidence)
    assert "yesterday" not in proposal.rationale


# --- prediction, evidence, purity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("startup", "interval"), [(120, 30.0), (0, 15.0), (600, 60.0)])
def test_a_prediction_of_the_demand_peak_is_attached(startup: int, interval: float) -> None:
    perf = agent(startup_seconds=startup)
    evidence = {"demand": demand(level=300, slope=2)}
    proposal = perf.propose(situation(interval=interval), CANDIDATES, evidence)
    found = perf.needed_replicas(situation(interval=interval), evidence)
    assert found is not None
    assert proposal.prediction is not None
    assert proposal.prediction.quantity == "demand_peak"
    assert proposal.prediction.value == pytest.approx(found[2])
    assert proposal.prediction.horizon_seconds == startup + interval


def test_proposal_carries_the_evidence_it_used() -> None:
    price = Evidence(name="price:standard", source=Source.PROMETHEUS, value=0.1, timestamp=NOW, samples=1)
    evidence = {"demand": demand(level=300), "latency": latency(0.1), "price:standard": price}
    proposal = agent().propose(situation(), CANDIDATES, evidence)
    assert proposal.evidence == (evidence["demand"], evidence["latency"])


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        pytest.param({}, ["demand", "demand_day_ago"], id="defaults"),
        pytest.param({"seasonality": False}, ["demand"], id="no-seasonality"),
        pytest.param(
            {"latency_query": "histogram_quantile(0.99, x)"}, ["demand", "demand_day_ago", "latency"], id="lat"
        ),
    ],
)
def test_evidence_needed(settings: dict[str, Any], names: list[str]) -> None:
    requests = {r.name: r for r in agent(**settings).evidence_needed()}
    assert sorted(requests) == names
    assert requests["demand"].kind is QueryKind.RANGE
    assert requests["demand"].window_seconds == 3600
    assert requests["demand"].query == DEFAULT_DEMAND_QUERY
    if "demand_day_ago" in requests:
        assert requests["demand_day_ago"].offset_seconds == DAY
        assert requests["demand_day_ago"].extend_seconds >= agent().horizon(0.0)


def test_custom_demand_query_is_requested() -> None:
    perf = agent(demand_query='sum(rate(x{ns="$namespace"}[1m]))', history_seconds=7200)
    (demand_request, day_ago) = perf.evidence_needed()
    assert demand_request.query == day_ago.query == 'sum(rate(x{ns="$namespace"}[1m]))'
    assert demand_request.window_seconds == 7200


def test_same_inputs_give_the_same_proposal() -> None:
    evidence = {"demand": demand(level=320, slope=3)}
    assert agent().propose(situation(), CANDIDATES, evidence) == agent().propose(situation(), CANDIDATES, evidence)


def test_one_demand_series_read_at_two_moments_is_forecast_for_each() -> None:
    """A caller may hand the same evidence for two moments in one batch: each gets its own forecast."""
    series = demand(level=500.0, slope=40.0, minutes=40, now=NOW)
    early, late = situation(now=NOW - 600.0), situation(now=NOW)
    together = agent().needs([early, late], [{"demand": series}, {"demand": series}])
    alone = [agent().needs([s], [{"demand": series}])[0] for s in (early, late)]
    assert together == alone
    assert together[0] is not None and together[1] is not None
    assert together[0].forecast != together[1].forecast  # the early moment does not see the last ten minutes


def test_a_need_beyond_any_count_is_met_with_the_most_pods_without_overflowing() -> None:
    huge = demand(level=1e22, minutes=20)
    candidates = [Candidate(r, "standard") for r in (1, 10, 100)]
    proposal = agent().propose(situation(replicas=10), candidates, {"demand": huge})
    assert proposal.ideal == Candidate(100, "standard")


# --- the floor the demand observed now sets -------------------------------------------------------------------------


def test_the_floor_is_reported_per_workload_of_a_batch_from_fresh_evidence_only() -> None:
    perf = agent(target_utilisation=0.5, slo_utilisation=0.5, stale_after_seconds=180)
    sits = [situation(replicas=8), situation(replicas=8), situation(replicas=8), situation(replicas=8, ready=4)]
    evidence: list[EvidenceSet] = [
        {"demand": demand([300.0] * 29 + [900.0])},  # the latest sample, not the forecast: 900/s at 50/s a pod
        {"demand": demand([900.0] * 30, age=181.0)},  # stale: no floor
        {"demand": Evidence.absent("demand", Source.PROMETHEUS)},  # missing: no floor
        {"demand": demand([250.0] * 30)},  # 5 pods would do, but 4 of 8 ready run at 62.5%: keep the 8
    ]
    board = Board.of([counts(*range(1, 30))] * 4, [s.current for s in sits])
    scores = perf.propose_many(sits, board, evidence)
    assert scores.floor is not None
    assert scores.floor.replicas.tolist() == [18, 0, 0, 8]
    assert "900.0/s, needs 18 pods at the SLO utilisation of 50.0%" in scores.floor.why(0)
    assert "the 4 ready pods run at 62%, above it: no fewer than the current 8" in scores.floor.why(3)
    assert "no decision goes below that" in scores.explain(0).rationale
    assert "no decision goes below" not in scores.explain(1).rationale
