"""Demand traces for the replay: reading, scaling and 1-minute interpolation (sim layer, pure but for reading a file).

docs/benchmark.md section 1: a trace is a CSV with a header line and `timestamp,value` rows (the NAB
format). Its values are scaled so that the 99th percentile, the value at index floor(0.99 n) of
the n sorted values, equals `peak_pods × capacity`; time runs in 1-minute ticks from the first
sample to the last, with demand interpolated linearly between two samples.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TICK_SECONDS = 60.0


class TraceError(ValueError):
    """The trace cannot be replayed as it is: the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Demand in requests per second at every 1-minute tick; tick k is at `start + 60 k` (unix seconds)."""

    name: str
    start: float
    demand: tuple[float, ...]
    scale: float = 1.0  # the factor the raw values were multiplied by
    samples: int = 0  # raw samples the ticks were interpolated from

    def __len__(self) -> int:
        return len(self.demand)

    def time(self, tick: int) -> float:
        return self.start + TICK_SECONDS * tick


def parse_timestamp(text: str) -> float:
    """Unix seconds from a number or an ISO 8601 date and time; a time without a zone is UTC."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TraceError(f"timestamp {text!r} is neither unix seconds nor ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_samples(path: Path) -> list[tuple[float, float]]:
    """The (unix seconds, value) rows of a CSV with a header line, in file order."""
    samples: list[tuple[float, float]] = []
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        if next(rows, None) is None:
            raise TraceError(f"{path} is empty: expected a header line, then timestamp,value rows")
        for number, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise TraceError(f"{path}:{number}: expected timestamp,value, got {row!r}")
            try:
                value = float(row[1])
            except ValueError as exc:
                raise TraceError(f"{path}:{number}: value {row[1]!r} is not a number") from exc
            samples.append((parse_timestamp(row[0]), value))
    return samples


def percentile_99(values: Sequence[float]) -> float:
    """The value at index floor(0.99 n) of the n sorted values."""
    ordered = sorted(values)
    return ordered[math.floor(0.99 * len(ordered))]


def scale_factor(values: Sequence[float], *, peak_pods: float, capacity: float) -> float:
    """The factor that brings the 99th percentile to `peak_pods × capacity`."""
    p99 = percentile_99(values)
    if p99 <= 0:
        raise TraceError("the trace's 99th percentile is 0: it cannot be scaled to a number of pods")
    return peak_pods * capacity / p99


def interpolate(samples: Iterable[tuple[float, float]], *, tick_seconds: float = TICK_SECONDS) -> list[float]:
    """Values at every tick from the first sample's time to the last's, linear between samples.

    Samples are sorted by time; of two samples at the same time the later row counts.
    """
    points = sorted(dict(samples).items())
    if not points:
        return []
    start, end = points[0][0], points[-1][0]
    ticks = math.floor((end - start) / tick_seconds + 1e-9) + 1
    values: list[float] = []
    right = 0
    for k in range(ticks):
        t = start + tick_seconds * k
        while right < len(points) - 1 and points[right][0] < t:
            right += 1
        t1, v1 = points[right]
        if t1 <= t or right == 0:
            values.append(v1)
            continue
        t0, v0 = points[right - 1]
        values.append(v0 + (v1 - v0) * (t - t0) / (t1 - t0))
    return values


def make_trace(
    name: str,
    samples: Sequence[tuple[float, float]],
    *,
    peak_pods: float,
    capacity: float,
    scale: bool = True,
) -> Trace:
    """A replayable trace: samples scaled (unless `scale` is off) and interpolated to 1-minute ticks."""
    if not samples:
        raise TraceError(f"{name} has no samples")
    finite = [(t, v) for t, v in samples if math.isfinite(t) and math.isfinite(v)]
    if len(finite) != len(samples):
        raise TraceError(f"{name} has {len(samples) - len(finite)} samples that are not finite numbers")
    negative = [v for _, v in finite if v < 0]
    if negative:
        raise TraceError(f"{name} has {len(negative)} negative demand values (the lowest {min(negative)})")
    factor = scale_factor([v for _, v in finite], peak_pods=peak_pods, capacity=capacity) if scale else 1.0
    demand = interpolate([(t, v * factor) for t, v in finite])
    return Trace(name=name, start=min(t for t, _ in finite), demand=tuple(demand), scale=factor, samples=len(finite))


def load_trace(path: Path, *, peak_pods: float, capacity: float, scale: bool = True) -> Trace:
    return make_trace(path.name, read_samples(path), peak_pods=peak_pods, capacity=capacity, scale=scale)
