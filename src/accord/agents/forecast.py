"""Demand forecasting for the performance agent (agents layer, pure).

The forecast is of the peak demand over a horizon (pods asked for now serve only once they have
started), as an expected value and an upper bound:

- **Expected peak.** Four simple predictors run over the recent history: Holt's linear method
  (level and trend, exponentially smoothed), the latest step's slope carried on, a smoothed level
  (for noise around a level) and the latest value. Each is replayed over the history it would
  have had at every past sample, and its misses (the peak that followed minus what it predicted)
  are kept. The predictor that asked for the least capacity once its margin is added wins: the
  data choose the model, as in any backtested model selection, and no predictor is assumed. A
  ratio-adjusted seasonal-naive forecast from the same time a day earlier raises the expectation
  when yesterday's history is there and has earned it: when, over the same recent samples,
  raising the forecast to yesterday's would have asked for no more capacity at the same
  coverage (yesterday's noise is no forecast of today's). No predictor forecasts below the
  latest observation: it is certain to have happened, while a fall is only believed once seen.
- **Margin.** The `QUANTILE` of the winner's recent misses (an empirical, conformal-style bound:
  no distribution is assumed), taken over the past samples in the same state as now, after a fall
  or not, once there are `MIN_ALIKE` of them: a forecast made in a dip misses the rebound, one made
  on a rise does not, and pooling the two would under-cover the first and over-cover the second.
  The upper bound is the expected peak plus that margin. Until a horizon's worth of history
  exists, the standard deviation of Holt's one-step residuals stands in.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

DAY = 86_400.0
# The share of past peaks the upper bound would have covered: misses above it are what the
# performance agent's headroom over its target is for. Chosen from replays of fifteen public demand
# traces (NAB's, and three synthetic ones), not fitted to any one of them.
QUANTILE = 0.8
# Weight of the newest sample in the smoothed level: about the last five samples count.
LEVEL_SMOOTHING = 0.2
# Past forecasts the predictors are judged on (at most; one per sample of history).
BACKTEST = 120
PREDICTORS = ("holt", "slope", "level", "last")
# Past samples in the same state as now needed before the margin is taken from them alone.
MIN_ALIKE = 10


@dataclass(frozen=True, slots=True)
class Forecast:
    peak: float  # demand expected at most over the horizon, margin included (the upper bound)
    level: float  # Holt's smoothed current demand
    trend_per_second: float
    residual_std: float  # root mean square of the chosen predictor's misses (Holt's one-step residuals at first)
    seasonal_peak: float | None
    samples: int
    step_seconds: float
    expected: float = 0.0  # the expected peak over the horizon, before the margin
    margin: float = 0.0  # peak - expected, unless the latest observation is higher
    method: str = "holt"  # the predictor the history chose

    @property
    def noise(self) -> float:
        """Coefficient of variation of the residuals: 0 for a smooth series."""
        return self.residual_std / max(self.level, 1e-9)


def median_step(series: Sequence[tuple[float, float]]) -> float:
    gaps = sorted(b[0] - a[0] for a, b in pairwise(series) if b[0] > a[0])
    return gaps[len(gaps) // 2] if gaps else 60.0


def holt(values: Sequence[float], *, alpha: float = 0.5, beta: float = 0.3) -> tuple[float, float, float]:
    """Level, trend per step and the standard deviation of one-step-ahead residuals."""
    paths = predictions(values, 1.0, alpha=alpha, beta=beta)
    return paths.level, paths.trend, paths.residual_std


@dataclass(frozen=True, slots=True)
class Paths:
    """Every predictor's forecast at every sample, with Holt's state: one pass over the history."""

    by_predictor: tuple[list[float], ...]  # in the order of `PREDICTORS`
    levels: list[float]  # Holt's level at every sample
    level: float  # Holt's level and trend per step after the last sample
    trend: float
    residual_std: float  # of Holt's one-step-ahead residuals


def predictions(values: Sequence[float], steps_ahead: float, *, alpha: float = 0.5, beta: float = 0.3) -> Paths:
    """For every sample i, each predictor's expected peak over the next `steps_ahead` steps, from values[: i + 1].

    Every prediction is at least the sample it was made at.
    """
    first = values[0]
    level = first
    trend = (values[1] - first) if len(values) > 1 else 0.0
    smooth = first
    previous = first
    squares = 0.0
    by_holt: list[float] = []
    by_slope: list[float] = []
    by_level: list[float] = []
    levels: list[float] = []
    # The inner loop of every forecast: plain comparisons rather than max() calls.
    for i, value in enumerate(values):
        if i:
            predicted = level + trend
            miss = value - predicted
            squares += miss * miss
            new_level = alpha * value + (1 - alpha) * predicted
            trend = beta * (new_level - level) + (1 - beta) * trend
            level = new_level
            smooth += LEVEL_SMOOTHING * (value - smooth)
        levels.append(level)
        ahead = level + trend * steps_ahead if trend > 0 else level
        by_holt.append(ahead if ahead > value else value)
        rise = value - previous
        by_slope.append(value + rise * steps_ahead if rise > 0 else value)
        by_level.append(smooth if smooth > value else value)
        previous = value
    std = math.sqrt(squares / (len(values) - 1)) if len(values) > 1 else 0.0
    return Paths((by_holt, by_slope, by_level, list(values)), levels, level, trend, std)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The empirical q-quantile of sorted values (the value at index floor(q n), capped at the last)."""
    return ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a predictor would have asked for at past samples, against the peaks that followed."""

    asked: float  # mean prediction plus margin: the capacity it would have asked for, on average
    margin: float  # the quantile of its misses
    misses: list[float]  # in sample order

    @property
    def spread(self) -> float:
        """The root mean square of the misses."""
        return math.sqrt(sum(m * m for m in self.misses) / len(self.misses))


def backtest(
    predicted: Sequence[float],
    ahead: Sequence[float],
    q: float,
    falling: Sequence[bool] = (),
    now_falling: bool = False,
) -> Backtest:
    """Misses of `predicted` against the peaks `ahead`, and the margin: the q-quantile of the misses at
    past samples in the same state as now (after a fall, or not), when there are enough of them.

    Misses are not alike everywhere: after a fall the next peak is often a rebound, which a forecast
    made there misses by more than one made while demand rises. Taking the margin from like samples
    (a Mondrian, or class-conditional, conformal bound) keeps capacity through a dip that is likely
    to come back, without adding that reserve where it is not needed."""
    misses = [a - p for a, p in zip(ahead, predicted, strict=True)]
    alike = [m for m, f in zip(misses, falling, strict=True) if f is now_falling] if falling else []
    margin = quantile(sorted(alike if len(alike) >= MIN_ALIKE else misses), q)
    return Backtest(asked=sum(predicted) / len(predicted) + margin, margin=margin, misses=misses)


def window(n: int, horizon_steps: int) -> range:
    """The samples a backtest can judge: those whose whole horizon has been seen, from the second on
    (a slope needs two samples, and Holt's first trend is read off the second)."""
    last = n - 1 - horizon_steps
    return range(max(1, last - BACKTEST + 1), last + 1)


def choose(
    paths: Sequence[Sequence[float]],
    ahead: Sequence[float],
    judged: range,
    q: float,
    falling: Sequence[bool] = (),
    now_falling: bool = False,
) -> tuple[int, Backtest]:
    """The predictor asking for the least capacity, margin included, over the samples `judged`."""
    best: tuple[int, Backtest] | None = None
    for index, path in enumerate(paths):
        result = backtest(path[judged.start : judged.stop], ahead, q, falling, now_falling)
        if best is None or result.asked < best[1].asked - 1e-9 * max(1.0, abs(best[1].asked)):
            best = (index, result)
    assert best is not None
    return best


def forecast_peak(
    history: Sequence[tuple[float, float]],
    *,
    now: float,
    horizon_seconds: float,
    day_ago: Sequence[tuple[float, float]] = (),
    margin_sigmas: float = 1.0,
    quantile_level: float = QUANTILE,
) -> Forecast | None:
    """Peak demand over (now, now + horizon]; None without history.

    `margin_sigmas` scales the margin (1: the `quantile_level` of recent misses as it is).
    """
    points = [(t, v) for t, v in history if t <= now and math.isfinite(v)]
    if not points:
        return None
    values = [max(0.0, v) for _, v in points]
    step = median_step(points)
    steps_ahead = max(1.0, horizon_seconds / step)
    horizon_steps = math.ceil(steps_ahead - 1e-9)
    run = predictions(values, steps_ahead)
    paths, levels, level, trend, std = run.by_predictor, run.levels, run.level, run.trend, run.residual_std
    judged = window(len(values), horizon_steps)
    ahead = [max(values[i + 1 : i + 1 + horizon_steps]) for i in judged]
    method, margin, spread = 0, std, std  # until a horizon of history exists, Holt's residuals stand in
    falling = [values[i] < values[i - 1] for i in judged]
    now_falling = len(values) > 1 and values[-1] < values[-2]
    if judged:
        method, result = choose(paths, ahead, judged, quantile_level, falling, now_falling)
        margin, spread = result.margin, result.spread
    expected = paths[method][-1]
    past = Yesterday.of(day_ago) if day_ago else None
    seasonal = None if past is None else _seasonal_peak(past, now=now, horizon_seconds=horizon_seconds, level=level)
    if seasonal is not None and past is not None:
        # Until a horizon of history exists, nothing can judge yesterday: it has its say.
        include, combined = True, None
        if judged:
            include, combined = _judge_seasonal(
                past,
                times=[points[i][0] for i in judged],
                levels=levels[judged.start : judged.stop],
                chosen=paths[method][judged.start : judged.stop],
                ahead=ahead,
                falling=falling,
                now_falling=now_falling,
                horizon_seconds=horizon_seconds,
                q=quantile_level,
            )
        if not include:
            seasonal = None
        else:
            expected = max(expected, seasonal)
            if combined is not None:
                margin, spread = combined.margin, combined.spread
    peak = max(values[-1], expected + margin_sigmas * margin)
    return Forecast(
        peak=peak,
        level=level,
        trend_per_second=trend / step,
        residual_std=spread,
        seasonal_peak=seasonal,
        samples=len(values),
        step_seconds=step,
        expected=expected,
        margin=peak - expected,
        method=PREDICTORS[method],
    )


@dataclass(frozen=True, slots=True)
class Yesterday:
    """Yesterday's finite samples in time order, with prefix sums for window means."""

    stamps: list[float]
    values: list[float]
    sums: list[float]

    @classmethod
    def of(cls, day_ago: Sequence[tuple[float, float]]) -> Yesterday:
        kept = [(t, v) for t, v in day_ago if math.isfinite(v)]
        if any(a[0] > b[0] for a, b in pairwise(kept)):
            kept.sort()
        values = [v for _, v in kept]
        return cls([t for t, _ in kept], values, [0.0, *accumulate(values)])

    def windows(self, moments: Sequence[float], horizon_seconds: float) -> list[tuple[float, float] | None]:
        """At each moment a day ago: the mean over the ten minutes up to it and the peak over the
        horizon after it (None where either side is empty)."""
        stamps, values, sums = self.stamps, self.values, self.sums
        found: list[tuple[float, float] | None] = []
        for moment in moments:
            anchor = moment - DAY
            lo = bisect_left(stamps, anchor - 600)
            mid = bisect_right(stamps, anchor, lo)
            hi = bisect_right(stamps, anchor + horizon_seconds, mid)
            found.append(None if lo >= mid or mid >= hi else ((sums[mid] - sums[lo]) / (mid - lo), max(values[mid:hi])))
        return found


def _judge_seasonal(
    yesterday: Yesterday,
    *,
    times: Sequence[float],
    levels: Sequence[float],
    chosen: Sequence[float],
    ahead: Sequence[float],
    falling: Sequence[bool],
    now_falling: bool,
    horizon_seconds: float,
    q: float,
) -> tuple[bool, Backtest | None]:
    """Whether yesterday has earned a say, and the backtest of the chosen forecast raised to yesterday's.

    It has if, over the recent samples, raising the chosen forecast to yesterday's would have asked
    for no more capacity at the same coverage; and, until three recent samples have a yesterday to
    be judged by, it has too (with no backtest).
    """
    alone: list[float] = []  # the chosen forecast, and raised to yesterday's, at each judged sample
    raised: list[float] = []
    peaks: list[float] = []
    fell: list[bool] = []
    for found, lvl, c, a, f in zip(
        yesterday.windows(times, horizon_seconds), levels, chosen, ahead, falling, strict=True
    ):
        if found is None or found[0] <= 0:
            continue
        base, peak = found
        ratio = lvl / base
        s = peak * (4.0 if ratio > 4.0 else 0.25 if ratio < 0.25 else ratio)
        alone.append(c)
        raised.append(s if s > c else c)
        peaks.append(a)
        fell.append(f)
    if len(peaks) < 3:
        return True, None
    unraised = backtest(alone, peaks, q, fell, now_falling)
    combined = backtest(raised, peaks, q, fell, now_falling)
    return combined.asked <= unraised.asked + 1e-9 * max(1.0, abs(unraised.asked)), combined


def _seasonal_peak(yesterday: Yesterday, *, now: float, horizon_seconds: float, level: float) -> float | None:
    """Yesterday's peak over the same horizon, scaled by how today compares with yesterday."""
    found = yesterday.windows([now], horizon_seconds)[0]
    if found is None or found[0] <= 0:
        return None
    base, peak = found
    return peak * min(4.0, max(0.25, level / base))
