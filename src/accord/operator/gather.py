"""Gathers each agent's evidence before the pure code runs (operator layer: the I/O side of agents).

Agents declare `EvidenceRequest`s; this module renders and runs them against Prometheus, and
calls external agents over HTTPS with a signed body (a fresh nonce each time; no redirect is
followed; the answer is read up to `MAX_ANSWER_BYTES`). Nothing raised here stops a round: a
failing source becomes absent evidence with its reason, and the agent's confidence (or the
policy's missing-metrics rule) takes it from there.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from accord.agents.base import Agent, Candidate, EvidenceRequest, QueryKind, Situation
from accord.agents.external import MAX_ANSWER_BYTES, SIGNATURE_HEADER, ExternalAgent
from accord.metrics.evidence import Evidence, EvidenceSet, Source
from accord.metrics.grouping import group
from accord.metrics.prometheus import InstantQuery, MetricsUnavailable, PrometheusSource, RangeQuery, render
from accord.models.common import Model
from accord.models.policy import NegotiationPolicySpec
from accord.negotiation.candidates import generate
from accord.negotiation.engine import Seat
from accord.operator.kube import Kube

log = logging.getLogger(__name__)


def _variables(situation: Situation) -> dict[str, str]:
    return {"namespace": situation.namespace, "workload": situation.name, "kind": situation.kind}


class RoundQueries:
    """A round's Prometheus questions, asked as few times as the answers allow: a range template that
    can be grouped (`metrics.grouping`) is asked once for every workload of the round and its answer
    split by workload; an instant query that renders the same for several workloads is asked once.
    `now` is the round's start, no later than any of its workloads' moments (no sample is ever from
    after the moment that reads it). `asked` counts the queries sent."""

    def __init__(self, namespaces: Sequence[str], now: float) -> None:
        self.namespaces = tuple(sorted(set(namespaces)))
        self.now = now
        self.asked = 0
        self._answers: dict[tuple[object, ...], asyncio.Future[Any]] = {}

    def _once(self, key: tuple[object, ...], ask: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        found = self._answers.get(key)
        if found is None:
            self.asked += 1
            found = self._answers[key] = asyncio.ensure_future(ask())
        return found

    async def range(
        self,
        query: RangeQuery,
        source: PrometheusSource,
        session: aiohttp.ClientSession,
        situation: Situation,
    ) -> Evidence | None:
        """The workload's series from the grouped answer, or None when the template cannot be grouped."""
        grouped = group(query.promql, self.namespaces)
        if grouped is None:
            return None
        key = ("range", grouped.promql, query.window_seconds, query.offset_seconds, query.extend_seconds)
        answer: dict[tuple[str, str], Evidence] = await asyncio.shield(
            self._once(key, lambda: query.fetch_grouped(source, session, now=self.now, grouped=grouped))
        )
        found = answer.get((situation.namespace, situation.name))
        return found or Evidence.absent(query.name, Source.PROMETHEUS, grouped.promql, "the query returned no samples")

    async def instant(
        self,
        query: InstantQuery,
        source: PrometheusSource,
        session: aiohttp.ClientSession,
        situation: Situation,
    ) -> list[Evidence]:
        rendered = render(query.promql, _variables(situation))
        key = ("instant", query.name, rendered, query.by_label)
        found: list[Evidence] = await asyncio.shield(
            self._once(key, lambda: query.fetch(source, session, now=self.now, variables=_variables(situation)))
        )
        return found


async def prometheus_evidence(
    agent: Agent[Model],
    situation: Situation,
    source: PrometheusSource | None,
    session: aiohttp.ClientSession | None,
    round_queries: RoundQueries | None = None,
) -> tuple[dict[str, Evidence], str | None]:
    """The agent's Prometheus evidence, and a problem description if Prometheus failed.

    The agent's queries run at once, each within the source's timeout: a Prometheus that never
    answers costs the agent one timeout, and each query it asked for is absent with the reason."""
    variables = _variables(situation)
    wanted = list(agent.evidence_needed())
    if source is None or session is None:
        reason = "no Prometheus URL is configured" if source is None else "no HTTP session (the operator is stopping)"
        absent = {r.name: Evidence.absent(r.name, Source.PROMETHEUS, r.query, reason) for r in wanted}
        return absent, reason if wanted else None

    async def run(request: EvidenceRequest) -> list[Evidence]:
        if request.kind is QueryKind.RANGE:
            query = RangeQuery(
                request.name, request.query, request.window_seconds, request.offset_seconds, request.extend_seconds
            )
            grouped = None if round_queries is None else await round_queries.range(query, source, session, situation)
            if grouped is not None:
                return [grouped]
            if round_queries is not None:
                round_queries.asked += 1  # asked for this workload alone
            return [await query.fetch(source, session, now=situation.now, variables=variables)]
        by_label = "pool" if request.name == "price" else None
        instant = InstantQuery(request.name, request.query, by_label=by_label)
        if round_queries is not None:
            return await round_queries.instant(instant, source, session, situation)
        return await instant.fetch(source, session, now=situation.now, variables=variables)

    found: dict[str, Evidence] = {}
    problem: str | None = None
    answers = await asyncio.gather(*(run(r) for r in wanted), return_exceptions=True)
    for request, answer in zip(wanted, answers, strict=True):
        if isinstance(answer, MetricsUnavailable):
            found[request.name] = Evidence.absent(request.name, Source.PROMETHEUS, request.query, str(answer))
            problem = str(answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            found.update((e.name, e) for e in answer)
    return found, problem


class AnswerTooLargeError(ValueError):
    pass


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, read a chunk at a time and given up on as soon as it passes `limit` bytes (so a
    huge answer is never held in memory, whatever its Content-Length says)."""
    if response.content_length is not None and response.content_length > limit:
        announced = response.content_length
        raise AnswerTooLargeError(f"the answer announces {announced} bytes, more than the {limit} allowed")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise AnswerTooLargeError(f"the answer is longer than the {limit} bytes allowed")
    return bytes(body)


async def external_evidence(
    agent: ExternalAgent,
    situation: Situation,
    candidates: Sequence[Candidate],
    shared: EvidenceSet,
    session: aiohttp.ClientSession,
    ssl: Any = True,
    *,
    limit: int = MAX_ANSWER_BYTES,
) -> Evidence:
    """Ask an external agent. Whatever the agent does (no answer, a redirect, an error status, a
    body too large or not UTF-8) becomes the answer's status, never an exception: the agent's say
    is dropped for this workload and the round goes on."""
    nonce = secrets.token_hex(16)
    sent = time.time()
    body = agent.request_body(situation, candidates, shared, nonce=nonce, timestamp=sent)
    url = str(agent.settings.url)
    started = time.monotonic()
    text, signature = "", ""
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: agent.signature(body)},
            timeout=aiohttp.ClientTimeout(total=agent.settings.timeout_seconds),
            ssl=ssl,
            allow_redirects=False,  # the signed request goes to the configured host only
        ) as response:
            if response.status != 200:
                redirect = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                status = f"HTTP {response.status}{redirect}"
            else:
                raw = await read_capped(response, limit)
                signature = response.headers.get(SIGNATURE_HEADER, "")
                text, status = raw.decode("utf-8"), "ok"
    except TimeoutError:
        status = f"no answer within {agent.settings.timeout_seconds}s"
    except aiohttp.ClientError as exc:
        status = f"request failed: {exc}"
    except AnswerTooLargeError as exc:
        status = str(exc)
    except UnicodeDecodeError as exc:
        status = f"the answer is not UTF-8 ({exc.reason} at byte {exc.start})"
    if status != "ok":
        text, signature = "", ""
    elapsed = time.monotonic() - started
    return Evidence(
        name="response",
        source=Source.EXTERNAL,
        query=url,
        text=text or None,
        timestamp=situation.now,
        samples=1 if text else 0,
        labels={
            "status": status,
            "signature": signature,
            "elapsed": f"{elapsed:.3f}",
            "nonce": nonce,
            "sent": repr(sent),
            "received": repr(time.time()),
        },
    )


async def read_secret(kube: Kube, namespace: str, name: str, key: str) -> bytes:
    secret = await kube.call("get secrets", kube.core.read_namespaced_secret, name, namespace)
    data = (secret.data or {}).get(key)
    if data is None:
        raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(data)


async def gather(
    *,
    seated: Sequence[tuple[Seat, Agent[Model]]],
    situation: Situation,
    policy: NegotiationPolicySpec,
    prometheus: PrometheusSource | None,
    session: aiohttp.ClientSession | None,
    round_queries: RoundQueries | None = None,
) -> tuple[dict[str, EvidenceSet], list[str]]:
    """Evidence per agent name, and the problems met (for the policy's MetricsMissing condition)."""
    evidence: dict[str, EvidenceSet] = {}
    problems: list[str] = []
    local = [(s, a) for s, a in seated if not isinstance(a, ExternalAgent)]
    results = await asyncio.gather(
        *(prometheus_evidence(a, situation, prometheus, session, round_queries) for _, a in local)
    )
    for (seat, _), (found, problem) in zip(local, results, strict=True):
        evidence[seat.name] = found
        if problem:
            problems.append(f"{seat.name}: {problem}")
    externals = [(s, a) for s, a in seated if isinstance(a, ExternalAgent)]
    if externals:
        wishes = [w for s, a in local for w in a.wishes(situation, evidence.get(s.name, {}))]
        candidates = generate(
            bounds=policy.bounds,
            current=situation.current,
            placements=[p.name for p in policy.placements],
            wishes=wishes,
        )
        shared = {k: v for ev in evidence.values() for k, v in ev.items()}
        for seat, agent in externals:
            if session is None:
                evidence[seat.name] = {"response": Evidence.absent("response", Source.EXTERNAL, reason="no session")}
                continue
            answer = await external_evidence(agent, situation, candidates, shared, session)
            evidence[seat.name] = {"response": answer}
            if answer.labels.get("status") != "ok":
                problems.append(f"{seat.name}: {answer.labels.get('status')}")
    return evidence, problems
