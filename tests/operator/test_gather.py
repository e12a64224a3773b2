"""Calling external agents over real HTTPS on 127.0.0.1: what a hostile or broken agent can and cannot do.

Each test starts an aiohttp server with a throw-away CA's certificate and lets `external_evidence`
(and `gather`, for whole rounds) talk to it; the pure `ExternalAgent` then judges the answer.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from accord.agents.base import Candidate, Situation
from accord.agents.external import MAX_ANSWER_BYTES, SIGNATURE_HEADER, ExternalAgent, sign, verify
from accord.models.agent import AgentSpec
from accord.models.policy import NegotiationPolicySpec
from accord.models.settings import ExternalSettings
from accord.negotiation.engine import Case, Outcome, negotiate_each
from accord.negotiation.rules import History
from accord.negotiation.table import seat_agents
from accord.operator.gather import external_evidence, gather
from tests.factories import situation

SECRET = b"shared-hmac-key"
CANDIDATES = [Candidate(4, "standard"), Candidate(5, "standard")]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Agent:
    """The server side of an external agent: the routes it serves and what it was sent."""

    url: str
    client_ssl: ssl.SSLContext
    requests: list[dict[str, Any]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    streamed: dict[str, int] = field(default_factory=dict)


def answer_to(request: dict[str, Any], *, timestamp: float | None = None) -> bytes:
    """An honest agent's answer: every candidate scored, the request's nonce echoed, the time it answers."""
    body = {
        "nonce": request["nonce"],
        "timestamp": time.time() if timestamp is None else timestamp,
        "utilities": [{**c, "utility": 0.5} for c in request["candidates"]],
        "confidence": 0.9,
        "rationale": "honest",
    }
    return json.dumps(body).encode()


@asynccontextmanager
async def agent_server(routes: dict[str, Handler]) -> AsyncIterator[Agent]:
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    app = web.Application()
    runner = web.AppRunner(app)
    state = Agent(url="", client_ssl=client_ssl)

    def counted(path: str, handler: Handler) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            state.hits[path] = state.hits.get(path, 0) + 1
            raw = await request.read()
            assert verify(raw, request.headers.get(SIGNATURE_HEADER), SECRET), "requests are signed"
            state.requests.append(json.loads(raw))
            return await handler(request)

        return serve

    for path, handler in routes.items():
        app.router.add_post(path, counted(path, handler))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"https://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def external(url: str, secret: bytes = SECRET) -> ExternalAgent:
    settings = ExternalSettings.model_validate({"url": url, "secretRef": {"name": "key"}, "timeoutSeconds": 5})
    return ExternalAgent("oracle", settings, secret=secret)


async def signed(request: web.Request, body: bytes) -> web.Response:
    return web.Response(body=body, headers={SIGNATURE_HEADER: sign(body, SECRET)})


async def honest(request: web.Request) -> web.Response:
    return await signed(request, answer_to(json.loads(await request.read())))


async def ask(agent: Agent, path: str, s: Situation | None = None, **kwargs: Any) -> tuple[Any, str]:
    """One exchange; the proposal the pure agent makes of it and the status the caller recorded."""
    ext = external(agent.url + path)
    s = s or situation()
    connector = aiohttp.TCPConnector(ssl=agent.client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:
        evidence = await external_evidence(ext, s, CANDIDATES, {}, session, **kwargs)
    return ext.propose(s, CANDIDATES, {"response": evidence}), evidence.labels["status"]


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


# -- one exchange ----------------------------------------------------------------------------------------------------


def test_an_honest_answer_over_https_is_the_agents_proposal() -> None:
    async def scenario() -> None:
        async with agent_server({"/": honest}) as agent:
            proposal, status = await ask(agent, "/")
            assert status == "ok"
            assert proposal.dropped is None
            assert proposal.confidence == 0.9
            sent = agent.requests[0]
            assert len(sent["nonce"]) == 32
            assert abs(sent["timestamp"] - time.time()) < 5
            await ask(agent, "/")
            assert agent.requests[1]["nonce"] != sent["nonce"], "every request has its own nonce"

    run(scenario())


def test_a_recorded_answer_replayed_to_a_later_request_is_refused() -> None:
    recorded: list[bytes] = []

    async def replaying(request: web.Request) -> web.Response:
        if not recorded:
            recorded.append(answer_to(json.loads(await request.read())))
        return await signed(request, recorded[0])  # the same signed bytes, every time

    async def scenario() -> None:
        async with agent_server({"/": replaying}) as agent:
            first, _ = await ask(agent, "/")
            assert first.dropped is None
            replayed, status = await ask(agent, "/")
            assert status == "ok", "the transport was fine: the answer itself is refused"
            assert replayed.dropped is not None
            assert "nonce is not this request's" in replayed.dropped

    run(scenario())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"nonce": "f" * 32}, "nonce is not this request's", id="signed-for-another-nonce"),
        pytest.param({"timestamp": -3600.0}, "stale", id="an-hour-old"),
    ],
)
def test_a_signed_answer_to_another_exchange_is_refused(change: dict[str, Any], reason: str) -> None:
    async def other(request: web.Request) -> web.Response:
        sent = json.loads(await request.read())
        stamp = time.time() + change["timestamp"] if "timestamp" in change else None
        return await signed(request, answer_to({**sent, **change}, timestamp=stamp))

    async def scenario() -> None:
        async with agent_server({"/": other}) as agent:
            proposal, status = await ask(agent, "/")
            assert status == "ok"
            assert proposal.dropped is not None
            assert reason in proposal.dropped

    run(scenario())


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_dropped_without_being_read_whole(announce: bool) -> None:
    limit = 64 * 1024
    chunk = b" " * 16 * 1024

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={SIGNATURE_HEADER: "sha256=00"})
        total = 100 * 1024 * 1024
        if announce:
            response.content_length = total
        await response.prepare(request)
        sent = 0
        try:
            while sent < total:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        agent.streamed["/"] = sent
        return response

    async def scenario() -> None:
        nonlocal agent
        async with agent_server({"/": huge}) as agent:
            proposal, status = await ask(agent, "/", limit=limit)
            assert "allowed" in status
            assert str(limit) in status
            assert proposal.dropped is not None
            assert "allowed" in proposal.dropped
            await asyncio.sleep(0.5)
            # The client hung up long before the 100 MiB were sent (socket buffers hold a few MiB at most).
            assert agent.streamed.get("/", 0) < 16 * 1024 * 1024

    agent: Agent
    run(scenario())


def test_an_answer_at_the_limit_is_read_and_one_byte_more_is_not() -> None:
    async def padded(request: web.Request) -> web.Response:
        body = answer_to(json.loads(await request.read()))
        size = int(request.query["size"])
        return await signed(request, body + b" " * (size - len(body)))

    async def scenario() -> None:
        async with agent_server({"/": padded}) as agent:
            at, status = await ask(agent, f"/?size={MAX_ANSWER_BYTES}")
            assert status == "ok"
            assert at.dropped is None
            over, status = await ask(agent, f"/?size={MAX_ANSWER_BYTES + 1}")
            assert status.startswith("the answer announces")
            assert over.dropped is not None

    run(scenario())


def test_a_redirect_is_not_followed() -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def scenario() -> None:
        async with agent_server({"/": redirect, "/elsewhere": honest}) as agent:
            proposal, status = await ask(agent, "/")
            assert status == "HTTP 302 (redirects are not followed)"
            assert proposal.dropped is not None
            assert agent.hits.get("/elsewhere", 0) == 0, "the signed request went nowhere else"

    run(scenario())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b'{"confidence": "\xff\xfe"}', "the answer is not UTF-8", id="invalid-utf8"),
        pytest.param(b"\xc3", "the answer is not UTF-8", id="truncated-utf8"),
    ],
)
def test_an_answer_that_is_not_utf8_is_a_drop_not_an_error(body: bytes, reason: str) -> None:
    async def latin(request: web.Request) -> web.Response:
        return await signed(request, body)  # signed correctly: only the decoding fails

    async def scenario() -> None:
        async with agent_server({"/": latin}) as agent:
            proposal, status = await ask(agent, "/")
            assert status.startswith(reason)
            assert proposal.dropped is not None
            assert reason in proposal.dropped

    run(scenario())


def test_an_error_status_and_no_answer_are_drops() -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, body=b"boom")

    async def scenario() -> None:
        async with agent_server({"/": failing}) as agent:
            proposal, status = await ask(agent, "/")
            assert status == "HTTP 500"
            assert proposal.dropped is not None
        closed = Agent(url=agent.url, client_ssl=agent.client_ssl)
        proposal, status = await ask(closed, "/")
        assert status.startswith("request failed")
        assert proposal.dropped is not None

    run(scenario())


# -- a whole round ------------------------------------------------------------------------------------------------


def test_a_hostile_agent_costs_only_its_own_say_on_the_workloads_it_attacks() -> None:
    """The agent answers one workload with invalid UTF-8, one with a 5 MiB body, one with a redirect,
    one with a replay of another workload's answer, and one honestly: every workload still gets its
    outcome; only the attacked ones lose the agent's say."""
    answers: dict[str, bytes] = {}

    async def hostile(request: web.Request) -> web.StreamResponse:
        sent = json.loads(await request.read())
        name = sent["workload"]["name"]
        if name == "utf8":
            return await signed(request, b"\xff" * 10)
        if name == "huge":
            return await signed(request, b" " * 5 * 1024 * 1024)
        if name == "redirect":
            raise web.HTTPTemporaryRedirect("/")
        if name == "replay":
            return await signed(request, answers["honest"])
        answers[name] = answer_to(sent)
        return await signed(request, answers[name])

    policy = NegotiationPolicySpec.model_validate(
        {
            "agents": [{"name": "oracle"}, {"name": "cost"}],
            "bounds": {"minReplicas": 1, "maxReplicas": 10},
            "placements": [{"name": "standard", "nodeSelector": {"pool": "standard"}, "pricePerPodHour": 0.1}],
        }
    )

    async def scenario() -> None:
        async with agent_server({"/": hostile}) as agent:
            specs = {
                "oracle": AgentSpec.model_validate(
                    {"type": "external", "external": {"url": agent.url + "/", "secretRef": {"name": "key"}}}
                ),
                "cost": AgentSpec.model_validate({"type": "cost"}),
            }
            table = seat_agents(policy, specs, secrets={"oracle": SECRET})
            names = ["honest", "utf8", "huge", "redirect", "replay"]
            situations = {n: replace(situation(), name=n, now=time.time()) for n in names}
            connector = aiohttp.TCPConnector(ssl=agent.client_ssl)
            async with aiohttp.ClientSession(connector=connector) as session:
                gathered = {}
                for n in names:  # the honest one first: its answer is what the replay serves
                    gathered[n] = await gather(
                        seated=table.seated, situation=situations[n], policy=policy, prometheus=None, session=session
                    )
            cases = [Case(situations[n], gathered[n][0], History()) for n in names]
            outcomes = negotiate_each(policy=policy, cases=cases, agents=table.seated)
            decided = [o for o in outcomes if isinstance(o, Outcome)]
            assert len(decided) == len(names), outcomes
            dropped = {
                n: next(p.dropped for p in o.proposals if p.agent == "oracle")
                for n, o in zip(names, decided, strict=True)
            }
            assert dropped["honest"] is None
            assert "not UTF-8" in (dropped["utf8"] or "")
            assert "allowed" in (dropped["huge"] or "")
            assert "redirects are not followed" in (dropped["redirect"] or "")
            assert "nonce is not this request's" in (dropped["replay"] or "")
            problems = {n: gathered[n][1] for n in names}
            assert problems["honest"] == []
            assert any("not UTF-8" in p for p in problems["utf8"])

    run(scenario())
