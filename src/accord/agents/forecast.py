"""Demand forecasting for the performance agent (agents layer, pure).

Holt's linear method (level and trend, exponentially smoothed) over recent history, plus a
ratio-adjusted seasonal-naive forecast from the same time a day earlier when that history is
available. The forecast is the peak expected over a horizon, with a margin from the
one-step residuals, because pods asked for now serve only after they start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Forecast:
    peak: float  # demand expected at most over the horizon, margin included
    level: float  # smoothed current demand
    trend_per_second: float
    residual_std: float
    seasonal_peak: float | None
    samples: int
    step_seconds: float

    @property
    def noise(self) -> float:
        """Coefficient of variation of the residuals: 0 for a smooth series."""
        return self.residual_std / max(self.level, 1e-9)


def median_step(series: Sequence[tuple[float, float]]) -> float:
    gaps = sorted(b[0] - a[0] for a, b in pairwise(series) if b[0] > a[0])
    return gaps[len(gaps) // 2] if gaps else 60.0


def holt(values: Sequence[float], *, alpha: float = 0.5, beta: float = 0.3) -> tuple[float, float, float]:
    """Level, trend per step and the standard deviation of one-step-ahead residuals."""
    level = values[0]
    trend = (values[min(len(values) - 1, 1)] - values[0]) if len(values) > 1 else 0.0
    residuals: list[float] = []
    for value in values[1:]:
        predicted = level + trend
        residuals.append(value - predicted)
        new_level = alpha * value + (1 - alpha) * predicted
        trend = beta * (new_level - level) + (1 - beta) * trend
        level = new_level
    std = math.sqrt(sum(r * r for r in residuals) / len(residuals)) if residuals else 0.0
    return level, trend, std


def forecast_peak(
    history: Sequence[tuple[float, float]],
    *,
    now: float,
    horizon_seconds: float,
    day_ago: Sequence[tuple[float, float]] = (),
    margin_sigmas: float = 1.0,
) -> Forecast | None:
    """Peak demand over (now, now + horizon]; None without history."""
    points = [(t, v) for t, v in history if t <= now and math.isfinite(v)]
    if not points:
        return None
    values = [max(0.0, v) for _, v in points]
    step = median_step(points)
    level, trend, std = holt(values)
    steps_ahead = max(1.0, horizon_seconds / step)
    trend_peak = max(level, level + trend * steps_ahead)
    seasonal = _seasonal_peak(day_ago, now=now, horizon_seconds=horizon_seconds, level=level)
    expected = trend_peak if seasonal is None else max(trend_peak, seasonal)
    # The latest observation is certain to have happened; never forecast below it.
    expected = max(expected, values[-1])
    peak = expected + margin_sigmas * std
    return Forecast(
        peak=max(0.0, peak),
        level=level,
        trend_per_second=trend / step,
        residual_std=std,
        seasonal_peak=seasonal,
        samples=len(values),
        step_seconds=step,
    )


def _seasonal_peak(
    day_ago: Sequence[tuple[float, float]], *, now: float, horizon_seconds: float, level: float
) -> float | None:
    """Yesterday's peak over the same horizon, scaled by how today compares with yesterday."""
    anchor = now - DAY
    before = [v for t, v in day_ago if anchor - 600 <= t <= anchor]
    ahead = [v for t, v in day_ago if anchor < t <= anchor + horizon_seconds]
    if not before or not ahead:
        return None
    base = sum(before) / len(before)
    if base <= 0:
        return None
    ratio = min(4.0, max(0.25, level / base))
    return max(ahead) * ratio
