"""Prometheus's HTTP API over a real socket on 127.0.0.1: budgets, retries and TLS verification.

Each test serves a small aiohttp application (or a TCP server that reads and never answers) in the
place of Prometheus and asks it through `PrometheusSource`, as the operator does.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from accord.agents.registry import build_agent
from accord.metrics.evidence import Evidence
from accord.metrics.prometheus import InstantQuery, MetricsUnavailable, PrometheusSource, RangeQuery
from accord.operator.gather import RoundQueries, prometheus_evidence
from tests.factories import agent_specs, situation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [100.0, "42"]}]}}


@asynccontextmanager
async def serving(handler: Handler, *, ssl_context: Any = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    app.router.add_get("/api/v1/query_range", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def silent() -> AsyncIterator[str]:
    """A "Prometheus" that accepts connections, reads the request and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def instant(source: PrometheusSource) -> float | None:
    async with aiohttp.ClientSession() as session:
        found = await InstantQuery("demand", "up").fetch(source, session, now=100.0, variables={})
    return found[0].value


def test_a_prometheus_that_never_answers_costs_one_timeout_and_says_so() -> None:
    async def run() -> tuple[str, float]:
        async with silent() as url:
            started = time.monotonic()
            with pytest.raises(MetricsUnavailable) as caught:
                await instant(PrometheusSource(url, timeout=0.5))
            return str(caught.value), time.monotonic() - started

    message, elapsed = asyncio.run(run())
    assert "no answer within 0.5s" in message
    assert 0.5 <= elapsed < 1.0


@pytest.mark.parametrize(("delay", "answered"), [(0.3, True), (0.9, False)])
def test_an_answer_just_inside_the_budget_counts_and_just_outside_does_not(delay: float, answered: bool) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response(VECTOR)

    async def run() -> float | None:
        async with serving(slow) as url:
            return await instant(PrometheusSource(url, timeout=0.6))

    if answered:
        assert asyncio.run(run()) == 42.0
    else:
        with pytest.raises(MetricsUnavailable, match=r"no answer within 0\.6s"):
            asyncio.run(run())


@pytest.mark.parametrize(("failures", "answered"), [(2, True), (3, False)])
@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_errors_are_retried_twice_with_backoff(failures: int, status: int, answered: bool) -> None:
    hits: list[float] = []

    async def flaky(_: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) <= failures:
            return web.Response(status=status)
        return web.json_response(VECTOR)

    async def run() -> float | None:
        async with serving(flaky) as url:
            return await instant(PrometheusSource(url, timeout=5.0, retries=2, backoff=0.1))

    if answered:
        assert asyncio.run(run()) == 42.0
    else:
        with pytest.raises(MetricsUnavailable, match=rf"HTTP {status} \(3 attempts\)"):
            asyncio.run(run())
    assert len(hits) == 3
    assert hits[1] - hits[0] >= 0.1 and hits[2] - hits[1] >= 0.2, "exponential backoff between attempts"


def test_a_refused_query_is_not_retried_and_keeps_prometheus_reason() -> None:
    hits: list[int] = []

    async def bad(_: web.Request) -> web.Response:
        hits.append(1)
        body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
        return web.json_response(body, status=400)

    async def run() -> float | None:
        async with serving(bad) as url:
            return await instant(PrometheusSource(url))

    with pytest.raises(MetricsUnavailable, match="parse error at char 3"):
        asyncio.run(run())
    assert hits == [1]


def test_a_connection_refused_is_retried_then_reported() -> None:
    async def run() -> float | None:
        async with silent() as url:
            pass  # closed again: nothing listens on the port any more
        return await instant(PrometheusSource(url, timeout=5.0, retries=1, backoff=0.05))

    with pytest.raises(MetricsUnavailable, match=r"cannot reach Prometheus.*\(2 attempts\)"):
        asyncio.run(run())


def test_tls_is_verified_by_default_and_a_ca_file_is_trusted(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def ok(_: web.Request) -> web.Response:
        return web.json_response(VECTOR)

    async def run(ca: str | None) -> float | None:
        async with serving(ok, ssl_context=server_ssl) as url:
            return await instant(PrometheusSource(url, ca_file=ca))

    with pytest.raises(MetricsUnavailable, match="certificate verify failed"):
        asyncio.run(run(None))
    assert asyncio.run(run(str(ca_file))) == 42.0


def test_a_ca_file_that_cannot_be_read_is_an_error_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _ = PrometheusSource("https://prometheus.invalid", ca_file=str(tmp_path / "missing.pem")).ssl


def test_a_range_query_asks_for_the_window_and_sums_the_series() -> None:
    seen: dict[str, str] = {}

    async def matrix(request: web.Request) -> web.Response:
        seen.update(request.query)
        values = [[940.0, "1"], [955.0, "2"]]
        result = [{"metric": {"pod": "a"}, "values": values}, {"metric": {"pod": "b"}, "values": values}]
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})

    async def run() -> tuple[tuple[float, float], ...]:
        async with serving(matrix) as url, aiohttp.ClientSession() as session:
            query = RangeQuery("demand", 'rate(x{ns="$namespace"}[1m])', window_seconds=60.0)
            evidence = await query.fetch(PrometheusSource(url), session, now=1000.0, variables={"namespace": "a"})
            return evidence.series

    assert asyncio.run(run()) == ((940.0, 2.0), (955.0, 4.0))
    assert seen == {"query": 'rate(x{ns="a"}[1m])', "start": "940.000", "end": "1000.000", "step": "15"}


def test_an_agents_queries_against_a_silent_prometheus_all_end_absent_within_one_timeout() -> None:
    """The operator's side: each query the agent asked for is absent with the reason (so the policy's
    missing-metrics rule applies), and they run at once, so the agent waits one timeout, not one per query."""
    spec = agent_specs(performance={"type": "performance", "performance": {"demandQuery": "d", "latencyQuery": "l"}})[
        "performance"
    ]
    agent = build_agent("performance", spec)

    async def run() -> tuple[dict[str, Evidence], str | None, float]:
        async with silent() as url, aiohttp.ClientSession() as session:
            started = time.monotonic()
            found, problem = await prometheus_evidence(agent, situation(), PrometheusSource(url, timeout=0.5), session)
            return found, problem, time.monotonic() - started

    found, problem, elapsed = asyncio.run(run())
    assert len(agent.evidence_needed()) >= 2
    assert set(found) == {r.name for r in agent.evidence_needed()}
    assert all(e.value is None and "no answer within 0.5s" in (e.labels.get("reason", "")) for e in found.values())
    assert problem is not None and "no answer within 0.5s" in problem
    assert elapsed < 0.9


@pytest.mark.parametrize("fraction", [0.0004, 0.0005, 0.0006, 0.9996])
def test_a_series_seen_once_is_demand_the_agent_knows_whatever_the_moment_s_last_digits(fraction: float) -> None:
    """Prometheus stamps a range's points at start + k x step, to the millisecond it was asked: a range
    asked to end at `now` rounded up would stamp its latest point after `now`, and the forecast would
    drop it as not yet seen. A workload's first sample (its only one) would then read as missing
    metrics, and the missing-metrics rule would decide instead of the demand (0.5 ms after a whole
    millisecond, and later, rounds up)."""
    now = 1_000_000.0 + fraction

    async def matrix(request: web.Request) -> web.Response:
        end = float(request.query["end"])
        point = [end, "300"]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [point]}]}}
        )

    spec = agent_specs(performance={"type": "performance", "performance": {"demandQuery": "d", "seasonality": False}})[
        "performance"
    ]
    agent = build_agent("performance", spec)
    seen = situation(now=now)

    async def run() -> dict[str, Evidence]:
        async with serving(matrix) as url, aiohttp.ClientSession() as session:
            found, _ = await prometheus_evidence(agent, seen, PrometheusSource(url), session)
            return found

    evidence = asyncio.run(run())
    ((stamp, value),) = evidence["demand"].series
    assert stamp <= now and now - stamp < 0.001 and value == 300.0
    need = agent.needed_replicas(seen, evidence)
    assert need is not None, "the one sample is the demand the agent knows"
    assert need[2] == 300.0


def test_a_round_asks_a_groupable_template_once_and_splits_the_answer_by_workload() -> None:
    """Four workloads in two namespaces, one agent with a range (demand) and an instant (latency) query:
    the range is asked once for all of them and each gets its own series (the one Prometheus has no
    series for gets none); the latency query, which names the workload but not its namespace, once per
    rendering; a template that cannot be grouped is asked per workload, with the same answers."""
    series = {("shop", "web"): 10.0, ("shop", "api"): 20.0, ("blog", "web"): 30.0}
    asked: list[str] = []

    async def prometheus(request: web.Request) -> web.Response:
        query = request.query["query"]
        asked.append(query)
        if not request.path.endswith("query_range"):
            return web.json_response(VECTOR)
        end = float(request.query["end"])
        result = [
            {"metric": {"namespace": ns, "workload": wl}, "values": [[end - 15, str(v)], [end, str(v + 1)]]}
            for (ns, wl), v in series.items()
            if "by (namespace, workload)" in query or (f'namespace="{ns}"' in query and f'workload="{wl}"' in query)
        ]
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})

    workloads = [("shop", "web"), ("shop", "api"), ("blog", "web"), ("blog", "gone")]
    groupable = 'sum(rate(x{namespace="$namespace", workload="$workload"}[2m]))'

    async def run(demand: str) -> tuple[list[dict[str, Evidence]], int]:
        settings = {"demandQuery": demand, "latencyQuery": 'lat{w="$workload"}', "seasonality": False}
        agent = build_agent(
            "performance", agent_specs(performance={"type": "performance", "performance": settings})["performance"]
        )
        async with serving(prometheus) as url, aiohttp.ClientSession() as session:
            queries = RoundQueries([ns for ns, _ in workloads], 1_000_000.0)
            sits = [replace(situation(now=1_000_000.5), namespace=ns, name=wl) for ns, wl in workloads]
            found = await asyncio.gather(
                *(prometheus_evidence(agent, sit, PrometheusSource(url), session, queries) for sit in sits)
            )
            return [f for f, _ in found], queries.asked

    grouped, count = asyncio.run(run(groupable))
    assert [q for q in asked if "rate(x" in q] == [
        'sum by (namespace, workload) (rate(x{namespace=~"blog|shop", workload!=""}[2m]))'
    ]
    # The range once; the latency once per distinct rendering (shop/web and blog/web ask the same).
    assert count == len(asked) == 1 + 3
    assert [e["demand"].series[-1][1] for e in grouped[:3]] == [11.0, 21.0, 31.0]
    assert grouped[3]["demand"].value is None and "no samples" in grouped[3]["demand"].labels["reason"]

    asked.clear()
    alone, count = asyncio.run(run(groupable.replace("sum(rate", "max(rate")))
    assert len([q for q in asked if "rate(x" in q]) == 1, "max(...) groups as well"
    asked.clear()
    ungroupable = 'sum(rate(x{namespace="$namespace", workload="$workload"}[2m])) * 1'
    alone, count = asyncio.run(run(ungroupable))
    assert count == len(asked) == 4 + 3
    assert [e["demand"].series[-1][1] for e in alone[:3]] == [11.0, 21.0, 31.0]
