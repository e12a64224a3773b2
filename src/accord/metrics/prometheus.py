"""Prometheus's HTTP API through a shared aiohttp session (metrics layer; does I/O, called by the operator).

One class per kind of query renders its PromQL and turns the answer into `Evidence` with
provenance. Every query has one time budget (`PrometheusSource.timeout`, its retries included):
transient failures (connection refused or reset, HTTP 429, 502, 503, 504) are retried with
exponential backoff while the budget lasts, at most `retries` times; anything else fails at once.
A failure of any kind, a query that runs out of its budget included, becomes `MetricsUnavailable`
with its reason, so the caller applies the policy's missing-metrics rule instead of failing the round.

TLS is verified (the system's trust store, or `ca_file`); there is no switch to turn it off.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import aiohttp

from accord.metrics.evidence import Evidence, Source
from accord.metrics.grouping import Grouped

_VARIABLE = re.compile(r"\$(namespace|workload|kind|pool)\b")
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class MetricsUnavailable(Exception):  # noqa: N818 - named for what it means to the caller, not "...Error"
    """Prometheus could not be asked or did not answer; try again later."""


class _TransientError(Exception):
    """An attempt failed in a way another attempt may not."""


def render(query: str, variables: dict[str, str]) -> str:
    """Substitute $namespace, $workload, $kind and $pool; values are escaped for PromQL strings."""

    def sub(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), "")
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return _VARIABLE.sub(sub, query)


@dataclass(frozen=True)
class PrometheusSource:
    """A Prometheus server.

    `timeout` bounds each query, its retries and backoff included, so a Prometheus that accepts
    connections and never answers costs a round at most `timeout` seconds per query. `retries`
    transient failures are retried, after `backoff`, 2 x `backoff`, ... seconds. An https URL is
    verified against the system's trust store, or against `ca_file` when given.
    """

    url: str
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.25
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"the Prometheus query timeout must be positive, not {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"the number of retries must not be negative, not {self.retries}")

    @cached_property
    def ssl(self) -> ssl.SSLContext:
        """Verification on, with the given CA bundle or the system's (a missing file fails here, at start)."""
        return ssl.create_default_context(cafile=self.ca_file)

    async def api(self, session: aiohttp.ClientSession, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """`data.result` of a GET on the API `path`, within the query's budget; MetricsUnavailable otherwise."""
        url = self.url.rstrip("/") + path
        failure = "no attempt ended"
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in range(self.retries + 1):
                    if attempt:
                        await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                    try:
                        return await self._attempt(session, url, params)
                    except _TransientError as exc:
                        failure = str(exc)
        except TimeoutError:
            raise MetricsUnavailable(f"no answer within {self.timeout:g}s (last failure: {failure})") from None
        raise MetricsUnavailable(f"{failure} ({self.retries + 1} attempts)")

    async def _attempt(self, session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            async with session.get(url, params=params, ssl=self.ssl) as answer:
                if answer.status in TRANSIENT_STATUSES:
                    raise _TransientError(f"HTTP {answer.status}")
                try:
                    body = await answer.json(content_type=None)
                except ValueError as exc:
                    raise MetricsUnavailable(f"HTTP {answer.status} with a body that is not JSON") from exc
        except aiohttp.ClientConnectionError as exc:
            raise _TransientError(f"cannot reach Prometheus: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise MetricsUnavailable(f"request failed: {exc}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise MetricsUnavailable(f"Prometheus refused the query: {error or body!r:.300}")
        result = (body.get("data") or {}).get("result")
        return result if isinstance(result, list) else []


@dataclass(frozen=True)
class RangeQuery:
    """A series over a window, e.g. a workload's demand over the last hour."""

    name: str
    promql: str
    window_seconds: float
    offset_seconds: float = 0.0
    extend_seconds: float = 0.0
    step_seconds: float = 15.0

    async def fetch(
        self, source: PrometheusSource, session: aiohttp.ClientSession, *, now: float, variables: dict[str, str]
    ) -> Evidence:
        query = render(self.promql, variables)
        series = _sum_series(await self._ask(source, session, query, now))
        if not series:
            return Evidence.absent(self.name, Source.PROMETHEUS, query, "the query returned no samples")
        return Evidence.from_series(self.name, Source.PROMETHEUS, query, series)

    async def fetch_grouped(
        self, source: PrometheusSource, session: aiohttp.ClientSession, *, now: float, grouped: Grouped
    ) -> dict[tuple[str, str], Evidence]:
        """The series of every workload the grouped query answers for, by (namespace, workload)."""
        by_workload: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in await self._ask(source, session, grouped.promql, now):
            by_workload.setdefault(_owner(item, grouped), []).append(item)
        return {
            key: Evidence.from_series(self.name, Source.PROMETHEUS, grouped.promql, series)
            for key, items in by_workload.items()
            if (series := _sum_series(items))
        }

    async def _ask(
        self, source: PrometheusSource, session: aiohttp.ClientSession, query: str, now: float
    ) -> list[dict[str, Any]]:
        end = min(now, now - self.offset_seconds + self.extend_seconds)
        start = now - self.offset_seconds - self.window_seconds
        step = max(self.step_seconds, (end - start) / 10_000)  # Prometheus caps a range at 11,000 points
        params = {"query": query, "start": _millis(start), "end": _millis(end), "step": f"{step:g}"}
        try:
            return await source.api(session, "/api/v1/query_range", params)
        except MetricsUnavailable as exc:
            raise MetricsUnavailable(f"range query {query!r} failed: {exc}") from exc


def _owner(item: dict[str, Any], grouped: Grouped) -> tuple[str, str]:
    labels = item.get("metric") or {}
    return str(labels.get(grouped.namespace_label, "")), str(labels.get(grouped.workload_label, ""))


def _millis(moment: float) -> str:
    """A moment for Prometheus's API, in seconds to the millisecond, rounded down: a range that ends at
    `now` must not be asked to end after it, or its latest point is stamped in the future of the
    decision that reads it, and a forecast drops it as not yet seen (half the time, by rounding)."""
    return f"{math.floor(moment * 1000) / 1000:.3f}"


@dataclass(frozen=True)
class InstantQuery:
    """One value now; with `by_label`, one Evidence per value of that label (e.g. a price per pool)."""

    name: str
    promql: str
    by_label: str | None = None

    async def fetch(
        self, source: PrometheusSource, session: aiohttp.ClientSession, *, now: float, variables: dict[str, str]
    ) -> list[Evidence]:
        query = render(self.promql, variables)
        try:
            result = await source.api(session, "/api/v1/query", {"query": query})
        except MetricsUnavailable as exc:
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
