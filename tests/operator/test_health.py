"""/readyz and /healthz of the operator's metrics server, served on a real socket."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from accord.operator import observability


async def answer(health: observability.Health, path: str) -> tuple[int, str]:
    runner = web.AppRunner(observability.app(health))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.text()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("started", "listed", "status", "text"),
    [
        (False, False, 503, "starting\n"),
        (True, False, 503, "listing\n"),
        (False, True, 503, "starting\n"),
        (True, True, 200, "ready: 3 workloads known\n"),
    ],
)
def test_ready_only_once_started_and_listed(started: bool, listed: bool, status: int, text: str) -> None:
    health = observability.Health(known=lambda: "3 workloads known")
    if started:
        health.started()
    if listed:
        health.listed()
    assert asyncio.run(answer(health, "/readyz")) == (status, text)


@pytest.mark.parametrize(("quiet", "status"), [(299.0, 200), (301.0, 503)])
def test_a_round_that_stops_beating_fails_liveness(quiet: float, status: int) -> None:
    health = observability.Health(stall_after=300.0)
    health.loop_started()
    health.last_beat -= quiet
    assert asyncio.run(answer(health, "/healthz"))[0] == status
