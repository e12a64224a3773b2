"""Prometheus access through prometheus-api-client (metrics layer; does I/O, called by the operator).

One class per kind of query renders its PromQL and turns the answer into `Evidence` with
provenance. Transport errors become `MetricsUnavailable`, so the caller can apply the policy's
missing-metrics rule instead of failing the round.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client import PrometheusConnect

from accord.metrics.evidence import Evidence, Source

_VARIABLE = re.compile(r"\$(namespace|workload|kind|pool)\b")


class MetricsUnavailable(Exception):  # noqa: N818 - named for what it means to the caller, not "...Error"
    """Prometheus could not be asked or did not answer; try again later."""


def render(query: str, variables: dict[str, str]) -> str:
    """Substitute $namespace, $workload, $kind and $pool; values are escaped for PromQL strings."""

    def sub(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), "")
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return _VARIABLE.sub(sub, query)


@dataclass(frozen=True)
class PrometheusSource:
    """A Prometheus server. `timeout` bounds every request so one slow query cannot stall a round."""

    url: str
    timeout: float = 5.0

    def client(self) -> PrometheusConnect:
        return PrometheusConnect(url=self.url, disable_ssl=True, timeout=self.timeout)

    def ready(self) -> bool:
        try:
            return bool(self.client().check_prometheus_connection())
        except Exception:
            return False


@dataclass(frozen=True)
class RangeQuery:
    """A series over a window, e.g. a workload's demand over the last hour."""

    name: str
    promql: str
    window_seconds: float
    offset_seconds: float = 0.0
    extend_seconds: float = 0.0
    step_seconds: float = 15.0

    def fetch(self, source: PrometheusSource, *, now: float, variables: dict[str, str]) -> Evidence:
        query = render(self.promql, variables)
        end = min(now, now - self.offset_seconds + self.extend_seconds)
        start = now - self.offset_seconds - self.window_seconds
        step = max(self.step_seconds, (end - start) / 10_000)  # Prometheus caps a range at 11,000 points
        try:
            result: list[dict[str, Any]] = source.client().custom_query_range(
                query,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{step:g}s",
            )
        except Exception as exc:
            raise MetricsUnavailable(f"range query {query!r} failed: {exc}") from exc
        series = _sum_series(result)
        if not series:
            return Evidence.absent(self.name, Source.PROMETHEUS, query, "the query returned no samples")
        return Evidence.from_series(self.name, Source.PROMETHEUS, query, series)


@dataclass(frozen=True)
class InstantQuery:
    """One value now; with `by_label`, one Evidence per value of that label (e.g. a price per pool)."""

    name: str
    promql: str
    by_label: str | None = None

    def fetch(self, source: PrometheusSource, *, now: float, variables: dict[str, str]) -> list[Evidence]:
        query = render(self.promql, variables)
        try:
            result: list[dict[str, Any]] = source.client().custom_query(query)
        except Exception as exc:
            raise MetricsUnavailable(f"instant query {query!r} failed: {exc}") from exc
        found: list[Evidence] = []
        for item in result:
            ts, raw = item.get("value", (None, None))
            value = _number(raw)
            if ts is None or value is None:
                continue
            label = item.get("metric", {}).get(self.by_label, "") if self.by_label else ""
            name = f"{self.name}:{label}" if self.by_label else self.name
            found.append(
                Evidence(name=name, source=Source.PROMETHEUS, query=query, value=value, timestamp=float(ts), samples=1)
            )
        if not found and not self.by_label:
            found.append(Evidence.absent(self.name, Source.PROMETHEUS, query, "the query returned no samples"))
        if not self.by_label and len(found) > 1:
            total = sum(e.value or 0.0 for e in found)
            newest = max(e.timestamp or 0.0 for e in found)
            found = [Evidence(self.name, Source.PROMETHEUS, query, total, timestamp=newest, samples=len(found))]
        return found


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _sum_series(result: list[dict[str, Any]]) -> tuple[tuple[float, float], ...]:
    """Sum all returned series point by point: a query without sum() still gives the workload's total."""
    totals: dict[float, float] = {}
    for item in result:
        for ts, raw in item.get("values", []):
            value = _number(raw)
            if value is not None:
                totals[float(ts)] = totals.get(float(ts), 0.0) + value
    return tuple(sorted(totals.items()))
