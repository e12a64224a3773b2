"""Demand history recorded by a real Prometheus, as samples for a replay (sim layer; I/O through the metrics layer).

The history is asked for with the metrics layer's `RangeQuery` at 60 s steps, in windows short
enough that Prometheus never coarsens the step (it caps a range query at 11,000 points).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp

from accord.metrics.prometheus import PrometheusSource, RangeQuery
from accord.sim.trace import TICK_SECONDS, TraceError, parse_timestamp

MAX_POINTS = 10_000


def parse_moment(text: str, *, now: float) -> float:
    """Unix seconds from `now`, `now-<N>[smhd]`, unix seconds or ISO 8601 (UTC when no zone is given)."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("now-") and text[-1:] in {"s", "m", "h", "d"}:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            return now - float(text[4:-1]) * units[text[-1]]
        except ValueError as exc:
            raise TraceError(f"cannot read {text!r}: expected now-<number><s|m|h|d>") from exc
    return parse_timestamp(text)


def fetch_history(
    source: PrometheusSource, query: str, *, start: float, end: float, step: float = TICK_SECONDS
) -> list[tuple[float, float]]:
    """The query's samples from `start` to `end` at `step` seconds, window by window."""
    if end <= start:
        raise TraceError(f"--end ({_when(end)}) must come after --start ({_when(start)})")
    samples = asyncio.run(_fetch(source, query, start=start, end=end, step=step))
    if not samples:
        raise TraceError(f"Prometheus returned no samples for {query!r} between {_when(start)} and {_when(end)}")
    return sorted(samples.items())


async def _fetch(source: PrometheusSource, query: str, *, start: float, end: float, step: float) -> dict[float, float]:
    span = step * (MAX_POINTS - 1)
    samples: dict[float, float] = {}
    lo = start
    async with aiohttp.ClientSession() as session:
        while lo < end:
            hi = min(end, lo + span)
            evidence = await RangeQuery("demand", query, window_seconds=hi - lo, step_seconds=step).fetch(
                source, session, now=hi, variables={}
            )
            samples.update(evidence.series)
            lo = hi + step
    return samples


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
