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

Forecasts are made for many series at once (`forecast_peaks`), as arrays: the operator and the replay
ask for thousands in a round, and one forecast is a batch of one (`forecast_peak`). Every step is
the same floating-point operation, in the same order, for each series as it would be alone, so a
forecast does not depend on the company it is made in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

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
# How far back yesterday's level is averaged, before the moment a day ago.
YESTERDAY_LEVEL_SECONDS = 600.0

# Keys of series searched together stay below this (64-bit integers).
KEY_ROOM = 2**62
INT64_MIN = -(2**63)
# Up to this many series, Holt's recursion runs on plain floats, one series at a time.
FEW = 8

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]
Number = TypeVar("Number", float, Floats)


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
    roughness: float = 1.0  # root mean square of the step-to-step changes over the mean (1 below three samples)

    @property
    def noise(self) -> float:
        """Coefficient of variation of the residuals: 0 for a smooth series."""
        return self.residual_std / max(self.level, 1e-9)


@dataclass(frozen=True, slots=True)
class Query:
    """One forecast to make: peak demand over (now, now + horizon], from the history up to now.

    `day_ago` is yesterday around the same time (empty without seasonality); `margin_sigmas` scales
    the margin (1: the `quantile_level` of recent misses as it is).
    """

    history: Sequence[tuple[float, float]]
    now: float
    horizon_seconds: float
    day_ago: Sequence[tuple[float, float]] = ()
    margin_sigmas: float = 1.0
    quantile_level: float = QUANTILE


def forecast_peak(
    history: Sequence[tuple[float, float]],
    *,
    now: float,
    horizon_seconds: float,
    day_ago: Sequence[tuple[float, float]] = (),
    margin_sigmas: float = 1.0,
    quantile_level: float = QUANTILE,
) -> Forecast | None:
    """Peak demand over (now, now + horizon]; None without history. A batch of one `forecast_peaks`."""
    return forecast_peaks([Query(history, now, horizon_seconds, day_ago, margin_sigmas, quantile_level)])[0]


def forecast_peaks(queries: Sequence[Query]) -> list[Forecast | None]:
    """Every query's forecast (None for a query without usable history), in the queries' order.

    Samples after `now` and non-finite ones are left out, negative demand counts as 0. Series of the
    same length and horizon are forecast together.
    """
    found: list[Forecast | None] = [None] * len(queries)
    if not queries:
        return found
    now = np.array([q.now for q in queries], dtype=np.float64)
    times, values, lengths = _stack([q.history for q in queries])
    keep = (times <= now[:, None]) & np.isfinite(values) & _filled(lengths, times.shape[1])
    times, values, lengths = _compact(times, values, keep)
    np.maximum(values, 0.0, out=values)
    step = _median_steps(times, lengths)
    horizon = np.array([q.horizon_seconds for q in queries], dtype=np.float64)
    steps_ahead = np.maximum(1.0, horizon / step)
    horizon_steps = np.ceil(steps_ahead - 1e-9).astype(np.int64)
    groups: dict[tuple[int, int], list[int]] = {}
    for row, (n, h) in enumerate(zip(lengths.tolist(), horizon_steps.tolist(), strict=True)):
        if n:
            groups.setdefault((n, h), []).append(row)
    for (n, h), members in groups.items():
        rows = np.array(members, dtype=np.int64)
        made = _forecast_group(
            [queries[r] for r in members],
            times=times[rows, :n],
            values=values[rows, :n],
            step=step[rows],
            steps_ahead=steps_ahead[rows],
            horizon_steps=h,
        )
        for r, forecast in zip(members, made, strict=True):
            found[r] = forecast
    return found


def median_step(series: Sequence[tuple[float, float]]) -> float:
    """The median gap between consecutive samples (the upper median); a minute for fewer than two."""
    times, _, lengths = _stack([series])
    return float(_median_steps(times, lengths)[0])


def holt(values: Sequence[float], *, alpha: float = 0.5, beta: float = 0.3) -> tuple[float, float, float]:
    """Level, trend per step and the standard deviation of one-step-ahead residuals."""
    run = _Paths.of(np.array([values], dtype=np.float64), np.ones(1), alpha=alpha, beta=beta)
    return float(run.level[0]), float(run.trend[0]), float(run.residual_std[0])


# -- arrays ---------------------------------------------------------------------------------------------------------


def _stack(series: Sequence[Sequence[tuple[float, float]]]) -> tuple[Floats, Floats, Ints]:
    """Series of (time, value) pairs as two row-per-series arrays, padded at the end, and their lengths."""
    lengths = np.fromiter((len(s) for s in series), dtype=np.int64, count=len(series))
    width = int(lengths.max()) if len(lengths) else 0
    total = int(lengths.sum())
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(series)), dtype=np.float64, count=2 * total)
    pairs = flat.reshape(total, 2)
    times = np.zeros((len(series), width), dtype=np.float64)
    values = np.zeros((len(series), width), dtype=np.float64)
    if total and np.all(lengths == width):
        times[:] = pairs[:, 0].reshape(len(series), width)
        values[:] = pairs[:, 1].reshape(len(series), width)
    elif total:
        rows = np.repeat(np.arange(len(series)), lengths)
        cols = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        times[rows, cols] = pairs[:, 0]
        values[rows, cols] = pairs[:, 1]
    return times, values, lengths


def _filled(lengths: Ints, width: int) -> Flags:
    return np.arange(width)[None, :] < lengths[:, None]


def _compact(times: Floats, values: Floats, keep: Flags) -> tuple[Floats, Floats, Ints]:
    """Keeps the flagged samples of each row, in their order, moved to the front of the row."""
    lengths = keep.sum(axis=1)
    ragged = ~np.all(keep == _filled(lengths, keep.shape[1]), axis=1)
    if ragged.any():
        rows = np.flatnonzero(ragged)
        order = np.argsort(~keep[rows], axis=1, kind="stable")
        times[rows] = np.take_along_axis(times[rows], order, axis=1)
        values[rows] = np.take_along_axis(values[rows], order, axis=1)
    return times, values, lengths


def _median_steps(times: Floats, lengths: Ints) -> Floats:
    """Each row's median positive gap between samples (the upper median), or 60 s without one."""
    if times.shape[1] < 2:
        return np.full(len(times), 60.0)
    gaps = np.diff(times, axis=1)
    real = (gaps > 0) & _filled(lengths - 1, gaps.shape[1])
    ordered = np.sort(np.where(real, gaps, np.inf), axis=1)
    counts = real.sum(axis=1)
    middle = ordered[np.arange(len(ordered)), counts // 2]
    return np.where(counts > 0, middle, 60.0)


def _sequential_sum(x: Floats) -> Floats:
    """Row sums added left to right, as Python's `sum` adds (NumPy's own sum adds pairwise)."""
    return np.cumsum(x, axis=1)[:, -1] if x.shape[1] else np.zeros(len(x))


@dataclass(frozen=True, slots=True)
class _Paths:
    """Every predictor's expected peak at every sample, from the samples up to it, and Holt's state.

    Each prediction is at least the sample it was made at.
    """

    by_predictor: tuple[Floats, ...]  # in the order of `PREDICTORS`, each (series, samples)
    levels: Floats  # Holt's level at every sample
    level: Floats  # Holt's level and trend per step after the last sample
    trend: Floats
    residual_std: Floats  # of Holt's one-step-ahead residuals

    @classmethod
    def of(cls, values: Floats, steps_ahead: Floats, *, alpha: float = 0.5, beta: float = 0.3) -> _Paths:
        count, n = values.shape
        if count <= FEW:
            # For a few series the recursion is quicker on plain floats, one series at a time.
            runs = [_recursion(row, alpha, beta) for row in values.tolist()]
            levels, trends, smooth = (np.array([run[k] for run in runs], dtype=np.float64).T for k in range(3))
        else:
            stacked = [np.array(path) for path in _recursion(list(np.ascontiguousarray(values.T)), alpha, beta)]
            levels, trends, smooth = stacked
        columns = values.T
        if n > 1:
            misses = columns[1:] - (levels[:-1] + trends[:-1])
            std = np.sqrt(_sequential_sum((misses * misses).T) / (n - 1))
        else:
            std = np.zeros(count)
        levels_t, trends_t, smooth_t = levels.T, trends.T, smooth.T
        ahead = steps_ahead[:, None]
        by_trend = np.where(trends_t > 0, levels_t + trends_t * ahead, levels_t)
        rise = np.diff(values, axis=1, prepend=values[:, :1])
        by_slope = np.where(rise > 0, values + rise * ahead, values)
        return cls(
            by_predictor=(
                np.where(by_trend > values, by_trend, values),
                by_slope,
                np.where(smooth_t > values, smooth_t, values),
                values,
            ),
            levels=levels_t,
            level=levels_t[:, -1].copy(),
            trend=trends_t[:, -1].copy(),
            residual_std=std,
        )


def _recursion(values: Sequence[Number], alpha: float, beta: float) -> tuple[list[Number], list[Number], list[Number]]:
    """Holt's level and trend, and the smoothed level, after each sample: for a series of floats, or
    for many series at once as a sequence of arrays (one per sample), with the same operations."""
    first = values[0]
    level, smooth = first, first
    trend = values[1] - first if len(values) > 1 else first - first
    levels, trends, smooths = [level], [trend], [smooth]
    keep, carry = 1 - alpha, 1 - beta
    for value in values[1:]:
        predicted = level + trend
        new_level = alpha * value + keep * predicted
        trend = beta * (new_level - level) + carry * trend
        level = new_level
        smooth = smooth + LEVEL_SMOOTHING * (value - smooth)
        levels.append(level)
        trends.append(trend)
        smooths.append(smooth)
    return levels, trends, smooths


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a predictor would have asked for at past samples, against the peaks that followed; a value per series."""

    asked: Floats  # mean prediction plus margin: the capacity it would have asked for, on average
    margin: Floats  # the quantile of its misses
    spread: Floats  # the root mean square of its misses


def backtest(
    predicted: Floats,
    ahead: Floats,
    quantile_level: Floats,
    falling: Flags,
    now_falling: Flags,
    judged: Flags | None = None,
) -> Backtest:
    """Misses of `predicted` against the peaks `ahead` at the samples `judged` (all by default), and the
    margin: the q-quantile (the miss at index floor(q n) of the sorted misses) at past samples in the
    same state as now (after a fall, or not), when there are enough of them.

    Misses are not alike everywhere: after a fall the next peak is often a rebound, which a forecast
    made there misses by more than one made while demand rises. Taking the margin from like samples
    (a Mondrian, or class-conditional, conformal bound) keeps capacity through a dip that is likely
    to come back, without adding that reserve where it is not needed."""
    if judged is None:
        judged = np.ones(predicted.shape, dtype=np.bool_)
    misses = ahead - predicted
    count = judged.sum(axis=1)
    alike = judged & (falling == now_falling[:, None])
    like = alike.sum(axis=1)
    enough = like >= MIN_ALIKE
    chosen = np.where(enough[:, None], alike, judged)
    size = np.where(enough, like, count)
    ordered = np.sort(np.where(chosen, misses, np.inf), axis=1)
    index = np.minimum(size - 1, np.floor(quantile_level * size).astype(np.int64))
    margin = ordered[np.arange(len(ordered)), np.maximum(index, 0)]
    count = np.maximum(count, 1)  # a series with nothing judged is not asked about
    asked = _sequential_sum(np.where(judged, predicted, 0.0)) / count + margin
    spread = np.sqrt(_sequential_sum(np.where(judged, misses * misses, 0.0)) / count)
    return Backtest(asked=asked, margin=margin, spread=spread)


def _better(challenger: Floats, best: Floats) -> Flags:
    """Where the challenger asks for less capacity than the best so far, beyond rounding."""
    return challenger < best - 1e-9 * np.maximum(1.0, np.abs(best))


def _forecast_group(
    queries: Sequence[Query],
    *,
    times: Floats,
    values: Floats,
    step: Floats,
    steps_ahead: Floats,
    horizon_steps: int,
) -> list[Forecast]:
    """Forecasts for series of one length and horizon in steps."""
    count, n = values.shape
    run = _Paths.of(values, steps_ahead)
    q = np.array([x.quantile_level for x in queries], dtype=np.float64)
    last = n - 1 - horizon_steps
    judged = range(max(1, last - BACKTEST + 1), last + 1)  # samples whose whole horizon has been seen
    method = np.zeros(count, dtype=np.int64)
    margin, spread = run.residual_std, run.residual_std  # until a horizon of history exists
    now_falling = values[:, -1] < values[:, -2] if n > 1 else np.zeros(count, dtype=np.bool_)
    window = slice(judged.start, judged.stop)
    ahead: Floats = np.empty((count, 0))
    falling: Flags = np.empty((count, 0), dtype=np.bool_)
    if judged:
        following = np.lib.stride_tricks.sliding_window_view(values[:, 1:], horizon_steps, axis=1)
        ahead = following[:, window].max(axis=2)
        falling = values[:, window] < values[:, judged.start - 1 : judged.stop - 1]
    paths = np.stack(run.by_predictor)  # (predictor, series, sample)
    if judged:
        # Every predictor judged in one backtest: its rows are (predictor, series) pairs.
        each = len(PREDICTORS)
        result = backtest(
            paths[:, :, window].reshape(each * count, -1),
            np.tile(ahead, (each, 1)),
            np.tile(q, each),
            np.tile(falling, (each, 1)),
            np.tile(now_falling, each),
        )
        asks, margins, spreads = (x.reshape(each, count) for x in (result.asked, result.margin, result.spread))
        asked, margin, spread = asks[0], margins[0], spreads[0]
        for index in range(1, each):
            better = _better(asks[index], asked)
            method = np.where(better, index, method)
            asked = np.where(better, asks[index], asked)
            margin = np.where(better, margins[index], margin)
            spread = np.where(better, spreads[index], spread)
    rows = np.arange(count)
    expected = paths[method, rows, -1]
    seasonal = np.full(count, np.nan)
    with_day = [i for i, x in enumerate(queries) if x.day_ago]
    if with_day:
        horizon = np.array([x.horizon_seconds for x in queries], dtype=np.float64)
        chosen = paths[method, rows][:, window]
        seasonal_margin = _seasonal(
            [queries[i].day_ago for i in with_day],
            rows=np.array(with_day, dtype=np.int64),
            now=np.array([x.now for x in queries], dtype=np.float64),
            horizon=horizon,
            level=run.level,
            judged_times=times[:, window],
            judged_levels=run.levels[:, window],
            chosen=chosen,
            ahead=ahead,
            falling=falling,
            now_falling=now_falling,
            q=q,
            judged=bool(judged),
        )
        seasonal, use, combined_margin, combined_spread = seasonal_margin
        expected = np.where(use, np.maximum(expected, seasonal), expected)
        has_combined = use & ~np.isnan(combined_margin)
        margin = np.where(has_combined, combined_margin, margin)
        spread = np.where(has_combined, combined_spread, spread)
        seasonal = np.where(use, seasonal, np.nan)
    roughness = _roughness(values)
    sigmas = np.array([x.margin_sigmas for x in queries], dtype=np.float64)
    peak = np.maximum(values[:, -1], expected + sigmas * margin)
    made = []
    for r in range(count):
        season = float(seasonal[r])
        made.append(
            Forecast(
                peak=float(peak[r]),
                level=float(run.level[r]),
                trend_per_second=float(run.trend[r] / step[r]),
                residual_std=float(spread[r]),
                seasonal_peak=None if math.isnan(season) else season,
                samples=n,
                step_seconds=float(step[r]),
                expected=float(expected[r]),
                margin=float(peak[r] - expected[r]),
                method=PREDICTORS[int(method[r])],
                roughness=float(roughness[r]),
            )
        )
    return made


def _roughness(values: Floats) -> Floats:
    """Root mean square of the changes from sample to sample, over the mean; 1 below three samples."""
    count, n = values.shape
    if n < 3:
        return np.ones(count)
    mean = _sequential_sum(values) / n
    steps = np.diff(values, axis=1)
    spread = np.sqrt(_sequential_sum(steps * steps) / (n - 1))
    rough: Floats = spread / np.maximum(mean, 1e-9)
    return rough


# -- yesterday ------------------------------------------------------------------------------------------------------


def _seasonal(
    day_ago: Sequence[Sequence[tuple[float, float]]],
    *,
    rows: Ints,
    now: Floats,
    horizon: Floats,
    level: Floats,
    judged_times: Floats,
    judged_levels: Floats,
    chosen: Floats,
    ahead: Floats,
    falling: Flags,
    now_falling: Flags,
    q: Floats,
    judged: bool,
) -> tuple[Floats, Flags, Floats, Floats]:
    """Yesterday's say for every series of a group (NaN or False where it has none).

    Returns yesterday's peak over the horizon scaled by how today compares with yesterday, whether it
    has earned a say, and the margin and spread of the chosen forecast raised to yesterday's (NaN
    where no backtest judged it). It has earned a say if, over the recent samples, raising the
    chosen forecast to yesterday's would have asked for no more capacity at the same coverage; and,
    until three recent samples have a yesterday to be judged by, it has too.
    """
    count = len(now)
    seasonal = np.full(count, np.nan)
    use = np.zeros(count, dtype=np.bool_)
    margin = np.full(count, np.nan)
    spread = np.full(count, np.nan)
    stamps, values, lengths = _stack(day_ago)
    stamps, values, lengths = _compact(stamps, values, np.isfinite(values) & _filled(lengths, stamps.shape[1]))
    _in_time_order(stamps, values, lengths)
    days = _Yesterday(stamps, values, lengths)
    base, peak, ok = days.windows(now[rows, None], horizon[rows])
    ok = ok[:, 0] & (base[:, 0] > 0)
    seasonal[rows] = np.where(ok, _scaled(peak[:, 0], level[rows], base[:, 0]), np.nan)
    include = ok.copy()
    if judged:
        base, peak, found = days.windows(judged_times[rows], horizon[rows])
        found &= base > 0
        scaled = _scaled(peak, judged_levels[rows], base)
        alone = chosen[rows]
        raised = np.where(found & (scaled > alone), scaled, alone)
        enough = found.sum(axis=1) >= 3
        # The chosen forecast alone and raised to yesterday's, judged in one backtest.
        both = backtest(
            np.concatenate([alone, raised]),
            np.tile(ahead[rows], (2, 1)),
            np.tile(q[rows], 2),
            np.tile(falling[rows], (2, 1)),
            np.tile(now_falling[rows], 2),
            np.tile(found, (2, 1)),
        )
        half = len(rows)
        unraised = both.asked[:half]
        earned = both.asked[half:] <= unraised + 1e-9 * np.maximum(1.0, np.abs(unraised))
        include &= ~enough | earned
        margin[rows] = np.where(enough, both.margin[half:], np.nan)
        spread[rows] = np.where(enough, both.spread[half:], np.nan)
    use[rows] = include
    return seasonal, use, margin, spread


def _scaled(peak: Floats, level: Floats, base: Floats) -> Floats:
    """Yesterday's peak scaled by how today's level compares with yesterday's, by a quarter to four times."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # only read where base > 0
        scaled: Floats = peak * np.clip(level / base, 0.25, 4.0)
    return scaled


def _in_time_order(stamps: Floats, values: Floats, lengths: Ints) -> None:
    """Sorts, in place, the rows whose samples are out of time order (by time, then value)."""
    if stamps.shape[1] < 2:
        return
    backwards = (stamps[:, 1:] < stamps[:, :-1]) & _filled(lengths - 1, stamps.shape[1] - 1)
    for r in np.flatnonzero(backwards.any(axis=1)).tolist():
        n = int(lengths[r])
        order = np.lexsort((values[r, :n], stamps[r, :n]))
        stamps[r, :n] = stamps[r, order]
        values[r, :n] = values[r, order]


class _Yesterday:
    """Yesterday's samples of many series (each in time order, padded), ready for window means and
    for binary searches within every series at once.

    Each time becomes an integer in the order of the floats (`ordered`: exact, so a search finds what
    a search over the floats would) and each series' integers are shifted into a range of their own,
    so one search over all of them finds, for every series, how many samples lie before a moment.
    """

    __slots__ = ("lengths", "origin", "segments", "stamps", "stride", "sums", "top", "values")

    def __init__(self, stamps: Floats, values: Floats, lengths: Ints) -> None:
        count, width = values.shape
        self.stamps, self.values, self.lengths = stamps, values, lengths
        self.sums = np.zeros((count, width + 1))
        np.cumsum(values, axis=1, out=self.sums[:, 1:])
        filled = _filled(lengths, width)
        # Groups of series whose shifted keys fit in 64 bits together: their rows, and keys in order.
        # None: the times span too wide a range to shift; each series is searched on its own.
        self.segments: list[tuple[slice, Ints]] | None = []
        self.origin, self.top, self.stride = 0, 0, 1
        if not filled.any():
            return
        keys = ordered(stamps)
        origin, last = int(keys[filled].min()), int(keys[filled].max())
        if last - origin > KEY_ROOM // 4:
            self.segments = None
            return
        top = last - origin
        stride = top + 3  # room for a moment before every sample (0) and after them all (top + 2)
        self.origin, self.top, self.stride = origin, top, stride
        shifted = keys - (origin - 1)
        rows = max(1, KEY_ROOM // stride)
        for first in range(0, count, rows):
            part = slice(first, min(count, first + rows))
            local = np.arange(part.stop - first, dtype=np.int64)[:, None] * stride
            self.segments.append((part, (local + shifted[part])[filled[part]]))

    def windows(self, moments: Floats, horizon: Floats) -> tuple[Floats, Floats, Flags]:
        """At each moment a day ago (series, moments): the mean over the ten minutes up to it, the
        peak over the horizon after it, and whether both sides have samples."""
        anchor = moments - DAY
        lo = self.count_before(anchor - YESTERDAY_LEVEL_SECONDS, inclusive=False)
        mid = self.count_before(anchor, inclusive=True)
        hi = self.count_before(anchor + horizon[:, None], inclusive=True)
        ok = (lo < mid) & (mid < hi)
        count, width = self.values.shape
        series = np.arange(count)[:, None]
        base = (self.sums[series, mid] - self.sums[series, lo]) / np.maximum(mid - lo, 1)
        peak = np.full(mid.shape, -np.inf)
        span = int((hi - mid)[ok].max()) if ok.any() else 0
        for k in range(span):
            at = mid + k
            inside = ok & (at < hi)
            np.maximum(peak, np.where(inside, self.values[series, np.minimum(at, width - 1)], -np.inf), out=peak)
        return base, peak, ok

    def count_before(self, moments: Floats, *, inclusive: bool) -> Ints:
        """Per series, how many of its samples lie before each of its moments (at or before, if inclusive)."""
        side: Literal["left", "right"] = "right" if inclusive else "left"
        found = np.zeros(moments.shape, dtype=np.int64)
        if self.segments is None:
            for r, n in enumerate(self.lengths.tolist()):
                found[r] = np.searchsorted(self.stamps[r, :n], moments[r], side=side)
            return found
        starts = np.cumsum(self.lengths) - self.lengths
        low, high = self.origin - 1, self.origin + self.top + 1
        for part, keys in self.segments:
            asked = np.clip(ordered(moments[part]), low, high) - low
            asked += np.arange(part.stop - part.start, dtype=np.int64)[:, None] * self.stride
            found[part] = np.searchsorted(keys, asked, side=side)
            found[part] -= (starts[part] - starts[part.start])[:, None]
        return found


def ordered(x: Floats) -> Ints:
    """64-bit integers in the order of the floats (not NaN), equal exactly where the floats are equal:
    the bits of a non-negative float already sort as integers; a negative float's are turned around."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    keys: Ints = np.where(bits >= 0, bits, np.int64(INT64_MIN) - bits)
    return keys
