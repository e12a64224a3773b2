"""Demand forecasting: Holt's trend, the seasonal-naive correction from yesterday, and the peak over a horizon."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.agents.forecast import DAY, Query, forecast_peak, forecast_peaks, holt, median_step
from tests.factories import NOW


def line(start: float, slope: float, n: int = 30, *, step: float = 60.0, end: float = NOW) -> list[tuple[float, float]]:
    """n samples of start + slope*i, one every `step` seconds, the last at `end`."""
    return [(end - step * (n - 1 - i), start + slope * i) for i in range(n)]


# --- holt ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "slope", "n"),
    [
        pytest.param(100.0, 0.0, 20, id="flat"),
        pytest.param(100.0, 5.0, 20, id="rising"),
        pytest.param(500.0, -7.5, 40, id="falling"),
        pytest.param(0.0, 0.25, 3, id="two-steps"),
        pytest.param(1e6, 1e3, 100, id="large"),
    ],
)
def test_holt_on_a_straight_line_gives_the_slope_and_no_residual(start: float, slope: float, n: int) -> None:
    values = [start + slope * i for i in range(n)]
    level, trend, std = holt(values)
    assert trend == pytest.approx(slope)
    assert level == pytest.approx(values[-1])
    assert std == pytest.approx(0.0, abs=1e-6 * max(1.0, abs(start)))


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.3), (0.9, 0.1), (0.1, 0.9)])
def test_holt_line_result_does_not_depend_on_smoothing(alpha: float, beta: float) -> None:
    level, trend, std = holt([10.0 + 3.0 * i for i in range(10)], alpha=alpha, beta=beta)
    assert (level, trend, std) == pytest.approx((37.0, 3.0, 0.0))


def test_holt_single_value() -> None:
    assert holt([42.0]) == (42.0, 0.0, 0.0)


def test_holt_residuals_grow_with_noise() -> None:
    _, _, smooth = holt([100.0] * 20)
    _, _, noisy = holt([100.0, 140.0] * 10)
    assert smooth == 0.0
    assert noisy > 10.0


# --- median step ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        pytest.param([0, 60, 120, 180], 60.0, id="regular"),
        pytest.param([0, 30, 60, 90, 400], 30.0, id="one-gap"),
        pytest.param([0, 15, 15, 30], 15.0, id="duplicate-timestamp-ignored"),
        pytest.param([0], 60.0, id="single-sample-defaults-to-a-minute"),
        pytest.param([], 60.0, id="empty"),
    ],
)
def test_median_step(times: list[float], expected: float) -> None:
    assert median_step([(t, 1.0) for t in times]) == expected


# --- forecast_peak -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([], id="empty"),
        pytest.param([(NOW + 60, 100.0)], id="only-future-samples"),
        pytest.param([(NOW - 60, math.nan), (NOW, math.inf)], id="only-non-finite"),
    ],
)
def test_no_forecast_without_usable_history(history: list[tuple[float, float]]) -> None:
    assert forecast_peak(history, now=NOW, horizon_seconds=150) is None


def test_straight_line_forecast() -> None:
    fc = forecast_peak(line(100.0, 6.0), now=NOW, horizon_seconds=300)
    assert fc is not None
    assert fc.level == pytest.approx(274.0)  # 100 + 6*29
    assert fc.trend_per_second == pytest.approx(6.0 / 60.0)
    assert fc.residual_std == pytest.approx(0.0, abs=1e-9)
    assert fc.peak == pytest.approx(274.0 + 6.0 * 5)  # five steps ahead
    assert fc.samples == 30
    assert fc.step_seconds == 60.0
    assert fc.seasonal_peak is None
    assert fc.noise == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("history", "horizon"),
    [
        pytest.param(line(500.0, -10.0), 600, id="falling-line"),
        pytest.param([(NOW - 120, 100.0), (NOW - 60, 100.0), (NOW, 400.0)], 60, id="sudden-jump"),
        pytest.param([(NOW - 60.0 * i, 50.0 * (i % 2)) for i in range(30, -1, -1)], 120, id="zigzag"),
        pytest.param(line(1000.0, -40.0), 3600, id="steep-fall-long-horizon"),
    ],
)
def test_forecast_is_never_below_the_last_observation(history: list[tuple[float, float]], horizon: float) -> None:
    fc = forecast_peak(history, now=NOW, horizon_seconds=horizon)
    assert fc is not None
    assert fc.peak >= history[-1][1]


def test_future_and_non_finite_samples_are_ignored() -> None:
    history = [*line(200.0, 0.0, 10), (NOW + 60, 9999.0)]
    history.insert(3, (NOW - 400, math.nan))
    fc = forecast_peak(history, now=NOW, horizon_seconds=120)
    assert fc is not None
    assert fc.samples == 10
    assert fc.peak == pytest.approx(200.0)


def test_negative_demand_is_treated_as_zero() -> None:
    fc = forecast_peak(line(-50.0, 0.0, 10), now=NOW, horizon_seconds=120)
    assert fc is not None
    assert fc.peak == 0.0
    assert fc.level == 0.0


def test_noise_adds_a_margin() -> None:
    smooth = forecast_peak(line(300.0, 0.0), now=NOW, horizon_seconds=120)
    rng = random.Random(4)
    noisy_history = [(t, 300.0 + rng.gauss(0.0, 30.0)) for t, _ in line(0.0, 0.0, 60)]
    noisy = forecast_peak(noisy_history, now=NOW, horizon_seconds=120)
    assert smooth is not None
    assert noisy is not None
    assert noisy.residual_std > 0.0
    assert noisy.margin > 0.0
    assert noisy.peak > max(v for _, v in noisy_history[-5:])  # above what the last few minutes saw
    assert noisy.peak > smooth.peak == pytest.approx(300.0)


def test_a_regular_zigzag_is_learnt_rather_than_covered_as_noise() -> None:
    """Misses after a fall and after a rise are judged apart: a pattern that always rebounds by the
    same amount is forecast, not treated as noise needing a reserve on both sides."""
    zigzag = [(t, 300.0 + (30.0 if i % 2 else -30.0)) for i, (t, _) in enumerate(line(0.0, 0.0, 60))]
    after_rise = forecast_peak(zigzag, now=NOW, horizon_seconds=120)  # ends on 330
    after_fall = forecast_peak(zigzag[:-1], now=NOW - 60, horizon_seconds=120)  # ends on 270
    assert after_rise is not None
    assert after_fall is not None
    assert after_rise.peak == pytest.approx(330.0)
    assert 330.0 <= after_fall.peak <= 335.0  # the rebound is expected, and little more


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60),
    horizon=st.floats(min_value=0, max_value=7200),
)
def test_peak_is_never_below_the_last_observation_nor_negative(values: list[float], horizon: float) -> None:
    history = [(NOW - 60.0 * (len(values) - 1 - i), v) for i, v in enumerate(values)]
    fc = forecast_peak(history, now=NOW, horizon_seconds=horizon)
    assert fc is not None
    assert fc.peak >= max(0.0, values[-1]) - 1e-6 * max(1.0, abs(values[-1]))
    assert fc.peak >= 0.0
    assert fc.samples == len(values)


# --- seasonality ---------------------------------------------------------------------------------------------------


def yesterday(before: float, ahead: float, *, horizon: float = 600) -> list[tuple[float, float]]:
    """Yesterday around this time: `before` for the ten minutes before, `ahead` over the horizon after."""
    anchor = NOW - DAY
    return [(anchor - 600 + 60 * i, before) for i in range(11)] + [
        (anchor + 60 * i, ahead) for i in range(1, int(horizon // 60) + 1)
    ]


@pytest.mark.parametrize(
    ("today", "before", "ahead", "expected"),
    [
        pytest.param(100.0, 100.0, 400.0, 400.0, id="same-level-as-yesterday"),
        pytest.param(200.0, 100.0, 400.0, 800.0, id="twice-yesterday"),
        pytest.param(50.0, 100.0, 400.0, 200.0, id="half-yesterday"),
        pytest.param(1000.0, 100.0, 400.0, 1600.0, id="ratio-capped-at-4"),
        pytest.param(10.0, 100.0, 400.0, 100.0, id="ratio-floored-at-a-quarter"),
    ],
)
def test_seasonal_peak_scales_yesterday_by_todays_level(
    today: float, before: float, ahead: float, expected: float
) -> None:
    fc = forecast_peak(line(today, 0.0), now=NOW, horizon_seconds=600, day_ago=yesterday(before, ahead))
    assert fc is not None
    assert fc.seasonal_peak == pytest.approx(expected)
    assert fc.peak == pytest.approx(max(today, expected))


@pytest.mark.parametrize(
    "day_ago",
    [
        pytest.param([], id="no-history"),
        pytest.param(yesterday(100.0, 400.0)[:11], id="nothing-ahead"),
        pytest.param(yesterday(100.0, 400.0)[11:], id="nothing-before"),
        pytest.param(yesterday(0.0, 400.0), id="yesterday-was-zero"),
    ],
)
def test_no_seasonal_peak_without_both_sides_of_yesterday(day_ago: list[tuple[float, float]]) -> None:
    fc = forecast_peak(line(100.0, 0.0), now=NOW, horizon_seconds=600, day_ago=day_ago)
    assert fc is not None
    assert fc.seasonal_peak is None
    assert fc.peak == pytest.approx(100.0)


def test_yesterday_beyond_the_horizon_is_not_anticipated() -> None:
    day_ago = [*yesterday(100.0, 100.0), (NOW - DAY + 3600, 5000.0)]
    fc = forecast_peak(line(100.0, 0.0), now=NOW, horizon_seconds=600, day_ago=day_ago)
    assert fc is not None
    assert fc.seasonal_peak == pytest.approx(100.0)


def test_a_quieter_yesterday_does_not_lower_the_trend_forecast() -> None:
    trend_only = forecast_peak(line(100.0, 10.0), now=NOW, horizon_seconds=600)
    seasonal = forecast_peak(line(100.0, 10.0), now=NOW, horizon_seconds=600, day_ago=yesterday(390.0, 10.0))
    assert trend_only is not None
    assert seasonal is not None
    assert seasonal.seasonal_peak is not None
    assert seasonal.seasonal_peak < trend_only.peak
    assert seasonal.peak == pytest.approx(trend_only.peak)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=1, max_size=30),
    before=st.floats(min_value=0, max_value=1e5),
    ahead=st.floats(min_value=0, max_value=1e5),
    horizon=st.floats(min_value=0, max_value=3600),
)
def test_any_history_length_with_yesterday_gives_a_forecast(
    values: list[float], before: float, ahead: float, horizon: float
) -> None:
    """A short history (fewer samples than the horizon has steps) beside a full yesterday: a startup
    of several minutes with a workload that has just appeared, or Prometheus restarted."""
    history = [(NOW - 60.0 * (len(values) - 1 - i), v) for i, v in enumerate(values)]
    day_ago = [(NOW - DAY - 3600 + 60.0 * i, before if i <= 60 else ahead) for i in range(61 + int(horizon // 60) + 2)]
    fc = forecast_peak(history, now=NOW, horizon_seconds=horizon, day_ago=day_ago)
    assert fc is not None
    assert fc.peak >= values[-1] - 1e-6 * max(1.0, values[-1])
    assert fc.samples == len(values)


# --- many series at once -------------------------------------------------------------------------------------------


def test_a_forecast_does_not_depend_on_the_series_forecast_beside_it() -> None:
    """Series of every length, horizon and yesterday (shifted sample times, gaps, nothing) forecast in
    one batch give exactly what each gives alone."""
    rng = random.Random(11)
    queries = []
    for i in range(60):
        n = rng.choice([1, 2, 5, 30, 60, 90])
        now = NOW + 15.0 * (i % 4)
        values = [rng.uniform(0.0, 500.0) + (40.0 * k if i % 3 == 0 else 0.0) for k in range(n)]
        history = [(now - 60.0 * (n - 1 - k), v) for k, v in enumerate(values)]
        if i % 7 == 0:
            history[n // 2] = (history[n // 2][0], math.nan)
        day_ago: list[tuple[float, float]] = []
        if i % 2:
            shift = 7.0 * i  # every series' yesterday on its own sample times
            day_ago = [(now - DAY - 3600 + shift + 60.0 * k, rng.uniform(50.0, 400.0)) for k in range(0, 90, 1 + i % 3)]
        queries.append(Query(history, now, rng.choice([0.0, 90.0, 600.0]), day_ago))
    together = forecast_peaks(queries)
    alone = [forecast_peak(q.history, now=q.now, horizon_seconds=q.horizon_seconds, day_ago=q.day_ago) for q in queries]
    assert together == alone
    assert any(f is not None and f.seasonal_peak is not None for f in together)
