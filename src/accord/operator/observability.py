"""The operator's own metrics and health endpoints (operator layer).

`/metrics` in the Prometheus text format, `/healthz` (the process is alive and its loop turns)
and `/readyz` (the watches have listed every resource once and rounds are running).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()

ROUNDS = Counter("accord_rounds_total", "Negotiation rounds per policy.", ["policy"], registry=REGISTRY)
DECISIONS = Counter(
    "accord_decisions_total", "Decisions by verdict and resulting phase.", ["verdict", "phase"], registry=REGISTRY
)
LEADER = Gauge("accord_leader", "1 while this replica holds a shard's Lease and may write.", registry=REGISTRY)
SHARDS = Gauge(
    "accord_shards",
    "Shards: held by this replica, in total, live members, and members counting other than this one.",
    ["state"],
    registry=REGISTRY,
)
PENDING = Gauge("accord_pending_approvals", "Negotiations waiting for a person.", ["policy"], registry=REGISTRY)
TRUST = Gauge("accord_agent_trust", "Trust learned for each agent.", ["namespace", "agent"], registry=REGISTRY)
CONFIDENCE = Gauge(
    "accord_agent_confidence", "Confidence of each agent's latest proposal.", ["namespace", "agent"], registry=REGISTRY
)
ROUND_SECONDS = Histogram(
    "accord_round_duration_seconds",
    "Time to negotiate every workload of a policy once.",
    ["policy"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
WORKLOAD_SECONDS = Histogram(
    "accord_workload_negotiation_seconds",
    "Time to gather evidence, negotiate, record and act for one workload.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
API_REQUESTS = Counter("accord_api_requests_total", "Kubernetes API requests.", ["operation"], registry=REGISTRY)
API_ERRORS = Counter(
    "accord_api_errors_total", "Failed Kubernetes API requests.", ["operation", "code"], registry=REGISTRY
)
PROMETHEUS_QUERIES = Counter(
    "accord_prometheus_queries_total",
    "Prometheus queries a policy's rounds sent (a grouped query answers for all of a round's workloads).",
    ["policy"],
    registry=REGISTRY,
)
WORKLOAD_ERRORS = Counter(
    "accord_workload_errors_total", "Workloads whose negotiation failed in a round.", ["policy"], registry=REGISTRY
)
METRICS_MISSING = Gauge(
    "accord_metrics_missing", "1 while a policy's demand metrics are missing.", ["policy"], registry=REGISTRY
)


class Health:
    """Readiness once the operator has started and its watches have listed; liveness from the
    negotiation loops' heartbeats.

    Ready once start-up is done and every watch has delivered its first listing (`listed`: the
    operator knows the cluster as it is, so its first round decides on all of it). A standby replica
    is ready too: it can take over at once. Alive while the event loop answers and, when policies
    run, while their rounds keep beating: a round stuck for `stall_after` seconds makes /healthz fail
    so the Pod restarts.
    """

    def __init__(self, stall_after: float = 300.0, known: Callable[[], str] = lambda: "") -> None:
        self.stall_after = stall_after
        self.known = known  # what the operator knows of the cluster, for /readyz's answer
        self.last_beat = time.monotonic()
        self.up = False
        self.has_listed = False
        self.loops = 0

    @property
    def ready(self) -> bool:
        return self.up and self.has_listed

    def started(self) -> None:
        self.up = True

    def listed(self) -> None:
        self.has_listed = True

    def loop_started(self) -> None:
        self.loops += 1
        self.last_beat = time.monotonic()

    def loop_stopped(self) -> None:
        self.loops = max(0, self.loops - 1)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return self.loops == 0 or time.monotonic() - self.last_beat < self.stall_after


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def app(health: Health) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if health.alive() else web.Response(status=503, text="stalled\n")

    async def readyz(_: web.Request) -> web.Response:
        if health.ready:
            known = health.known()
            return web.Response(text=f"ready: {known}\n" if known else "ready\n")
        return web.Response(status=503, text="listing\n" if health.up else "starting\n")

    application = web.Application()
    application.router.add_get("/metrics", _metrics)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


async def serve(health: Health, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app(health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
