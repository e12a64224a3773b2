"""Replaying history recorded by Prometheus: 60 s steps, asked for in windows Prometheus accepts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from accord.metrics.prometheus import MetricsUnavailable, PrometheusSource
from accord.sim.recorded import MAX_POINTS, fetch_history, parse_moment
from accord.sim.trace import TraceError


@dataclass
class FakeClient:
    calls: list[tuple[float, float, str]] = field(default_factory=list)
    fail: bool = False

    def query_range(self, params: dict[str, str]) -> list[dict[str, Any]]:
        if self.fail:
            raise MetricsUnavailable("cannot reach Prometheus: refused")
        start, end = float(params["start"]), float(params["end"])
        self.calls.append((start, end, params["step"]))
        values = []
        t = start
        while t <= end:
            values.append([t, str(t % 7)])
            t += 60
        return [{"metric": {"pod": "a"}, "values": values}, {"metric": {"pod": "b"}, "values": values}]


@dataclass(frozen=True)
class FakeSource(PrometheusSource):
    fake: FakeClient = field(default_factory=FakeClient)

    async def api(self, session: aiohttp.ClientSession, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        assert path == "/api/v1/query_range"
        return self.fake.query_range(params)


def test_history_is_fetched_at_60s_steps_in_windows_of_at_most_10000_points() -> None:
    source = FakeSource("http://prometheus.invalid")
    start = 1_700_000_000.0
    end = start + 60 * 25_000
    samples = fetch_history(source, "sum(rate(x[2m]))", start=start, end=end)
    assert len(samples) == 25_001
    assert all(b[0] - a[0] == 60 for a, b in itertools.pairwise(samples))
    assert samples[0] == (start, 2 * (start % 7))  # two series summed
    assert {step for _, _, step in source.fake.calls} == {"60"}
    assert all((hi - lo) / 60 + 1 <= MAX_POINTS for lo, hi, _ in source.fake.calls)


def test_an_unreachable_prometheus_is_reported() -> None:
    with pytest.raises(MetricsUnavailable):
        fetch_history(FakeSource("http://x", fake=FakeClient(fail=True)), "q", start=0.0, end=600.0)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(TraceError, match="must come after"):
        fetch_history(FakeSource("http://x"), "q", start=600.0, end=0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("now", 1000.0), ("now-10m", 400.0), ("now-1h", 1000.0 - 3600), ("500", 500.0), ("1970-01-01T00:10:00", 600.0)],
)
def test_moments(text: str, expected: float) -> None:
    assert parse_moment(text, now=1000.0) == expected
